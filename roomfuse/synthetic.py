"""A synthetic participant: a made-up room and a flat-coloured person who sways.

Tests use it where real footage is not the subject: its ground truth (the clean room and
the person's exact mask) is known at every instant, and the person's colour can be keyed
out without mediapipe (see ``segment.KeySegmenter``).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .frames import Frame

PERSON_RGB = (255, 0, 255)  # never used by the room, so a colour key finds the person


class SyntheticSource:
    def __init__(self, seed: int = 0, size: tuple[int, int] = (640, 480), fps: float = 30.0,
                 sway: float = 0.25, period_s: float = 4.0):
        self.seed = seed
        self.size = size
        self.fps = fps
        self.sway = sway  # how far the person moves, as a fraction of the width
        self.period_s = period_s
        self.background = make_room(seed, size)
        self._count = 0

    def truth_alpha(self, t: float) -> np.ndarray:
        """The person's exact mask (float32, 1 = person) at time ``t``."""
        w, h = self.size
        cx = w / 2 + self.sway * w * math.sin(2 * math.pi * t / self.period_s)
        mask = np.zeros((h, w), np.uint8)
        head_r = int(0.11 * h)
        head_c = (int(cx), int(0.30 * h))
        cv2.circle(mask, head_c, head_r, 1, -1)
        cv2.ellipse(mask, (int(cx), int(h * 0.95)), (int(0.2 * w), int(0.45 * h)), 0, 180, 360, 1, -1)
        cv2.rectangle(mask, (int(cx - 0.045 * w), head_c[1]), (int(cx + 0.045 * w), int(0.55 * h)), 1, -1)
        return mask.astype(np.float32)

    def frame_at(self, t: float) -> Frame:
        alpha = self.truth_alpha(t)
        image = self.background.copy()
        image[alpha > 0.5] = PERSON_RGB
        return Frame(image=image, pts=t, index=int(round(t * self.fps)), source=f"synthetic:{self.seed}")

    def read(self) -> Frame:
        frame = self.frame_at(self._count / self.fps)
        self._count += 1
        return frame

    def close(self) -> None:
        pass


def make_room(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A plausible, textured room: wall, floor, a window, pictures and a shelf."""
    w, h = size
    rng = np.random.default_rng(seed)
    wall = rng.uniform(90, 220, 3)
    floor = rng.uniform(40, 140, 3)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    img = wall * (0.85 + 0.25 * x) * (1.05 - 0.15 * y)
    horizon = int(h * rng.uniform(0.68, 0.8))
    img = np.broadcast_to(img, (h, w, 3)).copy()
    img[horizon:] = floor * (0.8 + 0.4 * y[horizon:])
    for _ in range(rng.integers(3, 6)):  # pictures, shelves, a window
        rw, rh = int(rng.uniform(0.08, 0.3) * w), int(rng.uniform(0.05, 0.25) * h)
        rx, ry = int(rng.uniform(0, 1) * (w - rw)), int(rng.uniform(0.05, 0.6) * h)
        cv2.rectangle(img, (rx, ry), (rx + rw, ry + rh), rng.uniform(20, 235, 3).tolist(), -1)
        cv2.rectangle(img, (rx, ry), (rx + rw, ry + rh), (30, 30, 30), 2)
    noise = cv2.GaussianBlur(rng.normal(0, 6, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    # Keep the room's colours away from the person's key colour.
    magenta = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] > 180)
    img[magenta] = (128, 128, 128)
    return img
