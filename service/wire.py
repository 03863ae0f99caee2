"""Wire models shared by the service and its clients: the JSON bodies of the API.

Layer: leaf, shared with ``tools/``. Request bodies (``WireModel``) reject unknown fields; response bodies
(``ResponseModel``) ignore them when read, so a client keeps working when a newer server adds a field (see
``service.codec``). A model is one or the other, never both.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from service.codec import ResponseModel, WireModel


class FieldProblem(ResponseModel):
    """One invalid field of a request: a JSON path and what is wrong with it."""

    path: str
    message: str


class Problem(ResponseModel, omit_defaults=True):
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
    current: FileInfo | None = None
    used: int | None = None
    quota: int | None = None
    needed: int | None = None


class Health(ResponseModel):
    """Liveness: the process is up and its event loop answers."""

    status: str


class Readiness(ResponseModel):
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


RawEmail = Annotated[str, Meta(max_length=320)]


class SignUp(WireModel):
    """A new account: username, password and (optionally) where change notifications go."""

    username: RawUsername
    password: RawPassword
    email: RawEmail | None = None


class Account(ResponseModel):
    """A user account, its home namespace, and its notification address (null: no emails). An address gets
    no notification until ``email_confirmed``: its owner followed the link mailed to it, and none while
    ``email_suppressed``."""

    username: str
    home_namespace: str
    created_at: float
    email: str | None = None
    email_confirmed: bool = False
    #: Mail to ``email`` bounced for good or its recipient complained (``email_suppressed_reason``): nothing
    #: is sent there, confirmation mail included. Setting another address ends it for that address.
    email_suppressed: bool = False
    email_suppressed_reason: Literal["bounce", "complaint"] | None = None
    storage: Storage | None = None


class Storage(ResponseModel):
    """An account's storage: ``used`` bytes (every version its namespaces retain, counted whole for each
    version whatever is shared or deduplicated; a version that keeps its file's content, as a move does, adds
    nothing) and its ``quota`` in bytes (0: no limit). The owner who created a namespace pays for it."""

    used: int
    quota: int


class EmailChange(WireModel):
    """Set (or with null, remove) the notification address; the current password proves it is you."""

    email: RawEmail | None
    current_password: RawPassword


class FollowOut(ResponseModel):
    """A followed file or folder (recursive); ``path`` "" is the whole namespace."""

    namespace: str
    path: str
    created_at: float


class FollowList(ResponseModel):
    follows: list[FollowOut]


class Unsubscribed(ResponseModel):
    """What a one-click unsubscribe ended."""

    ended: int


class EmailConfirmed(ResponseModel):
    """The notification address a confirmation link confirmed."""

    email: str
    email_confirmed: bool


class RefreshRequest(WireModel):
    refresh_token: Annotated[str, Meta(max_length=128)]


class Tokens(ResponseModel):
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


class NamespaceSummary(ResponseModel):
    """One namespace the caller belongs to, with the caller's role."""

    id: str
    name: str
    kind: str
    role: Role


class NamespaceList(ResponseModel):
    """The namespaces the caller belongs to."""

    namespaces: list[NamespaceSummary]


class Member(ResponseModel):
    username: str
    role: Role


class NamespaceDetail(ResponseModel):
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


class Grant(ResponseModel):
    namespace: str
    prefix: str
    access: Literal["read", "write"]


class AwsCredentials(ResponseModel):
    """Temporary AWS credentials scoped to the caller's namespaces, and where to use them."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: str
    bucket: str
    region: str
    endpoint_url: str | None
    grants: list[Grant]


# --- files -------------------------------------------------------------------------------------------

#: A path in a request body: the path rules (service.paths) are checked after this raw cap.
RawPath = Annotated[str, Meta(max_length=8192)]
RawHash = Annotated[str, Meta(max_length=80)]

#: Every number a client sends is range-checked where it is decoded (422 naming the field), so no value
#: reaches DynamoDB (numbers of at most 38 digits, magnitude below 1e126) or arithmetic unchecked.
#: Revisions, and positions in a history: far more than a file will ever have.
MAX_REV = 10**12
#: S3's largest object: no body above it can be stored.
MAX_OBJECT_SIZE = 5 * 1024**4
#: A file's modification time, seconds since the epoch: 1900-01-01 to 9999-12-31 (finite, never NaN).
MTIME_MIN = -2_208_988_800.0
MTIME_MAX = 253_402_300_799.0
#: The same as text (the ``X-Mtime`` header of a streaming upload): a plain decimal, optionally with an exponent.
MTIME_PATTERN = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
MTIME_MAX_LENGTH = 32
Rev = Annotated[int, Meta(ge=1, le=MAX_REV)]
Size = Annotated[int, Meta(ge=0, le=MAX_OBJECT_SIZE)]
Mtime = Annotated[float, Meta(ge=MTIME_MIN, le=MTIME_MAX)]


class FileInfo(ResponseModel, omit_defaults=True):
    """One version of a file. ``body_version`` and ``body_etag`` name the stored object that holds its
    verified body (the blob key's S3 version id, and its ETag): a client reading the blob straight from S3
    asks for exactly that version (``VersionId``), or failing one, that ETag (``If-Match``), so it never
    takes other bytes for this version. Absent from older servers and for older versions. A body stored in
    a pack (a small file sent in a batch) has ``body_pack`` and ``body_offset`` too, and the version and
    ETag are the pack's: such a body is read through the service (its download, or ``blobs:fetch``), never
    straight from S3."""

    path: str
    file_id: str
    rev: int
    content_hash: str
    size: int
    mtime: float
    deleted: bool
    committed_by: str
    committed_at: float
    seq: int
    block_size: int
    moved_from: str | None = None
    moved_to: str | None = None
    body_version: str | None = None
    body_etag: str | None = None
    body_pack: str | None = None
    body_offset: int | None = None


class CommitEntryIn(WireModel):
    """One change: a new version of ``path`` (content already uploaded), or a deletion."""

    path: RawPath
    content_hash: RawHash = ""
    size: Size = 0
    mtime: Mtime = 0.0
    parent_rev: Rev | None = None
    deleted: bool = False


class CommitRequest(WireModel):
    entries: Annotated[list[CommitEntryIn], Meta(max_length=1000)]


class CommitResultOut(ResponseModel, omit_defaults=True):
    """``committed`` with the new version, or ``conflict`` with the current one (if any) and why."""

    path: str
    status: Literal["committed", "conflict"]
    file: FileInfo | None = None
    current: FileInfo | None = None
    reason: str | None = None


class CommitResponse(ResponseModel):
    """Per entry, in request order; ``seq`` is the namespace journal position after the commit."""

    seq: int
    results: list[CommitResultOut]


class BlobCheck(WireModel):
    hashes: Annotated[list[RawHash], Meta(max_length=1000)]


class BlobCheckResult(ResponseModel):
    """The hashes the namespace does not have verified content for: upload those."""

    missing: list[str]


class FetchItemIn(WireModel):
    """A small body to fetch: its content hash and size, and where it is stored, as a file info says
    (``body_pack``/``body_offset`` for a body in a pack; ``body_version``/``body_etag``)."""

    content_hash: RawHash
    size: Size
    body_pack: Annotated[str, Meta(max_length=64)] | None = None
    body_offset: Annotated[int, Meta(ge=0, le=MAX_OBJECT_SIZE)] | None = None
    body_version: Annotated[str, Meta(max_length=1024)] | None = None
    body_etag: Annotated[str, Meta(max_length=1024)] | None = None


class FetchRequest(WireModel):
    """Up to ``max_fetch_items`` small bodies, each at most ``max_inline_file`` bytes."""

    items: Annotated[list[FetchItemIn], Meta(max_length=1000)]


#: The media type of a ``blobs:fetch`` answer: a sequence of frames, each one JSON line (a ``FetchFrame``,
#: ending in a newline) followed, unless the frame has a ``problem``, by exactly ``size`` bytes of body.
#: Frames come in the order the bodies were read, one per item (``index``); a last frame with ``end`` (the
#: number of frames before it) says the answer is complete. An answer cut short has no such frame: ask
#: again for the items that did not come.
FETCH_MEDIA_TYPE = "application/x-filesync-frames"


class FetchFrame(ResponseModel, omit_defaults=True):
    """One frame of a ``blobs:fetch`` answer: item ``index``'s body (``size`` bytes follow, verified
    against ``content_hash`` by the service), or why it has none (``problem``; nothing follows). The last
    frame carries only ``end``."""

    index: int = -1
    content_hash: str = ""
    size: int = 0
    problem: str | None = None
    end: int | None = None


class UploadRequest(WireModel):
    content_hash: RawHash
    size: Size


class PresignedPartOut(ResponseModel):
    number: int
    url: str


class UploadTicket(ResponseModel, omit_defaults=True):
    """How to upload: ``present`` (nothing to do), ``put`` (one PUT to ``url`` with every one of
    ``headers``: the body's checksum and ``If-None-Match: *``, both signed into the URL), or ``multipart``
    (PUT each block to its part URL, then complete with the ETags)."""

    kind: Literal["present", "put", "multipart"]
    url: str | None = None
    headers: dict[str, str] | None = None
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[PresignedPartOut] | None = None


class CompletedPart(WireModel):
    number: Annotated[int, Meta(ge=1, le=10000)]
    etag: Annotated[str, Meta(max_length=256)]
    checksum_sha256: Annotated[str, Meta(max_length=128)] | None = None


class CompleteRequest(WireModel):
    parts: Annotated[list[CompletedPart], Meta(max_length=10000)]


class CompleteResponse(ResponseModel):
    """The upload is complete; commit ``content_hash`` to make it a file."""

    content_hash: str


class FileList(ResponseModel):
    """A page of files; pass ``cursor`` back for the next page (null at the end)."""

    files: list[FileInfo]
    cursor: str | None


class History(ResponseModel):
    """Versions newest first; pass ``cursor`` back as ``before`` for older ones (it is the rev of the next
    older version; null at the end)."""

    versions: list[FileInfo]
    cursor: int | None


class RestoreRequest(WireModel):
    path: RawPath
    rev: Rev


class TrashRestoreRequest(WireModel):
    """Bring deleted files back: those named in ``paths``, or every deleted file under ``folder`` ("" for
    the whole namespace); exactly one of the two."""

    paths: Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(min_length=1, max_length=1000)] | None = None
    folder: Annotated[str, Meta(max_length=1024)] | None = None


class MoveRequest(WireModel):
    source: RawPath = msgspec.field(name="from")
    target: RawPath = msgspec.field(name="to")
    parent_rev: Rev


#: A path in a batch of moves. Every valid path is at most 1,425 characters even in decomposed form (950 bytes
#: once NFC), so this lower cap keeps 500 moves, even of refused paths, within the 1 MiB body limit.
MovePath = Annotated[str, Meta(max_length=2048)]


class MoveIn(WireModel):
    """Rename ``from`` (at its current rev ``parent_rev``) to ``to``."""

    source: MovePath = msgspec.field(name="from")
    target: MovePath = msgspec.field(name="to")
    parent_rev: Rev


class MovesRequest(WireModel):
    """1 to 500 moves; a path may be in one move only (as ``from`` or ``to``, ignoring case)."""

    moves: Annotated[list[MoveIn], Meta(max_length=500)]


class MoveResultOut(ResponseModel):
    """``committed`` with the target's new version (``file``), or ``conflict`` with the current version of
    the side that conflicted (``current``, if any) and why."""

    source: str = msgspec.field(name="from")
    target: str = msgspec.field(name="to")
    status: Literal["committed", "conflict"]
    file: FileInfo | None = None
    current: FileInfo | None = None
    reason: str | None = None


class MovesResponse(ResponseModel):
    """Per move, in request order; ``seq`` is the namespace journal position after the moves."""

    results: list[MoveResultOut]
    seq: int


class ServiceConfig(ResponseModel):
    """What a client must know to hash and upload the way this deployment does."""

    block_size: int
    max_file_size: int
    max_commit_entries: int
    max_json_body: int
    max_path_bytes: int
    #: Limits of ``POST /v1/ns/{ns}/files:batch``: each file's body, and the whole request.
    max_inline_file: int
    max_inline_request: int
    #: Moves in one ``POST /v1/ns/{ns}/moves``.
    max_moves: int = 500
    #: Bodies in one ``POST /v1/ns/{ns}/blobs:fetch`` (each at most ``max_inline_file``); 0 from a server
    #: without it.
    max_fetch_items: int = 0


# --- sync --------------------------------------------------------------------------------------------


class ManifestEntryIn(WireModel):
    """What the client has at ``path`` (``content_hash``, empty for nothing) and what it last synced
    there (``synced_rev``/``synced_hash``, null if never)."""

    path: RawPath
    content_hash: RawHash = ""
    synced_rev: Annotated[int, Meta(ge=0, le=MAX_REV)] | None = None
    synced_hash: RawHash | None = None


class CompareRequest(WireModel):
    """A page of the client's manifest. With ``ranged`` (the default) it must hold every client path whose
    key (NFC, case folded) is in ``after < key <= through`` (nulls: open ends), and the answer includes
    the server's files in that range the client lacks."""

    entries: Annotated[list[ManifestEntryIn], Meta(max_length=5000)]
    after: RawPath | None = None
    through: RawPath | None = None
    ranged: bool = True


class CompareItemOut(ResponseModel, omit_defaults=True):
    path: str
    action: Literal["download", "upload", "conflict", "deleted", "up_to_date"]
    file: FileInfo | None = None


class CompareResponse(ResponseModel):
    """The paths needing action (``up_to_date`` only when the rev changed under identical content), how
    many were already up to date, and the feed cursor to follow from now on. ``complete_through``: null
    when the whole range was answered; otherwise the answer stopped at that key (a range holding more than
    10,000 server files), and the client sends the rest of its page again with ``after`` set to it."""

    items: list[CompareItemOut]
    up_to_date: int
    cursor: str
    complete_through: str | None = None


class Changes(ResponseModel):
    """Versions committed after the cursor, in commit order; ``cursor`` continues after them; ``more``:
    another page is ready now; ``backoff_seconds``: wait this long before the next long-poll."""

    changes: list[FileInfo]
    cursor: str
    more: bool
    backoff_seconds: float
