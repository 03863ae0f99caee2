"""The core speaks its own language: S3's and IAM's vocabulary (operation names, ``Bucket``/``Key`` dicts,
part dicts, policy JSON) stays in the AWS adapters; the core's ports are named by intent and take records of
its own (``presign_put``, ``presign_part``, ``presign_get``, ``UploadedPart``)."""

from __future__ import annotations

import re
from pathlib import Path

from service.aws import policies
from service.core import transfers
from service.resources import UPLOAD_ROLE_ACTIONS

CORE = Path(__file__).resolve().parents[2] / "service" / "core"
AWS_WORDS = re.compile(
    r"""["'](Bucket|Key|PartNumber|ETag|UploadId|ChecksumSHA256|Statement|Effect|Action|Resource|Condition)["']"""
    r"|\bs3:[A-Za-z*]|\bsts:[A-Za-z]"
    r"|\b(put_object|get_object|head_object|upload_part|create_multipart_upload|complete_multipart_upload"
    r"|generate_presigned_url|assume_role|put_role_policy)\b"
)


def test_no_s3_or_iam_vocabulary_in_the_core():
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(CORE.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if AWS_WORDS.search(line)
    ]
    assert found == []


def test_the_transfer_port_is_named_by_intent():
    port = {name for name in dir(transfers.BlobTransfer) if not name.startswith("_")}
    assert {"presign_put", "presign_part", "presign_get", "complete_upload"} <= port
    assert "presign" not in port


def test_a_session_grants_at_most_what_the_upload_role_may_do():
    assert policies.WRITE_ACTIONS == UPLOAD_ROLE_ACTIONS
    assert set(policies.READ_ACTIONS) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert set(policies.READ_ACTIONS) < set(UPLOAD_ROLE_ACTIONS)
