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


def trim_memory() -> bool:
    """Collect garbage and trim the C heap; False where glibc's malloc_trim is not available.

    Blocking (it walks the heap): call it from a thread, not the event loop.
    """
    gc.collect()
    libc = _load_libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True
