"""Background memory: what a person hid is restored from what was really there."""
from __future__ import annotations

import numpy as np

from roomfuse.config import LayoutConfig, MemoryConfig
from roomfuse.layout import Placer
from roomfuse.memory import BackgroundMemory
from roomfuse.segment import KeySegmenter
from roomfuse.synthetic import SyntheticSource


def test_memory_restores_a_region_the_person_uncovered():
    """The person sways; wall they stood in front of at t=0 is seen once they move, and
    when they stand there again the canvas shows that wall as known background."""
    src = SyntheticSource(seed=7, size=(320, 240), sway=0.3, period_s=2.0)
    seg = KeySegmenter()
    placer = Placer(LayoutConfig(height=240, gap=0), MemoryConfig())
    fps = 15
    for i in range(2 * fps + 1):  # one full sway: back at the start position
        t = i / fps
        canvas = placer([seg(src.frame_at(t))])
    hidden = src.truth_alpha(t) > 0.5
    # Pixels hidden now but uncovered at some point during the sway.
    uncovered = hidden & ~np.logical_and.reduce([src.truth_alpha(k / fps) > 0.5 for k in range(2 * fps)])
    assert uncovered.sum() > 2000
    assert canvas.known[uncovered].mean() > 0.95
    err = np.abs(canvas.background.astype(int) - src.background.astype(int))[uncovered].mean()
    assert err < 4.0
    # Without memory the same pixels are simply unknown.
    plain = Placer(LayoutConfig(height=240, gap=0), MemoryConfig(enabled=False))
    assert plain([KeySegmenter()(src.frame_at(t))]).known[uncovered].mean() < 0.05


def test_memory_updates_slowly_and_forgets_stale_pixels():
    mem = BackgroundMemory(MemoryConfig(rate=0.1, max_age_s=2.0, guard_px=0, learn_every=1))
    img = np.full((8, 8, 3), 100, np.uint8)
    seen = np.ones((8, 8), bool)
    mem.update(img, seen, now=0.0)
    # A brighter frame moves the plate only a little (no burn-in of one bad frame).
    mem.update(np.full_like(img, 200), seen, now=0.1)
    hide = np.zeros_like(seen)
    bg, known = mem.update(np.zeros_like(img), hide, now=0.2)
    assert known.all() and 105 <= bg[0, 0, 0] <= 115
    # Not seen for longer than max_age: forgotten.
    _, known = mem.update(np.zeros_like(img), hide, now=2.5)
    assert not known.any()


def test_guard_keeps_matte_edges_out_of_the_plate():
    mem = BackgroundMemory(MemoryConfig(guard_px=2))
    img = np.full((20, 20, 3), 80, np.uint8)
    seen = np.ones((20, 20), bool)
    seen[:, 8:12] = False  # person
    mem.update(img, seen, now=0.0)
    never = np.isneginf(mem.last_seen)
    assert never[:, 6:14].all() and not never[:, :5].any()


def test_learning_every_second_frame_follows_the_same_course():
    """Learning from every second frame, twice as far each time: the plate after the
    same sightings is the one learnt frame by frame, to within a level of rounding."""
    rng = np.random.default_rng(3)
    frames = [np.clip(120 + 40 * np.sin(i / 5) + rng.normal(0, 3, (12, 12, 3)), 0, 255).astype(np.uint8)
              for i in range(40)]
    seen = np.ones((12, 12), bool)
    every, second = (BackgroundMemory(MemoryConfig(guard_px=0, learn_every=n)) for n in (1, 2))
    for i, img in enumerate(frames):
        every.update(img, seen, now=i / 30)
        second.update(img, seen, now=i / 30)
    assert np.abs(every.plate - second.plate).max() < 3.0
    # What a frame shows where the person stands is the plate, on every frame.
    hide = np.zeros_like(seen)
    a, ka = every.update(frames[0], hide, now=2.0)
    b, kb = second.update(frames[0], hide, now=2.0)
    assert ka.all() and kb.all() and np.abs(a.astype(int) - b).max() <= 3
