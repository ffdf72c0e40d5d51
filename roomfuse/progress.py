"""Progress of long jobs (render, bench, train, inpaint, extend) on stderr, drawn by tqdm.

On a terminal tqdm redraws one line; in a log (CI, nohup) a line every 10 % is written
instead, so a log gets a readable history rather than carriage returns. An update costs
about a microsecond (benchmarks/RESULTS.md), nothing beside a frame's milliseconds.
"""
from __future__ import annotations

import re
import sys

# No monitor thread: bars here are updated often enough, and a thread tqdm starts on
# its own would outlive the job that made the bar.
_MONITOR_INTERVAL = 0


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into whole lines (and
    skips the redraw of a count already written, as closing the bar makes)."""

    COUNT = re.compile(r"\| *(\d+)/(\d+) ")

    def __init__(self, stream):
        self.stream = stream
        self._last = None

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if not line:
            return
        count = self.COUNT.search(line)
        if count is not None:
            if count.group(0) == self._last:
                return
            self._last = count.group(0)
        self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    """``with Progress(total, "render") as bar: ... bar.update(1, note="grow 4.1 ms")``."""

    def __init__(self, total: int, label: str = "", stream=None, enabled: bool = True):
        from tqdm import tqdm

        tqdm.monitor_interval = _MONITOR_INTERVAL
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self.note = ""
        self._bar = tqdm(total=self.total, desc=label, disable=not enabled, leave=True, unit="it",
                         file=self.stream if self.tty else _Lines(self.stream),
                         mininterval=0.2 if self.tty else 0.0,
                         miniters=None if self.tty else max(1, self.total // 10),
                         dynamic_ncols=self.tty, ncols=None if self.tty else 100, ascii=not self.tty)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if note:
            self.note = note
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
