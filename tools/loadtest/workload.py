"""The scenarios, over the project's SDK (the client paths real users take), and the users and data they
need, set up by the tool itself against any server.

Layer: tools. Imports ``tools.sdk`` and the service's pure rules (``service.paths``, ``service.content``)
as the SDK does; never the service's internals. Setup signs up ``users`` accounts (or logs in to existing
ones), has the first create a shared namespace seeded with ``seed_files`` files (one blob, deduplicated) in
ten folders that every user can read, opens each user's S3 client (once per session, as a client does) and
warms every scenario of the mix up once (unrecorded), so the first timed requests do not pay for loading
code. Uploads go to each user's home namespace, so the seeded namespace, and what compare and listing
cost, stays the same for the whole run.

Each scenario checks its answer (a compare of the unchanged seed must find everything up to date, a
download must hash to the seeded content): a wrong answer under load is an error (``WrongAnswer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from yarl import URL

from service.content import digest_bytes
from tools.loadtest.data import FOLDERS, compare_pages, folder_sizes, seed_paths
from tools.loadtest.mix import Mix
from tools.loadtest.runner import Op, Picker
from tools.loadtest.target import check_target
from tools.sdk.client import FileSyncClient
from tools.sdk.errors import ApiError
from tools.sdk.hashing import hash_file
from tools.sdk.transfer import S3Transfer

#: Files in one ``upload_batch`` request.
BATCH_FILES = 20
#: Refresh a token or credentials this long before they expire.
_REFRESH_MARGIN = 60.0


class WrongAnswer(Exception):
    """The service answered successfully, but not what the scenario knows to be true."""


@dataclass(frozen=True)
class WorkloadConfig:
    server: str
    users: int = 10
    password: str = "load test password"  # noqa: S105 - accounts the tool creates for itself
    prefix: str = field(default_factory=lambda: f"load-{secrets.token_hex(3)}")
    seed_files: int = 200
    file_size: int = 4096
    small_size: int = 4096
    timeout: float = 30.0
    connections: int = 100
    allow_remote: bool = False


@dataclass
class User:
    name: str
    client: FileSyncClient
    home: str = ""
    cursor: str = ""
    refresh_token: str = ""
    token_deadline: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    transfer: S3Transfer | None = None
    transfer_deadline: float = 0.0
    retired: list[S3Transfer] = field(default_factory=list)
    uploads: itertools.count[int] = field(default_factory=itertools.count)


class Workload:
    """``async with Workload(config) as w: await w.setup(mix); picker = w.picker(mix, seed)``."""

    def __init__(self, config: WorkloadConfig) -> None:
        self.config = config
        self.users: list[User] = []
        self.block_size = 0
        self.seed_ns = ""
        self.seed_paths: list[str] = []
        self.folder_sizes: dict[str, int] = {}
        self.seed_sha256 = ""
        self.compare_pages: list[dict[str, Any]] = []
        self._tmp = Path()
        self._multipart_base = b""
        self._scenarios: dict[str, Callable[[User], Awaitable[None]]] = {
            "feed": self.feed,
            "list": self.list_folder,
            "compare": self.compare,
            "download": self.download,
            "upload_small": self.upload_small,
            "upload_batch": self.upload_batch,
            "upload_multipart": self.upload_multipart,
            "credentials": self.credentials,
            "login": self.login,
        }

    async def __aenter__(self) -> Workload:
        check_target(self.config.server, self.config.allow_remote, "the server")
        self._tmp = Path(tempfile.mkdtemp(prefix="filesync-load-"))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for user in self.users:
            for transfer in [*user.retired, *([user.transfer] if user.transfer else [])]:
                with contextlib.suppress(Exception):
                    await transfer.__aexit__(None, None, None)
            await user.client.__aexit__(None, None, None)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {
            "users": len(self.users),
            "user_prefix": self.config.prefix,
            "seed_namespace": self.seed_ns,
            "seed_files": len(self.seed_paths),
            "file_size": self.config.file_size,
            "small_upload_size": self.config.small_size,
            "multipart_upload_size": self.block_size + self.config.small_size,
            "block_size": self.block_size,
        }

    # --- setup ----------------------------------------------------------------------------------------

    async def setup(self, mix: Mix, say: Callable[[str], None] = lambda _: None) -> None:
        config = self.config
        say(f"setting up {config.users} users on {config.server}")
        slots = asyncio.Semaphore(4)  # logins hash passwords: the server computes a few at a time

        for i in range(config.users):
            # Registered before any request, so that __aexit__ closes every client whatever fails.
            client = FileSyncClient(config.server, attempts=1, timeout=config.timeout, connections=config.connections)
            self.users.append(User(f"{config.prefix}-{i}", await client.__aenter__()))

        async def enrol(user: User) -> None:
            async with slots:
                try:
                    await user.client.sign_up(user.name, config.password)
                except ApiError as exc:
                    if exc.status != 409:  # an account left by an earlier run with this prefix is fine
                        raise
                await self._log_in(user)

        await asyncio.gather(*(enrol(user) for user in self.users))
        owner = self.users[0].client
        self.block_size = (await owner.config()).block_size
        for user in self.users:
            user.home = (await user.client.account()).home_namespace
            user.cursor = (await user.client.compare(user.home, {"entries": []})).cursor
        await self._seed(say)
        if {"upload_small", "upload_multipart"} & set(mix.names):
            # A client opens its S3 client once per session, not per upload: so do the users, before timing.
            await asyncio.gather(*(self._transfer(user) for user in self.users))
        for name in mix.names:
            say(f"warming up {name}")
            await self._scenarios[name](self.users[0])

    async def _seed(self, say: Callable[[str], None]) -> None:
        config = self.config
        owner = self.users[0]
        say(f"seeding a shared namespace with {config.seed_files} files")
        self.seed_ns = (await owner.client.create_namespace(f"{config.prefix} seed")).id
        for user in self.users[1:]:
            await owner.client.share(self.seed_ns, user.name, "viewer")
        body = os.urandom(config.file_size)
        self.seed_sha256 = hashlib.sha256(body).hexdigest()
        source = self._tmp / "seed.bin"
        source.write_bytes(body)
        digest = await hash_file(source, self.block_size)
        creds = await owner.client.credentials([self.seed_ns])
        check_target(creds.endpoint_url, config.allow_remote, "the S3 endpoint")
        async with S3Transfer(creds, self.block_size) as s3:
            await s3.upload(self.seed_ns, source, digest)
        self.seed_paths = seed_paths(config.seed_files)
        self.folder_sizes = folder_sizes(self.seed_paths)
        entry = {"content_hash": digest.content_hash, "size": digest.size, "mtime": 0.0}
        for start in range(0, len(self.seed_paths), 1000):
            chunk = self.seed_paths[start : start + 1000]
            result = await owner.client.commit(self.seed_ns, [{"path": p, **entry} for p in chunk])
            if any(r.status != "committed" for r in result.results):
                raise WrongAnswer("seeding: a commit of new paths conflicted")
        self.compare_pages = compare_pages(self.seed_paths, digest.content_hash)
        # Presigned downloads go to the S3 endpoint: it must be on this machine too.
        url = await owner.client.download_url(self.seed_ns, self.seed_paths[0])
        check_target(url, config.allow_remote, "the download URL")

    # --- running --------------------------------------------------------------------------------------

    def picker(self, mix: Mix, seed: int | None = None) -> Picker:
        """Each call: the next user (round robin) and a scenario drawn from ``mix``."""
        rng = random.Random(seed)  # noqa: S311 - a load pattern, not a secret
        users = itertools.cycle(self.users)

        def pick() -> tuple[str, Op]:
            name = mix.choose(rng)
            user = next(users)
            scenario = self._scenarios[name]

            async def op() -> None:
                await self._fresh(user)
                await scenario(user)

            return name, op

        return pick

    async def _log_in(self, user: User) -> None:
        started = time.monotonic()
        tokens = await user.client.log_in(user.name, self.config.password)
        user.refresh_token = tokens.refresh_token
        user.token_deadline = started + tokens.expires_in - _REFRESH_MARGIN

    async def _fresh(self, user: User) -> None:
        """Refresh the access token before it expires: long runs outlive a token. One refresh at a time
        per user, since presenting an already-rotated refresh token ends the session."""
        if time.monotonic() < user.token_deadline:
            return
        async with user.lock:
            if time.monotonic() < user.token_deadline:
                return
            started = time.monotonic()
            tokens = await user.client.refresh(user.refresh_token)
            user.refresh_token = tokens.refresh_token
            user.token_deadline = started + tokens.expires_in - _REFRESH_MARGIN

    async def _transfer(self, user: User) -> S3Transfer:
        """The user's S3 client with scoped credentials for its home, minted again before they expire."""
        if user.transfer is not None and time.monotonic() < user.transfer_deadline:
            return user.transfer
        async with user.lock:
            if user.transfer is None or time.monotonic() >= user.transfer_deadline:
                started = time.monotonic()
                creds = await user.client.credentials([user.home])
                check_target(creds.endpoint_url, self.config.allow_remote, "the S3 endpoint")
                expires = datetime.fromisoformat(creds.expiration.replace("Z", "+00:00")).timestamp()
                transfer = S3Transfer(creds, self.block_size, concurrency=4)
                await transfer.__aenter__()
                if user.transfer is not None:
                    user.retired.append(user.transfer)  # requests may still be using it
                user.transfer = transfer
                user.transfer_deadline = started + (expires - time.time()) - _REFRESH_MARGIN
            return user.transfer

    # --- the scenarios --------------------------------------------------------------------------------

    async def feed(self, user: User) -> None:
        """A change-feed poll of the user's home namespace (mostly answered "no change")."""
        page = await user.client.changes(user.home, user.cursor, wait=0, limit=100)
        user.cursor = page.cursor

    async def list_folder(self, user: User) -> None:
        """A listing of one folder of the seeded namespace."""
        folder = f"dir{random.randrange(FOLDERS):02d}"  # noqa: S311
        files = await user.client.list_files(self.seed_ns, folder=folder, recursive=False)
        if len(files) != self.folder_sizes.get(folder, 0):
            raise WrongAnswer(f"list: {len(files)} files in {folder}")

    async def compare(self, user: User) -> None:
        """A compare of the full manifest of the seeded namespace, every entry up to date."""
        for page in self.compare_pages:
            answer = await user.client.compare(self.seed_ns, page)
            if answer.items or answer.up_to_date != len(page["entries"]):
                raise WrongAnswer(f"compare: {len(answer.items)} items need action, expected none")

    async def download(self, user: User) -> None:
        """A download of a seeded file: the service's redirect, then the body from S3."""
        path = random.choice(self.seed_paths)  # noqa: S311
        url = await user.client.download_url(self.seed_ns, path)
        async with user.client.session.get(URL(url, encoded=True)) as response:
            response.raise_for_status()
            body = await response.read()
        if hashlib.sha256(body).hexdigest() != self.seed_sha256:
            raise WrongAnswer(f"download: {path} is not the seeded content")

    async def upload_small(self, user: User) -> None:
        """A new small file: hash, check what the namespace lacks, put straight to S3, commit."""
        await self._upload(user, os.urandom(self.config.small_size))

    async def upload_batch(self, user: User) -> None:
        """Twenty new small files in one request, bodies and commit together (``files:batch``), as the sync
        client sends small files."""
        bodies = [os.urandom(self.config.small_size) for _ in range(BATCH_FILES)]
        entries = []
        for data in bodies:
            number = next(user.uploads)
            digest = digest_bytes(data, self.block_size)
            entries.append(
                {"path": f"load/{number:07d}.bin", "content_hash": digest.content_hash, "size": len(data), "mtime": 1.0}
            )
        result = await user.client.upload_batch(user.home, entries, bodies)
        conflicted = [r for r in result.results if r.status != "committed"]
        if conflicted:
            raise WrongAnswer(f"upload_batch: {len(conflicted)} new paths conflicted ({conflicted[0].reason})")

    async def upload_multipart(self, user: User) -> None:
        """A new file of two blocks: a multipart upload straight to S3 (parts concurrent), then commit."""
        if not self._multipart_base:
            self._multipart_base = os.urandom(self.block_size)
        await self._upload(user, self._multipart_base + os.urandom(self.config.small_size))

    async def _upload(self, user: User, body: bytes) -> None:
        number = next(user.uploads)
        source = self._tmp / f"{user.name}-{number}.bin"
        await asyncio.to_thread(source.write_bytes, body)
        try:
            digest = await hash_file(source, self.block_size)
            transfer = await self._transfer(user)
            if await user.client.missing(user.home, [digest.content_hash]):
                await transfer.upload(user.home, source, digest)
            entry = {"path": f"load/{number:07d}.bin", "content_hash": digest.content_hash, "size": len(body)}
            result = await user.client.commit(user.home, [{**entry, "mtime": time.time()}])
            if result.results[0].status != "committed":
                raise WrongAnswer(f"upload: a new path conflicted ({result.results[0].reason})")
        finally:
            await asyncio.to_thread(source.unlink, missing_ok=True)

    async def credentials(self, user: User) -> None:
        """Scoped STS credentials for the user's home namespace."""
        await user.client.credentials([user.home])

    async def login(self, user: User) -> None:
        """A password login (argon2id on the server): a new session and tokens."""
        await self._log_in(user)
