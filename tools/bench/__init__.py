"""Benchmarks: ``python -m tools.bench [NAME]``. Each prints its figures next to a baseline measured in
the same run, so the ratio holds on any machine."""

from __future__ import annotations

import argparse
import re
from typing import Any

_LITERAL = re.compile(r"``(.+?)``")


def help_text(doc: str | None) -> str:
    """A docstring as a command's help shows it: reST literals (double backticks) as plain text."""
    return _LITERAL.sub(r"\1", doc or "")


class _WithDefaults(argparse.HelpFormatter):
    """Each flag's default after its help, unless it has none or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


class BenchParser(argparse.ArgumentParser):
    """A benchmark's command line: its docstring as the description, and every flag's default in its help."""

    def __init__(self, prog: str, doc: str | None) -> None:
        super().__init__(prog=prog, description=help_text(doc), formatter_class=_WithDefaults)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("help") is None and kwargs.get("default") not in (None, False):
            kwargs["help"] = "default: %(default)s"  # argparse lists a flag without help bare
        return super().add_argument(*args, **kwargs)
