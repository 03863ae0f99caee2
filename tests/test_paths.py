"""The path rules: the attack corpus, each a named 4xx; and what is accepted, normalized."""

from __future__ import annotations

import unicodedata

import pytest

from service.paths import MAX_PATH_BYTES, MAX_SEGMENT_BYTES, PathRuleError, normalize_path, path_key

ATTACKS = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("../secret", "dot-segment"),
    ("a/../../b", "dot-segment"),
    ("a/./b", "dot-segment"),
    ("a//b", "empty-segment"),
    ("a/", "empty-segment"),
    ("a\\b", "reserved-character"),
    ("C:/x", "reserved-character"),
    ("nul\x00byte", "control-character"),
    ("line\nbreak", "control-character"),
    ("bell\x07", "control-character"),
    ("del\x7f", "control-character"),
    ("invoice\u202efdp.exe", "bidi-control"),
    ("x" * (MAX_SEGMENT_BYTES + 1), "segment-too-long"),
    ("é" * 128, "segment-too-long"),
    ("/".join(["a" * 200] * 21)[: MAX_PATH_BYTES + 1], "path-too-long"),
    ("/".join(["\u0149" * 120] * 3), "path-too-long"),  # 722 bytes; case folding makes 1,082
    ("CON", "reserved-name"),
    ("docs/aux.txt", "reserved-name"),
    ("LPT1.log", "reserved-name"),
    ("trailing.", "leading-or-trailing-space-or-dot"),
    ("trailing ", "leading-or-trailing-space-or-dot"),
    (" leading", "leading-or-trailing-space-or-dot"),
    ("what?", "reserved-character"),
    ("pipe|name", "reserved-character"),
]


@pytest.mark.parametrize(("raw", "rule"), ATTACKS)
def test_attack_corpus_names_the_rule(raw: str, rule: str):
    with pytest.raises(PathRuleError) as info:
        normalize_path(raw, "$.entries[0].path")
    assert info.value.rule == rule
    assert info.value.errors[0].path == "$.entries[0].path"
    assert rule in info.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        "a",
        "docs/report.pdf",
        "naïve café/日本語.txt",
        "x" * MAX_SEGMENT_BYTES,
        ".hidden",
        "a b/c-d_e (1).txt",
    ],
)
def test_ordinary_paths_are_accepted(raw: str):
    assert normalize_path(raw) == unicodedata.normalize("NFC", raw)


def test_longest_path_is_accepted():
    path = "/".join(["a" * 255] * 16)[:MAX_PATH_BYTES].rstrip("/")
    assert len(normalize_path(path).encode()) <= MAX_PATH_BYTES


def test_nfd_and_nfc_twins_normalize_to_one_path():
    nfd = unicodedata.normalize("NFD", "café.txt")
    assert nfd != "café.txt"
    assert normalize_path(nfd) == "café.txt"


def test_case_twins_share_a_collision_key():
    assert path_key("Docs/Report.PDF") == path_key("docs/report.pdf")
    assert path_key("Straße") == path_key("STRASSE")
    assert path_key("a") != path_key("b")
