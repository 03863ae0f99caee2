"""schemathesis against ``/v1/openapi.json``: every operation, positive and negative data, with a bearer
token and a real namespace: no 500s, every response conforms to the schema, negative data is rejected.

Tests layer: the service runs as ``python -m service`` (its own embedded emulator) and schemathesis as its
own CLI, with a fixed seed and deterministic generation in CI; ``FILESYNC_SCHEMATHESIS_EXAMPLES`` raises
the examples per operation for the longer randomized mode (docs/reliability.md).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.api.helpers import PASSWORD, bearer
from tests.test_entrypoints import ROOT, wait_for
from tools.bench.harness import clean_env, free_port

EXAMPLES = os.environ.get("FILESYNC_SCHEMATHESIS_EXAMPLES", "")


@pytest.mark.timeout(180)
async def test_schemathesis_finds_no_server_error_nor_schema_violation(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "service.log").open("w")
    service = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port)],
        cwd=ROOT,
        env=clean_env(HOME=str(tmp_path), FILESYNC_ARGON2_TIME_COST="1", FILESYNC_ARGON2_MEMORY_KIB="8192"),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        await wait_for(f"{url}/readyz", time.monotonic() + 30, service)
        async with aiohttp.ClientSession(base_url=url) as http:
            await http.post("/v1/auth/signup", json={"username": "fuzzer", "password": PASSWORD})
            token = bearer(
                await (await http.post("/v1/auth/token", json={"username": "fuzzer", "password": PASSWORD})).json()
            )
            ns = (await (await http.get("/v1/namespaces", headers=token)).json())["namespaces"][0]["id"]
        # A real namespace, so operations reach their logic instead of answering 404 to random ids.
        (tmp_path / "schemathesis.toml").write_text(f'[parameters]\n"path.ns" = "{ns}"\n')
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(tmp_path / "schemathesis.toml"),
            "run",
            f"{url}/v1/openapi.json",
            "--header",
            f"Authorization: {token['Authorization']}",
            "--checks",
            "not_a_server_error,response_schema_conformance,negative_data_rejection,status_code_conformance",
            # These end the fuzzer's own session or need its password: the rest would all be 401s.
            "--exclude-path-regex",
            "^/v1/(auth/logout|account/password|account/email)$",
            "--max-examples",
            EXAMPLES or "5",
            "--no-color",
        ]
        if not EXAMPLES:
            command += ["--seed", "1", "--generation-deterministic"]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=150)
        report = done.stdout + done.stderr
        assert done.returncode == 0, report[-6000:]
        assert re.search(r"\d+ generated, \d+ passed", report), report[-3000:]
        assert "Authentication failed" not in report, report[-3000:]
    finally:
        service.send_signal(signal.SIGINT)
        service.wait(timeout=20)
        log.close()
    # aiohttp logs the malformed requests it refuses with 400 (a NUL in a header); only our own 500s count.
    assert "unhandled error" not in (tmp_path / "service.log").read_text()
