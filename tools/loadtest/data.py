"""The seeded data both drivers use (``workload`` for the tool, ``locustfile`` for Locust): where the seed
files live, and the compare pages of their manifest.

Layer: tools (leaf, pure). Imports only the service's pure path rules.
"""

from __future__ import annotations

from typing import Any

from service.paths import path_key

#: The server's compare page limit: a larger manifest is sent in pages, as the sync client does.
COMPARE_PAGE = 5000
#: The seed files are spread over this many folders (``dir00``...), one listing each.
FOLDERS = 10


def seed_paths(count: int) -> list[str]:
    return [f"dir{i % FOLDERS:02d}/file-{i:06d}.bin" for i in range(count)]


def folder_sizes(paths: list[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in paths:
        folder = path.split("/", 1)[0]
        sizes[folder] = sizes.get(folder, 0) + 1
    return sizes


def compare_pages(paths: list[str], content_hash: str) -> list[dict[str, Any]]:
    """Compare requests covering the whole manifest (every path up to date at rev 1), in key order, each
    page bounded by the key range it covers."""
    manifest = sorted((path_key(p), {"path": p, "content_hash": content_hash, "synced_rev": 1}) for p in paths)
    pages = []
    for start in range(0, len(manifest), COMPARE_PAGE):
        page = manifest[start : start + COMPARE_PAGE]
        last = start + COMPARE_PAGE >= len(manifest)
        pages.append(
            {
                "entries": [entry for _, entry in page],
                "after": manifest[start - 1][0] if start else None,
                "through": None if last else page[-1][0],
            }
        )
    return pages
