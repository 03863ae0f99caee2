"""DynamoDB adapter for file metadata: current state per path, the namespace journal, verified blobs.

Layer: aws. Items in the one table::

    NS#<ns>   HEAD              seq: the namespace's last journal sequence number; children_index: true once
                                every live file of the namespace is in the children index (below)
    NS#<ns>   F#<path key>      the current version of one path (path key: NFC + case folded)
    NS#<ns>   J#<seq, 12 digits> one commit: who, when, and its changes (orjson bytes)
    NS#<ns>   BLOB#<hash>       content verified against its hash: size, block size, and the object
                                verified (``body_version``, ``body_etag``; with ``body_pack`` and
                                ``body_offset``, where in that pack), which file versions copy
    NS#<ns>   D#<folder key>    a folder marker: some file was committed under this folder (never removed)
    NS#<ns>   H#<history key>#<chunk, 12 digits>
                                a history chunk: the versions of one file whose revs fall in the chunk
                                (``versions``, orjson bytes, oldest first) and ``prev``, the chunk sealed
                                before it (absent for the first)
    NS#<ns>   PACK#<pack id>    a pack a commit referenced: its size, number of bodies, when it was
                                written, its object (``body_version``, ``body_etag``); written in the
                                transaction of the first versions that name it

A commit is one ``TransactWriteItems``: the head moves from ``seq`` to ``seq + 1`` on condition it is still
``seq``, each file item is written on condition it is still what the service read, new blob records are
added, and the journal entry is put at ``seq + 1``. A reader therefore never sees ``seq + 1`` without
``seq``, and two commits racing on a namespace serialize (one retries). The same transaction puts the folder
markers of the new files' folders that the commit's read found absent, so a marker is never later than the
first file under its folder, and the history chunks the commit seals.

A file item's history attributes (``service.core.files`` explains the index): ``hist_base`` (the first rev
the index locates; absent on items written before the index, whose history is read by walking ``prev_seq``
through the journal), ``hist_key`` (the chunks' key when it is not the file id), ``hist_sealed`` (the last
sealed chunk) and ``hist_recent`` (orjson ``[[rev, seq], ...]`` of the versions after the sealed chunks).

The trash index: a deletion's tombstone (not a move's source) carries ``gsi1pk = TRASH#<ns>`` and ``gsi1sk =
T#<deleted at, ms, 15 digits>#<path key>``, so the namespace's deleted files are listed latest first; a file
committed again at the path leaves it (its item is live again).

The children index: a live file's item carries ``gsi1pk = DIR#<ns>#<parent folder key>`` ("" for the root)
and ``gsi1sk = F#<path key>``, a tombstone neither, so gsi1 (sparse, all attributes projected) holds each
folder's live files in path-key order and a non-recursive listing reads its children, not its subtree. Index
reads are eventually consistent: a listing right after a commit may not show it yet (usually well under a
second on AWS). Namespaces with files from before the index lack ``children_index`` on their head until
``python -m service folders backfill`` indexes them; until then their listings read the subtree, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from service import resources
from service.aws import items
from service.aws.errors import error_code, unavailable_on_transient
from service.aws.identity import membership_from_item, membership_key
from service.aws.items import BATCH_GET_MAX, GPK, GSK, PK, SK, Item
from service.aws.usage import charge_action, read_usage
from service.core.models import (
    BlobRecord,
    Charge,
    FileVersion,
    History,
    HistoryChunk,
    HistoryRead,
    JournalEntry,
    Membership,
    PackRecord,
    StoreConflict,
    Usage,
)
from service.fanout import bounded
from service.paths import folders_above

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SEQ_DIGITS = 12
_s, _n = items.s, items.n


#: Attributes of a version written only when set (text, and numbers).
_OPTIONAL = ("commit_key", "moved_from", "moved_to", "body_version", "body_etag", "body_pack")
_OPTIONAL_NUMBERS = ("body_offset",)


def _key(ns: str, sk: str) -> Item:
    return items.key(f"NS#{ns}", sk)


def file_sk(path_key: str) -> str:
    return f"F#{path_key}"


def folder_sk(folder_key: str) -> str:
    return f"D#{folder_key}"


def journal_sk(seq: int) -> str:
    return f"J#{seq:0{SEQ_DIGITS}d}"


def history_sk(key: str, chunk: int) -> str:
    return f"H#{key}#{chunk:0{SEQ_DIGITS}d}"


def trash_partition(ns: str) -> str:
    """The trash index's partition of one namespace."""
    return f"TRASH#{ns}"


def trash_sort_key(deleted_at: float, path_key: str) -> str:
    """A tombstone's place in the trash index: by the time of its deletion (milliseconds), then its path."""
    return f"T#{int(deleted_at * 1000):015d}#{path_key}"


def children_partition(ns: str, folder_key: str) -> str:
    """The children index's partition of one folder ("" for the root)."""
    return f"DIR#{ns}#{folder_key}"


def version_to_dict(v: FileVersion) -> dict[str, Any]:
    """A version as plain data (the journal's change records and the API's file info)."""
    out: dict[str, Any] = {
        "path": v.path,
        "file_id": v.file_id,
        "rev": v.rev,
        "content_hash": v.content_hash,
        "size": v.size,
        "mtime": v.mtime,
        "deleted": v.deleted,
        "by": v.committed_by,
        "at": v.committed_at,
        "seq": v.seq,
        "prev_seq": v.prev_seq,
        "block_size": v.block_size,
    }
    for name in (*_OPTIONAL, *_OPTIONAL_NUMBERS):
        if getattr(v, name) is not None:
            out[name] = getattr(v, name)
    return out


def version_from_dict(d: dict[str, Any]) -> FileVersion:
    return FileVersion(
        path=d["path"],
        file_id=d["file_id"],
        rev=int(d["rev"]),
        content_hash=d["content_hash"],
        size=int(d["size"]),
        mtime=float(d["mtime"]),
        deleted=bool(d["deleted"]),
        committed_by=d["by"],
        committed_at=float(d["at"]),
        seq=int(d["seq"]),
        prev_seq=None if d.get("prev_seq") is None else int(d["prev_seq"]),
        block_size=int(d["block_size"]),
        commit_key=d.get("commit_key"),
        moved_from=d.get("moved_from"),
        moved_to=d.get("moved_to"),
        body_version=d.get("body_version"),
        body_etag=d.get("body_etag"),
        body_pack=d.get("body_pack"),
        body_offset=None if d.get("body_offset") is None else int(d["body_offset"]),
    )


def file_item(ns: str, path_key: str, v: FileVersion) -> Item:
    item: Item = {
        **_key(ns, file_sk(path_key)),
        "path": _s(v.path),
        "file_id": _s(v.file_id),
        "rev": _n(v.rev),
        "content_hash": _s(v.content_hash),
        "size": _n(v.size),
        "mtime": _n(v.mtime),
        "deleted": {"BOOL": v.deleted},
        "by": _s(v.committed_by),
        "at": _n(v.committed_at),
        "seq": _n(v.seq),
        "block_size": _n(v.block_size),
    }
    if v.prev_seq is not None:
        item["prev_seq"] = _n(v.prev_seq)
    for name in _OPTIONAL:
        value = getattr(v, name)
        if value is not None:
            item[name] = _s(value)
    for name in _OPTIONAL_NUMBERS:
        value = getattr(v, name)
        if value is not None:
            item[name] = _n(value)
    if not v.deleted:
        item[GPK] = _s(children_partition(ns, path_key.rpartition("/")[0]))
        item[GSK] = _s(file_sk(path_key))
    elif v.moved_to is None:  # a deletion, not a move's source: in the trash
        item[GPK] = _s(trash_partition(ns))
        item[GSK] = _s(trash_sort_key(v.committed_at, path_key))
    if v.history is not None:
        h = v.history
        item["hist_base"] = _n(h.base)
        if h.key != v.file_id:
            item["hist_key"] = _s(h.key)
        if h.sealed is not None:
            item["hist_sealed"] = _n(h.sealed)
        if h.recent:
            item["hist_recent"] = {"B": orjson.dumps(h.recent)}
    return item


def _history(item: Item) -> History | None:
    if "hist_base" not in item:
        return None
    recent = orjson.loads(item["hist_recent"]["B"]) if "hist_recent" in item else []
    return History(
        base=int(item["hist_base"]["N"]),
        key=item["hist_key"]["S"] if "hist_key" in item else item["file_id"]["S"],
        sealed=int(item["hist_sealed"]["N"]) if "hist_sealed" in item else None,
        recent=tuple((int(rev), int(seq)) for rev, seq in recent),
    )


def _file(item: Item) -> FileVersion:
    return FileVersion(
        path=item["path"]["S"],
        file_id=item["file_id"]["S"],
        rev=int(item["rev"]["N"]),
        content_hash=item["content_hash"]["S"],
        size=int(item["size"]["N"]),
        mtime=float(item["mtime"]["N"]),
        deleted=item["deleted"]["BOOL"],
        committed_by=item["by"]["S"],
        committed_at=float(item["at"]["N"]),
        seq=int(item["seq"]["N"]),
        prev_seq=int(item["prev_seq"]["N"]) if "prev_seq" in item else None,
        block_size=int(item["block_size"]["N"]),
        commit_key=item.get("commit_key", {}).get("S"),
        moved_from=item.get("moved_from", {}).get("S"),
        moved_to=item.get("moved_to", {}).get("S"),
        body_version=item.get("body_version", {}).get("S"),
        body_etag=item.get("body_etag", {}).get("S"),
        body_pack=item.get("body_pack", {}).get("S"),
        body_offset=int(item["body_offset"]["N"]) if "body_offset" in item else None,
        history=_history(item),
    )


def _blob(item: Item) -> BlobRecord:
    return BlobRecord(
        content_hash=item[SK]["S"].removeprefix("BLOB#"),
        size=int(item["size"]["N"]),
        block_size=int(item["block_size"]["N"]),
        body_version=item.get("body_version", {}).get("S"),
        body_etag=item.get("body_etag", {}).get("S"),
        body_pack=item.get("body_pack", {}).get("S"),
        body_offset=int(item["body_offset"]["N"]) if "body_offset" in item else None,
    )


def _blob_item(ns: str, blob: BlobRecord) -> Item:
    item: Item = {
        **_key(ns, f"BLOB#{blob.content_hash}"),
        "size": _n(blob.size),
        "block_size": _n(blob.block_size),
    }
    for name in ("body_version", "body_etag", "body_pack"):
        if (value := getattr(blob, name)) is not None:
            item[name] = _s(value)
    if blob.body_offset is not None:
        item["body_offset"] = _n(blob.body_offset)
    return item


def pack_sk(pack_id: str) -> str:
    return f"PACK#{pack_id}"


def _pack_item(ns: str, pack: PackRecord) -> Item:
    item: Item = {
        **_key(ns, pack_sk(pack.pack_id)),
        "size": _n(pack.size),
        "entries": _n(pack.entries),
        "at": _n(pack.created_at),
    }
    if pack.body.version_id is not None:
        item["body_version"] = _s(pack.body.version_id)
    if pack.body.etag is not None:
        item["body_etag"] = _s(pack.body.etag)
    return item


def _journal(item: Item, files: Collection[str] | None = None) -> JournalEntry:
    """A journal entry; with ``files``, only the changes of those file ids (the others are never built)."""
    changes = orjson.loads(item["changes"]["B"])
    return JournalEntry(
        seq=int(item["seq"]["N"]),
        committed_at=float(item["at"]["N"]),
        committed_by=item["by"]["S"],
        changes=tuple(version_from_dict(c) for c in changes if files is None or c["file_id"] in files),
    )


def _chunk_item(ns: str, key: str, chunk: HistoryChunk) -> Item:
    item: Item = {
        **_key(ns, history_sk(key, chunk.number)),
        "versions": {"B": orjson.dumps([version_to_dict(v) for v in chunk.versions])},
    }
    if chunk.previous is not None:
        item["prev"] = _n(chunk.previous)
    return item


def _chunk(item: Item) -> HistoryChunk:
    return HistoryChunk(
        number=int(item[SK]["S"].rsplit("#", 1)[1]),
        versions=tuple(version_from_dict(v) for v in orjson.loads(item["versions"]["B"])),
        previous=int(item["prev"]["N"]) if "prev" in item else None,
    )


class DynamoFileStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, read_concurrency: int = 8) -> None:
        self._db = dynamodb
        self._table = table
        self._reads = asyncio.Semaphore(read_concurrency)

    async def read(
        self, ns: str, path_keys: Sequence[str], blob_hashes: Sequence[str]
    ) -> tuple[dict[str, FileVersion], dict[str, BlobRecord]]:
        """Current items for ``path_keys`` and the records of those of ``blob_hashes`` that are verified."""
        files, _, blobs = await self.read_state(ns, path_keys, (), blob_hashes)
        return files, blobs

    async def read_state(
        self, ns: str, path_keys: Sequence[str], folder_keys: Sequence[str], blob_hashes: Sequence[str]
    ) -> tuple[dict[str, FileVersion], set[str], dict[str, BlobRecord]]:
        """Current items for ``path_keys``, which of ``folder_keys`` have a folder marker, and the records
        of those of ``blob_hashes`` that are verified: BatchGetItem of 100 keys, fanned out with a bound,
        unprocessed keys retried."""
        keys = [_key(ns, file_sk(k)) for k in dict.fromkeys(path_keys)]
        keys += [_key(ns, folder_sk(k)) for k in dict.fromkeys(folder_keys)]
        keys += [_key(ns, f"BLOB#{h}") for h in dict.fromkeys(blob_hashes)]
        batches = [keys[i : i + BATCH_GET_MAX] for i in range(0, len(keys), BATCH_GET_MAX)]
        pages = await asyncio.gather(*(self._batch_get(batch) for batch in batches))
        files: dict[str, FileVersion] = {}
        folders: set[str] = set()
        blobs: dict[str, BlobRecord] = {}
        for page in pages:
            for item in page:
                sk = item[SK]["S"]
                if sk.startswith("F#"):
                    files[sk[2:]] = _file(item)
                elif sk.startswith("D#"):
                    folders.add(sk[2:])
                else:
                    blob = _blob(item)
                    blobs[blob.content_hash] = blob
        return files, folders, blobs

    async def live_child(self, ns: str, folder_key: str, ignore: frozenset[str]) -> FileVersion | None:
        """A live file under ``folder_key`` whose key is not in ``ignore``, or None: a strongly consistent
        Query of the folder's keys for items not deleted, page after page until one is found."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "FilterExpression": "#deleted = :false",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK, "#deleted": "deleted"},
            "ExpressionAttributeValues": {
                ":pk": _s(f"NS#{ns}"),
                ":prefix": _s(file_sk(folder_key + "/")),
                ":false": {"BOOL": False},
            },
            "ConsistentRead": True,
        }
        async with self._reads:
            while True:
                with unavailable_on_transient("DynamoDB"):
                    page = await self._db.query(**request)
                for item in page.get("Items", []):
                    if item[SK]["S"][2:] not in ignore:
                        return _file(item)
                if "LastEvaluatedKey" not in page:
                    return None
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def backfill_folders(self, ns: str) -> tuple[int, int]:
        """Write the folder markers of every live file of ``ns`` (for files committed before markers
        existed): a paged Query of its file items, each page's markers put with BatchWriteItem (a marker
        that exists is put again, harmlessly). Returns the live files seen and the markers put."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :file)",
            "FilterExpression": "#deleted = :false",
            "ProjectionExpression": "#sk",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK, "#deleted": "deleted"},
            "ExpressionAttributeValues": {":pk": _s(f"NS#{ns}"), ":file": _s("F#"), ":false": {"BOOL": False}},
            "ConsistentRead": True,
        }
        files = markers = 0
        while True:
            with unavailable_on_transient("DynamoDB"):
                page = await self._db.query(**request)
            found = page.get("Items", [])
            folders = sorted({folder for item in found for folder in folders_above(item[SK]["S"][2:])})
            await items.batch_put(self._db, self._table, [_key(ns, folder_sk(f)) for f in folders])
            files, markers = files + len(found), markers + len(folders)
            if "LastEvaluatedKey" not in page:
                return files, markers
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def put_folders(self, ns: str, folder_keys: Sequence[str]) -> None:
        """Folder markers written ahead of a commit (a path too deep for its markers to fit in the
        commit's transaction): BatchWriteItem of 25, unprocessed items retried."""
        await items.batch_put(self._db, self._table, [_key(ns, folder_sk(k)) for k in folder_keys])

    async def _batch_get(self, keys: list[Item]) -> list[Item]:
        found: list[Item] = []
        request: Any = {self._table: {"Keys": keys, "ConsistentRead": True}}
        async with self._reads:
            for attempt in range(10):
                with unavailable_on_transient("DynamoDB"):
                    page = await self._db.batch_get_item(RequestItems=request)
                found.extend(page.get("Responses", {}).get(self._table, []))
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    return found
                await items.BATCH_RETRY.sleep(attempt)
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "unprocessed keys"}},
            "BatchGetItem",
        )

    async def head_seq(self, ns: str) -> int:
        with unavailable_on_transient("DynamoDB"):
            response = await self._db.get_item(TableName=self._table, Key=_key(ns, "HEAD"), ConsistentRead=True)
        item = response.get("Item")
        return int(item["seq"]["N"]) if item else 0

    async def write(
        self,
        ns: str,
        expected_seq: int,
        changes: Sequence[tuple[str, FileVersion | None, FileVersion]],
        new_blobs: Sequence[BlobRecord],
        journal: JournalEntry,
        folders: Sequence[str] = (),
        chunks: Sequence[tuple[str, HistoryChunk]] = (),
        packs: Sequence[PackRecord] = (),
        charge: Charge | None = None,
    ) -> None:
        """One transaction: head ``expected_seq`` -> ``journal.seq``, each ``(path key, observed, new)``
        written on condition the item is still ``observed``, blob records, folder markers, pack records,
        the journal entry, the history chunks sealed (``(history key, chunk)``), and the bytes it adds to its
        payer's usage (``charge``, on its conditions). A namespace's first commit marks its head as fully in
        the children index (it has no older files)."""
        head: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(ns, "HEAD"),
            "UpdateExpression": "SET seq = :next",
            "ConditionExpression": "seq = :seq",
            "ExpressionAttributeValues": {":next": _n(journal.seq), ":seq": _n(expected_seq)},
        }
        if expected_seq == 0:
            head["UpdateExpression"] = "SET seq = :next, children_index = :indexed"
            head["ConditionExpression"] = "attribute_not_exists(seq) OR seq = :seq"
            head["ExpressionAttributeValues"][":indexed"] = {"BOOL": True}
        actions: list[Any] = [
            {"Update": head},
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **_key(ns, journal_sk(journal.seq)),
                        "seq": _n(journal.seq),
                        "at": _n(journal.committed_at),
                        "by": _s(journal.committed_by),
                        "changes": {"B": orjson.dumps([version_to_dict(c) for c in journal.changes])},
                    },
                    "ConditionExpression": f"attribute_not_exists({PK})",
                }
            },
        ]
        for path_key, observed, new in changes:
            put: dict[str, Any] = {"TableName": self._table, "Item": file_item(ns, path_key, new)}
            if observed is None:
                put["ConditionExpression"] = f"attribute_not_exists({PK})"
            else:
                put["ConditionExpression"] = "rev = :rev AND seq = :seq"
                put["ExpressionAttributeValues"] = {":rev": _n(observed.rev), ":seq": _n(observed.seq)}
            actions.append({"Put": put})
        for blob in new_blobs:
            actions.append({"Put": {"TableName": self._table, "Item": _blob_item(ns, blob)}})
        actions += [{"Put": {"TableName": self._table, "Item": _key(ns, folder_sk(k))}} for k in folders]
        actions += [{"Put": {"TableName": self._table, "Item": _chunk_item(ns, key, c)}} for key, c in chunks]
        actions += [{"Put": {"TableName": self._table, "Item": _pack_item(ns, pack)}} for pack in packs]
        if charge is not None:
            actions.append(charge_action(self._table, charge))
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons: list[Any] = exc.response.get("CancellationReasons", [])
            failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            if not failed and any(r.get("Code") in ("TransactionConflict", "ThrottlingError") for r in reasons):
                raise StoreConflict(head_moved=True) from None
            if not failed:
                raise
            keys = tuple(changes[i - 2][0] for i in failed if 2 <= i < 2 + len(changes))
            usage = charge is not None and len(actions) - 1 in failed
            raise StoreConflict(keys=keys, head_moved=0 in failed or 1 in failed, usage=usage) from None

    async def usage(self, username: str) -> Usage:
        """An account's usage and its own quota, read consistently."""
        return await read_usage(self._db, self._table, username)

    async def forget_blob(self, ns: str, blob: BlobRecord) -> None:
        """Remove a blob record, if it still names the same object (a repair may have replaced it)."""
        condition = "attribute_exists(#pk)"
        values: dict[str, Any] = {}
        named = (("body_version", blob.body_version), ("body_etag", blob.body_etag), ("body_pack", blob.body_pack))
        for name, value in named:
            if value is None:
                condition += f" AND attribute_not_exists({name})"
            else:
                condition += f" AND {name} = :{name}"
                values[f":{name}"] = _s(value)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(ns, f"BLOB#{blob.content_hash}"),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#pk": PK},
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.delete_item(**kwargs)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    async def put_blob(self, ns: str, blob: BlobRecord) -> None:
        """Record (or re-record) verified content and the object it was verified in."""
        with unavailable_on_transient("DynamoDB"):
            await self._db.put_item(TableName=self._table, Item=_blob_item(ns, blob))

    async def read_history(
        self,
        ns: str,
        key: str,
        seqs: Sequence[int],
        chunks: Sequence[int],
        member: str | None = None,
        files: Collection[str] | None = None,
    ) -> HistoryRead:
        """The journal entries ``seqs`` (holding only the changes of the file ids ``files``), the history
        chunks ``chunks`` of ``key`` (those that exist) and, if ``member`` is given, that user's membership
        of ``ns``: one BatchGetItem (strongly consistent) of up to 100 keys, more in parallel, unprocessed
        keys retried."""
        keys = [_key(ns, journal_sk(seq)) for seq in dict.fromkeys(seqs)]
        keys += [_key(ns, history_sk(key, c)) for c in dict.fromkeys(chunks)]
        if member is not None:
            keys.append(membership_key(ns, member))
        batches = [keys[i : i + BATCH_GET_MAX] for i in range(0, len(keys), BATCH_GET_MAX)]
        pages = await asyncio.gather(*(self._batch_get(batch) for batch in batches))
        entries: dict[int, JournalEntry] = {}
        found: dict[int, HistoryChunk] = {}
        membership: Membership | None = None
        for page in pages:
            for item in page:
                sk = item[SK]["S"]
                if sk.startswith("J#"):
                    entry = _journal(item, files)
                    entries[entry.seq] = entry
                elif sk.startswith("H#"):
                    chunk = _chunk(item)
                    found[chunk.number] = chunk
                else:
                    membership = membership_from_item(item)
        return HistoryRead(entries, found, membership)

    async def journal_entry(self, ns: str, seq: int) -> JournalEntry | None:
        with unavailable_on_transient("DynamoDB"):
            response = await self._db.get_item(TableName=self._table, Key=_key(ns, journal_sk(seq)))
        item = response.get("Item")
        return _journal(item) if item else None

    async def list_files(
        self, ns: str, prefix_key: str, start_after: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        """Up to ``limit`` current items whose path key starts with ``prefix_key``, in key order."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
            "ExpressionAttributeValues": {":pk": _s(f"NS#{ns}"), ":prefix": _s(file_sk(prefix_key))},
            "Limit": limit,
        }
        if start_after is not None:
            kwargs["ExclusiveStartKey"] = _key(ns, file_sk(start_after))
        with unavailable_on_transient("DynamoDB"):
            page = await self._db.query(**kwargs)
        files = [_file(item) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return files, (last[SK]["S"][2:] if last else None)

    def _file_items(
        self, ns: str, filter_expression: str, projection: str, names: dict[str, str], values: dict[str, Any]
    ) -> dict[str, Any]:
        """A consistent Query of ``ns``'s file items that ``filter_expression`` keeps."""
        return {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :file)",
            "FilterExpression": filter_expression,
            "ProjectionExpression": projection,
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK, **names},
            "ExpressionAttributeValues": {":pk": _s(f"NS#{ns}"), ":file": _s("F#"), **values},
            "ConsistentRead": True,
        }

    async def _pages(self, request: dict[str, Any]) -> AsyncIterator[list[Item]]:
        """Each page of a Query's items, to its end."""
        while True:
            with unavailable_on_transient("DynamoDB"):
                page = await self._db.query(**request)
            yield page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    async def _put_in_index(
        self, ns: str, path_key: str, entry: tuple[str, str], condition: tuple[str, dict[str, Any]]
    ) -> int:
        """Give a file item its gsi1 entry, on ``condition`` (with its values): 1 if written, 0 if the item
        changed meanwhile."""
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=_key(ns, file_sk(path_key)),
                    UpdateExpression="SET #gpk = :gpk, #gsk = :gsk",
                    ConditionExpression=condition[0],
                    ExpressionAttributeNames={"#gpk": GPK, "#gsk": GSK, "#deleted": "deleted"},
                    ExpressionAttributeValues={":gpk": _s(entry[0]), ":gsk": _s(entry[1]), **condition[1]},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return 0
        return 1

    async def children_indexed(self, ns: str) -> bool:
        """Whether every live file of ``ns`` is in the children index (an eventually consistent read of its
        head: the flag, once set, stays)."""
        with unavailable_on_transient("DynamoDB"):
            response = await self._db.get_item(
                TableName=self._table, Key=_key(ns, "HEAD"), ProjectionExpression="children_index"
            )
        return bool(response.get("Item", {}).get("children_index", {}).get("BOOL", False))

    async def list_children(
        self, ns: str, folder_key: str, start_after: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        """Up to ``limit`` live files directly in ``folder_key`` ("" for the root), in key order, from the
        children index (eventually consistent)."""
        start = None if start_after is None else (start_after, file_sk(start_after))
        return await self._index_page(ns, children_partition(ns, folder_key), start, limit, forward=True)

    async def list_trash(self, ns: str, start_after: str | None, limit: int) -> tuple[list[FileVersion], str | None]:
        """Up to ``limit`` deleted files of ``ns`` (their tombstones), the latest deletion first, from the
        trash index (eventually consistent); ``start_after`` and the cursor returned are trash sort keys
        without their ``T#``."""
        start = None if start_after is None else (start_after.partition("#")[2], f"T#{start_after}")
        return await self._index_page(ns, trash_partition(ns), start, limit, forward=False)

    async def _index_page(
        self, ns: str, partition: str, start: tuple[str, str] | None, limit: int, *, forward: bool
    ) -> tuple[list[FileVersion], str | None]:
        """One page of a gsi1 partition of file items, after ``start`` (its path key and sort key); the
        cursor is the last sort key without its two-character prefix."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": resources.GSI1_NAME,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": GPK},
            "ExpressionAttributeValues": {":pk": _s(partition)},
            "ScanIndexForward": forward,
            "Limit": limit,
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = {**_key(ns, file_sk(start[0])), GPK: _s(partition), GSK: _s(start[1])}
        with unavailable_on_transient("DynamoDB"):
            page = await self._db.query(**kwargs)
        files = [_file(item) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return files, (last[GSK]["S"][2:] if last else None)

    async def backfill_trash(self, ns: str, concurrency: int = 8) -> int:
        """Put the deletions of ``ns`` written before the trash index into it: a paged Query of the file
        items (tombstones that are no move's source and carry no index entry), one UpdateItem each on
        condition it is still that tombstone. Returns the deleted files indexed."""
        request = self._file_items(
            ns,
            "#deleted = :true AND attribute_not_exists(moved_to) AND attribute_not_exists(#gpk)",
            "#sk, rev, #at",
            {"#deleted": "deleted", "#gpk": GPK, "#at": "at"},
            {":true": {"BOOL": True}},
        )

        async def index(item: Item) -> int:
            path_key = item[SK]["S"][2:]
            entry = (trash_partition(ns), trash_sort_key(float(item["at"]["N"]), path_key))
            condition = ("#deleted = :true AND rev = :rev", {":true": {"BOOL": True}, ":rev": item["rev"]})
            return await self._put_in_index(ns, path_key, entry, condition)

        return sum([sum(await bounded(page, index, concurrency)) async for page in self._pages(request)])

    async def backfill_children(self, ns: str, concurrency: int = 8) -> int:
        """Put every live file of ``ns`` written before the children index into it, then mark the head so
        listings use the index: a paged Query of the file items, one conditional UpdateItem per live file
        (on condition it is still live: a file deleted meanwhile stays out). Returns the files indexed.
        Run it once every worker writes the index (an older worker's commit would leave its file out)."""
        request = self._file_items(ns, "#deleted = :false", "#sk", {"#deleted": "deleted"}, {":false": {"BOOL": False}})

        async def index(item: Item) -> int:
            path_key = item[SK]["S"][2:]
            entry = (children_partition(ns, path_key.rpartition("/")[0]), file_sk(path_key))
            return await self._put_in_index(ns, path_key, entry, ("#deleted = :false", {":false": {"BOOL": False}}))

        indexed = sum([sum(await bounded(page, index, concurrency)) async for page in self._pages(request)])
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=_key(ns, "HEAD"),
                    UpdateExpression="SET children_index = :indexed",
                    ConditionExpression="attribute_exists(seq)",
                    ExpressionAttributeValues={":indexed": {"BOOL": True}},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise  # no head: nothing was ever committed, and the first commit marks it
        return indexed


class DynamoJournal:
    """Reads of the namespace journal and heads, for the change feed and its long-poll."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def since(self, ns: str, after_seq: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` journal entries after ``after_seq``, in order (strongly consistent). Follows
        DynamoDB's pages (each at most 1 MB, about 30 large entries) until it has ``limit`` or the end."""
        found: list[JournalEntry] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
            "ExpressionAttributeValues": {
                ":pk": _s(f"NS#{ns}"),
                ":lo": _s(journal_sk(after_seq + 1)),
                ":hi": _s(journal_sk(10**SEQ_DIGITS - 1)),
            },
            "ConsistentRead": True,
        }
        while len(found) < limit:
            request["Limit"] = limit - len(found)
            with unavailable_on_transient("DynamoDB"):
                page = await self._db.query(**request)
            found.extend(_journal(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found

    async def heads(self, namespaces: Sequence[str]) -> dict[str, int]:
        """The head sequence number of each namespace (0 if it has none), BatchGetItem of 100."""
        heads: dict[str, int] = dict.fromkeys(namespaces, 0)
        unique = list(heads)
        for start in range(0, len(unique), BATCH_GET_MAX):
            request: Any = {self._table: {"Keys": [_key(ns, "HEAD") for ns in unique[start : start + BATCH_GET_MAX]]}}
            for attempt in range(10):
                with unavailable_on_transient("DynamoDB"):
                    page = await self._db.batch_get_item(RequestItems=request)
                for item in page.get("Responses", {}).get(self._table, []):
                    heads[item[PK]["S"].removeprefix("NS#")] = int(item["seq"]["N"])
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
                await items.BATCH_RETRY.sleep(attempt)
        return heads

    async def files_in_range(
        self, ns: str, after_key: str | None, through_key: str | None, page_size: int | None = None
    ) -> AsyncIterator[FileVersion]:
        """Current items with ``after_key < key <= through_key`` in key order, in pages of ``page_size``
        (default: as many as DynamoDB returns, up to 1 MB, a few thousand items)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
            "ExpressionAttributeValues": {":pk": _s(f"NS#{ns}"), ":prefix": _s("F#")},
            "ConsistentRead": True,
        }
        if through_key is not None:
            # Bounded on both sides, DynamoDB reads exactly the range: no page past its end.
            kwargs["KeyConditionExpression"] = "#pk = :pk AND #sk BETWEEN :lo AND :hi"
            kwargs["ExpressionAttributeValues"] = {
                ":pk": _s(f"NS#{ns}"),
                ":lo": _s("F#"),
                ":hi": _s(file_sk(through_key)),
            }
        if page_size is not None:
            kwargs["Limit"] = page_size
        if after_key is not None:
            kwargs["ExclusiveStartKey"] = _key(ns, file_sk(after_key))
        while True:
            with unavailable_on_transient("DynamoDB"):
                page = await self._db.query(**kwargs)
            for item in page.get("Items", []):
                if through_key is not None and item[SK]["S"][2:] > through_key:
                    return
                yield _file(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last
