"""Bearer tokens: short-lived signed access tokens, and opaque refresh tokens stored hashed.

Layer: core. An access token is a JWT (HS256, PyJWT) naming the user and the session; checking one
costs an HMAC and a dictionary look-up in the worker's revocation list, never a database read. A refresh
token is ``<session id>.<secret>``; only the SHA-256 of the secret is stored, and comparisons are
constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import jwt

from service.core.errors import Unauthenticated
from service.core.models import Principal

ISSUER = "filesync"
ALGORITHM = "HS256"
#: Tolerated clock difference between workers, in seconds.
LEEWAY_SECONDS = 5

_REFRESH = re.compile(r"^(?P<sid>[a-z2-7]{26})\.(?P<secret>[A-Za-z0-9_-]{43})$")


def new_session_id() -> str:
    """128 random bits, base32 (26 characters, ``[a-z2-7]``)."""
    return random_id(16)


def random_id(nbytes: int) -> str:
    """``nbytes`` random bytes as lowercase unpadded base32."""
    return base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_secret(secret))


class TokenService:
    """Issues and verifies access tokens.

    Verified tokens are remembered (up to ``cache_size``, least recently used out) until they expire, so
    a client presenting the same token on every request pays the JWT verification once; only a token
    that passed full verification is ever cached, keyed by its exact bytes.
    """

    def __init__(
        self,
        secret: str,
        access_seconds: int,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must have at least 32 characters")
        self._secret = secret
        self.access_seconds = access_seconds
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def issue_access(self, principal: Principal) -> str:
        now = int(self._clock())
        claims = {
            "iss": ISSUER,
            "sub": principal.username,
            "sid": principal.sid,
            "typ": "access",
            "iat": now,
            "exp": now + self.access_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_access(self, token: str) -> Principal:
        """The principal a valid, unexpired access token names; ``Unauthenticated`` otherwise."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if self._clock() < expires_at + LEEWAY_SECONDS:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires_at = self._verify(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                # Time is checked below against the service's clock, the same one that issued the token.
                options={
                    "require": ["exp", "iat", "sub", "sid", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError:
            raise Unauthenticated("The access token is invalid.") from None
        expires_at = claims["exp"]
        if (
            claims.get("typ") != "access"
            or not isinstance(claims["sub"], str)
            or not isinstance(claims["sid"], str)
            or not isinstance(expires_at, int | float)
        ):
            raise Unauthenticated("The access token is invalid.")
        if self._clock() >= expires_at + LEEWAY_SECONDS:
            raise Unauthenticated("The access token has expired; refresh it or log in again.")
        return Principal(username=claims["sub"], sid=claims["sid"]), float(expires_at)

    @staticmethod
    def new_refresh(sid: str) -> tuple[str, str]:
        """A refresh token for session ``sid`` and the hash to store for it."""
        secret = secrets.token_urlsafe(32)
        return f"{sid}.{secret}", hash_secret(secret)

    @staticmethod
    def parse_refresh(token: str) -> tuple[str, str]:
        """``(session id, secret)`` of a well-formed refresh token; ``Unauthenticated`` otherwise."""
        match = _REFRESH.match(token)
        if match is None:
            raise Unauthenticated("The refresh token is invalid.")
        return match.group("sid"), match.group("secret")
