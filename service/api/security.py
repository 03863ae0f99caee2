"""Who is calling: the bearer token of a request, and the client's network address.

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service.core.errors import Unauthenticated
from service.core.models import Principal
from service.keys import ACCOUNTS, SETTINGS

_SCHEME = "bearer "


def authenticate(request: web.Request) -> Principal:
    """The principal of a valid ``Authorization: Bearer`` token (no I/O); 401 otherwise."""
    header = request.headers.get("Authorization", "")
    if not header[: len(_SCHEME)].lower() == _SCHEME or len(header) > 4096:
        raise Unauthenticated("Send an access token as `Authorization: Bearer <token>`.")
    return request.app[ACCOUNTS].authenticate(header[len(_SCHEME) :].strip())


def client_address(request: web.Request) -> str:
    """The caller's address: the load balancer's last ``X-Forwarded-For`` hop when trusted."""
    if request.app[SETTINGS].auth.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1][:64]
    return request.remote or "unknown"
