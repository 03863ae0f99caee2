"""The history index a new version carries (pure): which chunks a commit seals, and what it may defer."""

from __future__ import annotations

import pytest

from service.core import files
from service.core.files import _Line, _next_history, history_chunk
from service.core.models import FileVersion, History


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "HISTORY_CHUNK", 4)


def at(rev: int, seq: int, history: History | None, file_id: str = "f1") -> FileVersion:
    return FileVersion("a.txt", file_id, rev, "h", 0, 0.0, False, "u", 0.0, seq, None, 8, history=history)


def test_chunks_are_ranges_of_revs():
    assert [history_chunk(rev) for rev in (1, 4, 5, 8, 9)] == [0, 0, 1, 1, 2]


def test_a_new_line_starts_its_own_index():
    history, seals = _next_history(_Line(None), at(1, 1, None), room=10)
    assert (history, seals) == (History(1, "f1"), [])


def test_a_version_in_the_same_chunk_only_remembers_the_one_it_replaces():
    current = at(2, 7, History(1, "f1", None, ((1, 3),)))
    history, seals = _next_history(_Line(current), at(3, 9, None), room=10)
    assert (history, seals) == (History(1, "f1", None, ((1, 3), (2, 7))), [])


def test_crossing_into_a_new_chunk_seals_the_one_behind():
    current = at(4, 20, History(1, "f1", None, ((1, 3), (2, 7), (3, 9))))
    history, [seal] = _next_history(_Line(current), at(5, 21, None), room=10)
    assert history == History(1, "f1", 0, ())
    assert (seal.key, seal.number, seal.previous, seal.pairs, seal.held) == (
        "f1",
        0,
        None,
        ((1, 3), (2, 7), (3, 9), (4, 20)),
        current,
    )


def test_a_seal_without_room_is_deferred_to_the_next_commit_which_seals_in_order():
    current = at(4, 20, History(1, "f1", None, ((1, 3), (2, 7), (3, 9))))
    deferred, seals = _next_history(_Line(current), at(5, 21, None), room=0)
    assert seals == []
    assert deferred == History(1, "f1", None, ((1, 3), (2, 7), (3, 9), (4, 20)))
    # Much later (a move onto a path whose tombstone had a high rev): both chunks behind are sealed, oldest
    # first, each naming the one before; the chunks between were never used.
    later = at(5, 21, deferred)
    history, seals = _next_history(_Line(later), at(30, 40, None), room=10)
    assert [(s.number, s.previous, s.pairs) for s in seals] == [
        (0, None, ((1, 3), (2, 7), (3, 9), (4, 20))),
        (1, 0, ((5, 21),)),
    ]
    assert history == History(1, "f1", 1, ())


def test_a_moves_source_ends_its_line_and_seals_nothing():
    current = at(4, 20, History(1, "f1", None, ((1, 3), (2, 7), (3, 9))))
    history, seals = _next_history(_Line(current, dead_end=True), at(5, 21, None), room=10)
    assert seals == []
    assert history == History(1, "f1", None, ((1, 3), (2, 7), (3, 9), (4, 20)))


def test_a_version_from_before_the_index_starts_it_under_a_key_of_its_own():
    legacy = at(401, 977, None)
    history, seals = _next_history(_Line(legacy), at(402, 980, None), room=10)
    assert (history, seals) == (History(401, "f1-977", None, ((401, 977),)), [])
