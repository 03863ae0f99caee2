"""The SDK's error: light to import (no HTTP library), so a CLI can catch it before it needs HTTP.

Layer: tools (leaf).
"""

from __future__ import annotations

from service.wire import Problem


class ApiError(Exception):
    """The service answered with an error (or could not be reached)."""

    def __init__(self, status: int, title: str, detail: str, problem: Problem | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = problem
