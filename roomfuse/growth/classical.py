"""Classical fills: the pipeline's baseline grower and the peers the growth model must beat.

- ``TeleaGrower``: OpenCV's fast marching inpainting (Telea) or Navier-Stokes, at reduced
  resolution (the pipeline baseline, about 1/16 of the pixels to march over) or at full
  resolution (the quality reference, far too slow for live video on a CPU).
- ``BlendGrower``: row-wise linear interpolation between the nearest known pixels on the
  left and on the right; for a vertical gap between two feeds this is the obvious
  afternoon solution, and a strong one.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import Grower, check_inputs, downsample_known, paste_unknown, upsample_into


class TeleaGrower(Grower):
    """cv2.inpaint at 1/``scale`` resolution, upsampled, pasted into unknown pixels."""

    def __init__(self, scale: int = 4, radius: int = 3, method: str = "telea"):
        if method not in ("telea", "ns"):
            raise ValueError(f"inpaint method must be 'telea' or 'ns', got {method!r}")
        self.scale = int(scale)
        self.radius = int(radius)
        self.flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        self.name = method if self.scale == 1 else f"{method}/{self.scale}"

    def fill(self, image: np.ndarray, known: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
        check_inputs(image, known)
        if known.all():
            return image.copy()
        if self.scale == 1:
            hole = (~known).astype(np.uint8)
            return paste_unknown(image, known, cv2.inpaint(image, hole, self.radius, self.flag))
        low, low_known = downsample_known(image, known, self.scale)
        if not low_known.any():
            return paste_unknown(image, known, np.full_like(image, 127))
        low8 = np.clip(low + 0.5, 0, 255).astype(np.uint8)
        filled = cv2.inpaint(low8, (~low_known).astype(np.uint8), self.radius, self.flag)
        # Keep the exact (unrounded) known cells so the upsampled border matches the feed.
        filled = np.where(low_known[..., None], low, filled.astype(np.float32))
        return upsample_into(image, known, filled)


def line_blend(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Float32 fill: each unknown pixel interpolates linearly, along its row, between the
    nearest known pixels to its left and right (the one side if only one exists). Rows
    with no known pixel at all are then filled the same way along columns."""
    out = _blend_rows(image.astype(np.float32), known)
    row_has = known.any(axis=1)
    if row_has.all():
        return out
    if not row_has.any():
        return np.full(image.shape, 127.0, np.float32)
    cols = _blend_rows(out.transpose(1, 0, 2), np.broadcast_to(row_has[None, :], known.T.shape))
    return cols.transpose(1, 0, 2)


def _blend_rows(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    h, w = known.shape
    idx = np.arange(w)
    left = np.maximum.accumulate(np.where(known, idx, -1), axis=1)
    right = np.minimum.accumulate(np.where(known, idx, w)[:, ::-1], axis=1)[:, ::-1]
    has_l, has_r = left >= 0, right < w
    rows = np.arange(h)[:, None]
    cl = img[rows, np.clip(left, 0, w - 1)]
    cr = img[rows, np.clip(right, 0, w - 1)]
    span = np.maximum(right - left, 1)
    t = np.where(has_l & has_r, (idx[None, :] - left) / span, np.where(has_l, 0.0, 1.0))
    t = t.astype(np.float32)[..., None]
    out = cl * (1.0 - t) + cr * t
    return np.where(known[..., None], img, out)


class BlendGrower(Grower):
    """Row-wise linear blend across each run of unknown pixels (at 1/``scale``)."""

    def __init__(self, scale: int = 1):
        self.scale = int(scale)
        self.name = "blend" if self.scale == 1 else f"blend/{self.scale}"

    def fill(self, image: np.ndarray, known: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
        check_inputs(image, known)
        if known.all():
            return image.copy()
        if self.scale == 1:
            return paste_unknown(image, known, line_blend(image, known))
        low, low_known = downsample_known(image, known, self.scale)
        return upsample_into(image, known, line_blend(low, low_known))
