"""Accounts and tokens end to end over HTTP against the emulator."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time

import jwt
import orjson
import pytest

from service.api.routes import OPERATIONS
from service.core.models import Principal
from service.core.tokens import TokenService
from service.keys import ACCOUNTS
from service.settings import Settings
from tests.api.helpers import PASSWORD, bearer, log_in, problem, sign_up


async def test_sign_up_log_in_refresh_use_log_out(client):
    account = await sign_up(client, "Alice")
    assert account["username"] == "alice"
    tokens = await log_in(client, "alice")
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300

    me = await client.get("/v1/account", headers=bearer(tokens))
    assert me.status == 200
    assert (await me.json())["home_namespace"] == account["home_namespace"]

    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200
    fresh = await refreshed.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert (await client.get("/v1/account", headers=bearer(fresh))).status == 200

    assert (await client.post("/v1/auth/logout", headers=bearer(fresh))).status == 204
    # Both access tokens of the session are refused now, well within their 5-minute lifetime.
    for old in (fresh, tokens):
        body = await problem(await client.get("/v1/account", headers=bearer(old)), 401)
        assert body["type"] == "/v1/docs#problem-unauthenticated"
    again = await client.post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    await problem(again, 401)


async def test_reusing_a_rotated_refresh_token_ends_the_session(client):
    await sign_up(client, "mallory-victim")
    tokens = await log_in(client, "mallory-victim")
    first = await (await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    await problem(replay, 401)
    # The legitimate holder's tokens from the rotation are revoked too: the family is burnt.
    await problem(await client.get("/v1/account", headers=bearer(first)), 401)
    await problem(await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)


async def test_password_change_ends_every_session(client):
    await sign_up(client, "bob")
    laptop = await log_in(client, "bob")
    phone = await log_in(client, "bob")
    wrong = await client.put(
        "/v1/account/password",
        json={"current_password": "not it at all", "new_password": "a brand new secret"},
        headers=bearer(laptop),
    )
    await problem(wrong, 403)
    changed = await client.put(
        "/v1/account/password",
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
        headers=bearer(laptop),
    )
    assert changed.status == 204
    for session in (laptop, phone):
        await problem(await client.get("/v1/account", headers=bearer(session)), 401)
    await problem(await client.post("/v1/auth/token", json={"username": "bob", "password": PASSWORD}), 401)
    await log_in(client, "bob", "a brand new secret")


async def test_disabling_an_account_revokes_its_tokens_and_blocks_login(client):
    await sign_up(client, "carol")
    tokens = await log_in(client, "carol")
    await client.app[ACCOUNTS].set_disabled("carol", True)
    await problem(await client.get("/v1/account", headers=bearer(tokens)), 401)
    await problem(await client.post("/v1/auth/token", json={"username": "carol", "password": PASSWORD}), 401)
    await client.app[ACCOUNTS].set_disabled("carol", False)
    await log_in(client, "carol")


async def test_logout_on_one_worker_is_refused_by_another_within_the_poll_interval(
    client, provisioned: Settings, make_client, app_factory
):
    other = await make_client(app_factory(provisioned))
    await sign_up(client, "dave")
    tokens = await log_in(client, "dave")
    assert (await other.get("/v1/account", headers=bearer(tokens))).status == 200
    assert (await client.post("/v1/auth/logout", headers=bearer(tokens))).status == 204
    deadline = time.monotonic() + 5
    while (await other.get("/v1/account", headers=bearer(tokens))).status == 200:
        assert time.monotonic() < deadline, "the other worker never saw the revocation"
        await asyncio.sleep(0.05)
    await problem(await other.get("/v1/account", headers=bearer(tokens)), 401)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


@pytest.mark.parametrize(
    "kind", ["expired", "tampered", "alg-none", "wrong-alg", "wrong-secret", "malformed", "refresh-as-access"]
)
async def test_bad_tokens_are_401(client, provisioned: Settings, kind: str):
    await sign_up(client, "erin")
    tokens = await log_in(client, "erin")
    good = tokens["access_token"]
    now = int(time.time())
    claims = {"iss": "filesync", "sub": "erin", "sid": "a" * 26, "typ": "access", "iat": now, "exp": now + 60}
    secret = provisioned.token_secret
    token = {
        "expired": TokenService(secret, 300, clock=lambda: time.time() - 3600).issue_access(
            Principal("erin", "a" * 26)
        ),
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "wrong-alg": jwt.encode(claims, secret, algorithm="HS512"),
        "wrong-secret": jwt.encode(claims, "another-secret-that-is-long-enough-0123456789", algorithm="HS256"),
        "malformed": "not.a.token",
        "refresh-as-access": tokens["refresh_token"],
    }[kind]
    response = await client.get("/v1/account", headers={"Authorization": f"Bearer {token}"})
    body = await problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if kind == "expired":
        assert "expired" in body["detail"]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic YWxpY2U6cHc=", "Bearer " + "x" * 5000])
async def test_missing_or_wrong_scheme_is_401(client, header):
    headers = {} if header is None else {"Authorization": header}
    await problem(await client.get("/v1/account", headers=headers), 401)


async def test_every_authenticated_route_refuses_anonymous_callers(client):
    protected = [op for op in OPERATIONS if op.auth]
    assert len(protected) >= 8
    for op in protected:
        path = re.sub(r"\{[^}]+\}", "x", op.path.replace("{ns}", "a" * 16))
        response = await client.request(op.method, path, json={})
        await problem(response, 401)


async def test_eleven_wrong_passwords_get_429_with_retry_after(client):
    await sign_up(client, "frank")
    for attempt in range(10):
        response = await client.post("/v1/auth/token", json={"username": "frank", "password": f"wrong-{attempt}"})
        await problem(response, 401)
    eleventh = await client.post("/v1/auth/token", json={"username": "frank", "password": "wrong-10"})
    body = await problem(eleventh, 429)
    assert int(eleventh.headers["Retry-After"]) > 0
    assert body["retry_after"] == int(eleventh.headers["Retry-After"])
    # Even the right password waits out the window: the attacker learns nothing.
    right = await client.post("/v1/auth/token", json={"username": "frank", "password": PASSWORD})
    await problem(right, 429)


async def test_failed_logins_are_limited_per_client_address(provisioned, make_client, app_factory):
    settings = dataclasses.replace(
        provisioned, auth=dataclasses.replace(provisioned.auth, login_max_failures_per_address=3)
    )
    client = await make_client(app_factory(settings))
    for name in ("gina", "hank", "ivan"):
        await problem(await client.post("/v1/auth/token", json={"username": name, "password": "nope-nope"}), 401)
    await problem(await client.post("/v1/auth/token", json={"username": "judy", "password": "nope-nope"}), 429)


async def test_wrong_user_and_wrong_password_are_indistinguishable(client):
    await sign_up(client, "kate")

    async def attempt(username: str) -> tuple[dict, float]:
        started = time.perf_counter()
        response = await client.post("/v1/auth/token", json={"username": username, "password": "wrong password"})
        elapsed = time.perf_counter() - started
        return await problem(response, 401), elapsed

    unknown, _ = await attempt("nobody-here")
    wrong, _ = await attempt("kate")
    assert (unknown["title"], unknown["detail"]) == (wrong["title"], wrong["detail"])
    # Both paths compute one argon2 hash: compare medians, coarsely (CI machines are noisy). One name each:
    # checks of one account are spaced (it keeps its turn as long as a check took), whether it exists or not.
    unknown_times = sorted([(await attempt("nobody-here"))[1] for i in range(5)])
    wrong_times = sorted([(await attempt("kate"))[1] for i in range(4)])
    ratio = unknown_times[2] / wrong_times[2]
    assert 0.3 < ratio < 3.0, (unknown_times, wrong_times)


@pytest.mark.parametrize(
    ("username", "path"),
    [
        ("ab", "$.username"),
        ("a" * 33, "$.username"),
        ("a" * 65, "$.username"),
        ("bad name", "$.username"),
        ("-leading-dash", "$.username"),
        ("emoji\U0001f600", "$.username"),
        ("null\x00byte", "$.username"),
    ],
)
async def test_invalid_usernames_are_422(client, username: str, path: str):
    response = await client.post("/v1/auth/signup", json={"username": username, "password": PASSWORD})
    body = await problem(response, 422)
    assert body["errors"][0]["path"] == path


@pytest.mark.parametrize("password", ["short", "x" * 1025])
async def test_invalid_passwords_are_422(client, password: str):
    response = await client.post("/v1/auth/signup", json={"username": "lena", "password": password})
    body = await problem(response, 422)
    assert body["errors"][0]["path"] == "$.password"


async def test_usernames_are_normalized_and_unique(client):
    await sign_up(client, "Mike")
    taken = await client.post("/v1/auth/signup", json={"username": "MIKE", "password": PASSWORD})
    await problem(taken, 409)
    # Full-width letters normalize (NFKC) to the same name.
    await problem(
        await client.post("/v1/auth/signup", json={"username": "\uff4d\uff49\uff4b\uff45", "password": PASSWORD}),
        409,
    )
    await log_in(client, "mike")


async def test_sign_up_can_be_closed(provisioned, make_client, app_factory):
    closed = dataclasses.replace(provisioned, auth=dataclasses.replace(provisioned.auth, open_signup=False))
    client = await make_client(app_factory(closed))
    body = await problem(await client.post("/v1/auth/signup", json={"username": "nina", "password": PASSWORD}), 403)
    assert "administrator" in body["detail"]


async def test_password_hashes_are_upgraded_when_parameters_change(provisioned, make_client, app_factory):
    client = await make_client(app_factory(provisioned))
    await sign_up(client, "olga")
    old_hash = (await client.app[ACCOUNTS].get_user("olga")).password_hash
    stronger = dataclasses.replace(provisioned, auth=dataclasses.replace(provisioned.auth, argon2_time_cost=2))
    upgraded = await make_client(app_factory(stronger))
    await log_in(upgraded, "olga")
    new_hash = (await upgraded.app[ACCOUNTS].get_user("olga")).password_hash
    assert new_hash != old_hash
    assert ",t=2," in new_hash
    assert ",t=1," in old_hash
    await log_in(upgraded, "olga")
