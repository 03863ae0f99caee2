"""The URL table: every route of the service, registered and documented from one list.

Layer: api. Nothing but the table and the function that installs it.
"""

from __future__ import annotations

from aiohttp import web

from service.api import docs, health
from service.api.openapi import Operation
from service.wire import Health, Readiness

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/healthz",
        health.get_healthz,
        "Liveness",
        "operations",
        responses={200: Health},
    ),
    Operation(
        "GET",
        "/readyz",
        health.get_readyz,
        "Readiness",
        "operations",
        responses={200: Readiness},
        errors=(503,),
    ),
    Operation(
        "GET",
        "/metrics",
        health.get_metrics,
        "Prometheus metrics",
        "operations",
        responses={200: "text/plain"},
    ),
    Operation(
        "GET",
        "/v1/openapi.json",
        docs.get_openapi,
        "OpenAPI document",
        "documentation",
        responses={200: "application/json"},
    ),
    Operation(
        "GET",
        "/v1/docs",
        docs.get_docs,
        "API reference page",
        "documentation",
        responses={200: "text/html"},
    ),
)


def add_routes(app: web.Application) -> None:
    """Register every operation; GET routes also answer HEAD."""
    for op in OPERATIONS:
        if op.method == "GET":
            app.router.add_get(op.path, op.handler, name=op.operation_id)
        else:
            app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
