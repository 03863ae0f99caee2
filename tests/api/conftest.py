"""Fixtures of the API tests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.api.files_helpers import home
from tests.api.helpers import user


@pytest.fixture
async def alice(client):
    """A signed-up user's bearer headers and home namespace."""
    headers = await user(client, "alice")
    return headers, await home(client, headers)


@pytest.fixture
async def quiet(provisioned, make_client, app_factory):
    """Alice's client, headers and home namespace on an app whose revocation poller stays out of request
    counts (it polls once, at start)."""
    settings = replace(provisioned, auth=replace(provisioned.auth, revocation_poll_seconds=3600))
    client = await make_client(app_factory(settings))
    headers = await user(client, "alice")
    return client, headers, await home(client, headers)
