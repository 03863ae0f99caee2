"""The rendered template, once per test session (rendering and parsing take a fraction of a second)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cloudformation.__main__ import render


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return orjson.loads(render("json"))
