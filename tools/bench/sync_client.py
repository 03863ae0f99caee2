"""The sync client on many small files, against ``aws s3 sync``, ``rclone sync`` and a naive client, in the
same run.

A tree of ``--files`` small files (default 2,000 of 1 to 8 KiB, in 20 folders with 5 subfolders each) is
pushed to the same emulator by ``python -m tools.sync sync`` (the real CLI, as a user runs it: start-up included),
``aws s3 sync`` and ``rclone sync`` (which keep no versions and no metadata; rclone only when it is on the
PATH, else a note says it was skipped), and a naive client that makes one streaming PUT per file (4 at a
time). Then each pulls what it pushed to a new device (an empty folder; for the sync client a second
login, as a new device does), and syncs the tree again with nothing changed: the sync client should need one
feed request whatever the number of files, while the others list the bucket. ``--unchanged-files`` (default
10,000) sets the tree for a second no-change measurement. Service requests are read from the service's
/metrics. Goals: push and pull at least 1.5x ``aws s3 sync``, pull at least 1.2x ``rclone sync``, no-change
at least 2.5x ``aws s3 sync``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from tools.bench import BenchParser
from tools.bench.direct_upload import awscli
from tools.bench.harness import ROOT, Stack, clean_env, stack
from tools.sdk.client import FileSyncClient

PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway emulator


def make_tree(root: Path, files: int, size: int | None = None) -> None:
    """``files`` files of ``size`` bytes, or of 1 to 8 KiB (spread evenly) when no size is given, in nested
    folders: 20 at the top, 5 in each, files in both levels."""
    for i in range(files):
        folder = root / f"dir{i % 20:02d}"
        if i % 3:
            folder = folder / f"sub{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        length = size if size is not None else 1024 + (i * 7919) % (7 * 1024 + 1)
        (folder / f"file-{i:06d}.bin").write_bytes(os.urandom(length))


def same_tree(source: Path, copy: Path) -> None:
    """A pull must bring back exactly the tree that was pushed."""
    want = {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    got = {p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    if got != want:
        raise RuntimeError(f"{copy.name}: {len(got)} files pulled, {len(want)} pushed, or their bytes differ")


def service_requests(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("filesync_http_requests_total{") and 'route="/metrics"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def requests_now(api: FileSyncClient) -> float:
    _, body, _ = await api.request("GET", "/metrics")
    return service_requests(body.decode())


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {result.stderr[-500:]}")
    return time.perf_counter() - started


async def run(files: int, unchanged_files: int) -> None:
    aws = awscli()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tree, big_tree = base / "tree", base / "big-tree"
        make_tree(tree, files)
        make_tree(big_tree, unchanged_files, size=64)
        async with stack() as running:
            await _measure(running, base, tree, big_tree, files, unchanged_files, aws)


async def _measure(
    running: Stack, base: Path, tree: Path, big_tree: Path, files: int, unchanged: int, aws: Path
) -> None:
    async with FileSyncClient(running.service, timeout=3600) as api:
        for user in ("client", "naive", "bigtree"):
            await api.sign_up(user, PASSWORD)
        env = clean_env(FILESYNC_PASSWORD=PASSWORD)

        def cli(config: str, *args: str) -> list[str]:
            return [sys.executable, "-m", "tools.sync", "--config", str(base / config), *args]

        timed(cli("c1", "login", "--server", running.service, "client"), env)
        timed(cli("c2", "login", "--server", running.service, "bigtree"), env)
        timed(cli("c3", "login", "--server", running.service, "--device", "new", "client"), env)

        before = await requests_now(api)
        ours_initial = timed(cli("c1", "sync", "--quiet", str(tree)), env)
        ours_initial_requests = await requests_now(api) - before
        before = await requests_now(api)
        ours_again = timed(cli("c1", "sync", "--quiet", str(tree)), env)
        ours_again_requests = await requests_now(api) - before
        (base / "pull-ours").mkdir()
        before = await requests_now(api)
        ours_pull = timed(cli("c3", "sync", "--quiet", str(base / "pull-ours")), env)
        ours_pull_requests = await requests_now(api) - before
        same_tree(tree, base / "pull-ours")

        aws_env = clean_env(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator's fixed credentials
            AWS_DEFAULT_REGION="us-east-1",
        )
        target = f"s3://{running.settings.bucket}/aws-sync/"
        aws_sync = [str(aws), "--endpoint-url", running.emulator, "s3", "sync", "--quiet", str(tree), target]
        aws_initial = timed(aws_sync, aws_env)
        aws_again = timed(aws_sync, aws_env)
        pull = [str(aws), "--endpoint-url", running.emulator, "s3", "sync", "--quiet", target, str(base / "pull-aws")]
        aws_pull = timed(pull, aws_env)
        same_tree(tree, base / "pull-aws")

        rclone = shutil.which("rclone")
        rclone_times: tuple[float, float, float] | None = None
        if rclone is not None:
            rclone_env = clean_env(
                RCLONE_CONFIG=str(base / "rclone.conf"),  # none: the remote comes from the variables below
                RCLONE_CONFIG_EMU_TYPE="s3",
                RCLONE_CONFIG_EMU_PROVIDER="Other",
                RCLONE_CONFIG_EMU_ENDPOINT=running.emulator,
                RCLONE_CONFIG_EMU_ACCESS_KEY_ID="testing",
                RCLONE_CONFIG_EMU_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator's fixed credentials
                RCLONE_CONFIG_EMU_REGION="us-east-1",
            )
            remote = f"emu:{running.settings.bucket}/rclone-sync"
            push = [rclone, "sync", "--quiet", str(tree), remote]
            rclone_push = timed(push, rclone_env)
            rclone_again = timed(push, rclone_env)
            rclone_pull = timed([rclone, "sync", "--quiet", remote, str(base / "pull-rclone")], rclone_env)
            same_tree(tree, base / "pull-rclone")
            rclone_times = (rclone_push, rclone_pull, rclone_again)

        naive = FileSyncClient(running.service, timeout=3600)
        async with naive:
            await naive.log_in("naive", PASSWORD)
            ns = (await naive.account()).home_namespace
            bodies = await asyncio.to_thread(
                lambda: {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
            )
            slots = asyncio.Semaphore(4)  # the service streams at most 4 uploads per user at once

            async def put(path: str) -> None:
                async with slots:
                    await naive.put_stream(ns, path, bodies[path])

            started = time.perf_counter()
            await asyncio.gather(*(put(p) for p in bodies))
            naive_initial = time.perf_counter() - started

        timed(cli("c2", "sync", "--quiet", str(big_tree)), env)
        before = await requests_now(api)
        big_again = timed(cli("c2", "sync", "--quiet", str(big_tree)), env)
        big_again_requests = await requests_now(api) - before
        big_aws = f"s3://{running.settings.bucket}/aws-big/"
        aws_big = [str(aws), "--endpoint-url", running.emulator, "s3", "sync", "--quiet", str(big_tree), big_aws]
        timed(aws_big, aws_env)
        aws_big_again = timed(aws_big, aws_env)

    def rate(seconds: float, count: int) -> str:
        return f"{seconds:7.2f} s  {count / seconds:7.0f} files/s"

    print(f"{files:,} files of 1-8 KiB in nested folders; every figure includes the start-up of a process it starts")
    print(f"push, python -m tools.sync:   {rate(ours_initial, files)}  ({int(ours_initial_requests)} requests)")
    print(f"push, aws s3 sync:            {rate(aws_initial, files)}")
    if rclone_times is not None:
        print(f"push, rclone sync:            {rate(rclone_times[0], files)}")
    print(f"push, naive one PUT a file:   {rate(naive_initial, files)}  ({files} requests)")
    print(f"pull to a new device, ours:   {rate(ours_pull, files)}  ({int(ours_pull_requests)} requests)")
    print(f"pull to a new device, aws:    {rate(aws_pull, files)}")
    if rclone_times is not None:
        print(f"pull to a new device, rclone: {rate(rclone_times[1], files)}")
    print(f"no-change sync, ours:         {ours_again:7.2f} s  ({int(ours_again_requests)} service request)")
    print(f"no-change sync, aws s3 sync:  {aws_again:7.2f} s")
    if rclone_times is not None:
        print(f"no-change sync, rclone sync:  {rclone_times[2]:7.2f} s")
    else:
        print("rclone sync: skipped (rclone is not on the PATH; apt-get install rclone)")
    print("ratios (their time / ours; goals: push and pull >= 1.5 against aws, pull >= 1.2 against rclone,")
    print("no-change >= 2.5 against aws):")
    print(
        f"  aws s3 sync: push {aws_initial / ours_initial:.2f}, pull {aws_pull / ours_pull:.2f}, "
        f"no-change {aws_again / ours_again:.2f}"
    )
    if rclone_times is not None:
        print(
            f"  rclone sync: push {rclone_times[0] / ours_initial:.2f}, pull {rclone_times[1] / ours_pull:.2f}, "
            f"no-change {rclone_times[2] / ours_again:.2f}"
        )
    print(f"  naive / ours (push): {naive_initial / ours_initial:.2f}")
    print(f"no-change sync of {unchanged:,} files, ours: {big_again:6.2f} s ({int(big_again_requests)} request)")
    print(f"no-change sync of {unchanged:,} files, aws s3 sync: {aws_big_again:6.2f} s", end="; ")
    print(f"ratio {aws_big_again / big_again:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench sync_client", __doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--unchanged-files", type=int, default=10_000)
    args = parser.parse_args(argv)
    uvloop.run(run(args.files, args.unchanged_files))
    return 0
