"""Slow large bodies against one worker: the service's memory before, during and after 30 compares of 8 MiB
each, sent slowly and all at once.

Each client opens its own connection and sends a compare page of 5,000 entries with long paths, padded to
``--body-mib`` MiB, over ``--seconds`` seconds. The service (its own process, against an emulator in another,
production settings: the default body budget) reserves each body's worst case from its budget before
reading it; what does not fit is answered 503 ``busy`` at once, without reading. The service's resident set
is sampled every 20 ms. Printed, for each of ``--rounds`` bursts: how many were served and refused, and the
resident set before, at its peak, and after (once every request has ended), beside the documented bound:
the idle resident set + the body budget + 64 MiB. A second burst shows whether memory kept after the
first is reused or grows. Baseline in the same run: the same bursts against a service whose budget is lifted.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson
import uvloop

from service.paths import path_key
from service.settings import Settings
from tools.bench import BenchParser
from tools.bench.harness import MiB, RssSampler, rss_bytes, stack
from tools.sdk.client import FileSyncClient

ENTRIES = 5000


def manifest(size: int) -> bytes:
    """A compare page of ``ENTRIES`` entries with paths near the 950-byte limit, padded to ``size`` bytes."""
    folder = "/".join(["d" * 200] * 4)
    paths = sorted((f"{folder}/{i:05d}.txt" for i in range(ENTRIES)), key=path_key)
    digest = hashlib.sha256(b"bench").hexdigest()
    entries = [{"path": p, "content_hash": digest, "synced_rev": 1, "synced_hash": digest} for p in paths]
    body = orjson.dumps({"entries": entries})
    if len(body) > size:
        raise ValueError(f"the manifest is {len(body)} bytes before padding")
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def slow_compare(host: str, port: int, token: str, ns: str, body: bytes, seconds: float) -> int:
    """Send one compare over ``seconds``, on a connection of its own; the answer's status (read as soon as it
    comes: a refusal comes before the body is sent)."""
    reader, writer = await asyncio.open_connection(host, port)
    answer = asyncio.create_task(reader.readline())
    try:
        writer.write(
            f"POST /v1/ns/{ns}/compare HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = 64 * 1024
        pause = seconds / (len(body) / chunk)
        for offset in range(0, len(body), chunk):
            if answer.done():
                break
            writer.write(body[offset : offset + chunk])
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(pause)
        try:
            status_line = await answer
        except ConnectionError:
            return 0
        return int(status_line.split()[1]) if status_line else 0
    finally:
        answer.cancel()
        writer.close()


async def bursts(
    label: str, env: dict[str, str | None], body: bytes, clients: int, seconds: float, rounds: int
) -> tuple[int, int]:
    """Run ``rounds`` bursts against a fresh service; its idle resident set and its highest peak."""
    peak = 0
    async with stack(service_env=env) as running:
        host, port = running.service.removeprefix("http://").split(":")
        async with FileSyncClient(running.service, timeout=600) as api:
            await api.sign_up("bench", "benchmark password")
            token = (await api.log_in("bench", "benchmark password")).access_token
            ns = (await api.account()).home_namespace
            # Warm up the compare path once (code, pools), then let the process settle.
            if await slow_compare(host, int(port), token, ns, body, 0.5) != 200:
                raise RuntimeError("the warm-up compare failed")
        await asyncio.sleep(2)
        before = rss_bytes(running.service_pid)
        for round_ in range(1, rounds + 1):
            async with RssSampler(running.service_pid) as rss:
                started = time.perf_counter()
                statuses = await asyncio.gather(
                    *(slow_compare(host, int(port), token, ns, body, seconds) for _ in range(clients))
                )
                elapsed = time.perf_counter() - started
            await asyncio.sleep(2)
            after = rss_bytes(running.service_pid)
            served, busy = statuses.count(200), statuses.count(503)
            others = sorted(s for s in statuses if s not in (200, 503))
            print(
                f"{label}, round {round_}: served {served}, refused 503 busy {busy}, other {others or 'none'}; "
                f"{elapsed:.1f} s; service RSS before {before / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB "
                f"(+{(rss.peak - before) / MiB:.0f}), after {after / MiB:.0f} MiB (+{(after - before) / MiB:.0f})"
            )
            peak = max(peak, rss.peak)
    return before, peak


async def run(clients: int, body_mib: int, seconds: float, rounds: int, malloc_threshold: bool) -> None:
    body = manifest(body_mib * MiB)
    print(f"{clients} compares of {len(body) / MiB:.0f} MiB ({ENTRIES} entries), each sent over {seconds:g} s, at once")
    # The other benchmarks fix glibc's mmap threshold; production (the Procfile) does not.
    env: dict[str, str | None] = {} if malloc_threshold else {"MALLOC_MMAP_THRESHOLD_": None}
    budget = Settings().limits.body_budget
    before, peak = await bursts(f"budget {budget / MiB:.0f} MiB", env, body, clients, seconds, rounds)
    # Baseline, same run: the budget lifted, as before it existed.
    lifted = {**env, "FILESYNC_BODY_BUDGET": str(64 * 1024 * MiB)}
    base_before, base_peak = await bursts("no budget (baseline)", lifted, body, clients, seconds, rounds)
    bound = before + budget + 64 * MiB
    print(
        f"bound: idle RSS + body budget {budget / MiB:.0f} MiB + 64 MiB = {bound / MiB:.0f} MiB; highest peak "
        f"{peak / MiB:.0f} MiB (+{(peak - before) / MiB:.0f}): {'within' if peak <= bound else 'OVER'}; "
        f"without the budget +{(base_peak - base_before) / MiB:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench slow_bodies", __doc__)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--body-mib", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="bursts one after the other (memory reused or grown?)")
    parser.add_argument(
        "--malloc-threshold", action="store_true", help="fix glibc's mmap threshold at 128 KiB as other benchmarks do"
    )
    args = parser.parse_args(argv)
    uvloop.run(run(args.clients, args.body_mib, args.seconds, args.rounds, args.malloc_threshold))
    return 0
