"""The composition root: ``create_app(settings)`` wires the whole service.

Layer: composition (may import every layer). ``python -m service`` and gunicorn both call it; nothing
here does I/O at import time. Resources are opened in ``cleanup_ctx``, one resource per context, and
closed in reverse order at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aioboto3
from aiohttp import web

from service.api.middlewares import MIDDLEWARES, close_when_draining, stamp_request_id
from service.api.openapi import build_openapi
from service.api.routes import OPERATIONS, add_routes
from service.api.server import Drain, ServiceRunner
from service.aws.clients import AwsClients, make_session, open_clients
from service.aws.health import readiness_probes
from service.core import revocations
from service.core.budget import ByteBudget
from service.core.health import ReadinessService
from service.keys import (
    ACCOUNTS,
    BODY_BUDGET,
    CREDENTIALS,
    DRAIN,
    FILES,
    FOLLOWS,
    METRICS,
    NAMESPACES,
    OPENAPI,
    READINESS,
    SETTINGS,
    SYNC,
    TRANSFERS,
)
from service.logs import AccessLogger, configure_logging
from service.memory import HeapTrimmer
from service.metrics import Metrics
from service.settings import Settings, SettingsError
from service.wiring import Services, build_feedback_consumer, build_notifier, build_services, public_url

log = logging.getLogger(__name__)

TITLE = "filesync"
VERSION = "0.1.0"

_SESSION = web.AppKey("aws_session", aioboto3.Session)
_CLIENTS = web.AppKey("aws_clients", AwsClients)


def create_app(settings: Settings, *, session: aioboto3.Session | None = None) -> web.Application:
    """Build the application for ``settings``. AWS clients open when the app starts.

    ``session`` lets several apps in one process (the tests) share botocore's loaded service models;
    by default the app makes its own, the one session of its process.
    """
    app = web.Application(
        middlewares=MIDDLEWARES,
        client_max_size=settings.limits.max_json_body,
        # Whatever runs the app (gunicorn, python -m service, the tests): bodies arrive as sent (the readers
        # inflate what they accept, within their limits: service.api.bodies), idle connections close in time.
        handler_args={"auto_decompress": False, "keepalive_timeout": settings.limits.keepalive_seconds},
    )
    app.on_response_prepare.append(stamp_request_id)
    app.on_response_prepare.append(close_when_draining)
    app[DRAIN] = Drain()
    # Runners without a drain phase (the tests' servers) still end long-polls when shutdown begins.
    app.on_shutdown.append(_begin_drain)
    app[SETTINGS] = settings
    app[BODY_BUDGET] = ByteBudget(settings.limits.body_budget, on_drained=HeapTrimmer())
    app[_SESSION] = session or make_session(settings.aws)
    app[METRICS] = Metrics(settings.metrics_dir)
    app[OPENAPI] = build_openapi(OPERATIONS, title=TITLE, version=VERSION)
    app.cleanup_ctx.append(_aws_clients)
    app.cleanup_ctx.append(_readiness)
    app.cleanup_ctx.append(_services)
    if settings.notify.in_process:
        app.cleanup_ctx.append(_notifier)
    add_routes(app)
    return app


async def _begin_drain(app: web.Application) -> None:
    app[DRAIN].begin()


@asynccontextmanager
async def _aws_clients(app: web.Application) -> AsyncIterator[None]:
    async with open_clients(app[SETTINGS].aws, app[METRICS], app[_SESSION]) as clients:
        app[_CLIENTS] = clients
        yield


@asynccontextmanager
async def _readiness(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[READINESS] = ReadinessService(
        readiness_probes(app[_CLIENTS], settings.bucket, settings.table),
        cache_seconds=settings.readiness_cache_seconds,
        timeout_seconds=settings.readiness_timeout_seconds,
    )
    yield


@asynccontextmanager
async def _services(app: web.Application) -> AsyncIterator[None]:
    """The domain services, and the background task that follows token revocations."""
    settings = app[SETTINGS]
    services = build_services(settings, app[_CLIENTS], metrics=app[METRICS])
    app[ACCOUNTS] = services.accounts
    app[NAMESPACES] = services.namespaces
    app[CREDENTIALS] = services.credentials
    app[FILES] = services.files
    app[TRANSFERS] = services.transfers
    app[SYNC] = services.sync
    app[FOLLOWS] = services.follows

    app[DRAIN].on_begin(services.watcher.release_all)
    sweeper = asyncio.create_task(
        _sweep_uploads(services, settings.files.upload_sweep_seconds, settings.files.abandoned_upload_seconds),
        name="upload-sweeper",
    )
    follower = asyncio.create_task(
        revocations.follow(
            services.revocation_feed,
            services.revoked,
            interval=settings.auth.revocation_poll_seconds,
            lookback=settings.auth.access_token_seconds + 60,
        ),
        name="revocation-follower",
    )
    yield
    for task in (follower, sweeper):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await services.watcher.close()


@asynccontextmanager
async def _notifier(app: web.Application) -> AsyncIterator[None]:
    """A notifier in this process (the embedded default); it shares the work with any others by lease, and
    reads the mail feedback queue if there is one."""
    notifier = build_notifier(app[SETTINGS], app[_CLIENTS], metrics=app[METRICS])
    feedback = build_feedback_consumer(app[SETTINGS], app[_CLIENTS], app[METRICS])
    stop = asyncio.Event()
    tasks = [asyncio.create_task(notifier.run_until_stopped(stop), name="notifier")]
    if feedback is not None:
        tasks.append(asyncio.create_task(feedback.run(stop), name="mail-feedback"))
    yield
    stop.set()
    await asyncio.gather(*tasks)


async def _sweep_uploads(services: Services, interval: float, max_age: float) -> None:
    """Abort the multipart uploads this service started and nobody finished (every worker may sweep:
    aborting twice is harmless)."""
    while True:
        await asyncio.sleep(interval)
        try:
            swept = await services.uploads.sweep(max_age)
            if swept:
                log.info("aborted %d abandoned multipart uploads", swept)
        except Exception:
            log.warning("sweeping abandoned uploads failed; will retry", exc_info=True)


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner both entry points use: structured access log, a drain then a graceful shutdown timeout,
    a deadline on request heads."""
    settings = app[SETTINGS]
    return ServiceRunner(
        app,
        head_seconds=settings.limits.header_seconds,
        drain=app[DRAIN],
        drain_seconds=settings.drain_seconds,
        drain_linger_seconds=settings.drain_linger_seconds,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.shutdown_timeout_seconds,
    )


async def gunicorn_app() -> web.AppRunner:
    """Gunicorn's entry point (see the Procfile): settings from the environment, AWS required.

    The embedded emulator is per process, so with several workers each would hold different data;
    gunicorn therefore refuses to start without AWS settings.
    """
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    if settings.backend != "aws":
        raise SettingsError(
            "gunicorn needs AWS settings (AWS_REGION, credentials or AWS_ENDPOINT_URL, and "
            "FILESYNC_*); for a local service with an embedded emulator run `python -m service`"
        )
    if settings.notify.public_url is None:
        log.warning(
            "FILESYNC_PUBLIC_URL is not set: address confirmation mails will link to %s, where this worker "
            "listens; set it to the service's public https URL",
            public_url(settings),
        )
    return make_runner(create_app(settings))
