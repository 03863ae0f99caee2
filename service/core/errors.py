"""The domain exception tree: every error the service means to report to a client.

Layer: core (leaf). Imports nothing from aiohttp, botocore or the rest of the project. The API layer maps
each class to an HTTP status and an RFC 9457 problem type (``service.api.problems``), looked up along the
exception's ``__mro__`` so a subclass inherits its parent's mapping unless it has its own.

::

    FileSyncError                 any error meant for the client; ``detail`` is safe to show
    ├── BadRequest                the request cannot be parsed at all (malformed JSON, bad encoding)
    │   └── CursorInvalid         a change-feed cursor that is malformed or was never issued here
    ├── ValidationFailed          parsed, but a field is missing, mistyped, unknown or out of range
    ├── Unauthenticated           no credentials, or credentials that are invalid or expired
    ├── PermissionDenied          authenticated, but not allowed to do this
    ├── NotFound                  no such resource (or one the caller may not know exists)
    ├── Conflict                  the resource's state does not allow this
    │   ├── VersionConflict       a conditional write lost: someone else changed it first
    │   └── ContentReplaced       the stored body was replaced behind the service's back: not served
    ├── PayloadTooLarge           a body, batch or part is over its documented limit
    ├── BodyStalled               the client stopped sending the body it announced, or sent it too slowly
    ├── RateLimited               too many attempts; ``retry_after`` seconds until the next may pass
    ├── Overloaded                this worker is at its budget (of request bodies held); nothing was done
    └── DependencyUnavailable     an AWS service did not answer in time or refused; retry later
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: ``path`` is a JSON path such as ``$.entries[3].size``."""

    path: str
    message: str


class FileSyncError(Exception):
    """Base of every error a client may see. ``detail`` is a sentence written for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(FileSyncError):
    """The request could not be parsed (malformed JSON, wrong encoding, bad header syntax)."""


class CursorInvalid(BadRequest):
    """A feed cursor that is malformed or that this namespace never issued: the client should fall back
    to a full compare, which hands out a fresh cursor."""


class ValidationFailed(FileSyncError):
    """The request parsed but its content is invalid; ``errors`` names each offending field."""

    def __init__(self, detail: str, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def of(cls, path: str, message: str) -> ValidationFailed:
        """One invalid field: ``message`` names what is wrong with the value at JSON path ``path``."""
        return cls(f"Invalid {path}: {message}.", (FieldError(path, message),))


class Unauthenticated(FileSyncError):
    """Missing, malformed, expired or revoked credentials."""


class PermissionDenied(FileSyncError):
    """The caller is known but may not perform this operation."""


class NotFound(FileSyncError):
    """The resource does not exist, or the caller may not learn that it does."""


class Conflict(FileSyncError):
    """The resource's current state does not allow the operation."""


class VersionConflict(Conflict):
    """A conditional write lost a race: the stored version is not the one the caller based its change on.
    ``current`` is the version that won (a ``core.models.FileVersion``), if there is one."""

    def __init__(self, detail: str, current: object | None = None) -> None:
        super().__init__(detail)
        self.current = current


class ContentReplaced(Conflict):
    """The object holding a version's verified body was replaced (or removed) behind the service's back,
    and no verified copy is left to serve. Nothing else is served in its place; the content counts as
    missing (``blobs:check`` lists it) until someone uploads it again."""


class PayloadTooLarge(FileSyncError):
    """A body, batch or part exceeds its documented limit."""


class QuotaExceeded(FileSyncError):
    """A commit would take the account that pays for the namespace (its owner) past its storage quota;
    nothing of it was written."""

    def __init__(self, detail: str, used: int, quota: int, needed: int) -> None:
        super().__init__(detail)
        self.used = used
        self.quota = quota
        self.needed = needed


class BodyStalled(FileSyncError):
    """The request body stopped arriving (the idle timeout) or came too slowly to finish by its deadline
    (a stalled or slowloris client)."""


class RateLimited(FileSyncError):
    """Too many attempts; the client should wait ``retry_after`` seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Overloaded(FileSyncError):
    """The worker holds as much as its budget allows; the request was refused before any work and may be
    retried after ``retry_after`` seconds, whatever its method."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class DependencyUnavailable(FileSyncError):
    """An AWS dependency timed out, throttled or failed; the operation may be retried."""
