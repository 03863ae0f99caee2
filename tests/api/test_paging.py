"""A namespace of 6,000 files: every paged endpoint returns each entry exactly once, and no answer is
unbounded (a compare of a dense range stops at its limit of server files, here shrunk from 10,000 to 2,500,
and says where). The feed's journal entries (one per transaction of about 90 files, some 70 in all) fit its
limit of 100 but overrun DynamoDB's 1 MB page, so the feed must follow the store's pages."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import orjson
import pytest

from service.content import EMPTY_HASH
from service.core import sync
from service.paths import path_key
from tests.api.helpers import user
from tests.api.test_health import metric

FILES = 6_000
#: The compare's bound on server files per answer, shrunk so three answers cover the namespace.
MAX_COMPARE_SERVER_FILES = 2_500


async def post(client, url: str, body: object, headers: dict[str, str]) -> Any:
    """POST a JSON body as a stream (large bodies as raw bytes would block the test's event loop)."""
    data = io.BytesIO(orjson.dumps(body))
    response = await client.post(url, data=data, headers={**headers, "Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    return await response.json()


def new_files(paths: list[str]) -> dict[str, Any]:
    return {"entries": [{"path": p, "content_hash": EMPTY_HASH, "size": 0, "mtime": 1.0} for p in paths]}


def known(paths: list[str]) -> list[dict[str, Any]]:
    return [{"path": p, "content_hash": EMPTY_HASH, "synced_rev": 1, "synced_hash": EMPTY_HASH} for p in paths]


async def namespace_of(client, name: str, paths: list[str]) -> tuple[dict[str, str], str]:
    headers = await user(client, name)
    ns = (await (await client.get("/v1/account", headers=headers)).json())["home_namespace"]
    for start in range(0, len(paths), 1000):
        await post(client, f"/v1/ns/{ns}/commit", new_files(paths[start : start + 1000]), headers)
    return headers, ns


@pytest.mark.timeout(120)
async def test_every_paged_endpoint_returns_each_entry_exactly_once(client, monkeypatch):
    monkeypatch.setattr(sync, "MAX_COMPARE_SERVER_FILES", MAX_COMPARE_SERVER_FILES)
    paths = [f"d{i % 37:02d}/sub{i % 5}/f{i:06d}.txt" for i in range(FILES)]
    alice, ns = await namespace_of(client, "alice", paths)
    expected = Counter(paths)

    listed: Counter[str] = Counter()
    cursor = None
    while True:
        params = {"recursive": "true", "limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get(f"/v1/ns/{ns}/files", params=params, headers=alice)).json()
        assert len(page["files"]) <= 1000
        listed.update(f["path"] for f in page["files"])
        cursor = page["cursor"]
        if cursor is None:
            break
    assert listed == expected

    fed: Counter[str] = Counter()

    def queries(text: str) -> float:
        return metric(text, "filesync_aws_requests_total", service="dynamodb", operation="Query")

    before = await (await client.get("/metrics")).text()
    feed_cursor = "s0"
    while True:
        params = {"cursor": feed_cursor, "limit": "100"}
        page = await (await client.get(f"/v1/ns/{ns}/changes", params=params, headers=alice)).json()
        fed.update(c["path"] for c in page["changes"])
        feed_cursor = page["cursor"]
        if not page["more"]:
            break
    assert fed == expected
    after = await (await client.get("/metrics")).text()
    # The entries fit the feed's limit of 100, but not one 1 MB page of the store: it followed the store's pages.
    assert queries(after) - queries(before) >= 3, "the feed's reads never met the store's 1 MB page"

    # A client that has nothing but five of the files and one of its own: the server's files come back in
    # bounded answers, each file once; an answer cut short covers only the keys it read, and the client sends
    # the rest of its manifest again from there.
    ordered = sorted(paths, key=path_key)
    manifest = [*known(ordered[-5:]), {"path": "zz-new", "content_hash": EMPTY_HASH}]
    lacking: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    up_to_date, after, answers = 0, None, 0
    while True:
        body = {"entries": [m for m in manifest if after is None or path_key(m["path"]) > after], "after": after}
        answer = await post(client, f"/v1/ns/{ns}/compare", body, alice)
        answers += 1
        assert len(answer["items"]) <= MAX_COMPARE_SERVER_FILES
        if answers == 1:
            assert answer["complete_through"] == path_key(ordered[MAX_COMPARE_SERVER_FILES - 1])
            assert {i["path"] for i in answer["items"]} == set(ordered[:MAX_COMPARE_SERVER_FILES])
        lacking.update(i["path"] for i in answer["items"] if i["action"] == "download")
        actions.update(i["action"] for i in answer["items"])
        up_to_date += answer["up_to_date"]
        after = answer["complete_through"]
        if after is None:
            break
    assert answers == -(-FILES // MAX_COMPARE_SERVER_FILES)
    assert lacking == expected - Counter(ordered[-5:])
    assert actions == {"download": FILES - 5, "upload": 1}
    assert up_to_date == 5
