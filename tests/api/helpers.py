"""Small helpers for API tests: sign up and log in over HTTP, check problem bodies, count AWS requests."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

_SAMPLE = re.compile(r"^filesync_aws_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.M)

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


async def dynamodb_requests(client) -> dict[str, float]:
    """The service's DynamoDB requests so far, by operation (its /metrics)."""
    text = await (await client.get("/metrics")).text()
    counts: dict[str, float] = {}
    for labels, value in _SAMPLE.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("service") == "dynamodb":
            counts[found["operation"]] = counts.get(found["operation"], 0) + float(value)
    return counts


async def dynamodb_cost(client, request: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, float]]:
    """What ``request()`` answered, and the DynamoDB requests it made, by operation."""
    before = await dynamodb_requests(client)
    answer = await request()
    after = await dynamodb_requests(client)
    return answer, {op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0)}
