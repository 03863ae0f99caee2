"""Every IAM policy of the stack that is not a shared resource shape, as awacs objects.

Layer: deployment; imports awacs and ``service.resources`` only. The upload role's policies are not here:
they are ``service.resources.upload_role_policy`` and ``upload_role_trust_policy``, the same documents the
embedded default provisions. Arguments are CloudFormation expressions (``Ref``, ``GetAtt``, ``Sub``), so each
statement names the one resource it is for; nothing is granted on ``*``.
"""

from __future__ import annotations

from typing import Any

import awacs.autoscaling as autoscaling
import awacs.cloudformation as cloudformation
import awacs.cloudwatch as cloudwatch
import awacs.dynamodb as dynamodb
import awacs.ec2 as ec2
import awacs.iam as iam
import awacs.logs as logs
import awacs.s3 as s3
import awacs.secretsmanager as secretsmanager
import awacs.ses as ses
import awacs.sns as sns
import awacs.sqs as sqs
import awacs.ssm as ssm
import awacs.ssmmessages as ssmmessages
import awacs.sts as sts
from awacs.aws import (
    Allow,
    ArnEquals,
    ArnLike,
    Bool,
    Condition,
    Deny,
    Null,
    Policy,
    Principal,
    Statement,
    StringEquals,
)
from awacs.helpers.trust import make_simple_assume_statement
from troposphere import Sub

from service import resources

POLICY_VERSION = "2012-10-17"

#: What the service does to its table (``TransactWriteItems`` is authorized as the Put, Update and
#: Delete actions inside it; ``DescribeTable`` is the readiness probe).
TABLE_ACTIONS = (
    dynamodb.GetItem,
    dynamodb.PutItem,
    dynamodb.UpdateItem,
    dynamodb.DeleteItem,
    dynamodb.Query,
    dynamodb.BatchGetItem,
    dynamodb.BatchWriteItem,
    dynamodb.DescribeTable,
)
#: What the service does to objects under ``ns/``: blobs and its own staging keys. ``HeadObject`` and the
#: source of ``UploadPartCopy`` are ``GetObject`` (``GetObjectVersion`` when they name the version that
#: was verified); every multipart step but the abort is ``PutObject``. The presigned URLs it hands out are
#: signed with these permissions too (put, upload part, get).
OBJECT_ACTIONS = (s3.GetObject, s3.GetObjectVersion, s3.PutObject, s3.DeleteObject, s3.AbortMultipartUpload)
#: Revoking users' temporary credentials: the service rewrites the upload role's list of revoked sessions.
REVOCATION_ACTIONS = (iam.GetRolePolicy, iam.PutRolePolicy)
#: ``HeadBucket`` (the readiness probe) is ``ListBucket``; having it also makes a missing object a 404
#: rather than a 403.
BUCKET_ACTIONS = (s3.ListBucket,)
#: The notifier's mail. SES authorizes the From identity, so the resource is the sender's identity.
MAIL_ACTIONS = (ses.SendEmail, ses.SendRawEmail)
#: The notifier reading the mail feedback queue (``DeleteMessageBatch`` is authorized as ``DeleteMessage``).
FEEDBACK_ACTIONS = (sqs.ReceiveMessage, sqs.DeleteMessage)
#: The CloudWatch agent shipping the processes' log files.
LOG_ACTIONS = (logs.CreateLogStream, logs.PutLogEvents, logs.DescribeLogStreams)
#: Session Manager: the SSM agent registers the instance, then opens the session's channels. AWS authorizes
#: the channel actions on no resource (``*`` is the only resource they take).
SESSION_CHANNEL_ACTIONS = (
    ssmmessages.CreateControlChannel,
    ssmmessages.CreateDataChannel,
    ssmmessages.OpenControlChannel,
    ssmmessages.OpenDataChannel,
)
#: The CloudWatch agent's memory, disk and process metrics: ``PutMetricData`` takes no resource either; the
#: namespace condition narrows it to the agent's namespace. ``DescribeTags`` (no resource either) is how the
#: agent learns its Auto Scaling group, the metrics' dimension.
METRIC_ACTIONS = (cloudwatch.PutMetricData,)
AGENT_TAG_ACTIONS = (ec2.DescribeTags,)


#: What the stack policy keeps CloudFormation from doing to the data, whatever a template update says.
PROTECTED_UPDATES = ("Update:Replace", "Update:Delete")


def stack_policy(protected: tuple[str, ...]) -> dict[str, Any]:
    """The stack policy (``aws cloudformation set-stack-policy``): every update allowed but replacing or
    removing the ``protected`` logical ids. A replacement would point the service at a new, empty bucket or
    table (the old one retained, but no longer used); neither a release, a parameter change nor adopting an
    existing table or bucket replaces or removes them, so the policy never needs lifting for routine work.
    Stack policies are not IAM policies (``Update:*`` actions, ``LogicalResourceId/...`` resources): a
    plain document, not awacs."""
    return {
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(PROTECTED_UPDATES),
                "Resource": [f"LogicalResourceId/{logical_id}" for logical_id in protected],
            },
        ]
    }


def instance_trust_policy() -> Policy:
    """Only EC2 instances (of this stack's instance profile) may be the instance role."""
    return Policy(Version=POLICY_VERSION, Statement=[make_simple_assume_statement("ec2.amazonaws.com")])


def instance_role_policy(
    *,
    table_arn: Any,
    bucket_arn: Any,
    upload_role_arn: Any,
    sender_email: Any,
    mail_identity: Any,
    configuration_set: Any,
    feedback_queue_arn: Any,
    token_secret_arn: Any,
    release_bucket: Any,
    release_key: Any,
    log_group_arn: Any,
    group_logical_id: str,
    metrics_namespace: str,
) -> Policy:
    """What the web and notifier processes (and the instance's boot script) may do, and on what."""
    return Policy(
        Version=POLICY_VERSION,
        Statement=[
            Statement(
                Sid="Table",
                Effect=Allow,
                Action=list(TABLE_ACTIONS),
                Resource=[table_arn, Sub("${Arn}/index/*", Arn=table_arn)],
            ),
            Statement(
                Sid="NamespaceObjects",
                Effect=Allow,
                Action=list(OBJECT_ACTIONS),
                Resource=[Sub("${Arn}/" + resources.NAMESPACE_KEY_PATTERN, Arn=bucket_arn)],
            ),
            Statement(Sid="Bucket", Effect=Allow, Action=list(BUCKET_ACTIONS), Resource=[bucket_arn]),
            Statement(
                Sid="MintUploadCredentials",
                Effect=Allow,
                Action=[sts.AssumeRole, sts.TagSession],
                Resource=[upload_role_arn],
            ),
            # The upload role's permissions boundary caps whatever this writes into the role's policies.
            Statement(
                Sid="RevokeUploadSessions",
                Effect=Allow,
                Action=list(REVOCATION_ACTIONS),
                Resource=[upload_role_arn],
            ),
            # SES authorizes a send on the identity it sends as (the address, or its domain) and on the
            # configuration set it names.
            Statement(
                Sid="SendMailAsSender",
                Effect=Allow,
                Action=list(MAIL_ACTIONS),
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${Identity}",
                        Identity=mail_identity,
                    ),
                    Sub(
                        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/${Name}",
                        Name=configuration_set,
                    ),
                ],
                Condition=Condition(StringEquals("ses:FromAddress", sender_email)),
            ),
            Statement(Sid="MailFeedback", Effect=Allow, Action=list(FEEDBACK_ACTIONS), Resource=[feedback_queue_arn]),
            Statement(
                Sid="TokenSecret",
                Effect=Allow,
                Action=[secretsmanager.GetSecretValue],
                Resource=[token_secret_arn],
            ),
            Statement(
                Sid="Release",
                Effect=Allow,
                Action=[s3.GetObject],
                Resource=[Sub("arn:${AWS::Partition}:s3:::${Bucket}/${Key}", Bucket=release_bucket, Key=release_key)],
            ),
            Statement(Sid="Logs", Effect=Allow, Action=list(LOG_ACTIONS), Resource=[log_group_arn]),
            Statement(
                Sid="AgentMetrics",
                Effect=Allow,
                Action=list(METRIC_ACTIONS),
                Resource=["*"],
                Condition=Condition(StringEquals("cloudwatch:namespace", metrics_namespace)),
            ),
            Statement(Sid="AgentInstanceTags", Effect=Allow, Action=list(AGENT_TAG_ACTIONS), Resource=["*"]),
            Statement(
                Sid="SessionManagerRegistration",
                Effect=Allow,
                Action=[ssm.UpdateInstanceInformation],
                Resource=[Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*")],
            ),
            Statement(Sid="SessionManagerChannels", Effect=Allow, Action=list(SESSION_CHANNEL_ACTIONS), Resource=["*"]),
            # The drain watcher finds its Auto Scaling group (named by CloudFormation after the stack and the
            # logical id) and completes the termination hook once the service has stopped.
            Statement(
                Sid="FindOwnGroup",
                Effect=Allow,
                Action=[cloudformation.DescribeStackResource],
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*"
                    )
                ],
            ),
            Statement(
                Sid="CompleteTerminationHook",
                Effect=Allow,
                Action=[autoscaling.CompleteLifecycleAction],
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
                        "autoScalingGroupName/${AWS::StackName}-" + group_logical_id + "-*"
                    )
                ],
            ),
        ],
    )


def bucket_policy(bucket_arn: Any) -> Policy:
    """Refuse every request to the bucket that does not come over TLS, whoever signs it; and keep verified
    content unchanged whoever signs: an object is created under a blob or pack key only with
    ``If-None-Match: *`` (``PutObject``, ``CompleteMultipartUpload``, ``CopyObject``; the multipart steps
    that cannot carry the header are exempt by ``s3:ObjectCreationOperation``), and never by a browser form
    ``POST`` (which sets no ``s3:ObjectCreationOperation``). The same two rules are in every session policy
    (which reaches no pack at all)."""
    blobs = Sub("${Arn}/" + resources.BLOB_KEY_PATTERN, Arn=bucket_arn)
    packs = Sub("${Arn}/" + resources.PACK_KEY_PATTERN, Arn=bucket_arn)
    return Policy(
        Version=POLICY_VERSION,
        Statement=[
            Statement(
                Sid="TlsOnly",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[s3.Action("*")],
                Resource=[bucket_arn, Sub("${Arn}/*", Arn=bucket_arn)],
                Condition=Condition(Bool("aws:SecureTransport", "false")),
            ),
            Statement(
                Sid="CreateBlobsOnlyIfAbsent",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[s3.PutObject],
                Resource=[blobs, packs],
                Condition=Condition([Null("s3:if-none-match", "true"), Bool("s3:ObjectCreationOperation", "true")]),
            ),
            Statement(
                Sid="NoBlobFormPosts",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[s3.PutObject],
                Resource=[blobs, packs],
                Condition=Condition(Null("s3:ObjectCreationOperation", "true")),
            ),
        ],
    )


def alarm_topic_policy(topic_arn: Any, launch_rule_arn: Any) -> Policy:
    """Who may publish to the alarm topic: this account's CloudWatch alarms, and the rule that forwards
    failed launches. (A topic policy replaces SNS's default one, so CloudWatch is named too.)"""
    return Policy(
        Version=POLICY_VERSION,
        Statement=[
            Statement(
                Sid="Alarms",
                Effect=Allow,
                Principal=Principal("Service", "cloudwatch.amazonaws.com"),
                Action=[sns.Publish],
                Resource=[topic_arn],
                Condition=Condition(
                    [
                        ArnLike(
                            "aws:SourceArn",
                            Sub("arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"),
                        ),
                        StringEquals("aws:SourceAccount", Sub("${AWS::AccountId}")),
                    ]
                ),
            ),
            Statement(
                Sid="LaunchFailures",
                Effect=Allow,
                Principal=Principal("Service", "events.amazonaws.com"),
                Action=[sns.Publish],
                Resource=[topic_arn],
                Condition=Condition(ArnEquals("aws:SourceArn", launch_rule_arn)),
            ),
        ],
    )


def mail_feedback_topic_policy(topic_arn: Any, configuration_set_arn: Any) -> Policy:
    """Who may publish to the mail feedback topic: SES, for this stack's configuration set only."""
    return Policy(
        Version=POLICY_VERSION,
        Statement=[
            Statement(
                Sid="SesEvents",
                Effect=Allow,
                Principal=Principal("Service", "ses.amazonaws.com"),
                Action=[sns.Publish],
                Resource=[topic_arn],
                Condition=Condition(
                    [
                        StringEquals("aws:SourceAccount", Sub("${AWS::AccountId}")),
                        ArnEquals("aws:SourceArn", configuration_set_arn),
                    ]
                ),
            )
        ],
    )


def mail_feedback_queue_policy(queue_arn: Any, topic_arn: Any) -> Policy:
    """What may put messages in the mail feedback queue: the feedback topic alone; nothing without TLS."""
    return Policy(
        Version=POLICY_VERSION,
        Statement=[
            Statement(
                Sid="FeedbackTopic",
                Effect=Allow,
                Principal=Principal("Service", "sns.amazonaws.com"),
                Action=[sqs.SendMessage],
                Resource=[queue_arn],
                Condition=Condition(ArnEquals("aws:SourceArn", topic_arn)),
            ),
            Statement(
                Sid="TlsOnly",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[sqs.Action("*")],
                Resource=[queue_arn],
                Condition=Condition(Bool("aws:SecureTransport", "false")),
            ),
        ],
    )


#: The regional accounts Elastic Load Balancing writes access logs from, in regions opened before August
#: 2022 (AWS's "Enable access logs for your Application Load Balancer"); later regions use the
#: ``logdelivery.elasticloadbalancing.amazonaws.com`` service principal, which the policy also allows.
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580",
    "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-south-1": "635631232127",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}


def access_log_bucket_policy(bucket_arn: Any, prefix: str, regional_account_statement: Any) -> dict[str, Any]:
    """The load balancer writes its access logs under ``prefix``; nothing else gets in, nothing without TLS.
    ``regional_account_statement`` is the statement for the regional account (an ``Fn::If`` that drops it
    in regions that have none)."""
    logs_arn = Sub("${Arn}/" + prefix + "/AWSLogs/${AWS::AccountId}/*", Arn=bucket_arn)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, Sub("${Arn}/*", Arn=bucket_arn)],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "LogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": logs_arn,
            },
            regional_account_statement,
        ],
    }


def regional_log_account_statement(bucket_arn: Any, prefix: str, account: Any) -> dict[str, Any]:
    return {
        "Sid": "RegionalLogDelivery",
        "Effect": "Allow",
        "Principal": {"AWS": Sub("arn:${AWS::Partition}:iam::${Account}:root", Account=account)},
        "Action": "s3:PutObject",
        "Resource": Sub("${Arn}/" + prefix + "/AWSLogs/${AWS::AccountId}/*", Arn=bucket_arn),
    }
