"""The rendered template, once per test session (rendering and parsing take a fraction of a second), and
boto3 clients of the emulator for the deployment tests."""

from __future__ import annotations

from typing import Any

import boto3
import orjson
import pytest

from cloudformation.__main__ import render
from service.settings import EMULATOR_ACCESS_KEY, EMULATOR_REGION


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return orjson.loads(render("json"))


@pytest.fixture
def aws(moto_endpoint):
    """boto3 clients of the session's emulator, by service name."""

    def client(name: str):
        return boto3.client(
            name,
            endpoint_url=moto_endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id=EMULATOR_ACCESS_KEY,
            aws_secret_access_key=EMULATOR_ACCESS_KEY,
        )

    return client
