"""Sources of frames: clip files (PyAV), webcams (OpenCV) and a synthetic room for tests.

Every source answers two questions: ``read()`` (the next frame, for live use) and
``frame_at(t)`` (the frame on screen at time ``t`` seconds, for rendering clips of
different frame rates against one output clock). Clip files loop, so a short recording
can stand in for a participant for as long as needed.
"""
from __future__ import annotations

from .errors import RoomfuseError

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from .frames import Frame

log = logging.getLogger(__name__)

# A clip whose frames end this much before the length its header declares was cut off
# (a copy interrupted, a recording whose writer died); within it, the last frame's
# duration and rounding. Whichever is longer: seconds, or frame periods.
SHORT_BY_S, SHORT_BY_FRAMES = 0.5, 5


class SourceError(RoomfuseError):
    """A source that cannot deliver frames. The message is one line naming the source."""


class ClipSource:
    """A video file decoded with PyAV (anything FFmpeg reads), looping at the end.

    A clip damaged mid-way (cut off, or with corrupt data inside) plays what decodes
    and says so once: ``damage`` is the first sign of it, logged as a warning naming
    the file. Only a clip with no decodable frame at all is an error."""

    def __init__(self, path: str | os.PathLike, loop: bool = True):
        self.path = Path(path)
        self.loop = loop
        self._check_file()
        self._container = None
        self._frames = None
        self._offset = 0.0  # added to pts after each loop so time keeps going forward
        self._period = None  # clip duration, known once the end has been reached
        self._start_pts = None
        self._last_local = 0.0
        self._current: Frame | None = None
        self._pending: Frame | None = None
        self._count = 0
        self.damage: str | None = None
        self._open()
        first = self._decode_next()
        if first is None:
            self.close()
            raise SourceError(f"{self.path}: no decodable video frames")
        self._pending = first
        self.fps = self._rate or 30.0

    def _check_file(self) -> None:
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise SourceError(f"{self.path}: not a regular file")
        if self.path.stat().st_size == 0:
            raise SourceError(f"{self.path}: empty file")

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
        except Exception as e:  # PyAV raises many kinds (InvalidDataError, OSError, ...)
            raise SourceError(f"{self.path}: cannot open as video ({_reason(e)})") from None
        streams = self._container.streams.video
        if not streams:
            self._container.close()
            raise SourceError(f"{self.path}: no video stream")
        stream = streams[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self._rate = float(rate) if rate else None
        if stream.duration and stream.time_base:
            self.duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            self.duration = self._container.duration / 1e6
        else:
            self.duration = None
        self._frames = self._container.decode(stream)

    def _decode_next(self) -> Frame | None:
        """Next frame of the current pass, pts relative to the clip start; None at the end."""
        try:
            av_frame = next(self._frames)
        except StopIteration:
            self._check_length()
            return None
        except Exception as e:
            if self._count == 0:
                raise SourceError(f"{self.path}: cannot decode ({_reason(e)})") from None
            # Past the first frame: play what decoded, as a cut-off clip.
            self._damaged(f"decoding stopped after {self._last_local:.1f} s ({_reason(e)})")
            return None
        t = av_frame.time
        if t is None:  # no timestamps: fall back to the nominal rate
            t = self._count / (self._rate or 30.0)
        if self._start_pts is None:
            # Recordings often do not start at pts 0; cancel the offset so loops line up.
            self._start_pts = t
        local = t - self._start_pts
        self._last_local = max(self._last_local, local)
        if av_frame.is_corrupt:
            self._damaged(f"corrupt data at {local:.1f} s")
        image = av_frame.to_ndarray(format="rgb24")
        frame = Frame(image=image, pts=local + self._offset, index=self._count, source=str(self.path))
        self._count += 1
        return frame

    def _check_length(self) -> None:
        """At the end of the first pass: did the frames end long before the clip should?"""
        if self._period is not None or self.duration is None or self._count == 0:
            return
        end = self._last_local + 1.0 / (self._rate or 30.0)
        if self.duration - end > max(SHORT_BY_S, SHORT_BY_FRAMES / (self._rate or 30.0)):
            self._damaged(f"frames end at {end:.1f} s of the {self.duration:.1f} s its header declares "
                          "(cut off?)")

    def _damaged(self, what: str) -> None:
        if self.damage is None:
            self.damage = what
            log.warning("%s: damaged: %s; playing what decodes", self.path, what)

    def _advance(self) -> Frame:
        """Move to the next frame, looping at the end of the clip."""
        frame = self._pending
        if frame is None:
            raise SourceError(f"{self.path}: end of clip")
        self._current = frame
        nxt = self._decode_next()
        if nxt is None and self.loop:
            frame_dur = 1.0 / (self._rate or 30.0)
            self._period = self._last_local + frame_dur
            self._offset += self._period
            self._rewind()
            nxt = self._decode_next()
        self._pending = nxt
        return frame

    def _rewind(self) -> None:
        """Back to the first frame: a seek (about 2 ms) where the container allows it,
        reopening the file (about 8 ms, a visible hitch in live use) where it does not."""
        try:
            self._container.seek(0)
            self._frames = self._container.decode(self._container.streams.video[0])
        except Exception:
            self._container.close()
            self._open()

    def read(self) -> Frame:
        return self._advance()

    def frame_at(self, t: float) -> Frame:
        """The frame on screen at ``t`` seconds after the clip started (times go forward)."""
        if self._current is None:
            self._advance()
        while self._pending is not None and self._pending.pts <= t + 1e-6:
            self._advance()
        return self._current

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __repr__(self) -> str:
        return f"ClipSource({str(self.path)!r})"


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


class CameraSource:
    """A webcam through OpenCV. ``frame_at`` returns the newest frame: a camera has no past."""

    def __init__(self, index: int, width: int = 640, height: int = 480, fps: float = 30.0):
        self.index = index
        # OpenCV logs its own multi-line complaint when a camera is missing; ours is the
        # one line the user needs, so keep OpenCV quiet while opening.
        level = cv2.getLogLevel()
        cv2.setLogLevel(0)
        try:
            self._cap = cv2.VideoCapture(index)
        finally:
            cv2.setLogLevel(level)
        if not self._cap.isOpened():
            raise SourceError(f"camera {index}: cannot open (is it connected and free?)")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or fps
        self._t0 = time.monotonic()
        self._count = 0

    def read(self) -> Frame:
        ok, bgr = self._cap.read()
        if not ok:
            raise SourceError(f"camera {self.index}: stopped delivering frames")
        frame = Frame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pts=time.monotonic() - self._t0,
                      index=self._count, source=f"camera:{self.index}")
        self._count += 1
        return frame

    def frame_at(self, t: float) -> Frame:
        return self.read()

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str, loop: bool = True):
    """``synthetic[:SEED]``, ``camera:N`` (or a bare integer) or a path to a clip file."""
    from .synthetic import SyntheticSource

    if spec.startswith("synthetic"):
        _, _, seed = spec.partition(":")
        try:
            return SyntheticSource(seed=int(seed or 0))
        except ValueError:
            raise SourceError(f"{spec}: synthetic seed must be an integer") from None
    if spec.isdigit() or spec.startswith("camera:"):
        index = spec.rpartition(":")[2]
        if not index.isdigit():
            raise SourceError(f"{spec}: camera index must be an integer")
        return CameraSource(int(index))
    return ClipSource(spec, loop=loop)


__all__ = ["SourceError", "ClipSource", "CameraSource", "open_source"]
