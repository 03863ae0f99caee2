"""Digests: the changes waiting to be emailed to one follower, the email that carries them, and the other
records the notifier keeps (leases) and the mailer's errors.

Layer: core, a leaf (pure: standard library only, no I/O), so the adapters in ``aws/`` may import it.
A digest gathers a follower's changes from the first one for ``window`` seconds, then goes out as one email;
it lists up to ``max_listed`` changes by name and counts the rest ("and N more"). A follower gets at most
``daily_cap`` digests per UTC day; past that, changes wait for the next day's digest.

Nothing a user controls reaches a header: the subject holds only counts, the recipient is an address
validated when it was set, and the standard library's SMTP policy refuses CR or LF in any header value
anyway. Names appear only in the bodies, HTML-escaped in the HTML one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Protocol

#: SMTP line endings; headers fold only past RFC 5322's hard limit, so the unsubscribe URL stays one plain
#: token (folding a long word would turn it into encoded-words, which List-Unsubscribe must not contain).
MAIL_POLICY = SMTP.clone(max_line_length=998)

#: Longest path shown in a digest; longer ones are shortened in the middle (and the item stays small).
SHOWN_PATH_MAX = 300


class Mailer(Protocol):
    async def send(self, recipient: str, raw_message: bytes) -> None:
        """Hand ``raw_message`` to the mail service; ``MailThrottled`` or ``MailRejected`` if it refuses."""
        ...


class MailThrottled(Exception):
    """The mail service asks us to slow down; try again later."""


class MailRejected(Exception):
    """The mail service refused this message (an unverified address, say)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A notifier shard held by ``owner`` until ``expires_at``."""

    shard: int
    owner: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ShardHints:
    """What changed in a shard, told cheaply: ``watches`` moves whenever a follow names a namespace of the
    shard, and ``due`` holds the times (whole seconds, rounded up) at which its digests fall due."""

    watches: int = 0
    due: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Change:
    """One change as a follower is told about it."""

    ns: str
    ns_name: str
    path: str
    action: str  # added | changed | deleted | moved
    by: str
    at: float
    seq: int
    moved_to: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "ns": self.ns,
            "ns_name": self.ns_name,
            "path": self.path,
            "action": self.action,
            "by": self.by,
            "at": self.at,
            "seq": self.seq,
            **({"moved_to": self.moved_to} if self.moved_to else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Change:
        moved_to = d.get("moved_to")
        return cls(
            ns=str(d["ns"]),
            ns_name=str(d["ns_name"]),
            path=str(d["path"]),
            action=str(d["action"]),
            by=str(d["by"]),
            at=float(d["at"]),  # type: ignore[arg-type]
            seq=int(d["seq"]),  # type: ignore[call-overload]
            moved_to=str(moved_to) if moved_to else None,
        )


def utc_day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def next_utc_day(t: float) -> float:
    day = datetime.fromtimestamp(t, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


@dataclass(slots=True)
class Digest:
    """A follower's pending changes. ``version`` guards every write (optimistic concurrency)."""

    username: str
    version: int = 0
    count: int = 0
    listed: list[Change] = field(default_factory=list)
    first_at: float | None = None
    due_at: float | None = None
    #: Per namespace, the last journal seq taken in: a batch fanned out twice is counted once.
    taken: dict[str, int] = field(default_factory=dict)
    day: str = ""
    sent_today: int = 0

    def add(self, ns: str, through_seq: int, changes: list[Change], now: float, rules: DigestRules) -> None:
        """Take in ``changes`` of ``ns`` (those past what was already taken) up to ``through_seq``."""
        after = self.taken.get(ns, 0)
        fresh = [c for c in changes if c.seq > after]
        self.taken[ns] = max(after, through_seq)
        if not fresh:
            return
        self.count += len(fresh)
        room = max(0, rules.max_listed - len(self.listed))
        self.listed.extend(fresh[:room])
        if self.first_at is None:
            self.first_at = now
            self.due_at = self._due(now + rules.window_seconds, now, rules)

    def capped(self, now: float, rules: DigestRules) -> bool:
        return self.day == utc_day(now) and self.sent_today >= rules.daily_cap

    def defer_to_tomorrow(self, now: float) -> None:
        self.due_at = next_utc_day(now)

    def sent(self, count: int, listed: int, now: float, rules: DigestRules) -> None:
        """``count`` changes (the first ``listed`` of them by name) went out in one email at ``now``."""
        today = utc_day(now)
        self.sent_today = self.sent_today + 1 if self.day == today else 1
        self.day = today
        self.drop(count, listed, now, rules)

    def drop(self, count: int, listed: int, now: float, rules: DigestRules) -> None:
        """Forget the first ``count`` changes (those sent, or undeliverable); what came since waits anew."""
        self.count = max(0, self.count - count)
        self.listed = self.listed[listed:]
        if self.count == 0:
            self.listed, self.first_at, self.due_at = [], None, None
        else:
            self.first_at = now
            self.due_at = self._due(now + rules.window_seconds, now, rules)

    def _due(self, at: float, now: float, rules: DigestRules) -> float:
        return next_utc_day(now) if self.capped(now, rules) else at


@dataclass(frozen=True, slots=True)
class DigestRules:
    window_seconds: float
    daily_cap: int
    max_listed: int


@dataclass(frozen=True, slots=True)
class Links:
    """Where a digest's links point: the one-click unsubscribe (all notifications) and per follow."""

    unsubscribe_all: str
    service_url: str


def _shorten(path: str) -> str:
    if len(path) <= SHOWN_PATH_MAX:
        return path
    half = SHOWN_PATH_MAX // 2 - 1
    return f"{path[:half]}…{path[-half:]}"


def _describe(change: Change) -> str:
    where = _shorten(change.path)
    if change.action == "moved" and change.moved_to:
        return f"{where} moved to {_shorten(change.moved_to)}"
    return f"{where} {change.action}"


def render_digest(digest: Digest, *, sender: str, recipient: str, links: Links, now: float) -> bytes:
    """The digest as a MIME message (text and HTML alternatives) ready for SES ``SendRawEmail``."""
    shown = digest.listed
    more = digest.count - len(shown)
    noun = "change" if digest.count == 1 else "changes"
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"{digest.count} {noun} in files you follow"
    message["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message["List-Unsubscribe"] = f"<{links.unsubscribe_all}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

    by_namespace: dict[str, list[Change]] = {}
    for change in shown:
        by_namespace.setdefault(change.ns_name, []).append(change)

    text = [f"{digest.count} {noun} in files you follow:", ""]
    for name, changes in by_namespace.items():
        text.append(f"In {name}:")
        text.extend(f"  - {_describe(c)} (by {c.by})" for c in changes)
        text.append("")
    if more > 0:
        text.append(f"and {more} more.")
        text.append("")
    text.append(f"Stop these emails: {links.unsubscribe_all}")
    message.set_content("\n".join(text))

    escape = html.escape
    parts = [f"<p>{digest.count} {noun} in files you follow:</p>"]
    for name, changes in by_namespace.items():
        items = "".join(f"<li>{escape(_describe(c))} <small>by {escape(c.by)}</small></li>" for c in changes)
        parts.append(f"<p>In <b>{escape(name)}</b>:</p><ul>{items}</ul>")
    if more > 0:
        parts.append(f"<p>and {more} more.</p>")
    parts.append(f'<p><a href="{escape(links.unsubscribe_all)}">Stop these emails</a></p>')
    message.add_alternative("<!doctype html><html><body>" + "".join(parts) + "</body></html>", subtype="html")
    return message.as_bytes()
