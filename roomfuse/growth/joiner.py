"""The growth model's full still-image fill: structure first, then texture.

The two channels of the design this project grew from. The growth rule and its network
(``nca_grower``) grow the structure across a hole at 1/4 resolution: the shading, the
lines and edges that cross it, one smooth band. ``texture.synthesize`` then puts the
room's own pixels there, chosen to follow that structure, each room filling from its own
pixels so two different rooms meet along a line instead of blending into a double
exposure.

Too slow for every frame on a CPU (about a second for a 1280x360 canvas), and it need
not be: the room's background barely changes, so ``roomfill.RoomFill`` builds this once
per layout (and when the rooms change) in a worker and the frame path applies it.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import Grower, check_inputs, paste_unknown
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


class Joiner(Grower):
    """``structure`` (a grower, used on a fresh state each call) then texture."""

    def __init__(self, structure: Grower, texture: TextureConfig = TextureConfig(),
                 name: str = "rule-tex"):
        self.structure = structure
        self.texture = texture
        self.name = name

    def fill(self, image: np.ndarray, known: np.ndarray, covered: np.ndarray | None = None,
             rooms: np.ndarray | None = None, targets: np.ndarray | None = None) -> np.ndarray:
        """``rooms`` (optional int HxW): which room (camera) each known pixel shows;
        without it, the connected parts of the known area. ``targets`` (optional bool):
        the unknown pixels that will be seen; the others get the structure only."""
        check_inputs(image, known)
        if known.all() or not known.any():
            return self.structure.fill(image, known)
        self.structure.reset()
        smooth = self.structure.fill(image, known)
        self.structure.reset()
        if rooms is None:
            rooms = known_rooms(known)
        textured = synthesize(image, known, smooth, rooms=rooms, targets=targets, cfg=self.texture)
        return paste_unknown(image, known, textured)
