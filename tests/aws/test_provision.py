"""Provisioning creates the shapes in ``service.resources``, and running it twice changes nothing."""

from __future__ import annotations

import orjson

from service import resources
from service.aws.clients import open_clients, open_iam
from service.aws.provision import provision
from service.metrics import Metrics
from service.settings import Settings


async def test_provision_creates_every_resource_and_is_idempotent(settings: Settings, aws_session):
    async with open_clients(settings.aws, Metrics(), aws_session) as clients:
        first = await provision(settings, clients, aws_session)
        second = await provision(settings, clients, aws_session)
        assert first == second
        assert first.upload_role_arn.endswith(f":role/{resources.UPLOAD_ROLE_NAME}")

        table = (await clients.dynamodb.describe_table(TableName=settings.table))["Table"]
        assert table["KeySchema"] == resources.table_key_schema()
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == [resources.GSI1_NAME]
        ttl = await clients.dynamodb.describe_time_to_live(TableName=settings.table)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == resources.TABLE_TTL_ATTRIBUTE

        lifecycle = await clients.s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)
        rule = lifecycle["Rules"][0]
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
        noncurrent = lifecycle["Rules"][1]["NoncurrentVersionExpiration"]
        assert noncurrent["NoncurrentDays"] == resources.NONCURRENT_VERSION_DAYS
        versioning = await clients.s3.get_bucket_versioning(Bucket=settings.bucket)
        assert versioning["Status"] == "Enabled"
        cors = await clients.s3.get_bucket_cors(Bucket=settings.bucket)
        assert "PUT" in cors["CORSRules"][0]["AllowedMethods"]
        block = await clients.s3.get_public_access_block(Bucket=settings.bucket)
        assert block["PublicAccessBlockConfiguration"] == resources.bucket_public_access_block()
        encryption = await clients.s3.get_bucket_encryption(Bucket=settings.bucket)
        rules = encryption["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

        identities = await clients.ses.list_identities()
        assert settings.mail_from in identities["Identities"]

    async with open_iam(settings.aws, aws_session) as iam:
        policy = await iam.get_role_policy(
            RoleName=resources.UPLOAD_ROLE_NAME, PolicyName=resources.UPLOAD_ROLE_POLICY_NAME
        )
        document = policy["PolicyDocument"]
        if isinstance(document, str):
            document = orjson.loads(document)
        assert document["Statement"][0]["Resource"] == f"arn:aws:s3:::{settings.bucket}/ns/*/blobs/*"
