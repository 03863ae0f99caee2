"""HTTP conventions for the whole API: problem+json errors, body limits, request ids.

The bad-input cases go through ``read_json`` on a route added to a real app, the same helper every
JSON endpoint uses, over a real socket.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from aiohttp import web

from service.api.bodies import read_json
from service.api.responses import json_response
from service.codec import WireModel
from service.core.errors import NotFound, RateLimited, VersionConflict
from service.logs import RequestIdFilter
from service.settings import Limits, Settings
from tests.conftest import AppClient, MakeClient

PROBLEM = "application/problem+json"


class Entry(WireModel):
    path: str
    size: int


class Batch(WireModel):
    entries: list[Entry]


async def post_batch(request: web.Request) -> web.Response:
    batch = await read_json(request, Batch)
    return json_response({"count": len(batch.entries)})


async def raise_unhandled(request: web.Request) -> web.Response:
    raise RuntimeError("boom: an internal detail that must not leak")


async def raise_rate_limited(request: web.Request) -> web.Response:
    raise RateLimited("Too many login attempts for this account.", retry_after=7)


async def raise_conflict(request: web.Request) -> web.Response:
    raise VersionConflict("docs/a.txt changed: server has rev 4, you sent parent rev 3.")


async def raise_not_found(request: web.Request) -> web.Response:
    raise NotFound("No namespace ns_1.")


@pytest.fixture
async def api(provisioned: Settings, make_client: MakeClient, app_factory) -> AppClient:
    settings = dataclasses.replace(provisioned, limits=Limits(max_json_body=4096))
    app = app_factory(settings)
    app.router.add_post("/v1/test/batch", post_batch)
    app.router.add_get("/v1/test/unhandled", raise_unhandled)
    app.router.add_get("/v1/test/rate-limited", raise_rate_limited)
    app.router.add_get("/v1/test/conflict", raise_conflict)
    app.router.add_get("/v1/test/not-found", raise_not_found)
    return await make_client(app)


async def problem(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json(content_type=PROBLEM)
    assert body["status"] == status
    assert body["type"].startswith("/v1/docs#problem-")
    assert body["instance"] == response.url.path
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["detail"]
    return body


async def test_valid_body_is_accepted(api: AppClient) -> None:
    response = await api.post("/v1/test/batch", json={"entries": [{"path": "a", "size": 1}]})
    assert response.status == 200
    assert await response.json() == {"count": 1}


async def test_malformed_json_is_400(api: AppClient) -> None:
    response = await api.post("/v1/test/batch", data=b'{"entries": [', headers={"Content-Type": "application/json"})
    body = await problem(response, 400)
    assert "not valid JSON" in body["detail"]


async def test_empty_json_body_is_400(api: AppClient) -> None:
    response = await api.post("/v1/test/batch", data=b"", headers={"Content-Type": "application/json"})
    await problem(response, 400)


async def test_wrong_content_type_is_415(api: AppClient) -> None:
    response = await api.post(
        "/v1/test/batch",
        data=b"entries=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await problem(response, 415)
    assert "application/json" in body["detail"]


async def test_wrong_type_is_422_naming_the_field(api: AppClient) -> None:
    response = await api.post("/v1/test/batch", json={"entries": [{"path": "a", "size": "big"}]})
    body = await problem(response, 422)
    assert body["errors"] == [{"path": "$.entries[0].size", "message": "Expected `int`, got `str`"}]
    assert "$.entries[0].size" in body["detail"]


async def test_unknown_field_is_422_naming_the_field(api: AppClient) -> None:
    response = await api.post("/v1/test/batch", json={"entries": [{"path": "a", "size": 1, "colour": "red"}]})
    body = await problem(response, 422)
    assert body["errors"][0]["path"] == "$.entries[0].colour"
    assert "unknown field" in body["errors"][0]["message"]


async def test_missing_field_is_422_naming_the_field(api: AppClient) -> None:
    response = await api.post("/v1/test/batch", json={"entries": [{"path": "a"}]})
    body = await problem(response, 422)
    assert body["errors"][0]["path"] == "$.entries[0].size"


async def test_body_at_the_limit_is_accepted_and_past_it_is_413(api: AppClient) -> None:
    def body_of(length: int) -> bytes:
        head, tail = b'{"entries": [{"path": "', b'", "size": 1}]}'
        return head + b"x" * (length - len(head) - len(tail)) + tail

    at_limit = await api.post("/v1/test/batch", data=body_of(4096), headers={"Content-Type": "application/json"})
    assert at_limit.status == 200
    over = await api.post("/v1/test/batch", data=body_of(4097), headers={"Content-Type": "application/json"})
    body = await problem(over, 413)
    assert "4096" in body["detail"]


async def test_chunked_body_over_the_limit_is_413(api: AppClient) -> None:
    async def chunks():
        yield b'{"entries": ['
        for _ in range(200):
            yield b'{"path": "aaaaaaaaaaaaaaaaaaaa", "size": 1},'
        yield b"]}"

    response = await api.post("/v1/test/batch", data=chunks(), headers={"Content-Type": "application/json"})
    await problem(response, 413)


async def test_unknown_route_is_404_problem(api: AppClient) -> None:
    body = await problem(await api.get("/v1/no-such-thing"), 404)
    assert "/v1/no-such-thing" in body["detail"]


async def test_wrong_method_is_405_problem_with_allow(api: AppClient) -> None:
    response = await api.delete("/v1/test/batch")
    body = await problem(response, 405)
    assert response.headers["Allow"] == "POST"
    assert "POST" in body["detail"]


async def test_domain_errors_map_to_their_status(api: AppClient) -> None:
    limited = await api.get("/v1/test/rate-limited")
    body = await problem(limited, 429)
    assert limited.headers["Retry-After"] == "7"
    assert body["retry_after"] == 7
    conflict = await problem(await api.get("/v1/test/conflict"), 409)
    assert conflict["type"] == "/v1/docs#problem-version-conflict"
    missing = await problem(await api.get("/v1/test/not-found"), 404)
    assert missing["detail"] == "No namespace ns_1."


async def test_unhandled_error_is_a_logged_500_that_leaks_nothing(
    api: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.ERROR):
        response = await api.get("/v1/test/unhandled", headers={"X-Request-ID": "trace-42"})
        body = await problem(response, 500)
    assert "boom" not in body["detail"]
    assert "trace-42" in body["detail"]
    record = next(r for r in caplog.records if r.name == "service.api.middlewares")
    assert record.exc_info is not None
    assert getattr(record, "request_id", None) == "trace-42"


async def test_request_id_is_echoed_or_generated(api: AppClient) -> None:
    echoed = await api.get("/healthz", headers={"X-Request-ID": "client-abc.123"})
    assert echoed.headers["X-Request-ID"] == "client-abc.123"
    generated = await api.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    # A header that could forge log lines is replaced, not echoed.
    hostile = await api.get("/healthz", headers={"X-Request-ID": "x y\tz" + "a" * 200})
    assert hostile.headers["X-Request-ID"] != "x y\tz" + "a" * 200
    assert len(hostile.headers["X-Request-ID"]) == 32
