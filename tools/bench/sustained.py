"""Sustained load: the highest open-loop arrival rate of the load tool's default mix that the service holds
for ``--seconds`` (60) with p99 < ``--p99-ms`` (250) and no errors (nothing dropped, nothing failed). The
p99 is over all requests of the mix, or over the scenarios named by ``--slo-scenarios`` (all of the mix
still runs).

The service runs as ``python -m service`` in its own process against an emulator in another (the harness's
stack); the load tool's workload (its users, its seeded namespace, its scenarios over the SDK) runs here.
First a baseline in the same run: the mix at a trickle (``--idle-rate``, 1/s), i.e. each scenario's
latency without queueing, most of which is the emulator's. Then short probes (``--probe-seconds``) from
``--start``, 1.5x each time, until one misses; then full-length runs, bisecting between the highest
full-length pass and the lowest miss until they are within 10% (at most ``--runs`` of them). Each run's
share of service time spent in AWS calls (from the service's /metrics) says how much of the latency is
the emulator's. The best passing run's report and plots go to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from tools.bench.compare import sample
from tools.bench.harness import stack
from tools.loadtest import report as reports
from tools.loadtest.histogram import LatencyHistogram
from tools.loadtest.mix import DEFAULT_MIX, Mix
from tools.loadtest.recorder import Recorder
from tools.loadtest.runner import Limits, StatusLine, open_loop
from tools.loadtest.schedule import Step, arrivals
from tools.loadtest.workload import Workload, WorkloadConfig


@dataclass
class Attempt:
    rate: float
    seconds: float
    report: dict[str, Any]
    aws_share: float
    p99_limit: float
    p99: float  # ms, over the scenarios the criterion covers

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
        return (
            f"{self.rate:7.1f}/s {self.seconds:4.0f} s  throughput {self.report['throughput_per_second']:7.1f}/s  "
            f"p50 {latency['p50']:6.1f}  p99 {latency['p99']:6.1f} (criterion {self.p99:6.1f})  "
            f"max {latency['max']:7.1f} ms  "
            f"failures {self.failures:3d}  AWS share {self.aws_share:4.0%}  {'pass' if self.passed else 'MISS'}"
            + (f"  (p99 over the limit: {', '.join(slow)} ms)" if slow else "")
        )


async def timings(http: aiohttp.ClientSession, service: str) -> tuple[float, float]:
    """Seconds the service spent on requests and on AWS calls so far (its /metrics)."""
    async with http.get(service + "/metrics") as response:
        text = await response.text()
    return (
        sample(text, "filesync_http_request_duration_seconds_sum"),
        sample(text, "filesync_aws_call_duration_seconds_sum"),
    )


def say(text: str) -> None:
    sys.stderr.write(text + "\n")


async def run(args: argparse.Namespace) -> None:
    mix = Mix(DEFAULT_MIX)
    scope = Mix.parse(args.slo_scenarios).names if args.slo_scenarios else mix.names
    attempts: list[Attempt] = []
    async with stack() as running, aiohttp.ClientSession() as http:
        config = WorkloadConfig(server=running.service, users=args.users, seed_files=args.seed_files)
        async with Workload(config) as workload:
            await workload.setup(mix, say)

            async def attempt(rate: float, seconds: float) -> Attempt:
                recorder = Recorder()
                limits = Limits(seconds, 10_000_000, max_in_flight=256, timeout=30.0, drain=10.0)
                http_before, aws_before = await timings(http, running.service)
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
                http_after, aws_after = await timings(http, running.service)
                described = {"mode": "open", "rate_description": f"{rate:g}/s", "mix": mix.weights}
                built = reports.build(recorder, wall=wall, config=described, started_at=started_at)
                share = (aws_after - aws_before) / max(http_after - http_before, 1e-9)
                covered = LatencyHistogram()
                for name in scope:
                    if name in recorder.histograms:
                        covered.add(recorder.histograms[name])
                done = Attempt(rate, seconds, built, share, args.p99_ms, covered.percentile(99) * 1e3)
                attempts.append(done)
                print(done.line(), flush=True)
                await asyncio.sleep(2)  # let the service and emulator settle between runs
                return done

            print(f"baseline: the same mix at a trickle ({args.idle_rate:g}/s for {args.idle_seconds:g} s):")
            idle = await attempt(args.idle_rate, args.idle_seconds)
            print("search:")
            rate, passed_probe, missed_probe = args.start, 0.0, None
            while missed_probe is None and rate <= args.max_rate:
                if (await attempt(rate, args.probe_seconds)).passed:
                    passed_probe, rate = rate, round(rate * 1.5, 1)
                else:
                    missed_probe = rate
            low, high = 0.0, missed_probe
            best: Attempt | None = None
            candidate = passed_probe or args.start / 2
            for _ in range(args.runs):
                full = await attempt(candidate, args.seconds)
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
    print()
    covers = "every scenario" if scope == mix.names else ", ".join(scope)
    print(f"criteria: p99 < {args.p99_ms:g} ms ({covers}) and no errors over {args.seconds:g} s, the default mix:")
    print(f"  {mix.describe()}")
    print(f"baseline at {idle.rate:g}/s (ms):")
    for line in reports.summary_lines(idle.report)[1:]:
        print("  " + line)
    if best is None:
        print("no rate passed over the full length")
        return
    print(f"sustained: {best.rate:g} requests/s (throughput {best.report['throughput_per_second']:.1f}/s)")
    misses = [a for a in attempts if a.seconds == args.seconds and not a.passed and a.rate > best.rate]
    if misses:
        miss = min(misses, key=lambda a: a.rate)
        print(f"  the lowest full-length miss above it: {miss.rate:g}/s ({miss.line().split('  ', 1)[1].strip()})")
    print("  per scenario at the sustained rate (ms):")
    for line in reports.summary_lines(best.report)[1:]:
        print("  " + line)
    out = args.out or Path("out") / "bench" / "sustained"
    written = reports.write(best.report, out)
    print("wrote " + ", ".join(str(p) for p in written))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench sustained", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a full run")
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--start", type=float, default=4.0, help="first probe rate")
    parser.add_argument("--idle-rate", type=float, default=1.0, help="rate of the baseline run")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--runs", type=int, default=4, help="full-length runs at most")
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument(
        "--slo-scenarios", help="the scenarios whose p99 the criterion covers, comma-separated (default: all)"
    )
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--seed-files", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    uvloop.run(run(args))
    return 0
