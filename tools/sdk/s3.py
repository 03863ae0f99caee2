"""The few S3 requests the transfers make, signed with AWS Signature Version 4, over aiohttp.

Layer: tools (SDK). Imports the standard library and aiohttp only: the sync client already holds aiohttp for
the service, and the AWS SDK (botocore's service models, endpoint rules and session) costs a few tenths of a
second of pure Python to import and open, paid before the first byte of every transfer, on the same core as
the rest of the start-up. The operations: ``PutObject``, the multipart steps (create, part, part copy,
complete, abort, list parts) and ranged ``GetObject``, path-style against a custom endpoint, virtual-hosted
on AWS. Every request is signed (SigV4, header form) with the scoped credentials the service minted; a body
is signed by the SHA-256 its caller already has (a block's digest: never hashed again here) or, for the
small XML bodies, by hashing them.

An answer S3 refuses is an ``S3Error`` (HTTP status, S3's error code, its message), including the error
S3 may send in the body of a ``200`` to ``CompleteMultipartUpload`` or ``UploadPartCopy``; aiohttp's own
exceptions (connecting, a connection lost, a timeout) pass through. ``tools.sdk.transfer`` turns both into
the SDK's errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import aiohttp
from yarl import URL

from service.wire import AwsCredentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


class S3Error(Exception):
    """S3 refused a request: its HTTP status, its error code (the status as text when it sent none) and
    message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart upload as ``ListParts`` reports it."""

    number: int
    etag: str
    size: int
    checksum_sha256: str | None


class S3Client:
    """Signed requests to one bucket's endpoint with one set of credentials (``credentials`` may be replaced:
    requests already sent keep the signature they were sent with)."""

    def __init__(self, http: aiohttp.ClientSession, credentials: AwsCredentials) -> None:
        self._http = http
        self.credentials = credentials

    @property
    def endpoint(self) -> str:
        return self.credentials.endpoint_url or f"https://s3.{self.credentials.region}.amazonaws.com"

    # --- objects -------------------------------------------------------------------------------------

    async def put_object(self, key: str, body: bytes, sha256: bytes | None, *, if_none_match: bool) -> None:
        """One object; ``sha256`` its body's digest (S3 checks it and stores it as the object's checksum)."""
        headers = {"x-amz-checksum-sha256": _b64(sha256)} if sha256 is not None else {}
        if if_none_match:
            headers["If-None-Match"] = "*"
        payload = sha256.hex() if sha256 is not None else hashlib.sha256(body).hexdigest()
        await self._call("PUT", key, headers=headers, body=body, payload_sha256=payload)

    @asynccontextmanager
    async def get_object(
        self, key: str, start: int, end: int, *, version_id: str | None = None, if_match: str | None = None
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """Bytes ``start`` to ``end`` (inclusive) of the object (of that version, or only while its ETag is
        ``if_match``), as a stream read while the context is open."""
        query = [("versionId", version_id)] if version_id is not None else []
        headers = {"Range": f"bytes={start}-{end}"}
        if if_match is not None:
            headers["If-Match"] = if_match
        async with self._request("GET", key, query=query, headers=headers) as response:
            if response.status not in (200, 206):
                raise _error(response.status, await response.read())
            yield response.content

    # --- multipart uploads ---------------------------------------------------------------------------

    async def create_multipart_upload(self, key: str) -> str:
        """A multipart upload whose parts carry SHA-256 checksums; its id."""
        answer = await self._call("POST", key, query=[("uploads", "")], headers={"x-amz-checksum-algorithm": "SHA256"})
        return _required(answer, "UploadId")

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes, sha256: bytes) -> str:
        """One part with its SHA-256 (checked by S3); its ETag."""
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        headers = {"x-amz-checksum-sha256": _b64(sha256)}
        async with self._request(
            "PUT", key, query=query, headers=headers, body=body, payload_sha256=sha256.hex()
        ) as response:
            if response.status != 200:
                raise _error(response.status, await response.read())
            return response.headers.get("ETag", "")

    async def upload_part_copy(
        self, key: str, upload_id: str, number: int, source_key: str, start: int, end: int
    ) -> str:
        """One part copied inside S3 from bytes ``start`` to ``end`` of ``source_key``; its ETag."""
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        headers = {
            "x-amz-copy-source": quote(f"{self.credentials.bucket}/{source_key}", safe="/~"),
            "x-amz-copy-source-range": f"bytes={start}-{end}",
        }
        answer = await self._call("PUT", key, query=query, headers=headers)
        return _required(answer, "ETag")

    async def complete_multipart_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str, str]], *, if_none_match: bool
    ) -> None:
        """Assemble the parts ``(number, ETag, SHA-256 checksum)``."""
        listed = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag>"
            f"<ChecksumSHA256>{escape(checksum)}</ChecksumSHA256></Part>"
            for number, etag, checksum in parts
        )
        body = f'<CompleteMultipartUpload xmlns="{_XMLNS}">{listed}</CompleteMultipartUpload>'.encode()
        headers = {"Content-Type": "application/xml"}
        if if_none_match:
            headers["If-None-Match"] = "*"
        await self._call(
            "POST",
            key,
            query=[("uploadId", upload_id)],
            headers=headers,
            body=body,
            payload_sha256=hashlib.sha256(body).hexdigest(),
        )

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        await self._call("DELETE", key, query=[("uploadId", upload_id)])

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Every part S3 holds of an upload, page by page."""
        parts: list[Part] = []
        marker = "0"
        while True:
            query = [("uploadId", upload_id), ("part-number-marker", marker)]
            answer = await self._call("GET", key, query=query)
            for item in _children(answer, "Part"):
                parts.append(
                    Part(
                        int(_required(item, "PartNumber")),
                        _required(item, "ETag"),
                        int(_required(item, "Size")),
                        _text(item, "ChecksumSHA256"),
                    )
                )
            if _text(answer, "IsTruncated") != "true":
                return parts
            marker = _required(answer, "NextPartNumberMarker")

    # --- signing and sending -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        key: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        payload_sha256: str = EMPTY_SHA256,
    ) -> ElementTree.Element:
        """A request whose answer is XML (or nothing): the answer's root (an empty element for none)."""
        request = self._request(method, key, query=query, headers=headers, body=body, payload_sha256=payload_sha256)
        async with request as response:
            content = await response.read()
        if response.status >= 300:
            raise _error(response.status, content)
        if not content.strip():
            return ElementTree.Element("Empty")
        root = _parse(response.status, content)
        if _local(root.tag) == "Error":  # S3 may refuse a completion or a copy in the body of a 200
            raise _error(response.status, content)
        return root

    @asynccontextmanager
    async def _request(
        self,
        method: str,
        key: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        payload_sha256: str = EMPTY_SHA256,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        creds = self.credentials
        if creds.endpoint_url or "." in creds.bucket:
            # Path-style: the bucket in the path (a custom endpoint; or a bucket whose dots would break TLS
            # as a host name).
            base = (creds.endpoint_url or f"https://s3.{creds.region}.amazonaws.com").rstrip("/")
            path = f"{urlsplit(base).path}/{_uri(creds.bucket)}/{_uri(key)}"
            host = urlsplit(base).netloc
            origin = f"{urlsplit(base).scheme}://{host}"
        else:  # virtual-hosted: the bucket in the host name
            host = f"{creds.bucket}.s3.{creds.region}.amazonaws.com"
            path = f"/{_uri(key)}"
            origin = f"https://{host}"
        encoded = sorted((_uri(name, "-_.~"), _uri(value, "-_.~")) for name, value in query)
        canonical_query = "&".join(f"{name}={value}" for name, value in encoded)
        target = "&".join(name if not value else f"{name}={value}" for name, value in encoded)
        signed = sign(
            creds, method, host, path, canonical_query, dict(headers or {}), payload_sha256, datetime.now(UTC)
        )
        url = URL(f"{origin}{path}{'?' + target if target else ''}", encoded=True)
        # A stream, not bytes: aiohttp then sends a part in chunks, yielding to the loop between them.
        data = io.BytesIO(body) if body else None
        async with self._http.request(method, url, headers=signed, data=data) as response:
            yield response


def sign(
    creds: AwsCredentials,
    method: str,
    host: str,
    path: str,
    canonical_query: str,
    headers: dict[str, str],
    payload_sha256: str,
    now: datetime,
) -> dict[str, str]:
    """The request's headers with SigV4's (``Authorization``, ``x-amz-date``, ``x-amz-content-sha256`` and the
    session token): every header given is signed, with ``host``. ``path`` and ``canonical_query`` are already
    URI-encoded as sent."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    all_headers = {name.lower(): value for name, value in headers.items()}
    all_headers.update({"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
    if creds.session_token:
        all_headers["x-amz-security-token"] = creds.session_token
    names = sorted(all_headers)
    canonical_headers = "".join(f"{name}:{' '.join(all_headers[name].split())}\n" for name in names)
    signed_names = ";".join(names)
    canonical = "\n".join([method, path, canonical_query, canonical_headers, signed_names, payload_sha256])
    scope = f"{day}/{creds.region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signing_key = f"AWS4{creds.secret_access_key}".encode()
    for part in (day, creds.region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    all_headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, SignedHeaders={signed_names}, "
        f"Signature={signature}"
    )
    return all_headers


def _uri(value: str, safe: str = "/~") -> str:
    """URI-encoded as SigV4 wants it: everything but unreserved characters (and ``/`` in paths)."""
    return quote(value, safe=safe)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _parse(status: int, content: bytes) -> ElementTree.Element:
    try:
        # S3 may send whitespace ahead of the document while it works (a long CompleteMultipartUpload).
        return ElementTree.fromstring(content.lstrip())  # noqa: S314 - S3's answer to a request signed for it
    except ElementTree.ParseError:
        raise S3Error(status, "MalformedAnswer", f"not the XML S3 sends: {content[:200]!r}") from None


def _error(status: int, content: bytes) -> S3Error:
    """S3's error document as an ``S3Error`` (a HEAD, or a proxy's page, has none: the status is the code)."""
    code, message = str(status), ""
    if content.strip().startswith(b"<"):
        try:
            root = ElementTree.fromstring(content.lstrip())  # noqa: S314 - S3's error document
        except ElementTree.ParseError:
            root = None
        if root is not None:
            code = _text(root, "Code") or code
            message = _text(root, "Message") or ""
    return S3Error(status, code, message or f"HTTP {status}")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ElementTree.Element, name: str) -> str | None:
    for child in element.iter():
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _required(element: ElementTree.Element, name: str) -> str:
    found = _text(element, name)
    if found is None:
        raise S3Error(200, "MalformedAnswer", f"S3's answer has no {name}")
    return found
