"""Background work has an idle budget: an idle service (the embedded default's shape: a notifier in the
process, token revocations followed) makes a fixed number of DynamoDB requests a second, whatever the number
of notifier shards. Counted from the service's own /metrics, with every interval shrunk so a lease lasts 3 s
(long enough that a loaded machine's stalls do not let leases lapse, which would be work, not idleness).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from service.core.digests import DigestRules
from service.core.notify import NotifierConfig, idle_requests_per_second
from service.settings import NotifySettings
from tools.bench.compare import sample

LEASE = 3.0
REVOCATION_POLL = 0.2


async def dynamodb_requests(client, operation: str | None = None) -> float:
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    labels = {"service": "dynamodb", **({"operation": operation} if operation else {})}
    return sample(text, "filesync_aws_requests_total", **labels)


@pytest.mark.parametrize("shards", [4, 64])
async def test_an_idle_service_makes_a_fixed_number_of_store_requests_a_second_whatever_the_shards(
    provisioned, make_client, app_factory, shards
):
    notify = NotifySettings(
        shards=shards, lease_seconds=LEASE, tick_seconds=0.05, window_seconds=2 * LEASE, in_process=True
    )
    settings = dataclasses.replace(
        provisioned,
        notify=notify,
        auth=dataclasses.replace(provisioned.auth, revocation_poll_seconds=REVOCATION_POLL),
    )
    client = await make_client(app_factory(settings))
    # Settled: every shard taken (one PutItem each), and the leases renewed once since (the second write of
    # heartbeat and leases): from here on the notifier only keeps what it holds.
    deadline = time.monotonic() + 30
    while (
        await dynamodb_requests(client, "PutItem") < shards or await dynamodb_requests(client, "TransactWriteItems") < 2
    ):
        assert time.monotonic() < deadline, "the notifier did not take its shards"
        await asyncio.sleep(0.05)

    before, started = await dynamodb_requests(client), time.monotonic()
    await asyncio.sleep(2 * LEASE)
    made, elapsed = await dynamodb_requests(client) - before, time.monotonic() - started

    config = NotifierConfig(shards, LEASE, 0.05, DigestRules(2 * LEASE, 24, 50), "", "")
    budget = idle_requests_per_second(config) + 1 / REVOCATION_POLL  # 14 a second here, with 4 or 64 shards
    # Each periodic read or write may fall once more at either edge of the measured span.
    assert made <= budget * elapsed + 5, f"{made:.0f} requests in {elapsed:.2f} s: {made / elapsed:.1f}/s"
    assert made >= 0.5 * budget * elapsed, "the background work is not running"
