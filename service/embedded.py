"""The embedded default: moto's server in a process of its own, provisioned like production.

Layer: composition. Used by ``python -m service`` (and the tests) when no AWS settings are present.
``run_emulator`` starts ``python -m service.embedded`` as a child process, so the emulator and the service
each have a core (and a GIL) of their own; the child serves on loopback only and exits when its parent does
(it watches its stdin, a pipe the parent holds). Its data lives as long as that process. moto is imported
only in the child.

Besides the AWS APIs, the emulator answers ``GET /_emulator/mail``: every message its SES accepted, as JSON
(``[{"destinations": [...], "raw": "..."}]``), so a developer on the embedded default can read the emails
the service "sent", and tests can assert on them from another process.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioboto3

from service.aws.clients import make_session, open_clients
from service.aws.provision import provision, provision_mail_feedback
from service.metrics import Metrics
from service.settings import Settings


class _OneRequestAtATime:
    """A WSGI wrapper that lets moto handle one DynamoDB request at a time.

    moto's DynamoDB backend is not safe under concurrent requests: a transaction deep-copies a table that
    another request thread is changing, and checks its conditions apart from its writes, so two racing
    transactions can both succeed. DynamoDB itself serializes conflicting transactions, and the service's
    guarantees (one winner per parent rev, a gapless journal) rest on that; serializing the emulator's
    DynamoDB gives the embedded default and the tests the same ordering. S3 requests, which carry the
    bulk of the bytes, still run concurrently.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") == MAIL_PATH:
            return _sent_mail(start_response)
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return list(self._app(environ, start_response))
        with self._lock:
            return list(self._app(environ, start_response))


#: Where the emulator lists the mail its SES accepted (see the module's docstring).
MAIL_PATH = "/_emulator/mail"


def _sent_mail(start_response: Any) -> list[bytes]:
    """Every raw message moto's SES accepted, in every account and region, as JSON."""
    import orjson
    from moto.ses.models import RawMessage, ses_backends

    found = [
        {"destinations": list(sent.destinations), "raw": sent.raw_data}
        for _, _, backend in ses_backends.iter_backends()
        for sent in list(getattr(backend, "sent_messages", []))
        if isinstance(sent, RawMessage)
    ]
    body = orjson.dumps(found)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _transactions_with_an_undo_log() -> None:
    """Make moto's ``TransactWriteItems`` cost what it touches, not what the table holds.

    moto backs every transaction up by deep-copying the whole table once per action in it, so a commit of
    a thousand files into a namespace of a hundred thousand copies a hundred million items, and the
    emulator stalls. Instead, the items a transaction touches are copied before it runs (its actions name
    their keys), the table copies are made free for the duration of the call, and a failed transaction is
    undone from those copies. Same results, same atomicity; safe because the emulator runs one DynamoDB
    request at a time (``_OneRequestAtATime``).
    """
    import copy

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend, "_filesync_undo_log", False):
        return
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[Any, Any, Any, Any]] = []
        for action in transact_items[:100]:
            try:
                kind, op = next(iter(action.items()))
                table = self.tables[op["TableName"]]
                attributes = op["Item"] if kind == "Put" else op["Key"]
                hash_value = DynamoType(attributes[table.hash_key_attr])
                range_value = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, StopIteration, AttributeError, TypeError):
                continue  # a malformed action: moto's own code reports it
            saved.append((table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value))))
        Table.__deepcopy__ = lambda table, memo: table  # type: ignore[attr-defined]
        try:
            original(self, transact_items)
        except BaseException:
            for table, hash_value, range_value, before in reversed(saved):
                if before is None:
                    table.delete_item(hash_value, range_value)
                elif range_value is not None:
                    table.items[hash_value][range_value] = before
                else:
                    table.items[hash_value] = before
            raise
        finally:
            del Table.__deepcopy__  # type: ignore[attr-defined]

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend._filesync_undo_log = True  # type: ignore[attr-defined]


class _SortedPartition(dict[Any, Any]):
    """One partition's items by range key, remembering its keys' order until a key is added or removed.

    Replacing the item at an existing key (an update) keeps the order; so a namespace that is only read and
    updated is sorted once, not once per Query.
    """

    __slots__ = ("_keys", "_values")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: list[Any] | None = None
        self._values: list[Any] = []

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self:
            self._keys = None
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._keys = None
        super().__delitem__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self._keys = None
        return super().pop(key, *default)

    def order(self) -> tuple[list[Any], list[Any]]:
        """The range keys in order and their plain values (what bisect compares)."""
        if self._keys is None:
            self._keys = sorted(self, key=lambda k: k.value)
            self._values = [k.value for k in self._keys]
        return self._keys, self._values


def _after_prefix(prefix: str) -> str | None:
    """The least string above every string that begins with ``prefix``; None if there is none."""
    stem = prefix.rstrip("\U0010ffff")
    return stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None


def _queries_read_their_partition() -> None:
    """Make moto's ``Query`` on a table's own key cost what its answer holds, not the whole table.

    For every Query, moto filters and sorts every item of the table (all partitions) and then walks the
    partition from its start, so paging through a 20,000-file namespace costs O(pages x table). Here each
    partition keeps its keys' order (``_SortedPartition``), and a Query on the table's keys (no index)
    hands moto only the items from the exclusive start key on, cut to the key condition and to one page
    (the Limit or DynamoDB's 1 MB, plus the one item that tells moto there is more); moto's own code then
    filters, limits and pages them as before. Other queries (indexes, non-string keys) are untouched.
    """
    from collections import defaultdict

    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT, Table

    if getattr(Table, "_filesync_partition_query", False):
        return
    original = Table.query
    original_init = Table.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.items = defaultdict(_SortedPartition)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        # moto's positional order: hash key, range comparison, range values, limit, exclusive start key,
        # scan forward, projections, index name.
        hash_key, range_comparison, range_objs, limit = args[0], args[1], args[2], args[3]
        exclusive_start_key, scan_index_forward = args[4], args[5]
        index_name = kwargs.get("index_name", args[7] if len(args) > 7 else None)
        if index_name is not None or hash_key is None or self.range_key_attr is None or self.range_key_type != "S":
            return original(self, *args, **kwargs)
        partition = self.items.get(hash_key) or _SortedPartition()
        if not isinstance(partition, _SortedPartition):
            partition = _SortedPartition(partition)
        order, keys = partition.order()
        lo, hi = 0, len(keys)
        values: list[Any] = [getattr(obj, "value", None) for obj in range_objs or []]
        legacy_filters = set(kwargs) - {"hash_key_conditions", "range_key_conditions"}
        resolved = not range_comparison and not legacy_filters
        if all(isinstance(v, str) for v in values):
            if range_comparison == "BETWEEN" and len(values) == 2:
                lo, hi = bisect.bisect_left(keys, values[0]), bisect.bisect_right(keys, values[1])
                resolved = True
            elif range_comparison == "BEGINS_WITH" and len(values) == 1:
                lo = bisect.bisect_left(keys, values[0])
                above = _after_prefix(values[0])
                hi = bisect.bisect_left(keys, above, lo) if above is not None else hi
                resolved = True
        start = (exclusive_start_key or {}).get(self.range_key_attr, {}).get("S")
        if isinstance(start, str):
            if scan_index_forward is not False:
                lo = max(lo, bisect.bisect_right(keys, start))
            else:
                hi = min(hi, bisect.bisect_left(keys, start))
        if resolved and scan_index_forward is not False:
            # Every candidate matches the key condition: one page, and the item after it, is all moto reads.
            end, size = lo, 0
            while end < hi:
                if limit is not None and end - lo == limit:
                    end += 1
                    break
                size += partition[order[end]].size()
                end += 1
                if size > RESULT_SIZE_LIMIT:
                    break
            hi = end
        chosen = [partition[k] for k in order[lo:hi]]
        self.all_items = lambda: chosen  # moto takes its candidates from here; only during this call
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    Table.__init__ = init  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table._filesync_partition_query = True  # type: ignore[attr-defined]


def _children_queries_read_the_folder() -> None:
    """Make moto's Query of the children index (gsi1 partitions ``DIR#<ns>#<folder key>``) cost what the
    folder holds, not the whole table.

    moto answers an index Query by testing every item of the table. A folder's children are file items of
    its namespace's partition, under the folder's prefix: walking that partition's sorted keys from the
    page's start and jumping over each subfolder (one bisection), the first page's worth of the folder's
    files (and the one after, which tells moto there is more) are all moto is handed; it tests, sorts and
    pages them as before (a tombstone, having no index keys, drops out there). Other index queries are
    untouched.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT, Table

    if getattr(Table, "_filesync_children_query", False):
        return
    original = Table.query

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        hash_key, limit, exclusive_start_key, scan_index_forward = args[0], args[3], args[4], args[5]
        index_name = kwargs.get("index_name", args[7] if len(args) > 7 else None)
        wanted = getattr(hash_key, "value", None)
        if index_name != "gsi1" or not isinstance(wanted, str) or not wanted.startswith("DIR#"):
            return original(self, *args, **kwargs)
        if args[1] or scan_index_forward is False or self.range_key_type != "S":
            return original(self, *args, **kwargs)
        ns, _, folder = wanted.removeprefix("DIR#").partition("#")
        partition = self.items.get(DynamoType({"S": f"NS#{ns}"}))
        if not isinstance(partition, _SortedPartition):
            return original(self, *args, **kwargs)
        order, keys = partition.order()
        prefix = f"F#{folder}/" if folder else "F#"
        above = _after_prefix(prefix)
        i = bisect.bisect_left(keys, prefix)
        end = bisect.bisect_left(keys, above, i) if above is not None else len(keys)
        start = (exclusive_start_key or {}).get(self.range_key_attr, {}).get("S")
        if isinstance(start, str):
            i = max(i, bisect.bisect_right(keys, start))
        chosen: list[Any] = []
        size = 0
        while i < end and (limit is None or len(chosen) <= limit) and size <= RESULT_SIZE_LIMIT:
            rest = keys[i][len(prefix) :]
            if "/" in rest:  # a subfolder: jump over all of it
                subtree = _after_prefix(prefix + rest[: rest.index("/") + 1])
                i = bisect.bisect_left(keys, subtree, i) if subtree is not None else end
                continue
            item = partition[order[i]]
            if getattr(item.attrs.get("gsi1pk"), "value", None) == wanted:
                chosen.append(item)
                size += item.size()
            i += 1
        self.all_items = lambda: chosen  # moto takes its candidates from here; only during this call
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query  # type: ignore[method-assign]
    Table._filesync_children_query = True  # type: ignore[attr-defined]


#: The moto releases the S3 checksum patches below were written against and tested with (tests/test_embedded.py
#: pins what they do); another release must be checked against them before the emulator runs on it.
_MOTO_CHECKED = ("5.2.",)
#: S3's answers to a declared SHA-256 that is not one (not 32 bytes of base64), and to one the body does not have.
_INVALID_SHA256 = ("InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid.")
_BAD_DIGEST = ("BadDigest", "The SHA256 you specified did not match the calculated checksum.")


def _require_checked_moto(what: str) -> None:
    import moto

    if not moto.__version__.startswith(_MOTO_CHECKED):
        raise RuntimeError(
            f"moto {moto.__version__} is not a release {what} in service/embedded.py were checked against"
            f" ({', '.join(v + 'x' for v in _MOTO_CHECKED)}): check them against it before the emulator uses it"
        )


#: What one emulator request thread verified: the SHA-256 of the part it is storing, the verified digests
#: of the parts of the upload it is completing. (werkzeug serves each request in a thread of its own.)
_verified = threading.local()


def _checksums_checked() -> None:
    """Make moto check ``x-amz-checksum-sha256`` as S3 does, so the emulator's stored checksums prove content.

    moto stores whatever SHA-256 a ``PutObject`` declares, accepts any on ``UploadPart``, and keeps a
    ``PutObject``'s declared checksum only when the request also names the algorithm (S3 needs the value
    alone). Here a declared SHA-256 (header, or an aws-chunked trailer) that is not 32 bytes of base64 is
    refused with ``InvalidRequest``, and one the body does not have with ``BadDigest``, both 400 and before
    anything is stored, as S3 answers; a ``PutObject`` that declares one keeps it. A part's verified digest
    is kept with the part, and ``CompleteMultipartUpload`` builds its composite checksum from those (as S3
    does) instead of hashing every part again; parts that declared none are hashed as moto always did.
    """
    import base64
    import binascii
    import hashlib
    import re

    from moto.s3 import models
    from moto.s3.exceptions import S3ClientError
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_filesync_checksums", False):
        return
    _require_checked_moto("the S3 checksum checks")
    trailer = re.compile(rb"x-amz-checksum-sha256:([^\r\n]*)")

    def declared_sha256(response: Any) -> bytes | None:
        value = response.headers.get("x-amz-checksum-sha256")
        if value is None and "x-amz-checksum-sha256" in response.headers.get("x-amz-trailer", "").lower():
            found = trailer.search(response.raw_body or b"")
            value = found.group(1).decode("latin-1").strip() if found else ""
        if value is None:
            return None
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise S3ClientError(*_INVALID_SHA256)
        return digest

    def checked_body(response: Any) -> bytes | None:
        """The declared SHA-256 of the request's body, once the body is seen to have it (None: none declared)."""
        digest = declared_sha256(response)
        if digest is not None and hashlib.sha256(response.body or b"").digest() != digest:
            raise S3ClientError(*_BAD_DIGEST)
        return digest

    original_put = S3Response.put_object
    original_part = S3Response.upload_part
    original_get_checksum = S3Response._get_checksum
    original_set_part = models.FakeMultipart.set_part
    original_complete = models.FakeMultipart.complete

    def put_object(self: Any) -> Any:
        checked_body(self)
        return original_put(self)

    def upload_part(self: Any) -> Any:
        _verified.sha256 = checked_body(self)
        try:
            return original_part(self)
        finally:
            _verified.sha256 = None

    def get_checksum(self: Any, response_headers: dict[str, Any]) -> tuple[str, str | None]:
        algorithm, value = original_get_checksum(self, response_headers)
        declared = self.headers.get("x-amz-checksum-sha256")
        if not algorithm and declared:  # the value alone, as S3 takes it (it was verified above)
            response_headers["x-amz-checksum-sha256"] = declared
            return "SHA256", declared
        return algorithm, value

    def set_part(self: Any, part_id: int, value: bytes) -> Any:
        part = original_set_part(self, part_id, value)
        setattr(part, "_filesync_sha256", getattr(_verified, "sha256", None))  # noqa: B010 - not moto's attribute
        return part

    def complete(self: Any, body: Any) -> Any:
        listed = list(body)
        _verified.parts = [getattr(self.parts.get(number), "_filesync_sha256", None) for number, _ in listed]
        try:
            return original_complete(self, iter(listed))
        finally:
            _verified.parts = None

    class VerifiedPartsChecksum(models.MultipartChecksumBuilder):
        """moto's composite checksum builder, taking each part's verified digest where there is one (the
        parts come in the order ``complete`` listed them)."""

        def addPart(self, part: bytes) -> None:
            known = getattr(_verified, "parts", None)
            digest = known.pop(0) if known else None
            if digest is not None and self.checksum_algorithm == "SHA256" and self.checksum_type == "COMPOSITE":
                self.checksum.extend(digest)
                self.part_count += 1
            else:
                super().addPart(part)

    S3Response.put_object = put_object  # type: ignore[method-assign]
    S3Response.upload_part = upload_part  # type: ignore[method-assign]
    S3Response._get_checksum = get_checksum  # type: ignore[method-assign]
    models.FakeMultipart.set_part = set_part  # type: ignore[method-assign]
    models.FakeMultipart.complete = complete  # type: ignore[method-assign]
    models.MultipartChecksumBuilder = VerifiedPartsChecksum  # type: ignore[misc]
    S3Response._filesync_checksums = True  # type: ignore[attr-defined]


def _composite_checksums_with_their_part_count() -> None:
    """Report a multipart object's composite checksum as S3 does: ``HeadObject`` with ``ChecksumMode=ENABLED``
    gives ``<base64>-<parts>`` and ``x-amz-checksum-type: COMPOSITE`` (moto leaves the part count off, though
    its ``GetObject`` has it), and ``GetObjectAttributes`` gives the part count as ``ObjectParts.TotalPartsCount``
    beside the bare checksum (moto gives no ``ObjectParts``). moto already computes the checksum itself."""
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_filesync_part_counts", False):
        return
    _require_checked_moto("the S3 checksum reports")
    original_head = S3Response.head_object
    original_attributes = S3Response.get_object_attributes

    def head_object(self: Any, bucket_name: str, query: dict[str, Any], key_name: str, headers: Any) -> Any:
        status, response_headers, body = original_head(self, bucket_name, query, key_name, headers)
        if status != 200 or headers.get("x-amz-checksum-mode") != "ENABLED" or query.get("partNumber"):
            return status, response_headers, body
        try:
            key = self.backend.head_object(bucket_name, key_name, version_id=query.get("versionId", [None])[0])
        except Exception:  # gone or a delete marker since: the answer stays moto's
            return status, response_headers, body
        if key is not None and key.checksum_type == "COMPOSITE" and key.checksum_algorithm and key.checksum_parts:
            name = f"x-amz-checksum-{key.checksum_algorithm.lower()}"
            if response_headers.get(name) == key.checksum_value:
                response_headers[name] = f"{key.checksum_value}-{key.checksum_parts}"
                response_headers["x-amz-checksum-type"] = "COMPOSITE"
        return status, response_headers, body

    def get_object_attributes(self: Any) -> Any:
        if "ObjectParts" not in self.headers.get("x-amz-object-attributes", "").split(","):
            return original_attributes(self)
        serialized = self.serialized

        def with_parts(action_result: Any) -> Any:
            result = action_result.result
            if isinstance(result, dict):
                key, _ = self._get_key(validate_storage_class=False)
                _, dash, parts = key.etag.strip('"').rpartition("-")
                if key.multipart is not None and dash and parts.isdigit():
                    result["ObjectParts"] = {"TotalPartsCount": int(parts)}
            return serialized(action_result)

        self.serialized = with_parts  # this request's own response object (moto makes one per request)
        try:
            return original_attributes(self)
        finally:
            del self.serialized

    S3Response.head_object = head_object  # type: ignore[method-assign]
    S3Response.get_object_attributes = get_object_attributes  # type: ignore[method-assign]
    S3Response._filesync_part_counts = True  # type: ignore[attr-defined]


def _attribute_values_serialized_directly() -> None:
    """Make moto write DynamoDB's attribute values as they are, not member by member through the model.

    moto serializes every response by walking botocore's output shape, and an item's attribute values are
    the bulk of a DynamoDB response: each value is a structure of ten members, each looked up under several
    spellings, so a Query of 200 small items spends about 200 ms here (most of the emulator's time on a
    compare or a listing). An attribute value is already in its wire shape (``{"S": ...}``), so it is written
    as the generic code would write it: strings as strings, binaries base64-encoded, maps and lists value by
    value, absent members left out.
    """
    import base64

    from moto.core.serialize import JSONSerializer

    if getattr(JSONSerializer, "_filesync_direct_values", False):
        return
    original = JSONSerializer._serialize_type_structure

    def b64(value: str | bytes) -> str:
        raw = value.encode() if isinstance(value, str) else value
        return base64.b64encode(raw).strip().decode()

    def plain(value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, member in value.items():
            if member is None:
                continue
            if kind in ("S", "N"):
                out[kind] = str(member) if member not in ({}, []) else member
            elif kind == "B":
                out[kind] = b64(member)
            elif kind == "BS":
                out[kind] = [b64(each) for each in member]
            elif kind in ("SS", "NS"):
                out[kind] = [str(each) for each in member]
            elif kind == "M":
                out[kind] = {name: plain(each) for name, each in member.items()}
            elif kind == "L":
                out[kind] = [plain(each) for each in member]
            else:  # BOOL, NULL
                out[kind] = member
        return out

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and isinstance(value, dict):
            self._default_serialize(serialized, plain(value), shape, key)
        else:
            original(self, serialized, value, shape, key)

    JSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]
    JSONSerializer._filesync_direct_values = True  # type: ignore[attr-defined]


def _dispatch_looked_up_once() -> None:
    """Make moto find a request's backend and handler methods once, not on every request.

    For each request moto's dispatcher lists its own package directory and stats each of its ~150
    service folders (to see whether the host names one), and its handler lists the methods of its class
    with ``inspect``: about a millisecond a request, an eighth of the emulator's time under the load
    tool's mix. Both answers depend only on the host and the class, so they are remembered.
    """
    import functools

    from moto.core import responses, utils
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, "_filesync_remembered", False):
        return
    lookup = DomainDispatcherApplication.get_backend_for_host
    backends: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in backends:
            backends[host] = lookup(self, host)
        return backends[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    names = functools.cache(utils.method_names_from_class)
    responses.method_names_from_class = names  # type: ignore[attr-defined]
    DomainDispatcherApplication._filesync_remembered = True  # type: ignore[attr-defined]


class _Drained:
    """What werkzeug's after-response drain reads from (it would otherwise swallow the next request)."""

    def read(self, size: int = -1) -> bytes:
        return b""


def _keep_alive(handler: type[Any]) -> type[Any]:
    """``handler`` (werkzeug's request handler, as moto customizes it) keeping connections open.

    werkzeug's development server answers every request with ``Connection: close``, because after a
    response it cannot tell the rest of an unread body from the next request. So every AWS call a client
    makes opens a TCP connection and the emulator starts a thread for it: a connect and a thread per call on
    both sides, about a third of the service's own time under the load tool's mix. Here a request whose body
    has a declared length is read through a stream limited to that length; whatever the application left
    of it is read and dropped after the response; and then the connection stays open for the next request.
    A body of undeclared length (chunked) still closes the connection, as before.
    """
    from werkzeug.wsgi import LimitedStream

    class KeepAliveRequestHandler(handler):  # type: ignore[misc]
        _body: LimitedStream | None = None

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in separate writes: without this, Nagle's algorithm holds the body
            # back until the client's delayed ACK (40 ms) on a connection that stays open.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            self._body = None
            length = environ.get("CONTENT_LENGTH") or "0"
            if not environ.get("wsgi.input_terminated") and length.isdigit():
                self._body = LimitedStream(environ["wsgi.input"], int(length))
                environ["wsgi.input"] = self._body
                self.rfile, self._rfile = _Drained(), self.rfile
            return environ

        def run_wsgi(self) -> None:
            try:
                super().run_wsgi()
            finally:
                if self._body is not None:
                    self.rfile = self._rfile
                    try:
                        while self._body.read(1 << 20):
                            pass
                    except Exception:  # the client went away mid-body: nothing more to serve
                        self.close_connection = True

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() == "connection" and value.lower() == "close" and self._body is not None:
                return  # the body is accounted for: the connection can serve another request
            super().send_header(keyword, value)

    return KeepAliveRequestHandler


def _full_collections_scan_only_newcomers() -> None:
    """Keep the garbage collector's full passes from stalling the emulator as its tables grow.

    Every item the emulator holds is a few dozen Python objects, and a full collection walks them all with
    the interpreter locked: at 20,000 items one takes about 250 ms, during which no request is answered.
    Here whatever survives a full collection (the modules, and items stored by then, all alive) is moved
    out of the collector's sight (``gc.freeze``), so the next full pass walks only what came since. Frozen
    objects are still freed when their last reference goes; only a cycle among them would stay, and table
    items form none.
    """
    import gc

    def freeze_survivors(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    gc.collect()
    gc.freeze()
    gc.callbacks.append(freeze_survivors)


#: How long a child emulator may take to start (importing moto is most of it).
STARTUP_SECONDS = 60.0


class EmulatorError(RuntimeError):
    """The emulator's process did not start (its last output is in the message)."""


@contextmanager
def run_emulator(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Start the emulator in a child process on a loopback port (0: any free one); yield its endpoint URL;
    stop the child on exit. The child also exits by itself if this process dies (its stdin closes)."""
    command = [sys.executable, "-m", "service.embedded", "--host", host, "--port", str(port), "--parent-pipe"]
    child = subprocess.Popen(  # noqa: S603 - our own module, by the running interpreter
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    drain = threading.Thread(target=_drain, args=(child.stdout,), name="aws-emulator-output", daemon=True)
    try:
        endpoint = _await_endpoint(child)
        # The child's later output (werkzeug's warnings) goes nowhere rather than filling a pipe.
        drain.start()
        yield endpoint
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the child's signal to stop
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if drain.is_alive():
            drain.join(5)  # the child is gone: its output ends
        child.stdout.close()


def _await_endpoint(child: subprocess.Popen[bytes]) -> str:
    """The endpoint the child prints once it serves; an ``EmulatorError`` with its output if it died."""
    assert child.stdout is not None
    seen: list[str] = []
    found: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        for raw in child.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith(_READY):
                found.append(line[len(_READY) :])
                return
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(STARTUP_SECONDS)
    if not found:
        child.kill()
        child.wait()
        output = "\n".join(seen[-20:]) or "(no output)"
        raise EmulatorError(f"the AWS emulator did not start (exit code {child.returncode}):\n{output}")
    return found[0]


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


_READY = "emulator at "


@contextmanager
def serve_emulator(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's server in this process, on a thread: what the child process of ``run_emulator`` runs."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    _transactions_with_an_undo_log()
    _queries_read_their_partition()
    _children_queries_read_the_folder()
    _checksums_checked()
    _composite_checksums_with_their_part_count()
    _attribute_values_serialized_directly()
    _dispatch_looked_up_once()
    app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=_keep_alive(MotoRequestHandler))
    thread = threading.Thread(target=server.serve_forever, name="aws-emulator", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


async def provision_emulator(
    settings: Settings, session: aioboto3.Session | None = None, *, mail_feedback: bool = False
) -> Settings:
    """Create the bucket, table, upload role and SES sender in the emulator; with ``mail_feedback`` (as
    ``python -m service`` does) also the configuration set and the feedback queue, so the service sends with
    the one and its notifier reads the other. Return the final settings."""
    session = session or make_session(settings.aws)
    async with open_clients(settings.aws, Metrics(), session) as clients:
        provisioned = await provision(settings, clients, session)
        feedback = await provision_mail_feedback(settings, clients, session) if mail_feedback else None
    settings = dataclasses.replace(settings, upload_role_arn=provisioned.upload_role_arn)
    if feedback is None:
        return settings
    notify = dataclasses.replace(
        settings.notify, configuration_set=feedback.configuration_set, feedback_queue_url=feedback.queue_url
    )
    return dataclasses.replace(settings, notify=notify)


def main(argv: list[str] | None = None) -> int:
    """``python -m service.embedded [--host H] [--port P]``: just the (serialized) emulator, in this
    process; it prints ``emulator at URL`` once it serves."""
    import argparse
    import logging
    import signal

    parser = argparse.ArgumentParser(prog="python -m service.embedded", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--parent-pipe", action="store_true", help="exit when stdin closes (the parent died)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop = threading.Event()
    if args.parent_pipe:
        # Its parent decides when it stops (by closing the pipe): a Ctrl-C in the terminal reaches the whole
        # process group, and the service still needs its store while it drains.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

        def watch_parent() -> None:
            sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
            stop.set()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    else:
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve_emulator(args.host, args.port) as endpoint:
        _full_collections_scan_only_newcomers()
        sys.stdout.write(f"{_READY}{endpoint}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
