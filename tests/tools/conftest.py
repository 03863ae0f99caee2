"""A real service (the embedded default, in its own process) for the client tests of this package."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from tests.test_entrypoints import ROOT
from tools.bench.harness import clean_env

#: Small blocks keep multi-block files small.
BLOCK = 5 * 1024 * 1024


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    env = clean_env(FILESYNC_BLOCK_SIZE=str(BLOCK), FILESYNC_LOG_LEVEL="WARNING")
    with (tmp_path_factory.mktemp("service") / "log").open("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", "0"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            url = None
            while url is None and time.monotonic() < deadline:
                log.seek(0)
                match = re.search(r"serving on (http://\S+)", log.read())
                url = match.group(1) if match else None
                time.sleep(0.1)
            assert url, "the service did not start"
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
