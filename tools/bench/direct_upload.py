"""Direct upload of a large file with the SDK versus ``aws s3 cp``, to the same endpoint, in the same run.

The SDK path is what the sync client does: hash the file into its blocks (the content hash names the
blob), mint scoped credentials, then a concurrent multipart upload whose parts are the blocks, each with
its SHA-256. The baseline is the AWS CLI (v1, installed on first use into ``.bench/awscli``) copying the
same file to the same emulator with its defaults (8 MiB parts, 10 requests in flight). Runs alternate and
the best of ``--rounds`` is kept for each. The CLI runs twice per round: with its defaults, and with
``--checksum-algorithm SHA256`` (the integrity the SDK always asks for; the emulator spends most of a
multipart completion computing that checksum, so this is the like-for-like baseline). Reported: SDK upload
with the client ready, SDK end to end (hash, credentials, client start, upload), the CLI's wall time less
its start-up (measured separately), and the ratios (goal: at least 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvloop

from service.resources import blob_key
from tools.bench.harness import ROOT, MiB, ProgressLine, clean_env, stack
from tools.sdk.client import FileSyncClient
from tools.sdk.hashing import hash_file
from tools.sdk.transfer import S3Transfer

AWSCLI_VENV = ROOT / ".bench" / "awscli"


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


def awscli() -> Path:
    aws = AWSCLI_VENV / "bin" / "aws"
    if not aws.exists():
        sys.stderr.write("installing the AWS CLI into .bench/awscli (first run only)...\n")
        subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", "awscli"], check=True
        )
    return aws


def timed_cli(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    return time.perf_counter() - started


async def run(size: int, concurrency: int, rounds: int) -> None:
    aws = awscli()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "big.bin"
        with source.open("wb") as handle:
            for _ in range(size // MiB):
                handle.write(os.urandom(MiB))
        async with stack() as running:
            env = clean_env(
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator's fixed credentials
                AWS_DEFAULT_REGION="us-east-1",
            )
            cli = [str(aws), "--endpoint-url", running.emulator, "s3", "cp", "--quiet"]
            startup = min(timed_cli([str(aws), "--version"], env) for _ in range(3))
            async with FileSyncClient(running.service) as api:
                await api.sign_up("bench", "benchmark password")
                await api.log_in("bench", "benchmark password")
                ns = (await api.account()).home_namespace
                block = (await api.config()).block_size
                sdk_upload: list[float] = []
                sdk_total: list[float] = []
                cli_times: list[float] = []
                cli_sha_times: list[float] = []
                bucket = running.settings.bucket

                async def sdk_run(round_: int) -> str:
                    started = time.perf_counter()
                    digest = await hash_file(source, block)
                    creds = await api.credentials([ns])
                    async with S3Transfer(creds, block, concurrency=concurrency) as s3:
                        ready = time.perf_counter()
                        progress = ProgressLine(f"SDK upload {round_ + 1}/{rounds}", size)
                        await s3.upload(ns, source, digest, progress=progress)
                        done = time.perf_counter()
                    sdk_upload.append(done - ready)
                    sdk_total.append(done - started)
                    return blob_key(ns, digest.content_hash)

                def cli_run(round_: int, sha256: bool) -> str:
                    key = f"cli/{round_}-{'sha256' if sha256 else 'default'}"
                    extra = ["--checksum-algorithm", "SHA256"] if sha256 else []
                    sys.stderr.write(f"aws s3 cp {' '.join(extra)} {round_ + 1}/{rounds}...\n")
                    elapsed = timed_cli([*cli, *extra, str(source), f"s3://{bucket}/{key}"], env)
                    (cli_sha_times if sha256 else cli_times).append(elapsed)
                    return key

                async with cleanup_client(running.emulator) as admin:
                    for round_ in range(rounds):
                        # Rotate the order, and delete each upload at once: the emulator keeps every
                        # body in memory and slows down as it fills, which must not favour anyone.
                        contenders = ["sdk", "cli", "cli-sha256"]
                        for name in contenders[round_ % 3 :] + contenders[: round_ % 3]:
                            if name == "sdk":
                                key = await sdk_run(round_)
                            else:
                                key = await asyncio.to_thread(cli_run, round_, name == "cli-sha256")
                            await admin.delete_object(Bucket=bucket, Key=key)
    upload, total, cli_wall = min(sdk_upload), min(sdk_total), min(cli_times)
    cli_transfer = cli_wall - startup
    cli_sha = min(cli_sha_times) - startup

    def rate(seconds: float) -> str:
        return f"{seconds:6.2f} s  {size / seconds / MiB:7.1f} MiB/s"

    print(f"file {size / MiB:.0f} MiB, 8 MiB parts; SDK {concurrency} parts in flight; best of {rounds}")
    print(f"SDK upload (client ready):               {rate(upload)}")
    print(f"SDK end to end (hash, credentials, client start, upload): {rate(total)}")
    print(f"aws s3 cp, wall:                         {rate(cli_wall)}")
    print(f"aws s3 cp, wall less its {startup:.2f} s start-up: {rate(cli_transfer)}")
    print(f"aws s3 cp --checksum-algorithm SHA256, less start-up: {rate(cli_sha)}")
    print(f"throughput ratio SDK / aws s3 cp (defaults): {cli_transfer / upload:.2f}  (goal >= 1.0)")
    print(f"throughput ratio SDK / aws s3 cp (SHA-256 parts, as the SDK): {cli_sha / upload:.2f}")
    print(f"end-to-end ratio (both including start-up; SDK also hashes): {cli_wall / total:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench direct_upload", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    uvloop.run(run(args.size_mib * MiB, args.concurrency, args.rounds))
    return 0
