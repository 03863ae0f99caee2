"""Create the bucket, table, upload role and SES sender the service needs, idempotently; and, on request,
the mail feedback pipeline (an SES configuration set publishing bounces and complaints to an SNS topic that
delivers to an SQS queue), as the stack makes it.

Layer: aws. Used by the embedded default (against its emulator) and by the tests; production creates the
same resources from the CloudFormation templates. Every shape comes from ``service.resources``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
import orjson
from botocore.exceptions import ClientError

from service import resources
from service.aws.clients import AwsClients, client_config, open_iam
from service.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_ses.type_defs import EventDestinationTypeDef

log = logging.getLogger(__name__)

#: The principal the embedded emulator's upload role trusts: moto's default account.
EMULATOR_ACCOUNT_ROOT = "arn:aws:iam::123456789012:root"


@dataclass(frozen=True, slots=True)
class MailFeedback:
    """The configuration set mail is sent with, and the queue its bounces and complaints arrive in."""

    configuration_set: str
    queue_url: str
    topic_arn: str


async def provision_mail_feedback(settings: Settings, clients: AwsClients, session: aioboto3.Session) -> MailFeedback:
    """The configuration set, its SNS event destination, the topic and the queue subscribed to it, named
    after the table; safe to run again."""
    name = f"{settings.table}-mail"
    try:
        await clients.ses.create_configuration_set(ConfigurationSet={"Name": name})
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConfigurationSetAlreadyExists":
            raise
    queue_url = (await clients.sqs.create_queue(QueueName=f"{name}-feedback"))["QueueUrl"]
    attributes = await clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    queue_arn = attributes["Attributes"]["QueueArn"]
    aws = settings.aws
    async with session.client("sns", endpoint_url=aws.endpoint_for("sns"), config=client_config(aws, "sns")) as sns:
        topic_arn = (await sns.create_topic(Name=f"{name}-feedback"))["TopicArn"]
        await sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    destination: EventDestinationTypeDef = {
        "Name": f"{name}-feedback",
        "Enabled": True,
        "MatchingEventTypes": list(resources.MAIL_FEEDBACK_EVENT_TYPES),  # type: ignore[arg-type]
        "SNSDestination": {"TopicARN": topic_arn},
    }
    try:
        await clients.ses.create_configuration_set_event_destination(
            ConfigurationSetName=name, EventDestination=destination
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "EventDestinationAlreadyExists":
            raise
    return MailFeedback(name, queue_url, topic_arn)


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What provisioning created (or found): the names and ARNs the service is configured with."""

    bucket: str
    table: str
    upload_role_arn: str
    mail_from: str


async def provision(
    settings: Settings,
    clients: AwsClients,
    session: aioboto3.Session,
    trusted_principal_arn: str = EMULATOR_ACCOUNT_ROOT,
) -> Provisioned:
    """Create what is missing; leave what exists. Safe to run any number of times."""
    await _bucket(clients, settings.bucket)
    await _table(clients, settings.table)
    role_arn = await _upload_role(settings, session, trusted_principal_arn)
    await clients.ses.verify_email_identity(EmailAddress=settings.mail_from)
    log.info(
        "provisioned bucket=%s table=%s role=%s sender=%s",
        settings.bucket,
        settings.table,
        role_arn,
        settings.mail_from,
    )
    return Provisioned(settings.bucket, settings.table, role_arn, settings.mail_from)


async def _bucket(clients: AwsClients, bucket: str) -> None:
    try:
        await clients.s3.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    await clients.s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=resources.bucket_public_access_block(),  # type: ignore[arg-type]
    )
    await clients.s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": resources.bucket_encryption_rules()},  # type: ignore[misc, arg-type]
    )
    await clients.s3.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": resources.BUCKET_VERSIONING}
    )
    await clients.s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={"CORSRules": resources.bucket_cors_rules()},  # type: ignore[typeddict-item]
    )
    await clients.s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": resources.bucket_lifecycle_rules()},  # type: ignore[typeddict-item]
    )


async def _table(clients: AwsClients, table: str) -> None:
    try:
        await clients.dynamodb.create_table(**resources.create_table_request(table))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    waiter = clients.dynamodb.get_waiter("table_exists")
    await waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    await clients.dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": resources.TABLE_TTL_ATTRIBUTE},
    )


async def _upload_role(settings: Settings, session: aioboto3.Session, trusted_principal_arn: str) -> str:
    async with open_iam(settings.aws, session) as iam:
        try:
            created = await iam.create_role(
                RoleName=resources.UPLOAD_ROLE_NAME,
                AssumeRolePolicyDocument=orjson.dumps(
                    resources.upload_role_trust_policy(trusted_principal_arn)
                ).decode(),
                MaxSessionDuration=resources.UPLOAD_ROLE_MAX_SESSION_SECONDS,
                Description="Temporary credentials for file sync clients (narrowed per session).",
            )
            role_arn = created["Role"]["Arn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
            role_arn = (await iam.get_role(RoleName=resources.UPLOAD_ROLE_NAME))["Role"]["Arn"]
        await iam.put_role_policy(
            RoleName=resources.UPLOAD_ROLE_NAME,
            PolicyName=resources.UPLOAD_ROLE_POLICY_NAME,
            PolicyDocument=orjson.dumps(resources.upload_role_policy(resources.bucket_arn(settings.bucket))).decode(),
        )
    return role_arn
