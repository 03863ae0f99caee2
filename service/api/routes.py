"""The URL table: every route of the service, registered and documented from one list.

Layer: api. Nothing but the table and the function that installs it.
"""

from __future__ import annotations

from aiohttp import web

from service.api import auth, credentials, docs, health, namespaces
from service.api.openapi import Operation
from service.wire import (
    Account,
    AwsCredentials,
    CredentialsRequest,
    Health,
    Login,
    Member,
    MemberUpdate,
    NamespaceCreate,
    NamespaceDetail,
    NamespaceList,
    NamespaceSummary,
    PasswordChange,
    Readiness,
    RefreshRequest,
    Tokens,
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/healthz",
        health.get_healthz,
        "Liveness",
        "operations",
        responses={200: Health},
    ),
    Operation(
        "GET",
        "/readyz",
        health.get_readyz,
        "Readiness",
        "operations",
        responses={200: Readiness},
        errors=(503,),
    ),
    Operation(
        "GET",
        "/metrics",
        health.get_metrics,
        "Prometheus metrics",
        "operations",
        responses={200: "text/plain"},
    ),
    Operation(
        "GET",
        "/v1/openapi.json",
        docs.get_openapi,
        "OpenAPI document",
        "documentation",
        responses={200: "application/json"},
    ),
    Operation(
        "GET",
        "/v1/docs",
        docs.get_docs,
        "API reference page",
        "documentation",
        responses={200: "text/html"},
    ),
    Operation(
        "POST",
        "/v1/auth/signup",
        auth.post_signup,
        "Sign up",
        "accounts",
        request=Login,
        responses={201: Account},
        errors=(403, 409),
    ),
    Operation(
        "POST",
        "/v1/auth/token",
        auth.post_token,
        "Log in",
        "accounts",
        request=Login,
        responses={200: Tokens},
        errors=(401, 429),
    ),
    Operation(
        "POST",
        "/v1/auth/refresh",
        auth.post_refresh,
        "Refresh tokens",
        "accounts",
        request=RefreshRequest,
        responses={200: Tokens},
        errors=(401,),
    ),
    Operation(
        "POST", "/v1/auth/logout", auth.post_logout, "Log out", "accounts", responses={204: None}, auth=True
    ),
    Operation(
        "GET",
        "/v1/account",
        auth.get_account,
        "Your account",
        "accounts",
        responses={200: Account},
        auth=True,
    ),
    Operation(
        "PUT",
        "/v1/account/password",
        auth.put_password,
        "Change password",
        "accounts",
        request=PasswordChange,
        responses={204: None},
        errors=(403,),
        auth=True,
    ),
    Operation(
        "GET",
        "/v1/namespaces",
        namespaces.get_namespaces,
        "Your namespaces",
        "namespaces",
        responses={200: NamespaceList},
        auth=True,
    ),
    Operation(
        "POST",
        "/v1/namespaces",
        namespaces.post_namespace,
        "Create a shared namespace",
        "namespaces",
        request=NamespaceCreate,
        responses={201: NamespaceSummary},
        auth=True,
    ),
    Operation(
        "GET",
        "/v1/namespaces/{ns}",
        namespaces.get_namespace,
        "A namespace and its members",
        "namespaces",
        responses={200: NamespaceDetail},
        errors=(404,),
        auth=True,
    ),
    Operation(
        "PUT",
        "/v1/namespaces/{ns}/members/{username}",
        namespaces.put_member,
        "Add or update a member",
        "namespaces",
        request=MemberUpdate,
        responses={200: Member},
        errors=(403, 404, 409),
        auth=True,
    ),
    Operation(
        "DELETE",
        "/v1/namespaces/{ns}/members/{username}",
        namespaces.delete_member,
        "Remove a member or leave",
        "namespaces",
        responses={204: None},
        errors=(403, 404, 409),
        auth=True,
    ),
    Operation(
        "POST",
        "/v1/credentials",
        credentials.post_credentials,
        "Scoped AWS credentials",
        "credentials",
        request=CredentialsRequest,
        responses={200: AwsCredentials},
        errors=(404, 503),
        auth=True,
    ),
)


def add_routes(app: web.Application) -> None:
    """Register every operation; GET routes also answer HEAD."""
    for op in OPERATIONS:
        if op.method == "GET":
            app.router.add_get(op.path, op.handler, name=op.operation_id)
        else:
            app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
