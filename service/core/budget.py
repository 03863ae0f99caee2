"""A per-worker budget of bytes held at once (request bodies, for the API's readers).

Layer: core (leaf). Imports only the domain errors. One instance per app; nothing here is shared between
workers or processes: each worker guards its own memory.
"""

from __future__ import annotations

from collections.abc import Callable

from service.core.errors import Overloaded


class ByteBudget:
    """Bytes one worker holds, or may yet hold, at once; a reservation that does not fit is refused.

    ``on_drained`` is called when what is held falls below a sixteenth of the budget after having reached a
    quarter of it (a burst has ended): the place to give freed memory back to the system.
    """

    def __init__(self, capacity: int, on_drained: Callable[[], None] | None = None) -> None:
        self.capacity = capacity
        self.held = 0
        self._on_drained = on_drained
        self._burst = False

    def take(self, size: int) -> int:
        """Reserve ``size`` bytes (at most the whole budget, so any one request can run alone) and return what
        was reserved; ``Overloaded`` if it does not fit now."""
        size = min(size, self.capacity)
        if self.held + size > self.capacity:
            raise Overloaded(
                f"This worker already holds {self.held} of its {self.capacity} bytes of request bodies; "
                "nothing was read. Retry shortly.",
                retry_after=1,
            )
        self.held += size
        self._burst = self._burst or self.held >= self.capacity // 4
        return size

    def give(self, size: int) -> None:
        self.held -= size
        if self._burst and self.held <= self.capacity // 16:
            self._burst = False
            if self._on_drained is not None:
                self._on_drained()
