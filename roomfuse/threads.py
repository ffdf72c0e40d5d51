"""The process's native thread pools, set once for a frame loop on a small machine.

roomfuse runs its own parallel work (two threads per pipeline: roomfuse/pipeline.py).
numpy's OpenBLAS keeps its own worker threads spinning on ``sched_yield`` for a long
while after every call, and the frame path makes a small solve each frame (the
harmoniser's gains): on two cores that spinning took a third of the CPU (30 000 context
switches a second, `perf stat`), and 4 x 720 ran at 12 fps instead of 15. BLAS calls in
roomfuse are small; they run in the calling thread.

OpenCV's own thread pool splits each call over the cores and its workers wait actively
between calls; the pipeline already keeps both cores on the frame with its own threads
(two halves of each pass), so there the split only adds that waiting: four webcams at
720 took 48.7 ms of CPU a frame with it and 44.6 without, at the same frame time
(benchmarks/RESULTS.md). A frame loop runs OpenCV in the calling thread.
"""
from __future__ import annotations

import threading

_done = False
_lock = threading.Lock()
_limits = None  # kept alive: threadpoolctl restores the pools when it is collected


def one_cv_thread() -> None:
    """OpenCV in the calling thread, for the life of the process (the pipeline's frame
    loop: see above)."""
    import cv2

    cv2.setNumThreads(1)


def one_blas_thread() -> None:
    """BLAS in the calling thread, for the life of the process (idempotent). The
    package sets ``OPENBLAS_NUM_THREADS=1`` before numpy loads where it can
    (roomfuse/__init__.py); this also covers a process that loaded numpy first."""
    global _done, _limits
    with _lock:
        if _done:
            return
        _done = True
        from threadpoolctl import threadpool_limits
        _limits = threadpool_limits(limits=1, user_api="blas")
