"""The IAM policy documents the service writes at run time: each minted credential's session policy, and
the upload role's list of revoked sessions.

Layer: aws (pure: builds and reads JSON documents, no I/O). The role's own policy and the bucket policy are
deployment shapes (``service.resources``, ``cloudformation.policies``); a test evaluates all of them
together with an evaluator that honours the condition keys used here.

A session policy narrows the upload role (which reaches every namespace's blobs in the one bucket) to the
caller's namespaces: write (and multipart) where an editor or owner, read where a viewer. It names no
bucket (``arn:aws:s3:::*/ns/<id>/blobs/*``): the role's policy names it, and what a session may do is what
both allow, so the policy's length depends on the number of namespaces only, not on the bucket's name.
Verified content never changes: object creation under a blob key must carry ``If-None-Match: *``
(``s3:if-none-match``), except the multipart steps that cannot carry it (``CreateMultipartUpload``,
``UploadPart``, ``UploadPartCopy``: ``s3:ObjectCreationOperation`` is false for them), and a browser form
``POST`` (which sets no ``s3:ObjectCreationOperation``) creates nothing. ``CompleteMultipartUpload``,
``PutObject`` and ``CopyObject`` without the header are denied; ``CopyObject`` with it is refused by S3.

Revocation: every session is tagged with its user (``SESSION_USER_TAG``). When a user loses access (removed
from a namespace or demoted, disabled, password changed), the role's ``REVOCATIONS_POLICY_NAME`` policy
gains a Deny for that user's sessions issued before then (``aws:PrincipalTag``, ``aws:TokenIssueTime``).
A statement older than the longest session the role allows can no longer match anything and is pruned;
if the statements would outgrow the role's policy budget they collapse into one that denies every session
issued before the latest revocation (clients mint new credentials, scoped afresh).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from service.resources import BLOB_KEY_PATTERN, UPLOAD_ROLE_ACTIONS, blob_prefix

POLICY_VERSION = "2012-10-17"
#: AWS's limit on the plain text of a session policy passed to AssumeRole.
SESSION_POLICY_MAX_CHARS = 2048
#: The session tag naming the user a credential was minted for.
SESSION_USER_TAG = "filesync-user"
#: The upload role's inline policy of revoked sessions (written by the service, not by the stack).
REVOCATIONS_POLICY_NAME = "revoked-sessions"
#: IAM allows 10,240 characters of inline policy per role; the role's own policy takes about 400.
REVOCATIONS_MAX_CHARS = 8192

#: Where a user writes, a session may do all the upload role may (``resources.UPLOAD_ROLE_ACTIONS``, the
#: one list, shared with the stack); where the user only reads, the role's reads.
WRITE_ACTIONS = UPLOAD_ROLE_ACTIONS
READ_ACTIONS = tuple(a for a in UPLOAD_ROLE_ACTIONS if a in ("s3:GetObject", "s3:GetObjectVersion"))
#: Every blob key of every namespace, in any bucket (the role's policy names the one bucket).
_ANY_BLOB = f"arn:aws:s3:::*/{BLOB_KEY_PATTERN}"


def blob_resource(namespace_id: str) -> str:
    return f"arn:aws:s3:::*/{blob_prefix(namespace_id)}*"


def keep_verified_statements(resource: str) -> list[dict[str, Any]]:
    """The two Deny statements that keep content immutable, for ``resource`` (blob keys)."""
    return [
        {
            "Sid": "CreateOnlyIfAbsent",
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": resource,
            "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}},
        },
        {
            "Sid": "NoFormPosts",
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": resource,
            "Condition": {"Null": {"s3:ObjectCreationOperation": "true"}},
        },
    ]


def session_policy(writable: Sequence[str], readable: Sequence[str]) -> dict[str, Any]:
    """The inline policy for one credential: ``writable`` namespaces get write actions, ``readable`` read;
    no namespace, no statement."""
    statements: list[dict[str, Any]] = []
    for sid, actions, namespaces in (("Write", WRITE_ACTIONS, writable), ("Read", READ_ACTIONS, readable)):
        if namespaces:
            statements.append(
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": list(actions),
                    "Resource": [blob_resource(ns) for ns in namespaces],
                }
            )
    if writable:
        statements += keep_verified_statements(_ANY_BLOB)
    return {"Version": POLICY_VERSION, "Statement": statements}


# --- revocations ------------------------------------------------------------------------------------


def revocation_statement(username: str | None, before: float) -> dict[str, Any]:
    """Deny ``username``'s sessions (None: everyone's) issued before ``before`` (epoch seconds, rounded up
    to the second: a session issued in the same second is denied too)."""
    condition: dict[str, Any] = {"DateLessThan": {"aws:TokenIssueTime": _iso(before)}}
    if username is not None:
        condition["StringEquals"] = {f"aws:PrincipalTag/{SESSION_USER_TAG}": username}
    return {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition}


def with_revocation(
    document: dict[str, Any] | None, username: str, before: float, *, now: float, horizon_seconds: int
) -> dict[str, Any]:
    """``document`` (the current revocations policy, or None) with ``username``'s sessions issued before
    ``before`` denied. Statements older than ``horizon_seconds`` (the longest session) are dropped, and
    so are those a later one covers; if the rest would not fit ``REVOCATIONS_MAX_CHARS``, everything is
    replaced by one statement denying every session issued before the latest revocation."""
    live = [s for s in (document or {}).get("Statement", []) if revoked_before(s) > now - horizon_seconds]
    before = max([before, *(revoked_before(s) for s in live if revoked_user(s) == username)])
    everyone = max((revoked_before(s) for s in live if revoked_user(s) is None), default=0.0)
    kept = [
        s
        for s in live
        if (revoked_user(s) is None and revoked_before(s) == everyone)
        or (revoked_user(s) not in (None, username) and revoked_before(s) > everyone)
    ]
    statements = [*kept, revocation_statement(username, before)]
    updated = {"Version": POLICY_VERSION, "Statement": statements}
    if len(encode(updated)) > REVOCATIONS_MAX_CHARS:
        latest = max(revoked_before(s) for s in statements)
        updated = {"Version": POLICY_VERSION, "Statement": [revocation_statement(None, latest)]}
    return updated


def revoked_before(statement: dict[str, Any]) -> float:
    """The time before which a revocation statement denies sessions (epoch seconds; 0 if it is not one)."""
    value = statement.get("Condition", {}).get("DateLessThan", {}).get("aws:TokenIssueTime")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if isinstance(value, str) else 0.0


def revoked_user(statement: dict[str, Any]) -> str | None:
    """The user whose sessions a revocation statement denies (None: everyone's)."""
    value = statement.get("Condition", {}).get("StringEquals", {}).get(f"aws:PrincipalTag/{SESSION_USER_TAG}")
    return value if isinstance(value, str) else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(policy: dict[str, Any]) -> str:
    return orjson.dumps(policy).decode()
