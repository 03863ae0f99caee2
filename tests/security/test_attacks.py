"""A hostile client against the API: forged, expired and revoked tokens, other users' namespaces by path,
by file id and by share, server-owned fields in requests, floods, oversized and decompression-bomb bodies,
header injection through file names.

Tests layer: the service in process over real HTTP against the session's emulator (tests/conftest.py).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import time

import jwt
import pytest

from tests.api.files_helpers import body, commit, entry, upload_direct
from tests.api.helpers import PASSWORD, log_in, problem, sign_up, user


async def home(client, headers) -> str:
    return (await (await client.get("/v1/namespaces", headers=headers)).json())["namespaces"][0]["id"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_forged_expired_and_revoked_tokens_are_refused(client, provisioned):
    await sign_up(client, "alice")
    tokens = await log_in(client, "alice")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    now = int(time.time())
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "other key": jwt.encode(claims, "k" * 40, algorithm="HS256"),
        "someone else": jwt.encode({**claims, "sub": "root"}, "k" * 40, algorithm="HS256"),
        "expired": jwt.encode({**claims, "iat": now - 3600, "exp": now - 1800}, provisioned.token_secret, "HS256"),
        "refresh as access": tokens["refresh_token"],
        "garbage": "a.b.c",
    }
    for name, token in forged.items():
        response = await client.get("/v1/account", headers={"Authorization": f"Bearer {token}"})
        await problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
    valid = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/v1/account", headers=valid)).status == 200
    assert (await client.post("/v1/auth/logout", headers=valid)).status == 204
    await problem(await client.get("/v1/account", headers=valid), 401)


@pytest.fixture
async def quiet_client(provisioned, make_client, app_factory):
    """The service with no background AWS traffic (the revocation poll), so each request's AWS calls can be
    counted exactly."""
    auth = dataclasses.replace(provisioned.auth, revocation_poll_seconds=3600)
    return await make_client(app_factory(dataclasses.replace(provisioned, auth=auth)))


def aws_calls(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("filesync_aws_requests_total{")
    )


async def test_another_namespace_is_a_404_by_path_id_and_share_with_no_size_or_work_oracle(quiet_client):
    client = quiet_client
    alice, bob = await user(client, "alice"), await user(client, "bob")
    ns = await home(client, alice)
    data = body(1000)
    await upload_direct(client, alice, ns, data)
    [result] = (await commit(client, alice, ns, [entry("secret/plan.txt", data)]))["results"]
    file_id = result["file"]["file_id"]
    absent = "z" * len(ns)  # same length: the problem bodies may differ only by what the caller sent
    probes = [
        ("GET", "/v1/ns/{ns}/files/secret/plan.txt", {}),
        ("GET", "/v1/ns/{ns}/files", {"params": {"folder": "secret"}}),
        ("GET", "/v1/ns/{ns}/changes", {"params": {"cursor": "s0"}}),
        ("POST", "/v1/ns/{ns}/compare", {"json": {"entries": []}}),
        ("POST", "/v1/ns/{ns}/commit", {"json": {"entries": [entry("x.txt", data)]}}),
        ("POST", "/v1/ns/{ns}/blobs:check", {"json": {"hashes": [entry("x", data)["content_hash"]]}}),
        ("PUT", "/v1/ns/{ns}/follow", {}),
        ("PUT", "/v1/namespaces/{ns}/members/bob", {"json": {"role": "owner"}}),
        ("POST", "/v1/credentials", {"json": {"namespaces": ["{ns}"]}}),
        ("GET", f"/v1/ns/{{ns}}/files/{file_id}", {}),
    ]
    for method, template, kwargs in probes:
        answers = []
        for target in (ns, absent):
            kw = json.loads(json.dumps(kwargs).replace("{ns}", target))
            before = aws_calls(await (await client.get("/metrics")).text())
            response = await client.request(method, template.replace("{ns}", target), headers=bob, **kw)
            body_ = await problem(response, 404)
            # The same AWS calls for a namespace that exists and one that does not: the same work, so no
            # timing oracle beyond the noise of one DynamoDB read (a statistical timing test would be flaky).
            calls = aws_calls(await (await client.get("/metrics")).text()) - before
            answers.append((body_["type"], body_["detail"].replace(target, "NS"), len(body_["detail"]), calls))
        assert answers[0] == answers[1], (template, answers)
    # The owner still reads it, unchanged.
    assert (await client.get(f"/v1/ns/{ns}/files/secret/plan.txt", headers=alice, allow_redirects=False)).status == 302


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/ns/{ns}/commit", {"entries": [{"committed_by": "mallory"}]}),
        ("/v1/ns/{ns}/commit", {"entries": [{"rev": 99}]}),
        ("/v1/ns/{ns}/commit", {"entries": [{"file_id": "stolen"}]}),
        ("/v1/ns/{ns}/commit", {"seq": 1}),
        ("/v1/auth/signup", {"home_namespace": "theirs"}),
        ("/v1/auth/signup", {"disabled": False, "role": "admin"}),
        ("/v1/namespaces", {"owner": "mallory"}),
    ],
)
async def test_server_owned_fields_in_a_request_are_a_422(client, path, extra):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    data = body(10)
    bodies: dict[str, dict] = {
        "/v1/ns/{ns}/commit": {"entries": [entry("a.txt", data)]},
        "/v1/auth/signup": {"username": "carol", "password": PASSWORD},
        "/v1/namespaces": {"name": "Team"},
    }
    sent = bodies[path]
    sent = {"entries": [{**sent["entries"][0], **extra["entries"][0]}]} if "entries" in extra else {**sent, **extra}
    response = await client.post(path.replace("{ns}", ns), json=sent, headers=alice)
    found = await problem(response, 422)
    assert found["errors"], found


async def test_oversized_and_decompression_bomb_bodies_are_413_without_reading_them_whole(client):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    big = b'{"entries": [' + b" " * (2 * 1024 * 1024) + b"]}"
    json_type = {"Content-Type": "application/json"}
    await problem(await client.post(f"/v1/ns/{ns}/commit", data=io.BytesIO(big), headers={**alice, **json_type}), 413)
    # 64 MiB of spaces in 64 KiB of gzip: the limit applies to the bytes after decompression.
    bomb = gzip.compress(b'{"entries": [' + b" " * (64 * 1024 * 1024) + b"]}", compresslevel=9)
    assert len(bomb) < 128 * 1024
    started = time.monotonic()
    response = await client.post(
        f"/v1/ns/{ns}/commit",
        data=io.BytesIO(bomb),
        headers={**alice, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    await problem(response, 413)
    assert time.monotonic() - started < 5


async def test_file_names_cannot_inject_headers(client):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    for name in ("a%0D%0ASet-Cookie:%20x=1", "a%0Ab", "a%00b", "a%1Bb"):
        response = await client.put(f"/v1/ns/{ns}/files/{name}", data=b"x", headers=alice)
        # A line break does not even match the route (404); other control characters break the path rules.
        await problem(response, 404 if "%0A" in name else 422)
        assert "Set-Cookie" not in response.headers
    # The name q'; filename=evil.exe; x=.txt must not add a parameter to Content-Disposition.
    quoted = "q%27%3B%20filename%3Devil.exe%3B%20x%3D.txt"
    assert (await client.put(f"/v1/ns/{ns}/files/{quoted}", data=b"payload", headers=alice)).status == 201
    response = await client.get(f"/v1/ns/{ns}/files/{quoted}", headers=alice, allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    assert "\r" not in location
    assert "\n" not in location
    assert "filename*%3DUTF-8''q%2527%253B%2520filename%253Devil.exe" in location, (
        location
    )  # percent-encoded, one parameter
    assert "Set-Cookie" not in response.headers


async def test_a_login_flood_is_answered_429_with_retry_after(client):
    await sign_up(client, "alice")
    statuses = []
    response = None
    for _ in range(12):
        response = await client.post("/v1/auth/token", json={"username": "alice", "password": "wrong password!"})
        statuses.append(response.status)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert response is not None
    assert int(response.headers["Retry-After"]) > 0
