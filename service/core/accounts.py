"""Accounts and sessions: sign-up, login, refresh, logout, password change, disable.

Layer: core. Usernames are normalized (NFKC, lower case) and validated here; passwords are hashed with
argon2id (``passwords``) and every password check (login, password change, address change) goes through
the one throttle (``throttle.PasswordChecks``); tokens are issued and checked by ``tokens``; revocations go
to the shared feed and the worker's own list at once; notification addresses are confirmed by mail
(``addresses``). A wrong username and a wrong password get the same answer after the same work.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import email_validator

from service.core.addresses import AddressService
from service.core.errors import FieldError, NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from service.core.models import Membership, Namespace, Principal, Session, User
from service.core.namespaces import new_namespace_id
from service.core.passwords import PasswordHasher
from service.core.revocations import RevocationFeed, RevocationList
from service.core.throttle import PasswordChecks
from service.core.tokens import TokenService, new_session_id, secrets_match

USERNAME_MIN = 3
USERNAME_MAX = 32
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_BAD_LOGIN = "Invalid username or password."


def normalize_username(raw: str, field: str = "$.username") -> str:
    """NFKC, lower case; 3-32 of ``a-z 0-9 . _ -``, starting with a letter or digit."""
    name = unicodedata.normalize("NFKC", raw).strip().lower()
    problem = None
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        problem = f"must be {USERNAME_MIN} to {USERNAME_MAX} characters long"
    elif not _USERNAME.match(name):
        problem = "may contain only a-z, 0-9, '.', '_' and '-', and must start with a letter or digit"
    if problem:
        raise ValidationFailed(f"The username {problem}.", (FieldError(field, f"username {problem}"),))
    return name


def check_password(password: str, field: str = "$.password") -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        message = f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long"
        raise ValidationFailed(f"The {message}.", (FieldError(field, message),))


EMAIL_MAX = 254


def normalize_email(raw: str, field: str = "$.email") -> str:
    """A deliverable-looking address (syntax only: no DNS lookup), normalized; anything else is named."""
    try:
        if len(raw) > EMAIL_MAX:
            raise email_validator.EmailNotValidError(f"it is longer than {EMAIL_MAX} characters")
        return email_validator.validate_email(raw, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        message = f"not a valid email address: {exc}"
        raise ValidationFailed(f"The email address is {message}", (FieldError(field, message),)) from None


class AccountStore(Protocol):
    async def create_account(self, user: User, home: Namespace, owner: Membership) -> None: ...

    async def get_user(self, username: str) -> User | None: ...

    async def set_password_hash(self, username: str, password_hash: str) -> None: ...

    async def set_disabled(self, username: str, disabled: bool) -> None: ...

    async def set_email(self, username: str, email: str | None, nonce: str | None) -> None: ...

    async def put_session(self, session: Session) -> None: ...

    async def get_session(self, sid: str) -> Session | None: ...

    async def rotate_session(self, session: Session, new_secret_hash: str, expires_at: int) -> bool: ...

    async def delete_session(self, sid: str) -> None: ...

    async def session_ids(self, username: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    username: str


class AccountService:
    def __init__(
        self,
        store: AccountStore,
        *,
        hasher: PasswordHasher,
        tokens: TokenService,
        checks: PasswordChecks,
        addresses: AddressService,
        feed: RevocationFeed,
        revoked: RevocationList,
        refresh_seconds: int,
        open_signup: bool,
        clock: Callable[[], float] = time.time,
        on_access_lost: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        #: Told (before the change is stored) when a user's existing credentials must stop working.
        self._on_access_lost = on_access_lost
        self._hasher = hasher
        self._tokens = tokens
        self._checks = checks
        self.addresses = addresses
        self._feed = feed
        self._revoked = revoked
        self._refresh_seconds = refresh_seconds
        self.open_signup = open_signup
        self._clock = clock

    # --- accounts ------------------------------------------------------------------------------------

    async def sign_up(self, username: str, password: str, email: str | None = None) -> User:
        """Open sign-up (when enabled): create the account and its home namespace; an address given gets
        its confirmation mail."""
        if not self.open_signup:
            raise PermissionDenied("Sign-up is closed here; ask an administrator for an account.")
        user = await self.add_user(username, password, email)
        await self.addresses.welcome(user)
        return user

    async def add_user(self, username: str, password: str, email: str | None = None) -> User:
        """Create an account and its home namespace in one transaction (admin path, always allowed)."""
        name = normalize_username(username)
        check_password(password)
        address = normalize_email(email) if email is not None else None
        now = self._clock()
        home = Namespace(id=new_namespace_id(), name=f"{name} (home)", kind="home", created_by=name, created_at=now)
        user = User(
            username=name,
            password_hash=await self._hasher.hash(password),
            created_at=now,
            home_namespace=home.id,
            email=address,
            email_nonce=self.addresses.new_nonce() if address else None,
        )
        owner = Membership(home.id, name, "owner", home.name, home.kind)
        await self._store.create_account(user, home, owner)
        return user

    async def get_user(self, username: str) -> User | None:
        return await self._store.get_user(username)

    async def change_password(self, principal: Principal, current: str, new: str, address: str) -> None:
        check_password(new, "$.new_password")
        user = await self._password_checked(principal, current, address)
        await self._access_lost(user.username)
        await self._store.set_password_hash(user.username, await self._hasher.hash(new))
        await self._revoke_all(user.username)

    async def change_email(self, principal: Principal, current_password: str, email: str | None, address: str) -> User:
        """Set (or with None, remove) where notifications go; the password proves it is the owner asking. A
        new address is unconfirmed and gets its confirmation mail."""
        new_address = normalize_email(email) if email is not None else None
        user = await self._password_checked(principal, current_password, address)
        return await self.addresses.change(user, new_address)

    async def resend_confirmation(self, principal: Principal) -> None:
        user = await self._store.get_user(principal.username)
        if user is None:
            raise NotFound("The account no longer exists.")
        await self.addresses.resend(user)

    async def _password_checked(self, principal: Principal, password: str, address: str) -> User:
        """The caller's account, once ``password`` passed the throttled check (403 if it is wrong). The
        account is read only once the throttle let the check through: a locked-out flood reads nothing."""
        user: User | None = None

        async def stored_hash() -> str | None:
            nonlocal user
            user = await self._store.get_user(principal.username)
            return user.password_hash if user is not None else None

        if not await self._checks.verify(principal.username, address, stored_hash, password) or user is None:
            raise PermissionDenied("The current password is wrong.")
        return user

    async def set_disabled(self, username: str, disabled: bool) -> None:
        name = normalize_username(username)
        if disabled and await self._store.get_user(name) is not None:
            await self._access_lost(name)
        await self._store.set_disabled(name, disabled)
        if disabled:
            await self._revoke_all(name)

    # --- sessions ------------------------------------------------------------------------------------

    async def log_in(self, username: str, password: str, address: str) -> TokenPair:
        try:
            name = normalize_username(username)
        except ValidationFailed:
            name = None
        user: User | None = None

        async def stored_hash() -> str | None:
            nonlocal user
            user = await self._store.get_user(name) if name else None
            return user.password_hash if user is not None and not user.disabled else None

        if not await self._checks.verify(name or "-invalid-", address, stored_hash, password) or user is None:
            raise Unauthenticated(_BAD_LOGIN)
        if self._hasher.needs_rehash(user.password_hash):
            await self._store.set_password_hash(user.username, await self._hasher.hash(password))
        return await self._new_session(user.username)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token. Reusing an already rotated one revokes the whole session."""
        sid, secret = self._tokens.parse_refresh(refresh_token)
        session = await self._store.get_session(sid)
        if session is None or session.expires_at <= self._clock():
            raise Unauthenticated("The refresh token is invalid or has expired; log in again.")
        if not secrets_match(session.secret_hash, secret):
            await self._revoke([sid])
            raise Unauthenticated("The refresh token was already used; the session is closed.")
        user = await self._store.get_user(session.username)
        if user is None or user.disabled:
            await self._revoke([sid])
            raise Unauthenticated("The account is disabled.")
        token, secret_hash = self._tokens.new_refresh(sid)
        expires_at = int(self._clock()) + self._refresh_seconds
        if not await self._store.rotate_session(session, secret_hash, expires_at):
            raise Unauthenticated("The refresh token was already used; log in again.")
        return self._pair(Principal(user.username, sid), token)

    async def log_out(self, principal: Principal) -> None:
        await self._revoke([principal.sid])

    def authenticate(self, access_token: str) -> Principal:
        """The caller of a request: signature, expiry and the in-memory revocation list. No I/O."""
        principal = self._tokens.verify_access(access_token)
        if self._revoked.is_revoked(principal.sid):
            raise Unauthenticated("The session has ended; log in again.")
        return principal

    async def _new_session(self, username: str) -> TokenPair:
        sid = new_session_id()
        token, secret_hash = self._tokens.new_refresh(sid)
        expires_at = int(self._clock()) + self._refresh_seconds
        await self._store.put_session(Session(sid, username, secret_hash, expires_at))
        return self._pair(Principal(username, sid), token)

    def _pair(self, principal: Principal, refresh_token: str) -> TokenPair:
        return TokenPair(
            access_token=self._tokens.issue_access(principal),
            expires_in=self._tokens.access_seconds,
            refresh_token=refresh_token,
            refresh_expires_in=self._refresh_seconds,
            username=principal.username,
        )

    async def _access_lost(self, username: str) -> None:
        if self._on_access_lost is not None:
            await self._on_access_lost(username)

    async def _revoke_all(self, username: str) -> None:
        await self._revoke(await self._store.session_ids(username))

    async def _revoke(self, sids: list[str]) -> None:
        if not sids:
            return
        # Tokens of these sessions are all expired by then; the entries can go.
        expires_at = self._clock() + self._tokens.access_seconds + 60
        for sid in sids:
            self._revoked.add(sid, expires_at)
        await self._feed.publish(sids, expires_at)
        for sid in sids:
            await self._store.delete_session(sid)
