"""``python -m service users ...`` against the emulator, checked through the HTTP API."""

from __future__ import annotations

import subprocess
import sys
import time

from service.content import EMPTY_HASH
from service.settings import Settings
from tests.api.files_helpers import commit, home
from tests.api.helpers import log_in, problem, user
from tests.api.test_revocation import can_read, revocations
from tests.test_entrypoints import ROOT, aws_env
from tools.bench.harness import clean_env


def run_admin(
    settings: Settings, *args: str, password: str | None = None, command: str = "users"
) -> subprocess.CompletedProcess[str]:
    env = aws_env(
        settings,
        FILESYNC_ARGON2_TIME_COST="1",
        FILESYNC_ARGON2_MEMORY_KIB="8192",
        FILESYNC_LOG_LEVEL="WARNING",
    )
    # Administration needs AWS permissions on the table and the upload role, never the signing secret.
    del env["FILESYNC_TOKEN_SECRET"]
    if password is not None:
        env["FILESYNC_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "service", command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


async def test_add_then_disable_a_user_from_the_command_line(client, provisioned, aws_session):
    added = run_admin(provisioned, "add", "Zoe", password="zoe's long password")
    assert added.returncode == 0, added.stderr
    assert "created zoe" in added.stdout
    await log_in(client, "zoe", "zoe's long password")

    duplicate = run_admin(provisioned, "add", "zoe", password="zoe's long password")
    assert duplicate.returncode == 1
    assert "taken" in duplicate.stderr

    before = time.time()
    disabled = run_admin(provisioned, "disable", "zoe")
    assert disabled.returncode == 0, disabled.stderr
    response = await client.post("/v1/auth/token", json={"username": "zoe", "password": "zoe's long password"})
    await problem(response, 401)
    # Her temporary AWS credentials minted before are denied too.
    revoked = await revocations(provisioned, aws_session)
    assert not can_read(revoked, provisioned, "zoe", before - 1, "a" * 16)

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


async def test_folders_backfill_writes_the_markers_files_committed_before_them_lack(client, provisioned, aws_session):
    headers = await user(client, "alice")
    ns = await home(client, headers)
    for path in ("docs/2024/a.txt", "docs/b.txt", "top.txt"):
        response = await client.put(f"/v1/ns/{ns}/files/{path}", data=b"body", headers=headers)
        assert response.status == 201, await response.text()
    markers = [{"pk": {"S": f"NS#{ns}"}, "sk": {"S": f"D#{folder}"}} for folder in ("docs", "docs/2024")]
    async with aws_session.client("dynamodb", endpoint_url=provisioned.aws.endpoint_url) as db:
        for key in markers:  # as if the files had been committed before the service kept markers
            await db.delete_item(TableName=provisioned.table, Key=key)
        done = run_admin(provisioned, "backfill", ns, command="folders")
        assert done.returncode == 0, done.stderr
        assert f"{ns}: 3 live files seen, 2 folder markers written" in done.stdout
        for key in markers:
            assert "Item" in await db.get_item(TableName=provisioned.table, Key=key, ConsistentRead=True)
    answer = await client.post(
        f"/v1/ns/{ns}/commit",
        json={"entries": [{"path": "Docs/2024", "content_hash": EMPTY_HASH, "size": 0}]},
        headers=headers,
    )
    assert answer.status == 409
    assert (await answer.json())["results"][0]["reason"].startswith("file/folder clash: 'Docs/2024' is a folder")


async def test_folders_backfill_puts_files_from_before_the_children_index_in_it(client, provisioned, aws_session):
    headers = await user(client, "alice")
    ns = await home(client, headers)
    paths = ["a.txt", "docs/b.txt", "docs/deep/c.txt", "gone.txt"]
    await commit(client, headers, ns, [{"path": p, "content_hash": EMPTY_HASH, "size": 0} for p in paths])
    await commit(client, headers, ns, [{"path": "gone.txt", "deleted": True, "parent_rev": 1}])
    table, head = provisioned.table, {"pk": {"S": f"NS#{ns}"}, "sk": {"S": "HEAD"}}
    async with aws_session.client("dynamodb", endpoint_url=provisioned.aws.endpoint_url) as db:
        for path in paths:  # as if committed before the service kept the index
            key = {"pk": {"S": f"NS#{ns}"}, "sk": {"S": f"F#{path}"}}
            await db.update_item(TableName=table, Key=key, UpdateExpression="REMOVE gsi1pk, gsi1sk")
        await db.update_item(TableName=table, Key=head, UpdateExpression="REMOVE children_index")
        await commit(client, headers, ns, [{"path": "new.txt", "content_hash": EMPTY_HASH, "size": 0}])

        async def listed(folder: str) -> list[str]:
            page = await (await client.get(f"/v1/ns/{ns}/files", params={"folder": folder}, headers=headers)).json()
            return [f["path"] for f in page["files"]]

        assert await listed("") == ["a.txt", "new.txt"]  # read from the subtree meanwhile
        assert await listed("docs") == ["docs/b.txt"]
        done = run_admin(provisioned, "backfill", ns, command="folders")
        assert done.returncode == 0, done.stderr
        assert (
            f"{ns}: 4 live files seen, 2 folder markers written, 4 files put in the children index, "
            "1 deleted files in the trash" in done.stdout
        )
        flag = (await db.get_item(TableName=table, Key=head, ConsistentRead=True))["Item"]["children_index"]
        assert flag == {"BOOL": True}
        gone = await db.get_item(TableName=table, Key={"pk": head["pk"], "sk": {"S": "F#gone.txt"}})
        assert gone["Item"]["gsi1pk"] == {"S": f"TRASH#{ns}"}  # not in the children index: in the trash
    assert await listed("") == ["a.txt", "new.txt"]  # from the index now
    assert await listed("docs") == ["docs/b.txt"]
    assert await listed("docs/deep") == ["docs/deep/c.txt"]
    trash = await (await client.get(f"/v1/ns/{ns}/trash", headers=headers)).json()
    assert [f["path"] for f in trash["files"]] == ["gone.txt"]


def test_folders_backfill_needs_aws_settings():
    done = subprocess.run(
        [sys.executable, "-m", "service", "folders", "backfill", "some-namespace"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "need AWS settings" in done.stderr
    assert "Traceback" not in done.stderr


async def test_users_quota_sets_shows_and_hands_back_an_accounts_quota(client, provisioned):
    headers = await user(client, "quoted")
    ns = await home(client, headers)
    response = await client.put(f"/v1/ns/{ns}/files/a.bin", data=b"a" * 1000, headers=headers)
    assert response.status == 201, await response.text()
    small = run_admin(provisioned, "quota", "Quoted", "1.5kB")
    assert small.returncode == 0, small.stderr
    assert small.stdout.strip() == "quoted: quota 1,500 bytes; 1,000 bytes used"
    refused = await client.put(f"/v1/ns/{ns}/files/b.bin", data=b"b" * 501, headers=headers)
    assert (await problem(refused, 507))["quota"] == 1500
    unlimited = run_admin(provisioned, "quota", "quoted", "unlimited")
    assert "quota no limit" in unlimited.stdout
    accepted = await client.put(f"/v1/ns/{ns}/files/b.bin", data=b"b" * 501, headers=headers)
    assert accepted.status == 201, await accepted.text()
    back = run_admin(provisioned, "quota", "quoted", "default")
    assert f"quota {provisioned.files.default_quota:,} bytes (the default); 1,501 bytes used" in back.stdout
    for wrong, status, said in (
        (("quota", "quoted", "lots"), 2, "not a size"),
        (("quota", "nobody-at-all", "1GB"), 1, "No user"),
    ):
        result = run_admin(provisioned, *wrong)
        assert (result.returncode, said in result.stderr, "Traceback" in result.stderr) == (status, True, False)
