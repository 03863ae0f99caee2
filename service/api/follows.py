"""Follows over HTTP, and the one-click unsubscribe link from notification emails.

Layer: api. ``GET /v1/unsubscribe`` shows a page with a button (link scanners that fetch every URL in a
mail must not unsubscribe anyone); ``POST`` does it, which is what mail clients send for RFC 8058's
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. Neither needs a login: the token is the proof. A link
ends the follows that existed when its email was sent, and expires (``core.follows``).
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from service.api.responses import json_response
from service.api.security import authenticate
from service.core.errors import NotFound
from service.core.links import TOKEN_MAX
from service.core.models import Follow
from service.keys import FOLLOWS
from service.wire import FollowList, FollowOut, Unsubscribed


def _out(follow: Follow) -> FollowOut:
    return FollowOut(namespace=follow.namespace_id, path=follow.path, created_at=follow.created_at)


def _path(request: web.Request) -> str | None:
    return request.match_info.get("path") or None


async def put_follow(request: web.Request) -> web.Response:
    """Follow a file, or a folder and everything in it (members only)."""
    follow = await request.app[FOLLOWS].follow(authenticate(request), request.match_info["ns"], _path(request))
    return json_response(_out(follow))


async def delete_follow(request: web.Request) -> web.Response:
    """Stop following a file or folder (following nothing there is fine)."""
    await request.app[FOLLOWS].unfollow(authenticate(request), request.match_info["ns"], _path(request))
    return web.Response(status=204)


async def put_namespace_follow(request: web.Request) -> web.Response:
    """Follow everything in a namespace (members only)."""
    return await put_follow(request)


async def delete_namespace_follow(request: web.Request) -> web.Response:
    """Stop following a namespace as a whole."""
    return await delete_follow(request)


async def get_follows(request: web.Request) -> web.Response:
    """What the caller follows, in the namespaces they belong to."""
    follows = await request.app[FOLLOWS].list_for(authenticate(request))
    return json_response(FollowList(follows=[_out(f) for f in follows]))


def _token(request: web.Request) -> str:
    token = request.query.get("token", "")
    if not token or len(token) > TOKEN_MAX:
        raise NotFound("This unsubscribe link is not valid.")
    return token


async def get_unsubscribe(request: web.Request) -> web.Response:
    """A page confirming the unsubscribe (checks the link first)."""
    token = _token(request)
    request.app[FOLLOWS].check_link(token)
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Unsubscribe</title></head><body>"
        "<p>Stop the change notification emails you followed until this one?</p>"
        f'<form method=post action="?token={escape(token)}"><button type=submit>Unsubscribe</button></form>'
        "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def post_unsubscribe(request: web.Request) -> web.Response:
    """One-click unsubscribe: ends the follows the signed link names."""
    ended = await request.app[FOLLOWS].unsubscribe(_token(request))
    return json_response(Unsubscribed(ended=ended))
