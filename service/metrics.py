"""Prometheus metrics for one app: HTTP requests, in-flight requests and AWS calls.

Layer: leaf (used by ``api`` middlewares and the ``aws`` instrumentation). Each app owns its own
``CollectorRegistry`` (no module-level state), so several apps in one process, as in the tests, never
share counters. Under gunicorn each worker exposes its own figures; scrape each worker or aggregate
with the Prometheus server (the ALB spreads scrapes across workers).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Metrics:
    """The service's metric families, registered in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "filesync_http_requests",
            "HTTP requests handled, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "filesync_http_request_duration_seconds",
            "Time from request received to response ready, by route template and method.",
            ("route", "method"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_in_flight = Gauge(
            "filesync_http_requests_in_flight",
            "Requests being handled right now.",
            registry=self.registry,
        )
        self.aws_requests = Counter(
            "filesync_aws_requests",
            "HTTP requests sent to AWS (each retry attempt counts: this is what AWS bills).",
            ("service", "operation"),
            registry=self.registry,
        )
        self.aws_latency = Histogram(
            "filesync_aws_call_duration_seconds",
            "Duration of one AWS API call including its retries, by service and operation.",
            ("service", "operation"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.aws_errors = Counter(
            "filesync_aws_errors",
            "AWS API calls that ended in an error, by service, operation and error code.",
            ("service", "operation", "code"),
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
