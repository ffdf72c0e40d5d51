"""What a long-running server keeps across rooms, and how it gives memory back.

A room lives for minutes; the server for days. Measured on a server whose rooms of two
came and went (benchmarks/RESULTS.md, "A server you can leave running"), every Python
object of a closed room was gone and the bytes malloc counted as in use were the same
as before the room, yet the process grew by 20-30 MB a room for the first rooms and kept
creeping up after. The growth was the allocator's: each room starts about eight threads
(its pipeline, its encoder, segmentation, mediapipe's own), glibc gives new threads new
arenas (up to eight per core), and each arena keeps the free space its room's frames
left behind. Two remedies, both here:

* ``tune_allocator``: at most ``ARENAS`` malloc arenas, so a new room reuses the space
  the last one freed instead of a new arena's (no measurable cost per frame); and
* ``give_back_memory``: ``malloc_trim(0)`` after a room closes, which returns the free
  pages inside every arena to the system (about 90 MB after a room of two).

A fixed mmap threshold (so that frame-sized buffers are mappings of their own, returned
when freed) stopped the growth as well, but every frame then faulted in 40 MB of fresh
pages: 25 ms of kernel time per frame. It is not used.

And segmenters are reused: ``SegmenterPool`` keeps a few (each a mediapipe graph with its
own model and two threads, about 7 MB) for the next participants, in any room, instead
of building and tearing one down for every join. Only a few: building one costs a few
milliseconds and leaks nothing (240 built and closed in a row: RSS flat), while each kept
one holds its 7 MB; keeping a full room's eight held 40 MB more after a room of eight
than after a room of two. (The growth model's costly state, CUDA graphs and pinned
buffers, is already shared by every room on a GPU: rooms batch their growth through one
engine that lives as long as the server, ``growth/batch.py``; on a CPU a grower holds
nothing but 23 KB of weights.)
"""
from __future__ import annotations

import logging
import threading

# The allocator's tuning lives with the core (the room fill gives memory back too).
from ..allocator import ARENAS, give_back_memory, tune_allocator  # noqa: F401 -- re-exported

log = logging.getLogger(__name__)


class SegmenterPool:
    """Segmenters of one kind, lent to feeds and taken back when they leave.

    ``acquire`` hands out an idle one (its per-feed state reset) or builds one;
    ``release`` keeps it for the next feed, up to ``keep`` idle ones, and closes the
    rest. Safe from any thread: each room's pipeline runs in a thread of its own. A
    segmenter is used by one feed at a time."""

    def __init__(self, make, keep: int = 2):
        self._make = make
        self.keep = keep
        self.built = 0  # segmenters built so far
        self._idle: list = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self):
        with self._lock:
            seg = self._idle.pop() if self._idle else None
            if seg is None:
                self.built += 1
        if seg is None:
            seg = self._make()
        return seg

    def release(self, seg) -> None:
        seg.reset()
        with self._lock:
            if not self._closed and len(self._idle) < self.keep:
                self._idle.append(seg)
                return
        seg.close()

    def prewarm(self) -> None:
        """Build one segmenter now and keep it idle. The first mediapipe graph a process
        builds keeps a reference to the Python stack it was built from; built inside a
        room, that held the room's whole pipeline (about 75 MB with its room fill) for
        as long as the server ran. Built here, at start, it holds nothing of a room."""
        self.release(self.acquire())

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for seg in idle:
            seg.close()
