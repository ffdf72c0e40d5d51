"""Layout: tiles for 1-8 feeds in a row or grid, and placing feeds on the canvas."""
from __future__ import annotations

import numpy as np
import pytest

from roomfuse.config import LayoutConfig, MemoryConfig
from roomfuse.frames import Cutout, Frame, Rect
from roomfuse.layout import LayoutError, Placer, plan_layout


def test_row_of_two_webcams():
    plan = plan_layout([(640, 480), (640, 360)], LayoutConfig(height=360, gap=64))
    a, b = plan.tiles
    assert a == Rect(0, 0, 480, 360)
    assert b == Rect(480 + 64, 0, 640, 360)
    assert plan.size == (480 + 64 + 640, 360)


def test_margin_surrounds_the_row():
    plan = plan_layout([(640, 480)] * 3, LayoutConfig(height=400, gap=20, margin=20))
    assert all(t.h == 360 and t.y == 20 for t in plan.tiles)
    assert plan.tiles[0].x == 20
    assert plan.size[0] == 20 + 3 * 480 + 2 * 20 + 20


@pytest.mark.parametrize("n, rows", [(4, 2), (5, 2), (8, 3)])
def test_grid(n, rows):
    cfg = LayoutConfig(height=720, gap=32, mode="grid")
    plan = plan_layout([(640, 360)] * n, cfg)
    ys = sorted({t.y for t in plan.tiles})
    assert len(ys) == rows
    assert all(t.h == plan.tiles[0].h for t in plan.tiles)
    # No two tiles overlap, and neighbours keep the gap.
    for i, a in enumerate(plan.tiles):
        for b in plan.tiles[i + 1:]:
            sep_x = max(b.x - (a.x + a.w), a.x - (b.x + b.w))
            sep_y = max(b.y - (a.y + a.h), a.y - (b.y + b.h))
            assert max(sep_x, sep_y) >= 32
    w, h = plan.size
    assert all(0 <= t.x and t.x + t.w <= w and 0 <= t.y and t.y + t.h <= h for t in plan.tiles)


def test_fixed_canvas_fits_and_centres():
    plan = plan_layout([(640, 360)], LayoutConfig(gap=64), canvas_size=(1280, 360))
    (t,) = plan.tiles
    assert plan.size == (1280, 360) and t.h == 360 and t.x == (1280 - 640) // 2
    plan = plan_layout([(640, 360)] * 3, LayoutConfig(gap=64), canvas_size=(1280, 360))
    assert sum(t.w for t in plan.tiles) + 2 * 64 <= 1280


@pytest.mark.parametrize("sizes, cfg", [
    ([], LayoutConfig()),
    ([(640, 480)] * 9, LayoutConfig()),
    ([(640, 480)], LayoutConfig(mode="circle")),
    ([(640, 480)] * 2, LayoutConfig(height=40, gap=10, margin=20)),
])
def test_bad_layouts_are_clear_errors(sizes, cfg):
    with pytest.raises(LayoutError):
        plan_layout(sizes, cfg)


def _cutout(color, person_cols, size=(64, 48), pts=0.0):
    w, h = size
    img = np.full((h, w, 3), color, np.uint8)
    alpha = np.zeros((h, w), np.float32)
    alpha[:, person_cols[0]:person_cols[1]] = 1.0
    img[alpha > 0.5] = (255, 0, 255)
    return Cutout(Frame(img, pts, 0), alpha)


def test_placer_marks_gap_and_people_unknown():
    placer = Placer(LayoutConfig(height=48, gap=16), MemoryConfig(enabled=False))
    canvas = placer([_cutout(50, (20, 30)), _cutout(200, (10, 20))])
    assert canvas.size == (64 + 16 + 64, 48)
    assert not canvas.known[:, 64:80].any()  # the gap
    assert not canvas.known[:, 20:30].any()  # the first person
    assert canvas.known[:, :18].all() and canvas.known[:, 100:].all()
    assert (canvas.image[:, 110] == (200, 200, 200)).all()
    assert (canvas.image[:, 92] == (255, 0, 255)).all()
    assert canvas.alpha[:, 25].min() == 1.0 and canvas.alpha[:, 70].max() == 0.0


def test_feeds_drawn_two_at_a_time_make_the_same_canvas():
    from concurrent.futures import ThreadPoolExecutor

    from roomfuse.frames import View

    cuts = [_cutout(40 * i + 30, (5 * i, 5 * i + 12)) for i in range(4)]
    # Plain, and through views that enlarge, shrink and shift the pictures.
    for views in (None, [View(0.5, 0.4, 1.5), View(0.3, 0.5, 0.6), View(0.6, 0.3, 1.0), View(0.5, 0.5, 2.0)]):
        alone = Placer(LayoutConfig(height=48, gap=16))
        with ThreadPoolExecutor(1) as pool:
            paired = Placer(LayoutConfig(height=48, gap=16), pool=pool)
            _same_canvases(alone, paired, cuts, views)


def _same_canvases(alone, paired, cuts, views):
    for pts in range(3):
        cuts = [Cutout(Frame(c.frame.image, pts / 30, pts), c.alpha) for c in cuts]
        a, b = alone(cuts, views=views), paired(cuts, views=views)
        for name in ("image", "background", "known", "alpha"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.pictures == b.pictures and a.known.any() and not a.known.all()


def test_tiles_slide_when_someone_joins():
    """On a fixed canvas a new participant makes the others slide, not jump."""
    placer = Placer(LayoutConfig(gap=16), MemoryConfig(enabled=False), canvas_size=(320, 48), slide_frames=4)
    placer([_cutout(50, (0, 1))], keys=["a"])
    start = placer.plan.tiles[0].x
    xs = [placer([_cutout(50, (0, 1)), _cutout(90, (0, 1))], keys=["a", "b"]).tiles[0].x for _ in range(6)]
    end = placer.plan.tiles[0].x
    assert start > end
    assert xs[0] < start and xs[0] > end  # first frame: part of the way
    assert xs == sorted(xs, reverse=True)  # moving steadily one way
    assert xs[-1] == end and xs[3] == end  # arrived after slide_frames


def test_rects_scaled_with_the_canvas_still_meet_and_keep_their_gaps():
    from roomfuse.layout import scale_rect

    tiles = plan_layout([(640, 480)] * 4, LayoutConfig(height=720, gap=64)).tiles
    half = [scale_rect(t, 0.5, 0.5) for t in tiles]
    assert half[0] == Rect(tiles[0].x // 2, 0, tiles[0].w // 2, 360)
    for a, b, big_a, big_b in zip(half, half[1:], tiles, tiles[1:]):
        assert b.x - (a.x + a.w) == (big_b.x - (big_a.x + big_a.w)) // 2  # the gap, halved
    # Odd factors: the edges are scaled, so neighbours share them exactly.
    third = [scale_rect(Rect(x, 0, 7, 9), 1 / 3, 1 / 3) for x in range(0, 70, 7)]
    assert all(a.x + a.w == b.x for a, b in zip(third, third[1:]))


def test_enlarged_pictures_are_drawn_at_the_cameras_detail():
    """Pictures enlarged twice or more are drawn on a canvas the whole part of that
    smaller; the canvas says the size and tiles it is shown at."""
    cuts = [_cutout(60 + 50 * i, (10, 22), size=(64, 48)) for i in range(2)]
    cfg = LayoutConfig(height=144, gap=24)  # 64x48 pictures drawn 3x
    full = Placer(LayoutConfig(height=144, gap=24, at_detail=False), MemoryConfig(enabled=False))
    small = Placer(cfg, MemoryConfig(enabled=False))
    a, b = full(cuts), small(cuts)
    assert small.work == 3 and full.work == 1
    assert a.size == a.output_size == (2 * 192 + 24, 144)
    assert b.output_size == a.size and b.output_tiles == a.tiles
    assert b.size == (136, 48) and b.tiles == (Rect(0, 0, 64, 48), Rect(72, 0, 64, 48))
    # The same pictures, at the cameras' own pixels: the person's columns and the room.
    assert np.array_equal(b.image[:, :64], cuts[0].frame.image)
    assert np.array_equal(b.alpha[:, 72:], cuts[1].alpha)
    assert not b.known[:, 64:72].any() and b.known[:, :10].all()


def test_the_detail_factor_holds_within_a_band_as_a_view_zooms():
    from roomfuse.frames import View

    placer = Placer(LayoutConfig(height=96, gap=16), MemoryConfig(enabled=False))
    cuts = [_cutout(90, (20, 30), size=(64, 48))]

    def factor(zoom):
        # 48 px tall pictures in 96 px tiles: drawn 2 * zoom times their size.
        placer(cuts, views=[View(0.5, 0.4, zoom)])
        return placer.work

    assert [factor(z) for z in (0.9, 1.0, 0.95, 0.91, 0.89, 0.99, 1.5, 1.4, 1.3)] == \
        [1, 2, 2, 2, 1, 1, 3, 3, 2]
