"""A small progress bar for long jobs (render, bench, train, eval), on stderr.

On a terminal it redraws one line; in a log (CI, nohup) it prints a line every 10 %.
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, enabled: bool = True):
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._last_decile = -1
        self.note = ""

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if note:
            self.note = note
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last > 0.2 or self.done >= self.total:
                self._last = now
                self.stream.write("\r" + self._line(now))
                self.stream.flush()
        else:
            decile = int(10 * min(1.0, self.done / self.total))
            if decile > self._last_decile:
                self._last_decile = decile
                self.stream.write(self._line(now) + "\n")
                self.stream.flush()

    def _line(self, now: float) -> str:
        frac = min(1.0, self.done / self.total)
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * int(frac * 30)
        return (f"{self.label} [{bar:<30}] {self.done}/{self.total} "
                f"{rate:5.1f}/s eta {eta:4.0f}s {self.note}")[:160]

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self._line(time.perf_counter()) + "\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
