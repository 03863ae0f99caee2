"""Production logs are JSON lines carrying the request id; the access log has one line per request."""

from __future__ import annotations

import logging

import orjson
import pytest

from service.logs import REQUEST_ID, configure_logging


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_id(capsys, restore_root_logging):
    configure_logging("json", "INFO")
    token = REQUEST_ID.set("req-77")
    try:
        logging.getLogger("service.core.files").info("committed %d files", 3, extra={"namespace": "ns1"})
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("service.x").info("outside a request")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "committed 3 files"
    assert lines[0]["request_id"] == "req-77"
    assert lines[0]["level"] == "INFO"
    assert lines[0]["name"] == "service.core.files"
    assert lines[0]["namespace"] == "ns1"
    assert "time" in lines[0]
    assert lines[1]["request_id"] == "-"


async def test_access_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        response = await client.get("/healthz", headers={"X-Request-ID": "abc-1"})
        assert response.status == 200
    record = next(r for r in caplog.records if r.name == "aiohttp.access")
    assert record.request_id == "abc-1"
    assert record.status == 200
    assert record.path == "/healthz"
