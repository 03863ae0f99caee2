"""Operational endpoints for the load balancer and the monitoring: liveness, readiness, metrics.

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service.api import problems
from service.api.responses import json_response
from service.core.errors import DependencyUnavailable, Overloaded
from service.keys import DRAIN, METRICS, READINESS
from service.wire import Health, Readiness

_UNAVAILABLE = problems.from_domain_type(DependencyUnavailable)
_DRAINING = problems.from_domain_type(Overloaded)


async def get_healthz(request: web.Request) -> web.Response:
    """Liveness: answers without any I/O, so a slow dependency never restarts a healthy process."""
    return json_response(Health(status="ok"))


async def get_readyz(request: web.Request) -> web.Response:
    """Readiness: S3 and DynamoDB answered within the timeout (result cached briefly), and the worker is
    not draining. The boot script waits for it; the load balancer checks liveness (``/healthz``) instead,
    so a dependency's blip never takes the whole fleet out of service."""
    if request.app[DRAIN].begun:
        return problems.problem_response(
            request, _DRAINING, "This worker is shutting down (draining): it takes no new work.", retry_after=1
        )
    report = await request.app[READINESS].check()
    if report.ready:
        return json_response(Readiness(status="ready", checks=dict(report.checks)))
    return problems.problem_response(
        request,
        _UNAVAILABLE,
        "A dependency is unreachable: "
        + ", ".join(f"{name} {outcome}" for name, outcome in report.checks.items() if outcome != "ok"),
        retry_after=1,
        checks=dict(report.checks),
    )


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this worker's metrics."""
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})
