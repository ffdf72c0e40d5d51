"""The growth model carried for minutes: a gap between feeds is unknown for good, so its
cells are stepped on every frame from the last frame's state. That state must stay
bounded and the fill must stay what a fresh start would give."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from roomfuse.growth import make_grower

pytestmark = pytest.mark.timeout(300)


def test_a_gap_held_for_4000_frames_stays_finite_bounded_and_close_to_a_fresh_fill(data_dir):
    path = sorted((data_dir / "images" / "wide").iterdir())[0]
    image = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (320, 96),
                       interpolation=cv2.INTER_AREA)
    known = np.ones((96, 320), bool)
    known[:, 140:180] = False  # the gap between two feeds
    known[40:, 40:80] = False  # background a person hides
    grower = make_grower("nca", device="cpu", threads=1)
    fresh = make_grower("nca", device="cpu", threads=1).fill(image, known).astype(np.float32)
    rng = np.random.default_rng(0)
    largest = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a NaN cast to uint8 warns: fail on it
        for i in range(4000):  # over two minutes of a room at 30 fps
            noisy = np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
            out = grower.fill(noisy, known)
            if i % 500 == 499:
                largest.append(float(grower.state.cells.abs().max()))
    assert np.isfinite(grower.state.cells.numpy()).all()
    assert max(largest) < 5.0, largest  # colour and alive are in 0..1; hidden channels stay small
    drift = np.abs(out.astype(np.float32) - fresh)[~known].mean()
    assert drift < 8.0, drift  # grey levels per channel, against a fresh fill of the same frame
