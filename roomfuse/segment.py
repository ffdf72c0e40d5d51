"""Person mattes: mediapipe selfie segmentation with temporal smoothing.

One segmenter per feed: the smoothing state belongs to one camera. The matte is computed
at the model's own small resolution (about 256 px wide) and returned there; later stages
resize it once to wherever the feed is drawn.
"""
from __future__ import annotations

import cv2
import numpy as np

from .config import SegmentConfig
from .frames import Cutout, Frame
from .regions import shrink
from .synthetic import PERSON_RGB

# The landscape model reads 256x144; feeding it a frame already near that size saves the
# conversion of full frames and loses nothing.
WORK_WIDTH = 256


class MatteSmoother:
    """Per-pixel adaptive smoothing of a matte sequence.

    Edge noise (small changes) is averaged out; real motion (large changes) passes at
    once, so the matte does not trail a moving head the way a plain running average does.
    The rate rises with the square of the change: a 0.1 wobble moves at about
    ``min_rate``, a change of ``snap`` or more is taken whole.
    """

    def __init__(self, min_rate: float = 0.15, snap: float = 0.4):
        if not 0 < min_rate <= 1:
            raise ValueError(f"min_rate must be in (0, 1], got {min_rate}")
        if snap <= 0:
            raise ValueError(f"snap must be > 0, got {snap}")
        self.min_rate = min_rate
        self.snap = snap
        self.state: np.ndarray | None = None

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        if self.state is None or self.state.shape != mask.shape:
            self.state = mask.astype(np.float32, copy=True)
            return self.state.copy()
        diff = mask - self.state
        rate = np.minimum(1.0, self.min_rate + (1.0 - self.min_rate) * np.square(diff / self.snap))
        self.state += rate * diff
        return self.state.copy()

    def reset(self) -> None:
        self.state = None


def _work_size(w: int, h: int) -> tuple[int, int]:
    if w <= WORK_WIDTH:
        return w, h
    return WORK_WIDTH, max(1, round(h * WORK_WIDTH / w))


class PersonSegmenter:
    """mediapipe selfie segmentation (bundled model, works offline) -> smoothed Cutout."""

    def __init__(self, config: SegmentConfig = SegmentConfig()):
        if config.model not in ("landscape", "general"):
            raise ValueError(f"segmentation model must be 'landscape' or 'general', got {config.model!r}")
        import mediapipe as mp  # heavy import; only when a real segmenter is built

        self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(
            model_selection=1 if config.model == "landscape" else 0)
        self.smoother = MatteSmoother(config.min_rate, config.snap)

    def __call__(self, frame: Frame) -> Cutout:
        h, w = frame.image.shape[:2]
        ww, wh = _work_size(w, h)
        small = frame.image if (ww, wh) == (w, h) else shrink(frame.image, (ww, wh))
        mask = self._model.process(np.ascontiguousarray(small)).segmentation_mask
        return Cutout(frame=frame, alpha=self.smoother(mask))

    def reset(self) -> None:
        self.smoother.reset()

    def close(self) -> None:
        self._model.close()


class KeySegmenter:
    """Colour-key matte for the synthetic source: exact, fast, no model. Used where the
    segmentation network is not the subject (pipeline and WebRTC tests)."""

    def __init__(self, config: SegmentConfig = SegmentConfig(), key=PERSON_RGB, tolerance: float = 60.0):
        self.key = np.array(key, np.float32)
        self.tolerance = tolerance
        self.smoother = MatteSmoother(config.min_rate, config.snap)

    def __call__(self, frame: Frame) -> Cutout:
        h, w = frame.image.shape[:2]
        small = shrink(frame.image, _work_size(w, h))
        dist = np.linalg.norm(small.astype(np.float32) - self.key, axis=2)
        mask = np.clip(1.5 - dist / self.tolerance, 0.0, 1.0).astype(np.float32)
        return Cutout(frame=frame, alpha=self.smoother(mask))

    def reset(self) -> None:
        self.smoother.reset()

    def close(self) -> None:
        pass


SEGMENTERS = {"mediapipe": PersonSegmenter, "key": KeySegmenter}


def make_segmenter(kind: str, config: SegmentConfig = SegmentConfig()):
    try:
        return SEGMENTERS[kind](config)
    except KeyError:
        raise ValueError(f"unknown segmenter {kind!r}; choose one of: {', '.join(SEGMENTERS)}") from None
