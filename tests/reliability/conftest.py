"""Fixtures of the reliability suite: a fault proxy in front of the session's emulator, and the service
with its AWS traffic routed through it.

The seed is fixed (``FILESYNC_FAULT_SEED`` changes it, for the longer randomized mode in
docs/reliability.md); provisioning goes straight to the emulator, only the service's own calls cross the
proxy. Clients' S3 traffic (scoped credentials) goes straight to the emulator too: the faults under test
are those between the service and AWS.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator

import pytest

from service.settings import Settings
from tests.reliability.faultproxy import FaultProxy

#: Read before the autouse fixture strips FILESYNC_* from the environment of each test.
SEED = int(os.environ.get("FILESYNC_FAULT_SEED", "20240917"))
#: Rounds of the mixed workloads; the randomized mode raises it.
ROUNDS = int(os.environ.get("FILESYNC_FAULT_ROUNDS", "1"))


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(moto_endpoint, seed=SEED) as started:
        yield started


def through(settings: Settings, proxy: FaultProxy, **aws: object) -> Settings:
    """``settings`` with the service's AWS calls going through ``proxy`` (clients still see the emulator)."""
    return dataclasses.replace(
        settings,
        aws=dataclasses.replace(settings.aws, endpoint_url=proxy.url, **aws),  # type: ignore[arg-type]
        s3_public_endpoint=settings.aws.endpoint_url,
    )


@pytest.fixture
def faulty(provisioned: Settings, proxy: FaultProxy) -> Settings:
    """Two attempts per AWS call (production makes four): enough to absorb one fault, and a persistent
    fault surfaces in a second instead of after botocore's full backoff."""
    return through(provisioned, proxy, max_attempts=2)


@pytest.fixture
async def client(faulty: Settings, make_client, app_factory):
    """The service whose every AWS call crosses the fault proxy."""
    return await make_client(app_factory(faulty))
