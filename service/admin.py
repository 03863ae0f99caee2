"""Administration commands: ``python -m service users add|disable|enable NAME``, ``users quota NAME SIZE``,
``folders backfill NS...``.

Layer: composition. These act on the configured AWS resources directly (they need AWS settings: the
embedded default's data lives inside its own process, where sign-up is open instead).
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys

from service.aws.clients import open_clients
from service.aws.files import DynamoFileStore
from service.aws.usage import read_usage, write_quota
from service.core.accounts import normalize_username
from service.core.errors import FileSyncError, NotFound
from service.metrics import Metrics
from service.settings import Settings, password_from_env
from service.wiring import build_services

#: Units ``users quota`` takes (a bare number is bytes).
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int | None:
    """``SIZE`` of ``users quota``: bytes with an optional unit (``500MB``, ``10GiB``), ``0`` or ``unlimited``
    for no limit, ``default`` (None) for the deployment's default."""
    text = text.strip().lower()
    if text == "default":
        return None
    if text in ("unlimited", "none"):
        return 0
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not found or found.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with kB, MB, GB, TB, KiB, MiB, GiB, TiB")
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def run_users_command(settings: Settings, action: str, name: str, size: str | None = None) -> int:
    if settings.backend != "aws":
        sys.stderr.write(
            "error: `users` commands need AWS settings (AWS_REGION or AWS_ENDPOINT_URL, FILESYNC_TABLE...); "
            "with the embedded default, sign up through POST /v1/auth/signup instead\n"
        )
        return 2
    password = _password() if action == "add" else ""
    try:
        quota = parse_size(size) if action == "quota" and size is not None else None
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        if action == "quota":
            message = asyncio.run(_quota(settings, name, quota))
        else:
            message = asyncio.run(_users(settings, action, name, password))
    except FileSyncError as exc:
        sys.stderr.write(f"error: {exc.detail}\n")
        return 1
    sys.stdout.write(message + "\n")
    return 0


def _password() -> str:
    from_env = password_from_env()
    if from_env:
        return from_env
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("error: the passwords differ")
    return first


async def _users(settings: Settings, action: str, name: str, password: str) -> str:
    async with open_clients(settings.aws, Metrics()) as clients:
        accounts = build_services(settings, clients).accounts
        if action == "add":
            user = await accounts.add_user(name, password)
            return f"created {user.username} (home namespace {user.home_namespace})"
        await accounts.set_disabled(name, action == "disable")
        return f"{action}d {name}"


async def _quota(settings: Settings, name: str, quota: int | None) -> str:
    username = normalize_username(name, "NAME")
    async with open_clients(settings.aws, Metrics()) as clients:
        if not await write_quota(clients.dynamodb, settings.table, username, quota):
            raise NotFound(f"No user {username!r}.")
        usage = await read_usage(clients.dynamodb, settings.table, username)
    limit = usage.limit(settings.files.default_quota)
    told = "no limit" if limit == 0 else f"{limit:,} bytes"
    source = " (the default)" if quota is None else ""
    return f"{username}: quota {told}{source}; {usage.used:,} bytes used"


def run_folders_command(settings: Settings, namespaces: list[str]) -> int:
    """``folders backfill NS...``: the folder markers of files committed before the service wrote them, so
    the file/folder check sees every folder (a commit writes the markers it finds missing; this does all),
    and those files' entries in the children index, so non-recursive listings read children only."""
    if settings.backend != "aws":
        sys.stderr.write(
            "error: `folders` commands need AWS settings (AWS_REGION or AWS_ENDPOINT_URL, FILESYNC_TABLE...); "
            "the embedded default's data is written with its markers\n"
        )
        return 2
    try:
        lines = asyncio.run(_backfill(settings, namespaces))
    except FileSyncError as exc:
        sys.stderr.write(f"error: {exc.detail}\n")
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


async def _backfill(settings: Settings, namespaces: list[str]) -> list[str]:
    lines = []
    async with open_clients(settings.aws, Metrics()) as clients:
        store = DynamoFileStore(clients.dynamodb, settings.table)
        for ns in namespaces:
            files, markers = await store.backfill_folders(ns)
            indexed = await store.backfill_children(ns)
            trashed = await store.backfill_trash(ns)
            lines.append(
                f"{ns}: {files} live files seen, {markers} folder markers written, "
                f"{indexed} files put in the children index, {trashed} deleted files in the trash"
            )
    return lines
