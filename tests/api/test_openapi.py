"""The OpenAPI document is valid and covers every route; the docs page renders it."""

from __future__ import annotations

import html
import json
import re

from openapi_spec_validator import validate

from service.api.problems import PROBLEM_TYPES
from service.settings import Settings
from tests.api.helpers import user
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


def operations(spec) -> dict[str, dict]:
    return {op["operationId"]: op for item in spec["paths"].values() for op in item.values()}


def block(page: str, operation_id: str) -> str:
    """The page's section of one operation: up to the next operation's, or the problem types."""
    start = page.index(f'id="op-{operation_id}"')
    ends = [page.find(marker, start + 1) for marker in ('<div class=op id="op-', '<h2 id="problems">')]
    return page[start : min(end for end in ends if end != -1)]


async def test_non_json_responses_carry_their_own_media_type_not_problem_json(client: AppClient):
    spec = await (await client.get("/v1/openapi.json")).json()
    page = await (await client.get("/v1/docs")).text()
    ops = operations(spec)
    assert list(ops["get_metrics"]["responses"]["200"]["content"]) == ["text/plain"]
    assert list(ops["get_file"]["responses"]["200"]["content"]) == ["application/octet-stream"]
    assert "content" not in ops["post_logout"]["responses"]["204"]
    assert "Location" in ops["get_file"]["responses"]["302"]["headers"]
    assert "<code>200</code> <code>text/plain</code>" in block(page, "get_metrics")
    assert "<code>200</code> <code>application/octet-stream</code>" in block(page, "get_file")
    assert "<code>302</code> redirect to <code>Location</code>" in block(page, "get_file")
    assert "<code>204</code> no body" in block(page, "post_logout")
    assert "<code>200</code> <code>text/html</code>" in block(page, "get_docs")
    # problem+json labels only the error statuses, every one of them.
    for op_id, op in ops.items():
        for status, response in op["responses"].items():
            label = f"<code>{status}</code> problem+json"
            assert (label in block(page, op_id)) == ("$ref" in response), (op_id, status)


async def test_every_parameter_has_a_type_and_a_description(client: AppClient):
    spec = await (await client.get("/v1/openapi.json")).json()
    ops = operations(spec)
    for op_id, op in ops.items():
        for param in op.get("parameters", []):
            assert param["schema"].get("type"), (op_id, param["name"])
            assert param.get("description"), (op_id, param["name"])
    limits = {p["name"]: p["schema"] for p in ops["get_files"]["parameters"]}
    assert limits["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    feed = {p["name"]: p["schema"] for p in ops["get_changes"]["parameters"]}
    assert feed["wait"] == {"type": "integer", "minimum": 0, "maximum": 60}
    page = await (await client.get("/v1/docs")).text()
    assert "<td>integer from 0 to 60</td>" in block(page, "get_changes")
    assert "A namespace id" in block(page, "get_changes")


async def test_the_documented_integer_bounds_are_the_enforced_ones(client: AppClient):
    headers = await user(client, "bounds")
    ns = (await (await client.get("/v1/namespaces", headers=headers)).json())["namespaces"][0]["id"]
    assert (await client.get(f"/v1/ns/{ns}/files?limit=1000", headers=headers)).status == 200
    assert (await client.get(f"/v1/ns/{ns}/files?limit=1001", headers=headers)).status == 422
    assert (await client.get(f"/v1/ns/{ns}/changes?limit=100", headers=headers)).status == 200
    assert (await client.get(f"/v1/ns/{ns}/changes?limit=101", headers=headers)).status == 422
    assert (await client.get(f"/v1/ns/{ns}/changes?wait=61", headers=headers)).status == 422


async def test_the_page_renders_inline_markup_and_prints_no_backticks(client: AppClient):
    page = await (await client.get("/v1/docs")).text()
    outside_code_blocks = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)
    assert "`" not in outside_code_blocks
    assert "<code>via=service</code>" in block(page, "get_file")
    spec = await (await client.get("/v1/openapi.json")).json()
    assert "``" not in json.dumps(spec), "reST literals must become CommonMark in the document too"


async def test_the_page_has_contents_and_an_example_per_operation(client: AppClient):
    page = await (await client.get("/v1/docs")).text()
    spec = await (await client.get("/v1/openapi.json")).json()
    contents = page[page.index('<nav id="contents">') : page.index("</nav>")]
    for op_id, op in operations(spec).items():
        assert f'href="#op-{op_id}"' in contents
        (sample,) = op["x-codeSamples"]
        assert sample["source"].startswith("curl -s ")
        assert f"<pre>{html.escape(sample['source'])}</pre>" in block(page, op_id)
    assert 'href="#problems"' in contents
    assert 'href="#schemas"' in contents
    ops = operations(spec)
    assert "-XPUT" in ops["put_namespace_follow"]["x-codeSamples"][0]["source"]
    assert "-T hello.txt" in ops["put_file"]["x-codeSamples"][0]["source"]
    commit = ops["post_commit"]["x-codeSamples"][0]["source"]
    body = json.loads(commit.split("-d '", 1)[1].rstrip("'"))
    assert body["entries"][0]["path"] == "docs/hello.txt"


async def test_every_example_body_is_a_valid_request(client: AppClient):
    """Each example's JSON body decodes as its operation's request model: sent as the example sends it, no
    answer is a 400, 415 or 422 about its shape (the content it names may not exist: 404s and 409s are fine)."""
    headers = await user(client, "examples")
    ns = (await (await client.get("/v1/namespaces", headers=headers)).json())["namespaces"][0]["id"]
    # The examples' file, as the put_file example uploads it: what the others name then exists.
    assert (await client.put(f"/v1/ns/{ns}/files/docs/hello.txt", data=b"hello\n", headers=headers)).status == 201
    spec = await (await client.get("/v1/openapi.json")).json()
    sent = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            source = op["x-codeSamples"][0]["source"]
            if " -d '" not in source or op["operationId"] in ("post_logout", "put_password", "put_email"):
                continue
            body = json.loads(source.split(" -d '", 1)[1].rstrip("'"))
            url = path.replace("{ns}", ns).replace("{username}", "examples").replace("{upload_id}", "2~abc123")
            if op["operationId"] == "post_signup":
                body["username"] = "examples2"
            if op["operationId"] == "post_trash_restore":  # its example brings the file back: delete it first
                history = await (await client.get(f"/v1/ns/{ns}/files/docs/hello.txt?versions", headers=headers)).json()
                rev = str(history["versions"][0]["rev"])
                deleted = await client.delete(f"/v1/ns/{ns}/files/docs/hello.txt", headers={**headers, "If-Match": rev})
                assert deleted.status == 200
            response = await client.request(method.upper(), url, json=body, headers=headers)
            assert response.status not in (400, 415, 422), (op["operationId"], await response.text())
            sent += 1
    assert sent >= 15
