"""The sync client on a folder of a million files: wall time, peak memory, requests.

A tree of ``--files`` empty files (default 1,000,000, ``--per-folder`` to a folder) is made on local disk and
recorded as synced in the client's state database (as a first sync would leave it; the bodies and the server's
metadata play no part in a no-change check). Then ``python -m tools.sync sync`` runs as a user runs it, twice:
its wall time (process start-up included), its peak resident memory, and the service requests it made.
Baseline, in the same run: a bare ``os.scandir`` walk with ``stat`` of the same tree, the least any client must
do to notice a change.

With ``--changed``, the server's metadata is bulk-loaded too, one file is then edited, and a third run does a
full round: scan, compare of every page, the upload of that file. Its peak memory shows whether the client
holds the folder or a page.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from service.content import EMPTY_HASH
from tools.bench import BenchParser
from tools.bench.compare import bulk_load
from tools.bench.harness import ROOT, ProgressLine, RssSampler, clean_env, stack
from tools.bench.sync_client import PASSWORD, requests_now
from tools.sdk.client import FileSyncClient
from tools.sync.__main__ import Config
from tools.sync.state import StateEntry


def make_tree(root: Path, files: int, per_folder: int) -> list[tuple[str, int, int]]:
    """Empty files ``dNNNN/fNNNNNNN.txt``; returns (key, size, mtime) of each, as a sync records them."""
    progress = ProgressLine("making files", files, unit="files")
    made: list[tuple[str, int, int]] = []
    for start in range(0, files, per_folder):
        folder = root / f"d{start // per_folder:05d}"
        folder.mkdir(parents=True)
        for i in range(start, min(files, start + per_folder)):
            path = folder / f"f{i:07d}.txt"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            made.append((f"{folder.name}/{path.name}", 0, path.stat().st_mtime_ns))
        progress(min(per_folder, files - start))
    return made


def bare_walk(root: Path) -> int:
    count, stack_ = 0, [str(root)]
    while stack_:
        for entry in os.scandir(stack_.pop()):
            if entry.is_dir(follow_symlinks=False):
                stack_.append(entry.path)
            else:
                entry.stat(follow_symlinks=False)
                count += 1
    return count


async def run_cli(args: list[str], env: dict[str, str], expect: bytes = b"") -> tuple[float, int]:
    """Wall time and peak RSS of one CLI run."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with RssSampler(proc.pid, interval=0.05) as rss:
        out, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or expect not in out:
        raise RuntimeError(f"{args[5:7]} did not do what was expected: {out[-300:]!r} {err[-300:]!r}")
    return elapsed, rss.peak


async def run(files: int, per_folder: int, changed: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tree = base / "tree"
        made = make_tree(tree, files, per_folder)
        async with stack() as running, FileSyncClient(running.service, timeout=600) as api:
            await api.sign_up("scale", PASSWORD)
            env = clean_env(FILESYNC_PASSWORD=PASSWORD)
            cli = [sys.executable, "-m", "tools.sync", "--config", str(base / "config")]
            await run_cli([*cli, "login", "--server", running.service, "scale"], env, b"logged in")
            await api.log_in("scale", PASSWORD)
            ns = (await api.account()).home_namespace
            if changed:
                await bulk_load(running.settings, ns, [k for k, _, _ in made], EMPTY_HASH, size=0)
            cursor = (await api.compare(ns, {"entries": []})).cursor
            state = Config(base / "config").state_for(tree)
            state.set("namespace", ns)
            state.set("root", str(tree.resolve()))
            state.set("cursor", cursor)
            progress = ProgressLine("recording the synced state", files, unit="files")
            for start in range(0, files, 50_000):
                chunk = made[start : start + 50_000]
                state.record(StateEntry(k, k, size, mtime, EMPTY_HASH, 1) for k, size, mtime in chunk)
                progress(len(chunk))
            state.close()
            del made

            walk_started = time.perf_counter()
            walked = bare_walk(tree)
            walk = time.perf_counter() - walk_started

            results = []
            for _ in range(2):
                before = await requests_now(api)
                elapsed, peak = await run_cli([*cli, "sync", str(tree)], env, b"nothing changed")
                results.append((elapsed, peak, await requests_now(api) - before))
            full = None
            if changed:
                (tree / "d00000" / "f0000000.txt").write_bytes(b"edited")
                before = await requests_now(api)
                elapsed, peak = await run_cli([*cli, "sync", str(tree)], env, b"1 uploaded")
                full = (elapsed, peak, await requests_now(api) - before)

    print(f"client_scale: {files:,} files, nothing changed (python -m tools.sync sync, process start-up included)")
    for n, (elapsed, peak, requests) in enumerate(results, 1):
        print(f"  run {n}: {elapsed:.1f} s, peak RSS {peak / 2**20:.0f} MiB, {requests:.0f} service request(s)")
    best = min(r[0] for r in results)
    print(f"  baseline: a bare os.scandir + stat walk of the {walked:,} files: {walk:.1f} s")
    print(f"  ours / bare walk: {best / walk:.2f}")
    if full is not None:
        elapsed, peak, requests = full
        print(
            f"  one file edited, a full round (scan, compare of every page, one upload): {elapsed:.1f} s, "
            f"peak RSS {peak / 2**20:.0f} MiB, {requests:.0f} service requests"
        )


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench client_scale", __doc__)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-folder", type=int, default=1000)
    parser.add_argument(
        "--changed", action="store_true", help="also a full round after one edit (bulk-loads the server's metadata)"
    )
    args = parser.parse_args(argv)
    uvloop.run(run(args.files, args.per_folder, args.changed))
    return 0
