"""Small helpers for API tests: sign up and log in over HTTP, check problem bodies."""

from __future__ import annotations

from typing import Any

PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery"


async def problem(response, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem+json with ``status``; return its body."""
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json(content_type=PROBLEM)
    assert body["status"] == status
    assert body["detail"]
    return body


async def sign_up(client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/v1/auth/signup", json={"username": username, "password": password})
    assert response.status == 201, await response.text()
    return await response.json()


async def log_in(client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/v1/auth/token", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


async def user(client, username: str) -> dict[str, str]:
    """Sign up and log in; the Authorization header for that user."""
    await sign_up(client, username)
    tokens = await log_in(client, username)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
