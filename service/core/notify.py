"""The notifier: namespaces' journals -> per-follower digests -> one email per follower per window.

Layer: core. The journal is the outbox. Work is divided into ``shards`` (a namespace and a follower each
hash into one); a notifier holds shards by lease in the store and renews them as it works, so any number
of notifiers run at once and a dead one's shards are taken over when its leases expire.

Two stages, each safe to repeat:

1. Fan-out. For each watched namespace of a held shard whose journal head moved past the namespace's notify
   cursor, read the new entries, add each change to the digest of every member following it (never its
   author), then advance the cursor (conditional on its old value). A digest records per namespace the last
   sequence number it took in, so entries fanned out twice after a crash are counted once.
   Members are read after each page of entries, so nobody removed before a change hears of it.
2. Send. Digests whose window closed are rendered and handed to the mailer; only once the mailer accepted
   is the digest emptied (conditional on its version). A crash between the two sends that digest again on
   the next attempt: at most one duplicate email per follower per crash, never a lost change.

Mail throttling pauses sending with exponential backoff and jitter; nothing is dropped. A mailer that
refuses a message (``MailRejected``: an unverified address, say) keeps the digest and tries it again an
hour later, so a configuration mistake delays mail without losing it or spinning. A follower without a
confirmed address (double opt-in: ``core.addresses``) gets no email; the digest is dropped as for one
without an address, and so is the digest of a follower whose address is suppressed (it bounced for good or
its recipient complained: ``core.feedback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from service.core.digests import (
    Change,
    Digest,
    DigestRules,
    Lease,
    Links,
    Mailer,
    MailRejected,
    MailThrottled,
    ShardHints,
    render_digest,
)
from service.core.feedback import SuppressionList
from service.core.follows import UnsubscribeSigner, shard_of
from service.core.models import FileVersion, Follow, JournalEntry, Membership, Namespace, User
from service.fanout import bounded
from service.paths import path_key
from service.retry import Backoff

log = logging.getLogger(__name__)

#: Sending paused after SES throttled: 2 s for the first throttle (1 to 3 s), doubling; at most 60 s.
_THROTTLED = Backoff(base=1.0, cap=40.0)

#: Journal entries read per namespace per request, and digests sent per shard per tick.
JOURNAL_PAGE = 100
DUE_PAGE = 100
#: How long a stop waits for the current tick and the lease hand-back (below systemd's and most process
#: managers' 90 s stop timeout, and gunicorn's 30 s graceful timeout).
STOP_GRACE_SECONDS = 20.0
#: How long a stopping notifier tries to hand its leases back.
RELEASE_SECONDS = 5.0
#: A digest the mail service refused waits this long before it is tried again.
REJECTED_RETRY_SECONDS = 3600


class NotifyStore(Protocol):
    async def heartbeat(self, owner: str, expires_at: float) -> None: ...

    async def leases(self, now: float) -> tuple[list[Lease], set[str]]: ...

    async def take_lease(self, shard: int, owner: str, now: float, expires_at: float) -> bool: ...

    async def renew(self, owner: str, shards: Sequence[int], now: float, expires_at: float) -> bool: ...

    async def release_lease(self, shard: int, owner: str) -> None: ...

    async def hints(self, shards: Sequence[int]) -> dict[int, ShardHints]: ...

    async def note_due(self, shard: int, due_at: float) -> None: ...

    async def clear_due(self, shard: int, due: Iterable[int]) -> None: ...

    async def watched(self, shard: int) -> list[tuple[str, int]]: ...

    async def advance(self, shard: int, namespace_id: str, old: int, new: int) -> bool: ...

    async def digest(self, shard: int, username: str) -> Digest | None: ...

    async def save_digest(self, shard: int, digest: Digest, expected_version: int) -> bool: ...

    async def due(self, shard: int, now: float, limit: int) -> list[str]: ...


class Journal(Protocol):
    async def heads(self, namespaces: Sequence[str]) -> dict[str, int]: ...

    async def since(self, ns: str, after_seq: int, limit: int) -> list[JournalEntry]: ...


class Directory(Protocol):
    """Who follows, who belongs, what things are called, where mail goes."""

    async def follows_in(self, namespace_id: str) -> list[Follow]: ...

    async def follows_of(self, username: str) -> list[Follow]: ...

    async def members_of(self, namespace_id: str) -> list[Membership]: ...

    async def get_namespace(self, namespace_id: str) -> Namespace | None: ...

    async def get_users(self, usernames: Iterable[str]) -> dict[str, User]: ...


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    shards: int
    lease_seconds: float
    tick_seconds: float
    rules: DigestRules
    sender: str
    public_url: str
    concurrency: int = 8


def idle_requests_per_second(config: NotifierConfig) -> float:
    """The most store requests a second a notifier makes while nothing happens (nothing followed, no
    digest due), holding up to 99 shards, whatever their number: each ``check_seconds`` one read of the
    held shards' hints, one of the swept shard's watched namespaces and one of its due digests; each sixth
    of a lease one read of the leases; each third of a lease one write renewing them. (While anything is
    followed, one more read a tick: the journal heads of up to 100 followed namespaces.)"""
    return 3 / check_seconds(config) + 6 / config.lease_seconds + 3 / config.lease_seconds


def check_seconds(config: NotifierConfig) -> float:
    """How often a notifier reads its shards' hints: a sixth of a lease, at most a twelfth of a window (so a
    digest goes out at most that late)."""
    return min(config.lease_seconds / 6, config.rules.window_seconds / 12)


def describe(version: FileVersion) -> tuple[str, str | None] | None:
    """What a follower is told a version did, or None when another version of the same commit says it."""
    if version.moved_from is not None:
        return None  # the move is told once, from the old path's side
    if version.deleted:
        return ("moved", version.moved_to) if version.moved_to else ("deleted", None)
    return ("added", None) if version.rev == 1 else ("changed", None)


class Notifier:
    def __init__(
        self,
        store: NotifyStore,
        journal: Journal,
        directory: Directory,
        mailer: Mailer,
        signer: UnsubscribeSigner,
        config: NotifierConfig,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        suppressions: SuppressionList | None = None,
    ) -> None:
        self._store = store
        self._suppressions = suppressions
        self._journal = journal
        self._directory = directory
        self._mailer = mailer
        self._signer = signer
        self._config = config
        self._clock = clock
        self.owner = owner or uuid.uuid4().hex
        #: Shards held, and until when (our own conservative view of the lease).
        self.held: dict[int, float] = {}
        self._paused_until = 0.0
        self._leases_checked = -math.inf
        self._beat_at = -math.inf
        #: The last look at the held shards' hints, what it found, and the shard swept with it.
        self._checked = -math.inf
        self._hints: dict[int, ShardHints] = {}
        self._swept: int | None = None
        self._rescan: int | None = None
        self._sweeps = 0
        #: Per held shard: its ``watches`` hint when its watched namespaces were read, and their cursors (kept
        #: current as we advance).
        self._watched: dict[int, tuple[int, dict[str, int]]] = {}
        self._throttled = 0
        self.sent = 0

    # --- the loop ------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, then give the leases back so another notifier takes over at once."""
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.warning("notifier tick failed; retrying", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._config.tick_seconds)
        finally:
            await self.release()

    async def run_until_stopped(self, stop: asyncio.Event, grace: float = STOP_GRACE_SECONDS) -> None:
        """``run`` until ``stop``; then give the current tick and the lease hand-back ``grace`` seconds before
        cancelling, so a stuck AWS call cannot outlast a process manager's stop timeout."""
        task = asyncio.create_task(self.run(stop), name="notifier")
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        try:
            await asyncio.wait_for(task, grace)
        except TimeoutError:
            log.warning("the notifier did not stop within %s s; its leases will expire", grace)

    async def tick(self) -> None:
        await self.hold_leases()
        checked = await self.check()
        await self.fan_out()
        if checked:
            await self.send_due()

    async def release(self) -> None:
        """Hand the leases back (bounded: unreleased ones simply expire, so a stop never waits long)."""
        self._leases_checked = -math.inf
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                await asyncio.gather(*(self._store.release_lease(shard, self.owner) for shard in self.held))
        except Exception:  # TimeoutError or DynamoDB: the leases run out by themselves
            log.warning("could not hand back every notifier lease; they expire within %s s", self._config.lease_seconds)
        self.held.clear()

    # --- leases --------------------------------------------------------------------------------------

    async def hold_leases(self) -> None:
        """Renew what we hold, and take free or expired shards up to our fair share. Looked at every sixth of
        a lease (each tick while we hold nothing): one read of every lease and heartbeat; every third of a
        lease, one write that renews the heartbeat and every lease held (whatever their number)."""
        now = self._clock()
        lease = self._config.lease_seconds
        if self.held and now - self._leases_checked < lease / 6:
            return
        self._leases_checked = now
        before = sorted(self.held)
        until = now + lease
        found, alive = await self._store.leases(now)
        fair = math.ceil(self._config.shards / len(alive | {self.owner}))
        leases = {lease.shard: lease for lease in found}
        mine = sorted(s for s, held in leases.items() if held.owner == self.owner and held.expires_at > now)
        for shard in mine[fair:]:  # more than our share: let a newcomer have it
            await self._store.release_lease(shard, self.owner)
            self.held.pop(shard, None)
        held = {s: leases[s].expires_at for s in mine[:fair] if leases[s].expires_at - now > lease * 2 / 3}
        renew = [s for s in mine[:fair] if s not in held]
        if renew or now - self._beat_at >= lease / 3:
            if await self._store.renew(self.owner, renew, now, until):
                held.update(dict.fromkeys(renew, until))
            else:  # one of them was taken meanwhile: find which, one by one
                await self._store.heartbeat(self.owner, until)
                for shard in renew:
                    if await self._store.take_lease(shard, self.owner, now, until):
                        held[shard] = until
            self._beat_at = now
        start = shard_of(self.owner, self._config.shards)
        for offset in range(self._config.shards):
            if len(held) >= fair:
                break
            shard = (start + offset) % self._config.shards
            taken = leases.get(shard)
            if shard in held or (taken is not None and taken.expires_at > now):
                continue
            if await self._store.take_lease(shard, self.owner, now, until):
                held[shard] = until
        if sorted(held) != before:
            log.info("notifier %s holds shards %s of %d", self.owner[:8], sorted(held), self._config.shards)
        self.held = held
        self._watched = {shard: cached for shard, cached in self._watched.items() if shard in held}
        self._hints = {shard: hints for shard, hints in self._hints.items() if shard in held}

    async def check(self) -> bool:
        """Every ``check_seconds``: read the hints of the held shards (one request per 100 of them), and pick
        the next held shard to sweep (its watched namespaces read again and its due digests looked for, hint
        or not), so that a hint lost to a crash delays work by at most a round of the held shards. Returns
        whether it looked."""
        now = self._clock()
        if not self.held or now - self._checked < check_seconds(self._config):
            return False
        self._checked = now
        shards = sorted(self.held)
        self._hints = await self._store.hints(shards)
        self._swept = self._rescan = shards[self._sweeps % len(shards)]
        self._sweeps += 1
        return True

    def _holds(self, shard: int) -> bool:
        """Still safely ours: a margin before expiry, so a slow notifier stops before another starts."""
        until = self.held.get(shard)
        return until is not None and self._clock() < until - self._config.lease_seconds / 3

    # --- fan-out -------------------------------------------------------------------------------------

    async def fan_out(self) -> int:
        """Move new journal entries of our namespaces into digests; returns how many changes were read."""
        watched: list[tuple[int, str, int]] = []
        for shard in list(self.held):
            cached = self._watched.get(shard)
            version = self._hints.get(shard, ShardHints()).watches
            if cached is None or cached[0] != version or shard == self._rescan:
                cached = (version, dict(await self._store.watched(shard)))
                self._watched[shard] = cached
            watched.extend((shard, ns, cursor) for ns, cursor in cached[1].items())
        self._rescan = None
        if not watched:
            return 0
        heads = await self._journal.heads([ns for _, ns, _ in watched])
        behind = [(shard, ns, cursor) for shard, ns, cursor in watched if heads.get(ns, 0) > cursor]
        counts = await bounded(behind, lambda w: self._fan_out_namespace(*w), self._config.concurrency)
        return sum(counts)

    async def _fan_out_namespace(self, shard: int, ns: str, cursor: int) -> int:
        follows = await self._directory.follows_in(ns)
        namespace = await self._directory.get_namespace(ns)
        name = namespace.name if namespace else ns
        read = 0
        while self._holds(shard):
            entries = await self._journal.since(ns, cursor, JOURNAL_PAGE)
            if not entries:
                break
            # Read after the entries: a follower removed before any of them was committed is no longer a
            # member here, so nothing committed after a removal reaches the removed member (invariant 10).
            members = {m.username for m in await self._directory.members_of(ns)}
            through = entries[-1].seq
            per_user: dict[str, list[Change]] = {}
            for entry in entries:
                for version in entry.changes:
                    told = describe(version)
                    if told is None:
                        continue
                    key = path_key(version.path)
                    followers = {
                        f.username
                        for f in follows
                        if f.covers(key) and f.username != entry.committed_by and f.username in members
                    }
                    change = Change(
                        ns, name, version.path, told[0], entry.committed_by, entry.committed_at, entry.seq, told[1]
                    )
                    for username in followers:
                        per_user.setdefault(username, []).append(change)
                read += sum(len(e.changes) for e in entries)
            batch = [(ns, through, username, changes) for username, changes in per_user.items()]
            await bounded(batch, lambda args: self._add(*args), self._config.concurrency)
            if not await self._store.advance(shard, ns, cursor, through):
                self._watched.pop(shard, None)  # someone else moved it (we lost the lease): read afresh
                break
            cursor = through
            if shard in self._watched:
                self._watched[shard][1][ns] = through
            if len(entries) < JOURNAL_PAGE:
                break
        return read

    async def _add(self, ns: str, through: int, username: str, changes: list[Change]) -> None:
        shard = shard_of(username, self._config.shards)
        while True:
            digest = await self._store.digest(shard, username) or Digest(username)
            if digest.taken.get(ns, 0) >= through:
                return  # already taken in (this batch was fanned out before a crash)
            version, due_at = digest.version, digest.due_at
            digest.add(ns, through, changes, self._clock(), self._config.rules)
            if await self._save(shard, digest, version, due_at):
                return

    async def _save(self, shard: int, digest: Digest, version: int, due_at: float | None) -> bool:
        """Write ``digest`` over ``version``; if it now falls due at another time, say so in the shard's
        hints (after the digest, so that whoever reads the time finds the digest)."""
        if not await self._store.save_digest(shard, digest, version):
            return False
        if digest.due_at is not None and digest.due_at != due_at:
            await self._store.note_due(shard, digest.due_at)
        return True

    # --- sending -------------------------------------------------------------------------------------

    async def send_due(self) -> int:
        """Send every digest whose window closed, in the held shards whose hints say one is due (and in the
        shard being swept); returns how many were sent. A shard's due times are cleared once all its due
        digests went out (or wait again under a later time of their own)."""
        sent = 0
        for shard in sorted(self.held):
            now = self._clock()
            due = {t for t in self._hints.get(shard, ShardHints()).due if t <= now}
            if not due and shard != self._swept:
                continue
            if now < self._paused_until or not self._holds(shard):
                break
            names = await self._store.due(shard, now, DUE_PAGE)
            if names:
                users = await self._directory.get_users(names)
                work = [(shard, name, users.get(name)) for name in names]
                sent += sum(await bounded(work, lambda args: self._send_one(*args), self._config.concurrency))
            finished = len(names) < DUE_PAGE and self._clock() >= self._paused_until and self._holds(shard)
            if due and finished:
                await self._store.clear_due(shard, due)
        self._swept = None
        self.sent += sent
        return sent

    async def _send_one(self, shard: int, username: str, user: User | None) -> int:
        now = self._clock()
        if now < self._paused_until or not self._holds(shard):
            return 0
        digest = await self._store.digest(shard, username)
        if digest is None or digest.count == 0 or digest.due_at is None or digest.due_at > now:
            return 0
        rules = self._config.rules
        version, due_at = digest.version, digest.due_at
        count, listed = digest.count, len(digest.listed)
        if digest.capped(now, rules):
            digest.defer_to_tomorrow(now)
            await self._save(shard, digest, version, due_at)
            return 0
        delivered = 0
        if (
            user is not None
            and user.email
            and user.email_confirmed
            and not user.disabled
            and not await self._held(user)
        ):
            # The link ends the follows that exist now (this digest's among them), not ones made later.
            through = max((f.created_at for f in await self._directory.follows_of(username)), default=0.0)
            token = self._signer.sign(username, through=through, now=now)
            links = Links(
                unsubscribe_all=f"{self._config.public_url}/v1/unsubscribe?token={token}",
                service_url=self._config.public_url,
            )
            raw = render_digest(digest, sender=self._config.sender, recipient=user.email, links=links, now=now)
            try:
                await self._mailer.send(user.email, raw)
            except MailThrottled:
                self._throttle(now)
                return 0
            except MailRejected:
                # Kept, not dropped: tried again later (an address fixed, a sender verified) without spinning.
                log.error("mail to %s was rejected; trying again in %d s", username, REJECTED_RETRY_SECONDS)
                digest.due_at = now + REJECTED_RETRY_SECONDS
                await self._save(shard, digest, version, due_at)
                return 0
            else:
                delivered = 1
                self._throttled = 0
                log.info("sent a digest of %d changes to %s", count, username)
        await self._after(shard, username, digest, version, count, listed, delivered, now)
        return delivered

    async def _held(self, user: User) -> bool:
        """Whether the follower's address is suppressed (then the digest is dropped, unsent)."""
        if self._suppressions is None or user.email is None:
            return False
        return await self._suppressions.holds_back(user.email, "digest", user.username)

    async def _after(
        self, shard: int, username: str, digest: Digest, version: int, count: int, listed: int, sent: int, now: float
    ) -> None:
        """Empty what went out; if the digest grew meanwhile, take out only what was sent."""
        rules = self._config.rules
        while True:
            due_at = digest.due_at
            if sent:
                digest.sent(count, listed, now, rules)
            else:
                digest.drop(count, listed, now, rules)
            if await self._save(shard, digest, version, due_at):
                return
            current = await self._store.digest(shard, username)
            if current is None:
                return
            digest, version = current, current.version

    def _throttle(self, now: float) -> None:
        self._throttled += 1
        delay = _THROTTLED.delay(self._throttled)
        self._paused_until = now + delay
        log.warning("mail sending throttled; pausing %.1f s", delay)
