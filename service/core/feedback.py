"""Mail feedback: SES bounce and complaint notifications -> suppressed addresses -> no mail goes there.

Layer: core. Imports the codec (a leaf) and nothing from ``api`` or ``aws``; the queue and the store are
ports (``FeedbackQueue``, ``SuppressionStore``) the wiring fills with SQS and DynamoDB.

SES publishes a configuration set's bounce and complaint events to an SNS topic, which delivers them to a
queue. ``FeedbackConsumer`` reads that queue, bounded (one long-poll ``ReceiveMessage`` of at most
``RECEIVE_MAX`` messages at a time), and records in the store every address that bounced permanently or
whose recipient complained. A soft (transient or undetermined) bounce suppresses nothing: the next mail may
well arrive. Two shapes are understood, each inside an SNS envelope (``Type: Notification``, the SES
message as a JSON string in ``Message``) or bare (raw message delivery): event publishing's (``eventType``)
and identity notifications' (``notificationType``). The queue is hostile input: a message that is not
JSON, not SES feedback, or malformed is deleted and counted, never retried and never fatal; one whose
addresses could not be recorded (the store failing) stays in the queue and comes back after its
visibility timeout.

``SuppressionList`` is what senders ask before mailing an address (a digest, a confirmation): a suppressed
address gets nothing, which is counted and logged once per address (per process, in a bounded memory).
Suppressions are per address (lower case), so an account whose address is suppressed is told so, and
changing its address ends it for the new one; an operator removes a suppression (``docs/operations.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from service import codec
from service.core.errors import BadRequest

log = logging.getLogger(__name__)

Reason = Literal["bounce", "complaint"]
#: What became of one queued message (the metric's label).
Outcome = Literal["suppressed", "soft_bounce", "ignored", "malformed", "foreign"]
#: Which mail a suppression held back (the metric's label).
MailKind = Literal["digest", "confirmation"]

#: SQS's most messages per ReceiveMessage and per DeleteMessageBatch.
RECEIVE_MAX = 10
#: SQS's longest long-poll.
MAX_WAIT_SECONDS = 20
#: Recipients one notification may name (SES sends to at most 50 a message): more is not SES's.
MAX_RECIPIENTS = 100
#: The longest address (RFC 5321's path limit); a longer one is not SES's either.
ADDRESS_MAX = 320
#: After a failed poll (the queue or the store unreachable), wait this long before the next, at most.
RETRY_CAP_SECONDS = 30.0
#: Addresses remembered as already logged; past it the memory starts afresh (a line logged again, no growth).
LOGGED_MAX = 4096
#: SES event types that are not bounces or complaints: known, and left alone.
_OTHER_EVENTS = frozenset(
    {
        "Delivery",
        "Send",
        "Reject",
        "Open",
        "Click",
        "Rendering Failure",
        "RenderingFailure",
        "DeliveryDelay",
        "Subscription",
    }
)


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address no mail goes to, and why."""

    address: str
    reason: Reason
    #: When SES reported it (seconds since the epoch; when it was read, if the report has no usable time).
    at: float
    #: SES's words: the bounce's type and subtype, or the complaint's feedback type.
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Feedback:
    """What one queued message said."""

    outcome: Outcome
    suppressions: tuple[Suppression, ...] = ()
    #: Why a message was malformed or foreign (for the log).
    problem: str = ""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    message_id: str
    receipt: str
    body: str


class FeedbackQueue(Protocol):
    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueuedMessage]: ...

    async def delete(self, receipts: Sequence[str]) -> int:
        """Delete the messages (one request per ``RECEIVE_MAX``); how many were not deleted."""
        ...


class SuppressionStore(Protocol):
    async def suppress(self, suppression: Suppression) -> None: ...

    async def suppression(self, address: str) -> Suppression | None: ...


def address_key(address: str) -> str:
    """How an address is looked up: lower case (SES reports the address as it was sent to)."""
    return address.strip().lower()


def _problem(problem: str) -> Feedback:
    return Feedback("malformed", problem=problem)


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str | bytes):
        return None
    try:
        value = codec.loads(text)
    except BadRequest:
        return None
    return value if isinstance(value, dict) else None


def _timestamp(text: Any, default: float) -> float:
    if not isinstance(text, str):
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _addresses(recipients: Any, field: str) -> list[str] | None:
    if not isinstance(recipients, list) or not 0 < len(recipients) <= MAX_RECIPIENTS:
        return None
    found: list[str] = []
    for recipient in recipients:
        address = recipient.get(field) if isinstance(recipient, dict) else None
        if not isinstance(address, str) or "@" not in address or len(address) > ADDRESS_MAX:
            return None
        # SES may name the recipient with a display name ("Name <a@b>").
        found.append(address_key(address.rpartition("<")[2].rstrip(">")))
    return found


def parse_feedback(body: str, now: float) -> Feedback:
    """What a queued message says: SES bounce or complaint feedback (event publishing's or identity
    notifications' shape, in an SNS envelope or bare), or why it is not."""
    outer = _json_object(body)
    if outer is None:
        return _problem("not a JSON object")
    message: dict[str, Any] | None = outer
    if "eventType" not in outer and "notificationType" not in outer:
        if outer.get("Type") == "SubscriptionConfirmation":
            return Feedback("foreign", problem="an SNS subscription confirmation")
        if outer.get("Type") != "Notification":
            return Feedback("foreign", problem="neither an SNS notification nor SES feedback")
        message = _json_object(outer.get("Message"))
        if message is None:
            return _problem("an SNS notification whose Message is not a JSON object")
    assert message is not None
    kind = message.get("eventType", message.get("notificationType"))
    if kind == "Bounce":
        bounce = message.get("bounce")
        if not isinstance(bounce, dict):
            return _problem("a Bounce without its bounce object")
        addresses = _addresses(bounce.get("bouncedRecipients"), "emailAddress")
        if addresses is None:
            return _problem("a Bounce without valid bouncedRecipients")
        bounce_type = bounce.get("bounceType")
        if bounce_type != "Permanent":
            return Feedback("soft_bounce" if bounce_type in ("Transient", "Undetermined") else "malformed")
        detail = f"{bounce_type}/{bounce.get('bounceSubType', '')}"
        at = _timestamp(bounce.get("timestamp"), now)
        return Feedback("suppressed", tuple(Suppression(a, "bounce", at, detail) for a in addresses))
    if kind == "Complaint":
        complaint = message.get("complaint")
        if not isinstance(complaint, dict):
            return _problem("a Complaint without its complaint object")
        addresses = _addresses(complaint.get("complainedRecipients"), "emailAddress")
        if addresses is None:
            return _problem("a Complaint without valid complainedRecipients")
        feedback_type = complaint.get("complaintFeedbackType")
        if feedback_type == "not-spam":  # the recipient said it is not spam: no complaint at all
            return Feedback("ignored")
        detail = feedback_type if isinstance(feedback_type, str) else ""
        at = _timestamp(complaint.get("timestamp"), now)
        return Feedback("suppressed", tuple(Suppression(a, "complaint", at, detail[:100]) for a in addresses))
    if isinstance(kind, str) and kind in _OTHER_EVENTS:
        return Feedback("ignored")
    return Feedback("foreign", problem="SES feedback of no known type")


class SuppressionList:
    """Asked before mail goes out: is this address suppressed? Counted and logged once per address."""

    def __init__(self, store: SuppressionStore, on_held: Callable[[MailKind], None] = lambda _: None) -> None:
        self._store = store
        self._on_held = on_held
        self._logged: set[str] = set()

    async def lookup(self, address: str | None) -> Suppression | None:
        return None if address is None else await self._store.suppression(address_key(address))

    async def holds_back(self, address: str, kind: MailKind, username: str) -> bool:
        """Whether ``address`` is suppressed (then the ``kind`` of mail meant for it is not sent)."""
        found = await self.lookup(address)
        if found is None:
            return False
        self._on_held(kind)
        key = address_key(address)
        if key not in self._logged:
            if len(self._logged) >= LOGGED_MAX:
                self._logged.clear()
            self._logged.add(key)
            log.warning(
                "no mail to %s's address: it is suppressed (%s %s); further mail to it is held back silently",
                username,
                found.reason,
                found.detail,
            )
        return True


class FeedbackConsumer:
    """Reads the feedback queue and records suppressions, until stopped."""

    def __init__(
        self,
        queue: FeedbackQueue,
        store: SuppressionStore,
        *,
        wait_seconds: int,
        on_outcome: Callable[[Outcome], None] = lambda _: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._store = store
        self._wait = max(0, min(MAX_WAIT_SECONDS, wait_seconds))
        self._on_outcome = on_outcome
        self._clock = clock
        self.counts: dict[Outcome, int] = {}

    async def poll(self) -> int:
        """One long-poll: record what the messages say, delete those dealt with; how many were received."""
        messages = await self._queue.receive(RECEIVE_MAX, self._wait)
        done: list[str] = []
        for message in messages:
            feedback = parse_feedback(message.body, self._clock())
            if feedback.outcome in ("malformed", "foreign"):
                log.warning(
                    "deleted a %s message %s from the mail feedback queue: %s",
                    feedback.outcome,
                    message.message_id[:64],
                    feedback.problem or "unexpected content",
                )
            try:
                for suppression in feedback.suppressions:
                    await self._store.suppress(suppression)
            except Exception:
                # Kept in the queue: it comes back after its visibility timeout.
                log.warning("could not record the suppressions of message %s", message.message_id[:64], exc_info=True)
                continue
            if feedback.suppressions:
                log.info(
                    "suppressed %d address(es) after a %s", len(feedback.suppressions), feedback.suppressions[0].reason
                )
            self.counts[feedback.outcome] = self.counts.get(feedback.outcome, 0) + 1
            self._on_outcome(feedback.outcome)
            done.append(message.receipt)
        if done:
            failed = await self._queue.delete(done)
            if failed:
                log.warning("%d mail feedback messages were not deleted; they will be read again", failed)
        return len(messages)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a failed poll waits (exponentially, at most ``RETRY_CAP_SECONDS``)
        and tries again. A stop ends a long-poll in flight at once (a message it had received comes back
        after its visibility timeout)."""
        failures = 0
        while not stop.is_set():
            poll = asyncio.ensure_future(self.poll())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not poll.done():
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll
                return
            if poll.exception() is None:
                failures = 0
                continue
            failures += 1
            delay = min(RETRY_CAP_SECONDS, 2.0**failures)
            log.warning("reading the mail feedback queue failed; retrying in %.0f s", delay, exc_info=poll.exception())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
