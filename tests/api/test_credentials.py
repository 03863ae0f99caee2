"""Scoped STS credentials over HTTP, used with a real SDK against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime

import aioboto3
import pytest

from service.aws.policies import SESSION_POLICY_MAX_CHARS
from tests.api.helpers import problem, user


async def credentials(client, headers, **body) -> dict:
    response = await client.post("/v1/credentials", json=body, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_alices_credentials_upload_to_her_blob_prefix(client, provisioned):
    alice = await user(client, "alice")
    home = (await (await client.get("/v1/account", headers=alice)).json())["home_namespace"]
    creds = await credentials(client, alice)

    assert creds["bucket"] == provisioned.bucket
    assert creds["region"] == "us-east-1"
    assert creds["endpoint_url"] == provisioned.aws.endpoint_url
    assert creds["grants"] == [{"namespace": home, "prefix": f"ns/{home}/blobs/", "access": "write"}]
    expires = datetime.fromisoformat(creds["expiration"].replace("Z", "+00:00"))
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert 800 < remaining <= 900

    session = aioboto3.Session(
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds["session_token"],
        region_name=creds["region"],
    )
    key = f"{creds['grants'][0]['prefix']}hello"
    async with session.client("s3", endpoint_url=creds["endpoint_url"]) as s3:
        await s3.put_object(Bucket=creds["bucket"], Key=key, Body=b"hello from alice")
        got = await s3.get_object(Bucket=creds["bucket"], Key=key)
        async with got["Body"] as body:
            assert await body.read() == b"hello from alice"


async def test_viewer_grants_are_read_only(client):
    alice = await user(client, "alice")
    bob = await user(client, "bob")
    ns = (await (await client.post("/v1/namespaces", json={"name": "shared"}, headers=alice)).json())["id"]
    await client.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "viewer"}, headers=alice)

    creds = await credentials(client, bob, namespaces=[ns])
    assert creds["grants"] == [{"namespace": ns, "prefix": f"ns/{ns}/blobs/", "access": "read"}]
    everything = await credentials(client, bob)
    assert {g["access"] for g in everything["grants"]} == {"read", "write"}


async def test_credentials_for_a_namespace_you_do_not_belong_to_are_404(client):
    alice = await user(client, "alice")
    mallory = await user(client, "mallory")
    ns = (await (await client.post("/v1/namespaces", json={"name": "p"}, headers=alice)).json())["id"]
    await problem(await client.post("/v1/credentials", json={"namespaces": [ns]}, headers=mallory), 404)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"duration_seconds": 899}, "$.duration_seconds"),
        ({"duration_seconds": 3601}, "$.duration_seconds"),
        ({"duration_seconds": "900"}, "$.duration_seconds"),
        ({"namespaces": []}, "$.namespaces"),
        ({"namespaces": ["x" * 16] * 101}, "$.namespaces"),
        ({"scope": "all"}, "$.scope"),
    ],
)
async def test_bad_credential_requests_are_422(client, body, path):
    alice = await user(client, "alice")
    response = await client.post("/v1/credentials", json=body, headers=alice)
    assert (await problem(response, 422))["errors"][0]["path"] == path


async def test_duration_at_the_edges(client):
    alice = await user(client, "alice")
    for seconds in (900, 3600):
        creds = await credentials(client, alice, duration_seconds=seconds)
        expires = datetime.fromisoformat(creds["expiration"].replace("Z", "+00:00"))
        assert abs((expires - datetime.now(UTC)).total_seconds() - seconds) < 30


async def test_too_many_namespaces_for_one_policy_is_a_clear_422(client):
    alice = await user(client, "alice")
    ids = []
    for i in range(40):
        created = await client.post("/v1/namespaces", json={"name": f"team-{i}"}, headers=alice)
        ids.append((await created.json())["id"])
    response = await client.post("/v1/credentials", headers=alice)
    body = await problem(response, 422)
    assert body["errors"][0]["path"] == "$.namespaces"
    assert str(SESSION_POLICY_MAX_CHARS) in body["detail"]
    # Scoping the request to the namespaces needed works.
    creds = await credentials(client, alice, namespaces=ids[:20])
    assert len(creds["grants"]) == 20
