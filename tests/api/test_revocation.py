"""Credentials after a user loses access: the upload role is told to deny the user's earlier sessions.

The emulator stores the role's policies but enforces none of these conditions, so the policy the service
wrote is read back from it and evaluated with the test policy evaluator (``tests/policy_evaluator.py``):
a session of the user issued before the change is denied, one issued after is allowed, another user's is
allowed.

Tests layer: the service in process over real HTTP against the session's emulator.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import orjson
import pytest

from service import resources
from service.aws.clients import open_iam
from service.aws.iam import IamSessionRevoker
from service.aws.policies import REVOCATIONS_POLICY_NAME, SESSION_USER_TAG, session_policy
from service.core.errors import DependencyUnavailable
from tests.api.helpers import PASSWORD, problem, user
from tests.policy_evaluator import is_allowed, s3_request


@pytest.fixture(autouse=True)
async def no_revocations_yet(provisioned, aws_session) -> None:
    """The emulator's upload role is shared by every test of the run: start these from no revocations, so
    what is read back is this test's (and no collapse caused by other tests' revocations)."""
    async with open_iam(provisioned.aws, aws_session) as iam:
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            await iam.delete_role_policy(RoleName=resources.UPLOAD_ROLE_NAME, PolicyName=REVOCATIONS_POLICY_NAME)


async def revocations(settings, aws_session) -> dict:
    async with open_iam(settings.aws, aws_session) as iam:
        try:
            response = await iam.get_role_policy(
                RoleName=resources.UPLOAD_ROLE_NAME, PolicyName=REVOCATIONS_POLICY_NAME
            )
        except iam.exceptions.NoSuchEntityException:
            return {"Version": "2012-10-17", "Statement": []}
    document = response["PolicyDocument"]
    return orjson.loads(document) if isinstance(document, str) else dict(document)


def can_read(revoked: dict, settings, username: str, issued: float, ns: str) -> bool:
    context = {
        f"aws:PrincipalTag/{SESSION_USER_TAG}": username,
        "aws:TokenIssueTime": datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    request = s3_request("GetObject", settings.bucket, f"ns/{ns}/blobs/abc", context=context)
    role = resources.upload_role_policy(resources.bucket_arn(settings.bucket))
    return is_allowed(request, identity=[role, revoked], session=session_policy([ns], []))


async def shared(client, owner: dict, member: str, role: str = "editor") -> str:
    ns = (await (await client.post("/v1/namespaces", json={"name": "team"}, headers=owner)).json())["id"]
    response = await client.put(f"/v1/namespaces/{ns}/members/{member}", json={"role": role}, headers=owner)
    assert response.status == 200, await response.text()
    return ns


async def test_a_removed_members_earlier_credentials_are_denied(client, provisioned, aws_session):
    alice = await user(client, "alice")
    mallory = await user(client, "mallory")
    ns = await shared(client, alice, "mallory")
    assert (await client.post("/v1/credentials", json={"namespaces": [ns]}, headers=mallory)).status == 200
    before = time.time()
    response = await client.delete(f"/v1/namespaces/{ns}/members/mallory", headers=alice)
    assert response.status == 204, await response.text()

    revoked = await revocations(provisioned, aws_session)
    assert not can_read(revoked, provisioned, "mallory", before - 1, ns)  # minted before the removal
    assert can_read(revoked, provisioned, "mallory", time.time() + 60, ns)  # minted later (scoped afresh)
    assert can_read(revoked, provisioned, "alice", before - 1, ns)  # someone else's
    # Her credentials now cover only what she still belongs to.
    await problem(await client.post("/v1/credentials", json={"namespaces": [ns]}, headers=mallory), 404)


@pytest.mark.parametrize(("old", "new", "revoked"), [("editor", "viewer", True), ("viewer", "editor", False)])
async def test_a_demotion_revokes_and_a_promotion_does_not(client, provisioned, aws_session, old, new, revoked):
    alice = await user(client, "alice")
    await user(client, f"member-{old}")
    ns = await shared(client, alice, f"member-{old}", old)
    before = time.time()
    response = await client.put(f"/v1/namespaces/{ns}/members/member-{old}", json={"role": new}, headers=alice)
    assert response.status == 200
    document = await revocations(provisioned, aws_session)
    assert can_read(document, provisioned, f"member-{old}", before - 1, ns) is not revoked


async def test_a_password_change_revokes_the_users_credentials(client, provisioned, aws_session):
    headers = await user(client, "carol")
    home = (await (await client.get("/v1/account", headers=headers)).json())["home_namespace"]
    before = time.time()
    response = await client.put(
        "/v1/account/password",
        json={"current_password": PASSWORD, "new_password": "another horse battery"},
        headers=headers,
    )
    assert response.status == 204, await response.text()
    assert not can_read(await revocations(provisioned, aws_session), provisioned, "carol", before - 1, home)


async def test_when_iam_cannot_take_the_revocation_the_removal_is_refused_and_nothing_changes(
    client, provisioned, monkeypatch
):
    alice = await user(client, "alice")
    await user(client, "mallory")
    ns = await shared(client, alice, "mallory")

    async def unavailable(self, username: str, before: float) -> None:
        raise DependencyUnavailable("IAM is unreachable; retry shortly.")

    monkeypatch.setattr(IamSessionRevoker, "revoke", unavailable)
    await problem(await client.delete(f"/v1/namespaces/{ns}/members/mallory", headers=alice), 503)
    members = (await (await client.get(f"/v1/namespaces/{ns}", headers=alice)).json())["members"]
    assert "mallory" in {m["username"] for m in members}
