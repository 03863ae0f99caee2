"""The issue's own figures, at full size: the oldest of 1,000 versions is read in at most 2 DynamoDB requests,
and a folder of 3 children beside 10,000 nested files is listed in at most 2 Query pages (the other history
and listing tests shrink chunks and pages to show the same at a few dozen items)."""

from __future__ import annotations

from functools import partial

from service.content import EMPTY_HASH
from tests.api.files_helpers import commit
from tests.api.helpers import dynamodb_cost as cost
from tests.api.test_history import read_rev, versions_of
from tests.api.test_listing import listing, new


async def test_the_oldest_of_a_thousand_versions_costs_at_most_two_dynamodb_requests(quiet):
    client, headers, ns = quiet
    last = await versions_of(client, headers, ns, "doc.txt", 1000)
    assert last == 1000
    for rev in (1, 500, 1000):
        response, used = await cost(client, partial(read_rev, client, headers, ns, "doc.txt", rev))
        assert response.status == 200, await response.text()
        assert response.headers["X-Rev"] == str(rev)
        assert response.headers["X-Content-Hash"] == EMPTY_HASH
        assert sum(used.values()) <= 2, (rev, used)


async def test_three_children_beside_ten_thousand_nested_files_are_listed_in_at_most_two_pages(quiet):
    client, headers, ns = quiet
    nested = [f"deep/d{i % 10}/sub{i % 7}/f{i:05d}.txt" for i in range(10_000)]
    for start in range(0, len(nested), 1000):
        await commit(client, headers, ns, [new(p) for p in nested[start : start + 1000]])
    await commit(client, headers, ns, [new(p) for p in ("a.txt", "m.txt", "z.txt")])
    response, used = await cost(client, lambda: listing(client, headers, ns, limit=1000))
    assert [f["path"] for f in (await response.json())["files"]] == ["a.txt", "m.txt", "z.txt"]
    assert used.get("Query", 0) <= 2, used
