"""RFC 9457 problem details: the one place errors become HTTP responses.

Layer: api. Maps the domain exception tree (``service.core.errors``) and aiohttp's ``HTTPException``s to
``application/problem+json`` responses. Domain classes are looked up along the ``__mro__``, so a new
subclass answers like its parent until it gets an entry of its own. ``PROBLEM_TYPES`` also feeds the
docs page, where each ``type`` URI points.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from service import codec
from service.api.responses import file_info
from service.core import errors
from service.core.models import FileVersion
from service.logs import REQUEST_ID
from service.wire import FieldProblem, FileInfo, Problem

PROBLEM_MEDIA_TYPE = "application/problem+json"
DOCS_PATH = "/v1/docs"


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    status: int
    title: str
    description: str

    @property
    def uri(self) -> str:
        return f"{DOCS_PATH}#problem-{self.slug}"


_DOMAIN: dict[type[errors.FileSyncError], ProblemType] = {
    errors.FileSyncError: ProblemType("bad-request", 400, "Bad request", "The request cannot be served as sent."),
    errors.BadRequest: ProblemType("malformed", 400, "Malformed request", "The body or a header could not be parsed."),
    errors.CursorInvalid: ProblemType(
        "cursor-invalid",
        400,
        "Invalid cursor",
        "The change-feed cursor is malformed or unknown here: do a full compare (POST /v1/ns/{ns}/compare), "
        "which returns a fresh cursor.",
    ),
    errors.ValidationFailed: ProblemType(
        "validation-failed",
        422,
        "Invalid request content",
        "The body parsed but a field is missing, has the wrong type, is unknown or is out of range;"
        " `errors` lists each field by JSON path.",
    ),
    errors.Unauthenticated: ProblemType(
        "unauthenticated",
        401,
        "Authentication required",
        "No bearer token, or one that is malformed, expired or revoked.",
    ),
    errors.PermissionDenied: ProblemType("forbidden", 403, "Forbidden", "The caller may not perform this operation."),
    errors.NotFound: ProblemType("not-found", 404, "Not found", "No such resource."),
    errors.Conflict: ProblemType("conflict", 409, "Conflict", "The resource's current state does not allow this."),
    errors.VersionConflict: ProblemType(
        "version-conflict",
        409,
        "Version conflict",
        "Someone else changed the resource first; fetch the current version and retry.",
    ),
    errors.ContentReplaced: ProblemType(
        "content-replaced",
        409,
        "Content replaced",
        "The stored body of this version is not the one the service verified, so it is not served; upload "
        "the content again (it is listed as missing) and the download works again.",
    ),
    errors.PayloadTooLarge: ProblemType(
        "payload-too-large", 413, "Payload too large", "A body, batch or part is over its limit."
    ),
    errors.QuotaExceeded: ProblemType(
        "quota-exceeded",
        507,
        "Quota exceeded",
        "The commit would take the namespace owner's account past its storage quota; nothing was written. "
        "`used`, `quota` and `needed` give the bytes; free space (or ask for a larger quota) and commit again.",
    ),
    errors.BodyStalled: ProblemType(
        "body-stalled",
        408,
        "Request body stalled",
        "The body stopped arriving for the idle timeout, or came too slowly to finish by its deadline; "
        "nothing was stored. Send it again.",
    ),
    errors.RateLimited: ProblemType(
        "rate-limited", 429, "Too many requests", "Wait `Retry-After` seconds before retrying."
    ),
    errors.Overloaded: ProblemType(
        "busy",
        503,
        "Service busy",
        "This worker holds as many request bodies as its memory budget allows; nothing was read or done. "
        "Retry after `Retry-After` seconds (any method: nothing happened).",
    ),
    errors.DependencyUnavailable: ProblemType(
        "unavailable",
        503,
        "Service unavailable",
        "A storage dependency did not answer; retry with backoff.",
    ),
}

_HTTP: dict[int, ProblemType] = {
    400: _DOMAIN[errors.BadRequest],
    404: _DOMAIN[errors.NotFound],
    405: ProblemType(
        "method-not-allowed",
        405,
        "Method not allowed",
        "The resource exists but not with this method; `Allow` lists the methods it has.",
    ),
    413: _DOMAIN[errors.PayloadTooLarge],
    415: ProblemType(
        "unsupported-media-type",
        415,
        "Unsupported media type",
        "The body must be sent with the content type and coding the operation documents (JSON: "
        "`application/json`, as it is or `gzip`/`deflate`; uploads: no `Content-Encoding`); "
        "`Accept-Encoding` names the codings taken.",
    ),
}

#: Headers of an aiohttp HTTP exception that its problem response keeps.
_KEPT_HEADERS = ("allow", "retry-after", "content-range", "accept-encoding")

INTERNAL = ProblemType(
    "internal",
    500,
    "Internal server error",
    "A fault on the service's side; the request id identifies it in the logs.",
)

#: Every problem type a client can see, for the docs page.
PROBLEM_TYPES: tuple[ProblemType, ...] = tuple(
    {p.slug: p for p in (*_DOMAIN.values(), *_HTTP.values(), INTERNAL)}.values()
)


def problem_response(
    request: web.BaseRequest,
    kind: ProblemType,
    detail: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    errors_: list[FieldProblem] | None = None,
    retry_after: int | None = None,
    checks: dict[str, str] | None = None,
    current: FileInfo | None = None,
    quota: errors.QuotaExceeded | None = None,
) -> web.Response:
    status = status or kind.status
    body = Problem(
        type=kind.uri,
        title=kind.title,
        status=status,
        detail=detail,
        instance=request.path,
        request_id=REQUEST_ID.get(),
        errors=errors_,
        retry_after=retry_after,
        checks=checks,
        current=current,
        used=quota.used if quota else None,
        quota=quota.quota if quota else None,
        needed=quota.needed if quota else None,
    )
    response = web.Response(body=codec.dumps(body), status=status, content_type=PROBLEM_MEDIA_TYPE, headers=headers)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def from_domain_type(cls: type[errors.FileSyncError]) -> ProblemType:
    """The problem type of a domain error class: its own entry or its nearest ancestor's."""
    return next(_DOMAIN[base] for base in cls.__mro__ if base in _DOMAIN)


def from_domain(request: web.BaseRequest, exc: errors.FileSyncError) -> web.Response:
    kind = from_domain_type(type(exc))
    headers: dict[str, str] = {}
    retry_after: int | None = None
    field_problems: list[FieldProblem] | None = None
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="filesync"'
    if isinstance(exc, errors.RateLimited | errors.Overloaded):
        retry_after = exc.retry_after
    if isinstance(exc, errors.DependencyUnavailable):
        retry_after = 1
    if isinstance(exc, errors.ValidationFailed) and exc.errors:
        field_problems = [FieldProblem(path=e.path, message=e.message) for e in exc.errors]
    current = None
    if isinstance(exc, errors.VersionConflict) and isinstance(exc.current, FileVersion):
        current = file_info(exc.current)
    return problem_response(
        request,
        kind,
        exc.detail,
        headers=headers,
        errors_=field_problems,
        retry_after=retry_after,
        current=current,
        quota=exc if isinstance(exc, errors.QuotaExceeded) else None,
    )


def from_http(request: web.BaseRequest, exc: web.HTTPException) -> web.Response:
    kind = _HTTP.get(exc.status) or ProblemType(f"http-{exc.status}", exc.status, exc.reason, exc.reason)
    headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
    if exc.status == 404:
        detail = f"Nothing is served at {request.path}; the API lives under /v1 (see {DOCS_PATH})."
    elif exc.status == 405:
        allowed = ", ".join(sorted(exc.allowed_methods)) if isinstance(exc, web.HTTPMethodNotAllowed) else ""
        detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}."
    else:
        text = exc.text or ""
        detail = text.split(": ", 1)[-1] if text.startswith(str(exc.status)) else text
        detail = detail or exc.reason
    return problem_response(request, kind, detail, status=exc.status, headers=headers)


def internal(request: web.BaseRequest) -> web.Response:
    return problem_response(
        request,
        INTERNAL,
        f"The service failed to handle this request; quote request id {REQUEST_ID.get()}.",
    )
