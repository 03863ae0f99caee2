"""Every IAM policy of the stack that is not a shared resource shape, as awacs objects.

Layer: deployment; imports awacs and ``service.resources`` only. The upload role's policies are not here:
they are ``service.resources.upload_role_policy`` and ``upload_role_trust_policy``, the same documents the
embedded default provisions. Arguments are CloudFormation expressions (``Ref``, ``GetAtt``, ``Sub``), so each
statement names the one resource it is for; nothing is granted on ``*``.
"""

from __future__ import annotations

from typing import Any

import awacs.dynamodb as dynamodb
import awacs.iam as iam
import awacs.logs as logs
import awacs.s3 as s3
import awacs.secretsmanager as secretsmanager
import awacs.ses as ses
import awacs.sts as sts
from awacs.aws import Allow, Bool, Condition, Deny, Null, Policy, Principal, Statement, StringEquals
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
#: The CloudWatch agent shipping the processes' log files.
LOG_ACTIONS = (logs.CreateLogStream, logs.PutLogEvents, logs.DescribeLogStreams)


def instance_trust_policy() -> Policy:
    """Only EC2 instances (of this stack's instance profile) may be the instance role."""
    return Policy(Version=POLICY_VERSION, Statement=[make_simple_assume_statement("ec2.amazonaws.com")])


def instance_role_policy(
    *,
    table_arn: Any,
    bucket_arn: Any,
    upload_role_arn: Any,
    sender_email: Any,
    token_secret_arn: Any,
    release_bucket: Any,
    release_key: Any,
    log_group_arn: Any,
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
            Statement(
                Sid="SendMailAsSender",
                Effect=Allow,
                Action=list(MAIL_ACTIONS),
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${Sender}",
                        Sender=sender_email,
                    )
                ],
                Condition=Condition(StringEquals("ses:FromAddress", sender_email)),
            ),
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
