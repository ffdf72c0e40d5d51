"""Realistic-fill peers from outside the project, for ``roomfuse eval``.

- ``PatchMatchGrower``: PatchMatch inpainting (Barnes et al. 2009, the algorithm behind
  Content-Aware Fill) from the ``pypatchmatch`` package, an evaluation and test
  dependency only (``pip install roomfuse[test]``).
- ``FSRGrower``: OpenCV's frequency-selective reconstruction (``cv2.xphoto``, FSR_FAST),
  shipped with opencv-contrib.

Both take seconds per picture on a CPU: references for the fill's realism, not live
growers.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import RoomfuseError
from .base import Grower, check_inputs, paste_unknown


class PeerUnavailable(RoomfuseError):
    """A peer's package is not installed; the message says how to install it."""


class PatchMatchGrower(Grower):
    name = "patchmatch"

    def __init__(self, patch_size: int = 5, seed: int = 0):
        try:
            from patchmatch import patch_match
        except ImportError:
            raise PeerUnavailable("grower patchmatch needs the pypatchmatch package "
                                  "(pip install 'pypatchmatch==2.2.0', or roomfuse[test])") from None
        if not patch_match.patchmatch_available:
            raise PeerUnavailable("grower patchmatch: pypatchmatch could not load its library")
        self._pm = patch_match
        self.patch_size = int(patch_size)
        self.seed = int(seed)

    def fill(self, image: np.ndarray, known: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
        check_inputs(image, known)
        if known.all():
            return image.copy()
        self._pm.set_random_seed(self.seed)
        mask = (~known).astype(np.uint8) * 255
        out = self._pm.inpaint(np.ascontiguousarray(image), mask, patch_size=self.patch_size)
        return paste_unknown(image, known, out)


class FSRGrower(Grower):
    name = "fsr"

    def fill(self, image: np.ndarray, known: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
        check_inputs(image, known)
        if known.all():
            return image.copy()
        # xphoto's mask marks the *known* pixels, the opposite of cv2.inpaint's.
        src = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        src[~known] = 0
        dst = src.copy()
        cv2.xphoto.inpaint(src, known.astype(np.uint8) * 255, dst, cv2.xphoto.INPAINT_FSR_FAST)
        return paste_unknown(image, known, cv2.cvtColor(dst, cv2.COLOR_BGR2RGB))
