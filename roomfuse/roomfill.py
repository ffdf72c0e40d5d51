"""The joined room: the background between and around the feeds, built off the frame path.

A call's background barely changes; only the people move. So the fill of the gaps and
margins (the part of the canvas no camera sees) is not grown anew every frame: a worker
thread builds it from the rooms' clean plates (the canvas background, where the per-feed
background memory knows it) with the full still-image fill, structure then texture
(``growth.joiner``), and the frame path only applies it. A new fill is built when the
layout changes or when the plates near the holes have changed (the light, an uncovered
wall), at most every ``min_interval_s``, and cross-faded in over ``fade_s``.

Per frame:
- ``frame(canvas)`` returns the fill to use outside the tiles, or None while there is none
  for the current tiles (the first frames, or just after a layout change: the previous
  fill belongs to a layout that is gone, so nothing of a departed feed can linger). The
  pipeline's live grower then fills everything, from a fresh state.
- the fill follows the live picture: a smooth correction (the difference between the
  live background and the plate the fill was built from, measured on the known pixels at
  1/8 resolution and spread into the holes) is added, so a change of exposure reaches the
  fill at once and the border with the live feed stays invisible.
- the worker runs at a lower OS priority, so a refresh takes the time the frame path
  leaves free; ``inline`` (render) builds it in the calling thread, deterministically.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from .config import RoomFillConfig
from .frames import Canvas, Rect

log = logging.getLogger(__name__)

CORRECTION_SCALE = 8   # the live correction is smooth: measured and spread at 1/8
TARGET_BAND = 16       # pixels inside the tiles that are built too, for context


def tile_rooms(size: tuple[int, int], tiles: Sequence[Rect]) -> np.ndarray:
    """(H, W) int32: the index of the tile each pixel lies in, or -1 outside every tile."""
    w, h = size
    rooms = np.full((h, w), -1, np.int32)
    for i, r in enumerate(tiles):
        x0, y0 = max(r.x, 0), max(r.y, 0)
        rooms[y0:max(r.y + r.h, 0), x0:max(r.x + r.w, 0)] = i
    return rooms


@dataclass
class _Built:
    """A finished fill and what it was built from."""

    tiles: tuple[Rect, ...]
    image: np.ndarray        # HxWx3 uint8: plates where known, the grown fill elsewhere
    plate_low: np.ndarray    # the plates at 1/8, float32, for change detection
    known_low: np.ndarray    # bool at 1/8: where the plates were known
    built_at: float


def _low(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known-only mean of the image at 1/``CORRECTION_SCALE`` and the cells fully known."""
    h, w = known.shape
    size = (max(1, w // CORRECTION_SCALE), max(1, h // CORRECTION_SCALE))
    k = known.astype(np.float32)
    num = cv2.resize(image.astype(np.float32) * k[..., None], size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(k, size, interpolation=cv2.INTER_AREA)
    return num / np.maximum(den, 1e-6)[..., None], den > 0.99


class RoomFill:
    """Caches the joined background of the current layout; see the module notes.

    ``build(image, known, rooms) -> uint8 image`` is the still-image fill (thread-safe:
    the worker calls it while the frame path runs its own live grower)."""

    def __init__(self, cfg: RoomFillConfig, build: Callable[..., np.ndarray], fps: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.build = build
        self.fps = fps
        self.clock = clock
        self._pool = None if cfg.inline else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="roomfill", initializer=_lower_priority, initargs=(cfg.nice,))
        self._job: Future | None = None
        self._job_tiles: tuple[Rect, ...] | None = None
        self._current: _Built | None = None    # the fill being shown
        self._previous: np.ndarray | None = None  # what it fades from (same tiles), if any
        self._fade = 1.0                        # 0..1 of the way from previous to current
        self._frames = 0
        self._last_request = -float("inf")
        self._correction: np.ndarray | None = None
        self._shown: np.ndarray | None = None
        self._fading_in = False                 # fading in over the live fill (no previous)
        self._last_tiles: tuple[Rect, ...] = ()
        self.builds = 0                         # fills finished (for tests and stats)

    # ---- the frame path ----------------------------------------------------------------

    def frame(self, canvas: Canvas) -> tuple[np.ndarray, float] | None:
        """(fill image, opacity 0..1) for the pixels outside the tiles, or None. Opacity
        below 1 fades in a fill where there was none (blend it over the live fill)."""
        tiles = tuple(canvas.tiles)
        settled, self._last_tiles = tiles == self._last_tiles, tiles
        self._collect(tiles)
        if self._current is not None and self._current.tiles != tiles:
            self._drop()
        self._frames += 1
        if self._should_refresh(canvas, tiles, settled):
            self._request(canvas, tiles)
            self._collect(tiles)  # inline builds are ready at once
        if self._current is None:
            return None
        self._fade = min(1.0, self._fade + 1.0 / max(1.0, self.cfg.fade_s * self.fps))
        if self._frames % self.cfg.correct_frames == 0 or self._shown is None:
            self._shown = self._corrected(canvas)
        image = self._shown
        if self._previous is not None and self._fade < 1.0:
            return cv2.addWeighted(self._previous, 1.0 - self._fade, image, self._fade, 0.0), 1.0
        self._previous = None
        return image, (self._fade if self._fading_in else 1.0)

    def _corrected(self, canvas: Canvas) -> np.ndarray:
        """The fill plus the smooth difference between the live background and the plates
        it was built from, spread from the known pixels into the holes."""
        cur = self._current
        live, live_known = _low(canvas.background, canvas.known)
        both = live_known & cur.known_low
        diff = np.where(both[..., None], live - cur.plate_low, 0.0).astype(np.float32)
        if not both.any() or np.abs(diff[both]).mean() < 0.5:
            return cur.image
        sigma = max(2.0, min(diff.shape[:2]) / 4)
        num = cv2.GaussianBlur(diff, (0, 0), sigma)
        den = cv2.GaussianBlur(both.astype(np.float32), (0, 0), sigma)
        low = num / np.maximum(den, 1e-3)[..., None]
        h, w = cur.image.shape[:2]
        up = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(cur.image.astype(np.float32) + up + 0.5, 0, 255).astype(np.uint8)

    # ---- refreshing ----------------------------------------------------------------------

    def _should_refresh(self, canvas: Canvas, tiles, settled: bool) -> bool:
        if self._job is not None and not self._job.done():
            return False
        now = self.clock()
        if self._current is None:
            # Nothing for this layout yet: build as soon as the tiles stop moving.
            return settled and self._job_tiles != tiles
        if self._frames % self.cfg.check_frames or now - self._last_request < self.cfg.min_interval_s:
            return False
        live, live_known = _low(canvas.background, canvas.known)
        cur = self._current
        both = live_known & cur.known_low
        newly = float((live_known & ~cur.known_low).mean())
        change = 0.0
        if both.any():
            # A uniform change of light is the live correction's job; a local change (a
            # door opened, a lamp moved) needs a new fill.
            d = (live - cur.plate_low)[both]
            change = float(np.abs(d - d.mean(axis=0)).mean())
        return change > self.cfg.change_level or newly > self.cfg.uncovered

    def _request(self, canvas: Canvas, tiles) -> None:
        image, known = canvas.background.copy(), canvas.known.copy()
        rooms = tile_rooms(canvas.size, tiles)
        # What the fill is for: the pixels outside the tiles, and a band inside them so
        # the patches there see the feed's edge as it will be shown.
        outside = (rooms < 0).view(np.uint8)
        band = cv2.dilate(outside, np.ones((2 * TARGET_BAND + 1,) * 2, np.uint8)) > 0
        self._last_request = self.clock()
        self._job_tiles = tiles
        if self._pool is None:
            fut: Future = Future()
            try:
                fut.set_result(self._run(image, known, rooms, band, tiles))
            except Exception as err:  # reported by _collect, as from the worker
                fut.set_exception(err)
            self._job = fut
        else:
            self._job = self._pool.submit(self._run, image, known, rooms, band, tiles)

    def _run(self, image, known, rooms, targets, tiles) -> _Built:
        t0 = time.perf_counter()
        filled = self.build(image, known, rooms=rooms, targets=targets)
        plate_low, known_low = _low(image, known)
        log.debug("room fill built in %.0f ms (%d x %d, %.0f %% unknown)", (time.perf_counter() - t0) * 1e3,
                  known.shape[1], known.shape[0], 100 * (~known).mean())
        return _Built(tiles, filled, plate_low, known_low, self.clock())

    def _collect(self, tiles) -> None:
        job = self._job
        if job is None or not job.done():
            return
        self._job = None
        try:
            built = job.result()
        except Exception:  # a failed build must never stop the call: keep the live fill
            log.exception("room fill failed; the live fill stays")
            return
        if built.tiles != tiles:
            return  # the layout moved on while it was being built
        self._fading_in = self._current is None
        self._previous = self._shown if self._current is not None else None
        self._current, self._shown, self._fade = built, None, 0.0
        self.builds += 1

    def _drop(self) -> None:
        self._current = self._previous = self._shown = None
        self._fade = 1.0

    def reset(self) -> None:
        self._drop()
        self._job_tiles = None
        self._last_tiles = ()
        self._last_request = -float("inf")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority(nice: int) -> None:
    """Run this worker thread at a lower priority (Linux: per-thread nice value)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass
