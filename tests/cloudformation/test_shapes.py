"""One definition, two users: the stack and the embedded default's provisioning build the bucket, the
table and the upload role from the same functions and constants in ``service.resources``."""

from __future__ import annotations

import orjson

from cloudformation import ids
from cloudformation.__main__ import render
from service import resources
from service.aws.clients import open_clients
from service.aws.provision import provision
from service.metrics import Metrics


def test_the_table_is_the_one_provisioning_creates(template):
    table = template["Resources"][ids.TABLE]["Properties"]
    request = resources.create_table_request("any")
    for field in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode"):
        assert table[field] == request[field], field
    assert table["TimeToLiveSpecification"] == {"AttributeName": resources.TABLE_TTL_ATTRIBUTE, "Enabled": True}


def test_the_bucket_is_the_one_provisioning_creates(template):
    bucket = template["Resources"][ids.BUCKET]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == resources.bucket_public_access_block()
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [{"ApplyServerSideEncryptionByDefault": encryption["ServerSideEncryptionByDefault"]}] == (
        resources.bucket_encryption_rules()
    )
    # CloudFormation spells two CORS fields differently from the S3 API.
    cors = [
        {
            **{k: v for k, v in rule.items() if k not in ("ExposedHeaders", "MaxAge")},
            "ExposeHeaders": rule["ExposedHeaders"],
            "MaxAgeSeconds": rule["MaxAge"],
        }
        for rule in bucket["CorsConfiguration"]["CorsRules"]
    ]
    # Origins are the deployment's (CorsOrigins, "*" by default); the rest is the shared rule.
    assert cors == [{**rule, "AllowedOrigins": {"Ref": ids.CORS_ORIGINS}} for rule in resources.bucket_cors_rules()]
    parameter = template["Parameters"][ids.CORS_ORIGINS]
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", "*")
    assert [rule["AllowedOrigins"] for rule in resources.bucket_cors_rules()] == [["*"]]
    # CloudFormation spells the delete-marker clean-up as a flag of the rule, not an Expiration.
    lifecycle = [
        {
            "ID": rule["Id"],
            "Status": rule["Status"],
            "Filter": {"Prefix": rule.get("Prefix", "")},
            **{k: rule[k] for k in ("AbortIncompleteMultipartUpload", "NoncurrentVersionExpiration") if k in rule},
            **(
                {"Expiration": {"ExpiredObjectDeleteMarker": rule["ExpiredObjectDeleteMarker"]}}
                if "ExpiredObjectDeleteMarker" in rule
                else {}
            ),
        }
        for rule in bucket["LifecycleConfiguration"]["Rules"]
    ]
    assert lifecycle == resources.bucket_lifecycle_rules()
    assert bucket["VersioningConfiguration"] == {"Status": resources.BUCKET_VERSIONING}


def test_the_upload_role_is_the_one_provisioning_creates(template):
    role = template["Resources"][ids.UPLOAD_ROLE]["Properties"]
    assert role["MaxSessionDuration"] == resources.UPLOAD_ROLE_MAX_SESSION_SECONDS
    instance_role_arn = {"Fn::GetAtt": [ids.INSTANCE_ROLE, "Arn"]}
    assert role["AssumeRolePolicyDocument"] == resources.upload_role_trust_policy(instance_role_arn)
    (policy,) = role["Policies"]
    assert policy["PolicyName"] == resources.UPLOAD_ROLE_POLICY_NAME
    # The bucket in use: the stack's own, or the one ExistingBucketName adopts.
    bucket_arn = {
        "Fn::If": [
            ids.ADOPT_BUCKET,
            {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Name}", {"Name": {"Ref": ids.EXISTING_BUCKET_NAME}}]},
            {"Fn::GetAtt": [ids.BUCKET, "Arn"]},
        ]
    }
    expected = resources.upload_role_policy("${BucketArn}")
    expected["Statement"][0]["Resource"] = {
        "Fn::Sub": [expected["Statement"][0]["Resource"], {"BucketArn": bucket_arn}]
    }
    assert policy["PolicyDocument"] == expected


async def test_changing_a_shape_changes_both_users(monkeypatch, settings, aws_session):
    """Not equal copies but one definition: change it, and the template and the provisioned emulator follow."""
    monkeypatch.setattr(resources, "GSI1_NAME", "gsi-changed")
    monkeypatch.setattr(resources, "TABLE_TTL_ATTRIBUTE", "ttl_changed")
    monkeypatch.setattr(resources, "ABORT_INCOMPLETE_MULTIPART_DAYS", 7)

    template = orjson.loads(render("json"))
    table = template["Resources"][ids.TABLE]["Properties"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["gsi-changed"]
    assert table["TimeToLiveSpecification"]["AttributeName"] == "ttl_changed"
    rule = template["Resources"][ids.BUCKET]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7

    async with open_clients(settings.aws, Metrics(), aws_session) as clients:
        await provision(settings, clients, aws_session)
        described = (await clients.dynamodb.describe_table(TableName=settings.table))["Table"]
        assert [index["IndexName"] for index in described["GlobalSecondaryIndexes"]] == ["gsi-changed"]
        ttl = await clients.dynamodb.describe_time_to_live(TableName=settings.table)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "ttl_changed"
        lifecycle = await clients.s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)
        assert lifecycle["Rules"][0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
