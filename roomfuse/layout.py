"""Where each feed goes on the shared canvas, and putting it there.

``plan_layout`` decides the tiles (a row, or a grid, scaled to a common height, with
gaps and an optional margin); ``seats.Seats`` decides who sits in which; ``Placer`` draws
each feed into its tile (the whole picture, or through the framing stage's ``View``:
enlarged, shrunk, shifted), asks the feed's background memory for what the person hides,
and returns a ``Canvas`` whose ``known`` mask says which pixels are real background.
Everything else (gaps, hidden background, the room around a shrunk picture) is for the
grower.

When the set of feeds changes, tiles slide from their old place to the new one over a
few frames instead of jumping, so the room re-forms smoothly when someone joins or leaves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Hashable, Sequence

import cv2
import numpy as np

from .config import FramingConfig, LayoutConfig, MemoryConfig
from .errors import RoomfuseError
from .frames import Canvas, Cutout, Rect, View
from .memory import BackgroundMemory
from .regions import clip_rect, overlapping
from .seats import Seats

MAX_FEEDS = 8
MAX_WORK = 4  # the most a canvas is shrunk to work at the cameras' detail


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


@dataclass(frozen=True)
class Draft:
    """A frame's canvas as planned, before its feeds are drawn on it (``Placer.begin``)."""

    keys: tuple
    views: Sequence[View] | None
    tiles: tuple[Rect, ...]  # each feed's tile on the canvas as drawn, in feed order
    shown: tuple[Rect, ...]  # the same at the size the composite is shown at
    out_size: tuple[int, int]  # (width, height) shown
    arrays: tuple  # image, background, known, alpha: blank until drawn

    @property
    def overlapping(self) -> bool:
        """Tiles overlap (only mid-slide): the feeds must then be drawn one after the
        other, in feed order, so the later wins."""
        h, w = self.arrays[0].shape[:2]
        return overlapping([clip_rect(t, w, h) for t in self.tiles])


class Placer:
    """Feeds -> Canvas. Keeps, per feed key, a background memory and where the feed is
    drawn; with framing, draws each feed through its ``View``."""

    def __init__(self, cfg: LayoutConfig = LayoutConfig(), memory: MemoryConfig = MemoryConfig(),
                 canvas_size: tuple[int, int] | None = None, slide_frames: int = 12,
                 framing: FramingConfig = FramingConfig(), pool=None):
        """``pool`` (optional, an executor): half of the feeds are drawn there, at the
        same time as the other half (each feed writes only its own tile)."""
        self.cfg = cfg
        self.pool = pool
        self.memory_cfg = memory
        self.framing = framing
        self.canvas_size = canvas_size
        self.slide_frames = slide_frames
        self.seats = Seats(cfg.order)
        self.plan: LayoutPlan | None = None  # tiles in seat order
        self._seated: tuple[Hashable, ...] = ()  # feed keys in seat order
        self._sizes: dict[Hashable, tuple[int, int]] = {}
        self._target: dict[Hashable, Rect] = {}
        self._shown: dict[Hashable, Rect] = {}  # where each feed is drawn right now
        self._slide_left = 0
        self._last: Canvas | None = None
        self._levels: dict[Hashable, int] = {}
        self._fix_canvas = False
        self._given_canvas = canvas_size
        self.memories: dict[Hashable, BackgroundMemory] = {}
        # Canvas pixels per camera pixel, each feed as last drawn (the detail there is).
        self.scales: dict[Hashable, float] = {}
        # The canvas is drawn this many times smaller than it is shown (at_detail).
        self.work = 1

    def _plan_for(self, seated: Sequence[Hashable]) -> LayoutPlan:
        return plan_layout([self._sizes[k] for k in seated], self.cfg, self.canvas_size)

    def seat_size(self, size: tuple[int, int], view: View | None) -> tuple[int, int]:
        """The size a feed is planned at: its own, or for a picture that framing shrinks,
        as narrow as the picture (at least ``seat_width`` tile heights)."""
        if view is None:
            return size
        w, h = size
        zoom = view.zoom if view.goal_zoom is None else view.goal_zoom
        aspect = min(w / h, max(zoom * w / h, self.framing.seat_width))
        return max(2, round(aspect * h)), h

    def _update_plan(self, keys: tuple, sizes: tuple) -> None:
        new_sizes = dict(zip(keys, sizes))
        changed_sizes = new_sizes != self._sizes
        self._sizes = new_sizes
        seated = self.seats(keys, self._last, lambda order: self._plan_for(order).tiles)
        if seated == self._seated and not changed_sizes and self.plan is not None:
            return
        plan = self._plan_for(seated)
        same_canvas = self.plan is not None and plan.size == self.plan.size
        self.plan, self._seated = plan, seated
        if self._fix_canvas and self.canvas_size is None:
            # Framing re-plans seat widths as people move; without a fixed output size
            # the canvas (and a video being written) would change size with them.
            self.canvas_size = plan.size
        self._target = dict(zip(seated, plan.tiles))
        for gone in set(self.memories) - set(keys):
            del self.memories[gone]
            self._levels.pop(gone, None)
        for gone in set(self.scales) - set(keys):
            del self.scales[gone]
        # Slide only on a fixed canvas: if the canvas itself changes size, jump.
        self._slide_left = self.slide_frames if same_canvas else 0
        self._shown = {k: r for k, r in self._shown.items() if k in new_sizes and same_canvas}

    def tiles_now(self, keys: Sequence[Hashable] | None = None) -> list[Rect]:
        """The rect of each feed this frame (in the order of ``keys``, by default the
        seat order), moving toward the plan while sliding."""
        keys = self._seated if keys is None else keys
        if self._slide_left > 0:
            t = 1.0 / self._slide_left  # equal steps over the remaining frames
            self._slide_left -= 1
            rects = {k: _lerp_rect(self._shown.get(k, r), r, t) for k, r in self._target.items()}
        else:
            rects = dict(self._target)
        self._shown = rects
        return [rects[k] for k in keys]

    def __call__(self, cutouts: Sequence[Cutout], keys: Sequence[Hashable] | None = None,
                 views: Sequence[View] | None = None) -> Canvas:
        """``views`` (one per feed, from the framing stage) or None for the plain fit."""
        keys = tuple(range(len(cutouts))) if keys is None else tuple(keys)
        if len(keys) != len(cutouts):
            raise LayoutError("one distinct key per feed is needed")
        draft = self.begin([c.frame.size for c in cutouts], keys, views)
        n = len(cutouts)
        # Tiles overlap only mid-slide: then one after the other, so the later wins.
        if self.pool is None or n < 2 or draft.overlapping:
            pictures = [self.draw(draft, i, cutouts[i]) for i in range(n)]
        else:
            half = n // 2
            others = self.pool.submit(lambda: [self.draw(draft, i, cutouts[i]) for i in range(half, n)])
            pictures = [self.draw(draft, i, cutouts[i]) for i in range(half)]
            pictures += others.result()
        return self.finish(draft, pictures)

    def begin(self, sizes: Sequence[tuple[int, int]], keys: Sequence[Hashable],
              views: Sequence[View] | None = None) -> Draft:
        """This frame's canvas, planned from the feeds' picture sizes (``(width, height)``)
        and views alone, blank: each feed is then drawn on it by ``draw`` (as soon as
        it is segmented, in any order and any thread, unless ``Draft.overlapping``),
        and ``finish`` makes it the frame's Canvas."""
        keys = tuple(keys)
        if len(keys) != len(sizes) or len(set(keys)) != len(keys):
            raise LayoutError("one distinct key per feed is needed")
        if views is not None and len(views) != len(sizes):
            raise LayoutError("one view per feed is needed")
        self._fix_canvas = views is not None
        self._update_plan(keys, tuple(self.seat_size(size, None if views is None else views[i])
                                      for i, size in enumerate(sizes)))
        out_w, out_h = self.plan.size
        shown = self.tiles_now(keys)
        self.work = self._work_factor(sizes, views, shown) if self.cfg.at_detail else 1
        if self.work > 1:
            w, h = max(2, round(out_w / self.work)), max(2, round(out_h / self.work))
            tiles = [scale_rect(t, w / out_w, h / out_h) for t in shown]
        else:
            (w, h), tiles = (out_w, out_h), shown
        arrays = (np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8),
                  np.zeros((h, w), bool), np.zeros((h, w), np.float32))
        return Draft(keys=keys, views=views, tiles=tuple(tiles), shown=tuple(shown),
                     out_size=(out_w, out_h), arrays=arrays)

    def draw(self, draft: Draft, i: int, cut: Cutout) -> Rect:
        """Feed ``i`` of ``draft`` onto its tile (it writes nothing outside it); where its
        picture landed."""
        image = draft.arrays[0]
        h, w = image.shape[:2]
        r = _clip_rect(draft.tiles[i], w, h)
        if r is None:
            return Rect(0, 0, 0, 0)
        if draft.views is None:
            self._draw_plain(draft.keys[i], cut, r, *draft.arrays)
            return r
        return self._draw_framed(draft.keys[i], cut, draft.views[i], r, *draft.arrays)

    def finish(self, draft: Draft, pictures: Sequence[Rect]) -> Canvas:
        """The Canvas of ``draft`` once every feed is drawn (``pictures``: what ``draw``
        returned for each, in feed order)."""
        image, background, known, alpha = draft.arrays
        smaller = self.work > 1
        self._last = Canvas(image=image, background=background, known=known, alpha=alpha,
                            tiles=draft.tiles, keys=draft.keys, pictures=tuple(pictures),
                            out_size=draft.out_size if smaller else None,
                            out_tiles=draft.shown if smaller else ())
        return self._last

    def _work_factor(self, sizes: Sequence[tuple[int, int]], views: Sequence[View] | None,
                     tiles: Sequence[Rect]) -> int:
        """How many times smaller than shown to draw the canvas: the whole part of the
        least enlargement of any picture (a canvas pixel finer than that shows no more
        of a camera's detail), up to ``MAX_WORK``. Kept within a band (up at the next whole
        number, down only below 0.9 of the current one) so a view zooming around a whole
        factor does not flip between the two: a change of size restarts the grower and the
        room fill."""
        least = math.inf
        for i, ((sw, sh), r) in enumerate(zip(sizes, tiles)):
            if r.w < 2 or r.h < 2:
                continue
            if views is None:
                least = min(least, r.w / sw, r.h / sh)
            else:
                least = min(least, view_geometry((sw, sh), (r.w, r.h), views[i], self.framing.eye_line)[0])
        f = self.work
        if not math.isfinite(least):
            return f
        while f > 1 and least < 0.9 * f:
            f -= 1
        while f < MAX_WORK and least >= f + 1:
            f += 1
        return f

    def _remember(self, key: Hashable, img: np.ndarray, seen: np.ndarray, pts: float, box=None, size=None):
        if not self.memory_cfg.enabled:
            return img, seen
        mem = self.memories.get(key)
        if mem is None:
            mem = self.memories[key] = BackgroundMemory(self.memory_cfg)
        return mem.update(img, seen, pts, box, size)

    def _draw_plain(self, key, cut: Cutout, r: Rect, image, background, known, alpha) -> None:
        """The whole picture at tile size (no framing)."""
        ys, xs = r.slices
        self.scales[key] = min(r.w / cut.frame.size[0], r.h / cut.frame.size[1])
        img = resize_feed(cut.frame.image, r.w, r.h)
        a = cv2.resize(cut.alpha, (r.w, r.h), interpolation=cv2.INTER_LINEAR)
        bg, ok = self._remember(key, img, a < self.cfg.background_below, cut.frame.pts)
        image[ys, xs] = img
        alpha[ys, xs] = a
        background[ys, xs] = bg
        known[ys, xs] = ok

    def _draw_framed(self, key, cut: Cutout, view: View, r: Rect, image, background, known, alpha) -> Rect:
        """The picture through its view: scaled and shifted inside the tile, cropped where
        it overflows, and where it does not cover the tile the rest is left unknown for
        the grower to extend. The background memory works on the picture itself (at a
        resolution near the drawn one), so it stays valid while the view moves."""
        sw, sh = cut.frame.size
        s, x, y = view_geometry((sw, sh), (r.w, r.h), view, self.framing.eye_line)
        self.scales[key] = s
        level = self._level(key, s)
        img = cut.frame.image
        lw, lh = sw, sh
        if level:
            lw, lh = max(2, round(sw / 2 ** level)), max(2, round(sh / 2 ** level))
            img = cv2.resize(img, (lw, lh), interpolation=cv2.INTER_AREA)
        sx, sy = s * sw / lw, s * sh / lh
        crop = crop_plan((lw, lh), (sx, sy), (x, y), (r.w, r.h))
        if crop is None:
            return Rect(r.x, r.y, 0, 0)
        a = cv2.resize(cut.alpha, (lw, lh), interpolation=cv2.INTER_LINEAR)
        # Everything per pixel from here on, the memory included, only on the part of
        # the picture that shows: for a person enlarged 2x, a quarter of it.
        x0, y0, x1, y1 = crop.box
        # What is room is decided on the matte as the camera gave it: the fade below only
        # changes how the person is drawn, and a faded torso taken for room would put
        # their shirt into the memory and a dark line under the picture.
        seen = a[y0:y1, x0:x1] < self.cfg.background_below
        fade_cut_edges(a, (sx, sy), (x, y), (r.w, r.h), self.framing.edge_fade)
        img, a = img[y0:y1, x0:x1], a[y0:y1, x0:x1]
        bg, ok = self._remember(key, img, seen, cut.frame.pts, crop.box, (lw, lh))
        local = replace(crop, box=(0, 0, x1 - x0, y1 - y0))
        ys, xs = r.slices
        paste(image[ys, xs], img, local, cv2.INTER_LINEAR)
        paste(background[ys, xs], bg, local, cv2.INTER_LINEAR)
        paste(known.view(np.uint8)[ys, xs], ok.view(np.uint8), local, cv2.INTER_NEAREST)
        paste(alpha[ys, xs], a, local, cv2.INTER_LINEAR)
        # Where the picture landed, cut to the tile.
        px0, py0 = max(crop.at[0], 0), max(crop.at[1], 0)
        px1, py1 = min(crop.at[0] + crop.size[0], r.w), min(crop.at[1] + crop.size[1], r.h)
        return Rect(r.x + px0, r.y + py0, max(0, px1 - px0), max(0, py1 - py0))

    def _level(self, key: Hashable, scale: float) -> int:
        """How many times to halve a picture before drawing it at ``scale``: bilinear
        scaling aliases below one half, and the background memory costs less on fewer
        pixels. The band (drawn at 0.55-1.1 of the halved size) keeps a zooming view
        from flipping between levels."""
        lv = self._levels.get(key, 0)
        while lv < 3 and scale * 2 ** lv < 0.55:
            lv += 1
        while lv > 0 and scale * 2 ** lv > 1.1:
            lv -= 1
        self._levels[key] = lv
        return lv

    def reset(self) -> None:
        self.plan = None
        self.canvas_size = self._given_canvas
        self._seated, self._sizes, self._target, self._shown = (), {}, {}, {}
        self._last = None
        self._levels.clear()
        self.seats.reset()
        self.memories.clear()
        self.scales.clear()
        self.work = 1


def view_geometry(src: tuple[int, int], tile: tuple[int, int], view: View,
                  eye_line: float) -> tuple[float, float, float]:
    """(scale, x, y): picture point (u, v) lands at (x + scale * u, y + scale * v) in
    the tile. The people are centred and the eye line always holds; but an enlarged
    picture, wider than its tile, is kept covering it (its side never shows inside the
    tile). A picture as wide as its tile (a shrunk one, whose seat is narrowed to it)
    is shifted to centre its people: what leaves the tile is cropped, what it uncovers
    is left to the grower."""
    sw, sh = src
    tw, th = tile
    s = view.zoom * th / sh
    x = tw / 2 - view.cx * sw * s
    y = eye_line * th - view.eye * sh * s
    if sw * s > 1.02 * tw:
        x = min(0.0, max(tw - sw * s, x))
    return s, x, y


@dataclass(frozen=True)
class Crop:
    """The part of a picture that lands in a tile, and where: ``box`` (x0, y0, x1, y1)
    in the picture, resized to ``size``, its corner at ``at`` in the tile (may be
    negative: the overflow is cut off)."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    at: tuple[int, int]


def crop_plan(src: tuple[int, int], scale: tuple[float, float], offset: tuple[float, float],
              tile: tuple[int, int]) -> Crop | None:
    """Whole picture pixels covering the tile's view, so one cv2.resize of a crop draws
    it (2-3x cheaper than warpAffine; the position is exact to half a pixel)."""
    (lw, lh), (sx, sy), (x, y), (tw, th) = src, scale, offset, tile
    x0, x1 = max(0, math.floor(-x / sx)), min(lw, math.ceil((tw - x) / sx))
    y0, y1 = max(0, math.floor(-y / sy)), min(lh, math.ceil((th - y) / sy))
    if x1 <= x0 or y1 <= y0:
        return None
    size = (max(1, round(sx * (x1 - x0))), max(1, round(sy * (y1 - y0))))
    return Crop((x0, y0, x1, y1), size, (round(x + sx * x0), round(y + sy * y0)))


def paste(dst: np.ndarray, src: np.ndarray, crop: Crop, interpolation: int) -> None:
    x0, y0, x1, y1 = crop.box
    piece = cv2.resize(src[y0:y1, x0:x1], crop.size, interpolation=interpolation)
    th, tw = dst.shape[:2]
    ax, ay = crop.at
    ox, oy = max(0, -ax), max(0, -ay)
    tx, ty = max(0, ax), max(0, ay)
    w, h = min(crop.size[0] - ox, tw - tx), min(crop.size[1] - oy, th - ty)
    if w > 0 and h > 0:
        dst[ty:ty + h, tx:tx + w] = piece[oy:oy + h, ox:ox + w]


def fade_cut_edges(alpha: np.ndarray, scale: tuple[float, float], offset: tuple[float, float],
                   tile: tuple[int, int], fade: float) -> None:
    """Where a shrunk picture ends inside its tile, its person would be cut by a hard
    line (a bust floating in the room): fade the matte out toward that edge instead,
    over ``fade`` of the picture's height. In place."""
    if fade <= 0:
        return
    lh, lw = alpha.shape
    (sx, sy), (x, y), (tw, th) = scale, offset, tile
    n = max(2, int(round(fade * lh)))
    ramp = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)[1:]
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible start of the fade
    if y > 0.5:
        alpha[:n] *= ramp[:, None]
    if y + sy * lh < th - 0.5:
        alpha[-n:] *= ramp[::-1, None]
    if x > 0.5:
        alpha[:, :n] *= ramp[None, :]
    if x + sx * lw < tw - 0.5:
        alpha[:, -n:] *= ramp[None, ::-1]


def scale_rect(r: Rect, fx: float, fy: float) -> Rect:
    """``r`` on a canvas scaled by (fx, fy): its edges scaled and rounded, so rects that
    meet still meet and a gap keeps its share of the canvas."""
    x0, y0 = round(r.x * fx), round(r.y * fy)
    return Rect(x0, y0, round((r.x + r.w) * fx) - x0, round((r.y + r.h) * fy) - y0)


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
