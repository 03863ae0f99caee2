"""Domain records: users, sessions, namespaces, memberships, credentials.

Layer: core (leaf). Plain frozen dataclasses; the ``aws`` adapters build them from items and the ``api``
layer renders them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["owner", "editor", "viewer"]
NamespaceKind = Literal["home", "shared"]

ROLES: tuple[Role, ...] = ("viewer", "editor", "owner")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def role_allows(have: Role, need: Role) -> bool:
    """Roles are ordered: an owner may do what an editor may, an editor what a viewer may."""
    return _RANK[have] >= _RANK[need]


@dataclass(frozen=True, slots=True)
class Usage:
    """An account's storage: ``used`` bytes (the versions its namespaces retain), and its own ``quota`` as
    stored (None: the deployment's default applies; 0: no limit)."""

    used: int
    quota: int | None = None

    def limit(self, default: int) -> int:
        """The quota in force: its own, or the default (0: no limit)."""
        return self.quota if self.quota is not None else default


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str
    created_at: float
    home_namespace: str
    disabled: bool = False
    #: Where change notifications go (validated and normalized); None: the user gets none.
    email: str | None = None
    #: Whether the owner confirmed ``email`` by the link mailed to it; only a confirmed address gets digests.
    email_confirmed: bool = False
    #: The nonce the pending address's confirmation link carries (None once confirmed, or with no address).
    email_nonce: str | None = None
    #: Storage: bytes its namespaces' retained versions hold, and its own quota (None: the default).
    usage: Usage = field(default_factory=lambda: Usage(0))


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


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One version of a file: what the current-state item and every journal entry record."""

    path: str
    file_id: str
    rev: int
    content_hash: str
    size: int
    mtime: float
    deleted: bool
    committed_by: str
    committed_at: float
    #: The journal sequence number of the commit that wrote this version, and of the one before.
    seq: int
    prev_seq: int | None
    block_size: int
    commit_key: str | None = None
    moved_from: str | None = None
    moved_to: str | None = None
    #: Which stored object holds the verified body (S3's version id, and its ETag): downloads ask for
    #: exactly it, so an object replaced behind the service's back is never served under this hash.
    body_version: str | None = None
    body_etag: str | None = None
    #: A body stored in a pack: the pack's id and where in it the body starts (it is ``size`` bytes long);
    #: ``body_version``/``body_etag`` then name the pack object.
    body_pack: str | None = None
    body_offset: int | None = None
    #: Where the file's older versions are (on the current-state item only; None on journal records, and
    #: on items written before the service kept it).
    history: History | None = None

    @property
    def body(self) -> BodyRef:
        return BodyRef(self.body_version, self.body_etag, self.body_pack, self.body_offset)


@dataclass(frozen=True, slots=True)
class History:
    """Where a file's older versions are, as its current item records it (``service.core.files`` explains
    the layout): those from rev ``base`` on are in the history chunks numbered up to ``sealed`` (under
    ``key``), or, if newer, in the journal entries ``recent`` names as ``(rev, seq)``, oldest first."""

    base: int
    key: str
    sealed: int | None = None
    recent: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryChunk:
    """The versions of one file whose revs fall in one chunk's range (oldest first), and the number of the
    chunk sealed before it (None: the first)."""

    number: int
    versions: tuple[FileVersion, ...]
    previous: int | None


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """What one read of history records found: journal entries by seq, history chunks by number, and the
    caller's membership if it was asked for (read after the file item the records were located by)."""

    entries: dict[int, JournalEntry]
    chunks: dict[int, HistoryChunk]
    membership: Membership | None = None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One commit (or one chunk of a large one): its sequence number in the namespace and its changes."""

    seq: int
    committed_at: float
    committed_by: str
    changes: tuple[FileVersion, ...]


@dataclass(frozen=True, slots=True)
class BodyRef:
    """Where a verified body is stored: one object, by its version id (a versioned bucket; None otherwise)
    and its ETag. Either pins what was verified: a version id for good, an ETag as long as the object is not
    replaced. The object is the content's loose blob, or with ``pack`` set, that pack, the body starting at
    ``offset`` (its length is the content's size)."""

    version_id: str | None = None
    etag: str | None = None
    pack: str | None = None
    offset: int | None = None

    @property
    def pinned(self) -> bool:
        return self.version_id is not None or self.etag is not None

    @property
    def packed(self) -> bool:
        return self.pack is not None and self.offset is not None


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Content the service has verified against its hash, in one namespace, and the object it verified
    (``body_version``/``body_etag``; None for records older than pinning), a pack when ``body_pack`` is set."""

    content_hash: str
    size: int
    block_size: int
    body_version: str | None = None
    body_etag: str | None = None
    body_pack: str | None = None
    body_offset: int | None = None

    @property
    def body(self) -> BodyRef:
        return BodyRef(self.body_version, self.body_etag, self.body_pack, self.body_offset)

    @staticmethod
    def of(content_hash: str, size: int, block_size: int, body: BodyRef) -> BlobRecord:
        return BlobRecord(content_hash, size, block_size, body.version_id, body.etag, body.pack, body.offset)


@dataclass(frozen=True, slots=True)
class PackRecord:
    """A pack the service stored and a commit referenced: its id, its length in bytes, how many bodies it
    holds, when it was written, and the object (version id, ETag). Packs that no record names were never
    committed (a torn upload) and are garbage once older than the grace period."""

    pack_id: str
    size: int
    entries: int
    created_at: float
    body: BodyRef = BodyRef()


@dataclass(frozen=True, slots=True)
class Verification:
    """What the object at a blob key is, against a claimed (content hash, size): ``ok`` (and ``body``
    names the object verified), ``missing``, ``mismatch`` (other bytes: deleted), or ``wrong_size`` (the
    content is right but is ``size`` bytes, not the claimed number: the claim is wrong, the object stays)."""

    outcome: Literal["ok", "missing", "mismatch", "wrong_size"]
    body: BodyRef = BodyRef()
    size: int | None = None


class StoreConflict(Exception):
    """A conditional write lost: the namespace head moved, some file items changed (``keys``), or the payer's
    usage moved past what the charge allowed (``usage``)."""

    def __init__(self, keys: tuple[str, ...] = (), head_moved: bool = False, usage: bool = False) -> None:
        super().__init__(f"conflict on {len(keys)} items (head moved: {head_moved}, usage: {usage})")
        self.keys = keys
        self.head_moved = head_moved
        self.usage = usage


@dataclass(frozen=True, slots=True)
class Charge:
    """What a commit's transaction adds to its payer's usage: ``delta`` bytes, on condition that the usage
    is still at most ``max_used`` (None: no limit) and the stored quota is still ``quota`` as read."""

    payer: str
    delta: int
    max_used: int | None
    quota: int | None


class BodyChanged(Exception):
    """A pinned read found the object is not the one pinned any more (another ETag, or no such version)."""


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """One part of a multipart upload a client sent through a presigned URL, as the client reports it: its
    number, the ETag the store answered, and the SHA-256 checksum it was sent with (base64), if any."""

    number: int
    etag: str
    checksum_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A multipart upload the service started (so it can be finished, or aborted if abandoned)."""

    upload_id: str
    key: str
    namespace: str
    content_hash: str
    started_at: float
    sort_key: str


@dataclass(frozen=True, slots=True)
class Download:
    """An open body: iterate ``chunks``; ``size`` is the length served, ``total`` the whole body's."""

    chunks: AsyncIterator[bytes]
    size: int
    total: int
    content_range: str | None


@dataclass(frozen=True, slots=True)
class Revocation:
    sid: str
    #: Epoch seconds after which no token of the session can be valid anyway.
    expires_at: float
    #: Position in the feed (milliseconds since the epoch when published, plus a tie-breaker).
    position: str


def position_at(epoch_seconds: float) -> str:
    """A feed position that sorts as text in time order."""
    return f"{int(epoch_seconds * 1000):013d}"


@dataclass(frozen=True, slots=True)
class Follow:
    """A user follows a file or a folder (recursively) of a namespace; ``path`` "" is the whole namespace."""

    namespace_id: str
    username: str
    path: str
    path_key: str
    created_at: float

    def covers(self, path_key: str) -> bool:
        return not self.path_key or path_key == self.path_key or path_key.startswith(self.path_key + "/")
