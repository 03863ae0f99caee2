"""What the benchmarks share: an emulator and a service in processes of their own, RSS and CPU sampling, and
a progress line.

The emulator runs in its own process so that the service's memory and CPU are measured alone; the service
runs as ``python -m service`` against it with AWS settings, exactly as in production (``stack``), or as the
embedded default itself, ``python -m service`` with no settings at all, which starts its own emulator
(``embedded_default``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from service.embedded import provision_emulator
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def free_port() -> int:
    """A loopback TCP port free right now (the benchmarks' and the entry-point tests' child processes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell for a child process: no AWS or FILESYNC settings, no ``PORT`` or
    ``WEB_CONCURRENCY`` (either would override what the child is told), this interpreter's virtualenv on
    ``PATH``, unbuffered output; then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "FILESYNC_")) and k not in ("PORT", "WEB_CONCURRENCY")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def wait_http(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up in {within:.0f} s")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Stack:
    """A running emulator and service; ``settings`` are the service's (pointed at the emulator)."""

    emulator: str
    service: str
    service_pid: int
    settings: Settings
    emulator_pid: int = 0


@contextlib.asynccontextmanager
async def stack(
    block_size: int = 8 * MiB, upload_concurrency: int = 4, service_env: Mapping[str, str | None] | None = None
) -> AsyncIterator[Stack]:
    """An emulator and a service against it; ``service_env`` adds to the service's environment (None removes
    a variable)."""
    emulator_port, service_port = free_port(), free_port()
    emulator = f"http://127.0.0.1:{emulator_port}"
    with process(
        [sys.executable, "-m", "service.embedded", "--port", str(emulator_port)], clean_env()
    ) as emulator_process:
        await wait_http(emulator + "/moto-api/")
        suffix = secrets.token_hex(4)
        settings = Settings(bucket=f"bench-{suffix}", table=f"bench-{suffix}").for_emulator(emulator)
        provisioned = await provision_emulator(settings)
        env = clean_env(
            AWS_ENDPOINT_URL=emulator,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator's fixed credentials
            AWS_REGION="us-east-1",
            FILESYNC_BUCKET=settings.bucket,
            FILESYNC_TABLE=settings.table,
            FILESYNC_TOKEN_SECRET=secrets.token_urlsafe(48),
            FILESYNC_UPLOAD_ROLE_ARN=provisioned.upload_role_arn or "",
            FILESYNC_OPEN_SIGNUP="true",
            FILESYNC_ACCESS_TOKEN_SECONDS="7200",  # noqa: S106 - a lifetime, not a secret
            # Its once-a-second Query would be counted with the operation measured.
            FILESYNC_REVOCATION_POLL_SECONDS="3600",
            FILESYNC_BLOCK_SIZE=str(block_size),
            FILESYNC_UPLOAD_CONCURRENCY=str(upload_concurrency),
            FILESYNC_LOG_LEVEL="WARNING",
            MALLOC_MMAP_THRESHOLD_="131072",
        )
        for name, value in (service_env or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        with process(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(service_port)], env
        ) as service:
            url = f"http://127.0.0.1:{service_port}"
            await wait_http(url + "/healthz")
            yield Stack(emulator, url, service.pid, settings, emulator_process.pid)


@contextlib.asynccontextmanager
async def embedded_default(within: float = 90.0) -> AsyncIterator[Stack]:
    """``python -m service`` as a user starts it, with nothing configured: its own emulator (a child process),
    a notifier inside, revocations read every second, access logs at INFO. Its output is read until it
    prints where it serves, then dropped."""
    port = free_port()
    service = _spawn_reading([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)])
    assert service.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + within
        while not any(line.startswith("press Ctrl-C") for line in lines):
            if time.monotonic() > deadline or service.poll() is not None:
                raise RuntimeError("the embedded default did not start:\n" + "\n".join(lines[-20:]))
            left = max(0.1, deadline - time.monotonic())
            raw = await asyncio.wait_for(asyncio.to_thread(service.stdout.readline), left)
            lines.append(raw.decode(errors="replace").rstrip())
        threading.Thread(target=_discard, args=(service.stdout,), daemon=True).start()
        [emulator] = [line.split(" at ", 1)[1].split()[0] for line in lines if line.startswith("embedded AWS emulator")]
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/healthz")
        [child] = [pid for pid in children(service.pid) if b"service.embedded" in _cmdline(pid)]
        yield Stack(emulator, url, service.pid, Settings().for_emulator(emulator), child)
    finally:
        service.send_signal(signal.SIGINT)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        service.stdout.close()


def _discard(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


def _spawn_reading(args: list[str]) -> subprocess.Popen[bytes]:
    """``args`` started with nothing configured, its output (both streams) on a pipe."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        args, cwd=ROOT, env=clean_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of all its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far, user and system, all its threads (0 once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """The process's resident set now (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples a process's resident set every ``interval`` seconds; ``peak`` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_bytes(self.pid))

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(self.interval)


class ProgressLine:
    """One line on stderr, rewritten in place: ``label  done/total unit  rate``."""

    def __init__(self, label: str, total: int, unit: str = "MiB") -> None:
        self.label = label
        self.total = total
        self.scale = MiB if unit == "MiB" else 1
        self.unit = unit
        self.done = 0
        self.started = time.perf_counter()
        self._last = 0.0

    def __call__(self, amount: int) -> None:
        self.done += amount
        now = time.perf_counter()
        if now - self._last > 0.2 or self.done >= self.total:
            self._last = now
            rate = self.done / max(now - self.started, 1e-9) / self.scale
            done, total = self.done / self.scale, self.total / self.scale
            sys.stderr.write(f"\r{self.label}: {done:8.0f}/{total:.0f} {self.unit}  {rate:7.1f} {self.unit}/s ")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
