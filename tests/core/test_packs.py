"""The pack format (version 1) and how reads of packs are planned: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from service.core.models import BodyRef
from service.core.packs import (
    FOOTER_BYTES,
    PREAMBLE_BYTES,
    PackWriter,
    Wanted,
    body_matches,
    build_pack,
    plan_runs,
    read_footer,
    read_pack,
)


def bodies(*sizes: int) -> list[tuple[str, bytes]]:
    out = []
    for size in sizes:
        data = os.urandom(size)
        out.append((hashlib.sha256(data).hexdigest(), data))
    return out


def test_a_pack_holds_its_bodies_at_the_offsets_its_table_says():
    given = bodies(10, 0, 300, 7)
    pack, entries = build_pack(given)
    assert pack[:PREAMBLE_BYTES] == b"FSPK\x01\x00\x00\x00"
    assert read_pack(bytes(pack)) == entries
    for (content_hash, data), entry in zip(given, entries, strict=True):
        assert (entry.content_hash, entry.length) == (content_hash, len(data))
        assert pack[entry.offset : entry.offset + entry.length] == data
        assert body_matches(pack[entry.offset : entry.offset + entry.length], content_hash, len(data))
    count, table = read_footer(bytes(pack[-FOOTER_BYTES:]))
    assert (count, table) == (4, PREAMBLE_BYTES + 317)
    assert len(pack) == table + 44 * 4 + FOOTER_BYTES


def test_a_writer_keeps_each_body_once_and_leaves_out_what_it_is_told():
    given = bodies(5, 6, 7)
    writer = PackWriter()
    for content_hash, data in [*given, given[0]]:
        writer.add(content_hash, data)
    assert writer.hashes == {h for h, _ in given}
    kept = [given[2][0], given[0][0]]
    pack, entries = writer.finish(kept)
    assert [e.content_hash for e in entries] == kept
    assert read_pack(bytes(pack)) == entries
    assert pack[entries[0].offset : entries[0].offset + 7] == given[2][1]
    assert len(pack) == PREAMBLE_BYTES + 12 + 2 * 44 + FOOTER_BYTES


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda p: b"XXXX" + p[4:], "no FSPK magic"),
        (lambda p: p[:4] + b"\x02" + p[5:], "format 2 is not known"),
        (lambda p: p[:-1], "no FSPK magic at its end"),
        (lambda p: p[:20] + p[21:], "does not end where the footer starts"),
        (lambda p: b"FSPK", "too short"),
    ],
)
def test_what_is_not_a_pack_of_a_known_format_is_refused(damage, why):
    pack, _ = build_pack(bodies(30, 40))
    with pytest.raises(ValueError, match=why):
        read_pack(damage(bytes(pack)))


def test_a_table_entry_outside_the_bodies_is_refused():
    pack, _ = build_pack(bodies(30))
    table = len(pack) - FOOTER_BYTES - 44
    forged = bytes(pack[:table]) + struct.pack(">32sQI", bytes(32), 8, 31) + bytes(pack[table + 44 :])
    with pytest.raises(ValueError, match="outside the bodies"):
        read_pack(forged)


def _want(index: int, offset: int, size: int) -> Wanted:
    return Wanted(index, f"{index:064x}", size, offset)


def test_bodies_close_together_are_one_read_and_far_apart_several():
    pack = BodyRef("v1", '"e1"', "a" * 32)
    wanted = [(pack, _want(i, offset, 100)) for i, offset in enumerate([5000, 8, 108, 208, 9000])]
    runs = plan_runs(wanted, gap=1000, span=10_000)
    assert [(r.start, r.end, [w.index for w in r.wanted]) for r in runs] == [
        (8, 307, [1, 2, 3]),
        (5000, 5099, [0]),
        (9000, 9099, [4]),
    ]
    whole = plan_runs(wanted, gap=10_000, span=10_000)
    assert [(r.start, r.end, len(r.wanted)) for r in whole] == [(8, 9099, 5)]
    assert [len(r.wanted) for r in plan_runs(wanted, gap=10_000, span=5000)] == [3, 2]


def test_reads_never_mix_packs_or_objects_and_repeat_a_body_asked_for_twice():
    one, other = BodyRef("v1", None, "a" * 32), BodyRef("v2", None, "b" * 32)
    older = BodyRef("v0", None, "a" * 32)  # another object at the same pack key: read apart
    wanted = [(one, _want(0, 8, 10)), (other, _want(1, 8, 10)), (older, _want(2, 18, 10)), (one, _want(3, 8, 10))]
    runs = plan_runs(wanted, gap=100, span=100)
    assert sorted((r.pack.version_id, [w.index for w in r.wanted]) for r in runs) == [
        ("v0", [2]),
        ("v1", [0, 3]),
        ("v2", [1]),
    ]
    assert all(r.pack.offset is None for r in runs)
