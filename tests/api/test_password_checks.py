"""One throttle for every password check: login, password change and address change share the failure
counts per account and per client address, and a lockout closes all of them."""

from __future__ import annotations

import pytest

from tests.api.helpers import PASSWORD, bearer, log_in, problem, sign_up

GUESSES = 25


async def guess(client, endpoint: str, name: str, password: str, headers: dict[str, str]):
    """One password check on ``endpoint`` with ``password``."""
    if endpoint == "login":
        return await client.post("/v1/auth/token", json={"username": name, "password": password})
    if endpoint == "password":
        body = {"current_password": password, "new_password": "a brand new password"}
        return await client.put("/v1/account/password", json=body, headers=headers)
    body = {"email": f"{name}@example.com", "current_password": password}
    return await client.put("/v1/account/email", json=body, headers=headers)


ENDPOINTS = ("login", "password", "email")
WRONG_STATUS = {"login": 401, "password": 403, "email": 403}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_twenty_five_wrong_passwords_on_any_endpoint_get_429_with_retry_after(client, endpoint: str):
    name = f"user-{endpoint}"
    await sign_up(client, name)
    headers = bearer(await log_in(client, name))
    statuses = []
    for attempt in range(GUESSES):
        response = await guess(client, endpoint, name, f"wrong-{attempt}", headers)
        statuses.append(response.status)
    # The account's limit (10) is reached first; every guess past it is refused before any hash.
    assert statuses == [WRONG_STATUS[endpoint]] * 10 + [429] * (GUESSES - 10)
    last = await guess(client, endpoint, name, "wrong-last", headers)
    body = await problem(last, 429)
    assert 0 < int(last.headers["Retry-After"]) <= 900
    assert body["retry_after"] == int(last.headers["Retry-After"])
    # Locked out everywhere, even with the right password: no endpoint takes guesses for this account.
    for other in ENDPOINTS:
        await problem(await guess(client, other, name, PASSWORD, headers), 429)


async def test_a_login_lockout_stops_password_and_address_changes_too(client):
    await sign_up(client, "mona")
    headers = bearer(await log_in(client, "mona"))
    for attempt in range(10):
        await problem(await guess(client, "login", "mona", f"wrong-{attempt}", headers), 401)
    password = await guess(client, "password", "mona", PASSWORD, headers)
    await problem(password, 429)
    await problem(await guess(client, "email", "mona", PASSWORD, headers), 429)
    # Nothing changed: the old password is still the password (once the window ends).
    account = await (await client.get("/v1/account", headers=headers)).json()
    assert account["email"] is None


async def test_a_right_password_clears_the_account_count_on_every_endpoint(client):
    await sign_up(client, "nick")
    headers = bearer(await log_in(client, "nick"))
    for attempt in range(9):
        await problem(await guess(client, "email", "nick", f"wrong-{attempt}", headers), 403)
    assert (await guess(client, "login", "nick", PASSWORD, headers)).status == 200
    for attempt in range(9):  # a fresh count: nine more wrong ones are still answered, not refused
        await problem(await guess(client, "password", "nick", f"wrong-{attempt}", headers), 403)
