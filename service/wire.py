"""Wire models shared by the service and its clients: the JSON bodies of the API.

Layer: leaf, shared with ``tools/``. Every model rejects unknown fields (see ``service.codec``).
"""

from __future__ import annotations

from service.codec import WireModel


class FieldProblem(WireModel):
    """One invalid field of a request: a JSON path and what is wrong with it."""

    path: str
    message: str


class Problem(WireModel, omit_defaults=True):
    """An RFC 9457 problem details body (``application/problem+json``).

    ``type`` identifies the kind of problem (a link into the docs page); ``detail`` explains this
    occurrence; ``request_id`` matches the ``X-Request-ID`` header and the service's log lines.
    """

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[FieldProblem] | None = None
    retry_after: int | None = None
    checks: dict[str, str] | None = None


class Health(WireModel):
    """Liveness: the process is up and its event loop answers."""

    status: str


class Readiness(WireModel):
    """Readiness: every dependency answered (``checks`` maps each to ``ok`` or a reason)."""

    status: str
    checks: dict[str, str]
