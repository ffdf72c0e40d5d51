"""The plain data that travels between stages.

Images are HxWx3 uint8 RGB throughout; masks are HxW (bool for "known", float32 in
[0, 1] for alpha). Nothing here does work: stages take these and return new ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded picture from a source."""

    image: np.ndarray  # HxWx3 uint8 RGB
    pts: float  # presentation time in seconds, from the source's own clock
    index: int  # running count of frames this source has delivered
    source: str = ""  # file path, "camera:N" or "synthetic"

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        return w, h


@dataclass(frozen=True)
class Cutout:
    """A frame with its person alpha matte (1 = person, 0 = background)."""

    frame: Frame
    alpha: np.ndarray  # HxW float32 in [0, 1], same size as frame.image


@dataclass(frozen=True)
class View:
    """What a feed's tile shows: the picture point (``cx``, ``eye``), in fractions of
    the picture's width and height, sits at the tile's horizontal centre on its eye
    line, and the picture is enlarged ``zoom`` times over the plain fit (the whole
    picture at tile height). The plain fit itself is ``View(0.5, eye_line, 1.0)``."""

    cx: float
    eye: float
    zoom: float
    # The zoom the view is moving to. A shrunk feed's tile is narrowed to its picture,
    # and follows this, so tiles change size once per re-frame, not at every step.
    goal_zoom: float | None = None


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


@dataclass(frozen=True)
class Canvas:
    """All feeds placed on one shared canvas, before the gaps are grown.

    ``image`` holds the camera pixels (people included) inside each tile and zeros
    elsewhere; ``background`` is the same with the remembered clean plate pasted over
    the people where it is known; ``known`` marks background pixels really seen (now, or
    earlier by the background memory); ``alpha`` is the people matte on the canvas.
    """

    image: np.ndarray  # HxWx3 uint8
    background: np.ndarray  # HxWx3 uint8, valid where known
    known: np.ndarray  # HxW bool
    alpha: np.ndarray  # HxW float32
    tiles: tuple[Rect, ...]  # where each feed sits, in feed order
    keys: tuple = ()  # each feed's key, in feed order: per-feed state follows the feed, not the tile
    # Where each feed's picture is drawn, in feed order: its tile, or the part of it a
    # picture shrunk by framing covers. Outside the pictures no camera ever sees.
    pictures: tuple[Rect, ...] = ()
    # The size the composite is shown at and each feed's tile there, where the canvas
    # is drawn smaller than that (at the detail the cameras give: ``LayoutConfig.at_detail``);
    # None and () where it is drawn at its own size.
    out_size: tuple[int, int] | None = None
    out_tiles: tuple[Rect, ...] = ()

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the composite made from this canvas."""
        return self.out_size or self.size

    @property
    def output_tiles(self) -> tuple[Rect, ...]:
        """Each feed's tile in the composite, in feed order."""
        return self.out_tiles or self.tiles

    @property
    def shown(self) -> tuple[Rect, ...]:
        """The pictures where the layout says, else the tiles."""
        return self.pictures or self.tiles

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.known.shape
        return w, h
