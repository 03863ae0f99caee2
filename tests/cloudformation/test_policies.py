"""Every IAM policy in the template is narrow, and the instance role allows exactly what the service calls.

The operation scan reads the service's source for the AWS operations it calls (method calls and the
operation names it presigns), maps each to the IAM actions AWS checks for it, and requires the instance
role to grant them: a new call (the notifier's SES send, say) fails here before it fails in production.
"""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from cloudformation import ids

ROOT = Path(__file__).resolve().parents[2]
#: Used only against the embedded emulator (provisioning), never with the instance role.
EMULATOR_ONLY = {"service/aws/provision.py", "service/embedded.py"}
SERVICES = {"s3": "s3", "dynamodb": "dynamodb", "sts": "sts", "ses": "ses", "sesv2": "ses"}
#: Operations AWS authorizes as other actions than their own name.
AUTHORIZED_AS = {
    ("s3", "HeadObject"): {"s3:GetObject"},
    ("s3", "HeadBucket"): {"s3:ListBucket"},
    ("s3", "CreateMultipartUpload"): {"s3:PutObject"},
    ("s3", "UploadPart"): {"s3:PutObject"},
    ("s3", "CompleteMultipartUpload"): {"s3:PutObject"},
    ("s3", "UploadPartCopy"): {"s3:PutObject", "s3:GetObject"},
    ("s3", "ListParts"): {"s3:ListMultipartUploadParts"},
    ("s3", "ListObjectsV2"): {"s3:ListBucket"},
    ("dynamodb", "TransactWriteItems"): {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    ("dynamodb", "TransactGetItems"): {"dynamodb:GetItem"},
}


def _policies(template) -> list[tuple[str, dict]]:
    """(where, document) for every policy document in the template."""
    found = []
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        assert "ManagedPolicyArns" not in properties, f"{logical_id}: managed policies are not reviewed here"
        if "AssumeRolePolicyDocument" in properties:
            found.append((f"{logical_id} trust", properties["AssumeRolePolicyDocument"]))
        for policy in properties.get("Policies", []):
            found.append((f"{logical_id} {policy['PolicyName']}", policy["PolicyDocument"]))
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::S3::BucketPolicy"):
            found.append((logical_id, properties["PolicyDocument"]))
    return found


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_walk_finds_every_policy(template):
    names = {where for where, _ in _policies(template)}
    assert names == {
        f"{ids.INSTANCE_ROLE} trust",
        f"{ids.UPLOAD_ROLE} trust",
        f"{ids.UPLOAD_ROLE} namespace-blobs",
        ids.INSTANCE_ROLE_POLICY,
        ids.BUCKET_POLICY,
    }


def test_no_policy_allows_every_action_or_every_resource(template):
    for where, document in _policies(template):
        for statement in document["Statement"]:
            actions = _listed(statement.get("Action", []))
            assert "*" not in actions, where
            assert "NotAction" not in statement, where
            assert "NotResource" not in statement, where
            if statement["Effect"] == "Allow":
                # A service-wide wildcard is as broad as "*" within that service.
                assert not [a for a in actions if a.endswith(":*")], where
                assert "*" not in _listed(statement.get("Resource", [])), where
                assert statement.get("Principal") != "*", where
                assert statement.get("Principal") != {"AWS": "*"}, where


def test_trust_policies_name_their_one_principal(template):
    resources = template["Resources"]
    instance_trust = resources[ids.INSTANCE_ROLE]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in instance_trust] == [{"Service": ["ec2.amazonaws.com"]}]
    upload_trust = resources[ids.UPLOAD_ROLE]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in upload_trust] == [{"AWS": {"Fn::GetAtt": [ids.INSTANCE_ROLE, "Arn"]}}]


def _statements(template) -> dict[str, dict]:
    document = template["Resources"][ids.INSTANCE_ROLE_POLICY]["Properties"]["PolicyDocument"]
    return {statement["Sid"]: statement for statement in document["Statement"]}


def test_instance_role_reaches_only_this_stacks_resources(template):
    statements = _statements(template)
    assert statements["Table"]["Resource"] == [
        {"Fn::GetAtt": [ids.TABLE, "Arn"]},
        {"Fn::Sub": ["${Arn}/index/*", {"Arn": {"Fn::GetAtt": [ids.TABLE, "Arn"]}}]},
    ]
    assert statements["NamespaceObjects"]["Resource"] == [
        {"Fn::Sub": ["${Arn}/ns/*", {"Arn": {"Fn::GetAtt": [ids.BUCKET, "Arn"]}}]}
    ]
    assert statements["Bucket"]["Resource"] == [{"Fn::GetAtt": [ids.BUCKET, "Arn"]}]
    assert statements["MintUploadCredentials"] == {
        "Sid": "MintUploadCredentials",
        "Effect": "Allow",
        "Action": ["sts:AssumeRole"],
        "Resource": [{"Fn::GetAtt": [ids.UPLOAD_ROLE, "Arn"]}],
    }
    mail = statements["SendMailAsSender"]
    assert mail["Action"] == ["ses:SendEmail", "ses:SendRawEmail"]
    assert mail["Resource"][0]["Fn::Sub"][0].endswith(":identity/${Sender}")
    assert mail["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": ids.SENDER_EMAIL}}}
    assert statements["TokenSecret"]["Resource"] == [{"Ref": ids.TOKEN_SECRET}]
    assert statements["Logs"]["Resource"] == [{"Fn::GetAtt": [ids.LOG_GROUP, "Arn"]}]


def test_upload_role_reaches_only_blobs(template):
    role = template["Resources"][ids.UPLOAD_ROLE]["Properties"]
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {
        "Fn::Sub": ["${BucketArn}/ns/*/blobs/*", {"BucketArn": {"Fn::GetAtt": [ids.BUCKET, "Arn"]}}]
    }


def test_the_bucket_refuses_plain_http(template):
    (statement,) = template["Resources"][ids.BUCKET_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _called_operations() -> dict[tuple[str, str], set[str]]:
    """(service, operation) -> the source files that call or presign it."""
    session = botocore.session.get_session()
    operations: dict[str, list[tuple[str, str]]] = {}
    for service in SERVICES:
        for name in session.get_service_model(service).operation_names:
            operations.setdefault(xform_name(name), []).append((service, name))
    called: dict[tuple[str, str], set[str]] = {}
    for path in sorted((ROOT / "service").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in EMULATOR_ONLY:
            continue
        for match in re.finditer(r"\.([a-z][a-z0-9_]*)\(|\"([a-z][a-z0-9_]*)\"", path.read_text(encoding="utf-8")):
            for operation in operations.get(match.group(1) or match.group(2), []):
                called.setdefault(operation, set()).add(relative)
    return called


def test_the_instance_role_allows_every_operation_the_service_calls(template):
    granted = {action for statement in _statements(template).values() for action in statement["Action"]}
    called = _called_operations()
    # The scan sees the calls we know are there.
    assert {("dynamodb", "TransactWriteItems"), ("s3", "UploadPartCopy"), ("sts", "AssumeRole")} <= set(called)
    missing = {}
    for service, operation in called:
        needed = AUTHORIZED_AS.get((service, operation), {f"{SERVICES[service]}:{operation}"})
        if not needed <= granted:
            missing[f"{service}.{operation}"] = sorted(needed - granted)
    assert missing == {}, f"the instance role lacks actions the service uses: {missing}"


@pytest.mark.parametrize("sid", ["Table", "NamespaceObjects", "Bucket"])
def test_the_instance_role_allows_nothing_the_service_does_not_call(template, sid):
    called = _called_operations()
    needed = set()
    for service, operation in called:
        needed |= AUTHORIZED_AS.get((service, operation), {f"{SERVICES[service]}:{operation}"})
    assert set(_statements(template)[sid]["Action"]) <= needed
