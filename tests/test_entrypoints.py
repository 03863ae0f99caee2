"""The two ways the service starts: ``python -m service`` (embedded default) and the Procfile's gunicorn.

Both run as real subprocesses on free loopback ports and are stopped by signal, as a user or a process
manager would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from service.app import create_app, gunicorn_app, make_runner
from service.settings import Settings, SettingsError
from tools.bench.harness import clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent


def aws_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A clean environment that points a service process at the test emulator, as AWS settings."""
    return clean_env(
        AWS_ENDPOINT_URL=settings.aws.endpoint_url or "",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        FILESYNC_BUCKET=settings.bucket,
        FILESYNC_TABLE=settings.table,
        FILESYNC_TOKEN_SECRET="t" * 40,
        FILESYNC_UPLOAD_ROLE_ARN=settings.upload_role_arn or "",
        **extra,
    )


async def wait_for(url: str, deadline: float, proc: subprocess.Popen | None = None) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        while True:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the process exited with {proc.returncode} before {url} answered")
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200:
                        return response
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer 200 in time")
            await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_python_m_service_serves_readyz_within_15s_and_stops_on_ctrl_c(tmp_path: Path):
    started = time.monotonic()
    with (tmp_path / "stdout").open("w+") as out:
        await _run_and_stop_embedded(out, started, tmp_path)


def _start_embedded(out, tmp_path: Path) -> subprocess.Popen:
    # A session of its own, so a signal can reach its whole process group as a terminal's Ctrl-C does.
    return subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=clean_env(HOME=str(tmp_path)),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def _served_url(out, proc: subprocess.Popen, started: float) -> str:
    url = None
    while url is None and time.monotonic() - started < 15:
        out.seek(0)
        match = re.search(r"serving on (http://\S+)", out.read())
        url = match.group(1) if match else None
        await asyncio.sleep(0.1)
    assert url, "no URL printed"
    await wait_for(f"{url}/readyz", started + 15, proc)
    return url


def _emulators_of(pid: int) -> list[int]:
    return [child for child in children(pid) if b"service.embedded" in Path(f"/proc/{child}/cmdline").read_bytes()]


async def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists() and b"service.embedded" in Path(f"/proc/{pid}/cmdline").read_bytes():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _run_and_stop_embedded(out, started: float, tmp_path: Path) -> None:
    proc = _start_embedded(out, tmp_path)
    try:
        await _served_url(out, proc, started)
        elapsed = time.monotonic() - started
        out.seek(0)
        printed = out.read()
        assert re.search(r"embedded AWS emulator at http://127\.0\.0\.1:\d+", printed)
        # The emulator is a process of its own (its own core and GIL), a child of the service.
        [emulator] = _emulators_of(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the service and its emulator both get it
        code = proc.wait(timeout=20)
    assert elapsed < 15
    out.seek(0)
    log = out.read()
    assert code == 0, log
    assert "Traceback" not in log
    # The emulator outlived the signal until the service had drained (the leases went back), then stopped.
    assert "could not hand back" not in log
    assert await _gone(emulator, 10), "the emulator outlived the service"


@pytest.mark.timeout(60)
async def test_the_embedded_emulator_exits_when_its_service_is_killed(tmp_path: Path):
    started = time.monotonic()
    with (tmp_path / "stdout").open("w+") as out:
        proc = _start_embedded(out, tmp_path)
        try:
            await _served_url(out, proc, started)
            [emulator] = _emulators_of(proc.pid)
        finally:
            proc.kill()
            proc.wait(timeout=20)
        assert await _gone(emulator, 10), "the emulator outlived a killed service"


def test_python_m_service_reports_bad_settings_clearly():
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=clean_env(AWS_REGION="us-east-1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "FILESYNC_TOKEN_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


@pytest.mark.timeout(90)
async def test_procfile_web_runs_gunicorn_with_two_workers(provisioned: Settings, tmp_path: Path):
    web_line = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    port = free_port()
    # As on the instances: one /metrics for all workers (prometheus-client's multiprocess mode).
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = aws_env(provisioned, PORT=str(port), WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    with (tmp_path / "gunicorn.log").open("w+") as log:
        await _run_and_stop_gunicorn(web_line, env, port, log, metrics_dir)


def _healthz_count(exposition: str) -> float:
    pattern = r'^filesync_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, exposition, re.M))


async def _run_and_stop_gunicorn(web_line: str, env: dict[str, str], port: int, log, metrics_dir: Path) -> None:
    proc = subprocess.Popen(["bash", "-c", web_line], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 45
        await wait_for(f"http://127.0.0.1:{port}/healthz", deadline, proc)
        await wait_for(f"http://127.0.0.1:{port}/readyz", deadline, proc)
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) == 2
        # Each worker keeps its values in the shared directory (a file it makes as it starts: the second
        # worker may still be starting when the first answers); any worker's /metrics sums them all.
        files = {f"gauge_livesum_{pid}.db" for pid in workers}
        while not files <= {p.name for p in metrics_dir.iterdir()} and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert files <= {p.name for p in metrics_dir.iterdir()}
        async with aiohttp.ClientSession() as session:
            for _ in range(20):  # fresh connections: the kernel spreads them over both workers
                async with session.get(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"}) as r:
                    assert r.status == 200
            counts = set()
            for _ in range(6):
                async with session.get(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"}) as r:
                    counts.add(_healthz_count(await r.text()))
        served = counts.pop()
        assert not counts, "two workers answered /metrics with different figures"
        assert served >= 21  # the 20 above and wait_for's
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=40)
    log.seek(0)
    output = log.read()
    assert code == 0, output
    assert "GunicornUVLoopWebWorker" in output or "Booting worker" in output
    # The master dropped the exited workers' live gauges.
    assert not list(metrics_dir.glob("gauge_livesum_*.db"))


async def test_gunicorn_refuses_the_embedded_default():
    with pytest.raises(SettingsError, match="python -m service"):
        await gunicorn_app()


async def test_shutdown_drains_in_flight_requests(provisioned: Settings, aws_session):
    app = create_app(provisioned, session=aws_session)
    entered = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await asyncio.sleep(1.0)
        return web.Response(text="finished")

    app.router.add_get("/slow", slow)
    runner = make_runner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow"))
        await entered.wait()
        await runner.cleanup()
        response = await request
        assert response.status == 200
        assert await response.text() == "finished"
