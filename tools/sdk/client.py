"""``FileSyncClient``: the service's HTTP API as typed async methods.

Every failure is one of the SDK's errors (``tools.sdk.errors``, drawn there): an error answer carries the
RFC 9457 problem (status, title, detail, field errors), so callers print a sentence, never a traceback.
Transient failures (no connection, a connection lost, a timeout, 429/502/503/504) are retried with
exponential backoff and jitter (``tools.sdk.retry``), honouring ``Retry-After``; a request that may have
reached the service is retried only if repeating it is harmless (an idempotent method, an
``Idempotency-Key``, or a read sent as POST) and its body can be sent again (not a stream). With
``renew_session`` set, a request whose access token is refused gets one new token (renewals one at a time,
so a rotating refresh token is used once) and is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
import orjson
from yarl import URL

from service import codec
from service.content import digest_bytes
from service.wire import (
    Account,
    AwsCredentials,
    BlobCheckResult,
    Changes,
    CommitResponse,
    CommitResultOut,
    CompareResponse,
    FetchFrame,
    FileInfo,
    FileList,
    FollowList,
    FollowOut,
    History,
    Member,
    MovesResponse,
    NamespaceDetail,
    NamespaceList,
    NamespaceSummary,
    Problem,
    ServiceConfig,
    Tokens,
)
from tools.sdk.errors import (
    ApiError,
    ConnectError,
    ConnectionLost,
    ContentReplaced,
    ProtocolError,
    RequestTimeout,
    Unauthenticated,
    connect_reason,
    is_transient,
    status_error,
    stopped_answering,
)
from tools.sdk.retry import backoff, retrying

T = TypeVar("T")
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: Bodies larger than this are streamed from a buffer rather than written to the socket in one call.
_LARGE_BODY = 512 * 1024

#: Obtains a new access token for the client (and sets ``client.token``), or raises.
RenewSession = Callable[["FileSyncClient"], Awaitable[None]]


class FileSyncClient:
    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        attempts: int = 5,
        timeout: float = 300.0,
        connections: int = 32,
        renew_session: RenewSession | None = None,
    ) -> None:
        url = URL(server)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http:// or https:// URL: {server!r}")
        self.server = server.rstrip("/")
        self.token = token
        self.renew_session = renew_session
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._renewing = asyncio.Lock()
        #: Whether the server ever answered: a connection refused after that means it stopped answering.
        self._answered = False

    async def __aenter__(self) -> FileSyncClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self._connections)
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use FileSyncClient as an async context manager")
        return self._session

    # --- plumbing -------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: object | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        expect: tuple[int, ...] = (200, 201, 204),
        action: str = "",
        safe: bool = False,
        authenticated: bool = True,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Send a request and read its answer; raise the SDK's error for anything but an ``expect``ed status.
        ``safe``: repeating the request is harmless although its method is not idempotent (a read sent as
        POST). ``authenticated=False``: no token is sent (sign-up, log-in, refresh) and none is renewed."""
        body = codec.dumps(json) if json is not None else data
        if isinstance(body, bytes) and len(body) > _LARGE_BODY:
            raw = body
            body = lambda: io.BytesIO(raw)  # noqa: E731 - sent in chunks, not in one write; afresh per attempt
        base_headers = dict(headers or {})
        if json is not None:
            base_headers["Content-Type"] = "application/json"
        # A body read from a stream cannot be sent twice: such a request is never repeated.
        replayable = body is None or isinstance(body, bytes | str) or callable(body)
        retryable = replayable and (safe or method in _IDEMPOTENT or "Idempotency-Key" in base_headers)
        action = action or f"{method} {path}"

        async def once() -> tuple[int, bytes, Mapping[str, str]]:
            async with self._exchange(
                method,
                path,
                data=body() if callable(body) else body,
                params=params,
                headers=base_headers,
                expect=expect,
                action=action,
                authenticated=authenticated,
            ) as response:
                return response.status, await response.read(), response.headers

        def retry(exc: Exception) -> bool:
            # A connection never made sent nothing, and a worker that answered "busy" read nothing and did
            # nothing: safe to try again whatever the method.
            untouched = isinstance(exc, ConnectError) or _busy(exc)
            return (replayable and untouched) or (retryable and is_transient(exc))

        return await self._with_session(once, retry, authenticated)

    async def _with_session(
        self, once: Callable[[], Awaitable[T]], retry: Callable[[Exception], bool], authenticated: bool = True
    ) -> T:
        """``once`` retried as ``retry`` allows; sent again once with a renewed token if the token was
        refused; a connection refused by a server that answered before is a lost connection."""
        sent_token = self.token if authenticated else None
        try:
            try:
                return await retrying(once, attempts=self._attempts, retry=retry)
            except Unauthenticated:
                if self.renew_session is None or not sent_token:
                    raise
            await self._renew(sent_token)
            return await retrying(once, attempts=self._attempts, retry=retry)
        except ConnectError as exc:
            if not self._answered:
                raise
            raise stopped_answering(exc) from None

    @contextlib.asynccontextmanager
    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...],
        action: str,
        authenticated: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, its response open for reading (its body may be streamed): an ``expect``ed status,
        else the SDK's error; every transport failure, also while the body is read, as the SDK's error.
        ``path`` is under the server, or a whole URL (a presigned one)."""
        all_headers = dict(headers or {})
        if authenticated and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self.session.request(
                method,
                URL(path if "://" in path else self.server + path, encoded=True),
                data=data,
                params=params,
                headers=all_headers,
                allow_redirects=False,
            ) as response:
                if response.status not in expect:
                    payload = await response.read()
                    self._answered = True
                    raise _error(response.status, response.reason or "", payload, response.headers, self.server, action)
                self._answered = True
                yield response
        except ApiError:
            raise
        except TimeoutError:
            raise RequestTimeout(
                0, "Timed out", f"{self.server} did not answer in time", server=self.server, action=action
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = connect_reason(exc)
            raise ConnectError(
                0, "Unreachable", f"cannot reach {self.server}: {reason}", server=self.server, action=action
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError) as exc:
            raise ConnectionLost(
                0,
                "Connection lost",
                f"the connection to {self.server} broke: {str(exc) or type(exc).__name__}",
                server=self.server,
                action=action,
            ) from None
        except aiohttp.ClientError as exc:
            raise ProtocolError(0, "Bad answer", str(exc), server=self.server, action=action) from None

    async def _renew(self, refused: str) -> None:
        """A new token, unless another request already renewed the one that was refused."""
        async with self._renewing:
            if self.token == refused and self.renew_session is not None:
                await self.renew_session(self)

    async def _json(self, method: str, path: str, model: type[T], **kwargs: Any) -> T:
        _, payload, _ = await self.request(method, path, **kwargs)
        try:
            return msgspec.convert(_decode(payload), model)
        except (ValueError, msgspec.MsgspecError) as exc:
            raise ProtocolError(
                0,
                "Bad answer",
                f"{self.server} answered {method} {path} with something other than a {model.__name__}: {exc}",
                server=self.server,
                action=kwargs.get("action") or f"{method} {path}",
            ) from None

    # --- accounts -------------------------------------------------------------------------------------

    async def sign_up(self, username: str, password: str, email: str | None = None) -> Account:
        body = {"username": username, "password": password, **({"email": email} if email else {})}
        return await self._json("POST", "/v1/auth/signup", Account, json=body, action="signing up", authenticated=False)

    async def set_email(self, email: str | None, current_password: str) -> Account:
        body = {"email": email, "current_password": current_password}
        return await self._json("PUT", "/v1/account/email", Account, json=body, action="setting the email address")

    async def log_in(self, username: str, password: str) -> Tokens:
        body = {"username": username, "password": password}
        tokens = await self._json("POST", "/v1/auth/token", Tokens, json=body, action="logging in", authenticated=False)
        self.token = tokens.access_token
        return tokens

    async def refresh(self, refresh_token: str) -> Tokens:
        tokens = await self._json(
            "POST",
            "/v1/auth/refresh",
            Tokens,
            json={"refresh_token": refresh_token},
            action="renewing the session",
            authenticated=False,
        )
        self.token = tokens.access_token
        return tokens

    async def account(self) -> Account:
        return await self._json("GET", "/v1/account", Account, action="reading the account")

    async def config(self) -> ServiceConfig:
        return await self._json("GET", "/v1/config", ServiceConfig, action="reading the service's limits")

    # --- namespaces and credentials -------------------------------------------------------------------

    async def namespaces(self) -> list[NamespaceSummary]:
        return (await self._json("GET", "/v1/namespaces", NamespaceList, action="listing namespaces")).namespaces

    async def create_namespace(self, name: str) -> NamespaceSummary:
        """A new shared namespace; the caller becomes its owner."""
        return await self._json(
            "POST", "/v1/namespaces", NamespaceSummary, json={"name": name}, action="creating a namespace"
        )

    async def namespace(self, ns: str) -> NamespaceDetail:
        """A namespace and its members with their roles (members only)."""
        return await self._json("GET", f"/v1/namespaces/{ns}", NamespaceDetail, action="reading the namespace")

    async def set_member(self, ns: str, username: str, role: str) -> Member:
        """Add a member, or change a member's role (owners only)."""
        return await self._json(
            "PUT",
            f"/v1/namespaces/{ns}/members/{quote(username, safe='')}",
            Member,
            json={"role": role},
            action="adding a member",
        )

    async def share(self, ns: str, username: str, role: str) -> None:
        """``set_member``, answer ignored (kept for existing callers)."""
        await self.set_member(ns, username, role)

    async def remove_member(self, ns: str, username: str) -> None:
        """Remove a member (owners), or leave (anyone, for themselves)."""
        await self.request(
            "DELETE", f"/v1/namespaces/{ns}/members/{quote(username, safe='')}", action="removing a member"
        )

    # --- notifications --------------------------------------------------------------------------------

    async def follow(self, ns: str, path: str | None = None) -> FollowOut:
        """Follow a file or folder (recursively); no path: the whole namespace."""
        where = f"/v1/ns/{ns}/follows/{_quote(path)}" if path else f"/v1/ns/{ns}/follow"
        return await self._json("PUT", where, FollowOut)

    async def unfollow(self, ns: str, path: str | None = None) -> None:
        await self.request("DELETE", f"/v1/ns/{ns}/follows/{_quote(path)}" if path else f"/v1/ns/{ns}/follow")

    async def follows(self) -> list[FollowOut]:
        return (await self._json("GET", "/v1/follows", FollowList)).follows

    async def credentials(
        self, namespaces: list[str] | None = None, duration_seconds: int | None = None
    ) -> AwsCredentials:
        body: dict[str, Any] = {}
        if namespaces is not None:
            body["namespaces"] = namespaces
        if duration_seconds is not None:
            body["duration_seconds"] = duration_seconds
        return await self._json(
            "POST", "/v1/credentials", AwsCredentials, json=body, action="getting transfer credentials", safe=True
        )

    # --- files ----------------------------------------------------------------------------------------

    async def missing(self, ns: str, hashes: list[str]) -> list[str]:
        checked = await self._json(
            "POST",
            f"/v1/ns/{ns}/blobs:check",
            BlobCheckResult,
            json={"hashes": hashes},
            action="checking what the server holds",
            safe=True,
        )
        return checked.missing

    async def commit(
        self, ns: str, entries: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> CommitResponse:
        key = idempotency_key or uuid.uuid4().hex
        return await self._json(
            "POST",
            f"/v1/ns/{ns}/commit",
            CommitResponse,
            json={"entries": entries},
            headers={"Idempotency-Key": key},
            expect=(200, 409),
            action="committing changes",
        )

    async def upload_batch(
        self, ns: str, entries: list[dict[str, Any]], bodies: list[bytes], idempotency_key: str | None = None
    ) -> CommitResponse:
        """Send small files and commit them in one request (``POST /v1/ns/{ns}/files:batch``): ``bodies``
        holds one body per entry that is not a delete, in order (see ``ServiceConfig.max_inline_file`` and
        ``max_inline_request``)."""
        key = idempotency_key or uuid.uuid4().hex
        manifest = codec.dumps({"entries": entries})

        def form() -> aiohttp.MultipartWriter:  # built afresh for each attempt
            writer = aiohttp.MultipartWriter("form-data")
            part = writer.append(manifest, {"Content-Type": "application/json"})
            part.set_content_disposition("form-data", name="manifest")
            for body in bodies:
                part = writer.append(body, {"Content-Type": "application/octet-stream"})
                part.set_content_disposition("form-data", name="file", filename="file")
            return writer

        return await self._json(
            "POST",
            f"/v1/ns/{ns}/files:batch",
            CommitResponse,
            data=form,
            headers={"Idempotency-Key": key},
            expect=(200, 409),
            action="uploading small files",
        )

    async def move_many(
        self, ns: str, moves: Sequence[tuple[str, str, int]], *, idempotency_key: str | None = None
    ) -> MovesResponse:
        """Rename files, each keeping its file id and history (``POST /v1/ns/{ns}/moves``): ``moves`` holds
        ``(from, to, parent_rev)``, at most ``ServiceConfig.max_moves`` (500) of them. Each move is atomic and
        independent: per move ``committed`` with the target's new version, or ``conflict`` and why (also
        when every move conflicted: the service's 409). Carries an idempotency key (``idempotency_key``, or
        a fresh one), so transient failures are retried without moving anything twice."""
        key = idempotency_key or uuid.uuid4().hex
        return await self._json(
            "POST",
            f"/v1/ns/{ns}/moves",
            MovesResponse,
            json={"moves": [{"from": source, "to": target, "parent_rev": rev} for source, target, rev in moves]},
            headers={"Idempotency-Key": key},
            expect=(200, 409),
            action="moving files",
        )

    async def compare(self, ns: str, body: dict[str, Any]) -> CompareResponse:
        """One page of a compare (see ``CompareRequest``)."""
        return await self._json(
            "POST", f"/v1/ns/{ns}/compare", CompareResponse, json=body, action="comparing the folder", safe=True
        )

    async def changes(self, ns: str, cursor: str, wait: int = 0, limit: int = 100) -> Changes:
        params = {"cursor": cursor, "wait": str(wait), "limit": str(limit)}
        return await self._json("GET", f"/v1/ns/{ns}/changes", Changes, params=params, action="reading the change feed")

    async def restore(self, ns: str, path: str, rev: int) -> CommitResultOut:
        return await self._json(
            "POST",
            f"/v1/ns/{ns}/restore",
            CommitResultOut,
            json={"path": path, "rev": rev},
            expect=(200, 409),
            action="restoring a version",
        )

    async def trash(self, ns: str, limit: int = 1000) -> AsyncIterator[FileInfo]:
        """The namespace's deleted files (their tombstones), the latest deletion first, page by page."""
        cursor: str | None = None
        while True:
            params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
            page = await self._json("GET", f"/v1/ns/{ns}/trash", FileList, params=params, action="reading the trash")
            for entry in page.files:
                yield entry
            if page.cursor is None:
                return
            cursor = page.cursor

    async def restore_deleted(
        self, ns: str, paths: list[str] | None = None, folder: str | None = None, idempotency_key: str | None = None
    ) -> CommitResponse:
        """Bring deleted files back: ``paths``, or every deleted file under ``folder``."""
        body: dict[str, Any] = {"paths": paths} if paths is not None else {"folder": folder or ""}
        return await self._json(
            "POST",
            f"/v1/ns/{ns}/trash:restore",
            CommitResponse,
            json=body,
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
            expect=(200, 409),
            action="restoring from the trash",
        )

    async def put_stream(
        self, ns: str, path: str, body: AsyncIterator[bytes] | bytes, *, content_hash: str | None = None
    ) -> FileInfo:
        headers = {"X-Content-Hash": content_hash} if content_hash else {}
        return await self._json("PUT", f"/v1/ns/{ns}/files/{_quote(path)}", FileInfo, data=body, headers=headers)

    async def list_files(self, ns: str, folder: str = "", recursive: bool = True) -> list[FileInfo]:
        files: list[FileInfo] = []
        cursor: str | None = None
        while True:
            params = {"folder": folder, "recursive": str(recursive).lower(), "limit": "1000"}
            if cursor:
                params["cursor"] = cursor
            page = await self._json("GET", f"/v1/ns/{ns}/files", FileList, params=params)
            files.extend(page.files)
            if page.cursor is None:
                return files
            cursor = page.cursor

    async def history(self, ns: str, path: str) -> list[FileInfo]:
        where = f"/v1/ns/{ns}/files/{_quote(path)}"
        return (await self._json("GET", where, History, params={"versions": ""}, action="reading history")).versions

    async def download_url(self, ns: str, path: str, rev: int | None = None) -> str:
        """The short-lived S3 URL the service redirects a download to. Files stored loose only: a body in a
        pack (a small file sent in a batch) is served by the service itself (use ``download``)."""
        params = {"rev": str(rev)} if rev else None
        _, _, headers = await self.request("GET", f"/v1/ns/{ns}/files/{_quote(path)}", params=params, expect=(302,))
        return headers["Location"]

    async def download(self, ns: str, path: str, rev: int | None = None) -> bytes:
        """A file's body in memory (small files), verified against its content hash: from the S3 URL the
        service redirects to, or from the service itself (a body in a pack). ``ContentReplaced`` if the
        bytes are not the content."""
        params = {"rev": str(rev)} if rev else {}
        status, payload, headers = await self.request(
            "GET", f"/v1/ns/{ns}/files/{_quote(path)}", params=params, expect=(200, 302), action="downloading"
        )
        if status == 302:
            payload = await self._get_url(headers["Location"])
        expected, block_size = headers.get("X-Content-Hash", ""), headers.get("X-Block-Size", "")
        if not block_size.isdigit() or digest_bytes(payload, int(block_size)).content_hash != expected:
            raise ContentReplaced(
                0, "Content replaced", f"the body of {path} does not match its content hash", server=self.server
            )
        return payload

    async def _get_url(self, url: str) -> bytes:
        """The body at a presigned URL (no token: the URL is the authority), retried as a read is."""

        async def once() -> bytes:
            async with self._exchange("GET", url, expect=(200,), action="downloading", authenticated=False) as got:
                return await got.read()

        return await retrying(once, attempts=self._attempts, retry=is_transient)

    async def fetch(self, ns: str, files: Sequence[FileInfo]) -> AsyncIterator[Fetched]:
        """Many small files' bodies at once (``POST /v1/ns/{ns}/blobs:fetch``: at most
        ``ServiceConfig.max_fetch_items`` files, each at most ``max_inline_file`` bytes): one ``Fetched``
        per file as its body arrives, in the order the service read them (``index`` is the file's position
        in ``files``), with its bytes or the service's reason for having none. An answer cut short is asked
        again for the files still missing (transient failures are retried with backoff, as every request
        is). The service verified each body; the caller verifies again before using it."""
        left = dict(enumerate(files))
        for attempt in range(self._attempts):
            try:
                async for fetched in self._fetch_once(ns, left):
                    del left[fetched.index]
                    yield fetched
                return
            except ApiError as exc:
                if not is_transient(exc) or attempt + 1 == self._attempts:
                    raise
                await asyncio.sleep(backoff(attempt, exc.retry_after))

    async def _fetch_once(self, ns: str, files: Mapping[int, FileInfo]) -> AsyncIterator[Fetched]:
        order = list(files)
        items = [
            {
                "content_hash": f.content_hash,
                "size": f.size,
                "body_pack": f.body_pack,
                "body_offset": f.body_offset,
                "body_version": f.body_version,
                "body_etag": f.body_etag,
            }
            for f in files.values()
        ]
        body = codec.dumps({"items": items})
        action = "downloading small files"
        for renewed in (False, True):
            sent_token = self.token
            try:
                async with self._exchange(
                    "POST",
                    f"/v1/ns/{ns}/blobs:fetch",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    expect=(200,),
                    action=action,
                ) as response:
                    async for fetched in _frames(response, order, self.server, action):
                        yield fetched
                return
            except Unauthenticated:
                if renewed or self.renew_session is None or not sent_token:
                    raise
            await self._renew(sent_token)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One file's body from ``FileSyncClient.fetch``: ``data``, or ``problem`` (why the service has none)."""

    index: int
    data: bytes | None
    problem: str | None = None


async def _frames(
    response: aiohttp.ClientResponse, order: list[int], server: str, action: str
) -> AsyncIterator[Fetched]:
    """The frames of a fetch answer (``service.wire.FETCH_MEDIA_TYPE``) until its end frame; an answer
    that stops before it is a lost connection."""
    while True:
        line = await response.content.readline()
        if not line.endswith(b"\n"):
            raise ConnectionLost(0, "Connection lost", f"{server} cut the answer short", server=server, action=action)
        try:
            frame = msgspec.convert(_decode(line), FetchFrame)
        except (ValueError, msgspec.MsgspecError) as exc:
            raise ProtocolError(0, "Bad answer", f"a fetch frame that does not parse: {exc}", server=server) from None
        if frame.end is not None:
            return
        if not 0 <= frame.index < len(order):
            raise ProtocolError(0, "Bad answer", f"a fetch frame for item {frame.index}", server=server)
        data = await response.content.readexactly(frame.size) if frame.problem is None else None
        yield Fetched(order[frame.index], data, frame.problem)


def _quote(path: str) -> str:
    """Percent-encode each segment, dots included, so the server sees the path exactly as given (and
    judges it by its rules) rather than a path some URL library normalized."""

    def segment(name: str) -> str:
        quoted = quote(name, safe="")
        return quoted.replace(".", "%2E") if set(name) <= {"."} else quoted

    return "/".join(segment(name) for name in path.split("/"))


def _decode(payload: bytes) -> Any:
    """An answer's JSON; a ``ValueError`` (not the service's own ``BadRequest``) when it is none."""
    return orjson.loads(payload)


def _error(status: int, reason: str, payload: bytes, headers: Mapping[str, str], server: str, action: str) -> ApiError:
    retry_after = headers.get("Retry-After", "")
    wait = float(retry_after) if retry_after.isdigit() else None
    try:
        problem = msgspec.convert(_decode(payload), Problem)
    except (ValueError, msgspec.MsgspecError):
        detail = payload[:200].decode(errors="replace") or reason
        return status_error(status, reason, detail, server=server, action=action, retry_after=wait)
    return status_error(status, problem.title, problem.detail, problem, server=server, action=action, retry_after=wait)


def _busy(exc: Exception) -> bool:
    """The service's ``busy`` problem: a worker at its request-body budget refused before reading anything."""
    problem = exc.problem if isinstance(exc, ApiError) else None
    return problem is not None and problem.status == 503 and problem.type.endswith("#problem-busy")
