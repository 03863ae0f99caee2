"""The session policy, evaluated by an engine we did not write: moto's IAM policy evaluator.

The emulator ignores session policies (see EMULATOR.md), so this is where scoping is proven: each
generated document allows exactly the caller's prefixes and actions and nothing else.
"""

from __future__ import annotations

import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from service.core.credentials import (
    SESSION_POLICY_MAX_CHARS,
    WRITE_ACTIONS,
    encode_policy,
    session_policy,
)
from service.core.namespaces import new_namespace_id

BUCKET = "filesync-blobs"


def allowed(policy: str, action: str, key: str | None) -> bool:
    resource = f"arn:aws:s3:::{BUCKET}" + (f"/{key}" if key is not None else "")
    return IAMPolicy(policy).is_action_permitted(action, resource) == PermissionResult.PERMITTED


@pytest.fixture
def ids():
    return {name: new_namespace_id() for name in ("alice", "team", "bob", "viewer_only")}


def test_writer_reads_and_writes_only_its_blob_prefixes(ids):
    policy = encode_policy(session_policy(BUCKET, [ids["alice"], ids["team"]], [ids["viewer_only"]]))
    for ns in (ids["alice"], ids["team"]):
        for action in WRITE_ACTIONS:
            assert allowed(policy, action, f"ns/{ns}/blobs/abc123"), action
    assert allowed(policy, "s3:GetObject", f"ns/{ids['viewer_only']}/blobs/abc")
    assert not allowed(policy, "s3:PutObject", f"ns/{ids['viewer_only']}/blobs/abc")


@pytest.mark.parametrize(
    ("action", "key"),
    [
        ("s3:PutObject", "ns/{bob}/blobs/abc"),
        ("s3:GetObject", "ns/{bob}/blobs/abc"),
        ("s3:PutObject", "top-level-object"),
        ("s3:PutObject", "ns/{alice}"),
        ("s3:PutObject", "ns/{alice}/other/abc"),
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
    policy = encode_policy(session_policy(BUCKET, [ids["alice"]], []))
    if key is not None:
        key = key.format(bob=ids["bob"], alice=ids["alice"], alice_prefix=ids["alice"][:8])
    assert not allowed(policy, action, key)


def test_policy_fits_the_limit_for_a_realistic_number_of_namespaces():
    def length(writable: int, readable: int) -> int:
        policy = session_policy(
            BUCKET,
            [new_namespace_id() for _ in range(writable)],
            [new_namespace_id() for _ in range(readable)],
        )
        return len(encode_policy(policy))

    assert length(15, 15) <= SESSION_POLICY_MAX_CHARS
    assert length(30, 0) <= SESSION_POLICY_MAX_CHARS
    assert length(40, 0) > SESSION_POLICY_MAX_CHARS


def test_no_namespaces_means_no_statements():
    assert session_policy(BUCKET, [], []) == {"Version": "2012-10-17", "Statement": []}
