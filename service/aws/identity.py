"""DynamoDB adapters for accounts, sessions, namespaces, memberships, login failures and revocations.

Layer: aws. Imports only the leaf domain modules (``core.models``, ``core.errors``).
Item layout in the one table (``pk`` / ``sk``; ``gsi1pk`` / ``gsi1sk`` for look-ups by user)::

    USER#<name>          PROFILE             password hash, created_at, home namespace, disabled,
                                             email, email_confirmed, email_nonce (pending confirmation),
                                             used, quota (storage: ``service.aws.usage``)
    NS#<id>              META                name, kind, created_by, created_at
    NS#<id>              MEMBER#<name>       role (+ namespace name/kind)   gsi1: USER#<name> / NS#<id>
    SESSION#<sid>        SESSION             user, hash of refresh secret, expires_at (TTL)
                                                                            gsi1: USER#<name> / SESSION#<sid>
    REVOCATIONS          <ms>#<sid>          revoked session, expires_at (TTL)
    THROTTLE#<key>       LOGIN               password failures, first_at, expires_at (TTL)
    THROTTLE#<key>       QUOTA               uses (confirmation mails), first_at, expires_at (TTL)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service.aws import items
from service.aws.errors import error_code, unavailable_on_transient
from service.aws.items import GPK, GSK, PK, SK, TTL, Item
from service.aws.usage import usage_from_item
from service.core.errors import Conflict, NotFound
from service.core.models import LoginFailures, Membership, Namespace, Revocation, Session, User, position_at

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_s, _n, _key = items.s, items.n, items.key


def _user_item(user: User) -> Item:
    return {
        **_key(f"USER#{user.username}", "PROFILE"),
        "username": _s(user.username),
        "password_hash": _s(user.password_hash),
        "created_at": _n(user.created_at),
        "home_namespace": _s(user.home_namespace),
        "disabled": {"BOOL": user.disabled},
        **({"email": _s(user.email), "email_confirmed": {"BOOL": user.email_confirmed}} if user.email else {}),
        **({"email_nonce": _s(user.email_nonce)} if user.email_nonce else {}),
    }


def _user(item: Item) -> User:
    return User(
        username=item["username"]["S"],
        password_hash=item["password_hash"]["S"],
        created_at=float(item["created_at"]["N"]),
        home_namespace=item["home_namespace"]["S"],
        disabled=item.get("disabled", {}).get("BOOL", False),
        email=item["email"]["S"] if "email" in item else None,
        # An address stored before double opt-in existed has no flag: unconfirmed, like any new one.
        email_confirmed=item.get("email_confirmed", {}).get("BOOL", False),
        email_nonce=item["email_nonce"]["S"] if "email_nonce" in item else None,
        usage=usage_from_item(item),
    )


def _namespace_item(ns: Namespace) -> Item:
    return {
        **_key(f"NS#{ns.id}", "META"),
        "name": _s(ns.name),
        "kind": _s(ns.kind),
        "created_by": _s(ns.created_by),
        "created_at": _n(ns.created_at),
    }


def _namespace(item: Item) -> Namespace:
    return Namespace(
        id=item[PK]["S"].removeprefix("NS#"),
        name=item["name"]["S"],
        kind=item["kind"]["S"],
        created_by=item["created_by"]["S"],
        created_at=float(item["created_at"]["N"]),
    )


def membership_key(namespace_id: str, username: str) -> Item:
    """The key of a membership's item (other adapters read it along with their own items)."""
    return _key(f"NS#{namespace_id}", f"MEMBER#{username}")


def _membership_item(m: Membership) -> Item:
    return {
        **membership_key(m.namespace_id, m.username),
        GPK: _s(f"USER#{m.username}"),
        GSK: _s(f"NS#{m.namespace_id}"),
        "role": _s(m.role),
        "namespace_name": _s(m.namespace_name),
        "namespace_kind": _s(m.namespace_kind),
    }


def membership_from_item(item: Item) -> Membership:
    return Membership(
        namespace_id=item[PK]["S"].removeprefix("NS#"),
        username=item[SK]["S"].removeprefix("MEMBER#"),
        role=item["role"]["S"],
        namespace_name=item["namespace_name"]["S"],
        namespace_kind=item["namespace_kind"]["S"],
    )


def _put_new(table: str, item: Item) -> Any:
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": f"attribute_not_exists({PK})"}}


class DynamoIdentityStore:
    """Accounts, sessions, namespaces and memberships in the service's table."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    # --- accounts ------------------------------------------------------------------------------------

    async def create_account(self, user: User, home: Namespace, owner: Membership) -> None:
        items = [_user_item(user), _namespace_item(home), _membership_item(owner)]
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.transact_write_items(TransactItems=[_put_new(self._table, i) for i in items])
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise Conflict(f"The username {user.username!r} is taken.") from None
            raise

    async def get_user(self, username: str) -> User | None:
        item = await self._get(f"USER#{username}", "PROFILE")
        return _user(item) if item else None

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        await self._update_user(username, "SET password_hash = :v", {":v": _s(password_hash)})

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._update_user(username, "SET disabled = :v", {":v": {"BOOL": disabled}})

    async def set_email(self, username: str, email: str | None, nonce: str | None) -> None:
        if email is None or nonce is None:
            await self._update_user(username, "REMOVE email, email_confirmed, email_nonce", {})
        else:
            await self._update_user(
                username,
                "SET email = :e, email_confirmed = :f, email_nonce = :n",
                {":e": _s(email), ":f": {"BOOL": False}, ":n": _s(nonce)},
            )

    async def confirm_email(self, username: str, email: str, nonce: str) -> bool:
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=_key(f"USER#{username}", "PROFILE"),
                    UpdateExpression="SET email_confirmed = :t REMOVE email_nonce",
                    ConditionExpression="email = :e AND email_nonce = :n",
                    ExpressionAttributeValues={":t": {"BOOL": True}, ":e": _s(email), ":n": _s(nonce)},
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def get_users(self, usernames: Iterable[str]) -> dict[str, User]:
        """Profiles by name (BatchGetItem of 100); names without an account are absent."""
        found: dict[str, User] = {}
        names = list(dict.fromkeys(usernames))
        for start in range(0, len(names), items.BATCH_GET_MAX):
            keys = [_key(f"USER#{name}", "PROFILE") for name in names[start : start + items.BATCH_GET_MAX]]
            request: Any = {self._table: {"Keys": keys}}
            for attempt in range(10):
                with unavailable_on_transient("DynamoDB"):
                    page = await self._db.batch_get_item(RequestItems=request)
                for item in page.get("Responses", {}).get(self._table, []):
                    user = _user(item)
                    found[user.username] = user
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
                await items.BATCH_RETRY.sleep(attempt)
        return found

    async def _update_user(self, username: str, expression: str, values: Item) -> None:
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=_key(f"USER#{username}", "PROFILE"),
                    UpdateExpression=expression,
                    ConditionExpression=f"attribute_exists({PK})",
                    **({"ExpressionAttributeValues": values} if values else {}),  # type: ignore[arg-type]
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFound(f"No user {username!r}.") from None
            raise

    # --- sessions ------------------------------------------------------------------------------------

    async def put_session(self, session: Session) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.put_item(TableName=self._table, Item=self._session_item(session))

    async def get_session(self, sid: str) -> Session | None:
        item = await self._get(f"SESSION#{sid}", "SESSION")
        if item is None:
            return None
        return Session(
            sid=sid,
            username=item["username"]["S"],
            secret_hash=item["secret_hash"]["S"],
            expires_at=int(item[TTL]["N"]),
        )

    async def rotate_session(self, session: Session, new_secret_hash: str, expires_at: int) -> bool:
        """Replace the refresh secret only if it is still the one presented (two refreshes race: one wins)."""
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=_key(f"SESSION#{session.sid}", "SESSION"),
                    UpdateExpression="SET secret_hash = :new, #ttl = :exp",
                    ConditionExpression="secret_hash = :old",
                    ExpressionAttributeNames={"#ttl": TTL},
                    ExpressionAttributeValues={
                        ":new": _s(new_secret_hash),
                        ":old": _s(session.secret_hash),
                        ":exp": _n(expires_at),
                    },
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def delete_session(self, sid: str) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.delete_item(TableName=self._table, Key=_key(f"SESSION#{sid}", "SESSION"))

    async def session_ids(self, username: str) -> list[str]:
        items = await self._query_gsi(f"USER#{username}", "SESSION#")
        return [item[GSK]["S"].removeprefix("SESSION#") for item in items]

    def _session_item(self, session: Session) -> Item:
        return {
            **_key(f"SESSION#{session.sid}", "SESSION"),
            GPK: _s(f"USER#{session.username}"),
            GSK: _s(f"SESSION#{session.sid}"),
            "username": _s(session.username),
            "secret_hash": _s(session.secret_hash),
            TTL: _n(session.expires_at),
        }

    # --- namespaces ----------------------------------------------------------------------------------

    async def create_namespace(self, namespace: Namespace, owner: Membership) -> None:
        items = [_namespace_item(namespace), _membership_item(owner)]
        with unavailable_on_transient("DynamoDB"):
            await self._db.transact_write_items(TransactItems=[_put_new(self._table, i) for i in items])

    async def get_namespace(self, namespace_id: str) -> Namespace | None:
        item = await self._get(f"NS#{namespace_id}", "META")
        return _namespace(item) if item else None

    async def get_membership(self, namespace_id: str, username: str) -> Membership | None:
        item = await self._get(f"NS#{namespace_id}", f"MEMBER#{username}")
        return membership_from_item(item) if item else None

    async def memberships_of(self, username: str) -> list[Membership]:
        return [membership_from_item(item) for item in await self._query_gsi(f"USER#{username}", "NS#")]

    async def members_of(self, namespace_id: str) -> list[Membership]:
        found = await items.query_prefix(self._db, self._table, f"NS#{namespace_id}", "MEMBER#", consistent=True)
        return [membership_from_item(item) for item in found]

    async def put_membership(self, membership: Membership) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.put_item(TableName=self._table, Item=_membership_item(membership))

    async def delete_membership(self, namespace_id: str, username: str) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.delete_item(TableName=self._table, Key=_key(f"NS#{namespace_id}", f"MEMBER#{username}"))

    # --- login failures ------------------------------------------------------------------------------

    async def failures(self, keys: list[str]) -> dict[str, LoginFailures]:
        request = {self._table: {"Keys": [_key(f"THROTTLE#{k}", "LOGIN") for k in keys], "ConsistentRead": True}}
        found: dict[str, LoginFailures] = {}
        for _ in range(5):
            with unavailable_on_transient("DynamoDB"):
                page = await self._db.batch_get_item(RequestItems=request)  # type: ignore[arg-type]
            for item in page.get("Responses", {}).get(self._table, []):
                key = item[PK]["S"].removeprefix("THROTTLE#")
                found[key] = LoginFailures(int(item["failures"]["N"]), float(item["first_at"]["N"]))
            request = page.get("UnprocessedKeys") or {}  # type: ignore[assignment]
            if not request:
                return found
            await items.BATCH_RETRY.sleep(0)
        return found

    async def record_failure(self, key: str, now: float, window: int) -> None:
        item_key = _key(f"THROTTLE#{key}", "LOGIN")
        values = {":one": _n(1), ":zero": _n(0), ":now": _n(now), ":exp": _n(int(now) + window)}
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=item_key,
                    UpdateExpression=(
                        "SET failures = if_not_exists(failures, :zero) + :one, "
                        "first_at = if_not_exists(first_at, :now), #ttl = :exp"
                    ),
                    ConditionExpression="attribute_not_exists(first_at) OR first_at > :start",
                    ExpressionAttributeNames={"#ttl": TTL},
                    ExpressionAttributeValues={**values, ":start": _n(now - window)},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            # The previous window is over: start a new one.
            with unavailable_on_transient("DynamoDB"):
                await self._db.put_item(
                    TableName=self._table,
                    Item={**item_key, "failures": _n(1), "first_at": _n(now), TTL: _n(int(now) + window)},
                )

    async def spend(self, key: str, now: float, window: int, limit: int) -> float | None:
        """One use of ``key`` within its window, if fewer than ``limit`` were counted (None); else the
        seconds until the window ends. Conditional writes, so racing workers never count past the limit."""
        item_key = _key(f"THROTTLE#{key}", "QUOTA")
        start = now - window
        try:
            with unavailable_on_transient("DynamoDB"):
                await self._db.update_item(
                    TableName=self._table,
                    Key=item_key,
                    UpdateExpression="SET uses = uses + :one",
                    ConditionExpression="first_at > :start AND uses < :limit",
                    ExpressionAttributeValues={":one": _n(1), ":start": _n(start), ":limit": _n(limit)},
                )
            return None
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        try:  # no window, or the last one is over: open a new one
            with unavailable_on_transient("DynamoDB"):
                await self._db.put_item(
                    TableName=self._table,
                    Item={**item_key, "uses": _n(1), "first_at": _n(now), TTL: _n(int(now) + window)},
                    ConditionExpression="attribute_not_exists(first_at) OR first_at <= :start",
                    ExpressionAttributeValues={":start": _n(start)},
                )
            return None
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        current = await self._get(f"THROTTLE#{key}", "QUOTA")
        first_at = float(current["first_at"]["N"]) if current else now
        return max(0.0, first_at + window - now)

    async def clear_failures(self, key: str) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.delete_item(TableName=self._table, Key=_key(f"THROTTLE#{key}", "LOGIN"))

    # --- helpers -------------------------------------------------------------------------------------

    async def _get(self, pk: str, sk: str) -> Item | None:
        with unavailable_on_transient("DynamoDB"):
            response = await self._db.get_item(TableName=self._table, Key=_key(pk, sk), ConsistentRead=True)
        return response.get("Item")

    async def _query_gsi(self, partition: str, prefix: str) -> list[Item]:
        return await items.query_prefix(self._db, self._table, partition, prefix, index=True)


class DynamoRevocationFeed:
    """The shared feed of revoked sessions: one partition, sorted by time of revocation."""

    PARTITION = "REVOCATIONS"

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def publish(self, sids: Iterable[str], expires_at: float) -> None:
        position = position_at(time.time())
        puts = [
            {**_key(self.PARTITION, f"{position}#{sid}"), "sid": _s(sid), TTL: _n(int(expires_at) + 1)} for sid in sids
        ]
        await items.batch_put(self._db, self._table, puts)

    async def since(self, position: str) -> list[Revocation]:
        revocations: list[Revocation] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND #sk > :since",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
            "ExpressionAttributeValues": {":pk": _s(self.PARTITION), ":since": _s(position)},
        }
        while True:
            page = await self._db.query(**kwargs)
            for item in page.get("Items", []):
                revocations.append(Revocation(item["sid"]["S"], float(item[TTL]["N"]), item[SK]["S"].split("#", 1)[0]))
            if "LastEvaluatedKey" not in page:
                return revocations
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
