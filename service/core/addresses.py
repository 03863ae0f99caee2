"""Notification addresses and their double opt-in.

Layer: core. An address set at sign-up or by ``PUT /v1/account/email`` is *unconfirmed*: it receives exactly
one mail, a confirmation, and no digest until its owner follows the link in it. The link carries a signed
token (``core.links``) naming the account, the address and a nonce stored with the pending address, and
expiring after ``link_seconds`` (a day by default). ``GET`` on the link shows a page with a button and changes
nothing (mail scanners fetch every link in a message: a scanner must not confirm an address an attacker
typed); the button ``POST``s, which confirms, once: the confirmation clears the nonce, so the same link
answers 404 afterwards, as does a link for an address that was changed since, an expired one or a forged one.

The confirmation mail carries no text a user chose (no username, no namespace name): only the service's
own words, its URL and the link. Confirmation mails (first ones and re-sends) are limited to
``mails_per_hour`` per account and as many per recipient address, so neither an account nor a crowd of
accounts can turn the service into a mail cannon; past it, 429 with ``Retry-After`` and nothing changes.
An address that is suppressed (it bounced for good, or its recipient complained: ``core.feedback``) gets no
confirmation mail either: the address is saved, unconfirmed, and the account says it is suppressed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

from service.core.digests import MAIL_POLICY, Mailer, MailRejected, MailThrottled
from service.core.errors import Conflict, DependencyUnavailable, NotFound, RateLimited
from service.core.feedback import Suppression, SuppressionList
from service.core.links import LinkSigner
from service.core.models import User
from service.core.tokens import random_id

log = logging.getLogger(__name__)

#: The window of the confirmation-mail quota, in seconds.
MAIL_QUOTA_WINDOW = 3600


def confirmation_signer(secret: str) -> LinkSigner:
    """The signer of confirmation links (its own key: an unsubscribe token confirms nothing)."""
    return LinkSigner(secret, "filesync confirm address v1", "confirmation link")


class AddressStore(Protocol):
    async def get_user(self, username: str) -> User | None: ...

    async def set_email(self, username: str, email: str | None, nonce: str | None) -> None:
        """Set (or remove) the address, unconfirmed, with the nonce its confirmation link must carry."""
        ...

    async def confirm_email(self, username: str, email: str, nonce: str) -> bool:
        """Mark ``email`` confirmed if it is still the pending address with ``nonce``; False otherwise."""
        ...

    async def spend(self, key: str, now: float, window: int, limit: int) -> float | None:
        """Count one use of ``key`` if fewer than ``limit`` were counted in its current window (None);
        otherwise count nothing and return the seconds until the window ends."""
        ...


def render_confirmation(*, sender: str, recipient: str, link: str, service_url: str, hours: float, now: float) -> bytes:
    """The confirmation mail: the service's words, its URL and the link, nothing a user typed."""
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = "Confirm this address for file change notifications"
    message["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"Someone asked the file service at {service_url} to send change notifications to this address.\n\n"
        f"To confirm that you want them, open this link (it works once, for {hours:g} hours):\n\n{link}\n\n"
        "If you did not ask for this, ignore this message: nothing else will be sent to this address.\n"
    )
    return message.as_bytes()


class AddressService:
    def __init__(
        self,
        store: AddressStore,
        mailer: Mailer,
        signer: LinkSigner,
        *,
        sender: str,
        public_url: str,
        link_seconds: int,
        mails_per_hour: int,
        suppressions: SuppressionList | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._suppressions = suppressions
        self._mailer = mailer
        self._signer = signer
        self._sender = sender
        self._public_url = public_url
        self._link_seconds = link_seconds
        self._mails_per_hour = mails_per_hour
        self._clock = clock

    async def suppression(self, user: User) -> Suppression | None:
        """Why no mail goes to ``user``'s address, if it is suppressed."""
        return None if self._suppressions is None else await self._suppressions.lookup(user.email)

    @staticmethod
    def new_nonce() -> str:
        return random_id(16)

    async def change(self, user: User, address: str | None) -> User:
        """Set ``user``'s address (None: remove it); a new address gets its confirmation mail. Setting the
        address it already has changes nothing and sends nothing (``resend`` sends the mail again)."""
        if address == user.email:
            return user
        if address is None:
            await self._store.set_email(user.username, None, None)
            return dataclasses.replace(user, email=None, email_confirmed=False, email_nonce=None)
        await self._spend(user.username, address)
        nonce = self.new_nonce()
        await self._store.set_email(user.username, address, nonce)
        changed = dataclasses.replace(user, email=address, email_confirmed=False, email_nonce=nonce)
        await self._send(user.username, address, nonce)
        return changed

    async def welcome(self, user: User) -> None:
        """The confirmation mail of an address given at sign-up. Best effort: the account exists either way,
        and ``resend`` is there if the mail did not go out."""
        if user.email is None or user.email_nonce is None:
            return
        try:
            await self._spend(user.username, user.email)
            await self._send(user.username, user.email, user.email_nonce)
        except (RateLimited, DependencyUnavailable) as exc:
            log.warning("no confirmation mail for %s's new account: %s", user.username, exc.detail)

    async def resend(self, user: User) -> None:
        """The pending address's confirmation mail again (within the quota)."""
        if user.email is None or user.email_confirmed or user.email_nonce is None:
            raise Conflict("No address is waiting for confirmation; set one with PUT /v1/account/email.")
        await self._spend(user.username, user.email)
        await self._send(user.username, user.email, user.email_nonce)

    async def pending(self, token: str) -> tuple[str, str]:
        """(username, address) of a link that would confirm something now; 404 for anything else."""
        username, address, nonce = self._claims(token)
        user = await self._store.get_user(username)
        if user is None or user.email != address or user.email_nonce != nonce or user.email_confirmed:
            raise NotFound("This confirmation link is no longer valid (already used, or the address changed).")
        return username, address

    async def confirm(self, token: str) -> str:
        """Confirm the address a link names, once; the address confirmed."""
        username, address, nonce = self._claims(token)
        if not await self._store.confirm_email(username, address, nonce):
            raise NotFound("This confirmation link is no longer valid (already used, or the address changed).")
        log.info("%s confirmed a notification address", username)
        return address

    def _claims(self, token: str) -> tuple[str, str, str]:
        claims = self._signer.verify(token, self._clock())
        return str(claims["u"]), str(claims["e"]), str(claims["n"])

    async def _spend(self, username: str, address: str) -> None:
        now = self._clock()
        for kind, key in (("account", f"confirm-mail#account#{username}"), ("address", f"confirm-mail#to#{address}")):
            wait = await self._store.spend(key, now, MAIL_QUOTA_WINDOW, self._mails_per_hour)
            if wait is not None:
                retry_after = max(1, math.ceil(wait))
                raise RateLimited(
                    f"At most {self._mails_per_hour} confirmation mails an hour go to one {kind}; "
                    f"try again in {retry_after} s.",
                    retry_after=retry_after,
                )

    async def _send(self, username: str, address: str, nonce: str) -> None:
        if self._suppressions is not None and await self._suppressions.holds_back(address, "confirmation", username):
            return
        now = self._clock()
        token = self._signer.sign({"u": username, "e": address, "n": nonce}, now + self._link_seconds)
        link = f"{self._public_url}/v1/account/email/confirm?token={token}"
        raw = render_confirmation(
            sender=self._sender,
            recipient=address,
            link=link,
            service_url=self._public_url,
            hours=self._link_seconds / 3600,
            now=now,
        )
        try:
            await self._mailer.send(address, raw)
        except (MailThrottled, MailRejected, DependencyUnavailable) as exc:
            raise DependencyUnavailable(
                "The confirmation mail could not be sent; the address is saved unconfirmed. Ask for it again "
                "later with POST /v1/account/email/confirmation."
            ) from exc
