"""People layered back over the grown background, and the room's colours evened out.

Each camera has its own white balance and exposure; side by side, one room looks blue and
the next one orange. ``Harmonizer`` measures each feed's background colour, moves each
feed part of the way toward its neighbours, and spreads those gains over the canvas as a
smooth field, so there is no step in colour at a tile border or across the grown gap.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import cv2
import numpy as np

from .config import CompositeConfig
from .frames import Canvas, Rect

FIELD_SCALE = 16  # the gain field is smooth: compute it at 1/16 and resize


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


def _neighbours(tiles: Sequence[Rect], i: int, reach: float) -> list[int]:
    a = tiles[i]
    out = []
    for j, b in enumerate(tiles):
        dx = max(b.x - (a.x + a.w), a.x - (b.x + b.w), 0)
        dy = max(b.y - (a.y + a.h), a.y - (b.y + b.h), 0)
        if max(dx, dy) <= reach:
            out.append(j)  # includes i itself
    return out


class Harmonizer:
    """Per-feed colour gains toward the neighbours, smoothed over time."""

    def __init__(self, cfg: CompositeConfig = CompositeConfig()):
        self.cfg = cfg
        self.gains: np.ndarray | None = None  # n x 3

    def measure(self, canvas: Canvas) -> np.ndarray:
        """Mean background colour of each tile (n x 3), from every 4th pixel."""
        means = []
        for r in canvas.tiles:
            ys, xs = r.slices
            img = canvas.background[ys, xs][::4, ::4].reshape(-1, 3)
            k = canvas.known[ys, xs][::4, ::4].reshape(-1)
            sel = img[k] if k.sum() > 16 else img
            means.append(sel.mean(axis=0) if len(sel) else np.full(3, 128.0))
        return np.maximum(np.array(means, np.float32), 1.0)

    def update(self, canvas: Canvas) -> np.ndarray:
        n = len(canvas.tiles)
        if self.gains is None or len(self.gains) != n:
            self.gains = np.ones((n, 3), np.float32)
        if n < 2 or self.cfg.harmonize <= 0:
            self.gains[:] = 1.0
            return self.gains
        means = self.measure(canvas)
        gap = max(_tile_spacing(canvas.tiles), 1)
        target = np.ones((n, 3), np.float32)
        for i in range(n):
            nb = _neighbours(canvas.tiles, i, reach=1.5 * gap + 2)
            # Geometric mean: exposure differences are ratios.
            goal = np.exp(np.log(means[nb]).mean(axis=0))
            target[i] = (goal / means[i]) ** self.cfg.harmonize
        lo, hi = 1.0 / self.cfg.max_gain, self.cfg.max_gain
        target = np.clip(target, lo, hi)
        k = 1.0 / max(1, self.cfg.smooth_frames)
        self.gains += k * (target - self.gains)
        return self.gains

    def field(self, canvas: Canvas) -> np.ndarray | None:
        """HxWx3 float32 gain field, or None when every gain is ~1 (nothing to do)."""
        gains = self.update(canvas)
        if np.abs(gains - 1.0).max() < 0.004:
            return None
        w, h = canvas.size
        lw, lh = max(1, w // FIELD_SCALE), max(1, h // FIELD_SCALE)
        num = np.zeros((lh, lw, 3), np.float32)
        den = np.zeros((lh, lw), np.float32)
        sx, sy = lw / w, lh / h
        for g, r in zip(gains, canvas.tiles):
            x0, x1 = int(r.x * sx), max(int(r.x * sx) + 1, int((r.x + r.w) * sx))
            y0, y1 = int(r.y * sy), max(int(r.y * sy) + 1, int((r.y + r.h) * sy))
            num[y0:y1, x0:x1] += g
            den[y0:y1, x0:x1] += 1.0
        # Normalised blur: inside tiles the gain stays its own, across gaps it ramps.
        sigma = max(1.0, _tile_spacing(canvas.tiles) * sx)
        num = cv2.GaussianBlur(num, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        den = cv2.GaussianBlur(den, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        low = np.where(den[..., None] > 1e-4, num / np.maximum(den, 1e-4)[..., None], 1.0)
        return cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    def reset(self) -> None:
        self.gains = None


def _tile_spacing(tiles: Sequence[Rect]) -> int:
    """The gap between tiles (smallest horizontal spacing), or a fallback for one tile."""
    xs = sorted(tiles, key=lambda r: (r.y, r.x))
    gaps = [b.x - (a.x + a.w) for a, b in zip(xs, xs[1:]) if b.y == a.y and b.x > a.x]
    return min(gaps) if gaps else 32


class Compositor:
    """The composite stage: blend people over the grown room, then harmonise colours."""

    def __init__(self, cfg: CompositeConfig = CompositeConfig()):
        self.harmonizer = Harmonizer(cfg)

    def __call__(self, canvas: Canvas, grown: np.ndarray) -> np.ndarray:
        out = blend_people(canvas, grown)
        field = self.harmonizer.field(canvas)
        if field is not None:
            out = cv2.multiply(out, field, dtype=cv2.CV_8U)
        return out

    def reset(self) -> None:
        self.harmonizer.reset()
