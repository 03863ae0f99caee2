"""Prometheus metrics for one app: HTTP requests, in-flight requests and AWS calls.

Layer: leaf (used by ``api`` middlewares and the ``aws`` instrumentation). Each app owns its own
``CollectorRegistry`` (no module-level state), so several apps in one process, as in the tests, never
share counters. Under gunicorn, with ``PROMETHEUS_MULTIPROC_DIR`` set (the instances set it), every worker
writes its values to files there (prometheus-client's multiprocess mode, chosen when the library is
imported) and ``render`` sums all of them: any worker's ``/metrics`` answers for the whole instance. The
gunicorn master removes a dead worker's live gauges (``service.gunicorn_config``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

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

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
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
            # Summed over the processes alive (multiprocess mode only).
            multiprocess_mode="livesum",
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
        self.mail_feedback = Counter(
            "filesync_mail_feedback",
            "Messages read from the mail feedback queue, by outcome (suppressed, soft_bounce, ignored, "
            "malformed, foreign).",
            ("outcome",),
            registry=self.registry,
        )
        self.mail_suppressed = Counter(
            "filesync_mail_suppressed",
            "Mails not sent because their address is suppressed (it bounced or complained), by kind.",
            ("kind",),
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format: this process's figures, or with a
        multiprocess directory those of every process writing there."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
