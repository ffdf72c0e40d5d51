"""Virtual-camera sink: the room's composite as a webcam that any meeting app can open.

A meeting app reads the camera at the camera's own rate and drops a camera that goes
quiet (Chrome stops listing a v4l2loopback device with no writer), so frames are sent
on a fixed clock whatever the network does: the newest composite when there is one, the
previous one again while the connection recovers. The composite's size changes with the
number of people in the room; the camera's size never does, so every frame is scaled to
fit and centred between black bars.

Pieces: ``letterbox`` (fit any image into a fixed size), ``NewestFrame`` (the newest frame,
never a queue), ``PacedOutput`` (a thread that feeds a sink at a fixed rate, repeating
the last frame) and ``VirtualCamera`` (pyvirtualcam, with errors that say how to fix a
missing device).
"""
from __future__ import annotations

import logging
import platform
import re
import threading
import time
from typing import Any, Callable

import cv2
import numpy as np

from .errors import RoomfuseError

log = logging.getLogger(__name__)

LINUX_SETUP = "sudo modprobe v4l2loopback exclusive_caps=1 card_label=roomfuse"


class VirtualCameraError(RoomfuseError):
    """No virtual camera could be opened; the message says how to get one."""


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height`` without distortion, centred on black."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    fw, fh = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    # INTER_AREA averages when shrinking (no aliasing on fine texture); it is blocky
    # when enlarging, where linear interpolation looks better.
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - fw) // 2, (height - fh) // 2
    out[y:y + fh, x:x + fw] = cv2.resize(image, (fw, fh), interpolation=interp)
    return out


def placeholder(width: int, height: int, text: str) -> np.ndarray:
    """A dark frame with a line of text, shown until the first composite arrives."""
    out = np.full((height, width, 3), 24, np.uint8)
    scale = max(0.4, height / 720)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = (max(0, (width - tw) // 2), (height + th) // 2)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 2, cv2.LINE_AA)
    return out


class NewestFrame:
    """The newest frame from a producer, for any number of readers in other threads.

    ``put`` replaces the frame (a reader that is behind skips the ones it missed: live
    video drops stale frames). ``convert`` turns what was put into an RGB image; it runs
    in the first reader that asks for a new frame, outside the lock, so the producer (the
    event loop) never waits for a conversion.
    """

    def __init__(self, convert: Callable[[Any], np.ndarray] | None = None):
        self._convert = convert
        self._lock = threading.Lock()
        self._item: Any = None
        self._seq = 0
        self._image: np.ndarray | None = None
        self._image_seq = 0
        self.first_at: float | None = None  # clock time of the first put

    def put(self, item: Any) -> None:
        with self._lock:
            self._item = item
            self._seq += 1
            if self.first_at is None:
                self.first_at = time.monotonic()

    @property
    def seq(self) -> int:
        """How many frames have been put: a reader compares it with the last one it used."""
        return self._seq

    def get(self) -> tuple[int, np.ndarray | None]:
        """``(seq, image)`` of the newest frame, ``(0, None)`` before the first."""
        with self._lock:
            seq, item = self._seq, self._item
            if seq == self._image_seq:
                return seq, self._image
        image = item if self._convert is None or seq == 0 else self._convert(item)
        with self._lock:
            if seq > self._image_seq:
                self._image, self._image_seq = image, seq
        return seq, image


class PacedOutput:
    """A thread that hands ``send`` one frame per tick of a fixed clock.

    Each new frame in ``slot`` goes through ``prepare`` once (scaling to the sink's size
    is not repeated for a repeated frame); a tick with no new frame sends the previous
    prepared frame again, or ``idle`` before there has been any. An exception from the
    sink stops the thread and is kept in ``error`` for the owner to report.

    Late ticks (the sink or the machine too slow for the rate) are never made up with a
    burst. ``timed`` sinks are called ``send(image, tick)`` with the tick's number since
    their first frame: a recording stamps the frame with it, so the ticks it was too late
    for are covered by the frame before (the last frame repeated, at no encoding cost)
    and the file lasts as long as the call; ``stop`` stamps the last frame once more at
    the tick it stopped on. ``pace`` (optional) replaces the fixed clock between sends,
    e.g. pyvirtualcam's own ``sleep_until_next_frame``, which paces from the previous
    send and adapts to the time the sends take.
    """

    def __init__(self, name: str, slot: NewestFrame, fps: float, send: Callable[..., None],
                 prepare: Callable[[np.ndarray], np.ndarray] = lambda image: image,
                 idle: np.ndarray | None = None, timed: bool = False,
                 pace: Callable[[], None] | None = None):
        self.name = name
        self.fps = fps
        self._slot, self._send, self._prepare, self._current = slot, send, prepare, idle
        self.timed = timed
        self._pace = pace
        self.sent = 0  # frames handed to the sink, repeats included
        self.fresh = 0  # distinct frames taken from the slot
        self.late = 0  # ticks skipped because the sink or the machine was too slow
        self.ticks = 0  # the tick number of the newest frame sent (timed sinks)
        self.error: BaseException | None = None
        self._first: float | None = None  # clock time of the first frame sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"roomfuse-{name}", daemon=True)

    def start(self) -> "PacedOutput":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop at once; a timed sink gets its last frame stamped with the tick of now.
        Safe to repeat: only the first call counts."""
        if self._stop.is_set():
            return
        stopped_at = time.monotonic()
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        if self.timed and self.error is None and self._first is not None and self._current is not None:
            tick = int((stopped_at - self._first) * self.fps)
            if tick > self.ticks:
                try:
                    self._send(self._current, tick)
                    self.ticks = tick
                except Exception as e:
                    self.error = e

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def seconds(self) -> float:
        """How long the frames sent so far cover (timed sinks: up to the newest tick)."""
        return (self.ticks + 1) / self.fps if self.sent else 0.0

    def _emit(self, now: float) -> None:
        if not self.timed:
            self._send(self._current)
        else:
            if self._first is None:
                self._first = now
            tick = max(self.ticks + 1 if self.sent else 0, int(round((now - self._first) * self.fps)))
            self._send(self._current, tick)
            self.ticks = tick
        self.sent += 1

    def _run(self) -> None:
        period = 1.0 / self.fps
        last_seq = 0
        next_t = time.monotonic()
        warned_at, warned_late = -1e9, 0
        try:
            while not self._stop.is_set():
                seq, image = self._slot.get()
                if seq != last_seq and image is not None:
                    self._current = self._prepare(image)
                    last_seq = seq
                    self.fresh += 1
                if self._current is not None:
                    self._emit(time.monotonic())
                if self._pace is not None:
                    self._pace()
                    continue
                next_t += period
                now = time.monotonic()
                if now - next_t > period:
                    # More than a whole frame behind: go on from now rather than sending
                    # a burst, which a camera reader would see as stutter anyway.
                    missed = int((now - next_t) / period)
                    self.late += missed
                    next_t += missed * period
                    # Say so once half a second of frames is lost, then at most every 10 s.
                    if self.late - warned_late >= self.fps / 2 and now - warned_at > 10:
                        log.warning("%s: slower than real time (%d of %.0f frames a second missed so far; "
                                    "%s)", self.name, self.late, self.fps,
                                    "the previous frame covers them" if self.timed else "skipped")
                        warned_at, warned_late = now, self.late
                self._stop.wait(max(0.0, next_t - now))
        except Exception as e:  # the owner reports it and leaves the room
            self.error = e


class VirtualCamera:
    """A pyvirtualcam camera of a fixed size and rate that takes RGB frames of any size.

    ``backend`` picks one pyvirtualcam backend by name (``v4l2loopback``, ``obs``,
    ``unitycapture`` or one registered with ``pyvirtualcam.register_backend``); ``None``
    tries those of the platform in turn. ``device`` is a device path on Linux
    (``/dev/video10``) or a camera name on Windows and macOS.
    """

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0,
                 device: str | None = None, backend: str | None = None):
        import pyvirtualcam

        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise VirtualCameraError(f"virtual camera size {width}x{height}: width and height must be even "
                                     "and positive")
        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
            raise VirtualCameraError(f"virtual camera backend {backend!r} is not available on this system "
                                     f"(available: {known})")
        try:
            self._camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                               device=device, backend=backend)
        except RuntimeError as e:
            raise VirtualCameraError(no_device_message(str(e), device)) from None
        self.width, self.height, self.fps = width, height, fps
        self.device = self._camera.device
        self.backend = self._camera.backend

    def fit(self, image: np.ndarray) -> np.ndarray:
        return letterbox(image, self.width, self.height)

    def send(self, image: np.ndarray) -> None:
        """Send one frame that already has the camera's size (see ``fit``)."""
        self._camera.send(image)

    def sleep_until_next_frame(self) -> None:
        """pyvirtualcam's pacing: until the next frame is due after the last send."""
        self._camera.sleep_until_next_frame()

    @property
    def frames_sent(self) -> int:
        return self._camera.frames_sent

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None

    def __enter__(self) -> "VirtualCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def no_device_message(reason: str, device: str | None, system: str | None = None) -> str:
    """One line: what is missing and the command or app that provides it."""
    system = system or platform.system()
    # pyvirtualcam joins one line per backend tried; the first names the real cause.
    detail = reason.strip().splitlines()[0] if reason.strip() else "no device"
    detail = re.sub(r"^'[^']*' backend: ", "", detail).split(". ")[0].rstrip(".")
    where = f"virtual camera {device}" if device else "virtual camera"
    if system == "Linux":
        return (f"{where}: no v4l2loopback device to write to ({detail}); install v4l2loopback "
                f"and create one with `{LINUX_SETUP}` (exclusive_caps=1 lets Chrome and Meet list it)")
    if system == "Windows":
        return (f"{where}: OBS Virtual Camera is not available ({detail}); install OBS Studio 26 or newer, "
                "which registers it, and stop OBS's own virtual camera while roomfuse uses it")
    if system == "Darwin":
        return (f"{where}: OBS Virtual Camera is not available ({detail}); install OBS Studio 30 or newer in "
                "/Applications, click Start Virtual Camera once, allow its camera extension, stop it and quit OBS")
    return f"{where}: no virtual camera support on {system} ({detail})"


__all__ = ["VirtualCameraError", "VirtualCamera", "NewestFrame", "PacedOutput", "letterbox", "placeholder",
           "no_device_message", "LINUX_SETUP"]
