"""DynamoDB and SES adapters for follows and the notifier.

Layer: aws. Imports only the leaf domain modules (``core.models``, ``core.digests``). Item layout in the one table::

    NS#<id>              FOLLOW#<user>#<path key>   path, created_at     gsi1: USER#<user> / FOLLOW#<id>#<path key>
    NOTIFY#<shard>       NS#<id>                    cursor: last journal seq fanned out
    NOTIFY#<shard>       HINTS                      watches: moves when a follow names a namespace of the shard;
                                                    due: the whole seconds at which digests of the shard fall due
    DIGEST#<shard>       USER#<user>                the follower's pending digest (version-guarded)
                                                    gsi1 while pending: DUE#<shard> / due time (sparse index)
    LEASE                SHARD#<shard>              owner, expires_at
    LEASE                NOTIFIER#<owner>           expires_at (heartbeat; TTL removes the dead)

Leases and heartbeats share a partition so that one Query reads both; the hints of every shard a notifier
holds come back in one BatchGetItem. Hints are written after what they tell of (the follow, the digest), so
a reader that sees one finds its data; one lost to a crash in between is made up by the notifier's sweep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from service import resources
from service.aws import items
from service.aws.errors import THROTTLING_CODES, error_code, unavailable_on_transient
from service.aws.items import GPK, GSK, PK, SK, TTL, Item
from service.core.digests import Change, Digest, Lease, MailRejected, MailThrottled, ShardHints
from service.core.models import Follow

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_ses import SESClient

_s, _n, _key = items.s, items.n, items.key

#: DynamoDB's most writes in one transaction.
_TRANSACTION_MAX = 100

#: SES error codes that mean "this message will not be accepted as it is".
_REJECTED = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "InvalidParameterValue",
        # The configuration set named by FILESYNC_SES_CONFIGURATION_SET is missing, or its sending paused.
        "ConfigurationSetDoesNotExist",
        "ConfigurationSetSendingPausedException",
    }
)


def _follow_item(f: Follow) -> Item:
    return {
        **_key(f"NS#{f.namespace_id}", f"FOLLOW#{f.username}#{f.path_key}"),
        GPK: _s(f"USER#{f.username}"),
        GSK: _s(f"FOLLOW#{f.namespace_id}#{f.path_key}"),
        "namespace_id": _s(f.namespace_id),
        "username": _s(f.username),
        "path": _s(f.path),
        "path_key": _s(f.path_key),
        "created_at": _n(f.created_at),
    }


def _follow(item: Item) -> Follow:
    return Follow(
        namespace_id=item["namespace_id"]["S"],
        username=item["username"]["S"],
        path=item["path"]["S"],
        path_key=item["path_key"]["S"],
        created_at=float(item["created_at"]["N"]),
    )


def _first_condition_failed(exc: ClientError) -> bool:
    """Whether a cancelled transaction failed on its first item's condition."""
    reasons = exc.response.get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


def _due_key(due_at: float) -> str:
    return f"{due_at:017.3f}"


def _hints_key(shard: int) -> Item:
    return _key(f"NOTIFY#{shard}", "HINTS")


def _lease_item(shard: int, owner: str, expires_at: float) -> Item:
    return {**_key("LEASE", f"SHARD#{shard}"), "owner": _s(owner), "expires_at_s": _n(expires_at)}


def _heartbeat_item(owner: str, expires_at: float) -> Item:
    return {**_key("LEASE", f"NOTIFIER#{owner}"), "expires_at_s": _n(expires_at), TTL: _n(int(expires_at) + 3600)}


#: A lease may be taken when it is free, expired, or already ours.
_TAKE_CONDITION = {
    "ConditionExpression": "attribute_not_exists(pk) OR expires_at_s < :now OR #o = :me",
    "ExpressionAttributeNames": {"#o": "owner"},
}


class DynamoFollowStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def put_follow(self, follow: Follow, shard: int, head_seq: int) -> Follow:
        """The follow, and its namespace registered with the notifier (from ``head_seq`` if it is new). A
        follow that exists is kept as it is (its creation time binds unsubscribe links); it is returned."""
        key = _key(f"NS#{follow.namespace_id}", f"FOLLOW#{follow.username}#{follow.path_key}")
        put = {
            "TableName": self._table,
            "Item": _follow_item(follow),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._put_follow(put, follow.namespace_id, shard, head_seq)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException" or not _first_condition_failed(exc):
                raise
            with unavailable_on_transient("DynamoDB"):
                found = await self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True)
            if "Item" not in found:  # removed again meanwhile: store it after all
                put.pop("ConditionExpression")
                with unavailable_on_transient("DynamoDB"):
                    await self._put_follow(put, follow.namespace_id, shard, head_seq)
                await self._watches_moved(shard)
                return follow
            return _follow(found["Item"])
        await self._watches_moved(shard)
        return follow

    async def _watches_moved(self, shard: int) -> None:
        """Tell the shard's notifier to read its watched namespaces again (after the follow is stored)."""
        with unavailable_on_transient("DynamoDB"):
            await self._db.update_item(
                TableName=self._table,
                Key=_hints_key(shard),
                UpdateExpression="ADD #w :one",
                ExpressionAttributeNames={"#w": "watches"},
                ExpressionAttributeValues={":one": _n(1)},
            )

    async def _put_follow(self, put: Any, namespace_id: str, shard: int, head_seq: int) -> None:
        await self._db.transact_write_items(
            TransactItems=[
                {"Put": put},
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _key(f"NOTIFY#{shard}", f"NS#{namespace_id}"),
                        "UpdateExpression": "SET #c = if_not_exists(#c, :head)",
                        "ExpressionAttributeNames": {"#c": "cursor"},
                        "ExpressionAttributeValues": {":head": _n(head_seq)},
                    }
                },
            ]
        )

    async def delete_follow(self, namespace_id: str, username: str, path_key: str) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.delete_item(
                TableName=self._table, Key=_key(f"NS#{namespace_id}", f"FOLLOW#{username}#{path_key}")
            )

    async def delete_follows(self, namespace_id: str, username: str) -> int:
        """End every follow ``username`` has in ``namespace_id``; how many there were."""
        found = await items.query_prefix(
            self._db, self._table, f"NS#{namespace_id}", f"FOLLOW#{username}#", consistent=True
        )
        for item in found:
            with unavailable_on_transient("DynamoDB"):
                await self._db.delete_item(TableName=self._table, Key={PK: item[PK], SK: item[SK]})
        return len(found)

    async def follows_of(self, username: str) -> list[Follow]:
        found = await items.query_prefix(self._db, self._table, f"USER#{username}", "FOLLOW#", index=True)
        return [_follow(item) for item in found]

    async def follows_in(self, namespace_id: str) -> list[Follow]:
        return [
            _follow(item) for item in await items.query_prefix(self._db, self._table, f"NS#{namespace_id}", "FOLLOW#")
        ]


def _digest_item(shard: int, d: Digest) -> Item:
    item: Item = {
        **_key(f"DIGEST#{shard}", f"USER#{d.username}"),
        "username": _s(d.username),
        "version": _n(d.version),
        "count": _n(d.count),
        "listed": _s(orjson.dumps([c.to_dict() for c in d.listed]).decode()),
        "taken": _s(orjson.dumps(d.taken).decode()),
        "day": _s(d.day),
        "sent_today": _n(d.sent_today),
    }
    if d.first_at is not None:
        item["first_at"] = _n(d.first_at)
    if d.due_at is not None:
        item["due_at"] = _n(d.due_at)
        item[GPK] = _s(f"DUE#{shard}")
        item[GSK] = _s(_due_key(d.due_at))
    return item


def _digest(item: Item) -> Digest:
    return Digest(
        username=item["username"]["S"],
        version=int(item["version"]["N"]),
        count=int(item["count"]["N"]),
        listed=[Change.from_dict(c) for c in orjson.loads(item["listed"]["S"])],
        first_at=float(item["first_at"]["N"]) if "first_at" in item else None,
        due_at=float(item["due_at"]["N"]) if "due_at" in item else None,
        taken={str(k): int(v) for k, v in orjson.loads(item["taken"]["S"]).items()},
        day=item["day"]["S"],
        sent_today=int(item["sent_today"]["N"]),
    )


class DynamoNotifyStore:
    """Leases, notify cursors and digests."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def heartbeat(self, owner: str, expires_at: float) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.put_item(TableName=self._table, Item=_heartbeat_item(owner, expires_at))

    async def leases(self, now: float) -> tuple[list[Lease], set[str]]:
        """Every shard's lease, and the notifiers alive at ``now`` (their heartbeats): one Query."""
        found: list[Lease] = []
        alive: set[str] = set()
        for item in await items.query_prefix(self._db, self._table, "LEASE", None):
            sk, expires_at = item[SK]["S"], float(item["expires_at_s"]["N"])
            if sk.startswith("SHARD#"):
                found.append(Lease(int(sk.removeprefix("SHARD#")), item["owner"]["S"], expires_at))
            elif sk.startswith("NOTIFIER#") and expires_at > now:
                alive.add(sk.removeprefix("NOTIFIER#"))
        return found, alive

    async def take_lease(self, shard: int, owner: str, now: float, expires_at: float) -> bool:
        return await self._conditional(
            self._db.put_item(
                TableName=self._table,
                Item=_lease_item(shard, owner, expires_at),
                **_TAKE_CONDITION,  # type: ignore[arg-type]
                ExpressionAttributeValues={":now": _n(now), ":me": _s(owner)},
            )
        )

    async def renew(self, owner: str, shards: Sequence[int], now: float, expires_at: float) -> bool:
        """The heartbeat and every lease of ``shards`` extended to ``expires_at`` in one transaction (of up
        to 100 writes); False if one of the leases was another notifier's (none of that transaction applies)."""
        actions: list[Any] = [{"Put": {"TableName": self._table, "Item": _heartbeat_item(owner, expires_at)}}]
        actions += [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _lease_item(shard, owner, expires_at),
                    **_TAKE_CONDITION,
                    "ExpressionAttributeValues": {":now": _n(now), ":me": _s(owner)},
                }
            }
            for shard in shards
        ]
        for start in range(0, len(actions), _TRANSACTION_MAX):
            try:
                with unavailable_on_transient("DynamoDB"):
                    await self._db.transact_write_items(TransactItems=actions[start : start + _TRANSACTION_MAX])
            except ClientError as exc:
                if error_code(exc) == "TransactionCanceledException":
                    return False
                raise
        return True

    async def hints(self, shards: Sequence[int]) -> dict[int, ShardHints]:
        """The hints of ``shards`` (those never written are absent): one BatchGetItem per 100 shards."""
        found = await items.batch_get(self._db, self._table, [_hints_key(s) for s in shards], consistent=True)
        return {
            int(item[PK]["S"].removeprefix("NOTIFY#")): ShardHints(
                watches=int(item.get("watches", {}).get("N", "0")),
                due=frozenset(int(b) for b in item.get("due", {}).get("NS", [])),
            )
            for item in found
        }

    async def note_due(self, shard: int, due_at: float) -> None:
        """Add ``due_at`` (rounded up to a whole second) to the shard's due times."""
        with unavailable_on_transient("DynamoDB"):
            await self._db.update_item(
                TableName=self._table,
                Key=_hints_key(shard),
                UpdateExpression="ADD #d :t",
                ExpressionAttributeNames={"#d": "due"},
                ExpressionAttributeValues={":t": {"NS": [str(math.ceil(due_at))]}},
            )

    async def clear_due(self, shard: int, due: Iterable[int]) -> None:
        """Take ``due`` out of the shard's due times (times added meanwhile stay)."""
        times = sorted(set(due))
        if not times:
            return
        with unavailable_on_transient("DynamoDB"):
            await self._db.update_item(
                TableName=self._table,
                Key=_hints_key(shard),
                UpdateExpression="DELETE #d :t",
                ExpressionAttributeNames={"#d": "due"},
                ExpressionAttributeValues={":t": {"NS": [str(t) for t in times]}},
            )

    async def release_lease(self, shard: int, owner: str) -> None:
        await self._conditional(
            self._db.delete_item(
                TableName=self._table,
                Key=_key("LEASE", f"SHARD#{shard}"),
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": _s(owner)},
            )
        )

    async def watched(self, shard: int) -> list[tuple[str, int]]:
        items_ = await items.query_prefix(self._db, self._table, f"NOTIFY#{shard}", "NS#")
        return [(item[SK]["S"].removeprefix("NS#"), int(item["cursor"]["N"])) for item in items_]

    async def advance(self, shard: int, namespace_id: str, old: int, new: int) -> bool:
        return await self._conditional(
            self._db.update_item(
                TableName=self._table,
                Key=_key(f"NOTIFY#{shard}", f"NS#{namespace_id}"),
                UpdateExpression="SET #c = :new",
                ConditionExpression="#c = :old",
                ExpressionAttributeNames={"#c": "cursor"},
                ExpressionAttributeValues={":new": _n(new), ":old": _n(old)},
            )
        )

    async def digest(self, shard: int, username: str) -> Digest | None:
        with unavailable_on_transient("DynamoDB"):
            response = await self._db.get_item(
                TableName=self._table, Key=_key(f"DIGEST#{shard}", f"USER#{username}"), ConsistentRead=True
            )
        item = response.get("Item")
        return _digest(item) if item else None

    async def save_digest(self, shard: int, digest: Digest, expected_version: int) -> bool:
        """Write ``digest`` as version ``expected_version + 1`` if nobody wrote it since we read it."""
        digest.version = expected_version + 1
        condition = "attribute_not_exists(pk)" if expected_version == 0 else "version = :v"
        values: dict[str, Any] = (
            {} if expected_version == 0 else {"ExpressionAttributeValues": {":v": _n(expected_version)}}
        )
        return await self._conditional(
            self._db.put_item(
                TableName=self._table, Item=_digest_item(shard, digest), ConditionExpression=condition, **values
            )
        )

    async def due(self, shard: int, now: float, limit: int) -> list[str]:
        with unavailable_on_transient("DynamoDB"):
            page = await self._db.query(
                TableName=self._table,
                IndexName=resources.GSI1_NAME,
                KeyConditionExpression="gsi1pk = :pk AND gsi1sk <= :now",
                ExpressionAttributeValues={":pk": _s(f"DUE#{shard}"), ":now": _s(_due_key(now))},
                Limit=limit,
            )
        return [item[SK]["S"].removeprefix("USER#") for item in page.get("Items", [])]

    @staticmethod
    async def _conditional(call: Any) -> bool:
        try:
            with unavailable_on_transient("DynamoDB"):
                await call
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


class SesMailer:
    """Sends raw MIME messages (so the unsubscribe headers go along) through SES ``SendRawEmail``, with the
    deployment's configuration set if it has one."""

    def __init__(self, ses: SESClient, sender: str, configuration_set: str | None = None) -> None:
        self._ses = ses
        self._sender = sender
        # Its reputation metrics, and its bounce and complaint events (the feedback queue).
        self._configuration_set = configuration_set

    async def send(self, recipient: str, raw_message: bytes) -> None:
        # SES unreachable or timing out: DependencyUnavailable (a 503 where a request waits for the mail).
        with unavailable_on_transient("SES"):
            try:
                if self._configuration_set is None:
                    await self._ses.send_raw_email(
                        Source=self._sender, Destinations=[recipient], RawMessage={"Data": raw_message}
                    )
                else:
                    await self._ses.send_raw_email(
                        Source=self._sender,
                        Destinations=[recipient],
                        RawMessage={"Data": raw_message},
                        ConfigurationSetName=self._configuration_set,
                    )
            except ClientError as exc:
                code = error_code(exc)
                if code in THROTTLING_CODES or "rate exceeded" in str(exc).lower():
                    raise MailThrottled(str(exc)) from exc
                if code in _REJECTED:
                    raise MailRejected(str(exc)) from exc
                raise
