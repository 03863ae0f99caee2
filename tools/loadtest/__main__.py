"""``python -m tools.loadtest``: load a file sync service with the real client paths and report how it held up.

Open loop (the default): requests are due at a target arrival rate, constant or a stepped ramp, evenly
spaced or Poisson, and latency counts from when each was due, so a slow server cannot hide its latency.
Closed loop (``--mode closed``): N users, each sending its next request when the previous one answered.
Always bounded by ``--duration`` and ``--max-requests``; refuses targets off this machine unless given
``--allow-remote``. Writes ``report.json`` and PNG plots to ``--out``.

``python -m tools.loadtest plot REPORT.json`` draws the plots of a saved report again.

Layer: tools (the command line: wires the workload, an engine, the recorder and the report).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from tools.loadtest import report as reports
from tools.loadtest.mix import DEFAULT_MIX, SCENARIOS, Mix
from tools.loadtest.recorder import Recorder
from tools.loadtest.runner import Limits, Memory, StatusLine, closed_loop, open_loop
from tools.loadtest.schedule import Step, arrivals, ramp
from tools.loadtest.target import RemoteTarget
from tools.loadtest.workload import Workload, WorkloadConfig, WrongAnswer
from tools.sdk.errors import ApiError


def _plain(text: str) -> str:
    """A docstring as help shows it: reST literals (double backticks) as plain text."""
    return re.sub(r"``(.+?)``", r"\1", text)


def plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.loadtest plot", description="Draw the plots of a saved report again, beside it."
    )
    p.add_argument("report", type=Path, metavar="REPORT.json", help="a report.json a run wrote")
    return p


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.loadtest",
        description=_plain(__doc__.split("\n\nLayer:")[0]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("target")
    where.add_argument("--server", default="http://127.0.0.1:8080", help="service URL (default %(default)s)")
    where.add_argument(
        "--spawn",
        action="store_true",
        help="start an emulator and the service in processes of their own for this run (ignores --server) "
        "and sample the service's memory",
    )
    where.add_argument("--service-pid", type=int, help="sample this local process's memory (the service's)")
    where.add_argument("--allow-remote", action="store_true", help="allow a target off this machine")

    load = p.add_argument_group("load")
    load.add_argument(
        "--mode",
        choices=("open", "closed"),
        default="open",
        help="open: requests due at --rate, latency from when each was due; closed: --concurrency users back to"
        " back (default open)",
    )
    load.add_argument("--rate", type=float, default=20.0, help="open loop: arrivals per second (default 20)")
    load.add_argument("--ramp-to", type=float, help="open loop: ramp from --rate to this rate in --steps steps")
    load.add_argument("--steps", type=int, default=5, help="steps of the ramp (default 5)")
    load.add_argument(
        "--arrival",
        choices=("constant", "poisson"),
        default="constant",
        help="open loop: evenly spaced arrivals, or Poisson ones (default constant)",
    )
    load.add_argument("--concurrency", type=int, default=10, help="closed loop: users in flight (default 10)")
    load.add_argument("--think", type=float, default=0.0, help="closed loop: seconds between a user's requests")
    load.add_argument(
        "--mix",
        default=",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items()),
        help=f"weights, name=weight,... of: {', '.join(SCENARIOS)} (default %(default)s)",
    )
    load.add_argument("--seed", type=int, help="seed of the arrival process and the mix draws")

    bounds = p.add_argument_group("bounds")
    bounds.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    bounds.add_argument("--max-requests", type=int, default=1_000_000, help="at most this many (default 1,000,000)")
    bounds.add_argument(
        "--max-in-flight",
        type=int,
        default=256,
        help="open loop: a request due while this many run is dropped and counted (default 256)",
    )
    bounds.add_argument("--timeout", type=float, default=30.0, help="seconds one scenario may take (default 30)")
    bounds.add_argument("--drain", type=float, default=10.0, help="seconds running requests may finish (default 10)")

    data = p.add_argument_group("users and data")
    data.add_argument("--users", type=int, default=10, help="accounts to spread requests over (default 10)")
    data.add_argument("--user-prefix", help="account names PREFIX-0...; existing ones are logged in to")
    data.add_argument("--seed-files", type=int, default=200, help="files in the shared namespace (default 200)")
    data.add_argument("--file-size", type=int, default=4096, help="bytes of each seeded file (default 4096)")
    data.add_argument("--small-size", type=int, default=4096, help="bytes of a small upload (default 4096)")

    out = p.add_argument_group("report")
    out.add_argument("--out", type=Path, help="report folder (default out/loadtest/<UTC time>)")
    out.add_argument("--no-plots", action="store_true", help="write report.json only, no PNG plots")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument("--rss-from", type=float, default=120.0, help="memory growth is measured from this second")
    out.add_argument("--slo-p99-ms", type=float, help="exit 1 if the p99 of all requests is at or over this")
    out.add_argument("--slo-errors", type=int, help="exit 1 if errors + dropped exceed this")
    out.add_argument("--slo-rss-growth", type=float, help="exit 1 if the service's memory grew more (percent)")
    return p


def rss_growth(timeline: list[dict[str, Any]], start: float) -> dict[str, Any] | None:
    """The service's memory from ``start`` to the end: the mean of the 10 s from ``start`` against the mean of
    the last 10 s (means of 10 samples, so one sample taken mid-request does not decide it), for the resident
    set and for its anonymous part (the heap: what a leak grows; the kernel may reclaim file-backed pages,
    which makes the resident set shrink for reasons of its own)."""
    found: dict[str, Any] = {}
    for key, prefix in (("rss_mib", ""), ("anon_mib", "anon_")):
        samples = [(row["t"], row[key]) for row in timeline if row.get(key) is not None]
        if len(samples) < 2:
            return None
        begin = [m for t, m in samples if start <= t < start + 10] or [samples[0][1]]
        end = [m for _, m in samples[-10:]]
        first, last = sum(begin) / len(begin), sum(end) / len(end)
        found["from_second"] = start if samples[0][0] <= start <= samples[-1][0] else samples[0][0]
        found[f"{prefix}start_mib"] = round(first, 1)
        found[f"{prefix}end_mib"] = round(last, 1)
        found[f"{prefix}peak_mib"] = max(m for _, m in samples)
        found[f"{prefix}growth_percent"] = round((last - first) / first * 100, 2)
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    mix = Mix.parse(args.mix)

    def say(text: str) -> None:
        if not args.quiet:
            sys.stderr.write(text + "\n")

    async with contextlib.AsyncExitStack() as stack:
        server, pid = args.server, args.service_pid
        if args.spawn:
            from tools.bench.harness import stack as spawn_stack

            say("starting an emulator and the service")
            running = await stack.enter_async_context(spawn_stack())
            server, pid = running.service, running.service_pid
        memory = _memory_reader(pid) if pid else None
        workload = await stack.enter_async_context(
            Workload(
                WorkloadConfig(
                    server=server,
                    users=args.users if args.mode == "open" else max(args.users, args.concurrency),
                    password=os.environ.get("FILESYNC_LOAD_PASSWORD", "load test password"),
                    seed_files=args.seed_files,
                    file_size=args.file_size,
                    small_size=args.small_size,
                    timeout=args.timeout,
                    connections=args.max_in_flight,
                    allow_remote=args.allow_remote,
                    **({"prefix": args.user_prefix} if args.user_prefix else {}),
                )
            )
        )
        await workload.setup(mix, say)
        limits = Limits(args.duration, args.max_requests, args.max_in_flight, args.timeout, args.drain)
        recorder = Recorder()
        status = None if args.quiet else StatusLine(args.duration)
        pick = workload.picker(mix, args.seed)
        started_at = datetime.now(UTC)
        if args.mode == "open":
            profile = (
                [Step(args.rate, args.duration)]
                if args.ramp_to is None
                else ramp(args.rate, args.ramp_to, args.steps, args.duration)
            )
            due = arrivals(profile, args.arrival, args.seed)
            wall = await open_loop(pick, due, limits, recorder, tick=status, memory=memory)
            described = (
                f"{args.rate:g}/s"
                if args.ramp_to is None
                else f"{args.rate:g} to {args.ramp_to:g}/s in {args.steps} steps"
            )
        else:
            wall = await closed_loop(
                pick, args.concurrency, limits, recorder, think=args.think, tick=status, memory=memory
            )
            described = f"{args.concurrency} users"
        if status:
            status.close()
        config = {
            "mode": args.mode,
            "server": server,
            "rate_description": described,
            "arrival": args.arrival if args.mode == "open" else None,
            "duration": args.duration,
            "max_requests": args.max_requests,
            "max_in_flight": args.max_in_flight,
            "timeout": args.timeout,
            "drain": args.drain,
            "users": args.concurrency if args.mode == "closed" else args.users,
            "mix": {name: round(mix.share(name), 4) for name in mix.names},
            "seed": args.seed,
            "workload": workload.describe(),
        }
        result = reports.build(recorder, wall=wall, config=config, started_at=started_at)
    result["service_rss"] = rss_growth(result["timeline"], args.rss_from)
    return result


def _memory_reader(pid: int) -> Memory:
    status = Path(f"/proc/{pid}/status")

    def read() -> tuple[int, int] | None:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            return int(fields["VmRSS"].split()[0]) * 1024, int(fields["RssAnon"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None

    return read


def check(report: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The objectives given on the command line that the run missed."""
    missed = []
    p99 = report["latency_ms"]["p99"]
    if args.slo_p99_ms is not None and p99 >= args.slo_p99_ms:
        missed.append(f"p99 {p99:.1f} ms >= {args.slo_p99_ms:g} ms")
    failures = report["requests"]["errors"] + report["requests"]["dropped"]
    if args.slo_errors is not None and failures > args.slo_errors:
        missed.append(f"{failures} errors + dropped > {args.slo_errors}")
    memory = report.get("service_rss")
    if args.slo_rss_growth is not None:
        if memory is None:
            missed.append("service memory not sampled (use --spawn or --service-pid)")
        else:
            for label, key in (("resident", "growth_percent"), ("anonymous", "anon_growth_percent")):
                if memory[key] >= args.slo_rss_growth:
                    missed.append(f"service {label} memory grew {memory[key]:.1f}% >= {args.slo_rss_growth:g}%")
    return missed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plot"]:
        import json

        plotting = plot_parser()
        source = plotting.parse_args(argv[1:]).report
        try:
            saved = json.loads(source.read_text())
        except (OSError, ValueError) as exc:
            plotting.error(f"cannot read {source}: {exc}")
        for path in reports.draw(saved, source.parent):
            print(path)
        return 0
    args = parser().parse_args(argv)
    try:
        Mix.parse(args.mix)
    except ValueError as exc:
        parser().error(str(exc))
    out = args.out or Path("out") / "loadtest" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        report = uvloop.run(run(args))
    except (RemoteTarget, ApiError, WrongAnswer) as exc:
        sys.stderr.write(f"loadtest: {exc}\n")
        return 2
    written = reports.write(report, out, plots=not args.no_plots)
    for line in reports.summary_lines(report):
        print(line)
    memory = report["service_rss"]
    if memory:
        print(
            f"service memory from {memory['from_second']:g} s to the end: resident {memory['start_mib']:.1f} -> "
            f"{memory['end_mib']:.1f} MiB ({memory['growth_percent']:+.2f}%, peak {memory['peak_mib']} MiB), "
            f"anonymous {memory['anon_start_mib']:.1f} -> {memory['anon_end_mib']:.1f} MiB "
            f"({memory['anon_growth_percent']:+.2f}%, peak {memory['anon_peak_mib']} MiB)"
        )
    print("wrote " + ", ".join(str(p) for p in written))
    missed = check(report, args)
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
