"""Middlewares, outermost first: request id, metrics, problem details, the body budget's release; and the
response hook that stamps ``X-Request-ID`` on every response.

Layer: api. ``problem_middleware`` is the only ``try/except`` that maps errors: it turns domain errors and
aiohttp's HTTP error exceptions into problem+json, and anything else into a logged, plain 500. Redirects
(``HTTPFound``) stay exceptions, as aiohttp wants them raised: the metrics middleware counts them by their
own status, and ``stamp_request_id`` (an ``on_response_prepare`` hook, so it also reaches raised
exceptions and streamed responses whose headers go out before the handler returns) gives them the id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from service.api import problems
from service.api.bodies import body_budget_middleware
from service.core.errors import FileSyncError
from service.keys import DRAIN, METRICS
from service.logs import REQUEST_ID, REQUEST_ID_HEADER

log = logging.getLogger(__name__)

#: A client-supplied request id is echoed only if it is short and plain (it ends up in log lines).
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_KEY = web.RequestKey("request_id", str)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = supplied if _VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    try:
        return await handler(request)
    finally:
        REQUEST_ID.reset(token)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response of the app carries the request's id, whether returned,
    raised (redirects) or streamed."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


async def close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: while the worker drains, a response ends its connection, so the client's
    next request opens a new one (which the load balancer sends to another instance)."""
    if request.app[DRAIN].begun:
        # aiohttp has chosen the connection header by the time this hook runs: set both.
        response.force_close()
        response.headers[hdrs.CONNECTION] = "close"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    metrics.http_in_flight.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        # Raised redirects (and any HTTP exception that gets this far) are answers, not failures.
        status = exc.status
        raise
    finally:
        metrics.http_in_flight.dec()
        metrics.http_latency.labels(route, request.method).observe(time.perf_counter() - started)
        metrics.http_requests.labels(route, request.method, str(status)).inc()


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if request.writer.output_size > 0:
            # The status line and part of a streamed body are out: no problem can follow. Re-raised,
            # aiohttp closes the connection, so the client sees a short body at once (never a hang, nor a
            # second response inside the first).
            log.warning("%s %s failed after its response started; closing the connection", request.method, request.path)
            raise
        if isinstance(exc, FileSyncError):
            return problems.from_domain(request, exc)
        if isinstance(exc, web.HTTPException):
            if exc.status < 400:
                raise
            return problems.from_http(request, exc)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problems.internal(request)


MIDDLEWARES = (request_id_middleware, metrics_middleware, problem_middleware, body_budget_middleware)
