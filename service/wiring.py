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
from service.aws.feedback import DynamoSuppressionStore, SqsFeedbackQueue
from service.aws.files import DynamoFileStore, DynamoJournal
from service.aws.iam import IamSessionRevoker
from service.aws.identity import DynamoIdentityStore, DynamoRevocationFeed
from service.aws.notify import DynamoFollowStore, DynamoNotifyStore, SesMailer
from service.aws.sts import StsCredentialVendor
from service.aws.uploads import DynamoUploadRegistry
from service.core.accounts import AccountService
from service.core.addresses import AddressService, confirmation_signer
from service.core.credentials import CredentialService, SessionRevocation
from service.core.digests import DigestRules, Mailer
from service.core.feedback import FeedbackConsumer, SuppressionList
from service.core.files import FileService
from service.core.follows import FollowService, UnsubscribeSigner
from service.core.models import Follow, Membership, Namespace, User
from service.core.namespaces import NamespaceService
from service.core.notify import Notifier, NotifierConfig
from service.core.passwords import PasswordHasher
from service.core.revocations import RevocationList
from service.core.sync import HeadWatcher, SyncService
from service.core.throttle import PasswordChecks, PasswordThrottle
from service.core.tokens import TokenService
from service.core.transfers import TransferService
from service.metrics import Metrics
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


def build_services(
    settings: Settings, clients: AwsClients, clock: Callable[[], float] = time.time, metrics: Metrics | None = None
) -> Services:
    auth = settings.auth
    store = DynamoIdentityStore(clients.dynamodb, settings.table)
    feed = DynamoRevocationFeed(clients.dynamodb, settings.table)
    revoked = RevocationList(clock)
    role_arn = settings.upload_role_arn
    sessions = SessionRevocation(
        IamSessionRevoker(clients.iam, role_arn, horizon_seconds=resources.UPLOAD_ROLE_MAX_SESSION_SECONDS, clock=clock)
        if role_arn is not None
        else None,
        clock,
    )
    hasher = PasswordHasher(
        time_cost=auth.argon2_time_cost,
        memory_kib=auth.argon2_memory_kib,
        parallelism=auth.argon2_parallelism,
        max_concurrent=auth.max_concurrent_hashes,
    )
    throttle = PasswordThrottle(
        store,
        per_account=auth.login_max_failures,
        per_address=auth.login_max_failures_per_address,
        window_seconds=auth.login_window_seconds,
        clock=clock,
    )
    addresses = AddressService(
        store,
        SesMailer(clients.ses, settings.mail_from, settings.notify.configuration_set),
        confirmation_signer(settings.token_secret),
        sender=settings.mail_from,
        public_url=public_url(settings),
        link_seconds=settings.notify.confirm_link_seconds,
        mails_per_hour=settings.notify.confirm_mails_per_hour,
        suppressions=suppression_list(settings, clients, metrics),
        clock=clock,
    )
    accounts = AccountService(
        store,
        hasher=hasher,
        tokens=TokenService(settings.token_secret, auth.access_token_seconds, clock),
        checks=PasswordChecks(throttle, hasher),
        addresses=addresses,
        feed=feed,
        revoked=revoked,
        refresh_seconds=auth.refresh_token_seconds,
        open_signup=auth.open_signup,
        clock=clock,
        on_access_lost=sessions.user_lost_access,
    )
    namespaces = NamespaceService(store, store, clock, on_access_lost=sessions.user_lost_access)
    credentials = CredentialService(
        namespaces,
        StsCredentialVendor(clients.sts),
        role_arn=role_arn,
        default_seconds=auth.credentials_seconds,
        max_seconds=auth.credentials_max_seconds,
    )
    blobs = S3BlobStore(clients.s3, settings.bucket, settings.files.verify)
    file_store = DynamoFileStore(clients.dynamodb, settings.table)
    files = FileService(
        file_store,
        blobs,
        namespaces,
        block_size=settings.files.block_size,
        clock=clock,
        default_quota=settings.files.default_quota,
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
        record_packed=settings.files.record_packed,
        clock=clock,
    )
    journal = DynamoJournal(clients.dynamodb, settings.table)
    watcher = HeadWatcher(journal, settings.files.feed_poll_seconds)
    sync = SyncService(journal, file_store, namespaces, watcher)
    follows = FollowService(
        DynamoFollowStore(clients.dynamodb, settings.table),
        namespaces,
        file_store,
        UnsubscribeSigner(settings.token_secret, settings.notify.unsubscribe_link_seconds),
        shards=settings.notify.shards,
        clock=clock,
    )
    # What a member held ends with the membership: follows there, long-polls waiting on it (at once here;
    # other workers' long-polls re-check membership when they wake).
    namespaces.on_member_removed(follows.member_removed)
    namespaces.on_member_removed(watcher.member_removed)
    return Services(accounts, namespaces, credentials, files, transfers, uploads, sync, watcher, feed, revoked, follows)


def suppression_list(settings: Settings, clients: AwsClients, metrics: Metrics | None) -> SuppressionList | None:
    """What mail senders ask before mailing an address; None (nothing looked up) without a feedback queue."""
    if settings.notify.feedback_queue_url is None:
        return None
    counter = metrics.mail_suppressed if metrics is not None else None
    return SuppressionList(
        DynamoSuppressionStore(clients.dynamodb, settings.table),
        on_held=(lambda kind: counter.labels(kind).inc()) if counter is not None else (lambda _: None),
    )


def build_feedback_consumer(
    settings: Settings, clients: AwsClients, metrics: Metrics | None = None
) -> FeedbackConsumer | None:
    """The reader of the mail feedback queue, or None when there is none (the feature is off)."""
    url = settings.notify.feedback_queue_url
    if url is None:
        return None
    counter = metrics.mail_feedback if metrics is not None else None
    return FeedbackConsumer(
        SqsFeedbackQueue(clients.sqs, url),
        DynamoSuppressionStore(clients.dynamodb, settings.table),
        wait_seconds=settings.notify.feedback_wait_seconds,
        on_outcome=(lambda outcome: counter.labels(outcome).inc()) if counter is not None else (lambda _: None),
    )


def public_url(settings: Settings) -> str:
    """Where the links in emails point: the configured public URL, else where the service listens."""
    return settings.notify.public_url or f"http://{settings.host}:{settings.port}"


@dataclass(frozen=True, slots=True)
class _Directory:
    """What the notifier looks up, from the follow and identity stores."""

    follows: DynamoFollowStore
    identity: DynamoIdentityStore

    async def follows_in(self, namespace_id: str) -> list[Follow]:
        return await self.follows.follows_in(namespace_id)

    async def follows_of(self, username: str) -> list[Follow]:
        return await self.follows.follows_of(username)

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
    metrics: Metrics | None = None,
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
        mailer or SesMailer(clients.ses, settings.mail_from, notify.configuration_set),
        UnsubscribeSigner(settings.token_secret, notify.unsubscribe_link_seconds),
        NotifierConfig(
            shards=notify.shards,
            lease_seconds=notify.lease_seconds,
            tick_seconds=notify.tick_seconds,
            rules=DigestRules(notify.window_seconds, notify.daily_cap, notify.max_listed),
            sender=settings.mail_from,
            public_url=public_url(settings),
        ),
        clock=clock,
        owner=owner,
        suppressions=suppression_list(settings, clients, metrics),
    )
