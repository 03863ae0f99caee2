"""A registry of the multipart uploads the service started, so abandoned ones get aborted.

Layer: aws. Each upload is an item in one partition, sorted by start time; finishing or aborting removes
it. ``sweep`` aborts (and forgets) those older than a cut-off. The bucket's lifecycle rule aborts any
incomplete upload after a day as a second line of defence.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from service import resources
from service.aws.errors import unavailable_on_transient
from service.core.models import UploadRecord

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)
PK, SK = resources.TABLE_PARTITION_KEY, resources.TABLE_SORT_KEY
PARTITION = "UPLOADS"


class DynamoUploadRegistry:
    def __init__(self, dynamodb: DynamoDBClient, s3: S3Client, table: str, bucket: str) -> None:
        self._db = dynamodb
        self._s3 = s3
        self._table = table
        self._bucket = bucket

    async def started(self, upload_id: str, key: str, namespace: str, content_hash: str) -> UploadRecord:
        now = time.time()
        sort_key = f"{now:017.6f}#{upload_id}"
        with unavailable_on_transient("DynamoDB"):
            await self._db.put_item(
                TableName=self._table,
                Item={
                    PK: {"S": PARTITION},
                    SK: {"S": sort_key},
                    "gsi1pk": {"S": f"UPLOAD#{upload_id}"},
                    "gsi1sk": {"S": "UPLOAD"},
                    "upload_id": {"S": upload_id},
                    "key": {"S": key},
                    "namespace": {"S": namespace},
                    "content_hash": {"S": content_hash},
                    "started_at": {"N": str(now)},
                },
            )
        return UploadRecord(upload_id, key, namespace, content_hash, now, sort_key)

    async def find(self, upload_id: str) -> UploadRecord | None:
        with unavailable_on_transient("DynamoDB"):
            page = await self._db.query(
                TableName=self._table,
                IndexName=resources.GSI1_NAME,
                KeyConditionExpression="gsi1pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"UPLOAD#{upload_id[:1024]}"}},
            )
        items = page.get("Items", [])
        return _record(items[0]) if items else None

    async def finished(self, record: UploadRecord) -> None:
        with unavailable_on_transient("DynamoDB"):
            await self._db.delete_item(TableName=self._table, Key={PK: {"S": PARTITION}, SK: {"S": record.sort_key}})

    async def sweep(self, older_than_seconds: float) -> int:
        """Abort and forget uploads started more than ``older_than_seconds`` ago; how many."""
        cutoff = f"{time.time() - older_than_seconds:017.6f}"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND #sk < :cutoff",
            "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
            "ExpressionAttributeValues": {":pk": {"S": PARTITION}, ":cutoff": {"S": cutoff}},
        }
        swept = 0
        while True:
            page = await self._db.query(**kwargs)
            for item in page.get("Items", []):
                record = _record(item)
                try:
                    await self._s3.abort_multipart_upload(
                        Bucket=self._bucket, Key=record.key, UploadId=record.upload_id
                    )
                except Exception:
                    log.info("upload %s was already gone", record.upload_id)
                await self.finished(record)
                swept += 1
            if "LastEvaluatedKey" not in page:
                return swept
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _record(item: dict[str, Any]) -> UploadRecord:
    return UploadRecord(
        upload_id=item["upload_id"]["S"],
        key=item["key"]["S"],
        namespace=item["namespace"]["S"],
        content_hash=item["content_hash"]["S"],
        started_at=float(item["started_at"]["N"]),
        sort_key=item[SK]["S"],
    )
