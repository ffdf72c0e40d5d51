"""Where each feed goes on the shared canvas, and putting it there.

``plan_layout`` decides the tiles (a row, or a grid, scaled to a common height, with
gaps and an optional margin); ``Placer`` resizes each feed into its tile, asks the
feed's background memory for what the person hides, and returns a ``Canvas`` whose
``known`` mask says which pixels are real background. Everything else is for the grower.

When the set of feeds changes, tiles slide from their old place to the new one over a
few frames instead of jumping, so the room re-forms smoothly when someone joins or leaves.
"""
from __future__ import annotations

from .errors import RoomfuseError

import math
from dataclasses import dataclass, replace
from typing import Hashable, Sequence

import cv2
import numpy as np

from .config import LayoutConfig, MemoryConfig
from .frames import Canvas, Cutout, Rect
from .memory import BackgroundMemory

MAX_FEEDS = 8


class LayoutError(RoomfuseError, ValueError):
    pass


@dataclass(frozen=True)
class LayoutPlan:
    size: tuple[int, int]  # canvas (width, height)
    tiles: tuple[Rect, ...]  # one per feed, in feed order


def _even(v: float) -> int:
    return max(2, int(round(v / 2.0)) * 2)


def plan_layout(feed_sizes: Sequence[tuple[int, int]], cfg: LayoutConfig,
                canvas_size: tuple[int, int] | None = None) -> LayoutPlan:
    """Tiles for feeds of the given (width, height), all drawn at one common height.

    Without ``canvas_size`` the canvas is ``cfg.height`` tall and as wide as the row or
    grid needs. With it (a live room has a fixed output size) the feeds are made as large
    as fits and centred; the space left over is margin, which the grower fills too.
    """
    n = len(feed_sizes)
    if not 1 <= n <= MAX_FEEDS:
        raise LayoutError(f"layout needs 1 to {MAX_FEEDS} feeds, got {n}")
    if cfg.mode == "auto":
        return _plan_auto(feed_sizes, cfg, canvas_size)
    if cfg.mode not in ("row", "grid"):
        raise LayoutError(f"layout mode must be 'row', 'grid' or 'auto', got {cfg.mode!r}")
    if cfg.gap < 0 or cfg.margin < 0:
        raise LayoutError("gap and margin must be >= 0")
    aspects = [w / h for w, h in feed_sizes]
    cols = n if cfg.mode == "row" else math.ceil(math.sqrt(n))
    rows = [aspects[i:i + cols] for i in range(0, n, cols)]
    widest = max(sum(r) for r in rows)  # in units of the feed height
    gaps_x = cfg.gap * (max(len(r) for r in rows) - 1)
    gaps_y = cfg.gap * (len(rows) - 1)
    if canvas_size is None:
        feed_h = (cfg.height - 2 * cfg.margin - gaps_y) / len(rows)
    else:
        cw, ch = canvas_size
        feed_h = min((ch - 2 * cfg.margin - gaps_y) / len(rows),
                     (cw - 2 * cfg.margin - gaps_x) / widest)
    if feed_h < 16:
        raise LayoutError(f"feeds would be {feed_h:.0f} px tall: canvas too small for "
                          f"{n} feeds with gap {cfg.gap} and margin {cfg.margin}")
    fh = _even(feed_h)
    widths = [[_even(a * fh) for a in r] for r in rows]
    row_w = [sum(ws) + cfg.gap * (len(ws) - 1) for ws in widths]
    block_h = fh * len(rows) + gaps_y
    if canvas_size is None:
        size = (_even(max(row_w) + 2 * cfg.margin), _even(block_h + 2 * cfg.margin))
    else:
        size = canvas_size
    y = (size[1] - block_h) // 2
    tiles = []
    for ws, rw in zip(widths, row_w):
        x = (size[0] - rw) // 2
        for w in ws:
            tiles.append(Rect(x, y, w, fh))
            x += w + cfg.gap
        y += fh + cfg.gap
    return LayoutPlan(size=size, tiles=tuple(tiles))


def _plan_auto(feed_sizes: Sequence[tuple[int, int]], cfg: LayoutConfig,
               canvas_size: tuple[int, int] | None) -> LayoutPlan:
    """"auto": on a fixed canvas, whichever of row and grid draws the feeds larger (a
    row wins ties: people side by side is the one-room look); without one, a row up to
    3 feeds and a grid beyond, so the canvas does not grow ever wider."""
    row, grid = replace(cfg, mode="row"), replace(cfg, mode="grid")
    if canvas_size is None:
        return plan_layout(feed_sizes, row if len(feed_sizes) <= 3 else grid)
    plans = []
    for c in (row, grid):
        try:
            plans.append(plan_layout(feed_sizes, c, canvas_size))
        except LayoutError as e:
            err = e
    if not plans:
        raise err
    return max(plans, key=lambda p: p.tiles[0].h)  # max() keeps the first (row) on ties


def _lerp_rect(a: Rect, b: Rect, t: float) -> Rect:
    def m(u, v):
        return int(round(u + (v - u) * t))
    return Rect(m(a.x, b.x), m(a.y, b.y), _even(m(a.w, b.w)), _even(m(a.h, b.h)))


class Placer:
    """Feeds -> Canvas. Keeps one background memory per feed and the current tiles."""

    def __init__(self, cfg: LayoutConfig = LayoutConfig(), memory: MemoryConfig = MemoryConfig(),
                 canvas_size: tuple[int, int] | None = None, slide_frames: int = 12):
        self.cfg = cfg
        self.memory_cfg = memory
        self.canvas_size = canvas_size
        self.slide_frames = slide_frames
        self.plan: LayoutPlan | None = None
        self._keys: tuple[Hashable, ...] = ()
        self._sizes: tuple[tuple[int, int], ...] = ()
        self._shown: dict[Hashable, Rect] = {}  # where each feed is drawn right now
        self._slide_left = 0
        self.memories: dict[Hashable, BackgroundMemory] = {}

    def _update_plan(self, keys: tuple, sizes: tuple) -> None:
        if keys == self._keys and sizes == self._sizes and self.plan is not None:
            return
        plan = plan_layout(sizes, self.cfg, self.canvas_size)
        same_canvas = self.plan is not None and plan.size == self.plan.size
        self.plan, self._keys, self._sizes = plan, keys, sizes
        for gone in set(self.memories) - set(keys):
            del self.memories[gone]
        # Slide only on a fixed canvas: if the canvas itself changes size, jump.
        self._slide_left = self.slide_frames if same_canvas else 0
        self._shown = {k: r for k, r in self._shown.items() if k in keys and same_canvas}

    def tiles_now(self) -> list[Rect]:
        """The rect of each feed this frame, moving toward the plan while sliding."""
        target = dict(zip(self._keys, self.plan.tiles))
        if self._slide_left > 0:
            t = 1.0 / self._slide_left  # equal steps over the remaining frames
            self._slide_left -= 1
            rects = {k: _lerp_rect(self._shown.get(k, r), r, t) for k, r in target.items()}
        else:
            rects = target
        self._shown = rects
        return [rects[k] for k in self._keys]

    def __call__(self, cutouts: Sequence[Cutout], keys: Sequence[Hashable] | None = None) -> Canvas:
        keys = tuple(range(len(cutouts))) if keys is None else tuple(keys)
        if len(keys) != len(cutouts):
            raise LayoutError("one key per feed is needed")
        self._update_plan(keys, tuple(c.frame.size for c in cutouts))
        w, h = self.plan.size
        image = np.zeros((h, w, 3), np.uint8)
        background = np.zeros((h, w, 3), np.uint8)
        known = np.zeros((h, w), bool)
        alpha = np.zeros((h, w), np.float32)
        tiles = self.tiles_now()
        for key, cut, r in zip(keys, cutouts, tiles):
            r = _clip_rect(r, w, h)
            if r is None:
                continue
            ys, xs = r.slices
            img = resize_feed(cut.frame.image, r.w, r.h)
            a = cv2.resize(cut.alpha, (r.w, r.h), interpolation=cv2.INTER_LINEAR)
            seen = a < self.cfg.background_below
            image[ys, xs] = img
            alpha[ys, xs] = a
            if self.memory_cfg.enabled:
                mem = self.memories.get(key)
                if mem is None:
                    mem = self.memories[key] = BackgroundMemory(self.memory_cfg)
                bg, ok = mem.update(img, seen, cut.frame.pts)
                background[ys, xs] = bg
                known[ys, xs] = ok
            else:
                background[ys, xs] = img
                known[ys, xs] = seen
        return Canvas(image=image, background=background, known=known, alpha=alpha, tiles=tuple(tiles))

    def reset(self) -> None:
        self.plan = None
        self._keys, self._sizes, self._shown = (), (), {}
        self.memories.clear()


def resize_feed(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear for mild scaling (5x cheaper than area averaging, same look); area
    averaging only when shrinking by more than half, where bilinear would alias."""
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    shrink = min(w / iw, h / ih)
    interp = cv2.INTER_AREA if shrink < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)


def _clip_rect(r: Rect, w: int, h: int) -> Rect | None:
    x0, y0 = max(r.x, 0), max(r.y, 0)
    x1, y1 = min(r.x + r.w, w), min(r.y + r.h, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    if (x0, y0, x1 - x0, y1 - y0) == (r.x, r.y, r.w, r.h):
        return r
    # A rect half off the canvas only happens mid-slide; draw it whole, just smaller.
    return Rect(x0, y0, x1 - x0, y1 - y0)
