"""Giving freed heap memory back to the operating system.

Layer: leaf. glibc's ``malloc`` keeps what a process frees in its heap for reuse, so a burst of large request
bodies (and their parsed forms: thousands of strings of a kilobyte, each its own ``malloc``) leaves a
worker's resident set high long after the requests ended. ``malloc_trim(0)`` hands the heap's free pages
back. Elsewhere than glibc (musl, macOS) there is nothing to call and trimming does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class HeapTrimmer:
    """Calls glibc's ``malloc_trim(0)``, where there is one."""

    def __init__(self) -> None:
        self._trim: Callable[[int], int] | None = None
        name = ctypes.util.find_library("c")
        if name is not None:
            try:
                self._trim = ctypes.CDLL(name).malloc_trim
            except (OSError, AttributeError):
                self._trim = None

    def __call__(self) -> None:
        if self._trim is None:
            return
        started = time.perf_counter()
        self._trim(0)
        log.debug("returned free heap memory to the system in %.1f ms", (time.perf_counter() - started) * 1000)
