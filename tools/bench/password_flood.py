"""A flood of password guesses against one account must not starve another account's login.

The service runs in its own process with production argon2id parameters (t=3, 64 MiB, 4 lanes) and its
default two hashing slots (``FILESYNC_MAX_CONCURRENT_HASHES``), trusting ``X-Forwarded-For`` so that each
client has an address of its own. Measured: ``--logins`` logins of one account, one at a time, first with
the service otherwise idle (the baseline, same run), then while ``--loops`` parallel loops send wrong
``current_password``s to ``PUT /v1/account/password`` for another account (with its valid token, as a thief
of a session would). Reported: login latency p50/p95 both ways and their ratio (goal: under 2x), and what
the flood got (answers by status, guesses hashed).

Two scenarios, each in a fresh service: ``throttle`` (the defaults: the flooded account is locked out after
10 wrong passwords, after which guesses are refused before any hash) and ``turns`` (the failure limits set
out of reach, so every guess is hashed: what keeps the other login fast is then the per-account turn alone,
one hash at a time for the flooded account).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import aiohttp
import uvloop

from tools.bench import BenchParser
from tools.bench.harness import stack

PASSWORD = "benchmark password"  # noqa: S105 - throwaway accounts on a throwaway emulator
SCENARIOS = {
    "throttle": {},
    "turns": {
        "FILESYNC_LOGIN_MAX_FAILURES": "1000000",
        "FILESYNC_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
    },
}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def log_in(http: aiohttp.ClientSession, url: str, name: str, address: str) -> tuple[float, str]:
    started = time.perf_counter()
    async with http.post(
        f"{url}/v1/auth/token",
        json={"username": name, "password": PASSWORD},
        headers={"X-Forwarded-For": address},
    ) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"login of {name} failed: {response.status} {body}")
    return time.perf_counter() - started, str(body["access_token"])


async def logins(http: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    return [(await log_in(http, url, "alice", "192.0.2.10"))[0] for _ in range(count)]


async def scenario(name: str, count: int, loops: int) -> None:
    env = {"FILESYNC_TRUST_FORWARDED_FOR": "true", **SCENARIOS[name]}
    async with stack(service_env=env) as running, aiohttp.ClientSession() as http:
        url = running.service
        for user in ("alice", "victim"):
            async with http.post(f"{url}/v1/auth/signup", json={"username": user, "password": PASSWORD}) as made:
                if made.status != 201:
                    raise RuntimeError(f"sign-up failed: {made.status} {await made.text()}")
        _, token = await log_in(http, url, "victim", "203.0.113.1")
        await logins(http, url, 5)  # warm up
        unloaded = await logins(http, url, count)

        statuses: Counter[int] = Counter()
        stop = asyncio.Event()

        async def guess(loop: int) -> None:
            headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"10.0.{loop}.1"}
            attempt = 0
            while not stop.is_set():
                attempt += 1
                body = {"current_password": f"wrong {loop} {attempt}", "new_password": "not going to happen"}
                async with http.put(f"{url}/v1/account/password", json=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        flood = [asyncio.create_task(guess(i)) for i in range(loops)]
        started = time.perf_counter()
        try:
            await asyncio.sleep(1.0)  # the flood is in full swing before the first measured login
            loaded = await logins(http, url, count)
        finally:
            stop.set()
            await asyncio.gather(*flood)
        elapsed = time.perf_counter() - started
    un50, un95 = percentile(unloaded, 0.5) * 1e3, percentile(unloaded, 0.95) * 1e3
    lo50, lo95 = percentile(loaded, 0.5) * 1e3, percentile(loaded, 0.95) * 1e3
    flood_total = sum(statuses.values())
    print(f"scenario {name}: {count} logins one at a time; flood of {loops} loops of wrong current passwords")
    print(f"  unloaded login: p50 {un50:.0f} ms, p95 {un95:.0f} ms (mean {statistics.fmean(unloaded) * 1e3:.0f})")
    print(f"  during flood:   p50 {lo50:.0f} ms, p95 {lo95:.0f} ms (mean {statistics.fmean(loaded) * 1e3:.0f})")
    print(f"  ratio: p50 {lo50 / un50:.2f}x, p95 {lo95 / un95:.2f}x (goal: under 2x)")
    answers = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    print(f"  flood: {flood_total} guesses in {elapsed:.1f} s ({flood_total / elapsed:.0f}/s); answers {answers}")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench password_flood", __doc__)
    parser.add_argument("--logins", type=int, default=40, help="measured logins per phase (default 40)")
    parser.add_argument("--loops", type=int, default=16, help="parallel guessing loops (default 16)")
    parser.add_argument(
        "--scenario", choices=[*SCENARIOS, "both"], default="both", help="which scenario (default both)"
    )
    args = parser.parse_args(argv)
    for name in SCENARIOS if args.scenario == "both" else [args.scenario]:
        uvloop.run(scenario(name, args.logins, args.loops))
    return 0
