"""Helpers of the sync client's end-to-end tests: the real CLI in a subprocess, driven from async tests,
and service processes a test owns (so it may kill and restart them).

Tests layer: nothing here fakes the service, AWS or the client; the CLI runs exactly as a user runs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings
from tests.test_entrypoints import ROOT, aws_env, wait_for
from tools.bench.harness import clean_env

PASSWORD = "correct horse battery"
#: Small blocks keep multi-block files small (the tests' services use it too).
BLOCK = 5 * 1024 * 1024
TIMESTAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def one_error_line(self) -> str:
        """The single line a failure prints (and nothing that looks like a traceback anywhere)."""
        assert "Traceback" not in self.text, self.text
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]

    def suggested(self) -> list[str]:
        """The first command the output tells the user to run, as arguments for this CLI."""
        match = re.search(r"(python -m tools\.sync [^`\n]*)", self.text)
        assert match, f"no command suggested in: {self.text}"
        words = shlex.split(match.group(1))
        assert words[:3] == ["python", "-m", "tools.sync"]
        return words[3:]


class Device:
    """One device: a configuration directory and a synced folder, on one server."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.config = base / f"{name}-config"
        self.root = base / f"{name}-files"
        self.root.mkdir(parents=True, exist_ok=True)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tools.sync", "--config", str(self.config), *args]

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args),
            cwd=ROOT,
            env=clean_env(FILESYNC_PASSWORD=PASSWORD),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, expect: int | None = 0, timeout: float = 120) -> Outcome:
        proc = await self.start(*args)
        return await finish(proc, expect, timeout)

    async def command(self, words: list[str], expect: int | None = 0) -> Outcome:
        """Run a command line this CLI printed (which names its own ``--config``)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.sync",
            *words,
            cwd=ROOT,
            env=clean_env(FILESYNC_PASSWORD=PASSWORD),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return await finish(proc, expect)

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.utime(target, ns=(time.time_ns(), time.time_ns()))  # a later write in the same tick still shows

    def tree(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()
        }


async def finish(proc: asyncio.subprocess.Process, expect: int | None = 0, timeout: float = 120) -> Outcome:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    outcome = Outcome(proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode())
    assert "Traceback" not in outcome.text, outcome.text
    if expect is not None:
        assert outcome.code == expect, f"exit {outcome.code}, expected {expect}: {outcome.text}"
    return outcome


async def until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class ServiceProcess:
    """``python -m service`` on a fixed port (so a restart keeps the URL the devices saved), killable."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    def embedded(cls, port: int, log: Path) -> ServiceProcess:
        """The embedded default: its data lives as long as the process."""
        return cls(port, clean_env(FILESYNC_BLOCK_SIZE=str(BLOCK), FILESYNC_LOG_LEVEL="WARNING"), log)

    @classmethod
    def on_aws(cls, port: int, settings: Settings, s3_endpoint: str, log: Path) -> ServiceProcess:
        """Backed by the test's emulator (its data outlives the process); clients reach S3 at ``s3_endpoint``."""
        env = aws_env(
            settings,
            FILESYNC_S3_PUBLIC_ENDPOINT=s3_endpoint,
            FILESYNC_OPEN_SIGNUP="true",
            FILESYNC_ARGON2_TIME_COST="1",
            FILESYNC_ARGON2_MEMORY_KIB="8192",
            FILESYNC_ARGON2_PARALLELISM="1",
            FILESYNC_BLOCK_SIZE=str(BLOCK),
            FILESYNC_LOG_FORMAT="text",
        )
        return cls(port, env, log)

    async def ready(self) -> ServiceProcess:
        await wait_for(f"{self.url}/readyz", time.monotonic() + 60, self.proc)
        return self

    def kill(self) -> None:
        """Dies at once, as a crash or a power cut would end it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
        self._log.close()
