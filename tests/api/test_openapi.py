"""The OpenAPI document is valid and covers every route; the docs page renders it."""

from __future__ import annotations

from openapi_spec_validator import validate

from service.api.problems import PROBLEM_TYPES
from service.settings import Settings
from tests.conftest import AppClient, MakeClient


def registered_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), path))
    return routes


async def test_openapi_document_validates(client: AppClient):
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    spec = await response.json()
    validate(spec)
    assert spec["openapi"].startswith("3.")


async def test_openapi_lists_every_route(settings: Settings, make_client: MakeClient, app_factory):
    app = app_factory(settings)
    client = await make_client(app)
    spec = await (await client.get("/v1/openapi.json")).json()
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    missing = registered_routes(app) - documented
    assert not missing, f"routes missing from the OpenAPI document: {sorted(missing)}"
    assert documented - registered_routes(app) == set()


async def test_a_route_added_outside_the_table_is_caught(settings: Settings, make_client: MakeClient, app_factory):
    app = app_factory(settings)

    async def undocumented(request):
        raise AssertionError("never called")

    app.router.add_get("/v1/secret", undocumented)
    client = await make_client(app)
    spec = await (await client.get("/v1/openapi.json")).json()
    documented = {(m, p) for p, item in spec["paths"].items() for m in item}
    assert registered_routes(app) - documented == {("get", "/v1/secret")}


async def test_docs_page_lists_operations_and_problem_types(client: AppClient):
    response = await client.get("/v1/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    spec = await (await client.get("/v1/openapi.json")).json()
    for item in spec["paths"].values():
        for op in item.values():
            assert f'id="op-{op["operationId"]}"' in page
    for kind in PROBLEM_TYPES:
        assert f'id="problem-{kind.slug}"' in page
