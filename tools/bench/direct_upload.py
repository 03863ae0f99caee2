"""One large file end to end, as the user waits for it: our ``sync`` against ``aws s3 cp``, both ways, in one run.

A folder holding one file of ``--size-mib`` random bytes (default 256) is pushed with the sync client as a
user runs it (``python -m tools.sync sync FOLDER``: process start-up, scan, hashing, credentials, the
upload and the commit included), then pulled by a new device (a second configuration directory syncing an
empty folder: the download, its verification and the rename into place included). The baseline is the AWS
CLI (v1, installed on first use into ``.bench/awscli``) copying the same file to and from the same
emulator with its defaults (8 MiB parts, 10 requests in flight), its process start-up included too. The
service runs with its default verification (``checksum``: the commit reads no bytes back; the S3 reads
the service makes during the push are counted from its ``/metrics``). Beside them, the SDK's upload with
the client ready (credentials minted, file hashed, S3 client open), and the CPU time each command and the
emulator used (less sensitive than wall time to what else the machine runs). Each round uses new accounts (so
nothing is deduplicated) and rotates the order; every object is deleted after each round (the emulator
keeps bodies in memory and slows as it fills). The best of ``--rounds`` is kept for each; the ratios are
``aws s3 cp`` time / ours (goal: at least 1.0 both ways).
"""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvloop

from tools.bench import BenchParser
from tools.bench.harness import ROOT, MiB, ProgressLine, Stack, clean_env, cpu_seconds, stack
from tools.sdk.client import FileSyncClient
from tools.sdk.hashing import hash_file
from tools.sdk.transfer import S3Transfer

AWSCLI_VENV = ROOT / ".bench" / "awscli"
PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway emulator


@contextlib.asynccontextmanager
async def cleanup_client(endpoint: str) -> AsyncIterator[Any]:
    import aioboto3

    session = aioboto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the emulator's fixed credentials
        region_name="us-east-1",
    )
    async with session.client("s3", endpoint_url=endpoint) as s3:
        yield s3


async def empty_bucket(s3: Any, bucket: str) -> None:
    """Delete every version of every object (the bucket is versioned: a plain delete keeps the bytes)."""
    paginator = s3.get_paginator("list_object_versions")
    async for page in paginator.paginate(Bucket=bucket):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            await s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])


def awscli() -> Path:
    aws = AWSCLI_VENV / "bin" / "aws"
    if not aws.exists():
        sys.stderr.write("installing the AWS CLI into .bench/awscli (first run only)...\n")
        subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", "awscli"], check=True
        )
    return aws


def timed(args: list[str], env: dict[str, str]) -> float:
    return measured(args, env)[0]


def measured(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """A command's wall time and the CPU time (user and system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])} failed ({result.returncode}): {result.stderr[-800:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def s3_reads(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("filesync_aws_requests_total{") and 'service="s3"' in line and "GetObject" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Figures:
    def __init__(self, emulator_pid: int = 0) -> None:
        self.emulator_pid = emulator_pid
        self.times: dict[str, list[float]] = {}
        self.cpu: dict[str, list[tuple[float, float]]] = {}
        self.service_reads: list[float] = []

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)

    def run(self, name: str, args: list[str], env: dict[str, str]) -> None:
        """Time a command, with its own CPU time and the emulator's meanwhile."""
        emulator = cpu_seconds(self.emulator_pid)
        wall, cpu = measured(args, env)
        self.add(name, wall)
        self.cpu.setdefault(name, []).append((cpu, cpu_seconds(self.emulator_pid) - emulator))

    def best(self, name: str) -> float:
        return min(self.times[name])

    def cpu_of(self, name: str) -> tuple[float, float]:
        """The median run's (command CPU, emulator CPU)."""
        runs = sorted(self.cpu[name])
        return runs[len(runs) // 2]


async def run(size: int, rounds: int, concurrency: int) -> None:
    aws = awscli()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        source = base / "source" / "big.bin"
        source.parent.mkdir()
        with source.open("wb") as handle:
            for _ in range(size // MiB):
                handle.write(os.urandom(MiB))
        async with stack() as running:
            figures = Figures(running.emulator_pid)
            env = clean_env(FILESYNC_PASSWORD=PASSWORD)
            aws_env = clean_env(
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator's fixed credentials
                AWS_DEFAULT_REGION="us-east-1",
            )
            sync_startup = min(timed([sys.executable, "-m", "tools.sync", "--help"], env) for _ in range(3))
            aws_startup = min(timed([str(aws), "--version"], aws_env) for _ in range(3))
            async with FileSyncClient(running.service, timeout=3600) as api, cleanup_client(running.emulator) as admin:
                await _warm_up(running, admin, aws, aws_env)
                for round_ in range(rounds):
                    contenders = ["ours", "aws", "sdk"]
                    for name in contenders[round_ % 3 :] + contenders[: round_ % 3]:
                        work = base / f"round{round_}-{name}"
                        work.mkdir()
                        if name == "ours":
                            await _ours(running, api, env, source, work, round_, figures)
                        elif name == "aws":
                            await asyncio.to_thread(_aws, running, aws, aws_env, source, work, round_, figures)
                        else:
                            await _sdk(running, api, source, round_, rounds, concurrency, figures)
                        shutil.rmtree(work)
                        await empty_bucket(admin, running.settings.bucket)
    _report(size, rounds, figures, sync_startup, aws_startup)


async def _warm_up(running: Stack, admin: Any, aws: Path, aws_env: dict[str, str]) -> None:
    """The emulator loads each service lazily, and the first of each request costs more: one small copy
    each way before anything is timed."""
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "warm.bin"
        small.write_bytes(os.urandom(MiB))
        target = f"s3://{running.settings.bucket}/warm/warm.bin"
        cli = [str(aws), "--endpoint-url", running.emulator, "s3", "cp", "--quiet"]
        await asyncio.to_thread(timed, [*cli, str(small), target], aws_env)
        await asyncio.to_thread(timed, [*cli, target, str(Path(tmp) / "back.bin")], aws_env)
    await empty_bucket(admin, running.settings.bucket)


async def _ours(
    running: Stack, api: FileSyncClient, env: dict[str, str], source: Path, work: Path, round_: int, figures: Figures
) -> None:
    user = f"sync{round_}"
    await api.sign_up(user, PASSWORD)

    def cli(device: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "tools.sync", "--config", str(work / device), *args]

    pushed, pulled = work / "pushed", work / "pulled"
    pushed.mkdir()
    pulled.mkdir()
    os.link(source, pushed / source.name)  # the same bytes, no copy
    for device in ("a", "b"):
        await asyncio.to_thread(timed, cli(device, "login", "--server", running.service, user), env)
    sys.stderr.write(f"sync push and pull, round {round_ + 1}...\n")
    before = await _metrics(api)
    await asyncio.to_thread(figures.run, "ours push", cli("a", "sync", "--quiet", str(pushed)), env)
    figures.service_reads.append(s3_reads(await _metrics(api)) - s3_reads(before))
    await asyncio.to_thread(figures.run, "ours pull", cli("b", "sync", "--quiet", str(pulled)), env)
    if not filecmp.cmp(source, pulled / source.name, shallow=False):
        raise RuntimeError("the pulled file differs from the pushed one")


def _aws(
    running: Stack, aws: Path, aws_env: dict[str, str], source: Path, work: Path, round_: int, figures: Figures
) -> None:
    cli = [str(aws), "--endpoint-url", running.emulator, "s3", "cp", "--quiet"]
    target = f"s3://{running.settings.bucket}/cli/{round_}/{source.name}"
    sys.stderr.write(f"aws s3 cp both ways, round {round_ + 1}...\n")
    figures.run("aws push", [*cli, str(source), target], aws_env)
    figures.run("aws pull", [*cli, target, str(work / source.name)], aws_env)
    if not filecmp.cmp(source, work / source.name, shallow=False):
        raise RuntimeError("the file aws s3 cp pulled differs from the one it pushed")


async def _sdk(
    running: Stack, api: FileSyncClient, source: Path, round_: int, rounds: int, concurrency: int, figures: Figures
) -> None:
    user = f"sdk{round_}"
    await api.sign_up(user, PASSWORD)
    await api.log_in(user, PASSWORD)
    ns = (await api.account()).home_namespace
    block = (await api.config()).block_size
    digest = await hash_file(source, block)
    creds = await api.credentials([ns])
    async with S3Transfer(creds, block, concurrency=concurrency) as s3:
        progress = ProgressLine(f"SDK upload, client ready {round_ + 1}/{rounds}", digest.size)
        started = time.perf_counter()
        await s3.upload(ns, source, digest, progress=progress)
        figures.add("sdk upload", time.perf_counter() - started)


async def _metrics(api: FileSyncClient) -> str:
    _, body, _ = await api.request("GET", "/metrics")
    return body.decode()


def _report(size: int, rounds: int, figures: Figures, sync_startup: float, aws_startup: float) -> None:
    def rate(name: str) -> str:
        seconds = figures.best(name)
        every = ", ".join(f"{t:.2f}" for t in figures.times[name])
        return f"{seconds:6.2f} s  {size / seconds / MiB:7.1f} MiB/s  (each round: {every})"

    print(f"one file of {size / MiB:.0f} MiB (random bytes), best of {rounds}; wall times, process start-up included")
    print(f"push, python -m tools.sync sync (a folder holding it): {rate('ours push')}")
    print(f"push, aws s3 cp:                                       {rate('aws push')}")
    print(f"pull to a new device, python -m tools.sync sync:       {rate('ours pull')}")
    print(f"pull, aws s3 cp:                                       {rate('aws pull')}")
    push = figures.best("aws push") / figures.best("ours push")
    pull = figures.best("aws pull") / figures.best("ours pull")
    print(f"ratio aws s3 cp / ours: push {push:.2f}, pull {pull:.2f}  (goal >= 1.0 each)")
    for way in ("push", "pull"):
        (ours, ours_emulator), (theirs, their_emulator) = figures.cpu_of(f"ours {way}"), figures.cpu_of(f"aws {way}")
        print(
            f"CPU per {way} (median run): the client {ours:.2f} s, the emulator {ours_emulator:.2f} s;"
            f" aws s3 cp {theirs:.2f} s, the emulator {their_emulator:.2f} s"
        )
    reads = max(figures.service_reads)
    print(f"S3 GetObject requests the service made during a push (its commit's verification): {reads:.0f}")
    print(f"SDK upload with the client ready (credentials, hash, S3 client in hand): {rate('sdk upload')}")
    print(f"process start-up alone: sync --help {sync_startup:.2f} s, aws --version {aws_startup:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench direct_upload", __doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="parts in flight for the SDK's own upload")
    args = parser.parse_args(argv)
    uvloop.run(run(args.size_mib * MiB, args.rounds, args.concurrency))
    return 0
