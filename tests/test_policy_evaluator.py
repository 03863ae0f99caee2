"""The test policy evaluator against IAM's documented semantics, before it is trusted with our policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.policy_evaluator import Request, evaluate, is_allowed, s3_request

BUCKET = "amzn-s3-demo-bucket1"


def allow(condition=None, action="s3:PutObject", resource=f"arn:aws:s3:::{BUCKET}/*", effect="Allow"):
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def put(**context) -> Request:
    return Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/key", context)


def test_null_true_means_absent_and_false_means_present():
    absent = allow({"Null": {"s3:if-none-match": "true"}})
    present = allow({"Null": {"s3:if-none-match": "false"}})
    assert evaluate(absent, put()) == "Allow"
    assert evaluate(absent, put(**{"s3:if-none-match": "*"})) == "NotApplicable"
    assert evaluate(present, put()) == "NotApplicable"
    assert evaluate(present, put(**{"s3:if-none-match": "*"})) == "Allow"


def test_an_absent_key_fails_every_other_operator_unless_if_exists():
    for operator in ("StringEquals", "StringLike", "Bool"):
        assert evaluate(allow({operator: {"s3:ObjectCreationOperation": "true"}}), put()) == "NotApplicable"
    assert evaluate(allow({"BoolIfExists": {"s3:ObjectCreationOperation": "true"}}), put()) == "Allow"
    assert evaluate(allow({"DateLessThan": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}), put()) == ("NotApplicable")


def test_values_of_one_key_are_ored_keys_and_operators_anded():
    either = allow({"StringEquals": {"aws:PrincipalTag/team": ["red", "blue"]}})
    assert evaluate(either, put(**{"aws:PrincipalTag/team": "blue"})) == "Allow"
    assert evaluate(either, put(**{"aws:PrincipalTag/team": "green"})) == "NotApplicable"
    both_keys = allow({"StringEquals": {"aws:PrincipalTag/team": "red", "aws:PrincipalTag/site": "x"}})
    assert evaluate(both_keys, put(**{"aws:PrincipalTag/team": "red"})) == "NotApplicable"
    assert evaluate(both_keys, put(**{"aws:PrincipalTag/team": "red", "aws:PrincipalTag/site": "x"})) == "Allow"
    both_operators = allow({"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}})
    assert evaluate(both_operators, put(**{"s3:ObjectCreationOperation": "true"})) == "Allow"
    assert evaluate(both_operators, put(**{"s3:ObjectCreationOperation": "false"})) == "NotApplicable"


def test_condition_key_names_are_case_insensitive_and_string_values_are_not():
    policy = allow({"StringEquals": {"aws:principaltag/Team": "red"}})
    assert evaluate(policy, put(**{"aws:PrincipalTag/team": "red"})) == "Allow"
    assert evaluate(policy, put(**{"aws:PrincipalTag/team": "Red"})) == "NotApplicable"
    assert evaluate(allow({"Bool": {"aws:SecureTransport": "True"}}), put(**{"aws:SecureTransport": "true"})) == (
        "Allow"
    )


def test_string_like_wildcards():
    policy = allow({"StringLike": {"aws:PrincipalTag/team": "re?-*"}})
    assert evaluate(policy, put(**{"aws:PrincipalTag/team": "red-one"})) == "Allow"
    assert evaluate(policy, put(**{"aws:PrincipalTag/team": "reed-one"})) == "NotApplicable"


def test_for_any_value_matches_any_request_value_and_an_absent_key_never():
    policy = allow({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}})
    assert evaluate(policy, put(**{"aws:TagKeys": ["z", "b"]})) == "Allow"
    assert evaluate(policy, put(**{"aws:TagKeys": ["z"]})) == "NotApplicable"
    assert evaluate(policy, put()) == "NotApplicable"


def test_dates_compare_as_instants():
    before = allow({"DateLessThan": {"aws:TokenIssueTime": "2026-05-01T12:00:00Z"}})
    after = allow({"DateGreaterThan": {"aws:TokenIssueTime": "2026-05-01T12:00:00Z"}})
    early = put(**{"aws:TokenIssueTime": "2026-05-01T11:59:59Z"})
    late = put(**{"aws:TokenIssueTime": datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)})
    assert (evaluate(before, early), evaluate(before, late)) == ("Allow", "NotApplicable")
    assert (evaluate(after, early), evaluate(after, late)) == ("NotApplicable", "Allow")
    same = put(**{"aws:TokenIssueTime": "2026-05-01T12:00:00Z"})
    assert evaluate(before, same) == evaluate(after, same) == "NotApplicable"


def test_actions_match_case_insensitively_resources_case_sensitively_and_star_crosses_slashes():
    policy = allow(action="S3:Get*", resource=f"arn:aws:s3:::{BUCKET}/ns/*/blobs/*")
    get = "s3:GetObject"
    assert evaluate(policy, Request(get, f"arn:aws:s3:::{BUCKET}/ns/a/blobs/x")) == "Allow"
    assert evaluate(policy, Request(get, f"arn:aws:s3:::{BUCKET}/ns/a/b/blobs/x/y")) == "Allow"
    assert evaluate(policy, Request(get, f"arn:aws:s3:::{BUCKET}/NS/a/blobs/x")) == "NotApplicable"
    assert evaluate(policy, Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/ns/a/blobs/x")) == "NotApplicable"
    single = allow(resource=f"arn:aws:s3:::{BUCKET}/ns/?/blobs/*")
    assert evaluate(single, put()) == "NotApplicable"
    assert evaluate(single, Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/ns/a/blobs/x")) == "Allow"


def test_explicit_deny_wins_and_a_session_policy_only_narrows():
    role = allow(action="s3:*")
    deny = allow(action="s3:PutObject", effect="Deny")
    session_get = allow(action="s3:GetObject")
    get = Request("s3:GetObject", f"arn:aws:s3:::{BUCKET}/key")
    assert is_allowed(put(), identity=[role])
    assert not is_allowed(put(), identity=[role, deny])
    assert not is_allowed(put(), identity=[role], resource=deny)
    assert not is_allowed(put(), identity=[role], session=session_get)
    assert is_allowed(get, identity=[role], session=session_get)
    assert not is_allowed(get, identity=[allow()], session=allow(action="s3:*"))  # the role never allowed it
    assert not is_allowed(put(), identity=[])


def test_resource_policy_principals():
    deny_alice = allow(effect="Deny")
    deny_alice["Statement"][0]["Principal"] = {"AWS": ["arn:aws:iam::1:user/alice"]}
    by = {
        name: Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/k", {}, f"arn:aws:iam::1:user/{name}")
        for name in ("alice", "bob")
    }
    assert evaluate(deny_alice, by["bob"]) == "NotApplicable"
    assert evaluate(deny_alice, by["alice"]) == "Deny"


def test_awss_documented_conditional_write_policy():
    """Example 1 of "Enforce conditional writes on Amazon S3 buckets" (S3 User Guide): PutObject and
    CompleteMultipartUpload only with ``if-none-match``; the multipart steps that cannot carry it exempt
    through ``s3:ObjectCreationOperation``; CopyObject without the header refused."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowConditionalPut",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
                "Condition": {"Null": {"s3:if-none-match": "false"}},
            },
            {
                "Sid": "AllowConditionalPutwithMPUs",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
                "Condition": {"Bool": {"s3:ObjectCreationOperation": "false"}},
            },
        ],
    }

    def allowed(operation: str, header: bool) -> bool:
        return evaluate(policy, s3_request(operation, BUCKET, "k", if_none_match=header)) == "Allow"

    assert allowed("PutObject", True)
    assert not allowed("PutObject", False)
    assert allowed("CompleteMultipartUpload", True)
    assert not allowed("CompleteMultipartUpload", False)
    assert all(allowed(op, False) for op in ("CreateMultipartUpload", "UploadPart", "UploadPartCopy"))
    assert not allowed("CopyObject", False)


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:username}/*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"IpAddress": {"a": "b"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"StringNotEquals": {"a": "b"}}},
    ],
)
def test_what_it_does_not_evaluate_is_refused_loudly(statement):
    with pytest.raises(NotImplementedError):
        evaluate({"Statement": [statement]}, Request("s3:GetObject", "arn:aws:s3:::b/x", {"a": "c"}))
