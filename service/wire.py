"""Wire models shared by the service and its clients: the JSON bodies of the API.

Layer: leaf, shared with ``tools/``. Every model rejects unknown fields (see ``service.codec``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from service.codec import WireModel


class FieldProblem(WireModel):
    """One invalid field of a request: a JSON path and what is wrong with it."""

    path: str
    message: str


class Problem(WireModel, omit_defaults=True):
    """An RFC 9457 problem details body (``application/problem+json``).

    ``type`` identifies the kind of problem (a link into the docs page); ``detail`` explains this
    occurrence; ``request_id`` matches the ``X-Request-ID`` header and the service's log lines.
    """

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[FieldProblem] | None = None
    retry_after: int | None = None
    checks: dict[str, str] | None = None


class Health(WireModel):
    """Liveness: the process is up and its event loop answers."""

    status: str


class Readiness(WireModel):
    """Readiness: every dependency answered (``checks`` maps each to ``ok`` or a reason)."""

    status: str
    checks: dict[str, str]


# --- identity ----------------------------------------------------------------------------------------

#: Generous caps on raw strings, checked before any work; the real rules (3-32 characters for a
#: username, 8-1024 for a password) are checked after normalization and named in the error.
RawUsername = Annotated[str, Meta(max_length=64)]
RawPassword = Annotated[str, Meta(max_length=1024)]
Role = Literal["owner", "editor", "viewer"]


class Login(WireModel):
    """A username and password."""

    username: RawUsername
    password: RawPassword


class Account(WireModel):
    """A user account and its home namespace."""

    username: str
    home_namespace: str
    created_at: float


class RefreshRequest(WireModel):
    refresh_token: Annotated[str, Meta(max_length=128)]


class Tokens(WireModel):
    """A bearer access token (short-lived) and a refresh token (rotated on every use)."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    username: str


class PasswordChange(WireModel):
    current_password: RawPassword
    new_password: RawPassword


class NamespaceCreate(WireModel):
    name: Annotated[str, Meta(max_length=1024)]


class NamespaceSummary(WireModel):
    """One namespace the caller belongs to, with the caller's role."""

    id: str
    name: str
    kind: str
    role: Role


class NamespaceList(WireModel):
    """The namespaces the caller belongs to."""

    namespaces: list[NamespaceSummary]


class Member(WireModel):
    username: str
    role: Role


class NamespaceDetail(WireModel):
    """A namespace, the caller's role in it, and its members."""

    id: str
    name: str
    kind: str
    role: Role
    created_by: str
    created_at: float
    members: list[Member]


class MemberUpdate(WireModel):
    role: Role


class CredentialsRequest(WireModel):
    """Which namespaces to cover (default: all of the caller's) and for how long (seconds)."""

    namespaces: list[Annotated[str, Meta(max_length=64)]] | None = None
    duration_seconds: int | None = None


class Grant(WireModel):
    namespace: str
    prefix: str
    access: Literal["read", "write"]


class AwsCredentials(WireModel):
    """Temporary AWS credentials scoped to the caller's namespaces, and where to use them."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: str
    bucket: str
    region: str
    endpoint_url: str | None
    grants: list[Grant]
