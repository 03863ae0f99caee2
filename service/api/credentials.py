"""Temporary AWS credentials for direct uploads to and downloads from S3.

Layer: api.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from service.api.bodies import read_json
from service.api.responses import json_response
from service.api.security import authenticate
from service.keys import CREDENTIALS, SETTINGS
from service.wire import AwsCredentials, CredentialsRequest, Grant


async def post_credentials(request: web.Request) -> web.Response:
    """Mint STS credentials that can write only the caller's writable namespaces and read its readable
    ones. An empty body covers every namespace of the caller for the default duration."""
    principal = authenticate(request)
    body = await read_json(request, CredentialsRequest) if request.body_exists else CredentialsRequest()
    grant = await request.app[CREDENTIALS].mint(principal, body.namespaces, body.duration_seconds)
    settings = request.app[SETTINGS]
    creds = grant.credentials
    return json_response(
        AwsCredentials(
            access_key_id=creds.access_key_id,
            secret_access_key=creds.secret_access_key,
            session_token=creds.session_token,
            expiration=datetime.fromtimestamp(creds.expiration, UTC).isoformat().replace("+00:00", "Z"),
            bucket=settings.bucket,
            region=settings.aws.region,
            endpoint_url=settings.s3_public_endpoint,
            grants=[Grant(namespace=g.namespace_id, prefix=g.prefix, access=g.access) for g in grant.grants],
        )
    )
