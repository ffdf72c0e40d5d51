"""Native libraries' log lines kept off the terminal.

mediapipe's C++ side (TensorFlow Lite and absl logging) writes straight to file
descriptor 2: every segmenter it builds, one per participant and clip, prints lines such
as "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." that tell a user nothing
and land between the lines roomfuse prints (the address `serve` prints among them).
mediapipe 0.10.21 offers no switch for them (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL and
absl's Python logging do not reach that code), so the CLI passes descriptor 2 through a
filter: it becomes a pipe, and a thread copies everything written to it to the real
stderr except those lines. ``--verbose`` keeps them.
"""
from __future__ import annotations

import os
import re
import sys
import threading

NATIVE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] "
                    rb"|INFO: Created TensorFlow Lite"
                    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
# What a native line can start with; any other text is passed on at once, so a progress
# bar redrawn with "\r" and no newline still shows as it is drawn.
_STARTS = (b"I", b"W", b"E", b"F")
_PENDING_MAX = 160


def is_native(line: bytes) -> bool:
    return NATIVE.match(line) is not None


class StderrFilter:
    """Descriptor 2 through a filter until ``stop`` (use as a context manager)."""

    def __init__(self):
        self.dropped = 0
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "StderrFilter":
        sys.stderr.flush()
        self._saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._copy, args=(read,), name="roomfuse-stderr", daemon=True)
        self._thread.start()
        return self

    def _copy(self, fd: int) -> None:
        pending = b""  # the start of a line that may still turn out to be native
        passing = False  # the current line was already judged and is being passed on
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                out = []
                data = pending + chunk
                pending = b""
                while data:
                    end = data.find(b"\n")
                    line, data = (data, b"") if end < 0 else (data[:end + 1], data[end + 1:])
                    if passing:
                        out.append(line)
                    elif end < 0 and line.startswith(_STARTS) and len(line) < _PENDING_MAX:
                        pending = line  # too short to tell yet; native lines come whole
                        break
                    elif is_native(line):
                        self.dropped += 1
                    else:
                        out.append(line)
                    passing = end < 0 and not pending
                if out:
                    os.write(self._saved, b"".join(out))
        if pending and not is_native(pending):
            os.write(self._saved, pending)

    def stop(self) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the thread sees its end
        self._thread.join(5)
        os.close(self._saved)
        self._saved = None

    def __enter__(self) -> "StderrFilter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
