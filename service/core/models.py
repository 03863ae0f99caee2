"""Domain records: users, sessions, namespaces, memberships, credentials.

Layer: core (leaf). Plain frozen dataclasses; the ``aws`` adapters build them from items and the ``api``
layer renders them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["owner", "editor", "viewer"]
NamespaceKind = Literal["home", "shared"]

ROLES: tuple[Role, ...] = ("viewer", "editor", "owner")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def role_allows(have: Role, need: Role) -> bool:
    """Roles are ordered: an owner may do what an editor may, an editor what a viewer may."""
    return _RANK[have] >= _RANK[need]


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str
    created_at: float
    home_namespace: str
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    """A login: the refresh token's family. Access tokens name their session (``sid``)."""

    sid: str
    username: str
    secret_hash: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a valid access token."""

    username: str
    sid: str


@dataclass(frozen=True, slots=True)
class Namespace:
    id: str
    name: str
    kind: NamespaceKind
    created_by: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Membership:
    namespace_id: str
    username: str
    role: Role
    namespace_name: str
    namespace_kind: NamespaceKind


@dataclass(frozen=True, slots=True)
class TemporaryCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float


@dataclass(frozen=True, slots=True)
class LoginFailures:
    """Failed logins counted for one key (an account or a client address) since ``first_at``."""

    count: int
    first_at: float
