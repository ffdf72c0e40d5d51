"""People layered back over the grown background, and the room's colours evened out.

Each camera has its own white balance and exposure; side by side, one room looks blue and
the next one orange. ``Harmonizer`` measures each feed's background colour, moves each
feed part of the way toward its neighbours, pulls the two sides of every join toward
each other (fading out toward the middle of each tile), and spreads those gains over the
canvas as a smooth field, so there is no step in colour at a tile border or across the
grown gap. ``join_report`` measures how well the rooms meet.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Hashable, Sequence

import cv2
import numpy as np

from .config import CompositeConfig
from .frames import Canvas, Rect
from .regions import Box, mask_boxes, upsample_box, whole_scale
from .seats import SIDES, adjacency

FIELD_SCALE = 8  # the gain field is smooth: compute it at 1/8 and resize


def blend_people(canvas: Canvas, grown: np.ndarray) -> np.ndarray:
    """alpha * camera pixels + (1 - alpha) * grown background, with soft matte edges."""
    a = canvas.alpha
    return cv2.blendLinear(canvas.image, grown, a, 1.0 - a)


def fade_people(canvas: Canvas, opacity: Sequence[float]) -> Canvas:
    """The canvas with each feed's people matte scaled by its opacity (1 = unchanged).

    A participant whose camera stopped fades into the room behind them (the remembered
    or grown background) before the feed is removed, instead of vanishing in one frame.
    """
    if len(opacity) != len(canvas.tiles):
        raise ValueError(f"one opacity per feed is needed, got {len(opacity)} for {len(canvas.tiles)}")
    if all(o >= 1.0 for o in opacity):
        return canvas
    alpha = canvas.alpha.copy()
    for r, o in zip(canvas.tiles, opacity):
        if o < 1.0:
            # Mid-slide a tile can hang off the canvas: clip before slicing.
            ys = slice(max(r.y, 0), max(r.y + r.h, 0))
            xs = slice(max(r.x, 0), max(r.x + r.w, 0))
            alpha[ys, xs] *= max(0.0, float(o))
    return replace(canvas, alpha=alpha)


def joins(tiles: Sequence[Rect]) -> list[tuple[int, str, int, str]]:
    """Where rooms meet: (feed a, its side, feed b, its side) for each pair of tiles
    side by side (a's right meets b's left) or one above the other."""
    horiz, vert = adjacency(tiles)
    return [(a, "right", b, "left") for a, b in horiz] + [(a, "bottom", b, "top") for a, b in vert]


def side_means(canvas: Canvas, stride: int = 4) -> list[dict[str, np.ndarray]]:
    """Per tile: the mean background colour of the whole tile ("all") and of the strip
    next to each side ("left", ...): the outer quarter of what the tile really shows,
    which for a picture shrunk by framing is the outer quarter of the picture. "extent"
    is where the seen room lies in the tile: (x0, y0, x1, y1), canvas pixels."""
    out = []
    H, W = canvas.known.shape
    for r in canvas.tiles:
        ys = slice(max(r.y, 0), min(max(r.y + r.h, 0), H), stride)
        xs = slice(max(r.x, 0), min(max(r.x + r.w, 0), W), stride)
        # Every stride-th pixel, as contiguous arrays: masked means in OpenCV are many
        # times cheaper than boolean indexing in numpy.
        img = np.ascontiguousarray(canvas.background[ys, xs])
        k = (canvas.known[ys, xs] & (canvas.alpha[ys, xs] < 0.2)).view(np.uint8)
        means = {}
        if not k.size or cv2.countNonZero(k) <= 16:
            flat = _mean(img) if img.size else np.full(3, 128.0, np.float32)
            out.append({**{s: flat for s in ("all", *SIDES)},
                        "extent": np.array([r.x, r.y, r.x + r.w, r.y + r.h], np.float32)})
            continue
        means["all"] = _mean(img, k)
        x0, y0, bw, bh = cv2.boundingRect(k)
        x1, y1 = x0 + bw, y0 + bh
        sx, sy = max(1, bw // 4), max(1, bh // 4)
        strips = {"left": (slice(y0, y1), slice(x0, x0 + sx)), "right": (slice(y0, y1), slice(x1 - sx, x1)),
                  "top": (slice(y0, y0 + sy), slice(x0, x1)), "bottom": (slice(y1 - sy, y1), slice(x0, x1))}
        for side, (yy, xx) in strips.items():
            ks = k[yy, xx]
            means[side] = np.maximum(_mean(img[yy, xx], ks) if cv2.countNonZero(ks) >= 4 else means["all"], 1.0)
        means["all"] = np.maximum(means["all"], 1.0)
        means["extent"] = np.array([xs.start + x0 * stride, ys.start + y0 * stride,
                                    xs.start + x1 * stride, ys.start + y1 * stride], np.float32)
        out.append(means)
    return out


def _mean(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean colour of an HxWx3 uint8 image (where ``mask``), float32."""
    return np.array(cv2.mean(img, mask=mask)[:3], np.float32)


def _falloff(n: int, start: float, end: float) -> np.ndarray:
    """Weight of a side's gain across ``n`` cells: 1 up to ``start``, easing to 0 at
    ``end`` (cells from that side), flat at both ends so the field has no crease."""
    u = (np.arange(n, dtype=np.float32) + 0.5 - start) / max(end - start, 1e-3)
    u = np.clip(u, 0.0, 1.0)
    return 1.0 - u * u * (3 - 2 * u)


def _balance(diffs: list[tuple[int, int, np.ndarray]], n: int, stiffness: float) -> np.ndarray:
    """Log gains (n x 3) that make the joins meet as well as they can with one gain per
    tile, kept near 1 by ``stiffness``: least squares over every join at once, so a room
    between a dark and a bright neighbour settles between them instead of following
    one. ``diffs``: (a, b, log colour of a's side - log colour of b's side)."""
    A = stiffness * np.eye(n)
    rhs = np.zeros((n, 3))
    for a, b, d in diffs:
        # (d + G_a - G_b)^2 for each join
        A[a, a] += 1
        A[b, b] += 1
        A[a, b] -= 1
        A[b, a] -= 1
        rhs[a] -= d
        rhs[b] += d
    return np.linalg.solve(A, rhs).astype(np.float32)


class Harmonizer:
    """Per-feed colour gains toward the neighbours, and at each join an extra gain that
    makes the two rooms meet there, both smoothed over time.

    The state is keyed by feed (``Canvas.keys``), not by tile position: a participant
    who takes a departed one's seat starts from no correction instead of inheriting it,
    and a feed keeps its correction when the seats are reordered. The gains are applied
    to the whole tile, people included, so each person keeps their look relative to
    their own room."""

    def __init__(self, cfg: CompositeConfig = CompositeConfig()):
        self.cfg = cfg
        self.gains: dict[Hashable, np.ndarray] = {}  # feed -> 3 gains for the whole tile
        self.sides: dict[tuple[Hashable, str], np.ndarray] = {}  # (feed, side) -> 3 gains at that side
        self._extents: list[np.ndarray] = []  # this frame's seen room per tile (for the field)

    @staticmethod
    def keys_of(canvas: Canvas) -> tuple:
        # A canvas built without keys (tests, tools) falls back to positions.
        return canvas.keys if len(canvas.keys) == len(canvas.tiles) else tuple(range(len(canvas.tiles)))

    def measure(self, canvas: Canvas) -> np.ndarray:
        """Mean background colour of each tile (n x 3), from every 4th pixel."""
        return np.array([m["all"] for m in side_means(canvas)], np.float32)

    def update(self, canvas: Canvas, frames: int = 1) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray]]:
        """This frame's gains: per tile (n x 3), and per (tile, side) at a join, moved
        toward their targets as ``frames`` frames of smoothing would."""
        keys = self.keys_of(canvas)
        for k in set(self.gains) - set(keys):
            del self.gains[k]
        for ks in [ks for ks in self.sides if ks[0] not in keys]:
            del self.sides[ks]
        n = len(keys)
        ones = np.ones(3, np.float32)
        target = np.ones((n, 3), np.float32)
        side_target: dict[tuple[int, str], np.ndarray] = {}
        self._extents = []
        if n >= 2 and self.cfg.harmonize > 0:
            means = side_means(canvas)
            self._extents = [m["extent"] for m in means]
            found = joins(canvas.tiles)
            diffs = [(a, b, np.log(means[a][sa]) - np.log(means[b][sb])) for a, sa, b, sb in found]
            # harmonize 0.5 leaves two rooms half their difference in ratio terms, 1 none.
            stiffness = max(1e-3, 2.0 * (1.0 / self.cfg.harmonize - 1.0))
            target = np.clip(np.exp(_balance(diffs, n, stiffness)), 1.0 / self.cfg.max_gain, self.cfg.max_gain)
            lo, hi = 1.0 / self.cfg.max_join_gain, self.cfg.max_join_gain
            for a, sa, b, sb in found:
                # What each side will look like after its tile's gain, and where the two
                # meet: half-way, in ratio terms.
                ma, mb = means[a][sa] * target[a], means[b][sb] * target[b]
                meet = np.sqrt(ma * mb)
                side_target[(a, sa)] = np.clip((meet / ma) ** self.cfg.join_match, lo, hi)
                side_target[(b, sb)] = np.clip((meet / mb) ** self.cfg.join_match, lo, hi)
        rate = 1.0 - (1.0 - 1.0 / max(1, self.cfg.smooth_frames)) ** max(1, frames)
        gains = np.empty((n, 3), np.float32)
        sides: dict[tuple[int, str], np.ndarray] = {}
        for i, k in enumerate(keys):
            g = self.gains.get(k, ones)
            gains[i] = self.gains[k] = g + rate * (target[i] - g)
            for side in SIDES:
                e = self.sides.get((k, side), ones)
                e = e + rate * (side_target.get((i, side), ones) - e)
                if np.abs(e - 1.0).max() < 1e-4 and (i, side) not in side_target:
                    self.sides.pop((k, side), None)
                    continue
                self.sides[(k, side)] = sides[(i, side)] = e
        return gains, sides

    def field(self, canvas: Canvas) -> np.ndarray | None:
        """HxWx3 float32 gain field, or None when every gain is ~1 (nothing to do)."""
        low = self.low_field(canvas)
        return None if low is None else cv2.resize(low, canvas.size, interpolation=cv2.INTER_LINEAR)

    def low_field(self, canvas: Canvas, frames: int = 1) -> np.ndarray | None:
        """The gain field at 1/``FIELD_SCALE`` (float32), which ``field`` resizes to the
        canvas; None when every gain is ~1. Advances the gains by ``frames`` frames."""
        gains, sides = self.update(canvas, frames)
        if np.abs(gains - 1.0).max() < 0.004 and all(np.abs(e - 1.0).max() < 0.004 for e in sides.values()):
            return None
        w, h = canvas.size
        lw, lh = max(1, w // FIELD_SCALE), max(1, h // FIELD_SCALE)
        num = np.zeros((lh, lw, 3), np.float32)
        den = np.zeros((lh, lw), np.float32)
        sx, sy = lw / w, lh / h
        for i, (g, r) in enumerate(zip(gains, canvas.tiles)):
            x0 = min(max(int(r.x * sx), 0), lw - 1)
            x1 = min(max(x0 + 1, int((r.x + r.w) * sx)), lw)
            y0 = min(max(int(r.y * sy), 0), lh - 1)
            y1 = min(max(y0 + 1, int((r.y + r.h) * sy)), lh)
            # In log terms: the tile's gain, plus each join's gain fading in toward its side.
            lg = np.broadcast_to(np.log(g), (y1 - y0, x1 - x0, 3)).copy()
            # Full strength from the side to just inside the seen room (a picture shrunk
            # by framing sits inside its tile; around it is grown room), easing out by
            # the middle of the seen room, where the person stands.
            ex = self._extents[i] if i < len(self._extents) else np.array([r.x, r.y, r.x + r.w, r.y + r.h])
            kx0, ky0, kx1, ky1 = ex[0] * sx - x0, ex[1] * sy - y0, ex[2] * sx - x0, ex[3] * sy - y0
            for side, e in ((s, sides.get((i, s))) for s in SIDES):
                if e is None:
                    continue
                if side in ("left", "right"):
                    n, near, far = x1 - x0, (kx0 if side == "left" else (x1 - x0) - kx1), (kx1 - kx0)
                else:
                    n, near, far = y1 - y0, (ky0 if side == "top" else (y1 - y0) - ky1), (ky1 - ky0)
                f = _falloff(n, near + 0.15 * far, near + 0.5 * far)
                if side in ("right", "bottom"):
                    f = f[::-1]
                if side in ("left", "right"):
                    lg += f[None, :, None] * np.log(e)
                else:
                    lg += f[:, None, None] * np.log(e)
            num[y0:y1, x0:x1] += lg
            den[y0:y1, x0:x1] += 1.0
        # Inside tiles the field is already smooth and is kept as it is (a blur would
        # wash the join gains out of the strips they were measured on); across the
        # gaps a normalised blur ramps from one tile's edge to the next.
        inside = den > 0
        sigma = max(1.0, 0.5 * _tile_spacing(canvas.tiles) * sx)
        bnum = cv2.GaussianBlur(num, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        bden = cv2.GaussianBlur(den, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        across = np.where(bden[..., None] > 1e-4, bnum / np.maximum(bden, 1e-4)[..., None], 0.0)
        lg = np.where(inside[..., None], num / np.maximum(den, 1.0)[..., None], across).astype(np.float32)
        return np.exp(lg)

    def reset(self) -> None:
        self.gains.clear()
        self.sides.clear()


def _tile_spacing(tiles: Sequence[Rect]) -> int:
    """The gap between tiles (smallest horizontal spacing), or a fallback for one tile."""
    xs = sorted(tiles, key=lambda r: (r.y, r.x))
    gaps = [b.x - (a.x + a.w) for a, b in zip(xs, xs[1:]) if b.y == a.y and b.x > a.x]
    return min(gaps) if gaps else 32


def join_report(image: np.ndarray, canvas: Canvas) -> list[dict[str, float]]:
    """How well neighbouring rooms meet in a composite: for each join, the difference
    of mean luminance (BT.601 Y, 0-255) and of white balance (distance between the two
    sides' log R/G, log B/G) of the real background next to it (the strips that
    ``side_means`` uses, read from ``image``). The measure for the harmoniser."""
    shown = replace(canvas, background=image)
    means = side_means(shown, stride=2)
    y = np.array([0.299, 0.587, 0.114], np.float32)
    out = []
    for a, sa, b, sb in joins(canvas.tiles):
        ca, cb = means[a][sa], means[b][sb]
        wb = np.log([ca[0] / ca[1], ca[2] / ca[1]]) - np.log([cb[0] / cb[1], cb[2] / cb[1]])
        out.append({"feeds": (a, b), "luminance": float(abs(ca @ y - cb @ y)),
                    "white_balance": float(np.linalg.norm(wb))})
    return out


class Compositor:
    """The composite stage: blend people over the grown room, then harmonise colours.

    ``gains(canvas)`` (the harmoniser's field at low resolution; it needs only the
    canvas, so the pipeline runs it beside the grower) and ``compose`` are the two
    halves of ``__call__``. ``pool`` (optional, an executor): the canvas is composed in
    two halves at once. The field is worked out every ``CompositeConfig.gain_every``
    frames (the gains follow the rooms' light over half a second: a frame's step is a
    fifteenth of the way), and kept between while the tiles stay."""

    def __init__(self, cfg: CompositeConfig = CompositeConfig(), pool=None):
        self.harmonizer = Harmonizer(cfg)
        self.pool = pool
        self.every = max(1, cfg.gain_every)
        self._held: tuple | None = None  # (tiles and keys, field) last worked out
        self._since = 0

    def __call__(self, canvas: Canvas, grown: np.ndarray) -> np.ndarray:
        return self.compose(canvas, grown, self.gains(canvas))

    def gains(self, canvas: Canvas) -> np.ndarray | None:
        layout = (canvas.size, tuple(canvas.tiles), tuple(canvas.keys))
        self._since += 1
        if self._held is not None and self._held[0] == layout and self._since < self.every:
            return self._held[1]
        field = self.harmonizer.low_field(canvas, frames=self._since if self._held is not None else 1)
        self._held, self._since = (layout, field), 0
        return field

    def compose(self, canvas: Canvas, grown: np.ndarray, low_field: np.ndarray | None) -> np.ndarray:
        return compose(canvas, grown, low_field, self.pool)

    def reset(self) -> None:
        self.harmonizer.reset()
        self._held, self._since = None, 0


# Below this a person's alpha changes no 8-bit pixel of the blend (255 * eps < 0.5).
ALPHA_EPS = 0.49 / 255
STRIP = 32  # rows composed at a time: the strip's gain field stays in the cache


def people_boxes(canvas: Canvas) -> list[Box]:
    """Boxes around every pixel where a person's matte shows (alpha above ``ALPHA_EPS``)."""
    shows = cv2.compare(canvas.alpha, ALPHA_EPS, cv2.CMP_GT)
    return mask_boxes(shows, canvas.shown)


def compose(canvas: Canvas, grown: np.ndarray, low_field: np.ndarray | None, pool=None) -> np.ndarray:
    """``blend_people`` then the gain field ``low_field`` resized to the canvas, in one
    pass of strips: per strip the grown room, the people blended in their boxes only
    (elsewhere the blend is the grown room to the last bit), the field's rows resized
    and multiplied in place (a field whose rows are all the same, as in a row of
    pictures, is resized once: one row). The same pixels as the two passes over the
    whole canvas, to within one level where the field is resized as one row, at half
    the memory traffic; with ``pool``, the two halves of the canvas at once."""
    h, w = canvas.known.shape
    out = np.empty_like(grown)
    boxes = people_boxes(canvas)
    scale = None if low_field is None else whole_scale((w, h), low_field.shape[1::-1])
    if low_field is not None and scale is None:
        # A canvas that is not a whole number of field cells: resize the field whole.
        out = blend_people(canvas, grown)
        return cv2.multiply(out, cv2.resize(low_field, (w, h), interpolation=cv2.INTER_LINEAR),
                            dtype=cv2.CV_8U)
    step = STRIP if scale is None else max(STRIP // scale, 1) * scale
    rows = None if low_field is None else gain_rows(low_field, w, step)

    def run(y0: int, y1: int) -> None:
        for y in range(y0, y1, step):
            ye = min(y + step, y1)
            o = out[y:ye]
            np.copyto(o, grown[y:ye])
            for bx0, by0, bx1, by1 in boxes:
                t0, t1 = max(by0, y), min(by1, ye)
                if t0 >= t1:
                    continue
                a = canvas.alpha[t0:t1, bx0:bx1]
                cv2.blendLinear(canvas.image[t0:t1, bx0:bx1], grown[t0:t1, bx0:bx1], a, 1.0 - a,
                                dst=out[t0:t1, bx0:bx1])
            if low_field is not None:
                gain = rows[:ye - y] if rows is not None else upsample_box(low_field, scale, (0, y, w, ye))
                cv2.multiply(o, gain, dst=o, dtype=cv2.CV_8U)

    half = (h // 2) // step * step
    if pool is None or half == 0:
        run(0, h)
    else:
        top = pool.submit(run, 0, half)
        run(half, h)
        top.result()
    return out


def gain_rows(low_field: np.ndarray, width: int, rows: int) -> np.ndarray | None:
    """When every row of the low-resolution field is the same (pictures of one height in
    a row: the gains change only across), ``rows`` rows of it at full width, to multiply
    strip after strip without resizing the field for each; else None."""
    if not (low_field == low_field[:1]).all():
        return None
    row = cv2.resize(low_field[:1], (width, 1), interpolation=cv2.INTER_LINEAR)
    return np.repeat(row, rows, axis=0)
