"""Signed, expiring tokens for the links the service sends by email (unsubscribe, address confirmation).

Layer: core (leaf: standard library and orjson only). A token is ``<payload>.<mac>``: the payload is the
claims as JSON with their expiry (``exp``, epoch seconds), base64url; the mac is HMAC-SHA256 over it with a
key derived from the service's secret and the link's purpose, so a token made for one purpose is worthless
for another. Such a link works without logging in: the token is the proof, so it names exactly what it
does and cannot be forged, widened or used past its expiry. Anything else answers 404, as a link that
never existed would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from service.core.errors import NotFound

#: Longest token accepted (a link's query string stays well within what mail clients and proxies keep).
TOKEN_MAX = 2048


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class LinkSigner:
    def __init__(self, secret: str, purpose: str, what: str) -> None:
        """``purpose`` separates keys (change it to invalidate every token of a kind); ``what`` names the
        link in error messages ("unsubscribe link")."""
        self._key = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
        self._what = what

    def sign(self, claims: Mapping[str, Any], expires_at: float) -> str:
        payload = _b64(orjson.dumps({**claims, "exp": expires_at}))
        return f"{payload.decode()}.{self._mac(payload).decode()}"

    def verify(self, token: str, now: float) -> dict[str, Any]:
        """The claims of a genuine, unexpired token; ``NotFound`` for anything else."""
        payload, _, mac = token.encode().partition(b".")
        if not payload or len(token) > TOKEN_MAX or not hmac.compare_digest(mac, self._mac(payload)):
            raise NotFound(f"This {self._what} is not valid.")
        claims = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
            raise NotFound(f"This {self._what} is not valid.")
        if now >= claims["exp"]:
            raise NotFound(f"This {self._what} has expired.")
        return claims

    def _mac(self, payload: bytes) -> bytes:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())
