"""Scanning a synced folder: every regular file, its path key, size and mtime. Light to import.

Layer: tools (client).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.paths import normalize_path, path_key

#: Names the client writes while downloading; never synced.
TEMP_PREFIX = ".filesync-"


@dataclass(frozen=True, slots=True)
class Scanned:
    key: str
    path: str
    size: int
    mtime_ns: int
    absolute: Path


def _files(root: Path, skipped: list[str]) -> Iterator[tuple[os.DirEntry[str], str]]:
    """Every regular file under ``root`` with its relative path (symlinks and our temporary files excluded),
    walked with ``os.scandir``; folders that cannot be read are named in ``skipped``."""
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            skipped.append(f"{prefix or '.'}: {exc.strerror}")
            continue
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) or entry.is_symlink():
                continue
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, relative + "/"))
            elif entry.is_file(follow_symlinks=False):
                yield entry, relative


def scan(root: Path, skipped: list[str]) -> Iterator[Scanned]:
    """Every regular file, its path checked by the path rules (a refused name is named in ``skipped``)."""
    for entry, relative in _files(root, skipped):
        try:
            path = normalize_path(relative, "path")
        except ValueError as exc:
            skipped.append(f"{relative}: {exc}")
            continue
        stat = entry.stat(follow_symlinks=False)
        yield Scanned(path_key(path), path, stat.st_size, stat.st_mtime_ns, Path(entry.path))


def scan_stats(root: Path, skipped: list[str]) -> Iterator[tuple[str, int, int]]:
    """(path key, size, mtime) of every regular file, as cheaply as a walk can be: for the no-change check,
    which only compares with what was synced. An ASCII name's key is its lower case (NFC and case folding
    change nothing else there); a name the path rules refuse yields a key no synced file has, so it shows as
    a change and the full sync reports it."""
    for entry, relative in _files(root, skipped):
        stat = entry.stat(follow_symlinks=False)
        key = relative.lower() if relative.isascii() else path_key(unicodedata.normalize("NFC", relative))
        yield key, stat.st_size, stat.st_mtime_ns
