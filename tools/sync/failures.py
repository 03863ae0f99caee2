"""How the sync CLI ends: its exit codes, and the one line every failure prints.

Layer: tools (client). Light to import: the SDK's errors only, no HTTP library. ``explain`` is the one
place an exception becomes an exit code and a sentence (pip's ``cli/base_command.py`` model); its table
is looked up along the exception's ``__mro__`` (starlette's exception handlers), so a subclass answers
like its parent until it has an entry of its own.

Exit codes (``--help`` and the README list them):

==  ===============================================================================================
0   done
1   failed: the round could not finish (the network, the server or its storage, the session); the
    line says what failed and what to do, and running the command again resumes
2   usage or user error: a bad argument, a folder that is not one, not logged in
3   done, with items skipped (each named in the summary and in ``status``)
==  ===============================================================================================
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.sdk.errors import (
    ApiError,
    ConnectError,
    Forbidden,
    NetworkError,
    ProtocolError,
    RequestTimeout,
    StatusError,
    Unauthenticated,
    Unavailable,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3
#: Interrupted (Ctrl-C): the shell's convention, 128 + SIGINT.
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0  done
  1  failed: the network, the server or the session; the message says what to do, and running the
     command again resumes where it stopped
  2  usage or user error (a bad argument, not logged in, not a synced folder)
  3  done, with items skipped (named in the summary and in "status")"""


class UserError(Exception):
    """Something the user can fix; the message says what (exit 2)."""


class Guidance(Exception):
    """A failure the client recognised, whose message says exactly what to do next (exit 1): the server
    forgot this device's session, its account or the folder's namespace."""


@dataclass(frozen=True, slots=True)
class Context:
    """What the message needs to know about the command that failed."""

    command: str
    #: The service's URL, to tell it apart from the storage endpoint of a transfer ("" if unknown).
    server: str = ""
    #: The synced folder, so a file a transfer was moving is named relative to it.
    folder: Path | None = None

    @property
    def again(self) -> str:
        """What to do once the server answers again."""
        if self.command == "watch":
            return "trying again"  # the watch says when
        if self.command in ("sync", "relink"):
            return "run sync again to resume"
        return f"run {self.command} again"


def _where(exc: ApiError, context: Context) -> str:
    if not exc.server:
        return "the server"
    kind = "server" if not context.server or exc.server.rstrip("/") == context.server.rstrip("/") else "storage"
    return f"the {kind} at {exc.server}"


def _while(exc: ApiError, context: Context) -> str:
    if not exc.action:
        return ""
    if exc.path is None:
        return f" while {exc.action}"
    shown = str(exc.path)
    if context.folder is not None:
        with contextlib.suppress(ValueError):  # outside the folder: the whole path
            shown = exc.path.relative_to(context.folder).as_posix()
    return f" while {exc.action} {shown}"


def _connect(exc: ConnectError, c: Context) -> str:
    reason = exc.detail.rpartition(": ")[2] if ": " in exc.detail else ""
    because = f" ({reason})" if reason else ""
    return (
        f"cannot reach {_where(exc, c)}{because}{_while(exc, c)}; check that it is running and that the address is"
        f" right, then {c.again}"
    )


def _stopped(exc: ApiError, c: Context) -> str:
    return f"{_where(exc, c)} stopped answering{_while(exc, c)}; {c.again}"


def _unavailable(exc: ApiError, c: Context) -> str:
    return f"{_where(exc, c)} is busy or down ({exc.status} {exc.title}){_while(exc, c)}; {c.again}"


def _unauthenticated(exc: ApiError, c: Context) -> str:
    return f"{_where(exc, c)} refused this device's session ({exc.detail}); log in again, then {c.again}"


def _forbidden(exc: ApiError, c: Context) -> str:
    return f"not allowed{_while(exc, c)}: {exc.detail}"


def _protocol(exc: ApiError, c: Context) -> str:
    return f"{_where(exc, c)} gave an answer this client cannot use{_while(exc, c)} ({exc.detail}); {c.again}"


def _status(exc: ApiError, c: Context) -> str:
    return f"{exc.title}: {exc.detail}"


def _api(exc: ApiError, c: Context) -> str:
    return exc.detail if exc.status == 0 else f"{exc.title}: {exc.detail}"


def _permission(exc: PermissionError, c: Context) -> str:
    return f"permission denied: {exc.filename}"


def _os(exc: OSError, c: Context) -> str:
    return f"{exc.filename}: {exc.strerror}" if exc.filename else f"{exc.strerror or exc}"


#: Exception class -> (exit code, the line after "error: "). Looked up along ``__mro__``.
_HANDLERS: dict[type[BaseException], tuple[int, Callable[[Any, Context], str]]] = {
    UserError: (EXIT_USAGE, lambda exc, c: str(exc)),
    Guidance: (EXIT_FAILED, lambda exc, c: str(exc)),
    ApiError: (EXIT_FAILED, _api),
    ConnectError: (EXIT_FAILED, _connect),
    NetworkError: (EXIT_FAILED, _stopped),
    RequestTimeout: (EXIT_FAILED, _stopped),
    Unavailable: (EXIT_FAILED, _unavailable),
    Unauthenticated: (EXIT_FAILED, _unauthenticated),
    Forbidden: (EXIT_FAILED, _forbidden),
    StatusError: (EXIT_FAILED, _status),
    ProtocolError: (EXIT_FAILED, _protocol),
    PermissionError: (EXIT_FAILED, _permission),
    OSError: (EXIT_FAILED, _os),
}


def explain(exc: BaseException, context: Context) -> tuple[int, str] | None:
    """The exit code and the one line (without "error: ") for ``exc``; None for an exception nobody
    expected (a bug: the caller keeps its traceback in a log file, not on the screen)."""
    for kind in type(exc).__mro__:
        handler = _HANDLERS.get(kind)
        if handler is not None:
            code, describe = handler
            return code, " ".join(describe(exc, context).split())
    return None


def unexpected(exc: BaseException, log: Path) -> str:
    """The line for a bug, whose traceback went to ``log``."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    where = os.fspath(log)
    return f"unexpected {type(exc).__name__}{': ' + text if text else ''} (a bug; the details are in {where})"
