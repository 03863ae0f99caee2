"""The sync client when S3 refuses its scoped credentials (the upload role revoked them after the user lost
some access, or every session issued before a moment was revoked at once): it mints new ones and carries
on; refused again, it says so in one sentence.

The emulator enforces no policy, so the refusal is injected: the fault proxy answers the client's request
with S3's 403 ``AccessDenied``.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.reliability.faultproxy import FaultProxy, Rule
from tools.sdk.client import FileSyncClient
from tools.sdk.errors import ApiError
from tools.sync.engine import SyncEngine
from tools.sync.state import StateDB

SIZE = 300 * 1024  # sent with credentials, not in a batch


@pytest.fixture
async def api(provisioned, proxy: FaultProxy, make_client, app_factory):
    """The service, and the clients' S3 traffic too, through the fault proxy."""
    settings = dataclasses.replace(
        provisioned,
        aws=dataclasses.replace(provisioned.aws, endpoint_url=proxy.url),
        s3_public_endpoint=proxy.url,
    )
    client = await make_client(app_factory(settings))
    async with FileSyncClient(str(client.make_url(""))) as sdk:
        await sdk.sign_up("alice", "correct horse battery")
        await sdk.log_in("alice", "correct horse battery")
        yield sdk


async def _two_devices(api: FileSyncClient, tmp_path) -> tuple[str, bytes, SyncEngine]:
    ns = (await api.account()).home_namespace
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    data = os.urandom(SIZE)
    (first / "doc.bin").write_bytes(data)
    await SyncEngine(api, ns, first, StateDB(tmp_path / "first.db"), device="first").sync()
    return ns, data, SyncEngine(api, ns, second, StateDB(tmp_path / "second.db"), device="second")


async def test_refused_credentials_are_renewed_once_and_the_transfer_goes_on(api, proxy, tmp_path):
    _, data, second = await _two_devices(api, tmp_path)
    minted = proxy.requests[("sts", "AssumeRole")]
    proxy.add(Rule("error", service="s3", operation="GetObject", first=1, status=403))
    report = await second.sync()
    assert report.downloaded == 1
    assert (tmp_path / "second" / "doc.bin").read_bytes() == data
    assert proxy.injected[("s3", "GetObject", "error")] == 1
    assert proxy.requests[("sts", "AssumeRole")] == minted + 2  # the round's credentials, then new ones


async def test_credentials_refused_again_end_the_round_with_one_sentence(api, proxy, tmp_path):
    _, _, second = await _two_devices(api, tmp_path)
    proxy.add(Rule("error", service="s3", operation="GetObject", first=2, status=403))
    with pytest.raises(ApiError) as refused:
        await second.sync()
    assert refused.value.title == "Storage refused"
    assert "AccessDenied" in refused.value.detail
