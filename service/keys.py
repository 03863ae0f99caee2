"""Typed application keys: what lives on the ``web.Application``, all named in one place.

Layer: composition (imported by ``app`` and ``api``). Only settings, metrics and services live here,
never raw AWS clients.
"""

from __future__ import annotations

from aiohttp import web

from service.api.server import Drain
from service.core.accounts import AccountService
from service.core.budget import ByteBudget
from service.core.credentials import CredentialService
from service.core.files import FileService
from service.core.follows import FollowService
from service.core.health import ReadinessService
from service.core.namespaces import NamespaceService
from service.core.sync import SyncService
from service.core.transfers import TransferService
from service.metrics import Metrics
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
#: Bytes of request bodies this worker holds at once (``Limits.body_budget``).
BODY_BUDGET = web.AppKey("body_budget", ByteBudget)
READINESS = web.AppKey("readiness", ReadinessService)
#: Begun when the worker starts shutting down (``service.api.server.ServiceRunner``).
DRAIN = web.AppKey("drain", Drain)
#: The OpenAPI document, built once from the route table at start-up.
OPENAPI = web.AppKey("openapi", dict)
ACCOUNTS = web.AppKey("accounts", AccountService)
NAMESPACES = web.AppKey("namespaces", NamespaceService)
CREDENTIALS = web.AppKey("credentials", CredentialService)
FILES = web.AppKey("files", FileService)
TRANSFERS = web.AppKey("transfers", TransferService)
SYNC = web.AppKey("sync", SyncService)
FOLLOWS = web.AppKey("follows", FollowService)
