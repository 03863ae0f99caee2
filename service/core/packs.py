"""Packs: many small bodies stored as one immutable object, and how reads of them are planned.

Layer: core (pure: no I/O). A batch of small files (``files:batch``) stores the bodies the namespace lacks
as one pack at ``ns/<namespace>/packs/<pack id>`` (``service.resources.pack_key``), created only if absent
like every blob. Each version of a file whose body is in a pack names the pack, the body's offset in it
and (as every version does) its size and the pack object's version id and ETag; reads of it are ranged
GETs of exactly those bytes, hashed before a byte is served.

Format version 1 (integers big-endian). Bodies come first, so a pack is built as a batch's bodies arrive,
with no second copy; the table of contents at the end makes a pack readable on its own (repacking, audits,
recovery: read the footer, then the table, with two ranged GETs), while the service reads bodies by the
offsets its index records and never trusts the table to serve them::

    offset     bytes  field
    0          8      preamble: magic b"FSPK", format version (1), three zero bytes
    8          ...    the bodies, back to back
    T          44 N   the table of contents, per body in order: its SHA-256 (32 bytes), its offset from the
                      start of the object (8), its length (4)
    T + 44 N   16     footer: number of bodies N (4), offset T of the table (8), magic b"FSPK" (4)

A later format changes the version byte; readers refuse versions they do not know.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from service.core.models import BodyRef

PACK_MAGIC = b"FSPK"
PACK_FORMAT = 1
_PREAMBLE = struct.Struct(">4sB3x")
_ENTRY = struct.Struct(">32sQI")
_FOOTER = struct.Struct(">IQ4s")
PREAMBLE_BYTES = _PREAMBLE.size
FOOTER_BYTES = _FOOTER.size
#: What a pack id looks like (a random UUID's hex): anything else never names a pack.
PACK_ID = re.compile(r"^[0-9a-f]{32}$")
#: A read of a pack takes in the bytes between two wanted bodies when they are at most this far apart (one
#: GET instead of two: reading more bytes inside AWS costs nothing, a request does) ...
RUN_GAP = 1024 * 1024
#: ... as long as the read spans at most this many bytes (so a large fetch is several reads, in parallel).
RUN_SPAN = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PackEntry:
    content_hash: str
    offset: int
    length: int


def new_pack_id() -> str:
    return uuid.uuid4().hex


class PackWriter:
    """A pack being built: bodies are appended as they arrive (one copy), then ``finish`` adds the table and
    footer for the bodies kept (when some are left out, the kept ones are copied into a new buffer)."""

    def __init__(self) -> None:
        self._buffer = bytearray(_PREAMBLE.pack(PACK_MAGIC, PACK_FORMAT))
        self._entries: dict[str, PackEntry] = {}

    def __contains__(self, content_hash: str) -> bool:
        return content_hash in self._entries

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(self._entries)

    def add(self, content_hash: str, data: bytes | bytearray) -> None:
        """Append one single-block body (``content_hash`` its SHA-256), unless it is in already."""
        if content_hash not in self._entries:
            self._entries[content_hash] = PackEntry(content_hash, len(self._buffer), len(data))
            self._buffer += data

    def finish(self, keep: Sequence[str]) -> tuple[bytearray, list[PackEntry]]:
        """The pack of the bodies ``keep`` names (each added before), and where each is in it."""
        if len(keep) == len(self._entries):
            pack, entries = self._buffer, [self._entries[h] for h in keep]
        else:
            pack, entries = bytearray(self._buffer[:PREAMBLE_BYTES]), []
            view = memoryview(self._buffer)
            for content_hash in keep:
                old = self._entries[content_hash]
                entries.append(PackEntry(content_hash, len(pack), old.length))
                pack += view[old.offset : old.offset + old.length]
            view.release()
        table = len(pack)
        for entry in entries:
            pack += _ENTRY.pack(bytes.fromhex(entry.content_hash), entry.offset, entry.length)
        pack += _FOOTER.pack(len(entries), table, PACK_MAGIC)
        self._buffer = bytearray()  # handed over: the writer is spent
        return pack, entries


def build_pack(bodies: Sequence[tuple[str, bytes]]) -> tuple[bytearray, list[PackEntry]]:
    """The pack of ``bodies`` (content hash, bytes), and where each body is in it."""
    writer = PackWriter()
    for content_hash, data in bodies:
        writer.add(content_hash, data)
    return writer.finish([h for h, _ in dict(bodies).items()])


def read_footer(tail: bytes) -> tuple[int, int]:
    """The number of bodies and the table's offset, from a pack's last ``FOOTER_BYTES`` bytes (or more);
    ValueError for anything that is not a pack's footer."""
    if len(tail) < FOOTER_BYTES:
        raise ValueError("too short for a pack footer")
    count, table, magic = _FOOTER.unpack_from(tail, len(tail) - FOOTER_BYTES)
    if magic != PACK_MAGIC:
        raise ValueError("not a pack (no FSPK magic at its end)")
    return count, table


def read_pack(data: bytes) -> list[PackEntry]:
    """The table of contents of a whole pack ``data``; ValueError for anything that is not a pack of a
    format this code knows, or whose table does not fit it."""
    if len(data) < PREAMBLE_BYTES + FOOTER_BYTES:
        raise ValueError("too short for a pack")
    magic, version = _PREAMBLE.unpack_from(data)
    if magic != PACK_MAGIC:
        raise ValueError("not a pack (no FSPK magic)")
    if version != PACK_FORMAT:
        raise ValueError(f"pack format {version} is not known here (this code reads format {PACK_FORMAT})")
    count, table = read_footer(data)
    if table + count * _ENTRY.size + FOOTER_BYTES != len(data):
        raise ValueError("the table of contents does not end where the footer starts")
    entries = []
    for i in range(count):
        digest, offset, size = _ENTRY.unpack_from(data, table + i * _ENTRY.size)
        if offset < PREAMBLE_BYTES or offset + size > table:
            raise ValueError(f"entry {i} lies outside the bodies")
        entries.append(PackEntry(digest.hex(), offset, size))
    return entries


def body_matches(data: bytes | bytearray | memoryview, content_hash: str, size: int) -> bool:
    """Whether ``data`` is exactly the single-block body ``content_hash`` of ``size`` bytes."""
    return len(data) == size and hashlib.sha256(data).hexdigest() == content_hash


@dataclass(frozen=True, slots=True)
class Wanted:
    """One body to read from a pack: who asked (``index``), what it is, where it is."""

    index: int
    content_hash: str
    size: int
    offset: int


@dataclass(frozen=True, slots=True)
class Run:
    """One ranged read of one pack object: bytes ``start`` to ``end`` (inclusive), holding ``wanted`` (in
    offset order)."""

    pack: BodyRef
    start: int
    end: int
    wanted: tuple[Wanted, ...]


def plan_runs(wanted: Sequence[tuple[BodyRef, Wanted]], gap: int | None = None, span: int | None = None) -> list[Run]:
    """Group the bodies wanted from packs into as few reads as the gap and span allow (``RUN_GAP``,
    ``RUN_SPAN`` unless given): a pack most of which is wanted is read whole, scattered bodies each by
    their own range. Bodies of one pack object (its id and pin) are read together, in offset order."""
    gap = RUN_GAP if gap is None else gap
    span = RUN_SPAN if span is None else span
    by_pack: dict[BodyRef, list[Wanted]] = {}
    for body, want in wanted:
        by_pack.setdefault(BodyRef(body.version_id, body.etag, body.pack), []).append(want)
    runs: list[Run] = []
    for pack, items in by_pack.items():
        items.sort(key=lambda w: (w.offset, w.size))
        current: list[Wanted] = []
        start = end = 0
        for item in items:
            item_end = item.offset + item.size - 1
            if current and item.offset - (end + 1) <= gap and max(end, item_end) - start + 1 <= span:
                current.append(item)
                end = max(end, item_end)
                continue
            if current:
                runs.append(Run(pack, start, end, tuple(current)))
            current, start, end = [item], item.offset, item_end
        if current:
            runs.append(Run(pack, start, end, tuple(current)))
    return runs
