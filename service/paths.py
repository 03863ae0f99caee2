"""Path rules: what a file path in a namespace may be. One validator, shared with the client.

Layer: leaf (imports only ``service.core.errors``). A path is relative to its namespace, ``/``-separated,
NFC-normalized, and portable: every path the service accepts can be written on Linux, macOS and Windows.
Each violation names its rule. Two paths that differ only by case (after Unicode case folding) are the
same file as far as collisions go (``path_key``), because macOS and Windows clients could hold only one.
"""

from __future__ import annotations

import re
import unicodedata

from service.core.errors import FieldError, ValidationFailed

#: DynamoDB keys a file by its path key, and a sort key is at most 1,024 bytes: the path and its key (case
#: folding can lengthen it) stay within 950, leaving room for the key's prefixes ("F#", "FOLLOW#<user>#").
MAX_PATH_BYTES = 950
MAX_SEGMENT_BYTES = 255

#: Characters Windows cannot store in a name (``/`` is the separator and is not in this set).
RESERVED_CHARACTERS = frozenset('\\:*?"<>|')
#: Unicode bidirectional controls: they make a name display differently from what it is.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_RESERVED_NAMES = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)


class PathRuleError(ValidationFailed):
    """A path broke one named rule."""

    def __init__(self, rule: str, message: str, field: str) -> None:
        super().__init__(f"Invalid path ({rule}): {message}.", (FieldError(field, f"{rule}: {message}"),))
        self.rule = rule


def normalize_path(raw: str, field: str = "$.path") -> str:
    """The canonical form of ``raw`` (NFC), or ``PathRuleError`` naming the broken rule."""

    def fail(rule: str, message: str) -> PathRuleError:
        return PathRuleError(rule, message, field)

    if raw == "":
        raise fail("empty", "a path cannot be empty")
    path = unicodedata.normalize("NFC", raw)
    if path.startswith("/"):
        raise fail("absolute", "paths are relative to the namespace; remove the leading '/'")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise fail("path-too-long", f"at most {MAX_PATH_BYTES} bytes of UTF-8")
    for char in path:
        if char == "\x00" or unicodedata.category(char) == "Cc":
            raise fail("control-character", f"control character U+{ord(char):04X} is not allowed")
        if char in BIDI_CONTROLS:
            raise fail("bidi-control", f"bidirectional control U+{ord(char):04X} is not allowed")
        if char in RESERVED_CHARACTERS:
            raise fail("reserved-character", f"{char!r} cannot be used in names on every platform")
        if unicodedata.category(char) == "Cs":
            raise fail("invalid-unicode", "unpaired surrogate")
    if len(path_key(path).encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise fail("path-too-long", f"at most {MAX_PATH_BYTES} bytes of UTF-8 once case-folded")
    for segment in path.split("/"):
        if segment == "":
            raise fail("empty-segment", "no empty segments ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise fail("dot-segment", "'.' and '..' are not allowed as names")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise fail("segment-too-long", f"each name is at most {MAX_SEGMENT_BYTES} bytes of UTF-8")
        if segment[-1] in ". " or segment[0] == " ":
            raise fail(
                "leading-or-trailing-space-or-dot",
                f"{segment!r} cannot start with a space or end in a space or dot",
            )
        if _RESERVED_NAMES.match(segment):
            raise fail("reserved-name", f"{segment!r} is a reserved device name on Windows")
    return path


def path_key(path: str) -> str:
    """The collision key of a normalized path: Unicode case folded, then NFC again."""
    return unicodedata.normalize("NFC", path.casefold())


def folders_above(key: str) -> list[str]:
    """The folders a path (or path key) lies in, outermost first: ``a/b/c`` -> ``a``, ``a/b``."""
    return [key[:i] for i, char in enumerate(key) if char == "/"]
