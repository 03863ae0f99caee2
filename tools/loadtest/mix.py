"""The scenario mix: which scenario each request runs, drawn by weight.

Layer: tools (leaf, pure). The default mix is what a population of sync clients sends: mostly change-feed
polls (every idle client polls) and metadata reads, some downloads and small uploads, a few credential
requests (one per uploading session), and rare compares (a client compares at start-up or after its cursor
went stale), large uploads and logins (a device logs in once, then refreshes its token).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping

#: Every scenario the tool knows, in the order reports list them.
SCENARIOS = (
    "feed",
    "list",
    "compare",
    "download",
    "upload_small",
    "upload_batch",
    "upload_multipart",
    "credentials",
    "login",
)

#: Per 1,000 requests.
DEFAULT_MIX: dict[str, float] = {
    "feed": 600,
    "list": 150,
    "compare": 10,
    "download": 120,
    "upload_small": 70,
    "upload_batch": 10,
    "upload_multipart": 5,
    "credentials": 30,
    "login": 5,
}


class Mix:
    """Weighted choice over scenarios; zero-weight scenarios are never chosen."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        unknown = sorted(set(weights) - set(SCENARIOS))
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights cannot be negative")
        self.weights = {name: float(weights[name]) for name in SCENARIOS if weights.get(name, 0) > 0}
        if not self.weights:
            raise ValueError("the mix needs at least one scenario with a positive weight")
        self._names = list(self.weights)
        self._cumulative = list(itertools.accumulate(self.weights.values()))

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``name=weight,name=weight``; a bare ``name`` weighs 1 (so ``--mix feed`` runs feed alone)."""
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, weight = part.partition("=")
            try:
                weights[name.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"{part!r}: the weight must be a number") from None
        return cls(weights)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def share(self, name: str) -> float:
        return self.weights.get(name, 0.0) / self._cumulative[-1]

    def choose(self, rng: random.Random) -> str:
        point = rng.random() * self._cumulative[-1]
        return self._names[bisect.bisect_right(self._cumulative, point)]

    def describe(self) -> str:
        return ", ".join(f"{name} {self.share(name):.1%}" for name in self._names)
