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
from service.aws.policies import session_policy
from tests.policy_evaluator import BLOB_CREATION_CASES, Request, evaluate, is_allowed, resolve, s3_request

ROOT = Path(__file__).resolve().parents[2]
#: Used only against the embedded emulator (provisioning), never with the instance role.
EMULATOR_ONLY = {"service/aws/provision.py", "service/embedded.py"}
SERVICES = {"s3": "s3", "dynamodb": "dynamodb", "sts": "sts", "ses": "ses", "sesv2": "ses", "sqs": "sqs"}
#: Operations AWS authorizes as other actions than their own name.
AUTHORIZED_AS = {
    ("s3", "GetObject"): {"s3:GetObject", "s3:GetObjectVersion"},  # GetObjectVersion: with a VersionId
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
    ("sqs", "DeleteMessageBatch"): {"sqs:DeleteMessage"},
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
        if resource["Type"] in (
            "AWS::IAM::Policy",
            "AWS::IAM::ManagedPolicy",
            "AWS::S3::BucketPolicy",
            "AWS::SNS::TopicPolicy",
            "AWS::SQS::QueuePolicy",
        ):
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
        ids.UPLOAD_ROLE_BOUNDARY,
        ids.BUCKET_POLICY,
        ids.ACCESS_LOG_BUCKET_POLICY,
        ids.ALARM_TOPIC_POLICY,
        ids.MAIL_FEEDBACK_TOPIC_POLICY,
        ids.MAIL_FEEDBACK_QUEUE_POLICY,
    }


#: Actions AWS authorizes on no resource at all ("*" is the only resource they take), each with the
#: condition that narrows it where one exists: Session Manager's channels, the CloudWatch agent's metrics
#: (its namespace only) and the instance tags it reads to learn its Auto Scaling group.
UNSCOPED_ACTIONS = {
    "ssmmessages:CreateControlChannel": None,
    "ssmmessages:CreateDataChannel": None,
    "ssmmessages:OpenControlChannel": None,
    "ssmmessages:OpenDataChannel": None,
    "cloudwatch:PutMetricData": {"StringEquals": {"cloudwatch:namespace": "CWAgent"}},
    "ec2:DescribeTags": None,
}


def _statements_of(document) -> list[dict]:
    """A document's statements, those under an ``Fn::If`` (by region, say) with either branch."""
    found = []
    for statement in document["Statement"]:
        if set(statement) == {"Fn::If"}:
            found += [branch for branch in statement["Fn::If"][1:] if branch != {"Ref": "AWS::NoValue"}]
        else:
            found.append(statement)
    return found


def test_no_policy_allows_every_action_or_every_resource(template):
    for where, document in _policies(template):
        for statement in _statements_of(document):
            actions = _listed(statement.get("Action", []))
            assert "*" not in actions, where
            assert "NotAction" not in statement, where
            assert "NotResource" not in statement, where
            if statement["Effect"] == "Allow":
                # A service-wide wildcard is as broad as "*" within that service.
                assert not [a for a in actions if a.endswith(":*")], where
                if "*" in _listed(statement.get("Resource", [])):
                    assert set(actions) <= set(UNSCOPED_ACTIONS), (where, actions)
                    for action in actions:
                        if UNSCOPED_ACTIONS[action] is not None:
                            assert statement["Condition"] == UNSCOPED_ACTIONS[action], (where, action)
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


#: The stack's own table and bucket, and those ``ExistingTableName``/``ExistingBucketName`` adopt.
DATA_VALUES = {
    f"{ids.TABLE}.Arn": "arn:aws:dynamodb:us-east-1:111122223333:table/stack-table",
    f"{ids.BUCKET}.Arn": "arn:aws:s3:::stack-bucket",
    ids.EXISTING_TABLE_NAME: "restored-table",
    ids.EXISTING_BUCKET_NAME: "kept-bucket",
    ids.SENDER_EMAIL: "sender@example.com",
    ids.MAIL_DOMAIN: "example.com",
    ids.MAIL_CONFIGURATION_SET: "stack-mail",
    f"{ids.MAIL_FEEDBACK_QUEUE}.Arn": "arn:aws:sqs:us-east-1:111122223333:stack-MailFeedbackQueue-abc",
}
DATA_CASES = [
    ({}, DATA_VALUES[f"{ids.TABLE}.Arn"], DATA_VALUES[f"{ids.BUCKET}.Arn"]),
    (
        {ids.ADOPT_TABLE: True, ids.ADOPT_BUCKET: True},
        "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/restored-table",
        "arn:${AWS::Partition}:s3:::kept-bucket",
    ),
]


@pytest.mark.parametrize(("conditions", "table_arn", "bucket_arn"), DATA_CASES, ids=["own", "adopted"])
def test_instance_role_reaches_only_this_stacks_resources(template, conditions, table_arn, bucket_arn):
    statements = _statements(template)

    def resource(sid: str) -> list[str]:
        return resolve(statements[sid]["Resource"], DATA_VALUES, conditions)

    assert resource("Table") == [table_arn, f"{table_arn}/index/*"]
    assert resource("NamespaceObjects") == [f"{bucket_arn}/ns/*"]
    assert resource("Bucket") == [bucket_arn]
    assert statements["MintUploadCredentials"] == {
        "Sid": "MintUploadCredentials",
        "Effect": "Allow",
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Resource": [{"Fn::GetAtt": [ids.UPLOAD_ROLE, "Arn"]}],
    }
    assert statements["RevokeUploadSessions"] == {
        "Sid": "RevokeUploadSessions",
        "Effect": "Allow",
        "Action": ["iam:GetRolePolicy", "iam:PutRolePolicy"],
        "Resource": [{"Fn::GetAtt": [ids.UPLOAD_ROLE, "Arn"]}],
    }
    mail = statements["SendMailAsSender"]
    assert mail["Action"] == ["ses:SendEmail", "ses:SendRawEmail"]
    assert resource("SendMailAsSender") == [
        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/sender@example.com",
        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/stack-mail",
    ]
    assert mail["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": ids.SENDER_EMAIL}}}
    assert resource("MailFeedback") == [DATA_VALUES[f"{ids.MAIL_FEEDBACK_QUEUE}.Arn"]]
    assert statements["TokenSecret"]["Resource"] == [{"Ref": ids.TOKEN_SECRET}]
    assert statements["Logs"]["Resource"] == [{"Fn::GetAtt": [ids.LOG_GROUP, "Arn"]}]


@pytest.mark.parametrize(("conditions", "table_arn", "bucket_arn"), DATA_CASES, ids=["own", "adopted"])
def test_upload_role_reaches_only_blobs(template, conditions, table_arn, bucket_arn):
    role = template["Resources"][ids.UPLOAD_ROLE]["Properties"]
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert resolve(statement["Resource"], DATA_VALUES, conditions) == f"{bucket_arn}/ns/*/blobs/*"


def test_upload_role_is_capped_by_a_boundary_the_service_cannot_change(template):
    """The service may write the upload role's inline policies (its revocations); the boundary, which it
    may not touch, is the role's own policy, so nothing it writes can grant more."""
    resources = template["Resources"]
    role = resources[ids.UPLOAD_ROLE]["Properties"]
    assert role["PermissionsBoundary"] == {"Ref": ids.UPLOAD_ROLE_BOUNDARY}
    boundary = resources[ids.UPLOAD_ROLE_BOUNDARY]["Properties"]["PolicyDocument"]
    assert boundary == role["Policies"][0]["PolicyDocument"]
    granted = {action for statement in _statements(template).values() for action in statement["Action"]}
    assert not {a for a in granted if a.startswith("iam:") and "Boundary" in a}


def test_the_bucket_refuses_plain_http(template):
    statements = template["Resources"][ids.BUCKET_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    (statement,) = [s for s in statements if s["Sid"] == "TlsOnly"]
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


@pytest.mark.parametrize("sid", ["Table", "NamespaceObjects", "Bucket", "MailFeedback"])
def test_the_instance_role_allows_nothing_the_service_does_not_call(template, sid):
    called = _called_operations()
    needed = set()
    for service, operation in called:
        needed |= AUTHORIZED_AS.get((service, operation), {f"{SERVICES[service]}:{operation}"})
    assert set(_statements(template)[sid]["Action"]) <= needed


# --- the bucket policy, evaluated ---------------------------------------------------------------------

BUCKET_NAME = "filesync-stack-blobbucket-abc"
NS = "aaaaaaaaaaaaaaaa"


def _bucket_policy(template) -> dict:
    document = template["Resources"][ids.BUCKET_POLICY]["Properties"]["PolicyDocument"]
    return resolve(document, {f"{ids.BUCKET}.Arn": f"arn:aws:s3:::{BUCKET_NAME}"})


@pytest.mark.parametrize(
    ("operation", "header", "allowed"),
    BLOB_CREATION_CASES,
)
@pytest.mark.parametrize("who", ["client session", "instance role"])
def test_the_bucket_creates_blobs_only_if_absent_whoever_signs(template, operation, header, allowed, who):
    """Whatever identity policy allowed it: the bucket policy alone refuses to replace a blob."""
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    principal = {"client session": None, "instance role": "arn:aws:iam::123456789012:role/filesync-instance"}[who]
    request = s3_request(operation, BUCKET_NAME, f"ns/{NS}/blobs/abc", if_none_match=header, principal=principal)
    assert is_allowed(request, identity=[everything], resource=_bucket_policy(template)) is allowed
    # Packs (written by the service alone) are created only if absent too.
    pack = s3_request(operation, BUCKET_NAME, f"ns/{NS}/packs/abc", if_none_match=header, principal=principal)
    assert is_allowed(pack, identity=[everything], resource=_bucket_policy(template)) is allowed
    # Elsewhere (the service's staging keys) the bucket policy leaves writes alone.
    staging = s3_request(operation, BUCKET_NAME, f"ns/{NS}/staging/x", if_none_match=header, principal=principal)
    assert is_allowed(staging, identity=[everything], resource=_bucket_policy(template))


def test_the_bucket_refuses_plain_http_when_evaluated(template):
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    request = s3_request("GetObject", BUCKET_NAME, f"ns/{NS}/blobs/abc", context={"aws:SecureTransport": "false"})
    assert not is_allowed(request, identity=[everything], resource=_bucket_policy(template))
    plain = s3_request("GetObject", BUCKET_NAME, "x")
    assert is_allowed(plain, identity=[everything], resource=_bucket_policy(template))


def test_a_client_session_under_the_stacks_policies(template):
    """The role's policy from the template, a minted session policy and the bucket policy together."""
    role_policy = resolve(
        template["Resources"][ids.UPLOAD_ROLE]["Properties"]["Policies"][0]["PolicyDocument"],
        {f"{ids.BUCKET}.Arn": f"arn:aws:s3:::{BUCKET_NAME}"},
    )
    session = session_policy([NS], [])
    bucket = _bucket_policy(template)

    def can(operation: str, key: str, header: bool) -> bool:
        request = s3_request(operation, BUCKET_NAME, key, if_none_match=header)
        return is_allowed(request, identity=[role_policy], session=session, resource=bucket)

    blob = f"ns/{NS}/blobs/abc"
    assert can("PutObject", blob, True)
    assert not can("PutObject", blob, False)
    assert can("UploadPart", blob, False)
    assert can("UploadPartCopy", blob, False)
    assert can("CompleteMultipartUpload", blob, True)
    assert not can("CompleteMultipartUpload", blob, False)
    assert can("GetObjectVersion", blob, False)
    assert not can("PutObject", f"ns/{'b' * 16}/blobs/abc", True)
    assert not can("PutObject", f"ns/{NS}/staging/abc", True)
    assert not can("PutObject", f"ns/{NS}/packs/abc", True), "packs are the service's alone"
    assert not can("GetObject", f"ns/{NS}/packs/abc", False), "packed bodies are served by the service"
    assert not can("DeleteObject", blob, False)


# --- mail: the sender's identity, the feedback queue, evaluated ---------------------------------------

QUEUE_ARN = DATA_VALUES[f"{ids.MAIL_FEEDBACK_QUEUE}.Arn"]
TOPIC_ARN = "arn:aws:sns:us-east-1:111122223333:stack-MailFeedbackTopic-abc"
INSTANCE = "arn:aws:sts::111122223333:assumed-role/stack-InstanceRole-abc/i-0123456789abcdef0"


def _instance_policy(template, conditions=None) -> dict:
    document = template["Resources"][ids.INSTANCE_ROLE_POLICY]["Properties"]["PolicyDocument"]
    values = {
        **DATA_VALUES,
        ids.UPLOAD_ROLE + ".Arn": "arn:aws:iam::111122223333:role/upload",
        ids.TOKEN_SECRET: "arn:aws:secretsmanager:us-east-1:111122223333:secret:token",
        ids.RELEASE_BUCKET: "releases",
        ids.RELEASE_KEY: "releases/filesync.tar.gz",
        ids.LOG_GROUP + ".Arn": "arn:aws:logs:us-east-1:111122223333:log-group:stack",
    }
    return _pseudo(resolve(document, values, conditions))


#: The pseudo parameters, as AWS fills them in for one stack.
PSEUDO = {"${AWS::Partition}": "aws", "${AWS::Region}": "us-east-1", "${AWS::AccountId}": "111122223333"}


def _pseudo(document):
    if isinstance(document, dict):
        return {key: _pseudo(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_pseudo(value) for value in document]
    if isinstance(document, str):
        for name, value in PSEUDO.items():
            document = document.replace(name, value)
    return document


@pytest.mark.parametrize(
    ("action", "queue", "allowed"),
    [
        ("sqs:ReceiveMessage", QUEUE_ARN, True),
        ("sqs:DeleteMessage", QUEUE_ARN, True),
        ("sqs:SendMessage", QUEUE_ARN, False),
        ("sqs:PurgeQueue", QUEUE_ARN, False),
        ("sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:111122223333:another-queue", False),
    ],
)
def test_instances_may_only_read_and_delete_the_feedback_queue(template, action, queue, allowed):
    request = Request(action=action, resource=queue, principal=INSTANCE)
    assert is_allowed(request, identity=[_instance_policy(template)]) is allowed


@pytest.mark.parametrize(
    ("conditions", "identity"),
    [({}, "identity/sender@example.com"), ({ids.MAIL_DOMAIN_GIVEN: True}, "identity/example.com")],
    ids=["address", "domain"],
)
def test_instances_send_as_the_sender_with_the_configuration_set_only(template, conditions, identity):
    policy = _instance_policy(template, conditions)
    prefix = "arn:aws:ses:us-east-1:111122223333:"
    sender = {"ses:FromAddress": "sender@example.com"}

    def can(resource: str, context=sender) -> bool:
        return is_allowed(
            Request(action="ses:SendRawEmail", resource=prefix + resource, context=context, principal=INSTANCE),
            identity=[policy],
        )

    assert can(identity)
    assert can("configuration-set/stack-mail")
    assert not can("configuration-set/someone-elses")
    assert not can("identity/other.example")
    assert not can(identity, {"ses:FromAddress": "ceo@example.com"}), "only as the sender address"


def test_only_the_feedback_topic_may_fill_the_queue_and_only_ses_may_publish_to_it(template):
    resources = template["Resources"]
    values = {
        f"{ids.MAIL_FEEDBACK_QUEUE}.Arn": QUEUE_ARN,
        ids.MAIL_FEEDBACK_TOPIC: TOPIC_ARN,
        ids.MAIL_CONFIGURATION_SET: "stack-mail",
    }
    queue_policy = _pseudo(resolve(resources[ids.MAIL_FEEDBACK_QUEUE_POLICY]["Properties"]["PolicyDocument"], values))
    from_topic = Request(
        "sqs:SendMessage", QUEUE_ARN, {"aws:SourceArn": TOPIC_ARN, "aws:SecureTransport": True}, "sns.amazonaws.com"
    )
    assert evaluate(queue_policy, from_topic) == "Allow"
    other = Request(
        "sqs:SendMessage",
        QUEUE_ARN,
        {"aws:SourceArn": TOPIC_ARN + "x", "aws:SecureTransport": True},
        "sns.amazonaws.com",
    )
    assert evaluate(queue_policy, other) == "NotApplicable"
    plain = Request("sqs:ReceiveMessage", QUEUE_ARN, {"aws:SecureTransport": False}, INSTANCE)
    assert evaluate(queue_policy, plain) == "Deny"
    assert resources[ids.MAIL_FEEDBACK_TOPIC_POLICY]["Properties"]["Topics"] == [{"Ref": ids.MAIL_FEEDBACK_TOPIC}]
    (statement,) = resources[ids.MAIL_FEEDBACK_TOPIC_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert statement["Action"] == ["sns:Publish"]
    topic_policy = _pseudo(resolve(resources[ids.MAIL_FEEDBACK_TOPIC_POLICY]["Properties"]["PolicyDocument"], values))
    configuration_set = "arn:aws:ses:us-east-1:111122223333:configuration-set/stack-mail"
    context = {"aws:SourceArn": configuration_set, "aws:SourceAccount": "111122223333"}
    assert evaluate(topic_policy, Request("sns:Publish", TOPIC_ARN, context, "ses.amazonaws.com")) == "Allow"
    stranger = {**context, "aws:SourceArn": configuration_set + "-other"}
    assert evaluate(topic_policy, Request("sns:Publish", TOPIC_ARN, stranger, "ses.amazonaws.com")) == "NotApplicable"
