"""Building the domain services from settings and AWS clients: shared by the app and the admin CLI.

Layer: composition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service import resources
from service.aws.blobs import S3BlobStore
from service.aws.clients import AwsClients
from service.aws.files import DynamoFileStore, DynamoJournal
from service.aws.identity import DynamoIdentityStore, DynamoRevocationFeed
from service.aws.notify import DynamoFollowStore, DynamoNotifyStore, SesMailer
from service.aws.sts import StsCredentialVendor
from service.aws.uploads import DynamoUploadRegistry
from service.core.accounts import AccountService
from service.core.credentials import CredentialService
from service.core.digests import DigestRules
from service.core.files import FileService
from service.core.follows import FollowService, UnsubscribeSigner
from service.core.models import Follow, Membership, Namespace, User
from service.core.namespaces import NamespaceService
from service.core.notify import Mailer, Notifier, NotifierConfig
from service.core.passwords import PasswordHasher
from service.core.revocations import RevocationList
from service.core.sync import HeadWatcher, SyncService
from service.core.throttle import LoginThrottle
from service.core.tokens import TokenService
from service.core.transfers import TransferService
from service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True, slots=True)
class Services:
    accounts: AccountService
    namespaces: NamespaceService
    credentials: CredentialService
    files: FileService
    transfers: TransferService
    uploads: DynamoUploadRegistry
    sync: SyncService
    watcher: HeadWatcher
    revocation_feed: DynamoRevocationFeed
    revoked: RevocationList
    follows: FollowService


def build_services(settings: Settings, clients: AwsClients, clock: Callable[[], float] = time.time) -> Services:
    auth = settings.auth
    store = DynamoIdentityStore(clients.dynamodb, settings.table)
    feed = DynamoRevocationFeed(clients.dynamodb, settings.table)
    revoked = RevocationList(clock)
    accounts = AccountService(
        store,
        hasher=PasswordHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
            max_concurrent=auth.max_concurrent_hashes,
        ),
        tokens=TokenService(settings.token_secret, auth.access_token_seconds, clock),
        throttle=LoginThrottle(
            store,
            per_account=auth.login_max_failures,
            per_address=auth.login_max_failures_per_address,
            window_seconds=auth.login_window_seconds,
            clock=clock,
        ),
        feed=feed,
        revoked=revoked,
        refresh_seconds=auth.refresh_token_seconds,
        open_signup=auth.open_signup,
        clock=clock,
    )
    namespaces = NamespaceService(store, store, clock)
    credentials = CredentialService(
        namespaces,
        StsCredentialVendor(clients.sts),
        bucket=settings.bucket,
        role_arn=settings.upload_role_arn,
        default_seconds=auth.credentials_seconds,
        max_seconds=resources.UPLOAD_ROLE_MAX_SESSION_SECONDS,
    )
    blobs = S3BlobStore(clients.s3, settings.bucket, settings.files.verify)
    file_store = DynamoFileStore(clients.dynamodb, settings.table)
    files = FileService(
        file_store,
        blobs,
        namespaces,
        block_size=settings.files.block_size,
        clock=clock,
    )
    uploads = DynamoUploadRegistry(clients.dynamodb, clients.s3, settings.table, settings.bucket)
    transfers = TransferService(
        blobs,
        uploads,
        files,
        namespaces,
        block_size=settings.files.block_size,
        concurrency=settings.files.upload_concurrency,
        presign_seconds=settings.files.presign_seconds,
        max_streams_per_user=settings.limits.max_streams_per_user,
    )
    journal = DynamoJournal(clients.dynamodb, settings.table)
    watcher = HeadWatcher(journal, settings.files.feed_poll_seconds)
    sync = SyncService(journal, file_store, namespaces, watcher)
    follows = FollowService(
        DynamoFollowStore(clients.dynamodb, settings.table),
        namespaces,
        file_store,
        UnsubscribeSigner(settings.token_secret),
        shards=settings.notify.shards,
        clock=clock,
    )
    return Services(accounts, namespaces, credentials, files, transfers, uploads, sync, watcher, feed, revoked, follows)


@dataclass(frozen=True, slots=True)
class _Directory:
    """What the notifier looks up, from the follow and identity stores."""

    follows: DynamoFollowStore
    identity: DynamoIdentityStore

    async def follows_in(self, namespace_id: str) -> list[Follow]:
        return await self.follows.follows_in(namespace_id)

    async def members_of(self, namespace_id: str) -> list[Membership]:
        return await self.identity.members_of(namespace_id)

    async def get_namespace(self, namespace_id: str) -> Namespace | None:
        return await self.identity.get_namespace(namespace_id)

    async def get_users(self, usernames: Iterable[str]) -> dict[str, User]:
        return await self.identity.get_users(usernames)


def build_notifier(
    settings: Settings,
    clients: AwsClients,
    clock: Callable[[], float] = time.time,
    owner: str | None = None,
    mailer: Mailer | None = None,
) -> Notifier:
    """A notifier over the service's table and SES (``mailer`` replaces SES where a test needs a fault)."""
    notify = settings.notify
    return Notifier(
        DynamoNotifyStore(clients.dynamodb, settings.table),
        DynamoJournal(clients.dynamodb, settings.table),
        _Directory(
            DynamoFollowStore(clients.dynamodb, settings.table),
            DynamoIdentityStore(clients.dynamodb, settings.table),
        ),
        mailer or SesMailer(clients.ses, settings.mail_from),
        UnsubscribeSigner(settings.token_secret),
        NotifierConfig(
            shards=notify.shards,
            lease_seconds=notify.lease_seconds,
            tick_seconds=notify.tick_seconds,
            rules=DigestRules(notify.window_seconds, notify.daily_cap, notify.max_listed),
            sender=settings.mail_from,
            public_url=notify.public_url or f"http://{settings.host}:{settings.port}",
        ),
        clock=clock,
        owner=owner,
    )
