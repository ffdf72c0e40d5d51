"""Hole masks for training and evaluation (True = missing pixel).

The shapes follow what the live canvas really hides: vertical gap stripes between feeds,
people (mediapipe masks from real clips), plus rectangles, brush strokes and free-form
blobs so the model does not learn only one shape. ``level`` (0..1) is the curriculum:
small holes early in training, more missing pixels as it proceeds.
"""
from __future__ import annotations

import cv2
import numpy as np


def gap_mask(h: int, w: int, width: int, centre: float = 0.5) -> np.ndarray:
    """A full-height stripe ``width`` pixels wide centred at ``centre`` (fraction of w)."""
    mask = np.zeros((h, w), bool)
    x0 = int(round(centre * w - width / 2))
    x0 = min(max(x0, 1), max(1, w - width - 1))
    mask[:, x0:x0 + width] = True
    return mask


def gap_stripe(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    """Random-width vertical gap; widths up to ~45 % of the crop when level reaches 1."""
    hi = max(6, int(w * (0.12 + 0.33 * level)))
    width = int(rng.integers(4, hi + 1))
    return gap_mask(h, w, width, float(rng.uniform(0.25, 0.75)))


def rectangles(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        rh = int(rng.integers(4, max(5, h * (0.2 + 0.5 * level))))
        rw = int(rng.integers(4, max(5, w * (0.15 + 0.35 * level))))
        y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        mask[y:y + rh, x:x + rw] = True
    return mask


def strokes(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    """Irregular brush strokes (random walks drawn with a thick round brush)."""
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        thick = int(rng.integers(3, max(4, int(min(h, w) * (0.06 + 0.14 * level)))))
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(2, 7))):
            angle += rng.normal(0, 0.8)
            step = rng.uniform(0.1, 0.35) * min(h, w)
            nx, ny = x + step * np.cos(angle), y + step * np.sin(angle)
            cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 1, thick)
            x, y = float(np.clip(nx, 0, w - 1)), float(np.clip(ny, 0, h - 1))
    return canvas.astype(bool)


def blobs(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    """Free-form blobs: thresholded smooth noise, the threshold setting the hole area."""
    noise = rng.standard_normal((max(2, h // 8), max(2, w // 8))).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = cv2.GaussianBlur(noise, (0, 0), max(1.0, min(h, w) / 24))
    area = rng.uniform(0.05, 0.12 + 0.28 * level)
    return noise > np.quantile(noise, 1.0 - area)


def person_hole(rng: np.random.Generator, h: int, w: int, level: float,
                bank: list[np.ndarray]) -> np.ndarray:
    """A real person mask from ``bank``, rescaled, shifted, dilated like the segmenter's."""
    src = bank[int(rng.integers(len(bank)))].astype(np.uint8)
    scale = rng.uniform(0.35, 0.55 + 0.45 * level) * h / src.shape[0]
    sw, sh = max(2, int(src.shape[1] * scale)), max(2, int(src.shape[0] * scale))
    src = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        src = src[:, ::-1]
    # Feet (or the bottom of a head-and-shoulders shot) run off the bottom edge.
    x = int(rng.integers(-sw // 2, max(-sw // 2 + 1, w - sw // 2)))
    y = h - sh + int(rng.integers(0, sh // 3 + 1))
    mask = np.zeros((h, w), np.uint8)
    ys, xs = max(0, y), max(0, x)
    ye, xe = min(h, y + sh), min(w, x + sw)
    if ye > ys and xe > xs:
        mask[ys:ye, xs:xe] = src[ys - y:ye - y, xs - x:xe - x]
    r = int(rng.integers(1, 5))
    return cv2.dilate(mask, np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)


def random_hole(rng: np.random.Generator, h: int, w: int, level: float,
                bank: list[np.ndarray] | None = None) -> np.ndarray:
    """One training mask; the gap stripe is the most frequent shape because it is the
    product's main case, and a person is often combined with it as on the live canvas."""
    kind = rng.random()
    if kind < 0.40:
        mask = gap_stripe(rng, h, w, level)
        if bank and rng.random() < 0.35:
            mask |= person_hole(rng, h, w, level, bank)
    elif kind < 0.55 and bank:
        mask = person_hole(rng, h, w, level, bank)
    elif kind < 0.70:
        mask = rectangles(rng, h, w, level)
    elif kind < 0.85:
        mask = strokes(rng, h, w, level)
    else:
        mask = blobs(rng, h, w, level)
    if mask.all():  # never hide everything: the fill needs something to grow from
        mask[:, : max(1, w // 8)] = False
    return mask
