"""``FileSyncClient``: the service's HTTP API as typed async methods.

Every error answer becomes an ``ApiError`` carrying the RFC 9457 problem (status, title, detail, field
errors), so callers print a sentence, never a traceback. Transient failures (connection refused, 502/503/
504, 429) are retried with exponential backoff and jitter, honouring ``Retry-After``; requests that are not
idempotent are retried only when they carry an ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import io
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from service import codec
from service.wire import (
    Account,
    AwsCredentials,
    BlobCheckResult,
    Changes,
    CommitResponse,
    CommitResultOut,
    CompareResponse,
    FileInfo,
    FileList,
    FollowList,
    FollowOut,
    History,
    NamespaceList,
    NamespaceSummary,
    Problem,
    ServiceConfig,
    Tokens,
)
from tools.sdk.errors import ApiError

T = TypeVar("T")
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: Bodies larger than this are streamed from a buffer rather than written to the socket in one call.
_LARGE_BODY = 512 * 1024


class FileSyncClient:
    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        attempts: int = 5,
        timeout: float = 300.0,
        connections: int = 32,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

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
    ) -> tuple[int, bytes, Mapping[str, str]]:
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        body = codec.dumps(json) if json is not None else data
        if isinstance(body, bytes) and len(body) > _LARGE_BODY:
            raw = body
            body = lambda: io.BytesIO(raw)  # noqa: E731 - sent in chunks, not in one write; afresh per attempt
        if json is not None:
            all_headers["Content-Type"] = "application/json"
        retryable = method in _IDEMPOTENT or "Idempotency-Key" in all_headers
        for attempt in range(self._attempts):
            try:
                async with self.session.request(
                    method,
                    URL(self.server + path, encoded=True),
                    data=body() if callable(body) else body,
                    params=params,
                    headers=all_headers,
                    allow_redirects=False,
                ) as response:
                    payload = await response.read()
                    if response.status in expect:
                        return response.status, payload, response.headers
                    if response.status in _RETRY_STATUSES and retryable and attempt + 1 < self._attempts:
                        await asyncio.sleep(_backoff(attempt, response.headers.get("Retry-After")))
                        continue
                    raise _error(response.status, response.reason or "", payload)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if not retryable or attempt + 1 >= self._attempts:
                    raise ApiError(0, "Unreachable", f"cannot reach {self.server}: {exc}") from None
                await asyncio.sleep(_backoff(attempt, None))
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, model: type[T], **kwargs: Any) -> T:
        _, payload, _ = await self.request(method, path, **kwargs)
        return msgspec.convert(codec.loads(payload), model)

    # --- accounts -------------------------------------------------------------------------------------

    async def sign_up(self, username: str, password: str, email: str | None = None) -> Account:
        body = {"username": username, "password": password, **({"email": email} if email else {})}
        return await self._json("POST", "/v1/auth/signup", Account, json=body)

    async def set_email(self, email: str | None, current_password: str) -> Account:
        body = {"email": email, "current_password": current_password}
        return await self._json("PUT", "/v1/account/email", Account, json=body)

    async def log_in(self, username: str, password: str) -> Tokens:
        tokens = await self._json("POST", "/v1/auth/token", Tokens, json={"username": username, "password": password})
        self.token = tokens.access_token
        return tokens

    async def refresh(self, refresh_token: str) -> Tokens:
        tokens = await self._json("POST", "/v1/auth/refresh", Tokens, json={"refresh_token": refresh_token})
        self.token = tokens.access_token
        return tokens

    async def account(self) -> Account:
        return await self._json("GET", "/v1/account", Account)

    async def config(self) -> ServiceConfig:
        return await self._json("GET", "/v1/config", ServiceConfig)

    # --- namespaces and credentials -------------------------------------------------------------------

    async def namespaces(self) -> list[NamespaceSummary]:
        return (await self._json("GET", "/v1/namespaces", NamespaceList)).namespaces

    async def create_namespace(self, name: str) -> NamespaceSummary:
        return await self._json("POST", "/v1/namespaces", NamespaceSummary, json={"name": name})

    async def share(self, ns: str, username: str, role: str) -> None:
        await self.request("PUT", f"/v1/namespaces/{ns}/members/{username}", json={"role": role})

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
        return await self._json("POST", "/v1/credentials", AwsCredentials, json=body)

    # --- files ----------------------------------------------------------------------------------------

    async def missing(self, ns: str, hashes: list[str]) -> list[str]:
        return (await self._json("POST", f"/v1/ns/{ns}/blobs:check", BlobCheckResult, json={"hashes": hashes})).missing

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
        )

    async def compare(self, ns: str, body: dict[str, Any]) -> CompareResponse:
        """One page of a compare (see ``CompareRequest``)."""
        return await self._json("POST", f"/v1/ns/{ns}/compare", CompareResponse, json=body)

    async def changes(self, ns: str, cursor: str, wait: int = 0, limit: int = 100) -> Changes:
        params = {"cursor": cursor, "wait": str(wait), "limit": str(limit)}
        return await self._json("GET", f"/v1/ns/{ns}/changes", Changes, params=params)

    async def restore(self, ns: str, path: str, rev: int) -> CommitResultOut:
        return await self._json(
            "POST",
            f"/v1/ns/{ns}/restore",
            CommitResultOut,
            json={"path": path, "rev": rev},
            expect=(200, 409),
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
        return (await self._json("GET", f"/v1/ns/{ns}/files/{_quote(path)}", History, params={"versions": ""})).versions

    async def download_url(self, ns: str, path: str, rev: int | None = None) -> str:
        params = {"rev": str(rev)} if rev else None
        _, _, headers = await self.request("GET", f"/v1/ns/{ns}/files/{_quote(path)}", params=params, expect=(302,))
        return headers["Location"]


def _quote(path: str) -> str:
    """Percent-encode each segment, dots included, so the server sees the path exactly as given (and
    judges it by its rules) rather than a path some URL library normalized."""

    def segment(name: str) -> str:
        quoted = quote(name, safe="")
        return quoted.replace(".", "%2E") if set(name) <= {"."} else quoted

    return "/".join(segment(name) for name in path.split("/"))


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after and retry_after.isdigit():
        return min(60.0, float(retry_after))
    return float(min(10.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.5))  # noqa: S311 - jitter


def _error(status: int, reason: str, payload: bytes) -> ApiError:
    try:
        problem = msgspec.convert(codec.loads(payload), Problem)
    except Exception:
        return ApiError(status, reason, payload[:200].decode(errors="replace") or reason)
    return ApiError(status, problem.title, problem.detail, problem)
