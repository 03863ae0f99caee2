"""Shared fixtures: one moto server for the session, fresh resource names per test, apps over real HTTP.

No test talks to AWS: an autouse fixture strips the developer's ``AWS_*`` (and our ``FILESYNC_*``)
variables, and every client points at the session's moto server. Each test gets its own bucket and table
names, so tests never see each other's data and need no reset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aioboto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.aws.clients import make_session
from service.embedded import provision_emulator, run_emulator
from service.logs import AccessLogger
from service.settings import AuthSettings, FileSettings, NotifySettings, Settings

#: Open sign-up, and argon2 parameters cheap enough for hundreds of logins per run.
FAST_AUTH = AuthSettings(
    open_signup=True,
    argon2_time_cost=1,
    argon2_memory_kib=8192,
    argon2_parallelism=1,
    revocation_poll_seconds=0.2,
)

#: The smallest block S3 allows, so multi-block tests stay small.
TEST_BLOCK_SIZE = 5 * 1024 * 1024

_STRIPPED_PREFIXES = ("AWS_", "FILESYNC_")
_STRIPPED_NAMES = ("PORT", "WEB_CONCURRENCY", "BOTO_CONFIG")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_STRIPPED_PREFIXES) or name in _STRIPPED_NAMES:
            monkeypatch.delenv(name)
    # botocore must not find a developer's ~/.aws files either.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


#: The session's emulator, for helpers that are not fixtures (``endpoint``, once started).
EMULATOR: dict[str, str] = {}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port in a process of its own, shared by the whole session."""
    with run_emulator() as endpoint:
        EMULATOR["endpoint"] = endpoint
        yield endpoint


@pytest.fixture(scope="session")
def aws_session(moto_endpoint: str) -> aioboto3.Session:
    """One botocore session for the run: service models load once, not per test."""
    return make_session(Settings().for_emulator(moto_endpoint).aws)


@pytest.fixture
def settings(moto_endpoint: str) -> Settings:
    """Settings pointed at the session's emulator, with names unique to this test."""
    suffix = uuid.uuid4().hex[:12]
    return Settings(
        bucket=f"filesync-test-{suffix}",
        table=f"filesync-test-{suffix}",
        log_format="text",
        auth=FAST_AUTH,
        files=FileSettings(block_size=TEST_BLOCK_SIZE),
        notify=NotifySettings(in_process=False),  # tests that want a notifier run one of their own
    ).for_emulator(moto_endpoint)


@pytest.fixture
async def provisioned(settings: Settings, aws_session: aioboto3.Session) -> Settings:
    """``settings`` after the bucket, table, role and sender exist in the emulator."""
    return await provision_emulator(settings, aws_session)


AppClient = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[AppClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Serve an app on a real loopback socket and return an HTTP client for it."""
    clients: list[AppClient] = []

    async def make(app: web.Application) -> AppClient:
        server = TestServer(app)
        await server.start_server(access_log_class=AccessLogger)
        client: AppClient = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def app_factory(aws_session: aioboto3.Session) -> Callable[[Settings], web.Application]:
    """``create_app`` sharing the run's botocore session."""
    return lambda settings: create_app(settings, session=aws_session)


@pytest.fixture
async def client(
    provisioned: Settings,
    make_client: MakeClient,
    app_factory: Callable[[Settings], web.Application],
) -> AppClient:
    """The service, provisioned and served over HTTP."""
    return await make_client(app_factory(provisioned))
