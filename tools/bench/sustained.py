"""Sustained load on the embedded default: the service's own CPU per request of each scenario of the load
tool's default mix, and the highest open-loop arrival rate of the mix that it holds for ``--seconds`` (60)
with p99 < ``--p99-ms`` (250) and no errors (nothing dropped, nothing failed). The p99 is over all requests
of the mix, or over the scenarios named by ``--slo-scenarios`` (all of the mix still runs).

The service runs as a user starts it, ``python -m service`` with nothing configured: its own emulator in a
child process, a notifier inside, revocations read every second, access logs at INFO. The load tool's
workload (its users, its seeded namespace, its scenarios over the SDK) runs in this process. One run, four
parts:

1. Idle: the CPU the service and the emulator spend a second with nothing to do (their background work).
2. Isolation: each scenario alone, one request at a time, for ``--isolation-seconds``: its latency, the
   service's CPU per run and per service request, the emulator's CPU per run, the AWS requests per run (CPU
   from /proc, requests from the service's /metrics, each less the idle figures). Weighted by the mix: each
   process's CPU per request of the mix, and so the rate one core of it could serve.
3. Baseline: the mix at a trickle (``--idle-rate``, 1/s): each scenario's latency without queueing.
4. Search: short probes from ``--start``, 1.5x each time, until one misses (each probe at least
   ``--probe-requests`` requests, so its p99 is not just its slowest request); then full-length runs (at
   least ``--min-requests``: at low rates a run lasts longer), bisecting between the highest full-length
   pass and the lowest miss until they are within 10% (at most ``--runs`` of them). Each run reports the
   service's, the emulator's and this process's CPU (share of one core) and the machine's load average,
   which say what held the rate. The best passing run's report and plots go to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from tools.bench import BenchParser
from tools.bench.compare import sample
from tools.bench.harness import Stack, cpu_seconds, embedded_default
from tools.loadtest import report as reports
from tools.loadtest.histogram import LatencyHistogram
from tools.loadtest.mix import DEFAULT_MIX, Mix
from tools.loadtest.recorder import Recorder
from tools.loadtest.runner import Limits, StatusLine, closed_loop, open_loop
from tools.loadtest.schedule import Step, arrivals
from tools.loadtest.workload import Workload, WorkloadConfig


@dataclass(frozen=True)
class Counters:
    """What the processes had done at one moment: CPU seconds, the service's requests and AWS calls."""

    at: float
    service_cpu: float
    emulator_cpu: float
    own_cpu: float
    http: float
    http_seconds: float
    aws: dict[str, float]
    aws_seconds: float

    def since(self, before: Counters) -> Counters:
        return Counters(
            self.at - before.at,
            self.service_cpu - before.service_cpu,
            self.emulator_cpu - before.emulator_cpu,
            self.own_cpu - before.own_cpu,
            self.http - before.http,
            self.http_seconds - before.http_seconds,
            {k: v - before.aws.get(k, 0.0) for k, v in self.aws.items() if v - before.aws.get(k, 0.0) > 0},
            self.aws_seconds - before.aws_seconds,
        )


async def counters(http: aiohttp.ClientSession, running: Stack) -> Counters:
    async with http.get(running.service + "/metrics") as response:
        text = await response.text()
    aws = {
        service: sample(text, "filesync_aws_requests_total", service=service) for service in ("dynamodb", "s3", "sts")
    }
    return Counters(
        time.monotonic(),
        cpu_seconds(running.service_pid),
        cpu_seconds(running.emulator_pid),
        time.process_time(),
        sample(text, "filesync_http_requests_total") - sample(text, "filesync_http_requests_total", route="/metrics"),
        sample(text, "filesync_http_request_duration_seconds_sum"),
        aws,
        sample(text, "filesync_aws_call_duration_seconds_sum"),
    )


@dataclass
class Isolated:
    name: str
    runs: int
    p50_ms: float
    service_ms: float  # CPU per run, less the background work
    emulator_ms: float
    requests: float  # service requests per run
    aws: dict[str, float]  # AWS requests per run

    def line(self) -> str:
        per_request = self.service_ms / self.requests if self.requests else 0.0
        calls = ", ".join(f"{service} {n:.1f}" for service, n in self.aws.items())
        return (
            f"  {self.name:<17}{self.runs:>6}{self.p50_ms:>9.1f}{self.service_ms:>10.2f}{self.requests:>6.1f}"
            f"{per_request:>10.2f}{self.emulator_ms:>11.2f}   {calls}"
        )


@dataclass
class Attempt:
    rate: float
    seconds: float
    report: dict[str, Any]
    used: Counters
    p99_limit: float
    p99: float  # ms, over the scenarios the criterion covers
    full: bool  # a full-length run (not a probe)

    @property
    def failures(self) -> int:
        return int(self.report["requests"]["errors"] + self.report["requests"]["dropped"])

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.p99 < self.p99_limit

    def line(self) -> str:
        latency = self.report["latency_ms"]
        slow = [
            f"{name} {s['latency_ms']['p99']:.0f}"
            for name, s in self.report["scenarios"].items()
            if s["latency_ms"] and s["latency_ms"]["p99"] >= self.p99_limit
        ]
        wall = max(self.used.at, 1e-9)
        return (
            f"{self.rate:7.1f}/s {self.seconds:4.0f} s  throughput {self.report['throughput_per_second']:7.1f}/s  "
            f"p50 {latency['p50']:6.1f}  p99 {latency['p99']:6.1f} (criterion {self.p99:6.1f})  "
            f"max {latency['max']:7.1f} ms  failures {self.failures:3d}  "
            f"CPU: service {self.used.service_cpu / wall:4.0%}, emulator {self.used.emulator_cpu / wall:4.0%}, "
            f"load tool {self.used.own_cpu / wall:4.0%}  load avg {os.getloadavg()[0]:4.1f}  "
            f"{'pass' if self.passed else 'MISS'}" + (f"  (p99 over the limit: {', '.join(slow)} ms)" if slow else "")
        )


def say(text: str) -> None:
    sys.stderr.write(text + "\n")


async def isolate(
    workload: Workload, http: aiohttp.ClientSession, running: Stack, seconds: float, idle: Counters, mix: Mix
) -> list[Isolated]:
    """Each scenario of ``mix`` alone, one request at a time, for ``seconds``."""
    found: list[Isolated] = []
    for name in mix.names:
        recorder = Recorder()
        before = await counters(http, running)
        await closed_loop(workload.picker(Mix({name: 1})), 1, Limits(seconds, 10_000_000), recorder)
        used = (await counters(http, running)).since(before)
        runs = recorder.ok + recorder.failed
        if recorder.failed or not runs:
            raise RuntimeError(f"{name} failed alone: {recorder.errors_by_type()}")
        background = used.at / idle.at
        found.append(
            Isolated(
                name,
                runs,
                recorder.histograms[name].percentile(50) * 1e3,
                max(0.0, used.service_cpu - idle.service_cpu * background) / runs * 1e3,
                max(0.0, used.emulator_cpu - idle.emulator_cpu * background) / runs * 1e3,
                used.http / runs,
                {s: max(0.0, n - idle.aws.get(s, 0.0) * background) / runs for s, n in used.aws.items()},
            )
        )
        say(found[-1].line())
    return found


def print_isolation(isolated: list[Isolated], mix: Mix, idle: Counters) -> None:
    print(
        f"idle (background work): service {idle.service_cpu / idle.at * 1e3:.1f} ms, emulator "
        f"{idle.emulator_cpu / idle.at * 1e3:.1f} ms of CPU a second; {sum(idle.aws.values()) / idle.at:.2f} "
        "AWS requests a second"
    )
    print("each scenario alone, one at a time (CPU and AWS requests less the background work's):")
    print(
        f"  {'scenario':<17}{'runs':>6}{'p50 ms':>9}{'svc ms':>10}{'reqs':>6}{'svc ms/req':>10}{'emu ms':>11}"
        "   AWS requests per run"
    )
    for row in isolated:
        print(row.line())
    service = sum(mix.share(r.name) * r.service_ms for r in isolated)
    emulator = sum(mix.share(r.name) * r.emulator_ms for r in isolated)
    print(
        f"  the mix, weighted: service {service:.2f} ms and emulator {emulator:.2f} ms of CPU per request; one core "
        f"serves at most {1e3 / service:.0f} requests/s of it in the service, {1e3 / emulator:.0f} in the emulator"
    )


async def run(args: argparse.Namespace) -> None:
    mix = Mix(DEFAULT_MIX)
    scope = Mix.parse(args.slo_scenarios).names if args.slo_scenarios else mix.names
    attempts: list[Attempt] = []
    say("starting the embedded default (python -m service)")
    async with embedded_default() as running, aiohttp.ClientSession() as http:
        config = WorkloadConfig(server=running.service, users=args.users, seed_files=args.seed_files)
        async with Workload(config) as workload:
            await workload.setup(mix, say)
            say(f"idle for {args.idle_cpu_seconds:g} s")
            before = await counters(http, running)
            await asyncio.sleep(args.idle_cpu_seconds)
            idle = (await counters(http, running)).since(before)
            say("each scenario alone:")
            isolated = await isolate(workload, http, running, args.isolation_seconds, idle, mix)

            async def attempt(rate: float, seconds: float, full: bool = False) -> Attempt:
                recorder = Recorder()
                limits = Limits(seconds, 10_000_000, max_in_flight=256, timeout=30.0, drain=10.0)
                before = await counters(http, running)
                started_at = datetime.now(UTC)
                status = StatusLine(seconds)
                wall = await open_loop(
                    workload.picker(mix, seed=len(attempts)),
                    arrivals([Step(rate, seconds)]),
                    limits,
                    recorder,
                    tick=status,
                )
                status.close()
                used = (await counters(http, running)).since(before)
                described = {"mode": "open", "rate_description": f"{rate:g}/s", "mix": mix.weights}
                built = reports.build(recorder, wall=wall, config=described, started_at=started_at)
                covered = LatencyHistogram()
                for name in scope:
                    if name in recorder.histograms:
                        covered.add(recorder.histograms[name])
                done = Attempt(rate, seconds, built, used, args.p99_ms, covered.percentile(99) * 1e3, full)
                attempts.append(done)
                print(done.line(), flush=True)
                await asyncio.sleep(2)  # let the service and emulator settle between runs
                return done

            def lengths(rate: float) -> tuple[float, float]:
                """A probe's and a full run's seconds at ``rate`` (each carries its least number of requests)."""
                return (
                    float(max(args.probe_seconds, args.probe_requests / rate)),
                    float(max(args.seconds, args.min_requests / rate)),
                )

            print(f"baseline: the same mix at a trickle ({args.idle_rate:g}/s for {args.idle_seconds:g} s):")
            trickle = await attempt(args.idle_rate, args.idle_seconds, False)
            print("search:")
            best = await search(attempt, lengths, args)
    print()
    print_isolation(isolated, mix, idle)
    covers = "every scenario" if scope == mix.names else ", ".join(scope)
    print(
        f"criteria: p99 < {args.p99_ms:g} ms ({covers}) and no errors over {args.seconds:g} s and at least "
        f"{args.min_requests:,} requests, the default mix:"
    )
    print(f"  {mix.describe()}")
    print(f"baseline at {trickle.rate:g}/s (ms):")
    for line in reports.summary_lines(trickle.report)[1:]:
        print("  " + line)
    if best is None:
        print("no rate passed over the full length")
        return
    print(f"sustained: {best.rate:g} requests/s (throughput {best.report['throughput_per_second']:.1f}/s)")
    print("  " + best.line().split("  ", 1)[1].strip())
    misses = [a for a in attempts if a.full and not a.passed and a.rate > best.rate]
    if misses:
        miss = min(misses, key=lambda a: a.rate)
        print(f"  the lowest full-length miss above it: {miss.rate:g}/s ({miss.line().split('  ', 1)[1].strip()})")
    print("  per scenario at the sustained rate (ms):")
    for line in reports.summary_lines(best.report)[1:]:
        print("  " + line)
    out = args.out or Path("out") / "bench" / "sustained"
    best.report["isolation"] = [vars(row) for row in isolated]
    written = reports.write(best.report, out)
    print("wrote " + ", ".join(str(p) for p in written))


async def search(
    attempt: Callable[[float, float, bool], Awaitable[Attempt]],
    lengths: Callable[[float], tuple[float, float]],
    args: argparse.Namespace,
) -> Attempt | None:
    """Probes up by 1.5x until one misses, then full-length runs bisecting to within 10%."""
    rate, passed_probe, missed_probe = args.start, 0.0, None
    while missed_probe is None and rate <= args.max_rate:
        if (await attempt(rate, lengths(rate)[0], False)).passed:
            passed_probe, rate = rate, round(rate * 1.5, 1)
        else:
            missed_probe = rate
    low, high = 0.0, missed_probe
    best: Attempt | None = None
    candidate = passed_probe or args.start / 2
    for _ in range(args.runs):
        full = await attempt(candidate, lengths(candidate)[1], True)
        if full.passed:
            low, best = candidate, full
        else:
            high = candidate
        if high is None:
            candidate = round(candidate * 1.5, 1)
        elif low == 0.0:
            candidate = round(high * 0.7, 1)
        elif (high - low) / low <= 0.1:
            break
        else:
            candidate = round((low + high) / 2, 1)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench sustained", __doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a full run")
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--probe-requests", type=int, default=400, help="requests a probe sends at least")
    parser.add_argument(
        "--min-requests",
        type=int,
        default=1000,
        help="requests a full run sends at least (its p99 is then a tenth of its slowest 1%%)",
    )
    parser.add_argument("--start", type=float, default=10.0, help="first probe rate")
    parser.add_argument("--idle-rate", type=float, default=1.0, help="rate of the baseline run")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--idle-cpu-seconds", type=float, default=10.0, help="length of the idle measurement")
    parser.add_argument("--isolation-seconds", type=float, default=10.0, help="each scenario alone this long")
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--runs", type=int, default=4, help="full-length runs at most")
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument(
        "--slo-scenarios", help="the scenarios whose p99 the criterion covers, comma-separated (default: all)"
    )
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--seed-files", type=int, default=200)
    parser.add_argument("--out", type=Path, help="where the runs' reports go (default: out/bench/sustained)")
    args = parser.parse_args(argv)
    uvloop.run(run(args))
    return 0
