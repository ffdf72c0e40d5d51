"""The joined room: the background between and around the pictures, built off the frame path.

A call's background barely changes; only the people move. So the fill of the gaps and
margins (the part of the canvas no camera sees) is not grown anew every frame: a worker
thread builds it from the rooms' clean plates (the canvas background, where the per-feed
background memory knows it) with the still-image fill, structure then texture
(``growth.joiner``), and the frame path only applies it. A new fill is built when the
seats change, when a picture has moved (framing follows a person), or when the plates
near the holes have changed (the light, an uncovered wall), at most every
``min_interval_s``, and cross-faded in over ``fade_s``.

Per frame ``frame(canvas)`` returns the fill and where it applies: everything farther than
``band`` pixels from every picture. The band around each picture is left to the live
grower, so a picture that drifts by a few pixels (a camera operator following a head)
still meets the fill without a seam until the next fill arrives. There is no fill:
- before the first one is built, or when the seats change (someone joined or left, the
  order changed): the fill belongs to a room that is gone, so nothing of a departed
  participant can linger; the pipeline's live grower fills everything, from a fresh
  state, until the new fill fades in;
- when a picture moved farther than ``drop_px`` since the fill was built.
The fill follows the live picture: a smooth correction (the difference between the live
background and the plates it was built from, on the known pixels at 1/8 resolution,
spread into the holes) is added, so a change of exposure reaches the fill at once. The
worker runs at a lower OS priority, so a build takes the time the frame path leaves
free; ``inline`` (render) builds in the calling thread, deterministically.
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

from .allocator import give_back_memory
from .config import RoomFillConfig
from .frames import Canvas, Rect
from .growth.texture import Cancelled
from .regions import Box, block_counts, block_sums, box_slices, cell_boxes, snap, upsample_box, whole_scale

log = logging.getLogger(__name__)

CORRECTION_SCALE = 8   # the live correction is smooth: measured and spread at 1/8
TARGET_BAND = 16       # pixels inside the pictures that are built too, for context
# A segmentation edge bleeds: the plate's pixels this close to where a person hides it are
# often the person's own (a dark rim along a shoulder, the last rows of a shirt at the
# picture's bottom edge), and copied out as room they draw lines into the fill.
PERSON_RIM = 3
# Per frame, the fill is matched to each picture's live edge over this many pixels,
# the differences smoothed along the edge over EDGE_SMOOTH (match_edges).
EDGE_REACH = 12
EDGE_SMOOTH = 2.0


def at_detail(fill: Callable, detail: float, image: np.ndarray, known: np.ndarray, rooms: np.ndarray,
              targets: np.ndarray, cancel) -> np.ndarray:
    """``fill(image, known, rooms, targets, cancel)`` run at the detail the cameras give:
    where every picture is drawn enlarged ``detail`` times, the canvas holds no finer
    detail than ``detail`` of its pixels, so the fill is built on the canvas shrunk by
    the whole part of it, k (a cell is known only where all of it is), and enlarged back
    as the pictures are, bilinearly. Four 640x480 webcams drawn 2.3-2.9 times their size
    on a 4032x720 canvas: built at 2016x360, a quarter of the pixels. A whole factor:
    by 2.3 the territories' meeting line came out as a column of stray pixels."""
    h, w = known.shape
    k = int(detail)
    if k < 2:
        return fill(image, known, rooms, targets, cancel)
    size = (max(8, round(w / k)), max(8, round(h / k)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    whole = cv2.resize(cv2.compare(known.view(np.uint8), 0, cv2.CMP_GT), size, interpolation=cv2.INTER_AREA)
    small_known = whole == 255
    small_rooms = cv2.resize(rooms.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
    small_targets = cv2.resize(targets.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    built = fill(small, small_known, small_rooms, small_targets, cancel)
    return cv2.resize(built, (w, h), interpolation=cv2.INTER_LINEAR)


def tile_rooms(size: tuple[int, int], tiles: Sequence[Rect]) -> np.ndarray:
    """(H, W) int32: the index of the rect each pixel lies in, or -1 outside every one."""
    w, h = size
    rooms = np.full((h, w), -1, np.int32)
    for i, r in enumerate(tiles):
        x0, y0 = max(r.x, 0), max(r.y, 0)
        rooms[y0:max(r.y + r.h, 0), x0:max(r.x + r.w, 0)] = i
    return rooms


def territories(size: tuple[int, int], tiles: Sequence[Rect]) -> np.ndarray:
    """(H, W) int32: for every pixel the seat it belongs to, the nearest tile (so two
    neighbouring rooms meet on a straight line midway between their tiles)."""
    w, h = size
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    best = np.full((h, w), np.inf, np.float32)
    out = np.zeros((h, w), np.int32)
    for i, r in enumerate(tiles):
        dx = np.maximum(np.maximum(r.x - xs, xs - (r.x + r.w - 1)), 0)
        dy = np.maximum(np.maximum(r.y - ys, ys - (r.y + r.h - 1)), 0)
        d = np.hypot(dx, dy).astype(np.float32)
        closer = d < best
        out[closer], best[closer] = i, d[closer]
    return out


def source_pixels(known: np.ndarray, pictures: Sequence[Rect]) -> np.ndarray:
    """The known pixels the fill may copy from: all but a rim of PERSON_RIM pixels around
    what people hide inside the pictures."""
    h, w = known.shape
    inside = tile_rooms((w, h), pictures) >= 0
    hidden = (~known & inside).view(np.uint8)
    if not hidden.any():
        return known
    rim = cv2.dilate(hidden, np.ones((2 * PERSON_RIM + 1,) * 2, np.uint8)) > 0
    return known & ~rim


def drift(a: Sequence[Rect], b: Sequence[Rect]) -> int:
    """How far (pixels) the farthest edge of any picture moved between ``a`` and ``b``."""
    if len(a) != len(b):
        return 1 << 30
    return max((max(abs(p.x - q.x), abs(p.y - q.y), abs(p.x + p.w - q.x - q.w), abs(p.y + p.h - q.y - q.h))
                for p, q in zip(a, b)), default=0)


@dataclass
class _Built:
    """A finished fill and what it was built from."""

    tiles: tuple[Rect, ...]     # the seats
    pictures: tuple[Rect, ...]  # where the pictures were
    image: np.ndarray           # HxWx3 uint8: plates where known, the grown fill elsewhere
    plate_low: np.ndarray       # the plates at 1/8, float32, for change detection
    known_low: np.ndarray       # bool at 1/8: where the plates were known
    targets_low: np.ndarray     # bool at 1/8: what the fill is for (and the band inside the pictures)


@dataclass
class FillFrame:
    """What the frame path gets: the fill, its opacity over the live fill (below 1 while
    a first fill fades in) and where it applies."""

    image: np.ndarray
    opacity: float
    where: np.ndarray           # HxW bool
    # Boxes that hold every pixel of ``where`` (x0, y0, x1, y1): the image is only
    # brought up to date inside them, and only they need be read.
    boxes: tuple[Box, ...] = ()


def _low(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known-only mean of the image at 1/``CORRECTION_SCALE`` and the cells fully known."""
    h, w = known.shape
    size = (max(1, w // CORRECTION_SCALE), max(1, h // CORRECTION_SCALE))
    k8 = known.view(np.uint8)
    if w % CORRECTION_SCALE == 0 and h % CORRECTION_SCALE == 0:
        # Exact block sums in integers: the same values as the float area resize below,
        # without converting the canvas to float (6x cheaper on a 4032x720 canvas).
        n = 1.0 / (CORRECTION_SCALE * CORRECTION_SCALE)
        masked = cv2.copyTo(image, k8, np.zeros_like(image))
        num = block_sums(masked, CORRECTION_SCALE).astype(np.float32) * np.float32(n)
        den = block_counts(k8, CORRECTION_SCALE).astype(np.float32) * np.float32(n)
        return num / np.maximum(den, 1e-6)[..., None], den > 0.99
    k = known.astype(np.float32)
    num = cv2.resize(image.astype(np.float32) * k[..., None], size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(k, size, interpolation=cv2.INTER_AREA)
    return num / np.maximum(den, 1e-6)[..., None], den > 0.99


def _away_from(size: tuple[int, int], pictures: Sequence[Rect], band: int) -> np.ndarray:
    """Pixels farther than ``band`` from every picture."""
    inside = (tile_rooms(size, pictures) >= 0).view(np.uint8)
    if band > 0:
        inside = cv2.dilate(inside, np.ones((2 * band + 1, 2 * band + 1), np.uint8))
    return inside == 0


def _spread(diff: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian blur of ``diff`` (HxWx3) by ``weight`` (HxW). A blur this wide
    (a quarter of the canvas's height) passes nothing a coarser grid cannot hold: it is
    taken on a grid up to 4 times coarser, where sigma stays at least 2 cells, and
    resized back (1.4 against 10 ms per correction at 4032x720; on a ramp of 25 levels
    it differs by at most 0.3 of a level)."""
    h, w = weight.shape
    k = int(min(4, sigma // 2, h // 4, w // 4))
    if k >= 2:
        size = (max(1, round(w / k)), max(1, round(h / k)))
        diff = cv2.resize(diff, size, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        sigma /= k
    num = cv2.GaussianBlur(diff, (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    low = num / np.maximum(den, 1e-3)[..., None]
    if k >= 2:
        low = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    return low


def _component_boxes(mask: np.ndarray) -> tuple[Box, ...]:
    """Boxes of 32-pixel cells around the fill (the gaps, the margins): 0.6 against 12 ms
    of the live correction on a 4032x720 canvas whose margins join the gaps into parts
    spanning three quarters of it."""
    return tuple(cell_boxes(mask, 32))


def match_edges(fill: np.ndarray, live: np.ndarray, known: np.ndarray, pictures: Sequence[Rect]) -> None:
    """Where the fill meets a picture, make it meet the picture as it is now: the step
    between each edge pixel of the live picture and the fill pixel beside it (a camera
    that moved a little, a shelf's edge a pixel off) is smoothed along the edge and faded
    into the fill over EDGE_REACH pixels. Only the picture's own room counts (where a
    person reaches the edge the fill is left as built). In place; float32 HxWx3."""
    h, w = known.shape
    fade = np.exp(-np.arange(EDGE_REACH, dtype=np.float32) / (EDGE_REACH / 3))
    for p in pictures:
        if p.w <= 0 or p.h <= 0:
            continue
        ys, xs = slice(p.y, p.y + p.h), slice(p.x, p.x + p.w)
        # (edge pixels of the picture, the fill's pixels going outward from it)
        sides = []
        if p.x > 0:
            sides.append((live[ys, p.x], known[ys, p.x], fill[ys, max(0, p.x - EDGE_REACH):p.x][:, ::-1]))
        if p.x + p.w < w:
            sides.append((live[ys, p.x + p.w - 1], known[ys, p.x + p.w - 1], fill[ys, p.x + p.w:p.x + p.w + EDGE_REACH]))
        if p.y > 0:
            sides.append((live[p.y, xs], known[p.y, xs],
                          fill[max(0, p.y - EDGE_REACH):p.y, xs][::-1].transpose(1, 0, 2)))
        if p.y + p.h < h:
            sides.append((live[p.y + p.h - 1, xs], known[p.y + p.h - 1, xs],
                          fill[p.y + p.h:p.y + p.h + EDGE_REACH, xs].transpose(1, 0, 2)))
        for edge, ok, out in sides:
            if out.shape[1] == 0 or not ok.any():
                continue
            m = ok.astype(np.float32)[:, None]
            diff = (edge.astype(np.float32) - out[:, 0]) * m
            # Smoothed along the edge, counting only the room's own edge pixels.
            num = cv2.GaussianBlur(diff[:, None, :], (0, 0), sigmaX=0.1, sigmaY=EDGE_SMOOTH)[:, 0]
            den = cv2.GaussianBlur(m, (0, 0), sigmaX=0.1, sigmaY=EDGE_SMOOTH).reshape(-1, 1)
            corr = num / np.maximum(den, 1e-3) * np.minimum(1.0, den / 0.3)
            out += corr[:, None, :] * fade[None, :out.shape[1], None]


class _Either:
    """An event set when either of two is: the room closing, or the build's seats going."""

    def __init__(self, room: threading.Event, own: threading.Event):
        self.room, self.own = room, own

    def is_set(self) -> bool:
        return self.room.is_set() or self.own.is_set()

    def set(self) -> None:
        self.own.set()


class RoomFill:
    """Caches the joined background of the current seats; see the module notes.

    ``build(image, known, rooms, targets, cancel) -> uint8 image`` is the still-image
    fill (thread-safe: the worker calls it while the frame path runs its own live grower;
    it should stop early once the ``cancel`` event is set)."""

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
        self._current: _Built | None = None       # the fill being shown
        self._shown: np.ndarray | None = None     # it, with the live correction
        self._previous: np.ndarray | None = None  # what it cross-fades from (same seats)
        self._fade = 1.0                          # 0..1 of the way in
        self._fading_in = False                   # over the live fill (nothing before it)
        self._frames = 0
        self._last_request = -float("inf")
        self._last_tiles: tuple[Rect, ...] = ()
        self._where: tuple[tuple, np.ndarray] | None = None
        self._cancel = threading.Event()          # set by close(): a build in flight stops
        self._job_cancel = threading.Event()      # the build in flight's own (its seats went)
        self.builds = 0                           # fills finished (for tests and stats)

    @property
    def ready(self) -> bool:
        """Whether a fill is in place (it applies to the frames while it is)."""
        return self._current is not None

    # ---- the frame path ----------------------------------------------------------------

    def frame(self, canvas: Canvas) -> FillFrame | None:
        """This frame's fill, or None while there is none for these seats."""
        tiles, pictures = tuple(canvas.tiles), canvas.shown
        settled, self._last_tiles = tiles == self._last_tiles, tiles
        if self._job is not None and self._job_tiles != tiles:
            self._job_cancel.set()  # a build for seats that are gone: stop it, free the worker
        self._collect(tiles)
        cur = self._current
        if cur is not None and (cur.tiles != tiles or drift(cur.pictures, pictures) > self.cfg.drop_px):
            self._drop()
        self._frames += 1
        if self._should_build(canvas, tiles, settled):
            self._request(canvas)
            self._collect(tiles)  # an inline build is ready at once
        if self._current is None:
            return None
        self._fade = min(1.0, self._fade + 1.0 / max(1.0, self.cfg.fade_s * self.fps))
        where, boxes, around = self._away(canvas.size, pictures)
        if self._shown is None or self._frames % self.cfg.correct_frames == 0:
            self._shown = self._corrected(canvas, around)
        image, opacity = self._shown, 1.0
        if self._previous is not None and self._fade < 1.0:
            image = image.copy()
            for box in boxes:
                ys, xs = box_slices(box)
                image[ys, xs] = cv2.addWeighted(self._previous[ys, xs], 1.0 - self._fade, self._shown[ys, xs],
                                                self._fade, 0.0)
        elif self._fading_in:
            opacity = self._fade
        if self._fade >= 1.0:
            self._previous, self._fading_in = None, False
        return FillFrame(image, opacity, where, boxes)

    def _away(self, size, pictures) -> tuple[np.ndarray, tuple[Box, ...], tuple[Box, ...]]:
        """Where the fill applies, boxes around it, and those boxes grown by ``drop_px``
        (the live correction covers them: a picture that drifts, up to the distance at
        which the fill is dropped, still meets a corrected fill)."""
        if self._where is None or self._where[0] != (size, pictures):
            where = _away_from(size, pictures, self.cfg.band)
            boxes = _component_boxes(where)
            m = self.cfg.drop_px
            around = tuple((max(0, x0 - m), max(0, y0 - m), min(size[0], x1 + m), min(size[1], y1 + m))
                           for x0, y0, x1, y1 in boxes)
            self._where = ((size, pictures), (where, boxes, around))
        return self._where[1]

    def _corrected(self, canvas: Canvas, boxes: Sequence[Box] | None = None) -> np.ndarray:
        """The fill plus the smooth difference between the live background and the plates
        it was built from, spread from the known pixels into the holes; inside ``boxes``
        only, when given (elsewhere the fill as built)."""
        cur = self._current
        live, live_known = _low(canvas.background, canvas.known)
        both = live_known & cur.known_low
        diff = np.where(both[..., None], live - cur.plate_low, 0.0).astype(np.float32)
        if not both.any():
            return cur.image
        sigma = max(2.0, min(diff.shape[:2]) / 4)
        low = _spread(diff, both.astype(np.float32), sigma)
        h, w = cur.image.shape[:2]
        scale = whole_scale((w, h), low.shape[1::-1])
        if boxes is None or scale is None:
            up = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
            out = cur.image.astype(np.float32) + up
            match_edges(out, canvas.background, canvas.known, canvas.shown)
            return np.clip(out + 0.5, 0, 255).astype(np.uint8)
        # Only where the fill shows: between the pictures, a small part of a wide canvas.
        # The float canvas is zeroed lazily: only the boxes' pages are written (and, by
        # match_edges, the strip beside a picture that another picture borders, where the
        # fill does not show).
        boxes = [snap(b, scale, (w, h)) for b in boxes]
        corrected = np.zeros((h, w, 3), np.float32)
        for box in boxes:
            ys, xs = box_slices(box)
            corrected[ys, xs] = cur.image[ys, xs].astype(np.float32) + upsample_box(low, scale, box)
        match_edges(corrected, canvas.background, canvas.known, canvas.shown)
        out = cur.image.copy()
        for box in boxes:
            ys, xs = box_slices(box)
            out[ys, xs] = np.clip(corrected[ys, xs] + 0.5, 0, 255).astype(np.uint8)
        return out

    # ---- building ----------------------------------------------------------------------

    def _should_build(self, canvas: Canvas, tiles, settled: bool) -> bool:
        if self._job is not None and not self._job.done():
            return False
        cur = self._current
        if cur is None:
            # Nothing for these seats yet: build as soon as they stop moving.
            return settled and self._job_tiles != tiles
        if self._frames % self.cfg.check_frames or self.clock() - self._last_request < self.cfg.min_interval_s:
            return False
        if drift(cur.pictures, canvas.shown) > self.cfg.rebuild_px:
            return True
        live, live_known = _low(canvas.background, canvas.known)
        both = live_known & cur.known_low
        # Newly seen room counts where the fill is built: in its own pixels and the band
        # inside the pictures it continues. Deeper inside a picture (a person who moved
        # aside from the middle of it) the room is the picture's own, and a new fill
        # would look the same.
        newly = float((live_known & ~cur.known_low & cur.targets_low).mean())
        change = 0.0
        if both.any():
            # A uniform change of light is the live correction's job; a local change (a
            # door opened, a lamp moved) needs a new fill.
            d = (live - cur.plate_low)[both]
            change = float(np.abs(d - d.mean(axis=0)).mean())
        return change > self.cfg.change_level or newly > self.cfg.uncovered

    def _request(self, canvas: Canvas) -> None:
        image, known = canvas.background.copy(), canvas.known.copy()
        tiles, pictures = tuple(canvas.tiles), canvas.shown
        # Each seat's room grows into its own territory, from its own picture.
        rooms = territories(canvas.size, tiles)
        # What the fill is for: the pixels outside the pictures, and a band inside them so
        # the patches there see each picture's edge as it is shown.
        outside = (tile_rooms(canvas.size, pictures) < 0).view(np.uint8)
        targets = cv2.dilate(outside, np.ones((2 * TARGET_BAND + 1,) * 2, np.uint8)) > 0
        self._last_request = self.clock()
        self._job_tiles = tiles
        self._job_cancel = _Either(self._cancel, threading.Event())
        args = (image, known, rooms, targets, tiles, pictures, self._job_cancel)
        if self._pool is None:
            fut: Future = Future()
            try:
                fut.set_result(self._run(*args))
            except Exception as err:  # reported by _collect, as from the worker
                fut.set_exception(err)
            self._job = fut
        else:
            self._job = self._pool.submit(self._run, *args)

    def _run(self, image, known, rooms, targets, tiles, pictures, cancel) -> _Built:
        t0 = time.perf_counter()
        try:
            filled = self.build(image, source_pixels(known, pictures), rooms=rooms, targets=targets,
                                cancel=cancel)
        finally:
            # A build's temporaries (about 125 MB at 1280x360) are freed in bulk; handed
            # back at once, they do not stay as free space in the process (RESULTS.md).
            give_back_memory()
        plate_low, known_low = _low(image, known)
        log.debug("room fill built in %.0f ms (%dx%d, %.0f %% unknown)", (time.perf_counter() - t0) * 1e3,
                  known.shape[1], known.shape[0], 100 * (~known).mean())
        targets_low = cv2.resize(targets.view(np.uint8) * np.uint8(255), known_low.shape[::-1],
                                 interpolation=cv2.INTER_AREA) > 0  # cells with any target pixel
        return _Built(tiles, pictures, filled, plate_low, known_low, targets_low)

    def _collect(self, tiles) -> None:
        job = self._job
        if job is None or not job.done():
            return
        self._job = None
        err = job.exception()
        if err is not None and not self._cancel.is_set() and not isinstance(err, Cancelled):
            # A failed build must never stop the call: the live fill stays.
            log.error("room fill failed (%s: %s); the live fill stays", type(err).__name__, err)
        if err is not None:
            return
        built = job.result()
        if built.tiles != tiles:
            return  # the seats changed while it was being built
        self._fading_in = self._current is None
        self._previous = self._shown if self._current is not None else None
        self._current, self._shown, self._fade = built, None, 0.0
        self.builds += 1

    def _drop(self) -> None:
        self._current = self._previous = self._shown = None
        self._fade, self._fading_in = 1.0, False
        self._job_tiles = None  # build again for these seats

    def reset(self) -> None:
        self._drop()
        self._job_tiles = None
        self._last_tiles = ()
        self._last_request = -float("inf")

    def close(self) -> None:
        """Stop the worker: a build in flight stops at its next round (well under a
        second), and nothing of it outlives the room."""
        self._cancel.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _lower_priority(nice: int) -> None:
    """Run this worker thread at a lower priority (Linux: per-thread nice value)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass
