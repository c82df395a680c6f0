"""Giving freed memory back to the operating system (glibc only; elsewhere a no-op).

The analyses build numpy arrays of tens of MiB and drop them a second later. glibc serves
large allocations with mmap and unmaps them on free, but it raises that threshold each time
such a block is freed (up to 32 MiB), after which blocks of that size come from the heap of
the thread's arena and stay in the process's RSS after they are freed. With a few analysis
threads, RSS then settles at several times what is in use. Fixing the threshold stops the
drift; `trim()` after an analysis run returns what the heaps hold free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks of 1 MiB and more are mapped, and unmapped on free

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def return_freed_memory() -> None:
    """At start: large blocks always mapped (no drifting threshold). Safe to call twice."""
    libc = _glibc()
    if libc is not None and not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused")


def trim() -> None:
    """Give the free memory at the top of the heaps back (after an analysis run)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
