"""Classical growers: every unknown pixel filled, no known pixel touched."""
from __future__ import annotations

import numpy as np
import pytest

from roomfuse.growth import GROWERS, UnknownGrower, make_grower
from roomfuse.growth.base import downsample_known
from roomfuse.growth.classical import line_blend

CLASSICAL = ["telea", "ns", "telea-full", "ns-full", "blend"]


def _gap_image(h=90, w=200, gap=(80, 120)):
    """A horizontal colour ramp with a vertical gap cut out of it."""
    x = np.linspace(0, 1, w, dtype=np.float32)
    img = np.stack([40 + 180 * x, 200 - 150 * x, np.full_like(x, 120)], axis=-1)
    img = np.broadcast_to(img, (h, w, 3)).astype(np.uint8).copy()
    known = np.ones((h, w), bool)
    known[:, gap[0]:gap[1]] = False
    truth = img.copy()
    img[~known] = 0  # what a canvas holds in a gap: nothing
    return img, known, truth


@pytest.mark.parametrize("name", CLASSICAL)
def test_fills_gap_and_keeps_known_pixels(name):
    img, known, truth = _gap_image()
    out = make_grower(name).fill(img, known)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[known], img[known])
    # A smooth ramp is easy: every method should land close to the truth, no black band.
    err = np.abs(out.astype(int) - truth.astype(int))[~known]
    assert err.mean() < 12, name
    assert out[~known].min() > 20


def test_line_blend_is_exactly_linear_across_a_gap():
    img = np.zeros((1, 6, 3), np.uint8)
    img[0, 0] = 0
    img[0, 5] = 100
    known = np.array([[True, False, False, False, False, True]])
    out = line_blend(img, known)
    assert np.allclose(out[0, :, 0], [0, 20, 40, 60, 80, 100])


def test_line_blend_margins_and_empty_rows():
    img = np.full((4, 5, 3), 50, np.uint8)
    known = np.zeros((4, 5), bool)
    known[1, 2] = True  # one known pixel: its row copies it, other rows copy that row
    out = line_blend(img, known)
    assert np.allclose(out, 50)


def test_downsample_ignores_unknown_pixels():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :6] = 200
    known = np.zeros((8, 8), bool)
    known[:, :6] = True
    low, low_known = downsample_known(img, known, 4)
    # The right cell is half known: its colour is the known half's, not a mix with 0.
    assert np.allclose(low[:, 1], 200) and low_known.all()


def test_all_known_and_nothing_known():
    img, known, _ = _gap_image()
    g = make_grower("telea")
    assert np.array_equal(g.fill(img, np.ones_like(known)), img)
    out = g.fill(img, np.zeros_like(known))
    assert out.shape == img.shape


def test_bad_inputs_and_names():
    g = make_grower("telea")
    with pytest.raises(ValueError, match="uint8"):
        g.fill(np.zeros((4, 4, 3), np.float32), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="shape"):
        g.fill(np.zeros((4, 4, 3), np.uint8), np.ones((5, 4), bool))
    with pytest.raises(UnknownGrower, match="choose one of"):
        make_grower("magic")
    assert "nca" in GROWERS
