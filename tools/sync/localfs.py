"""Every local file operation of the sync client, contained in the synced folder.

Layer: tools (client); imports the standard library and ``service.paths`` only.

A path is opened one name at a time, each relative to the descriptor of the folder above it and with
``O_NOFOLLOW``, from the synced folder's own descriptor down. A name that is a symlink (or becomes one while
a round runs) makes the operation fail instead of leading outside the folder: nothing here follows a
symlink, reading or writing, and every write, rename and delete lands inside the folder.

Paths given here are *local* paths: relative to the folder, ``/``-separated, spelled as the file system
spells them (which may differ from the NFC wire path, as macOS's NFD names do).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from service.paths import BIDI_CONTROLS, path_key

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: ``O_NONBLOCK``: a fifo put where a file was is not waited on; a regular file ignores it.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC


class Unplaceable(Exception):
    """A local path that cannot be used as asked (a name on the way is a symlink or a file, or the path
    itself is a folder, a symlink or a special file); the message says which and what it is."""


def display(local: str) -> str:
    """A local path as it may be printed: control and bidirectional characters, and bytes that are not
    UTF-8, shown as escapes, so a name cannot rewrite the terminal or pass for another one."""
    out = []
    for char in local:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(char) in ("Cc", "Cs") or char in BIDI_CONTROLS:
            out.append(f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}")
        else:
            out.append(char)
    return "".join(out)


def kind_of(mode: int) -> str:
    """What a file-system object is, in words."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _key(name: str) -> str:
    return path_key(unicodedata.normalize("NFC", name))


class Placed(NamedTuple):
    """Where a download lands: the open folder, the file's name in it, and its local path."""

    dir_fd: int
    name: str
    local: str

    def create(self, name: str) -> int:
        """A new file ``name`` beside the target, open for writing and reading back (never an existing one)."""
        return os.open(name, _CREATE, 0o644, dir_fd=self.dir_fd)


class Folder:
    """The synced folder. Every method opens what it needs from the folder's root down and closes it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open_root(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)

    @contextlib.contextmanager
    def directory(self, parts: Sequence[str], *, create: bool = False) -> Iterator[tuple[int, list[str]]]:
        """The folder at ``parts`` (local names), open, with the names it was found under. With ``create``
        a missing name is matched by path key (so ``café`` finds an existing ``cafe\\u0301`` and ``Docs``
        an existing ``docs``: no second, differently spelled folder) and made when nothing matches.
        ``Unplaceable`` when a name on the way is a symlink, a file or a special file."""
        fd = self.open_root()
        found: list[str] = []
        try:
            for name in parts:
                fd_next, name = self._step(fd, name, create, found)
                os.close(fd)
                fd = fd_next
                found.append(name)
            yield fd, found
        finally:
            os.close(fd)

    def _step(self, fd: int, name: str, create: bool, above: list[str]) -> tuple[int, str]:
        for _ in range(3):  # a folder another download makes at the same moment: try again
            try:
                return os.open(name, _DIRECTORY, dir_fd=fd), name
            except FileNotFoundError:
                if not create:
                    raise
                same = [e.name for e in os.scandir(fd) if _key(e.name) == _key(name)]
                if same:
                    name = sorted(same)[0]
                    continue
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                what = kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
                where = "/".join([*above, name])
                raise Unplaceable(f"{display(where)} is {what}, not a folder") from None
        raise FileNotFoundError(errno.ENOENT, "folder vanished while being made", name)

    def open_file(self, local: str) -> int:
        """A regular file, open for reading (the caller closes it); ``Unplaceable`` if it is not one."""
        *parts, name = local.split("/")
        with self.directory(parts) as (dir_fd, _):
            try:
                fd = os.open(name, _READ, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EMLINK):
                    raise
                raise Unplaceable(f"{display(local)} is a symlink") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise Unplaceable(f"{display(local)} is {kind_of(mode)}")
        return fd

    def read_bytes(self, local: str) -> bytes:
        fd = self.open_file(local)
        try:
            chunks = []
            while chunk := os.read(fd, 1024 * 1024):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def lstat(self, local: str) -> os.stat_result | None:
        """What is at ``local`` (not followed), or None when nothing is (or the way there is not a folder)."""
        *parts, name = local.split("/")
        try:
            with self.directory(parts) as (dir_fd, _):
                return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError, Unplaceable):
            return None

    @contextlib.contextmanager
    def placing(self, local: str) -> Iterator[Placed]:
        """The folder a download of ``local`` lands in, made where missing (names matched by key)."""
        *parts, name = local.split("/")
        with self.directory(parts, create=True) as (dir_fd, found):
            yield Placed(dir_fd, name, "/".join([*found, name]))

    def remove(self, local: str, expected: tuple[int, int]) -> bool:
        """Delete the regular file at ``local`` if its (size, mtime) are still ``expected``, then each folder
        above it that this left empty (never the root). False when it changed or is not a file."""
        *parts, name = local.split("/")
        fds = [self.open_root()]
        try:
            for part in parts:
                fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
            found = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            if not stat.S_ISREG(found.st_mode) or (found.st_size, found.st_mtime_ns) != expected:
                return False
            os.unlink(name, dir_fd=fds[-1])
            for depth in range(len(parts), 0, -1):
                try:
                    os.rmdir(parts[depth - 1], dir_fd=fds[depth - 1])
                except OSError:
                    break
            return True
        finally:
            for fd in fds:
                os.close(fd)

    def rename_aside(self, local: str, name_for: Callable[[int], str]) -> str:
        """Rename the file at ``local`` in its folder to the first ``name_for(n)`` (n = 1, 2, ...) that is
        free; returns its new local path."""
        *parts, name = local.split("/")
        with self.directory(parts) as (dir_fd, _):
            n = 1
            while True:
                target = name_for(n)
                try:
                    os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    break
                n += 1
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return "/".join([*parts, target])
