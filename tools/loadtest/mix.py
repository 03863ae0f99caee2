"""The scenario mix: which scenario each request runs, drawn by weight.

Layer: tools (leaf, pure). The default mix is what a population of sync clients sends: mostly change-feed
polls and metadata reads, some downloads and uploads, few credential requests and fewer logins (a device
logs in once and then refreshes its token).
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
    "upload_multipart",
    "credentials",
    "login",
)

#: Per 1,000 requests.
DEFAULT_MIX: dict[str, float] = {
    "feed": 500,
    "list": 150,
    "compare": 60,
    "download": 130,
    "upload_small": 100,
    "upload_multipart": 5,
    "credentials": 50,
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
