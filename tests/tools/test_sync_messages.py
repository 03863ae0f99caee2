"""The sync CLI's contract with its user, without a server: exit codes, one line per failure, what
``--server`` accepts, and what a bug looks like (a line, and the traceback in a log file).

Tests layer: pure functions and ``main`` in process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.sdk import errors
from tools.sync import __main__ as cli
from tools.sync.failures import EXIT_FAILED, EXIT_USAGE, Context, Guidance, UserError, explain


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("localhost:8080/", "http://localhost:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("sync.localhost", "http://sync.localhost"),
        ("sync.example.com", "https://sync.example.com"),
        ("10.0.0.5:8080", "https://10.0.0.5:8080"),
        ("http://sync.example.com:8080/", "http://sync.example.com:8080"),
        ("https://example.com/filesync", "https://example.com/filesync"),
        ("  HTTP://127.0.0.1:9  ", "HTTP://127.0.0.1:9"),
    ],
)
def test_a_server_without_a_scheme_is_http_on_loopback_and_https_elsewhere(given: str, url: str):
    assert cli.server_url(given) == url


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "empty"),
        ("http://", "names no host"),
        ("ftp://example.com", "scheme must be http or https"),
        ("example.com:http", "Port could not be cast"),
        ("127.0.0.1:99999", "out of range"),
        ("127.0.0.1:0", "port 0"),
        ("https://user:pw@example.com", "no user"),
        ("https://example.com/?q=1", "no user, query or fragment"),
    ],
)
def test_a_malformed_server_is_a_usage_error_that_says_what_is_wrong(given: str, why: str):
    with pytest.raises(UserError) as info:
        cli.server_url(given)
    assert why in str(info.value)


SERVER = "http://127.0.0.1:8080"
STORAGE = "http://127.0.0.1:4566"


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (UserError("not a folder"), EXIT_USAGE, "not a folder"),
        (Guidance("run relink"), EXIT_FAILED, "run relink"),
        (
            errors.ConnectError(0, "Unreachable", f"cannot reach {SERVER}: connection refused", server=SERVER),
            EXIT_FAILED,
            f"cannot reach the server at {SERVER} (connection refused); check that it is running and that the"
            " address is right, then run sync again to resume",
        ),
        (
            errors.ConnectionLost(
                0, "Stopped answering", "x", server=STORAGE, action="uploading", path=Path("/data/docs/big.bin")
            ),
            EXIT_FAILED,
            f"the storage at {STORAGE} stopped answering while uploading docs/big.bin; run sync again to resume",
        ),
        (
            errors.RequestTimeout(0, "Timed out", "x", server=SERVER, action="committing changes"),
            EXIT_FAILED,
            f"the server at {SERVER} stopped answering while committing changes; run sync again to resume",
        ),
        (
            errors.Unavailable(503, "Service unavailable", "x", server=SERVER, action="comparing the folder"),
            EXIT_FAILED,
            f"the server at {SERVER} is busy or down (503 Service unavailable) while comparing the folder; run"
            " sync again to resume",
        ),
        (
            errors.StatusError(409, "Conflict", "A home namespace cannot be shared.", server=SERVER),
            EXIT_FAILED,
            "Conflict: A home namespace cannot be shared.",
        ),
        (
            errors.ProtocolError(0, "Bad answer", "not JSON", server=SERVER, action="reading the account"),
            EXIT_FAILED,
            f"the server at {SERVER} gave an answer this client cannot use while reading the account (not JSON);"
            " run sync again to resume",
        ),
        (PermissionError(13, "Permission denied", "/data/secret"), EXIT_FAILED, "permission denied: /data/secret"),
        (OSError(28, "No space left on device", "/data/x"), EXIT_FAILED, "/data/x: No space left on device"),
    ],
)
def test_each_failure_is_one_line_and_an_exit_code(exc: BaseException, code: int, line: str):
    assert explain(exc, Context("sync", SERVER, Path("/data"))) == (code, line)


def test_a_watch_says_it_tries_again_and_other_commands_say_what_to_run():
    lost = errors.ConnectionLost(0, "Stopped answering", "x", server=SERVER, action="reading the change feed")
    assert explain(lost, Context("watch", SERVER))[1].endswith("; trying again")  # type: ignore[index]
    assert explain(lost, Context("history", SERVER))[1].endswith("; run history again")  # type: ignore[index]


def test_a_bug_is_one_line_and_its_traceback_goes_to_a_log(tmp_path, monkeypatch, capsys):
    async def broken(args, config):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "status", broken)
    code = cli.main(["--config", str(tmp_path / "config"), "status", str(tmp_path)])
    assert code == EXIT_FAILED
    captured = capsys.readouterr()
    log = tmp_path / "config" / "last-error.log"
    assert captured.err == f"error: unexpected ZeroDivisionError: a bug (a bug; the details are in {log})\n"
    assert "Traceback" not in captured.out + captured.err
    assert "ZeroDivisionError: a bug" in log.read_text()
    assert "Traceback" in log.read_text()


def test_help_lists_the_exit_codes_and_every_verb(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = capsys.readouterr().out
    for code in ("0  done", "1  failed", "2  usage or user error", "3  done, with items skipped"):
        assert code in shown
    for verb in ("relink", "namespaces", "members", "share", "history", "sync", "status"):
        assert verb in shown
