"""Background work on and off: what the notifier and the revocation poll cost an idle service, and whether
they slow a user's push.

Two services against emulators of their own, one after the other, ``--rounds`` times (alternating which goes
first): **on** is the embedded default's background work (a notifier in the process, token revocations read
every second), **off** has neither. Each is first left idle for ``--idle-seconds`` while its DynamoDB
requests are counted from its /metrics; then the same tree of ``--files`` small files (1 to 8 KiB) is pushed with
the sync client (``python -m tools.sync sync``, process start-up included) and timed, with the requests made
meanwhile counted by operation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from tools.bench import BenchParser
from tools.bench.compare import sample
from tools.bench.harness import clean_env, stack
from tools.bench.sync_client import PASSWORD, make_tree, timed
from tools.sdk.client import FileSyncClient

#: The service's environment for each mode (None removes a variable the harness sets).
MODES: dict[str, dict[str, str | None]] = {
    "on": {"FILESYNC_NOTIFIER_IN_PROCESS": "true", "FILESYNC_REVOCATION_POLL_SECONDS": None},
    "off": {"FILESYNC_NOTIFIER_IN_PROCESS": "false", "FILESYNC_REVOCATION_POLL_SECONDS": "3600"},
}
OPERATIONS = ("Query", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "TransactWriteItems", "DeleteItem")


async def dynamodb(api: FileSyncClient) -> dict[str, float]:
    _, body, _ = await api.request("GET", "/metrics")
    text = body.decode()
    return {op: sample(text, "filesync_aws_requests_total", service="dynamodb", operation=op) for op in OPERATIONS}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {op: after[op] - before[op] for op in after}


async def one(mode: str, tree: Path, base: Path, idle_seconds: float) -> tuple[float, float, dict[str, float]]:
    """(idle DynamoDB requests a second, push seconds, DynamoDB requests during the push by operation)."""
    async with stack(service_env=MODES[mode]) as running, FileSyncClient(running.service, timeout=3600) as api:
        await api.sign_up("pusher", PASSWORD)
        config = base / f"config-{mode}-{time.monotonic_ns()}"
        env = clean_env(FILESYNC_PASSWORD=PASSWORD)
        cli = [sys.executable, "-m", "tools.sync", "--config", str(config)]
        timed([*cli, "login", "--server", running.service, "pusher"], env)
        await asyncio.sleep(2)  # past start-up: the notifier has taken its shards
        before, started = await dynamodb(api), time.monotonic()
        await asyncio.sleep(idle_seconds)
        idle = sum(delta(await dynamodb(api), before).values()) / (time.monotonic() - started)
        before = await dynamodb(api)
        push = timed([*cli, "sync", "--quiet", str(tree)], env)
        return idle, push, delta(await dynamodb(api), before)


async def run(args: argparse.Namespace) -> None:
    idle: dict[str, list[float]] = {mode: [] for mode in MODES}
    push: dict[str, list[float]] = {mode: [] for mode in MODES}
    during: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tree = base / "tree"
        make_tree(tree, args.files)
        for round_ in range(args.rounds):
            for mode in list(MODES) if round_ % 2 == 0 else list(MODES)[::-1]:
                rate, seconds, requests = await one(mode, tree, base, args.idle_seconds)
                idle[mode].append(rate)
                push[mode].append(seconds)
                during[mode].append(requests)
                print(
                    f"round {round_ + 1} {mode:3s}: idle {rate:5.2f} DynamoDB requests/s; push of {args.files} files "
                    f"{seconds:6.2f} s ({args.files / seconds:5.0f} files/s), {sum(requests.values()):.0f} "
                    "DynamoDB requests during it",
                    flush=True,
                )
    print()
    for mode in MODES:
        ops = {op: statistics.median(r[op] for r in during[mode]) for op in OPERATIONS}
        shown = ", ".join(f"{op} {n:.0f}" for op, n in ops.items() if n)
        print(
            f"background {mode:3s}: idle {statistics.median(idle[mode]):.2f} DynamoDB requests/s (median); push "
            f"{statistics.median(push[mode]):.2f} s median of {args.rounds} ({shown})"
        )
    ratio = statistics.median(push["on"]) / statistics.median(push["off"])
    extra = statistics.median(idle["on"]) - statistics.median(idle["off"])
    print(f"push with / without background work: {ratio:.3f} (background: {extra:.2f} requests/s)")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench background", __doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    uvloop.run(run(args))
    return 0
