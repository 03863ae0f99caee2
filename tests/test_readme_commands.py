"""Every command in the README's ``sh`` blocks runs as written in a fresh shell, or is checked as far as it
can be without a network or a running service.

Each command line (continuations joined, comments dropped) must match one rule of ``RULES``; a command
no rule knows fails the test, so a new README command is classified here, with its reason:

- **run**: executed by ``bash`` in a fresh environment (``HOME`` a temporary directory, no ``AWS_*``, no
  ``PYTHONPATH``, cwd the repository's root, ``PATH`` starting with this interpreter's ``bin``, which is
  what ``. .venv/bin/activate`` gives): the ``--help`` lines, ``export`` and ``mkdir``. Must exit 0.
- **make**: ``make -n TARGET`` (prints the recipe, runs nothing): the target and its variables exist. Not
  run: ``make run`` serves until stopped, ``make test`` takes minutes.
- **sync**: a ``python -m tools.sync`` (or ``filesync``, wherever installed) command that needs a running
  service (signup, login, sync...): its command must exist and each of its flags must appear in that
  command's ``--help`` (read in this process).
- **skip**: the client's own install (``pip install '.[client]'`` into a new virtualenv: the package index,
  minutes; ``tests/test_packaging.py`` installs it in a fresh virtualenv and runs ``filesync --help`` from a
  fresh shell), the API tour's ``curl`` lines and the variables they set (they need ``make run`` serving; the
  tour was run by hand against ``python -m service``), the activation line (replaced as said above) and
  ``python3 -m webbrowser`` (opens a browser).

Every block must also pass ``bash -n`` (the shell parses it), and so must the ``sh`` blocks of ``docs/``.
The relative links of the README and the guides must name a file and heading that exist, and the soak rate
the load-testing guide quotes must be the Makefile's. About a second in all.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tools.sync.__main__ import main as sync_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

RULES: tuple[tuple[str, str], ...] = (
    (r"python -m [\w.]+ (\S+ )*--help$", "run"),
    (r"(export|mkdir) ", "run"),
    (r"make \w+", "make"),
    (r"(python -m tools\.sync|(\S*/)?filesync) ", "sync"),
    (r"python3 -m venv ~/\.filesync && ", "skip"),
    (r"\. \.venv/bin/activate$", "skip"),
    (r"curl ", "skip"),
    (r"(TOKEN|NS)=\$\(curl ", "skip"),
    (r"AUTH=", "skip"),
    (r"echo hello > report\.txt$", "skip"),
    (r"python3 -m webbrowser ", "skip"),
)


def blocks(page: Path = README) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


def commands() -> list[str]:
    """Each command line of every block: continuations joined, comments and blank lines dropped."""
    lines = []
    for block in blocks():
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = uncommented(line)
            if command:
                lines.append(command)
    return lines


def uncommented(line: str) -> str:
    """The line up to its comment: the first `` #`` outside quotes."""
    for match in re.finditer(r"(^|\s)#", line):
        try:
            shlex.split(line[: match.start()])
        except ValueError:  # inside quotes
            continue
        return line[: match.start()].strip()
    return line.strip()


def kind(command: str) -> str:
    for pattern, action in RULES:
        if re.match(pattern, command):
            return action
    raise AssertionError(f"no rule for the README command {command!r}: add one to RULES with its reason")


def fresh_env(home: Path) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR")})
    return env


def test_the_readme_has_commands_and_every_one_is_classified():
    found = commands()
    assert len(found) >= 20, found
    kinds = {command: kind(command) for command in found}
    assert "run" in kinds.values()
    assert "make run" in kinds
    assert "make test" in kinds


def test_every_block_parses_in_bash():
    """The README's blocks, and the guides' in docs/ too (their commands are not run here)."""
    for block in [b for page in [README, *sorted((ROOT / "docs").glob("*.md"))] for b in blocks(page)]:
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, (block, done.stderr)


def test_the_runnable_commands_run_as_written_in_a_fresh_shell(tmp_path):
    runnable = [command for command in commands() if kind(command) == "run"]
    assert any("--help" in command for command in runnable)
    script = "set -e\n" + "\n".join(runnable) + "\n"
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=fresh_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage: python -m tools.sync" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [c for c in commands() if kind(c) == "make"])
def test_the_make_targets_exist(command, tmp_path):
    done = subprocess.run(
        ["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, env=fresh_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def sync_help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        sync_main([*argv, "--help"])
    assert exit_.value.code == 0
    return out.getvalue()


def test_the_sync_commands_name_real_commands_and_flags():
    top = sync_help([])
    checked = 0
    for command in commands():
        if kind(command) != "sync":
            continue
        words = shlex.split(command)
        words = words[1:] if words[0].endswith("filesync") else words[3:]
        if words == ["--help"]:
            continue  # run in a fresh shell by the "run" rule, or by tests/test_packaging.py for the installed one
        while words[0].startswith("--"):  # the global options (--config DIR) come before the command
            assert words[0] in top, command
            words = words[2:]
        verb = words[0]
        assert re.search(rf"^    {verb} ", top, re.M), f"{command}: no command {verb!r}"
        path = [verb]
        own = sync_help(path)
        for word in words[1:]:  # an action of the command (members add, namespaces show)
            if not re.search(rf"^    {re.escape(word)} ", own, re.M):
                break
            path.append(word)
            own = sync_help(path)
        for flag in (w.split("=")[0] for w in words[1:] if w.startswith("--")):
            assert flag in own, f"{command}: {' '.join(path)} has no {flag}"
        checked += 1
    assert checked >= 10


def test_the_documented_soak_rate_is_the_makefiles():
    """The soak's rate is written once in the Makefile; the load-testing guide quotes it (the soak row of the
    performance table records the run it was measured at, and changes only with a new measurement)."""
    makefile = re.search(r"^SOAK_RATE \?= ([\d.]+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile is not None
    guide = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    quoted = re.findall(r"`SOAK_RATE=([\d.]+)`", guide)
    assert quoted == [makefile.group(1)]
    assert "SOAK_RATE" not in README.read_text(
        encoding="utf-8"
    ) or f"SOAK_RATE={makefile.group(1)}" in README.read_text(encoding="utf-8")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but hyphens dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_between_the_readme_and_the_docs_resolve():
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            assert resolved.exists(), f"{page.name}: {target} names no file"
            if anchor:
                assert anchor in anchors(resolved.read_text(encoding="utf-8")), (
                    f"{page.name}: {target}: no such heading"
                )
            checked += 1
    assert checked >= 30
