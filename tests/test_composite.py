"""Composite: people over the grown room, and gentle colour harmonisation."""
from __future__ import annotations

import numpy as np
import pytest

from roomfuse.composite import Compositor, Harmonizer, blend_people, join_report
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
    c = _canvas(w=100, gap=40)
    comp = Compositor(CompositeConfig(harmonize=0.5, smooth_frames=1))
    # With a flat grey room grown everywhere, the output shows the gain field itself.
    out = comp(c, np.full_like(c.image, 128)).astype(int)
    row = out[20, :, 0]
    assert row[:40].mean() > 130 and row[-40:].mean() < 126  # the gains are applied
    # As a ramp across the gap, not a step at a tile border: the two sides' join gains
    # pull in opposite directions, so it is steepest there, a few levels per pixel.
    assert np.abs(np.diff(row)).max() <= 4
    # A gap grown as a blend of the two rooms comes out evener than it went in.
    grown = c.background.copy()
    ramp = np.linspace(0, 1, 40)[:, None]
    grown[:, 100:140] = (1 - ramp) * np.array(c.image[0, 0], float) + ramp * np.array(c.image[0, -1], float)
    plain = grown[20, :, 0].astype(int)
    out = comp(c, grown)[20, :, 0].astype(int)
    assert np.abs(np.diff(out)).max() <= np.abs(np.diff(plain)).max()
    assert abs(out[99] - out[140]) < 0.5 * abs(plain[99] - plain[140])


def test_single_feed_is_left_alone():
    c = _canvas()
    one = Canvas(c.image, c.background, c.known, c.alpha, c.tiles[:1])
    assert Harmonizer().field(one) is None


def _keyed(keys, left, right):
    c = _canvas(left=left, right=right)
    return Canvas(c.image, c.background, c.known, c.alpha, c.tiles, keys=keys)


def test_gains_belong_to_the_feed_not_the_seat():
    h = Harmonizer(CompositeConfig(harmonize=0.5, smooth_frames=5))
    for _ in range(60):
        h.update(_keyed(("a", "b"), (60, 60, 60), (180, 180, 180)))
    settled_a = h.gains["a"].copy()
    assert settled_a[0] > 1.1  # the dark room was brightened
    # "a" leaves; "c", a room like "b", takes the left seat: it starts from no
    # correction instead of inheriting the dark room's brightening.
    g, _ = h.update(_keyed(("c", "b"), (180, 180, 180), (180, 180, 180)))
    assert "a" not in h.gains
    assert abs(g[0, 0] - 1.0) < 0.05
    # The seats are swapped: each feed keeps its own gains.
    h2 = Harmonizer(CompositeConfig(harmonize=0.5, smooth_frames=5))
    for _ in range(60):
        h2.update(_keyed(("a", "b"), (60, 60, 60), (180, 180, 180)))
    g, _ = h2.update(_keyed(("b", "a"), (180, 180, 180), (60, 60, 60)))
    assert g[1] == pytest.approx(h2.gains["a"]) and g[1][0] > 1.1 and g[0][0] < 0.95


def test_rooms_meet_at_the_join_and_keep_their_look_in_the_middle():
    left, right = (70, 80, 100), (200, 170, 130)
    c = _keyed(("a", "b"), left, right)
    comp = Compositor(CompositeConfig(smooth_frames=1))
    plain = Compositor(CompositeConfig(harmonize=0.0))
    before = join_report(plain(c, c.background), c)[0]
    out = comp(c, c.background)
    after = join_report(out, c)[0]
    assert after["luminance"] <= 0.5 * before["luminance"]
    assert after["white_balance"] <= 0.5 * before["white_balance"]
    # Toward the middle of a tile the join gains have faded: the room keeps more of its
    # own colour there than at its side.
    mid, edge = out[20, 50].astype(float), out[20, 95].astype(float)
    assert np.linalg.norm(mid - left) < np.linalg.norm(edge - left)


def test_gains_settle_without_pumping():
    c = _keyed(("a", "b"), (70, 80, 100), (200, 170, 130))
    comp = Compositor(CompositeConfig())
    fields = [comp.harmonizer.field(c) for _ in range(90)]
    steps = [float(np.abs(b - a).max()) for a, b in zip(fields, fields[1:])]
    # Exposure follows smoothly: every step smaller than the one before, and still.
    assert all(b <= a + 1e-6 for a, b in zip(steps, steps[1:]))
    assert steps[0] < 0.05 and steps[-1] < 1e-3


def test_gains_worked_out_every_other_frame_follow_the_same_course():
    """The field worked out every second frame (moved on two frames' worth each time)
    is the field worked out every frame, on those frames; between, the last one."""
    from roomfuse.composite import Compositor
    from roomfuse.config import CompositeConfig

    canvas = _canvas()
    every = Compositor(CompositeConfig(gain_every=1))
    second = Compositor(CompositeConfig(gain_every=2))
    fields = [(every.gains(canvas), second.gains(canvas)) for _ in range(7)]
    for i, (a, b) in enumerate(fields):
        if i % 2 == 0:
            np.testing.assert_allclose(a, b, rtol=1e-5)
        else:
            assert b is fields[i - 1][1]
    assert np.abs(fields[-1][0] - 1.0).max() > 0.02  # the gains did move
