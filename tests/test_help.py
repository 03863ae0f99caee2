"""Every command line's ``--help`` is conventional and complete: no reST literals (double or single
backticks) printed as they are, no stray empty choice, and each command's own flags shown or pointed to.

Tests layer: each CLI's ``main(argv)`` in this process (argparse prints the help and exits 0), so the whole
file takes well under a second; ``tests/test_readme_commands.py`` runs the README's ``--help`` lines in a
fresh shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from service.__main__ import main as service_main
from tools.bench.__main__ import BENCHMARKS
from tools.bench.__main__ import main as bench_main
from tools.loadtest.__main__ import main as loadtest_main
from tools.sync.__main__ import main as sync_main

Main = Callable[[list[str]], int]

SYNC_COMMANDS = (
    *("signup", "login", "sync", "relink", "status", "namespaces", "members", "share"),
    *("history", "restore", "follow", "unfollow", "email", "usage", "trash"),
)


def help_of(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``main(argv)`` prints for a help request, which must end in exit code 0."""
    try:
        code: object = main(argv)
    except SystemExit as exit_:
        code = exit_.code or 0
    assert code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: "), out[:200]
    return out


def undescribed(text: str) -> list[str]:
    """The arguments a help lists with no words about them (argparse prints such an entry bare)."""
    bare, lines, listing = [], text.splitlines(), False
    for index, line in enumerate(lines):
        if re.fullmatch(r"[a-z][a-z ]*:", line):  # a listing: arguments, options, a group of them, an epilog's
            listing = True
            continue
        entry = re.fullmatch(r"( {2,4})(\S.*?)(\s{2,}\S.*)?", line)
        if not listing or entry is None or entry.group(3):
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if following.strip() and len(following) - len(following.lstrip()) > len(entry.group(1)):
            continue  # its help starts on the next line
        bare.append(entry.group(2))
    return bare


def assert_plain(text: str) -> None:
    assert "`" not in text, [line for line in text.splitlines() if "`" in line]


def test_bench_help_lists_every_benchmark_and_no_empty_choice(capsys):
    text = help_of(bench_main, ["--help"], capsys)
    assert_plain(text)
    assert undescribed(text) == []
    assert "[]" not in text
    assert ",}" not in text
    assert "''" not in text
    for name in BENCHMARKS:
        assert re.search(rf"^  {name} +\S", text, re.MULTILINE), f"{name} is not listed with its summary"
    assert "python -m tools.bench NAME --help" in text


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_bench_name_help_shows_that_benchmarks_own_flags_with_their_defaults(name, capsys):
    text = help_of(bench_main, [name, "--help"], capsys)
    assert text.startswith(f"usage: python -m tools.bench {name} ")
    assert_plain(text)
    options = text.split("options:", 1)[1]
    assert "--" in options.replace("--help", "")
    assert "default" in options
    assert undescribed(text) == []


def test_bench_names_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_main(["nope"])
    assert exit_.value.code == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_loadtest_help_prints_no_backticks(capsys):
    text = help_of(loadtest_main, ["--help"], capsys)
    assert_plain(text)
    assert undescribed(text) == [], "every flag of the load tool says what it does"
    assert "--mode closed" in text
    assert "plot REPORT.json" in text


def test_loadtest_plot_help_is_a_help_not_a_traceback(capsys):
    text = help_of(loadtest_main, ["plot", "--help"], capsys)
    assert text.startswith("usage: python -m tools.loadtest plot ")
    with pytest.raises(SystemExit) as exit_:
        loadtest_main(["plot", "no-such-report.json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "cannot read no-such-report.json" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        *([command] for command in SYNC_COMMANDS),
        *(["namespaces", action] for action in ("list", "create", "show")),
        *(["members", action] for action in ("add", "remove")),
        *(["trash", action] for action in ("list", "restore")),
    ],
)
def test_sync_help_prints_no_backticks_and_describes_every_argument(argv, capsys, tmp_path):
    text = help_of(sync_main, [*argv, "--help"], capsys)
    assert_plain(text)
    assert undescribed(text) == []
    if not argv:
        assert "exit codes:" in text
        assert all(command in text for command in SYNC_COMMANDS)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["users"],
        *(["users", a] for a in ("add", "disable", "enable", "quota")),
        ["folders"],
        ["folders", "backfill"],
    ],
)
def test_service_help_is_plain_and_says_where_settings_come_from(argv, capsys):
    text = help_of(service_main, [*argv, "--help"], capsys)
    assert_plain(text)
    assert undescribed(text) == []
    if not argv:
        assert "docs/operations.md" in text
        assert "Exit codes" in text


def test_an_argument_without_help_is_found(capsys):
    """The check above can fail: a help with a bare entry is caught."""
    text = "usage: x\n\npositional arguments:\n  folder\n\noptions:\n  -h, --help  show this\n  --out OUT\n"
    assert undescribed(text) == ["folder", "--out OUT"]
