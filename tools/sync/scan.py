"""Scanning a synced folder: every item in it, as a file to sync or an issue saying why not. Light to import.

Layer: tools (client).

The walk opens each folder through ``localfs`` (one name at a time, never following a symlink) and looks at
every name once. What it yields:

- a ``FileRow`` (path key, wire path, local path, size, mtime, inode) for each regular file that syncs;
- an ``Issue`` of kind ``ignored`` for a name the ignore rules match (a folder is not walked into);
- an ``Issue`` of kind ``skipped`` for what cannot sync, with its reason: a symlink, a special file (fifo,
  socket, device), a name the path rules refuse (naming the rule), a path too long, a folder or file that
  cannot be read, and the twins of a name (two names in one folder that differ only by case or by Unicode
  normalization, which macOS and Windows cannot hold side by side): one of them syncs (the one synced before,
  else the NFC one, else the first in code-point order), the others are skipped;
- an ``Issue`` of kind ``note`` for an empty folder: the service stores files, not folders.

Nothing an issue names (or anything under it) is ever taken for a local deletion.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from service.paths import MAX_PATH_BYTES, PathRuleError, normalize_path, path_key
from tools.sync.ignore import IGNORE_FILE, IgnoreRules
from tools.sync.localfs import Folder, Unplaceable, display, kind_of

#: (path key, wire path (NFC), local path (as the file system spells it), size, mtime_ns, inode).
FileRow = tuple[str, str, str, int, int, int]
#: The last name of the local path synced under a path key (a file's, or a folder's above synced files).
Known = Callable[[str], str | None]

_FORBIDDEN = r"\x00-\x1f\x7f\\:*?\"<>|/"
#: An ASCII name that is portable and not ignored by a built-in rule: most names, checked by one match.
#: Anything it does not pass takes the slow way (``normalize_path`` and the built-in rules), which decides.
_ORDINARY = re.compile(
    r"(?!(?:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:\.|$)|\.ds_store$|thumbs\.db$|desktop\.ini$|~\$|\.~lock\.|\.filesync-)"
    rf"[^{_FORBIDDEN} ][^{_FORBIDDEN}]{{0,253}}[^{_FORBIDDEN}. ](?<!\.swp)(?<!\.tmp)|[^{_FORBIDDEN}. ]",
    re.IGNORECASE,
)
_TOO_LONG = ("path-too-long", "segment-too-long")
_TOO_LONG_REASON = f"path too long (path-too-long: at most {MAX_PATH_BYTES} bytes of UTF-8)"

SYMLINK = "symlink (never followed)"
EMPTY_FOLDER = "empty folder (the service keeps files, not folders)"


class Issue(NamedTuple):
    """An item that does not sync: ``local`` (displayable), its path key, ``kind`` and why."""

    local: str
    key: str
    kind: str  # skipped | ignored | note
    reason: str


def rule_reason(error: PathRuleError) -> str:
    """The reason an item whose path broke a rule is skipped, naming the rule."""
    what = "path too long" if error.rule in _TOO_LONG else "non-portable name"
    return f"{what} ({error.errors[0].message})"


def scan(
    root: Path, issues: list[Issue], rules: IgnoreRules | None = None, known: Known | None = None
) -> Iterator[FileRow]:
    """A ``FileRow`` for every file under ``root`` that syncs, folder by folder; every other item goes to
    ``issues`` (complete once the rows are). ``known`` tells which of two twins synced before."""
    return _walk(root, issues, rules, known, full=True)


def scan_stats(
    root: Path, issues: list[Issue], rules: IgnoreRules | None = None, known: Known | None = None
) -> Iterator[tuple[str, int, int]]:
    """What ``scan`` finds, each file as (path key, size, mtime) only: for the no-change check, which
    compares with the state database and needs nothing more (nor the time to build it)."""
    return _walk(root, issues, rules, known, full=False)


def _walk(root: Path, issues: list[Issue], rules: IgnoreRules | None, known: Known | None, full: bool) -> Iterator[Any]:
    folder = Folder(root)
    rules = rules if rules is not None else IgnoreRules.load(folder)
    root_fd = folder.open_root()
    try:
        # Each folder to walk: its names from the root, local, NFC and key prefixes, and the longer of the
        # NFC and key prefixes in UTF-8 bytes (a path and its key are each at most MAX_PATH_BYTES).
        stack: list[tuple[tuple[str, ...], str, str, str, int]] = [((), "", "", "", 0)]
        while stack:
            names, local, nfc, key, length = stack.pop()
            try:
                rows, folders = _read(root_fd, names, local, nfc, key, length, rules, known, issues, full)
            except (OSError, Unplaceable) as exc:
                if not names:
                    raise  # the folder itself: the round cannot run
                issues.append(Issue(display(local[:-1]), key[:-1], "skipped", _unreadable(exc)))
                continue
            yield from rows
            for name, name_nfc, name_key, grown in folders:
                stack.append(((*names, name), local + name + "/", nfc + name_nfc + "/", key + name_key + "/", grown))
    finally:
        os.close(root_fd)


def _read(
    root_fd: int,
    names: tuple[str, ...],
    local: str,
    nfc: str,
    key: str,
    length: int,
    rules: IgnoreRules,
    known: Known | None,
    issues: list[Issue],
    full: bool,
) -> tuple[list[Any], list[tuple[str, str, str, int]]]:
    """One folder, opened from the root without following a symlink: its rows and its folders (see
    ``_folder``), its twins settled. ``OSError`` or ``Unplaceable`` if it cannot be opened or listed."""
    fd = _open(root_fd, names)
    try:
        entries = list(os.scandir(fd))  # each entry's ``stat`` needs ``fd`` open
        if not entries and names:
            issues.append(Issue(display(local[:-1]), key[:-1], "note", EMPTY_FOLDER))
        mark = len(issues)
        rows, folders, twins = _folder(entries, local, nfc, key, length, rules, issues, full)
        if twins:
            if not full:  # settling twins needs the names: read this folder again, in full
                del issues[mark:]
                rows, folders, _ = _folder(entries, local, nfc, key, length, rules, issues, True)
            rows, folders = _settle_twins(rows, folders, local, key, known, issues)
            if not full:
                rows = [(row[0], row[3], row[4]) for row in rows]
        return rows, folders
    finally:
        os.close(fd)


def _open(root_fd: int, names: tuple[str, ...]) -> int:
    fd = os.dup(root_fd)
    for name in names:
        try:
            following = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            what = kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
            os.close(fd)
            if what == "a folder":
                raise
            raise Unplaceable(f"now {what}") from None
        os.close(fd)
        fd = following
    return fd


def _unreadable(exc: OSError | Unplaceable) -> str:
    if isinstance(exc, Unplaceable):
        return f"skipped: {exc}"
    return f"unreadable ({exc.strerror or exc})"


def _folder(
    entries: list[os.DirEntry[str]],
    local: str,
    nfc: str,
    key: str,
    length: int,
    rules: IgnoreRules,
    issues: list[Issue],
    full: bool,
) -> tuple[list[Any], list[tuple[str, str, str, int]], bool]:
    """One folder's entries: its file rows (``FileRow`` with ``full``, else key, size and mtime), its
    folders to walk (name, NFC name, key of the name, prefix length), and whether two names are twins
    (then the rows are full whatever ``full`` says, to settle them); what does not sync goes to ``issues``."""
    spec = rules.spec
    # The common case, taken in few steps: an ordinary ASCII name of a regular file in an ASCII folder
    # with room for any name, and no ignore file.
    quick = local.isascii() and length + 255 <= MAX_PATH_BYTES and spec is None
    rows: list[Any] = []
    folders: list[tuple[str, str, str, int]] = []
    keys: set[str] = set()
    twins = False
    for entry in entries:
        name = entry.name
        try:
            if quick and name.isascii() and _ORDINARY.fullmatch(name) and entry.is_file(follow_symlinks=False):
                found = entry.stat(follow_symlinks=False)
                relative = local + name
                name_key = name.lower()
                if name_key in keys:
                    twins = True
                keys.add(name_key)
                if full:
                    rows.append((relative.lower(), relative, relative, found.st_size, found.st_mtime_ns, found.st_ino))
                else:
                    rows.append((relative.lower(), found.st_size, found.st_mtime_ns))
                continue
            if name.isascii() and _ORDINARY.fullmatch(name):
                name_nfc, name_key, problem, longest = name, name.lower(), None, len(name)
            elif rules.builtin(name):
                issues.append(Issue(display(local + name), key + _loose_key(name), "ignored", "built-in rule"))
                continue
            else:
                name_nfc, name_key, problem = _slow_name(name)
                longest = 0 if problem else max(len(name_nfc.encode()), len(name_key.encode()))
            is_dir = entry.is_dir(follow_symlinks=False)
            if spec is not None and spec.match_file(nfc + name_nfc + "/" if is_dir else nfc + name_nfc):
                issues.append(Issue(display(local + name), key + name_key, "ignored", IGNORE_FILE))
                continue
            if problem is not None:
                issues.append(Issue(display(local + name), key + name_key, "skipped", problem))
                continue
            if entry.is_symlink():
                issues.append(Issue(display(local + name), key + name_key, "skipped", SYMLINK))
                continue
            if length + longest > MAX_PATH_BYTES:
                issues.append(Issue(display(local + name), key + name_key, "skipped", _TOO_LONG_REASON))
                continue
            if name_key in keys:
                twins = True
            keys.add(name_key)
            if is_dir:
                folders.append((name, name_nfc, name_key, length + longest + 1))
            elif entry.is_file(follow_symlinks=False):
                found = entry.stat(follow_symlinks=False)
                row = (key + name_key, nfc + name_nfc, local + name, found.st_size, found.st_mtime_ns, found.st_ino)
                rows.append(row if full else (row[0], row[3], row[4]))
            else:
                what = kind_of(entry.stat(follow_symlinks=False).st_mode)
                issues.append(Issue(display(local + name), key + name_key, "skipped", f"special file ({what[2:]})"))
        except OSError as exc:
            issues.append(Issue(display(local + name), key + _loose_key(name), "skipped", _unreadable(exc)))
    return rows, folders, twins


def _slow_name(name: str) -> tuple[str, str, str | None]:
    """(NFC name, its key, the reason it cannot sync or None) of a name the quick check did not pass."""
    try:
        name_nfc = normalize_path(name, "name")
    except PathRuleError as exc:
        return name, _loose_key(name), rule_reason(exc)
    return name_nfc, path_key(name_nfc), None


def _loose_key(name: str) -> str:
    """A key for a name the path rules refuse: only ever compared with other local keys, so it need not be
    a valid one, only storable (``display`` makes any name valid text)."""
    return path_key(unicodedata.normalize("NFC", display(name)))


def _settle_twins(
    rows: list[FileRow],
    folders: list[tuple[str, str, str, int]],
    local: str,
    key: str,
    known: Known | None,
    issues: list[Issue],
) -> tuple[list[FileRow], list[tuple[str, str, str, int]]]:
    """Of each set of names with one key, keep one (the one synced before, else the NFC one, else the first
    in code-point order); the others are issues. Returns the rows and folders that stay."""
    groups: dict[str, list[str]] = {}
    for name_key, name in [(r[0][len(key) :], r[2][len(local) :]) for r in rows] + [(f[2], f[0]) for f in folders]:
        groups.setdefault(name_key, []).append(name)
    losers: set[str] = set()
    for name_key, names in groups.items():
        if len(names) == 1:
            continue
        synced = known(key + name_key) if known is not None else None
        if synced in names:
            winner = synced
        else:
            normalized = [n for n in names if unicodedata.is_normalized("NFC", n)]
            winner = min(normalized or names)
        for name in names:
            if name == winner:
                continue
            losers.add(name)
            same_form = unicodedata.normalize("NFC", name) == unicodedata.normalize("NFC", winner)
            twin = "Unicode-normalization twin" if same_form else "case twin"
            reason = f"{twin} of {display(winner)} (only one syncs)"
            issues.append(Issue(display(local + name), key + name_key, "skipped", reason))
    return [r for r in rows if r[2][len(local) :] not in losers], [f for f in folders if f[0] not in losers]
