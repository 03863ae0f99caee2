"""Sync over HTTP: compare a manifest, follow the change feed (with long-poll).

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service.api.bodies import read_json
from service.api.files import int_param
from service.api.responses import file_info, json_response
from service.api.security import authenticate
from service.core.sync import MAX_FEED_ENTRIES, MAX_WAIT_SECONDS, ManifestEntry
from service.keys import SETTINGS, SYNC
from service.paths import normalize_path, path_key
from service.wire import Changes, CompareItemOut, CompareRequest, CompareResponse


async def post_compare(request: web.Request) -> web.Response:
    """Compare a page of the client's manifest with the namespace: what to download, upload, resolve."""
    principal = authenticate(request)
    body = await read_json(request, CompareRequest, max_body=request.app[SETTINGS].limits.max_compare_body)
    entries = [ManifestEntry(e.path, e.content_hash, e.synced_rev, e.synced_hash) for e in body.entries]
    result = await request.app[SYNC].compare(
        principal,
        request.match_info["ns"],
        entries,
        ranged=body.ranged,
        after=_bound(body.after, "$.after"),
        through=_bound(body.through, "$.through"),
    )
    return json_response(
        CompareResponse(
            items=[
                CompareItemOut(path=i.path, action=i.action, file=file_info(i.server) if i.server else None)
                for i in result.items
            ],
            up_to_date=result.up_to_date,
            cursor=result.cursor,
            complete_through=result.complete_through,
        )
    )


def _bound(raw: str | None, field: str) -> str | None:
    return None if raw is None else path_key(normalize_path(raw, field))


async def get_changes(request: web.Request) -> web.Response:
    """Changes committed after ``cursor`` (from a compare or the previous page), ``limit`` commits a page
    (1-100, default 50). With ``wait=SECONDS`` (at most 60) it answers as soon as something changes."""
    principal = authenticate(request)
    limit = int_param(request, "limit", 50, 1, MAX_FEED_ENTRIES) or 50
    wait = int_param(request, "wait", 0, 0, MAX_WAIT_SECONDS) or 0
    page = await request.app[SYNC].changes(
        principal, request.match_info["ns"], request.query.get("cursor") or None, limit, wait
    )
    return json_response(
        Changes(
            changes=[file_info(c) for c in page.changes],
            cursor=page.cursor,
            more=page.more,
            backoff_seconds=page.backoff,
        )
    )
