"""The realism measures: each must tell a real-looking fill from a blur, a border step from
a continuation, and stay near its floor for the truth itself."""
from __future__ import annotations

import cv2
import numpy as np

from roomfuse.growth.realism import FillStats, PatchSWD, border_steps, laplacian_pyramid


def _texture(seed: int, size=(320, 240)) -> np.ndarray:
    """A stationary texture (grain at two scales on a coloured ground): any part of it is
    as real as any other, and a blur of it is easy to tell."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 4) * 120
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8) * 25
    base = np.array([140, 120, 90], np.float32) * (1 + rng.uniform(-0.2, 0.2, 3).astype(np.float32))
    return np.clip(base + (coarse + fine)[..., None], 0, 255).astype(np.uint8)


def _gap(shape, x0=140, w=48):
    hole = np.zeros(shape[:2], bool)
    hole[:, x0:x0 + w] = True
    return hole


def test_pyramid_levels_add_back_to_the_image():
    img = _texture(1)
    img[60:120, 40:200] = (30, 200, 90)   # a hard-edged object too
    levels = laplacian_pyramid(img)
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = cv2.pyrUp(rebuilt, dstsize=(band.shape[1], band.shape[0])) + band
    assert np.abs(rebuilt - img.astype(np.float32)).max() < 1e-3
    assert len(levels) == 4 and levels[1].shape[:2] == (120, 160)


def test_swd_ranks_a_blur_far_behind_real_texture():
    swd = PatchSWD(seed=0)
    for seed in range(4):
        truth = _texture(seed)
        hole = _gap(truth.shape)
        blurred = truth.copy()
        blurred[hole] = cv2.GaussianBlur(truth, (0, 0), 6)[hole]
        # Real texture of the same room, from elsewhere: the hole's columns shifted.
        copied = truth.copy()
        copied[hole] = np.roll(truth, 100, axis=1)[hole]
        swd.add(truth, {"blur": blurred, "copy": copied}, hole)
    res = swd.result()
    assert res["truth"]["mean"] < res["copy"]["mean"] < res["blur"]["mean"]
    assert res["blur"]["mean"] > 3 * res["copy"]["mean"]
    # The finest band is where a blur loses most.
    assert res["blur"]["levels"][0] > res["blur"]["levels"][-1]


def test_detail_and_seam_ratios():
    truth = _texture(7)
    hole = _gap(truth.shape)
    same, blur, step = FillStats(), FillStats(), FillStats()
    same.add(truth, truth, hole)
    blurred = truth.copy()
    blurred[hole] = cv2.GaussianBlur(truth, (0, 0), 5)[hole]
    blur.add(blurred, truth, hole)
    stepped = truth.astype(np.int16)
    stepped[hole] += 60
    stepped = np.clip(stepped, 0, 255).astype(np.uint8)
    step.add(stepped, truth, hole)
    assert abs(same.detail - 1) < 1e-6 and 0.7 < same.seam < 1.4
    assert blur.detail < 0.4
    assert step.seam > 2.5
    across, inside, count = border_steps(truth, hole)
    assert count == 2 * truth.shape[0]  # both sides of a full-height gap
