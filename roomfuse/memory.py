"""Background memory: a per-feed clean plate of the room behind the person.

Whenever a pixel is seen as background, the plate moves a little toward it (slowly, so a
soft matte edge or a shadow does not burn in; the first sighting is taken as is). When the
person later covers that pixel, the plate supplies what was really there, so the grower
only has to invent what nobody has seen. Pixels not seen for ``max_age_s`` are forgotten:
the room may have changed since.
"""
from __future__ import annotations

import cv2
import numpy as np

from .config import MemoryConfig


class BackgroundMemory:
    def __init__(self, cfg: MemoryConfig = MemoryConfig()):
        self.cfg = cfg
        self.plate: np.ndarray | None = None  # HxWx3 float32
        self.last_seen: np.ndarray | None = None  # HxW float32 seconds, -inf = never
        self._unseen = True
        self._frames = 0  # updates so far (it learns from every learn_every-th)
        kernel = 2 * cfg.guard_px + 1
        self._guard = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel)) if cfg.guard_px else None

    def _fit(self, shape: tuple[int, int]) -> None:
        h, w = shape
        if self.plate is None:
            self.plate = np.zeros((h, w, 3), np.float32)
            self.last_seen = np.full((h, w), -np.inf, np.float32)
            self._unseen = True  # some pixel has never been seen
        elif self.plate.shape[:2] != (h, w):
            # The tile was resized (layout change): keep what we know, at the new size.
            self.plate = cv2.resize(self.plate, (w, h), interpolation=cv2.INTER_LINEAR)
            self.last_seen = cv2.resize(self.last_seen, (w, h), interpolation=cv2.INTER_NEAREST)

    def update(self, image: np.ndarray, seen: np.ndarray, now: float,
               box: tuple[int, int, int, int] | None = None,
               size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Learn from this frame's background pixels and fill in the hidden ones.

        image: HxWx3 uint8 picture; seen: HxW bool, True where the pixel is background now.
        ``box`` (x0, y0, x1, y1) and ``size`` (w, h): image and seen are only that part
        of a picture of that size (the part a zoomed-in view shows; the rest of the
        memory is kept as it was). Returns (background uint8: the image with remembered
        pixels pasted where the person is, known bool: seen now or remembered and fresh),
        both the shape of ``image``.
        """
        if box is None:
            self._fit(seen.shape)
            plate, last_seen = self.plate, self.last_seen
        else:
            self._fit((size[1], size[0]))
            x0, y0, x1, y1 = box
            plate, last_seen = self.plate[y0:y1, x0:x1], self.last_seen[y0:y1, x0:x1]
        seen8 = seen.view(np.uint8)
        every = max(1, self.cfg.learn_every)
        if self._frames % every == 0:
            trusted = seen8 if self._guard is None else cv2.erode(seen8, self._guard)
            if self._unseen:
                first = trusted.view(bool) & (last_seen == -np.inf)
                if first.any():
                    np.copyto(plate, image, where=first[..., None])
            cv2.accumulateWeighted(image, plate, 1.0 - (1.0 - self.cfg.rate) ** every, mask=trusted)
            cv2.copyTo(np.full(last_seen.shape, now, np.float32), trusted, last_seen)
            if self._unseen:
                self._unseen = bool((self.last_seen == -np.inf).any())
        self._frames += 1
        # 0/1 masks made by OpenCV in one pass each (numpy's boolean temporaries cost
        # 3x as much on a picture).
        fresh = cv2.min(cv2.compare(last_seen, now - self.cfg.max_age_s, cv2.CMP_GE), 1)
        restore = cv2.subtract(fresh, seen8)
        background = image.copy()
        x, y, w, h = cv2.boundingRect(restore)
        if w and h:
            # Only around the person: converting the whole float plate would cost more
            # than the rest of the update. cv2.copyTo with a mask is ~20x faster than
            # np.copyto(where=...) here.
            around = (slice(y, y + h), slice(x, x + w))
            cv2.copyTo(cv2.convertScaleAbs(plate[around]), restore[around], background[around])
        return background, cv2.bitwise_or(fresh, seen8).view(bool)

    def reset(self) -> None:
        self.plate = None
        self.last_seen = None
        self._frames = 0
