"""``python -m service.notifier`` (the Procfile's ``notifier:`` line) as its own process against the emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import subprocess
import sys
import time
import uuid

import aiohttp

from service.embedded import provision_emulator
from service.settings import NotifySettings
from tests.api.helpers import PASSWORD, bearer, log_in
from tests.api.test_mail_feedback import publish
from tests.api.test_notifications import CONFIRM_SUBJECT, EMPTY, confirm, confirmation_link, mail_to, text_of
from tests.core.test_feedback import bounce
from tests.test_entrypoints import ROOT, aws_env
from tools.bench.harness import clean_env


async def test_the_notifier_process_sends_a_digest_and_stops_on_sigterm(
    provisioned, make_client, app_factory, moto_endpoint
):
    settings = dataclasses.replace(provisioned, notify=NotifySettings(shards=4, in_process=False))
    client = await make_client(app_factory(settings))
    address = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    await client.post("/v1/auth/signup", json={"username": "alice", "password": PASSWORD})
    await client.post("/v1/auth/signup", json={"username": "bob", "password": PASSWORD, "email": address})
    await confirm(client, address)
    alice, bob = bearer(await log_in(client, "alice")), bearer(await log_in(client, "bob"))
    ns = (await (await client.post("/v1/namespaces", json={"name": "Team"}, headers=alice)).json())["id"]
    await client.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "viewer"}, headers=alice)
    assert (await client.put(f"/v1/ns/{ns}/follow", headers=bob)).status == 200

    env = aws_env(
        settings,
        FILESYNC_MAIL_FROM=settings.mail_from,
        FILESYNC_PUBLIC_URL="https://files.test",
        FILESYNC_NOTIFY_SHARDS="4",
        FILESYNC_NOTIFY_WINDOW_SECONDS="0.5",
        FILESYNC_NOTIFY_TICK_SECONDS="0.2",
        FILESYNC_LOG_FORMAT="text",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.notifier"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        entry = {"path": "plan.txt", "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}
        response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry]}, headers=alice)
        assert response.status == 200
        deadline = time.monotonic() + 30
        while not (mails := await mail_to(moto_endpoint, address)):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "no email within 30 s"
            await asyncio.sleep(0.2)
        assert "plan.txt added (by alice)" in text_of(mails[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


async def test_two_notifier_processes_at_once_send_each_digest_once(provisioned, make_client, app_factory, tmp_path):
    settings = dataclasses.replace(provisioned, notify=NotifySettings(shards=8, in_process=False))
    client = await make_client(app_factory(settings))
    tag = uuid.uuid4().hex[:8]
    followers = [f"follower{i}" for i in range(6)]  # usernames are 3 to 32 characters
    await client.post("/v1/auth/signup", json={"username": "alice", "password": PASSWORD})
    alice = bearer(await log_in(client, "alice"))
    ns = (await (await client.post("/v1/namespaces", json={"name": "Team"}, headers=alice)).json())["id"]
    for name in followers:
        body = {"username": name, "password": PASSWORD, "email": f"{name}-{tag}@example.com"}
        assert (await client.post("/v1/auth/signup", json=body)).status == 201
        await confirm(client, body["email"])
        await client.put(f"/v1/namespaces/{ns}/members/{name}", json={"role": "viewer"}, headers=alice)
        assert (await client.put(f"/v1/ns/{ns}/follow", headers=bearer(await log_in(client, name)))).status == 200
    env = aws_env(
        settings,
        FILESYNC_MAIL_FROM=settings.mail_from,
        FILESYNC_PUBLIC_URL="https://files.test",
        FILESYNC_NOTIFY_SHARDS="8",
        FILESYNC_NOTIFY_WINDOW_SECONDS="1",
        FILESYNC_NOTIFY_TICK_SECONDS="0.2",
        FILESYNC_NOTIFY_LEASE_SECONDS="3",  # leases looked at every 0.5 s: the two share the shards quickly
        FILESYNC_LOG_FORMAT="text",
    )
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    outputs = [log.open("w") for log in logs]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.notifier"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
        for output in outputs
    ]
    try:
        await asyncio.sleep(2.5)  # both running and sharing the shards before the changes arrive
        for i in range(5):
            entry = {"path": f"doc{i}.txt", "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}
            assert (await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry]}, headers=alice)).status == 200
        deadline = time.monotonic() + 40
        while True:
            counts = [len(await mail_to("", f"{name}-{tag}@example.com")) for name in followers]
            if all(counts) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # long enough for a second copy to show up, were one to be sent
        counts = [len(await mail_to("", f"{name}-{tag}@example.com")) for name in followers]
        # Who held what while they both ran (at shutdown one takes over what the other hands back).
        last_held = [re.findall(r"holds shards \[([\d, ]*)\]", log.read_text())[-1] for log in logs]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=20)
        for output in outputs:
            output.close()
    errors = [log.read_text() for log in logs]
    assert counts == [1] * len(followers), counts
    assert all(proc.returncode == 0 for proc in procs), errors
    held = [set(map(int, filter(None, h.split(", ")))) for h in last_held]
    assert all(held), f"one notifier did all the work: {held}"
    assert held[0] | held[1] == set(range(8))
    assert not held[0] & held[1]


def test_the_notifier_process_refuses_to_run_without_aws_settings():
    done = subprocess.run(
        [sys.executable, "-m", "service.notifier"], cwd=ROOT, env=clean_env(), capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"needs AWS settings" in done.stderr


async def test_the_embedded_default_runs_a_notifier_whose_links_point_at_itself(tmp_path):
    """``python -m service`` with no settings: follow, change, and the digest arrives in its emulator's SES."""
    with (tmp_path / "out").open("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", "0"],
            cwd=ROOT,
            env=clean_env(HOME=str(tmp_path), FILESYNC_NOTIFY_WINDOW_SECONDS="0.5", FILESYNC_NOTIFY_TICK_SECONDS="0.2"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            url = emulator = None
            while emulator is None:
                assert time.monotonic() < deadline, "the service did not start"
                await asyncio.sleep(0.1)
                out.seek(0)
                printed = out.read()
                served = re.search(r"serving on (http://\S+)", printed)
                found = re.search(r"emulator at (http://\S+)", printed)
                url, emulator = (served.group(1), found.group(1)) if served and found else (None, None)
            async with aiohttp.ClientSession(base_url=url) as http:
                for name, extra in (("alice", {}), ("bob", {"email": "bob@example.com"})):
                    signup = await http.post("/v1/auth/signup", json={"username": name, "password": PASSWORD, **extra})
                    assert signup.status == 201, await signup.text()
                # Bob confirms his address with the link mailed to it (the only mail it gets until then).
                async with http.get(f"{emulator}/moto-api/data.json") as response:
                    sent = (await response.json(content_type=None))["ses"]["RawMessage"]
                [mailed] = [m["raw_data"] for m in sent if "bob@example.com" in m["destinations"]]
                assert CONFIRM_SUBJECT in mailed
                confirmed = await http.post(confirmation_link(mailed))
                assert confirmed.status == 200, await confirmed.text()
                tokens = {}
                for name in ("alice", "bob"):
                    login = await http.post("/v1/auth/token", json={"username": name, "password": PASSWORD})
                    tokens[name] = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
                created = await http.post("/v1/namespaces", json={"name": "Team"}, headers=tokens["alice"])
                home = (await created.json())["id"]
                shared = await http.put(
                    f"/v1/namespaces/{home}/members/bob", json={"role": "viewer"}, headers=tokens["alice"]
                )
                assert shared.status == 200
                assert (await http.put(f"/v1/ns/{home}/follow", headers=tokens["bob"])).status == 200
                entry = {"path": "hello.txt", "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}
                committed = await http.post(f"/v1/ns/{home}/commit", json={"entries": [entry]}, headers=tokens["alice"])
                assert committed.status == 200
                raw = None
                while raw is None:
                    assert time.monotonic() < deadline + 30, "no email from the embedded notifier"
                    async with http.get(f"{emulator}/moto-api/data.json") as response:
                        sent = (await response.json(content_type=None))["ses"]["RawMessage"]
                    raw = next(
                        (
                            m["raw_data"]
                            for m in sent
                            if "bob@example.com" in m["destinations"] and CONFIRM_SUBJECT not in m["raw_data"]
                        ),
                        None,
                    )
                    await asyncio.sleep(0.2)
            assert "hello.txt added (by alice)" in raw
            assert f"<{url}/v1/unsubscribe?token=" in raw
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=20)
        out.seek(0)
        assert code == 0, out.read()


async def test_the_notifier_process_reads_the_mail_feedback_queue_and_stops_mid_long_poll(
    settings, aws_session, make_client, app_factory
):
    """With ``FILESYNC_MAIL_FEEDBACK_QUEUE_URL`` the process suppresses what SES reports; a SIGTERM ends its
    20-second long-poll at once."""
    provisioned = await provision_emulator(settings, aws_session, mail_feedback=True)
    client = await make_client(app_factory(provisioned))
    address = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    await client.post("/v1/auth/signup", json={"username": "gus", "password": PASSWORD, "email": address})
    gus = bearer(await log_in(client, "gus"))
    env = aws_env(
        provisioned,
        FILESYNC_MAIL_FROM=provisioned.mail_from,
        FILESYNC_PUBLIC_URL="https://files.test",
        FILESYNC_SES_CONFIGURATION_SET=provisioned.notify.configuration_set or "",
        FILESYNC_MAIL_FEEDBACK_QUEUE_URL=provisioned.notify.feedback_queue_url or "",
        FILESYNC_LOG_FORMAT="text",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.notifier"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await publish(provisioned, aws_session, bounce("Permanent", address))
        deadline = time.monotonic() + 30
        while not (await (await client.get("/v1/account", headers=gus)).json())["email_suppressed"]:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the bounce was not read within 30 s"
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        _, err = proc.communicate(timeout=20)
    assert time.monotonic() - stopped < 10, "the stop waited for the long-poll"
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
