"""Benchmarks: ``python -m tools.bench [NAME]``. Each prints its figures next to a baseline measured in
the same run, so the ratio holds on any machine."""

from __future__ import annotations

import re

_LITERAL = re.compile(r"``(.+?)``")


def help_text(doc: str | None) -> str:
    """A docstring as a command's help shows it: reST literals (double backticks) as plain text."""
    return _LITERAL.sub(r"\1", doc or "")
