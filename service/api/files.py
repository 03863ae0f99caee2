"""Files over HTTP: blob checks, presigned uploads, commits, streaming upload and download, versions,
restore, move, delete, listing.

Layer: api.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from service import codec
from service.api.bodies import UPLOAD_CODINGS, BodyClock, body_chunks, check_coding, declared_or, read_json, reserve
from service.api.responses import file_info, json_response
from service.api.security import authenticate
from service.content import EMPTY_HASH, MAX_FILE_BLOCKS
from service.core.errors import BadRequest, FieldError, PayloadTooLarge, ValidationFailed
from service.core.files import MAX_COMMIT_ENTRIES, MAX_MOVES, CommitEntry, CommitOutcome, CommitResult, Move
from service.core.models import BodyRef, FileVersion, UploadedPart
from service.core.transfers import FETCH_CONCURRENCY, FETCH_QUEUE, MAX_FETCH_ITEMS, FetchItem, StreamPrecondition
from service.keys import FILES, SETTINGS, TRANSFERS
from service.paths import MAX_PATH_BYTES
from service.wire import (
    FETCH_MEDIA_TYPE,
    MAX_REV,
    MTIME_MAX,
    MTIME_MAX_LENGTH,
    MTIME_MIN,
    MTIME_PATTERN,
    BlobCheck,
    BlobCheckResult,
    CommitRequest,
    CommitResponse,
    CommitResultOut,
    CompleteRequest,
    CompleteResponse,
    FetchFrame,
    FetchRequest,
    FileList,
    History,
    MoveRequest,
    MoveResultOut,
    MovesRequest,
    MovesResponse,
    PresignedPartOut,
    RestoreRequest,
    ServiceConfig,
    TrashRestoreRequest,
    UploadRequest,
    UploadTicket,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_DIGITS = re.compile(r"[0-9]+")
_MTIME = re.compile(MTIME_PATTERN)
#: Digits of a Range bound read as a number; anything longer is past every body's end.
_RANGE_DIGITS = 19
_LIST_LIMIT_MAX = 1000
_HISTORY_LIMIT_MAX = 100
_T = TypeVar("_T")


def _result(result: CommitResult) -> CommitResultOut:
    return CommitResultOut(
        path=result.path,
        status=result.status,
        file=file_info(result.version) if result.version else None,
        current=file_info(result.current) if result.current else None,
        reason=result.reason,
    )


def int_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """A query parameter of plain ASCII digits within ``low``..``high`` (422 otherwise): no sign, exponent,
    fraction or other script's digits, and never more digits than ``high`` has."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw) or len(raw) > len(str(high)) or not low <= int(raw) <= high:
        message = f"{name} must be an integer from {low} to {high}"
        raise ValidationFailed(f"The query parameter {message}.", (FieldError(name, message),))
    return int(raw)


async def get_config(request: web.Request) -> web.Response:
    """Block size and limits, so clients hash and upload the way this deployment does."""
    settings = request.app[SETTINGS]
    return json_response(
        ServiceConfig(
            block_size=settings.files.block_size,
            max_file_size=settings.files.block_size * MAX_FILE_BLOCKS,
            max_commit_entries=MAX_COMMIT_ENTRIES,
            max_json_body=settings.limits.max_json_body,
            max_path_bytes=MAX_PATH_BYTES,
            max_inline_file=settings.files.inline_max_file,
            max_inline_request=settings.files.inline_max_request,
            max_moves=MAX_MOVES,
            max_fetch_items=MAX_FETCH_ITEMS,
        )
    )


async def post_blobs_check(request: web.Request) -> web.Response:
    """Which of these content hashes the namespace lacks (upload only those)."""
    principal = authenticate(request)
    body = await read_json(request, BlobCheck)
    missing = await request.app[FILES].missing_blobs(principal, request.match_info["ns"], body.hashes)
    return json_response(BlobCheckResult(missing=missing))


async def post_blobs_fetch(request: web.Request) -> web.StreamResponse:
    """Many small bodies in one answer (``FETCH_MEDIA_TYPE`` frames): each item names a content hash, its
    size (at most ``max_inline_file``) and where its file info says it is stored. Each body is hashed by
    the service before it is sent; one that cannot be served gets a frame with its ``problem`` instead."""
    principal = authenticate(request)
    body = await read_json(request, FetchRequest)
    settings = request.app[SETTINGS].files
    items = [
        FetchItem(i.content_hash, i.size, BodyRef(i.body_version, i.body_etag, i.body_pack, i.body_offset))
        for i in body.items
    ]
    # Held at once: the bodies being read and those waiting to be sent.
    reserve(request, (FETCH_CONCURRENCY + FETCH_QUEUE) * settings.inline_max_file)
    fetched = request.app[TRANSFERS].fetch(
        principal, request.match_info["ns"], items, max_file=settings.inline_max_file
    )
    async with contextlib.aclosing(fetched) as frames:
        frame = await anext(frames, None)  # a problem found before anything is read is still an answer
        response = web.StreamResponse(headers={"Content-Type": FETCH_MEDIA_TYPE})
        await response.prepare(request)
        count = 0
        while frame is not None:
            header = FetchFrame(frame.index, frame.content_hash, len(frame.data or b""), frame.problem)
            await response.write(codec.dumps(header) + b"\n" + (frame.data or b""))
            count += 1
            frame = await anext(frames, None)
        await response.write(codec.dumps(FetchFrame(end=count)) + b"\n")
    await response.write_eof()
    return response


def _entries(body: CommitRequest) -> list[CommitEntry]:
    return [CommitEntry(e.path, e.content_hash, e.size, e.mtime, e.parent_rev, e.deleted) for e in body.entries]


def _commit_response(outcome: CommitOutcome) -> web.Response:
    """Per entry the new version or a conflict; 409 when every entry conflicted, else 200."""
    statuses = {r.status for r in outcome.results}
    return json_response(
        CommitResponse(seq=outcome.seq, results=[_result(r) for r in outcome.results]),
        status=409 if statuses == {"conflict"} else 200,
    )


async def post_commit(request: web.Request) -> web.Response:
    """Commit a batch of new versions and deletions; per entry, the new version or a conflict (the status
    is 409 when every entry conflicted, else 200). Send an ``Idempotency-Key`` header so a retried request
    commits nothing twice."""
    principal = authenticate(request)
    body = await read_json(request, CommitRequest)
    entries = _entries(body)
    outcome = await request.app[FILES].commit(
        principal, request.match_info["ns"], entries, request.headers.get(IDEMPOTENCY_HEADER)
    )
    return _commit_response(outcome)


async def post_files_batch(request: web.Request) -> web.Response:
    """Upload and commit many small files in one request: ``multipart/form-data`` whose first part,
    ``manifest``, is a commit request (JSON), followed by one ``file`` part per entry that is not a delete,
    in the entries' order, each exactly its entry's size (at most ``max_inline_file`` bytes; the whole
    request at most ``max_inline_request``; see ``GET /v1/config``). The service hashes each body, stores it
    in one PutObject and commits the lot: per entry, the new version or a conflict, as ``POST .../commit``
    answers (409 when every entry conflicted). A body that is not what its entry says refuses the whole
    request (422) and commits nothing. Send an ``Idempotency-Key`` header so a retry commits nothing twice."""
    principal = authenticate(request)
    settings = request.app[SETTINGS]
    limit = settings.files.inline_max_request
    check_coding(request, UPLOAD_CODINGS)
    if request.content_type != "multipart/form-data":
        raise web.HTTPUnsupportedMediaType(
            text=f"Send the files as multipart/form-data, not {request.content_type or 'nothing'}."
        )
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    # Held at once: the manifest, the bodies (each once: the pack being built) and the part being read.
    held = settings.limits.max_json_body + limit + settings.files.inline_max_file
    reserve(request, declared_or(request, held))
    try:
        multipart = await request.multipart()
    except ValueError as exc:
        raise BadRequest(f"The multipart body is malformed: {exc}.") from None
    reader = _BatchReader(multipart, BodyClock(request.content, settings.limits), limit)
    manifest = await reader.part("manifest", settings.limits.max_json_body)
    if manifest is None:
        message = "the first part must be the manifest: a commit request as JSON"
        raise ValidationFailed(f"The manifest is missing: {message}.", (FieldError("manifest", message),))
    body = codec.decode(manifest, CommitRequest)
    entries = _entries(body)

    async def bodies() -> AsyncIterator[bytes]:
        while (data := await reader.part("file", settings.files.inline_max_file)) is not None:
            yield data

    outcome = await request.app[TRANSFERS].inline_commit(
        principal,
        request.match_info["ns"],
        entries,
        bodies(),
        request.headers.get(IDEMPOTENCY_HEADER),
        max_file=settings.files.inline_max_file,
    )
    return _commit_response(outcome)


class _BatchReader:
    """The parts of a batch request, each read whole but only up to its limit, the request up to
    ``total``; a body that stops arriving or comes too slowly (``clock``) is a 408."""

    def __init__(self, reader: MultipartReader, clock: BodyClock, total: int) -> None:
        self._reader = reader
        self._clock = clock
        self._left = total
        self._total = total

    async def part(self, name: str, limit: int) -> bytes | None:
        part = await self._wait(self._reader.next())
        if part is None:
            return None
        if not isinstance(part, BodyPartReader) or part.name != name:
            got = getattr(part, "name", None)
            message = f"expected a part named {name!r}, got {got!r}"
            raise ValidationFailed(f"The request's parts are out of order: {message}.", (FieldError(name, message),))
        for header in ("Content-Encoding", "Content-Transfer-Encoding"):
            coding = part.headers.get(header, "").strip().lower()
            if coding not in ("", "identity", "binary", "8bit", "7bit"):
                raise web.HTTPUnsupportedMediaType(
                    headers={"Accept-Encoding": "identity"},
                    text=f"A part of a batch is sent as it is, not with {header} {coding}.",
                )
        data = bytearray()
        while chunk := await self._wait(part.read_chunk(64 * 1024)):
            data += chunk
            self._left -= len(chunk)
            if self._left < 0:
                raise PayloadTooLarge(f"A batch request may be at most {self._total} bytes; send fewer files in each.")
            if len(data) > limit:
                raise PayloadTooLarge(f"A {name!r} part may be at most {limit} bytes.")
        return bytes(data)

    async def _wait(self, step: Awaitable[_T]) -> _T:
        try:
            return await self._clock.wait(step)
        except (ValueError, HttpProcessingError) as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise BadRequest(f"The multipart body is malformed: {message}.") from None


async def get_files(request: web.Request) -> web.Response:
    """List the live files of a folder (``folder``, default the root; ``recursive=true`` for the whole
    subtree), ``limit`` (1-1000, default 500) a page."""
    principal = authenticate(request)
    limit = int_param(request, "limit", 500, 1, _LIST_LIMIT_MAX) or 500
    files, cursor = await request.app[FILES].list_folder(
        principal,
        request.match_info["ns"],
        request.query.get("folder", ""),
        request.query.get("recursive", "false").lower() == "true",
        request.query.get("cursor"),
        limit,
    )
    return json_response(FileList(files=[file_info(f) for f in files], cursor=cursor))


async def get_file(request: web.Request) -> web.StreamResponse:
    """Download (a redirect to a short-lived S3 URL for exactly the verified object version; ``via=service``
    streams it through the service with ``Range`` support, as does a store without object versions), or
    with ``versions`` the file's history, or with ``rev=N`` that version. A body replaced behind the
    service's back is never served: 409 ``content-replaced`` until the content is uploaded again."""
    principal = authenticate(request)
    ns, path = request.match_info["ns"], request.match_info["path"]
    files = request.app[FILES]
    if "versions" in request.query:
        limit = int_param(request, "limit", 50, 1, _HISTORY_LIMIT_MAX) or 50
        before = int_param(request, "before", None, 1, MAX_REV)
        versions, cursor = await files.history(principal, ns, path, limit, before)
        return json_response(History(versions=[file_info(v) for v in versions], cursor=cursor))
    rev = int_param(request, "rev", None, 1, MAX_REV)
    version = await files.version(principal, ns, path, rev) if rev else await files.current(principal, ns, path)
    if version.deleted:
        raise ValidationFailed(f"rev {version.rev} of {path!r} is a deletion.", (FieldError("rev", "a tombstone"),))
    if request.method == "HEAD":
        return web.Response(headers=_version_headers(version, version.size))
    url = None
    if request.query.get("via") != "service" and version.content_hash != EMPTY_HASH:
        url = await request.app[TRANSFERS].download_url(ns, version, request.app[SETTINGS].files.download_url_seconds)
    if url is None:  # asked for, or a redirect could not pin the verified object
        return await _stream(request, ns, version)
    raise web.HTTPFound(location=url, headers=_version_headers(version, None))


async def _stream(request: web.Request, ns: str, version: FileVersion) -> web.StreamResponse:
    byte_range = _parse_range(request.headers.get("Range"), version.size)
    if version.size == 0:
        return web.Response(body=b"", headers=_version_headers(version, 0))
    async with request.app[TRANSFERS].open_download(ns, version, byte_range) as download:
        response = web.StreamResponse(
            status=206 if byte_range else 200, headers=_version_headers(version, download.size)
        )
        if download.content_range:
            response.headers["Content-Range"] = download.content_range
        await response.prepare(request)
        async for chunk in download.chunks:
            await response.write(chunk)
        await response.write_eof()
        return response


def _parse_range(header: str | None, size: int) -> str | None:
    """A single ``bytes=`` range as S3 accepts it, its end clamped to the body's; 416 when it cannot be
    satisfied. Bounds of any length are read without converting more than ``_RANGE_DIGITS`` digits."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{size}"},
            text="Only one range of the form bytes=a-b, a- or -n.",
        )
    start, end = (_range_bound(g) for g in match.groups())
    unsatisfiable = start >= size or (end is not None and end < start) if start is not None else end == 0
    if unsatisfiable:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{size}"}, text=f"The range lies outside the {size}-byte body."
        )
    if start is None:
        return f"bytes=-{min(end or 0, size)}"
    return f"bytes={start}-{'' if end is None else min(end, size - 1)}"


def _range_bound(digits: str) -> int | None:
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _RANGE_DIGITS else 10**_RANGE_DIGITS


def _version_headers(version: FileVersion, length: int | None) -> dict[str, str]:
    headers = {
        "ETag": f'"{version.content_hash}"',
        "X-Content-Hash": version.content_hash,
        "X-Rev": str(version.rev),
        "X-File-Id": version.file_id,
        "X-Block-Size": str(version.block_size),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(version.committed_at)),
    }
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


async def put_file(request: web.Request) -> web.Response:
    """Upload a body through the service and commit it, streaming: memory stays about concurrency x
    block size whatever the size. ``If-Match: <rev>`` or ``If-None-Match: *`` guard against overwriting
    someone else's version; ``X-Content-Hash`` (optional) is checked before the upload completes."""
    principal = authenticate(request)
    check_coding(request, UPLOAD_CODINGS)
    settings = request.app[SETTINGS].files
    max_size = settings.block_size * MAX_FILE_BLOCKS
    if request.content_length is not None and request.content_length > max_size:
        raise PayloadTooLarge(f"A file may be at most {max_size} bytes.")
    # Held at once: the block being filled and those being uploaded.
    reserve(request, declared_or(request, (settings.upload_concurrency + 1) * settings.block_size))
    result = await request.app[TRANSFERS].stream_put(
        principal,
        request.match_info["ns"],
        request.match_info["path"],
        _blocks(request, settings.block_size),
        expected_hash=request.headers.get("X-Content-Hash"),
        precondition=_precondition(request),
        mtime=_mtime(request),
        commit_key=request.headers.get(IDEMPOTENCY_HEADER),
    )
    assert result.version is not None
    return json_response(file_info(result.version), status=201 if result.version.rev == 1 else 200)


async def _blocks(request: web.Request, block_size: int) -> AsyncIterator[io.BytesIO]:
    """The body as buffers of ``block_size`` bytes (the last may be shorter), filled as data arrives:
    one buffer per block, no second copy."""
    block, filled = io.BytesIO(), 0
    async for chunk in body_chunks(request):
        view = memoryview(chunk)
        while view:
            take = min(len(view), block_size - filled)
            block.write(view[:take])
            filled += take
            view = view[take:]
            if filled == block_size:
                block.seek(0)
                yield block
                block, filled = io.BytesIO(), 0
    if filled:
        block.seek(0)
        yield block


def _precondition(request: web.Request) -> StreamPrecondition:
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        rev = if_match.strip().strip('"')
        if not _DIGITS.fullmatch(rev) or len(rev) > len(str(MAX_REV)) or not 1 <= int(rev) <= MAX_REV:
            raise ValidationFailed(
                "If-Match takes the rev you based the upload on.", (FieldError("If-Match", "not a rev"),)
            )
        return StreamPrecondition(parent_rev=int(rev))
    if request.headers.get("If-None-Match", "").strip() == "*":
        return StreamPrecondition(must_be_new=True)
    return StreamPrecondition()


def _mtime(request: web.Request) -> float:
    """``X-Mtime``, checked before any byte of the body is read: a decimal number of seconds since the
    epoch (``MTIME_PATTERN``) within ``MTIME_MIN``..``MTIME_MAX``."""
    raw = request.headers.get("X-Mtime")
    if raw is None:
        return time.time()
    value = float(raw) if len(raw) <= MTIME_MAX_LENGTH and _MTIME.fullmatch(raw) else math.nan
    if not MTIME_MIN <= value <= MTIME_MAX:  # NaN (not a decimal), infinities and out-of-range values all fail
        message = f"seconds since the epoch, a decimal from {MTIME_MIN:.0f} to {MTIME_MAX:.0f}"
        raise ValidationFailed(f"X-Mtime takes {message}.", (FieldError("X-Mtime", message),))
    return value


async def delete_file(request: web.Request) -> web.Response:
    """Delete a file (a tombstone version: it syncs, shows in history, can be restored). ``If-Match``
    must carry the rev being deleted."""
    principal = authenticate(request)
    precondition = _precondition(request)
    if precondition.parent_rev is None:
        raise ValidationFailed(
            "Send If-Match with the rev you are deleting.", (FieldError("If-Match", "required for a delete"),)
        )
    entry = CommitEntry(request.match_info["path"], "", 0, time.time(), precondition.parent_rev, deleted=True)
    outcome = await request.app[FILES].commit(
        principal, request.match_info["ns"], [entry], request.headers.get(IDEMPOTENCY_HEADER)
    )
    return json_response(_result(outcome.results[0]), status=200 if outcome.results[0].status == "committed" else 409)


async def post_restore(request: web.Request) -> web.Response:
    """Make an old version current again (as a new version)."""
    principal = authenticate(request)
    body = await read_json(request, RestoreRequest)
    result = await request.app[FILES].restore(
        principal, request.match_info["ns"], body.path, body.rev, request.headers.get(IDEMPOTENCY_HEADER)
    )
    return json_response(_result(result), status=200 if result.status == "committed" else 409)


async def get_trash(request: web.Request) -> web.Response:
    """The namespace's deleted files, the latest deletion first, ``limit`` (1-1000, default 100) a page: each
    its tombstone (``committed_by`` deleted it at ``committed_at``). Moves are not deletions; a file committed
    again at its path leaves the trash. Eventually consistent: a deletion appears within about a second."""
    principal = authenticate(request)
    limit = int_param(request, "limit", 100, 1, _LIST_LIMIT_MAX) or 100
    files, cursor = await request.app[FILES].trash(
        principal, request.match_info["ns"], request.query.get("cursor"), limit
    )
    return json_response(FileList(files=[file_info(f) for f in files], cursor=cursor))


async def post_trash_restore(request: web.Request) -> web.Response:
    """Restore deleted files, each as a new version holding its content before the deletion: ``paths``, or
    every deleted file under ``folder`` (at most 1,000). Answered as a commit is: per file, the new version
    or a conflict (409 when every file conflicted; 507 past the quota, nothing restored)."""
    principal = authenticate(request)
    body = await read_json(request, TrashRestoreRequest)
    if (body.paths is None) == (body.folder is None):
        raise ValidationFailed(
            "Name the files to restore (paths) or a folder (folder), not both or neither.",
            (FieldError("$", "exactly one of paths and folder"),),
        )
    outcome = await request.app[FILES].restore_deleted(
        principal, request.match_info["ns"], body.paths or [], body.folder, request.headers.get(IDEMPOTENCY_HEADER)
    )
    return _commit_response(outcome)


async def post_move(request: web.Request) -> web.Response:
    """Rename or move a file; it keeps its file id and history."""
    principal = authenticate(request)
    body = await read_json(request, MoveRequest)
    results = await request.app[FILES].move(
        principal,
        request.match_info["ns"],
        body.source,
        body.target,
        body.parent_rev,
        request.headers.get(IDEMPOTENCY_HEADER),
    )
    ok = all(r.status == "committed" for r in results)
    return json_response(CommitResponse(seq=0, results=[_result(r) for r in results]), status=200 if ok else 409)


async def post_moves(request: web.Request) -> web.Response:
    """Rename or move many files (a folder's, say), each keeping its file id and history; each move is
    atomic and independent of the others. Per move, the target's new version or a conflict (the status
    is 409 when every move conflicted). Send an ``Idempotency-Key`` header so a retry moves nothing twice."""
    principal = authenticate(request)
    body = await read_json(request, MovesRequest)
    outcome = await request.app[FILES].move_many(
        principal,
        request.match_info["ns"],
        [Move(m.source, m.target, m.parent_rev) for m in body.moves],
        request.headers.get(IDEMPOTENCY_HEADER),
    )
    results = [
        MoveResultOut(
            source=r.source,
            target=r.target,
            status=r.status,
            file=file_info(r.version) if r.version else None,
            current=file_info(r.current) if r.current else None,
            reason=r.reason,
        )
        for r in outcome.results
    ]
    everything_conflicted = all(r.status == "conflict" for r in outcome.results)
    return json_response(MovesResponse(results=results, seq=outcome.seq), status=409 if everything_conflicted else 200)


async def post_upload(request: web.Request) -> web.Response:
    """Presigned URLs for clients without an AWS SDK: one PUT for a body of one block, one URL per part
    for more (then complete the upload here), or nothing if the namespace already has the content."""
    principal = authenticate(request)
    body = await read_json(request, UploadRequest)
    ticket = await request.app[TRANSFERS].presign_upload(
        principal, request.match_info["ns"], body.content_hash, body.size
    )
    return json_response(
        UploadTicket(
            kind=ticket.kind,
            url=ticket.url,
            headers=ticket.headers,
            upload_id=ticket.upload_id,
            part_size=ticket.part_size,
            parts=[PresignedPartOut(number=p.number, url=p.url) for p in ticket.parts] if ticket.parts else None,
        )
    )


async def post_upload_complete(request: web.Request) -> web.Response:
    """Complete a presigned multipart upload with the parts' ETags; then commit its content hash."""
    principal = authenticate(request)
    body = await read_json(request, CompleteRequest)
    content_hash = await request.app[TRANSFERS].complete_upload(
        principal,
        request.match_info["ns"],
        request.match_info["upload_id"],
        [UploadedPart(p.number, p.etag, p.checksum_sha256) for p in body.parts],
    )
    return json_response(CompleteResponse(content_hash=content_hash))
