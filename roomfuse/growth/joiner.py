"""The growth model's full still-image fill: structure first, then texture.

The two channels of the design this project grew from. The growth rule and its network
(``nca_grower``) grow the structure across a hole at 1/4 resolution: the shading, the
lines and edges that cross it, one smooth band. ``texture.synthesize`` then puts the
room's own pixels there, chosen to follow that structure, each room filling from its own
pixels so two different rooms meet along a line instead of blending into a double
exposure.

Too slow for every frame on a CPU (0.75 s for two webcams' 1024x360 canvas), and it need
not be: the room's background barely changes, so ``roomfill.RoomFill`` builds this once
per layout (and when the rooms change) in a worker and the frame path applies it.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import Grower, check_inputs, paste_unknown
from .classical import _blend_rows
from .texture import TextureConfig, synthesize

MIN_ROOM = 0.01   # known parts smaller than this share of the image join their neighbour


def known_rooms(known: np.ndarray) -> np.ndarray:
    """Rooms when nobody says which pixel belongs to which camera: the connected parts of
    the known area (two feeds either side of a gap are two parts). Parts under
    ``MIN_ROOM`` of the image take the label of the nearest large part. -1 = unknown."""
    count, labels = cv2.connectedComponents(known.view(np.uint8) if known.dtype == bool
                                            else known.astype(np.uint8), connectivity=8)
    labels = labels.astype(np.int32) - 1          # 0 was the unknown area
    labels[~known] = -1
    if count <= 2:
        return labels
    sizes = np.bincount(labels[known], minlength=count - 1)
    small = sizes < MIN_ROOM * known.size
    if small.all() or not small.any():
        return labels
    big = np.isin(labels, np.flatnonzero(~small))
    # Nearest pixel of a large part, for every pixel.
    _, nearest = cv2.distanceTransformWithLabels((~big).astype(np.uint8), cv2.DIST_L2, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    zero_idx = np.flatnonzero(big.reshape(-1))
    flat = labels.reshape(-1)
    relabel = flat[zero_idx[np.maximum(nearest.reshape(-1) - 1, 0)]].reshape(labels.shape)
    out = np.where(big, labels, relabel)
    out[~known] = -1
    return out


def push_pull(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A smooth 2-D extension of the pixels where ``weight`` > 0 to the whole image
    (Gortler et al.'s push-pull): average down with the weights until every cell has
    some, then back up, each level keeping what it knows and taking the rest from the
    level below. Float32 HxWx3."""
    levels = [(image.astype(np.float32) * weight[..., None], weight.astype(np.float32))]
    while levels[-1][1].min() <= 1e-3 and min(levels[-1][1].shape) > 1:
        num, den = levels[-1]
        h, w = den.shape
        size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
        levels.append((cv2.resize(num, size, interpolation=cv2.INTER_AREA),
                       cv2.resize(den, size, interpolation=cv2.INTER_AREA)))
    num, den = levels[-1]
    out = num / np.maximum(den, 1e-6)[..., None]
    for num, den in reversed(levels[:-1]):
        up = cv2.resize(out, (den.shape[1], den.shape[0]), interpolation=cv2.INTER_LINEAR)
        trust = np.minimum(1.0, den * 4.0)[..., None]
        out = trust * (num / np.maximum(den, 1e-6)[..., None]) + (1 - trust) * up
    return out


def room_structure(image: np.ndarray, known: np.ndarray, rooms: np.ndarray,
                   across: np.ndarray) -> np.ndarray:
    """The structure when several rooms share a canvas. Where a row has known pixels on
    both sides of a pixel (a gap between two pictures side by side) the row-wise
    structure ``across`` joins them; elsewhere (above or below a picture, the margin of a
    shrunk one) each pixel takes a smooth extension of its own room alone (``rooms`` >= 0
    on an unknown pixel: its seat's territory; else its nearest known pixel's room), not
    the colour of whichever room happens to share the row far away."""
    h, w = known.shape
    idx = np.arange(w)
    left = np.maximum.accumulate(np.where(known, idx, -1), axis=1)
    right = np.minimum.accumulate(np.where(known, idx, w)[:, ::-1], axis=1)[:, ::-1]
    both = (left >= 0) & (right < w)
    out = across.astype(np.float32).copy()
    alone = ~known & ~both
    if not alone.any():
        return out
    free = (~known).astype(np.uint8)
    _, lab = cv2.distanceTransformWithLabels(free, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    zero = np.flatnonzero(free.reshape(-1) == 0)
    nearest = rooms.reshape(-1)[zero[np.maximum(lab.reshape(-1) - 1, 0)]].reshape(h, w)
    nearest = np.where(rooms >= 0, rooms, nearest)   # a pixel's own territory first
    # A quarter of the resolution is plenty for a smooth extension.
    small = (max(1, w // 4), max(1, h // 4))
    for room in np.unique(nearest[alone]):
        mine = known & (rooms == room)
        wgt = cv2.resize(mine.astype(np.float32), small, interpolation=cv2.INTER_AREA)
        img = cv2.resize(np.where(mine[..., None], image, 0).astype(np.float32), small,
                         interpolation=cv2.INTER_AREA)
        img = img / np.maximum(wgt, 1e-6)[..., None]
        seen = wgt > 0.5
        # Above and below a picture a room goes on as its columns do (a door, a wall's
        # edge, a curtain run on to the floor), smoothed along them; beside the columns
        # it has (the corners), a smooth extension in every direction.
        cols = _blend_rows(np.ascontiguousarray(img.transpose(1, 0, 2)), seen.T).transpose(1, 0, 2)
        cols = cv2.GaussianBlur(cols, (0, 0), sigmaX=0.75, sigmaY=4.0)
        ext = push_pull(img * seen[..., None], seen.astype(np.float32))
        ext = np.where(seen.any(axis=0)[None, :, None], cols, ext)
        ext = cv2.resize(ext, (w, h), interpolation=cv2.INTER_LINEAR)
        sel = alone & (nearest == room)
        out[sel] = ext[sel]
    return out


class Joiner(Grower):
    """``structure`` (a grower, used on a fresh state each call) then texture."""

    def __init__(self, structure: Grower, texture: TextureConfig = TextureConfig(),
                 name: str = "rule-tex"):
        self.structure = structure
        self.texture = texture
        self.name = name

    def fill(self, image: np.ndarray, known: np.ndarray, covered: np.ndarray | None = None,
             rooms: np.ndarray | None = None, targets: np.ndarray | None = None,
             cancel=None) -> np.ndarray:
        """``rooms`` (optional int HxW): which room (camera) each known pixel shows;
        without it, the connected parts of the known area. ``targets`` (optional bool):
        the unknown pixels that will be seen; the others get the structure only.
        ``cancel`` (optional ``threading.Event``): stop early (``texture.Cancelled``)."""
        check_inputs(image, known)
        if known.all() or not known.any():
            return self.structure.fill(image, known)
        self.structure.reset()
        smooth = self.structure.fill(image, known)
        self.structure.reset()
        if rooms is None:
            rooms = known_rooms(known)
        if len(np.unique(rooms[known])) > 1:
            smooth = room_structure(image, known, rooms, smooth)
        textured = synthesize(image, known, smooth, rooms=rooms, targets=targets, cfg=self.texture,
                              cancel=cancel)
        return paste_unknown(image, known, textured)
