"""Namespaces: list, create, inspect, and manage members.

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service.api.bodies import read_json
from service.api.responses import json_response
from service.api.security import authenticate
from service.keys import NAMESPACES
from service.wire import (
    Member,
    MemberUpdate,
    NamespaceCreate,
    NamespaceDetail,
    NamespaceList,
    NamespaceSummary,
)


async def get_namespaces(request: web.Request) -> web.Response:
    """The namespaces the caller belongs to, with the caller's role in each."""
    memberships = await request.app[NAMESPACES].list_for(authenticate(request))
    return json_response(
        NamespaceList(
            namespaces=[
                NamespaceSummary(id=m.namespace_id, name=m.namespace_name, kind=m.namespace_kind, role=m.role)
                for m in memberships
            ]
        )
    )


async def post_namespace(request: web.Request) -> web.Response:
    """Create a shared namespace; the caller becomes its owner."""
    principal = authenticate(request)
    body = await read_json(request, NamespaceCreate)
    namespace = await request.app[NAMESPACES].create_shared(principal, body.name)
    return json_response(
        NamespaceSummary(id=namespace.id, name=namespace.name, kind=namespace.kind, role="owner"), status=201
    )


async def get_namespace(request: web.Request) -> web.Response:
    """A namespace and its members (members only: anyone else gets 404)."""
    view = await request.app[NAMESPACES].view(authenticate(request), request.match_info["ns"])
    ns = view.namespace
    return json_response(
        NamespaceDetail(
            id=ns.id,
            name=ns.name,
            kind=ns.kind,
            role=view.role,
            created_by=ns.created_by,
            created_at=ns.created_at,
            members=[Member(username=m.username, role=m.role) for m in view.members],
        )
    )


async def put_member(request: web.Request) -> web.Response:
    """Add a member or change a member's role (owners only)."""
    principal = authenticate(request)
    body = await read_json(request, MemberUpdate)
    membership = await request.app[NAMESPACES].set_member(
        principal, request.match_info["ns"], request.match_info["username"], body.role
    )
    return json_response(Member(username=membership.username, role=membership.role))


async def delete_member(request: web.Request) -> web.Response:
    """Remove a member (owners), or leave (anyone, for themselves)."""
    await request.app[NAMESPACES].remove_member(
        authenticate(request), request.match_info["ns"], request.match_info["username"]
    )
    return web.Response(status=204)
