"""The session policy and the upload role's revocations, evaluated by the test policy evaluator, which
honours the condition keys the emulator ignores (see EMULATOR.md and ``tests/policy_evaluator.py``).

Scoping: each generated document allows exactly the caller's prefixes and actions and nothing else.
Immutability: an object is created under a blob key only with ``If-None-Match: *`` (the multipart steps
that cannot carry it exempt). Revocation: a user's sessions issued before a revocation are denied.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service import resources
from service.aws.policies import (
    REVOCATIONS_MAX_CHARS,
    SESSION_POLICY_MAX_CHARS,
    SESSION_USER_TAG,
    WRITE_ACTIONS,
    encode,
    revocation_statement,
    session_policy,
    with_revocation,
)
from service.core.namespaces import new_namespace_id
from tests.policy_evaluator import BLOB_CREATION_CASES, Request, evaluate, is_allowed, s3_request

BUCKET = "filesync-blobs"
ROLE = resources.upload_role_policy(resources.bucket_arn(BUCKET))
#: How S3 authorizes each of the write actions, as an operation carrying what it must carry.
WRITE_OPERATIONS = {
    "s3:PutObject": "PutObject",
    "s3:GetObject": "GetObject",
    "s3:GetObjectVersion": "GetObjectVersion",
    "s3:AbortMultipartUpload": "AbortMultipartUpload",
    "s3:ListMultipartUploadParts": "ListParts",
}


def allowed(policy: dict, action: str, key: str | None, **context) -> bool:
    resource = f"arn:aws:s3:::{BUCKET}" + (f"/{key}" if key is not None else "")
    return evaluate(policy, Request(action, resource, context)) == "Allow"


def s3_allowed(policy: dict, operation: str, key: str, *, header: bool = False) -> bool:
    return evaluate(policy, s3_request(operation, BUCKET, key, if_none_match=header)) == "Allow"


@pytest.fixture
def ids():
    return {name: new_namespace_id() for name in ("alice", "team", "bob", "viewer_only")}


def test_writer_reads_and_writes_only_its_blob_prefixes(ids):
    policy = session_policy([ids["alice"], ids["team"]], [ids["viewer_only"]])
    for ns in (ids["alice"], ids["team"]):
        for action in WRITE_ACTIONS:
            assert s3_allowed(policy, WRITE_OPERATIONS[action], f"ns/{ns}/blobs/abc123", header=True), action
    assert allowed(policy, "s3:GetObject", f"ns/{ids['viewer_only']}/blobs/abc")
    assert allowed(policy, "s3:GetObjectVersion", f"ns/{ids['viewer_only']}/blobs/abc")
    assert not s3_allowed(policy, "PutObject", f"ns/{ids['viewer_only']}/blobs/abc", header=True)


@pytest.mark.parametrize(
    ("action", "key"),
    [
        ("s3:PutObject", "ns/{bob}/blobs/abc"),
        ("s3:GetObject", "ns/{bob}/blobs/abc"),
        ("s3:GetObjectVersion", "ns/{bob}/blobs/abc"),
        ("s3:PutObject", "top-level-object"),
        ("s3:PutObject", "ns/{alice}"),
        ("s3:PutObject", "ns/{alice}/other/abc"),
        ("s3:PutObject", "ns/{alice}/staging/abc"),
        ("s3:PutObject", "ns/{alice}x/blobs/abc"),
        ("s3:PutObject", "ns/{alice_prefix}/blobs/abc"),
        ("s3:DeleteObject", "ns/{alice}/blobs/abc"),
        ("s3:PutObjectAcl", "ns/{alice}/blobs/abc"),
        ("s3:ListBucket", None),
        ("s3:DeleteBucket", None),
        ("s3:PutBucketPolicy", None),
        ("iam:PassRole", None),
    ],
)
def test_everything_else_is_denied(ids, action, key):
    policy = session_policy([ids["alice"]], [])
    if key is not None:
        key = key.format(bob=ids["bob"], alice=ids["alice"], alice_prefix=ids["alice"][:8])
    for header in ({}, {"s3:if-none-match": "*", "s3:ObjectCreationOperation": "true"}):
        assert not allowed(policy, action, key, **header)


def test_policy_fits_the_limit_for_a_realistic_number_of_namespaces():
    def length(writable: int, readable: int) -> int:
        policy = session_policy(
            [new_namespace_id() for _ in range(writable)],
            [new_namespace_id() for _ in range(readable)],
        )
        return len(encode(policy))

    assert length(15, 15) <= SESSION_POLICY_MAX_CHARS
    assert length(30, 0) <= SESSION_POLICY_MAX_CHARS
    assert length(40, 0) > SESSION_POLICY_MAX_CHARS


def test_no_namespaces_means_no_statements():
    assert session_policy([], []) == {"Version": "2012-10-17", "Statement": []}


# --- verified content never changes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "header", "expected"),
    BLOB_CREATION_CASES,
)
def test_a_blob_is_created_only_if_absent(ids, operation, header, expected):
    """For the credentials a client holds: the role's policy and the session policy together."""
    policy = session_policy([ids["alice"]], [ids["viewer_only"]])
    request = s3_request(operation, BUCKET, f"ns/{ids['alice']}/blobs/abc", if_none_match=header)
    assert is_allowed(request, identity=[ROLE], session=policy) is expected
    assert (evaluate(policy, request) == "Allow") is expected  # the session policy alone says the same
    for other in (ids["bob"], ids["viewer_only"]):
        elsewhere = s3_request(operation, BUCKET, f"ns/{other}/blobs/abc", if_none_match=header)
        assert not is_allowed(elsewhere, identity=[ROLE], session=policy)


def test_a_reader_cannot_write_with_or_without_the_header(ids):
    policy = session_policy([], [ids["viewer_only"]])
    for header in (False, True):
        request = s3_request("PutObject", BUCKET, f"ns/{ids['viewer_only']}/blobs/abc", if_none_match=header)
        assert not is_allowed(request, identity=[ROLE], session=policy)
    read = s3_request("GetObjectVersion", BUCKET, f"ns/{ids['viewer_only']}/blobs/abc")
    assert is_allowed(read, identity=[ROLE], session=policy)


# --- revocations ------------------------------------------------------------------------------------

REMOVED_AT = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def session_of(user: str, issued: float, ns: str, operation: str = "GetObject") -> Request:
    context = {
        f"aws:PrincipalTag/{SESSION_USER_TAG}": user,
        "aws:TokenIssueTime": datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return s3_request(operation, BUCKET, f"ns/{ns}/blobs/abc", if_none_match=True, context=context)


def test_a_revocation_denies_the_users_sessions_issued_before_it_only(ids):
    revoked = with_revocation(None, "mallory", REMOVED_AT, now=REMOVED_AT, horizon_seconds=3600)
    policy = session_policy([ids["team"]], [])
    for operation in ("GetObject", "PutObject", "UploadPart"):
        for user, issued, expected in (
            ("mallory", REMOVED_AT - 600, False),
            ("mallory", REMOVED_AT - 1, False),
            ("mallory", REMOVED_AT + 1, True),
            ("alice", REMOVED_AT - 600, True),
        ):
            request = session_of(user, issued, ids["team"], operation)
            assert is_allowed(request, identity=[ROLE, revoked], session=policy) is expected, (operation, user)


def test_revocations_are_pruned_replaced_per_user_and_collapsed_when_too_many():
    first = with_revocation(None, "ann", REMOVED_AT, now=REMOVED_AT, horizon_seconds=3600)
    second = with_revocation(first, "bob", REMOVED_AT + 60, now=REMOVED_AT + 60, horizon_seconds=3600)
    assert len(second["Statement"]) == 2
    again = with_revocation(second, "ann", REMOVED_AT + 120, now=REMOVED_AT + 120, horizon_seconds=3600)
    assert len(again["Statement"]) == 2  # ann's later revocation replaces her earlier one
    later = with_revocation(again, "cat", REMOVED_AT + 4000, now=REMOVED_AT + 4000, horizon_seconds=3600)
    assert later["Statement"] == [revocation_statement("cat", REMOVED_AT + 4000)]  # older than any session

    document = None
    for n in range(200):
        document = with_revocation(document, f"user{n:03d}", REMOVED_AT + n, now=REMOVED_AT + n, horizon_seconds=3600)
        assert len(encode(document)) <= REVOCATIONS_MAX_CHARS
    assert document is not None
    # Collapsed at some point: one statement for everyone up to the latest revocation, then per user again.
    assert any("StringEquals" not in s["Condition"] for s in document["Statement"])
    for user, issued in (("user000", REMOVED_AT - 1), ("user199", REMOVED_AT + 198), ("zed", REMOVED_AT)):
        assert not is_allowed(session_of(user, issued, "x" * 16), identity=[ROLE, document])
    assert is_allowed(session_of("zed", REMOVED_AT + 400, "x" * 16), identity=[ROLE, document])
