"""Rendering typed models as JSON responses.

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service import codec
from service.core.models import FileVersion
from service.wire import FileInfo


def json_response(body: object, status: int = 200) -> web.Response:
    """``body`` (a wire model or plain data) as ``application/json``."""
    return web.Response(body=codec.dumps(body), status=status, content_type="application/json")


def file_info(version: FileVersion) -> FileInfo:
    return FileInfo(
        path=version.path,
        file_id=version.file_id,
        rev=version.rev,
        content_hash=version.content_hash,
        size=version.size,
        mtime=version.mtime,
        deleted=version.deleted,
        committed_by=version.committed_by,
        committed_at=version.committed_at,
        seq=version.seq,
        block_size=version.block_size,
        moved_from=version.moved_from,
        moved_to=version.moved_to,
        body_version=version.body_version,
        body_etag=version.body_etag,
        body_pack=version.body_pack,
        body_offset=version.body_offset,
    )
