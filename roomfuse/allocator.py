"""glibc's allocator, tuned for a long-running process with many threads.

Why (measured in benchmarks/RESULTS.md, "A server you can leave running"): glibc gives
new threads new malloc arenas, and each arena keeps the free space its thread's work left
behind; a server whose rooms come and go, or a room fill that builds a large picture
in a worker now and then, grows by that free space. ``tune_allocator`` caps the arenas;
``give_back_memory`` returns the free pages to the system. Both do nothing where the C
library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
ARENAS = 2


@functools.lru_cache(maxsize=None)
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 -- glibc only; musl has neither
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Cap glibc's malloc arenas for this process (see the module notes); call it before
    threads start. Returns False where the C library is not glibc, changing nothing."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, ARENAS))


def give_back_memory() -> None:
    """Return free heap pages to the system (a few milliseconds; call it off the event
    loop, after a room has closed)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
