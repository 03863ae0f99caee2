"""The SDK's errors: light to import (no HTTP library), so a CLI can catch them before it needs HTTP.

Layer: tools (leaf). Every failure of a call to the service (``tools.sdk.client``) or of a transfer to or
from its storage (``tools.sdk.transfer``) is one of these; no aiohttp or botocore exception leaves the SDK.

::

    ApiError                    any failure; ``status`` (0: no HTTP answer), ``title``, ``detail``, ``server``
    ├── TransportError          no usable answer arrived; the request may or may not have been applied
    │   ├── NetworkError        the network failed us
    │   │   ├── ConnectError    could not connect (refused, unresolvable, unreachable): nothing was sent
    │   │   └── ConnectionLost  the connection broke while the request or its answer was on the way
    │   └── RequestTimeout      no answer within the timeout
    ├── ProtocolError           an answer the SDK cannot use: not the JSON the API promises, or a body that
    │   │                       does not match its content hash
    │   └── ContentReplaced     the stored body is not the one the service verified (replaced behind its
    │                           back): nothing was taken from it
    └── StatusError             the server answered with an error status; ``problem`` is its RFC 9457 body
        ├── Unauthenticated     401: no valid session (log in again)
        ├── Forbidden           403: known, but not allowed
        ├── NotFound            404: no such thing, or one the caller may not know exists
        └── Unavailable         429, 502, 503, 504 (and the storage's 500): busy or down; retried with backoff
                                before it is raised, ``retry_after`` as the server asked

``TransportError`` and ``Unavailable`` are *transient* (``is_transient``): the SDK retries them with
exponential backoff and jitter (``tools.sdk.retry``) and raises them only once its attempts are spent.
``server`` is the base URL that failed (the service's, or the storage endpoint of a transfer) and
``action`` what the SDK was doing ("committing changes", "uploading"); ``path`` is the local file a
transfer was moving, when there is one.
"""

from __future__ import annotations

import os
from pathlib import Path

from service.wire import Problem


class ApiError(Exception):
    """The service or its storage answered with an error, or could not be reached."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        problem: Problem | None = None,
        *,
        server: str = "",
        action: str = "",
        path: Path | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = problem
        self.server = server
        self.action = action
        self.path = path
        self.retry_after = retry_after


class TransportError(ApiError):
    """No usable answer arrived: the request may or may not have taken effect."""


class NetworkError(TransportError):
    """The network failed: no connection, or one that broke."""


class ConnectError(NetworkError):
    """No connection could be made (refused, unresolvable, unreachable): the request was not sent."""


class ConnectionLost(NetworkError):
    """The connection broke (reset, closed) while the request or its answer was on the way."""


class RequestTimeout(TransportError):
    """No answer arrived within the timeout."""


class ProtocolError(ApiError):
    """An answer the SDK cannot use: not the JSON the API promises, or content that does not match its hash."""


class ContentReplaced(ProtocolError):
    """The object at a blob key is not the one the service verified for the file (replaced behind its back,
    or gone): nothing was downloaded. The service answers 409 ``content-replaced`` for it too."""


class StatusError(ApiError):
    """The server answered with an error status; ``problem`` holds the service's RFC 9457 body (None for
    the storage's errors, whose ``title`` is S3's error code)."""


class Unauthenticated(StatusError):
    """401: no valid session; refresh it or log in again."""


class Forbidden(StatusError):
    """403: the caller is known but may not do this."""


class NotFound(StatusError):
    """404: no such resource, or one the caller may not learn exists."""


class Unavailable(StatusError):
    """429, 502, 503, 504 (and the storage's 500 ``InternalError``): busy or down; worth retrying later."""


#: The statuses worth retrying: busy (429) and a proxy's or a load balancer's "down" (502, 503, 504).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_BY_STATUS: dict[int, type[StatusError]] = {401: Unauthenticated, 403: Forbidden, 404: NotFound}


def status_error(
    status: int,
    title: str,
    detail: str,
    problem: Problem | None = None,
    *,
    server: str = "",
    action: str = "",
    path: Path | None = None,
    retry_after: float | None = None,
) -> StatusError:
    """The ``StatusError`` subclass for an HTTP error status."""
    kind = Unavailable if status in RETRY_STATUSES else _BY_STATUS.get(status, StatusError)
    return kind(status, title, detail, problem, server=server, action=action, path=path, retry_after=retry_after)


def connect_reason(error: object) -> str:
    """A connection failure's reason in a few words ("connection refused", "name or service not known"),
    from an ``OSError`` or an HTTP library's error that wraps one (``os_error``)."""
    os_error = getattr(error, "os_error", error)
    if isinstance(os_error, OSError):
        # uvloop's strerror is "Connect call failed (...)": the errno's own words say more.
        if os_error.errno is not None and os_error.errno > 0:
            return os.strerror(os_error.errno).lower()
        if os_error.strerror:
            return os_error.strerror.lower()
    return str(error) or type(error).__name__


def stopped_answering(exc: ConnectError) -> ConnectionLost:
    """A ``ConnectError`` from a server that had answered before: it went away (stopped, crashed, the
    network dropped), which is a lost connection to the user, not a wrong address."""
    reason = exc.detail.rpartition(": ")[2] if ": " in exc.detail else "no connection"
    return ConnectionLost(
        0,
        "Stopped answering",
        f"{exc.server} stopped answering: {reason}",
        server=exc.server,
        action=exc.action,
        path=exc.path,
    )


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: no answer arrived, or the server said it is busy or down."""
    return isinstance(exc, TransportError | Unavailable)
