"""The SDK's own S3 requests are signed exactly as AWS's SDK signs them (SigV4): botocore's signer, fed the same
request and clock, is the oracle. (The emulator checks no signature, so this is where a mistake would show.)"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from service.wire import AwsCredentials
from tools.sdk.s3 import EMPTY_SHA256, sign

CREDS = AwsCredentials(
    access_key_id="ASIAEXAMPLEKEY",
    secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    session_token="FwoGZXIvYXdzEXAMPLE+token/with=padding==",
    expiration="2026-01-01T00:00:00Z",
    bucket="filesync-blobs",
    region="eu-west-3",
    endpoint_url=None,
    grants=[],
)
NOW = datetime(2026, 11, 29, 16, 5, 7, tzinfo=UTC)


def botocore_headers(method: str, url: str, headers: dict[str, str], payload: str) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.context["timestamp"] = NOW.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    request.headers["X-Amz-Content-SHA256"] = payload
    request.headers["X-Amz-Security-Token"] = CREDS.session_token
    auth = S3SigV4Auth(
        Credentials(CREDS.access_key_id, CREDS.secret_access_key, CREDS.session_token), "s3", CREDS.region
    )
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    return {"signed": auth.signed_headers(auth.headers_to_sign(request)), "signature": signature}


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "payload"),
    [
        # UploadPart: the checksum and the block's digest as the payload hash.
        (
            "PUT",
            "/ns/q3kab/blobs/" + "a" * 64 + "-2",
            [("partNumber", "2"), ("uploadId", "2~Ab/cd+ef=")],
            {"x-amz-checksum-sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},
            hashlib.sha256(b"block").hexdigest(),
        ),
        # CreateMultipartUpload: a parameter with no value.
        (
            "POST",
            "/ns/q3kab/blobs/" + "b" * 64,
            [("uploads", "")],
            {"x-amz-checksum-algorithm": "SHA256"},
            EMPTY_SHA256,
        ),
        # A pinned ranged GET, and a conditional create.
        (
            "GET",
            "/ns/q3kab/blobs/x",
            [("versionId", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")],
            {"Range": "bytes=0-8388607"},
            EMPTY_SHA256,
        ),
        ("PUT", "/ns/q3kab/blobs/y", [], {"If-None-Match": "*", "x-amz-checksum-sha256": "AAAA"}, EMPTY_SHA256),
    ],
)
def test_the_signature_is_botocores(method, path, query, headers, payload):
    from urllib.parse import quote

    host = f"{CREDS.bucket}.s3.{CREDS.region}.amazonaws.com"
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query)
    canonical_query = "&".join(f"{k}={v}" for k, v in encoded)
    ours = sign(CREDS, method, host, path, canonical_query, headers, payload, NOW)
    url = f"https://{host}{path}" + ("?" + "&".join(f"{k}={v}" for k, v in encoded) if encoded else "")
    theirs = botocore_headers(method, url, headers, payload)
    scope = f"{NOW:%Y%m%d}/{CREDS.region}/s3/aws4_request"
    assert ours["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={CREDS.access_key_id}/{scope}, "
        f"SignedHeaders={theirs['signed']}, Signature={theirs['signature']}"
    )
    assert ours["x-amz-date"] == "20261129T160507Z"
    assert ours["x-amz-security-token"] == CREDS.session_token
    assert ours["x-amz-content-sha256"] == payload


def test_s3_answers_are_read_as_s3_writes_them():
    """Whitespace S3 sends ahead of a long completion's document; an error document in a 200's body; a HEAD's
    or a proxy's error without one (the status is the code)."""
    from tools.sdk.s3 import _error, _local, _parse, _required

    done = _parse(
        200,
        b'  \n \n<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ETag>"abc-2"</ETag></CompleteMultipartUploadResult>',
    )
    assert _local(done.tag) == "CompleteMultipartUploadResult"
    assert _required(done, "ETag") == '"abc-2"'
    refused = _error(
        200, b"\n<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
    )
    assert (refused.status, refused.code, refused.message) == (
        200,
        "InternalError",
        "We encountered an internal error.",
    )
    bare = _error(404, b"")
    assert (bare.code, bare.message) == ("404", "HTTP 404")
    page = _error(502, b"<html><body>Bad gateway</body></html>")
    assert (page.status, page.code) == (502, "502")
