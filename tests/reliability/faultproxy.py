"""A fault-injecting HTTP proxy between the service's AWS clients and the emulator.

Tests layer: a real aiohttp server that forwards every request to moto's server and, by rule, answers
instead with the faults real AWS produces: 500 / 503 errors and throttling in each service's own error
format, delays, connection resets, truncated bodies, and "forwarded but the reply was lost" (the request
took effect, the caller never hears so). Point the service at it through ``AwsSettings.endpoint_url``
(in process) or ``AWS_ENDPOINT_URL`` (a subprocess).

A request is classified by its SigV4 credential scope (``.../<region>/<service>/aws4_request``) and its
operation: ``X-Amz-Target`` for DynamoDB, ``Action=`` for the query protocols (STS, SES), method and query
flags for S3. Only requests signed with an ``Authorization`` header are faulted (the service's own calls);
presigned URLs that clients follow pass through untouched unless a rule says ``presigned=True``.

Rules are tried in order; the first that matches and fires decides. A rule fires on its first ``first``
matching requests, or with ``probability`` drawn from the proxy's own ``random.Random(seed)``, so a run
with a fixed seed injects the same faults in the same order for the same sequence of requests.
"""

from __future__ import annotations

import asyncio
import io
import random
import re
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web

Fault = Literal["error", "throttle", "delay", "reset", "truncate", "drop_reply"]
FAULTS: tuple[Fault, ...] = ("error", "throttle", "delay", "reset", "truncate", "drop_reply")

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")
_QUERY_SCOPE = re.compile(r"^[^/]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request$")
_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z]+)")
_HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass
class Rule:
    """When to inject ``fault``: which service and operation (None: any), how often.

    ``status`` is the HTTP status of an ``error`` (500 or 503; 403 for S3 is ``AccessDenied``); ``delay``
    the seconds a ``delay`` holds the request before forwarding it (or ``drop_reply``/``reset`` hold before
    cutting the connection).
    """

    fault: Fault
    service: str | None = None
    operation: str | None = None
    probability: float = 1.0
    first: int | None = None
    status: int = 503
    delay: float = 0.0
    presigned: bool = False
    fired: int = 0

    def matches(self, service: str, operation: str, signed: bool) -> bool:
        if not signed and not self.presigned:
            return False
        return (self.service in (None, service)) and (self.operation in (None, operation))


@dataclass
class FaultProxy:
    """The proxy's rules and what it saw; ``url`` once started."""

    upstream: str
    seed: int = 0
    rules: list[Rule] = field(default_factory=list)
    url: str = ""
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    injected: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    async def start(self) -> FaultProxy:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Requests still held by a delay are cancelled at close, not waited for.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._http = aiohttp.ClientSession(
            # A fresh connection per request: the emulator closes idle ones, and a request sent on a stale
            # one would fail as if it were an injected fault.
            connector=aiohttp.TCPConnector(limit=64, force_close=True),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=120),
        )
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        # The server first: requests still held (a delay) end before the upstream session goes.
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- the proxy ------------------------------------------------------------------------------------

    def _choose(self, service: str, operation: str, signed: bool) -> Rule | None:
        for rule in self.rules:
            if not rule.matches(service, operation, signed):
                continue
            if rule.first is not None:
                if rule.fired < rule.first:
                    rule.fired += 1
                    return rule
                continue
            # Drawn for every matching request, fired or not, so the sequence depends only on the seed
            # and the order of requests.
            if self._random.random() < rule.probability:
                rule.fired += 1
                return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        service, operation, signed = classify(request, body)
        self.requests[(service, operation)] += 1
        rule = self._choose(service, operation, signed)
        if rule is None:
            return await self._forward(request, body)
        self.injected[(service, operation, rule.fault)] += 1
        if rule.fault == "error":
            return error_response(service, rule.status, throttle=False)
        if rule.fault == "throttle":
            return error_response(service, 400 if service in ("dynamodb", "sts", "ses") else 503, throttle=True)
        if rule.fault == "delay":
            await asyncio.sleep(rule.delay)
            return await self._forward(request, body)
        if rule.fault == "reset":
            await asyncio.sleep(rule.delay)
            return _reset(request)
        if rule.fault == "drop_reply":
            forwarded = await self._forward(request, body)
            await asyncio.sleep(rule.delay)
            del forwarded
            return _reset(request)
        return await self._forward(request, body, truncate=True)

    async def _forward(self, request: web.Request, body: bytes, truncate: bool = False) -> web.StreamResponse:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._http.request(
            request.method,
            self.upstream + request.path_qs,
            data=io.BytesIO(body) if body else None,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if request.method == "HEAD" and "Content-Length" in upstream.headers:
            # A HEAD answer's length is the object's, not its (empty) body's: S3 always sends it.
            head = web.StreamResponse(status=upstream.status, headers=out_headers)
            head.content_length = int(upstream.headers["Content-Length"])
            await head.prepare(request)
            await head.write_eof()
            return head
        if not truncate or len(payload) < 2:
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
        # The whole length announced, half the bytes sent, then the connection cut.
        response = web.StreamResponse(status=upstream.status, headers=out_headers)
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        await asyncio.sleep(0.01)
        return _reset(request, response)


def classify(request: web.Request, body: bytes) -> tuple[str, str, bool]:
    """(service, operation, signed with an Authorization header) of one AWS request."""
    authorization = request.headers.get("Authorization", "")
    scope = _SCOPE.search(authorization)
    service = scope.group(1) if scope else ""
    if not scope:
        query_scope = _QUERY_SCOPE.match(request.query.get("X-Amz-Credential", ""))
        service = query_scope.group(1) if query_scope else "s3"
    target = request.headers.get("X-Amz-Target", "")
    if target:
        return service, target.rsplit(".", 1)[-1], bool(scope)
    action = _ACTION.search(body) if request.method == "POST" else None
    if action:
        return service, action.group(1).decode(), bool(scope)
    return service, s3_operation(request), bool(scope)


def s3_operation(request: web.Request) -> str:
    """The S3 operation a REST request names (enough of them for the service's calls)."""
    query, method = request.query, request.method
    key = request.path.strip("/").count("/") >= 1
    if "uploads" in query:
        return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
    if "uploadId" in query:
        if method == "PUT":
            return "UploadPartCopy" if "x-amz-copy-source" in request.headers else "UploadPart"
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload", "GET": "ListParts"}.get(
            method, method
        )
    if not key:
        return {"HEAD": "HeadBucket", "GET": "ListObjects", "PUT": "CreateBucket"}.get(method, method)
    if method == "PUT":
        return "CopyObject" if "x-amz-copy-source" in request.headers else "PutObject"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


def error_response(service: str, status: int, *, throttle: bool) -> web.Response:
    """An error exactly as the service's protocol spells it, so botocore parses it into its code."""
    if service == "dynamodb":
        code = "ThrottlingException" if throttle else ("ServiceUnavailable" if status == 503 else "InternalServerError")
        body = f'{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected {code}"}}'
        return web.Response(status=status, text=body, content_type="application/x-amz-json-1.0")
    if service in ("sts", "ses", "iam"):
        code = "Throttling" if throttle else ("ServiceUnavailable" if status == 503 else "InternalFailure")
        body = (
            f"<ErrorResponse><Error><Type>{'Sender' if throttle else 'Receiver'}</Type><Code>{code}</Code>"
            f"<Message>injected {code}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        )
        return web.Response(status=status, text=body, content_type="text/xml")
    code = "SlowDown" if throttle or status == 503 else ("AccessDenied" if status == 403 else "InternalError")
    body = f"<Error><Code>{code}</Code><Message>injected {code}</Message><RequestId>fault</RequestId></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")


def _reset(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Cut the connection with a TCP reset (SO_LINGER 0), as a dying load balancer or host would."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # Nothing reaches the client; aiohttp needs a response object to finish the handler.
    return response or web.Response(status=599)
