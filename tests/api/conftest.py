"""Fixtures of the API tests."""

from __future__ import annotations

import pytest

from tests.api.files_helpers import home
from tests.api.helpers import user


@pytest.fixture
async def alice(client):
    """A signed-up user's bearer headers and home namespace."""
    headers = await user(client, "alice")
    return headers, await home(client, headers)
