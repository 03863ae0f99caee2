"""Liveness, readiness and the metrics endpoint."""

from __future__ import annotations

import dataclasses
import re

from service.settings import Settings
from tests.api.files_helpers import home
from tests.api.helpers import user
from tests.conftest import AppClient, MakeClient


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition, 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            found: dict[str, str] = {}
        elif line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        else:
            continue
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_healthz_answers_without_dependencies(settings: Settings, make_client: MakeClient, app_factory):
    # Not provisioned: the bucket and table do not exist, liveness does not care.
    client = await make_client(app_factory(settings))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert (await client.head("/healthz")).status == 200


async def test_readyz_is_200_when_s3_and_dynamodb_answer(client: AppClient):
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "checks": {"s3": "ok", "dynamodb": "ok"}}


async def test_readyz_is_503_problem_naming_the_missing_dependency(
    provisioned: Settings, make_client: MakeClient, app_factory
):
    broken = dataclasses.replace(provisioned, table=provisioned.table + "-missing")
    client = await make_client(app_factory(broken))
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    body = await response.json(content_type="application/problem+json")
    assert body["checks"]["s3"] == "ok"
    assert body["checks"]["dynamodb"] != "ok"
    assert "dynamodb" in body["detail"]


async def test_readyz_is_cached_so_health_checks_cost_few_aws_calls(client: AppClient):
    for _ in range(5):
        assert (await client.get("/readyz")).status == 200
    text = await (await client.get("/metrics")).text()
    assert metric(text, "filesync_aws_requests_total", service="dynamodb", operation="DescribeTable") == 1
    assert metric(text, "filesync_aws_requests_total", service="s3", operation="HeadBucket") == 1


async def test_metrics_show_the_request_just_made(client: AppClient):
    await client.get("/readyz")
    await client.get("/v1/nothing-here")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert metric(text, "filesync_http_requests_total", route="/readyz", method="GET", status="200") == 1
    assert metric(text, "filesync_http_requests_total", route="unmatched", status="404") == 1
    assert metric(text, "filesync_http_request_duration_seconds_count", route="/readyz", method="GET") == 1
    # The request serving /metrics is itself in flight while the exposition is rendered.
    assert metric(text, "filesync_http_requests_in_flight") == 1
    assert metric(text, "filesync_aws_call_duration_seconds_count", service="s3", operation="HeadBucket") == 1


async def test_aws_errors_are_counted_by_code(provisioned: Settings, make_client: MakeClient, app_factory):
    broken = dataclasses.replace(provisioned, table=provisioned.table + "-missing")
    client = await make_client(app_factory(broken))
    assert (await client.get("/readyz")).status == 503
    text = await (await client.get("/metrics")).text()
    assert (
        metric(
            text,
            "filesync_aws_errors_total",
            service="dynamodb",
            operation="DescribeTable",
            code="ResourceNotFoundException",
        )
        == 1
    )


async def test_redirects_and_routing_errors_carry_the_request_id_and_are_counted_by_their_status(client: AppClient):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    assert (await client.put(f"/v1/ns/{ns}/files/a.txt", data=b"hello", headers=alice)).status == 201
    redirect = await client.get(
        f"/v1/ns/{ns}/files/a.txt", headers={**alice, "X-Request-ID": "dl-1"}, allow_redirects=False
    )
    assert redirect.status == 302
    assert redirect.headers["X-Request-ID"] == "dl-1"
    # A body streamed through the service has its headers out before the handler returns: it has the id too.
    streamed = await client.get(f"/v1/ns/{ns}/files/a.txt?via=service", headers={**alice, "X-Request-ID": "dl-2"})
    assert (streamed.status, await streamed.read()) == (200, b"hello")
    assert streamed.headers["X-Request-ID"] == "dl-2"
    missing = await client.get("/v1/nothing-here", headers={"X-Request-ID": "nf-1"})
    assert (missing.status, missing.headers["X-Request-ID"]) == (404, "nf-1")
    wrong_method = await client.post("/healthz", headers={"X-Request-ID": "na-1"})
    assert (wrong_method.status, wrong_method.headers["X-Request-ID"]) == (405, "na-1")

    text = await (await client.get("/metrics")).text()
    route = "/v1/ns/{ns}/files/{path}"
    assert metric(text, "filesync_http_requests_total", route=route, method="GET", status="302") == 1
    assert metric(text, "filesync_http_requests_total", route=route, method="GET", status="200") == 1
    assert metric(text, "filesync_http_requests_total", route=route, method="GET", status="500") == 0
    assert metric(text, "filesync_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert metric(text, "filesync_http_requests_total", method="POST", status="405") == 1
