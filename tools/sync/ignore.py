"""What the sync client leaves alone: built-in rules for the temporary and system files editors and operating
systems write, and the folder's own ignore file (``.filesyncignore``, gitignore syntax, parsed by ``pathspec``).

Layer: tools (client). ``pathspec`` is imported only when a folder has an ignore file.

An ignored item is not synced either way: it is not uploaded, its deletion is not sent, and a server file at
an ignored path is not downloaded (as in Dropbox's "ignored" files). The ignore file itself syncs like any
file, so every device of the folder applies the same rules. ``status --ignored`` lists the ignored items.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from tools.sync.localfs import Folder, Unplaceable

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

IGNORE_FILE = ".filesyncignore"
#: The client's own temporary downloads (``.filesync-<random>`` beside their target).
TEMP_PREFIX = ".filesync-"
#: Names (any folder, any case) that are never synced: macOS, Windows and LibreOffice litter, editors'
#: swap and mid-save files, and our own temporary downloads.
BUILTIN = (".DS_Store", "Thumbs.db", "desktop.ini", "~$*", ".~lock.*#", "*.swp", "*.tmp", f"{TEMP_PREFIX}*")
BUILTIN_PATTERN = "|".join(fnmatch.translate(p) for p in BUILTIN)
_BUILTIN = re.compile(BUILTIN_PATTERN, re.IGNORECASE)


class IgnoreRules:
    """The built-in rules and, if the folder has one, its ignore file."""

    def __init__(self, spec: GitIgnoreSpec | None = None) -> None:
        self.spec = spec

    @classmethod
    def load(cls, folder: Folder) -> IgnoreRules:
        """The rules of ``folder``: its ignore file is read without following a symlink; one that is missing
        or cannot be read adds no rules (an unreadable one is reported like any unreadable file)."""
        try:
            text = folder.read_bytes(IGNORE_FILE).decode("utf-8", "replace")
        except (OSError, Unplaceable):  # none, a symlink, unreadable: the built-in rules alone
            return cls()
        from pathspec import GitIgnoreSpec

        return cls(GitIgnoreSpec.from_lines(text.splitlines()))

    @staticmethod
    def builtin(name: str) -> bool:
        return _BUILTIN.match(name) is not None

    def reason(self, name: str, path: str, is_dir: bool) -> str | None:
        """Why the item ``name`` at ``path`` (NFC, relative to the folder) is ignored, or None."""
        if _BUILTIN.match(name):
            return "built-in rule"
        if self.spec is not None and self.spec.match_file(path + "/" if is_dir else path):
            return IGNORE_FILE
        return None

    def ignores(self, path: str) -> bool:
        """Whether a server path (NFC) is ignored here: its name or a folder above it is."""
        names = path.split("/")
        for depth, name in enumerate(names, 1):
            if self.reason(name, "/".join(names[:depth]), depth < len(names)) is not None:
                return True
        return False
