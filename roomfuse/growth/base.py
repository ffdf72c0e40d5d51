"""The grower interface: fill every unknown pixel of a canvas, leave known pixels alone.

A grower sees only an RGB image and a mask of the pixels that were really seen. It
returns a new image that equals the input wherever the mask is set. Growers that keep
state between frames (the learned growth model) reset it through ``reset()`` when the
layout changes; stateless ones ignore it.

The helpers here are shared by every grower that works at reduced resolution: average
the known pixels down, fill at low resolution, and bring the fill back up into the
unknown pixels only.
"""
from __future__ import annotations

import abc

import cv2
import numpy as np

from ..regions import band_boxes, block_counts, box_slices, halve, snap, upsample_box, whole_scale


class Grower(abc.ABC):
    """Fills unknown pixels. Subclasses set ``name`` and implement ``fill``."""

    name: str = "grower"

    @abc.abstractmethod
    def fill(self, image: np.ndarray, known: np.ndarray,
             covered: np.ndarray | None = None) -> np.ndarray:
        """image: HxWx3 uint8 RGB; known: HxW bool. Returns HxWx3 uint8 with every
        unknown pixel filled and every known pixel equal to ``image``.

        ``covered`` (optional HxW bool) marks unknown pixels that nobody will see: the
        pipeline composites an opaque person over them. A grower may spend less care
        there (the growth model does not update those cells); the output is defined
        everywhere either way."""

    def reset(self) -> None:
        """Forget any state carried from earlier frames."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_inputs(image: np.ndarray, known: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    if known.shape != image.shape[:2]:
        raise ValueError(f"known mask shape {known.shape} does not match image {image.shape[:2]}")


# Upsample box by box only while the boxes cover less than this share of the canvas;
# beyond it one resize of the whole canvas is cheaper than the boxes and their masks.
BOXED_SHARE = 0.5


def downsample_known(image: np.ndarray, known: np.ndarray, factor: int,
                     min_cover: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Area-average only the known pixels into cells of ``factor`` x ``factor``.

    Returns (low float32 HxWx3 in 0..255, low_known bool). A cell counts as known when at
    least ``min_cover`` of its pixels were known; its colour is the mean of those pixels
    only, so unknown (often black) pixels never bleed into the border of the fill.
    """
    h, w = known.shape
    lh, lw = max(1, round(h / factor)), max(1, round(w / factor))
    k8 = known.view(np.uint8) if known.dtype == bool else (known > 0).astype(np.uint8)
    # Zero the unknown pixels (cv2.copyTo is much faster than a float multiply) and
    # average the colours in uint8, 4x cheaper than in float: the rounding costs at most
    # half a level, one level after the division below in a half-known cell.
    masked = cv2.copyTo(image, k8, np.zeros_like(image))
    whole = factor * factor <= 255 and (lw, lh) == (w // factor, h // factor)
    num = halve(masked, factor) if whole else None
    if num is None:
        num = cv2.resize(masked, (lw, lh), interpolation=cv2.INTER_AREA).astype(np.float32)
        den = cv2.resize(k8.astype(np.float32), (lw, lh), interpolation=cv2.INTER_AREA)
    else:
        # Whole blocks (a call's canvas): halvings for the colours, exact counts for the
        # share of each cell that is known.
        num = num.astype(np.float32)
        den = block_counts(k8, factor).astype(np.float32) * np.float32(1.0 / (factor * factor))
    low = num / np.maximum(den, 1e-6)[..., None]
    return low, den >= min_cover


def to_uint8(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.uint8 else np.clip(x + 0.5, 0, 255).astype(np.uint8)


def paste_unknown(image: np.ndarray, known: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """A new uint8 image: ``fill`` where unknown, ``image`` where known."""
    out = to_uint8(fill)
    if out is fill:
        out = fill.copy()
    k8 = known.view(np.uint8) if known.dtype == bool else (known > 0).astype(np.uint8)
    cv2.copyTo(image, k8, out)  # masked copy; far cheaper than np.copyto(where=...)
    return out


def upsample_into(image: np.ndarray, known: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Bring a low-resolution fill up to full size and write it into unknown pixels only.

    Where the unknown pixels lie in a small part of the canvas (on a call's wide canvas
    the room fill leaves the live fill only what the people hide), only the boxes
    around them are upsampled (``regions``: the same pixels as the whole resize)."""
    h, w = known.shape
    # Round at low resolution: resizing uint8 is several times cheaper than float.
    low8 = to_uint8(low)
    k8 = known.view(np.uint8) if known.dtype == bool else (known > 0).astype(np.uint8)
    scale = whole_scale((w, h), (low8.shape[1], low8.shape[0]))
    if scale is not None:
        unknown = cv2.compare(k8, 0, cv2.CMP_EQ)
        boxes = [snap(b, scale, (w, h)) for b in band_boxes(unknown)]
        if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes) < BOXED_SHARE * w * h:
            out = image.copy()
            for box in boxes:
                ys, xs = box_slices(box)
                cv2.copyTo(upsample_box(low8, scale, box), unknown[ys, xs], out[ys, xs])
            return out
    up = cv2.resize(low8, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(image, k8, up)  # a new array of our own: no copy needed
    return up
