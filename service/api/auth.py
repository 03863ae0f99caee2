"""Accounts and tokens: sign-up, login, refresh, logout, the caller's account, password change.

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service.api.bodies import read_json
from service.api.responses import json_response
from service.api.security import authenticate, client_address
from service.core.accounts import TokenPair
from service.core.errors import NotFound
from service.core.models import User
from service.keys import ACCOUNTS
from service.wire import Account, EmailChange, Login, PasswordChange, RefreshRequest, SignUp, Tokens


def _account(user: User) -> Account:
    return Account(
        username=user.username, home_namespace=user.home_namespace, created_at=user.created_at, email=user.email
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
    return json_response(_account(user), status=201)


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
    return json_response(_account(user))


async def put_password(request: web.Request) -> web.Response:
    """Change the caller's password; every session of the account ends."""
    principal = authenticate(request)
    body = await read_json(request, PasswordChange)
    await request.app[ACCOUNTS].change_password(principal, body.current_password, body.new_password)
    return web.Response(status=204)


async def put_email(request: web.Request) -> web.Response:
    """Set or remove the caller's notification address (the current password is required)."""
    principal = authenticate(request)
    body = await read_json(request, EmailChange)
    user = await request.app[ACCOUNTS].change_email(principal, body.current_password, body.email)
    return json_response(_account(user))
