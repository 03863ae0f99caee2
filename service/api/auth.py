"""Accounts and tokens: sign-up, login, refresh, logout, the caller's account, password change, and the
notification address with its confirmation link.

Layer: api. The confirmation link, like the unsubscribe link, needs no login (the token is the proof):
``GET`` shows a page with a button and changes nothing, since mail scanners fetch every link in a message
and must not confirm an address someone else typed; the button ``POST``s, which confirms.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from service.api.bodies import read_json
from service.api.responses import json_response
from service.api.security import authenticate, client_address
from service.core.accounts import TokenPair
from service.core.errors import NotFound
from service.core.feedback import Suppression
from service.core.links import TOKEN_MAX
from service.core.models import User
from service.keys import ACCOUNTS, FILES
from service.wire import (
    Account,
    EmailChange,
    EmailConfirmed,
    Login,
    PasswordChange,
    RefreshRequest,
    SignUp,
    Storage,
    Tokens,
)


def _account(user: User, default_quota: int, suppression: Suppression | None = None) -> Account:
    return Account(
        username=user.username,
        home_namespace=user.home_namespace,
        created_at=user.created_at,
        email=user.email,
        email_confirmed=user.email is not None and user.email_confirmed,
        email_suppressed=suppression is not None,
        email_suppressed_reason=None if suppression is None else suppression.reason,
        storage=Storage(used=user.usage.used, quota=user.usage.limit(default_quota)),
    )


def _tokens(pair: TokenPair) -> Tokens:
    return Tokens(
        access_token=pair.access_token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
        username=pair.username,
    )


async def post_signup(request: web.Request) -> web.Response:
    """Create an account and its home namespace (only where open sign-up is enabled)."""
    body = await read_json(request, SignUp)
    user = await request.app[ACCOUNTS].sign_up(body.username, body.password, body.email)
    return json_response(_account(user, request.app[FILES].default_quota), status=201)


async def post_token(request: web.Request) -> web.Response:
    """Log in: exchange a username and password for an access token and a refresh token."""
    body = await read_json(request, Login)
    pair = await request.app[ACCOUNTS].log_in(body.username, body.password, client_address(request))
    return json_response(_tokens(pair))


async def post_refresh(request: web.Request) -> web.Response:
    """Exchange a refresh token for new tokens; the old refresh token stops working."""
    body = await read_json(request, RefreshRequest)
    return json_response(_tokens(await request.app[ACCOUNTS].refresh(body.refresh_token)))


async def post_logout(request: web.Request) -> web.Response:
    """End this session: its access and refresh tokens stop working."""
    await request.app[ACCOUNTS].log_out(authenticate(request))
    return web.Response(status=204)


async def get_account(request: web.Request) -> web.Response:
    """The caller's account."""
    principal = authenticate(request)
    user = await request.app[ACCOUNTS].get_user(principal.username)
    if user is None:
        raise NotFound("The account no longer exists.")
    suppression = await request.app[ACCOUNTS].addresses.suppression(user)
    return json_response(_account(user, request.app[FILES].default_quota, suppression))


async def put_password(request: web.Request) -> web.Response:
    """Change the caller's password; every session of the account ends."""
    principal = authenticate(request)
    body = await read_json(request, PasswordChange)
    await request.app[ACCOUNTS].change_password(
        principal, body.current_password, body.new_password, client_address(request)
    )
    return web.Response(status=204)


async def put_email(request: web.Request) -> web.Response:
    """Set or remove the caller's notification address (the current password is required). A new address
    gets one confirmation mail and no notification until it is confirmed."""
    principal = authenticate(request)
    body = await read_json(request, EmailChange)
    user = await request.app[ACCOUNTS].change_email(
        principal, body.current_password, body.email, client_address(request)
    )
    suppression = await request.app[ACCOUNTS].addresses.suppression(user)
    return json_response(_account(user, request.app[FILES].default_quota, suppression))


async def post_email_confirmation(request: web.Request) -> web.Response:
    """Send the pending address's confirmation mail again (a few an hour at most)."""
    await request.app[ACCOUNTS].resend_confirmation(authenticate(request))
    return web.Response(status=204)


def _confirm_token(request: web.Request) -> str:
    token = request.query.get("token", "")
    if not token or len(token) > TOKEN_MAX:
        raise NotFound("This confirmation link is not valid.")
    return token


async def get_email_confirm(request: web.Request) -> web.Response:
    """A page asking to confirm the address (checks the link first; confirms nothing)."""
    token = _confirm_token(request)
    _, address = await request.app[ACCOUNTS].addresses.pending(token)
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Confirm your address</title></head><body>"
        f"<p>Send file change notifications to <b>{escape(address)}</b>?</p>"
        f'<form method=post action="?token={escape(token)}"><button type=submit>Confirm</button></form>'
        "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def post_email_confirm(request: web.Request) -> web.Response:
    """Confirm the address a link names (once; no login needed)."""
    address = await request.app[ACCOUNTS].addresses.confirm(_confirm_token(request))
    return json_response(EmailConfirmed(email=address, email_confirmed=True))
