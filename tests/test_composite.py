"""Composite: people over the grown room, and gentle colour harmonisation."""
from __future__ import annotations

import numpy as np

from roomfuse.composite import Compositor, Harmonizer, blend_people
from roomfuse.config import CompositeConfig
from roomfuse.frames import Canvas, Rect


def _canvas(left=(100, 100, 100), right=(160, 130, 100), w=100, gap=20, h=40):
    W = 2 * w + gap
    image = np.zeros((h, W, 3), np.uint8)
    image[:, :w] = left
    image[:, w + gap:] = right
    known = np.zeros((h, W), bool)
    known[:, :w] = known[:, w + gap:] = True
    alpha = np.zeros((h, W), np.float32)
    tiles = (Rect(0, 0, w, h), Rect(w + gap, 0, w, h))
    return Canvas(image=image, background=image.copy(), known=known, alpha=alpha, tiles=tiles)


def test_blend_people_soft_edges():
    c = _canvas()
    c.alpha[:, 10] = 1.0
    c.alpha[:, 11] = 0.5
    c.image[:, 10:12] = 250
    grown = np.full_like(c.image, 50)
    out = blend_people(c, grown)
    assert (out[:, 10] == 250).all()
    assert np.abs(out[:, 11].astype(int) - 150).max() <= 1
    assert (out[:, 50] == 50).all()


def test_harmonizer_moves_feeds_toward_each_other_gently():
    c = _canvas()
    h = Harmonizer(CompositeConfig(harmonize=0.5, smooth_frames=1))
    g, _ = h.update(c)
    # The orange-ish right room gets less red, the grey left room gets more.
    assert g[1, 0] < 1.0 < g[0, 0]
    # Half-way in ratio terms, not all the way.
    left, right = np.array([100, 100, 100.0]), np.array([160, 130, 100.0])
    after_l, after_r = left * g[0], right * g[1]
    assert np.all(np.abs(after_l - after_r) <= np.abs(left - right) + 1e-6)
    assert np.abs(after_l - after_r)[0] > 10  # gentle: some difference remains


def test_harmonizer_gains_are_clipped_and_smoothed_in_time():
    c = _canvas(left=(40, 40, 40), right=(240, 240, 240))
    h = Harmonizer(CompositeConfig(harmonize=1.0, max_gain=1.25, smooth_frames=10))
    first = h.update(c)[0].copy()
    assert np.all(np.abs(first - 1) < 0.05)  # one frame moves a tenth of the way
    for _ in range(200):
        g, _ = h.update(c)
    assert g.max() <= 1.25 + 1e-6 and g.min() >= 0.8 - 1e-6


def test_gain_field_has_no_step_at_tile_borders():
    c = _canvas()
    comp = Compositor(CompositeConfig(harmonize=0.5, smooth_frames=1))
    # With a flat grey room grown everywhere, the output shows the gain field itself.
    out = comp(c, np.full_like(c.image, 128)).astype(int)
    row = out[20, :, 0]
    assert row[:40].mean() > 130 and row[-40:].mean() < 126  # the gains are applied
    assert np.abs(np.diff(row)).max() <= 2  # as a smooth ramp: no step anywhere


def test_single_feed_is_left_alone():
    c = _canvas()
    one = Canvas(c.image, c.background, c.known, c.alpha, c.tiles[:1])
    assert Harmonizer().field(one) is None
