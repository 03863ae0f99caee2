"""What checking a bearer token costs each authenticated request.

``AccountService.authenticate`` does two things per request: verify the JWT (PyJWT, HS256) and look the
session up in the worker's in-memory revocation list. Both are timed here, exactly as the service composes
them, with a revocation list holding ``--revoked`` sessions: once for a token seen for the first time (full
verification), once for a token the worker verified before (the verified-token cache). Baselines measured
in the same run:

- a bare HMAC-SHA256 over the same bytes (the cryptographic floor of any signed token), and
- one round trip of a trivial aiohttp request over loopback (what a request costs anyway),

so the report says both "how much slower than the floor" and "what share of a request".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from service.core.models import Principal
from service.core.revocations import RevocationList
from service.core.tokens import TokenService, new_session_id
from tools.bench import BenchParser


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: best of five runs of about ``seconds / 5`` each."""
    calls = 1000
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - started > 0.05:
            break
        calls *= 2
    per_run = max(1, int(calls * (seconds / 5) / (time.perf_counter() - started)))
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = min(best, (time.perf_counter() - started) / per_run)
    return best * 1e6


async def http_round_trip_us(requests: int) -> float:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(200):
                async with session.get(url) as response:
                    await response.read()
            started = time.perf_counter()
            for _ in range(requests):
                async with session.get(url) as response:
                    await response.read()
            return (time.perf_counter() - started) / requests * 1e6
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench token_check", __doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    parser.add_argument("--revoked", type=int, default=10_000, help="sessions in the revocation list")
    parser.add_argument("--requests", type=int, default=3000, help="HTTP round trips for the baseline")
    args = parser.parse_args(argv)

    secret = secrets.token_urlsafe(48)
    tokens = TokenService(secret, access_seconds=300)
    revoked = RevocationList()
    for _ in range(args.revoked):
        revoked.add(new_session_id(), time.time() + 3600)
    token = tokens.issue_access(Principal("alice", new_session_id()))
    # A cache of one entry makes every call a first sight: alternate two tokens.
    uncached = TokenService(secret, access_seconds=300, cache_size=1)
    pair = [uncached.issue_access(Principal("bob", new_session_id())) for _ in range(2)]
    turn = [0]

    def authenticate() -> None:
        principal = tokens.verify_access(token)
        if revoked.is_revoked(principal.sid):
            raise AssertionError("not revoked")

    def authenticate_first_sight() -> None:
        turn[0] ^= 1
        principal = uncached.verify_access(pair[turn[0]])
        if revoked.is_revoked(principal.sid):
            raise AssertionError("not revoked")

    signing_input = token.rsplit(".", 1)[0].encode()
    key = secret.encode()

    def bare_hmac() -> None:
        hmac.new(key, signing_input, hashlib.sha256).digest()

    first_us = per_call_us(authenticate_first_sight, args.seconds)
    check_us = per_call_us(authenticate, args.seconds)
    hmac_us = per_call_us(bare_hmac, args.seconds)
    request_us = asyncio.run(http_round_trip_us(args.requests))
    print(f"revocation list: {args.revoked:,} sessions")
    for label, value in (
        ("token seen before (cached)", check_us),
        ("token seen first (full JWT check)", first_us),
    ):
        print(
            f"{label:<36} {value:7.2f} us/request  = {value / hmac_us:5.1f}x bare HMAC, "
            f"{value / request_us:6.2%} of a trivial request"
        )
    print(f"{'baseline: bare HMAC-SHA256, same bytes':<36} {hmac_us:7.2f} us")
    print(f"{'baseline: trivial aiohttp request':<36} {request_us:7.0f} us (loopback, keep-alive)")
    return 0
