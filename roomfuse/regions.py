"""Per-pixel work only where it is needed, with the same pixels as on the whole canvas.

A call's canvas is wide (four 720p seats in a row: 4032x720) and most passes over it
need only a part: a person's matte is non-zero on a third of it, the live grower writes
only the pixels nobody has seen, the room fill applies between the pictures. These
helpers find the boxes where the work is and run OpenCV's resampling on just those
boxes. Upsampling a box of a low-resolution image with one source cell of margin gives
exactly the pixels the whole-canvas resize gives there, when the scale is a whole
number (the box starts on a cell boundary, so every pixel samples the same source
positions with the same weights); otherwise the helpers fall back to the whole canvas.

Block means are taken as exact integer sums: OpenCV's area resize of an 8-bit image
rounds each mean to a whole level, but of the image times the block's pixel count
(16-bit) it returns the block's sum exactly, a fraction of the cost of converting the
canvas to float first.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .frames import Rect

Box = tuple[int, int, int, int]  # x0, y0, x1, y1: pixels x0 <= x < x1, y0 <= y < y1

BAND = 256  # width of the column bands that unknown pixels are boxed in


def box_slices(box: Box) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(y0, y1), slice(x0, x1)


def clip_rect(r: Rect, w: int, h: int) -> Box | None:
    x0, y0 = max(r.x, 0), max(r.y, 0)
    x1, y1 = min(r.x + r.w, w), min(r.y + r.h, h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def bounding_box(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> Box | None:
    """The box around the non-zero pixels of a uint8 mask (None: all zero)."""
    x, y, w, h = cv2.boundingRect(mask)
    if not w or not h:
        return None
    return x + offset[0], y + offset[1], x + w + offset[0], y + h + offset[1]


def mask_boxes(mask: np.ndarray, rects: Sequence[Rect]) -> list[Box]:
    """Boxes around the non-zero pixels of a uint8 mask, one per rect (the pictures on a
    canvas), or one around all of them when the rects do not hold every such pixel
    (rects overlapping mid-slide, a mask painted outside them)."""
    h, w = mask.shape
    boxes, inside = [], 0
    clipped = [b for b in (clip_rect(r, w, h) for r in rects) if b is not None]
    for b in clipped:
        part = mask[box_slices(b)]
        inside += cv2.countNonZero(part)
        found = bounding_box(part, (b[0], b[1]))
        if found is not None:
            boxes.append(found)
    if inside != cv2.countNonZero(mask) or overlapping(clipped):
        one = bounding_box(mask)
        return [] if one is None else [one]
    return boxes


def overlapping(boxes: Sequence[Box | None]) -> bool:
    """Whether any two of the boxes (None: no box) share a pixel."""
    boxes = [b for b in boxes if b is not None]
    return any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def band_boxes(mask: np.ndarray, band: int = BAND) -> list[Box]:
    """Boxes around the non-zero pixels of a uint8 mask in column bands ``band`` wide:
    tight around several separate holes in a wide canvas, without a search for them."""
    h, w = mask.shape
    boxes = []
    for x0 in range(0, w, band):
        found = bounding_box(mask[:, x0:x0 + band], (x0, 0))
        if found is not None:
            boxes.append(found)
    return boxes


def whole_scale(size: tuple[int, int], low: tuple[int, int]) -> int | None:
    """The scale from ``low`` (w, h) to ``size`` (w, h) if it is one whole number in
    both directions, else None."""
    (w, h), (lw, lh) = size, low
    if lw <= 0 or lh <= 0 or w % lw or h % lh or w // lw != h // lh:
        return None
    return w // lw


def snap(box: Box, scale: int, size: tuple[int, int]) -> Box:
    """``box`` grown outward to whole cells of ``scale`` pixels (within ``size``)."""
    x0, y0, x1, y1 = box
    w, h = size
    return (x0 // scale * scale, y0 // scale * scale,
            min(w, -(-x1 // scale) * scale), min(h, -(-y1 // scale) * scale))


def upsample_box(low: np.ndarray, scale: int, box: Box) -> np.ndarray:
    """``cv2.resize(low, (lw * scale, lh * scale), INTER_LINEAR)[box]``, computed on the
    box alone. ``box`` must lie on whole cells (``snap``)."""
    lh, lw = low.shape[:2]
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = x0 // scale, y0 // scale, x1 // scale, y1 // scale
    # One source cell of margin: the border cells then sample their true neighbours.
    mx0, my0, mx1, my1 = max(cx0 - 1, 0), max(cy0 - 1, 0), min(cx1 + 1, lw), min(cy1 + 1, lh)
    part = cv2.resize(low[my0:my1, mx0:mx1], ((mx1 - mx0) * scale, (my1 - my0) * scale),
                      interpolation=cv2.INTER_LINEAR)
    ox, oy = (cx0 - mx0) * scale, (cy0 - my0) * scale
    return part[oy:oy + (y1 - y0), ox:ox + (x1 - x0)]


def block_sums(image: np.ndarray, factor: int) -> np.ndarray:
    """Exact sums of ``factor`` x ``factor`` blocks of a uint8 image whose sides are
    multiples of ``factor`` (uint16 for blocks of up to 257 pixels)."""
    n = factor * factor
    h, w = image.shape[:2]
    scaled = np.multiply(image, n, dtype=np.uint16)
    return cv2.resize(scaled, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def block_counts(mask: np.ndarray, factor: int) -> np.ndarray:
    """Exact counts of set pixels in ``factor`` x ``factor`` blocks of a 0/1 uint8 mask
    (uint8, for blocks of up to 255 pixels)."""
    n = factor * factor
    h, w = mask.shape
    return cv2.resize(np.multiply(mask, n, dtype=np.uint8), (w // factor, h // factor),
                      interpolation=cv2.INTER_AREA)


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized down to ``size`` without aliasing, fast: box averages by whole
    factors (OpenCV's fast path) to within 2x of the size, then bilinear. A direct
    INTER_AREA by 2.5 (640 -> 256) takes 1.1 ms a frame; this 0.2 ms."""
    h, w = image.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2:
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
    if image.shape[1::-1] == tuple(size):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def halve(image: np.ndarray, factor: int) -> np.ndarray | None:
    """The ``factor`` x ``factor`` block means of a uint8 image as successive 2x area
    averages (OpenCV's vectorised path for halving): 0.75 against 2.7 ms for 4032x720 by
    8, within 2 levels of one area resize (0.2 on average: each halving rounds). None
    unless ``factor`` is a power of two dividing both sides."""
    h, w = image.shape[:2]
    if factor < 2 or factor & (factor - 1) or h % factor or w % factor:
        return None
    while factor > 1:
        h, w, factor = h // 2, w // 2, factor // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


def cell_boxes(mask: np.ndarray, cell: int = 32) -> list[Box]:
    """Boxes of whole ``cell`` x ``cell`` cells (cut to the mask) covering the non-zero
    pixels of a mask: the runs of such cells along each row of cells, a run that repeats
    on the rows below merged into one box. Tight around thin shapes that connect across a
    canvas (the gaps between pictures joined by the margins above them), where one box
    around each connected part would hold most of the canvas."""
    h, w = mask.shape
    ch, cw = -(-h // cell), -(-w // cell)
    m = np.zeros((ch * cell, cw * cell), np.uint8)
    m[:h, :w] = mask.view(np.uint8) if mask.dtype == bool else (mask > 0)
    cells = m.reshape(ch, cell, cw, cell).max(axis=(1, 3)) > 0
    boxes: list[Box] = []
    open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) in cells -> first cell row
    for cy in range(ch + 1):
        runs = set()
        if cy < ch:
            on = np.flatnonzero(cells[cy])
            if on.size:
                breaks = np.flatnonzero(np.diff(on) > 1)
                starts = np.concatenate(([on[0]], on[breaks + 1]))
                ends = np.concatenate((on[breaks], [on[-1]])) + 1
                runs = set(zip(starts.tolist(), ends.tolist()))
        for run in [r for r in open_runs if r not in runs]:
            y0 = open_runs.pop(run)
            boxes.append((run[0] * cell, y0 * cell, min(run[1] * cell, w), min(cy * cell, h)))
        for run in runs:
            open_runs.setdefault(run, cy)
    return boxes
