"""``python -m service users ...`` against the emulator, checked through the HTTP API."""

from __future__ import annotations

import subprocess
import sys

from service.settings import Settings
from tests.api.helpers import log_in, problem
from tests.test_entrypoints import ROOT, aws_env, clean_env


def run_admin(settings: Settings, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = aws_env(
        settings,
        FILESYNC_ARGON2_TIME_COST="1",
        FILESYNC_ARGON2_MEMORY_KIB="8192",
        FILESYNC_LOG_LEVEL="WARNING",
    )
    if password is not None:
        env["FILESYNC_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "service", "users", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


async def test_add_then_disable_a_user_from_the_command_line(client, provisioned):
    added = run_admin(provisioned, "add", "Zoe", password="zoe's long password")
    assert added.returncode == 0, added.stderr
    assert "created zoe" in added.stdout
    await log_in(client, "zoe", "zoe's long password")

    duplicate = run_admin(provisioned, "add", "zoe", password="zoe's long password")
    assert duplicate.returncode == 1
    assert "taken" in duplicate.stderr

    disabled = run_admin(provisioned, "disable", "zoe")
    assert disabled.returncode == 0, disabled.stderr
    response = await client.post("/v1/auth/token", json={"username": "zoe", "password": "zoe's long password"})
    await problem(response, 401)

    assert run_admin(provisioned, "enable", "zoe").returncode == 0
    await log_in(client, "zoe", "zoe's long password")


def test_bad_input_is_reported_without_a_traceback(provisioned):
    invalid = run_admin(provisioned, "add", "x", password="long enough password")
    assert invalid.returncode == 1
    assert "username" in invalid.stderr
    missing = run_admin(provisioned, "disable", "nobody-at-all")
    assert missing.returncode == 1
    assert "No user" in missing.stderr
    for result in (invalid, missing):
        assert "Traceback" not in result.stderr


def test_users_commands_need_aws_settings():
    result = subprocess.run(
        [sys.executable, "-m", "service", "users", "add", "someone"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "sign up" in result.stderr
