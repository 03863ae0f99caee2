"""The shapes of the AWS resources the service needs, defined once.

Layer: leaf, pure data. The embedded default's provisioning (``service.aws.provision``), the tests and the
CloudFormation generator (``cloudformation/``) all build from these, so the emulator and production have
the same table keys, indexes, bucket rules and upload role. Shapes use the AWS API's field names; the
template generator maps the few that CloudFormation spells differently (S3 CORS ``ExposeHeaders``,
``MaxAgeSeconds``).
"""

from __future__ import annotations

from typing import Any, Literal

# --- DynamoDB: one table, generic keys ---------------------------------------------------------------

#: Partition and sort key of every item; the item kinds encode their own prefixes in them.
TABLE_PARTITION_KEY = "pk"
TABLE_SORT_KEY = "sk"
#: One general-purpose global secondary index (for "by user" and other inverted look-ups).
GSI1_NAME = "gsi1"
GSI1_PARTITION_KEY = "gsi1pk"
GSI1_SORT_KEY = "gsi1sk"
#: Items carrying this numeric attribute (epoch seconds) are deleted by DynamoDB's TTL after that time.
TABLE_TTL_ATTRIBUTE = "expires_at"
#: On-demand capacity: traffic is spiky (a sync storm after a shared folder changes) and mostly idle.
TABLE_BILLING_MODE = "PAY_PER_REQUEST"


def table_key_schema() -> list[dict[str, str]]:
    return [
        {"AttributeName": TABLE_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": TABLE_SORT_KEY, "KeyType": "RANGE"},
    ]


def table_attribute_definitions() -> list[dict[str, str]]:
    return [
        {"AttributeName": name, "AttributeType": "S"}
        for name in (TABLE_PARTITION_KEY, TABLE_SORT_KEY, GSI1_PARTITION_KEY, GSI1_SORT_KEY)
    ]


def table_global_secondary_indexes() -> list[dict[str, Any]]:
    return [
        {
            "IndexName": GSI1_NAME,
            "KeySchema": [
                {"AttributeName": GSI1_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": GSI1_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]


def create_table_request(table_name: str) -> dict[str, Any]:
    """Arguments of DynamoDB ``CreateTable`` for the service's table (on-demand billing)."""
    return {
        "TableName": table_name,
        "KeySchema": table_key_schema(),
        "AttributeDefinitions": table_attribute_definitions(),
        "GlobalSecondaryIndexes": table_global_secondary_indexes(),
        "BillingMode": TABLE_BILLING_MODE,
    }


# --- S3: the blob bucket -----------------------------------------------------------------------------

#: Every namespace's objects live under this prefix: ``ns/<namespace id>/blobs/<content hash>``, and
#: ``ns/<namespace id>/packs/<pack id>``.
NAMESPACE_PREFIX = "ns/"


def blob_prefix(namespace_id: str) -> str:
    """Where a namespace's content-addressed bodies live."""
    return f"{NAMESPACE_PREFIX}{namespace_id}/blobs/"


def blob_key(namespace_id: str, content_hash: str) -> str:
    return f"{blob_prefix(namespace_id)}{content_hash}"


def pack_prefix(namespace_id: str) -> str:
    """Where a namespace's packs live: many small bodies in one object each (``service.core.packs``)."""
    return f"{NAMESPACE_PREFIX}{namespace_id}/packs/"


def pack_key(namespace_id: str, pack_id: str) -> str:
    return f"{pack_prefix(namespace_id)}{pack_id}"


def staging_key(namespace_id: str, upload_id: str) -> str:
    """Where a streamed body of unknown hash is assembled before it is copied to its blob key."""
    return f"{NAMESPACE_PREFIX}{namespace_id}/staging/{upload_id}"


#: IAM resource pattern of every namespace's blobs and nothing else. Staging keys are written only by the
#: service itself, under its own role, so clients' credentials never reach them.
BLOB_KEY_PATTERN = f"{blob_prefix('*')}*"
#: IAM resource pattern of every namespace's packs. Only the service writes and reads them (clients'
#: credentials never reach them: packed bodies are served through the service).
PACK_KEY_PATTERN = f"{pack_prefix('*')}*"
#: IAM resource pattern of everything the service itself writes (blobs, packs and staging).
NAMESPACE_KEY_PATTERN = f"{NAMESPACE_PREFIX}*"


#: Days after which S3 aborts a multipart upload nobody completed (and frees its parts).
ABORT_INCOMPLETE_MULTIPART_DAYS = 1
#: Versioning: every object the service verified keeps its version id, and downloads ask for that version,
#: so an object replaced behind the service's back is never served under the old hash.
BUCKET_VERSIONING: Literal["Enabled"] = "Enabled"
#: Days an object version stays after a newer one (or a delete marker) replaced it: staging objects and
#: deleted junk go then, and a verified body that was replaced stays readable this long.
NONCURRENT_VERSION_DAYS = 30


def bucket_public_access_block() -> dict[str, bool]:
    """Nothing in the bucket is ever public: clients reach objects only with credentials or signed URLs."""
    return {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


def bucket_encryption_rules() -> list[dict[str, Any]]:
    """Default encryption at rest with S3-managed keys: no KMS permissions for clients' credentials to
    carry, and presigned URLs keep working without a key policy."""
    return [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]


def bucket_cors_rules() -> list[dict[str, Any]]:
    """CORS for browser uploads and downloads through presigned URLs."""
    return [
        {
            "AllowedMethods": ["GET", "HEAD", "PUT"],
            "AllowedOrigins": ["*"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag", "x-amz-checksum-sha256", "x-amz-version-id"],
            "MaxAgeSeconds": 3600,
        }
    ]


def bucket_lifecycle_rules() -> list[dict[str, Any]]:
    return [
        {
            "ID": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_MULTIPART_DAYS},
        },
        {
            "ID": "expire-noncurrent-versions",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_VERSION_DAYS},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
    ]


# --- IAM: the role clients' temporary credentials come from -----------------------------------------

UPLOAD_ROLE_NAME = "filesync-upload"
#: Name of the role's one inline policy (``upload_role_policy``).
UPLOAD_ROLE_POLICY_NAME = "namespace-blobs"
#: Longest session the role allows; minted credentials never ask for more.
UPLOAD_ROLE_MAX_SESSION_SECONDS = 3600

#: What the role itself may do. Each minted credential narrows this with a session policy.
#: (``GetObjectVersion``: a download of exactly the version the service verified.)
UPLOAD_ROLE_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)


def upload_role_trust_policy(trusted_principal_arn: str | dict[str, Any]) -> dict[str, Any]:
    """Who may assume the upload role: the service's own principal (instance role, or an account). The
    template passes a CloudFormation expression for the instance role's ARN."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": trusted_principal_arn},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }


def upload_role_policy(bucket_arn: str) -> dict[str, Any]:
    """The most the upload role may ever do: object reads and writes of the namespaces' blobs."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "NamespaceBlobs",
                "Effect": "Allow",
                "Action": list(UPLOAD_ROLE_ACTIONS),
                "Resource": f"{bucket_arn}/{BLOB_KEY_PATTERN}",
            }
        ],
    }


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


# --- SES: the mail feedback path ---------------------------------------------------------------------

#: The events the configuration set publishes to the feedback topic (SES's event type names): what the
#: notifier reads from the queue to suppress addresses.
MAIL_FEEDBACK_EVENT_TYPES = ("bounce", "complaint")
