"""Returning freed memory to the operating system.

Python keeps freed memory for reuse, and glibc keeps freed heap pages: after a burst (start-up
with thousands of logins, a reconnect wave) a long-running bridge would keep its peak size
forever. `trim_memory` runs a full collection and asks glibc to release what it holds free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("rapture.memory")
_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else None
        except OSError:
            _libc = None
    return _libc


def trim_memory(collect: bool = True) -> bool:
    """Collect garbage (if `collect`) and trim the C heap; False where glibc's malloc_trim is
    not available.

    Blocking (it walks the heap): call it from a thread, not the event loop. The trim itself
    releases the interpreter lock; a full collection holds it (about 250 ms with 10,000
    puppets), so the event loop stops for that long: collect only when it pays.
    """
    if collect:
        gc.collect()
    libc = _load_libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True


WAVE_SETTLE_SECONDS = 10.0  # no login changed state for this long: a reconnect wave is over
WAVE_CHANGES = 100  # login state changes that make a wave worth a full collection
TRIM_EVERY_SECONDS = 300.0


def trim_due(now: float, last_change: float, changes_since_trim: int, trimmed_at: float) -> bool | None:
    """Whether to trim now: True for a trim with a full collection (a wave of logins is over),
    False for a trim of the C heap alone (it is time), None for no trim yet."""
    if changes_since_trim >= WAVE_CHANGES and now - last_change >= WAVE_SETTLE_SECONDS:
        return True
    if now - trimmed_at >= TRIM_EVERY_SECONDS:
        return False
    return None
