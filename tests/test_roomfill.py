"""The cached room fill: built off the frame path, applied per frame, dropped with its layout."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from roomfuse.config import LayoutConfig, PipelineConfig, RoomFillConfig
from roomfuse.frames import Canvas, Rect
from roomfuse.pipeline import Pipeline
from roomfuse.roomfill import PERSON_RIM, RoomFill, at_detail, match_edges, source_pixels, tile_rooms
from roomfuse.synthetic import SyntheticSource

W, H = 200, 80
TILES = (Rect(0, 0, 80, 80), Rect(120, 0, 80, 80))


def make_canvas(tiles=TILES, shade=0.0, patch=None) -> Canvas:
    rng = np.random.default_rng(0)
    bg = np.zeros((H, W, 3), np.float32)
    known = np.zeros((H, W), bool)
    for r, colour in zip(tiles, ((200, 80, 60), (60, 90, 190))):
        ys, xs = r.slices
        bg[ys, xs] = np.array(colour, np.float32) + rng.normal(0, 4, (r.h, r.w, 3))
        known[ys, xs] = True
    bg = np.clip(bg + shade, 0, 255)
    if patch is not None:
        bg[patch] = 255
    bg = bg.astype(np.uint8)
    return Canvas(image=bg, background=bg, known=known, alpha=np.zeros((H, W), np.float32), tiles=tuple(tiles))


class Builder:
    """A stand-in still fill: each unknown pixel takes the mean colour of its nearest
    tile's room, so what the cache does with it is easy to check."""

    def __init__(self, fail=False, gate: threading.Event | None = None):
        self.calls = []
        self.fail = fail
        self.gate = gate

    def __call__(self, image, known, rooms, targets, cancel):
        self.calls.append(rooms.max() + 1)
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("no fill today")
        out = image.copy()
        left = image[:, :W // 2][known[:, :W // 2]].mean(axis=0)
        right = image[:, W // 2:][known[:, W // 2:]].mean(axis=0)
        out[:, :W // 2][~known[:, :W // 2]] = left
        out[:, W // 2:][~known[:, W // 2:]] = right
        return out


def cfg(**kw) -> RoomFillConfig:
    base = dict(inline=True, fade_s=0.5, check_frames=2, min_interval_s=0.0, correct_frames=1)
    base.update(kw)
    return RoomFillConfig(**base)


def test_nothing_until_the_tiles_settle_then_the_fill_fades_in():
    build = Builder()
    fill = RoomFill(cfg(), build, fps=10)
    assert fill.frame(make_canvas()) is None          # first sight of these tiles
    first = fill.frame(make_canvas())                 # settled: built inline
    assert len(build.calls) == 1 and 0 < first.opacity < 1
    seen = [first.opacity]
    for _ in range(6):
        seen.append(fill.frame(make_canvas()).opacity)
    assert seen == sorted(seen) and seen[-1] == 1.0
    gap = first.image[:, 80:120]
    assert np.abs(gap[:, :20].astype(int) - (200, 80, 60)).max() < 10   # the left room's colour
    # It applies everywhere outside the pictures.
    assert not first.where[:, 78:80].any() and first.where[:, 80:120].all()


def test_a_layout_change_drops_the_fill_at_once_and_builds_anew():
    build = Builder()
    fill = RoomFill(cfg(), build, fps=10)
    for _ in range(8):
        fill.frame(make_canvas())
    moved = (Rect(0, 0, 80, 80), Rect(100, 0, 80, 80))
    assert fill.frame(make_canvas(moved)) is None     # nothing of the old layout remains
    assert fill.frame(make_canvas(moved)) is not None  # settled: a fill for the new tiles
    assert len(build.calls) == 2


def test_the_fill_follows_a_change_of_light_without_a_rebuild():
    build = Builder()
    fill = RoomFill(cfg(), build, fps=10)
    fill.frame(make_canvas())
    for _ in range(8):
        before = fill.frame(make_canvas()).image
    for _ in range(6):
        after = fill.frame(make_canvas(shade=30.0)).image
    gap = (slice(None), slice(85, 115))
    shift = after[gap].astype(float).mean() - before[gap].astype(float).mean()
    assert 24 < shift < 36
    assert len(build.calls) == 1


def test_a_picture_that_drifts_is_rebuilt_and_one_that_jumps_is_dropped():
    build = Builder()
    fill = RoomFill(cfg(band=4, rebuild_px=3, drop_px=12), build, fps=10)
    for _ in range(8):
        assert fill.frame(make_canvas()) is not None or len(build.calls) == 0
    assert len(build.calls) == 1
    canvas = make_canvas()
    drifted = Canvas(**{**canvas.__dict__, "pictures": (Rect(0, 0, 76, 80), TILES[1])})
    for _ in range(4):
        assert fill.frame(drifted) is not None         # still shown while a new one is built
    assert len(build.calls) == 2
    jumped = Canvas(**{**canvas.__dict__, "pictures": (Rect(0, 0, 60, 80), TILES[1])})
    after = fill.frame(jumped)   # too far from what it was built for: not shown; a new
    assert len(build.calls) == 3 and after.opacity < 1  # one is built and fades in


def test_a_local_change_of_the_room_is_rebuilt():
    build = Builder()
    fill = RoomFill(cfg(), build, fps=10)
    for _ in range(8):
        fill.frame(make_canvas())
    for _ in range(6):
        fill.frame(make_canvas(patch=(slice(0, 40), slice(40, 80))))  # a lamp switched on by the gap
    assert len(build.calls) == 2


def test_a_failing_build_leaves_the_live_fill(caplog):
    fill = RoomFill(cfg(), Builder(fail=True), fps=10)
    for _ in range(4):
        assert fill.frame(make_canvas()) is None
    assert "room fill failed (RuntimeError: no fill today)" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.timeout(30)
def test_the_worker_never_holds_up_a_frame():
    gate = threading.Event()
    build = Builder(gate=gate)
    fill = RoomFill(cfg(inline=False), build, fps=10)
    try:
        for _ in range(20):          # the build is stuck; frames go on without it
            assert fill.frame(make_canvas()) is None
        gate.set()
        deadline = time.monotonic() + 10
        while fill.frame(make_canvas()) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(build.calls) == 1
    finally:
        gate.set()
        fill.close()


def test_tile_rooms_numbers_each_tile():
    rooms = tile_rooms((W, H), TILES)
    assert rooms[10, 10] == 0 and rooms[10, 150] == 1 and rooms[10, 100] == -1


def _palette_share(pixels: np.ndarray, room: np.ndarray, other: np.ndarray) -> float:
    """Share of ``pixels`` whose colour is found in ``room`` (within 12) and not in
    ``other`` (nothing within 24)."""
    rng = np.random.default_rng(0)
    pick = lambda img: img.reshape(-1, 3)[rng.choice(img.shape[0] * img.shape[1], 1500, replace=False)]
    p = pixels[rng.choice(len(pixels), min(3000, len(pixels)), replace=False)].astype(np.float32)
    d_room = np.abs(p[:, None] - pick(room)[None].astype(np.float32)).max(axis=2).min(axis=1)
    d_other = np.abs(p[:, None] - pick(other)[None].astype(np.float32)).max(axis=2).min(axis=1)
    return float(((d_room < 12) & (d_other > 24)).mean())


def test_nothing_of_a_departed_participant_remains_after_a_second():
    """Two synthetic participants on a fixed canvas; one fades out and leaves. One second
    after, the room looks as it would had the one who stays been alone from the start, and
    nothing around them has the colours of the departed one's room."""
    size = (640, 240)
    config = PipelineConfig(layout=LayoutConfig(height=240, gap=48, mode="row"),
                            fill=RoomFillConfig(inline=True))
    a, b = SyntheticSource(seed=3, size=(320, 240)), SyntheticSource(seed=11, size=(320, 240))
    pipe = Pipeline(config, segmenter="key", canvas_size=size)
    alone = Pipeline(config, segmenter="key", canvas_size=size)  # A, never with B
    try:
        fps, both, fade = 30, 45, 15
        for i in range(both + fade):
            t = i / fps
            op = 1.0 if i < both else 1 - (i - both + 1) / fade
            r = pipe.process([a.frame_at(t), b.frame_at(t)], ["a", "b"], opacity=[1.0, op])
            alone.process([a.frame_at(t)], ["a"])
        outside = tile_rooms(size, r.canvas.tiles) < 0
        before = _palette_share(r.grown[outside], b.background, a.background)
        for k in range(31):
            t = (both + fade + k) / fps
            r = pipe.process([a.frame_at(t)], ["a"])
            q = alone.process([a.frame_at(t)], ["a"])
            if k == 0:
                d = np.abs(r.image.astype(np.int16) - q.image).max(axis=2)
                assert d.mean() > 30 and (d > 24).mean() > 0.2  # B's room is still showing
        outside = tile_rooms(size, r.canvas.tiles) < 0
        after = _palette_share(r.grown[outside], b.background, a.background)
        assert before > 0.05          # the departed room was in the fill
        assert after < 0.005          # and a second later none of it is
        d = np.abs(r.image.astype(np.int16) - q.image).max(axis=2)
        # What is left differs only as two fills of the same room differ (about 10 and 5 %).
        assert d.mean() < 15 and (d > 24).mean() < 0.08, (d.mean(), (d > 24).mean())
    finally:
        pipe.close()
        alone.close()


def test_the_rim_of_a_person_is_not_copied_out_as_room():
    """A segmentation edge bleeds (a dark rim of shirt along a shoulder, the last rows of
    a torso at a picture's bottom edge, kept in the plate as room). The fill is built
    from the plates without a rim of PERSON_RIM pixels around what people hide inside the
    pictures; the rest of the plates, and the plate the fill is compared with, stay."""
    seen = []

    def build(image, known, rooms, targets, cancel):
        seen.append(known.copy())
        return image.copy()

    canvas = make_canvas()
    known = canvas.known.copy()
    known[30:80, 20:50] = False                       # a person in the left picture
    canvas = Canvas(image=canvas.image, background=canvas.background, known=known,
                    alpha=canvas.alpha, tiles=canvas.tiles)
    fill = RoomFill(cfg(), build, fps=10)
    fill.frame(canvas)
    fill.frame(canvas)
    used = seen[-1]
    assert np.array_equal(source_pixels(known, canvas.tiles), used)
    rim = known & ~used
    ys, xs = np.nonzero(rim)
    # Exactly the pixels within PERSON_RIM of the person (on the picture's side of it).
    assert ys.min() == 30 - PERSON_RIM and xs.min() == 20 - PERSON_RIM and xs.max() == 49 + PERSON_RIM
    assert used[:30 - PERSON_RIM].all() == known[:30 - PERSON_RIM].all()
    assert np.array_equal(used[:, 120:], known[:, 120:])  # the other picture is untouched
    assert not rim[:, 80:].any()


def test_the_fill_meets_each_picture_as_it_is_now():
    """A camera that moved a little since the fill was built leaves a step where the
    fill meets the picture; match_edges takes it away, fading into the fill, and leaves
    the fill alone where a person reaches the edge."""
    rng = np.random.default_rng(3)
    h, w = 60, 100
    pic = Rect(50, 0, 50, 60)
    fill = np.full((h, w, 3), 100.0, np.float32) + rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    live = np.zeros((h, w, 3), np.uint8)
    live[:, 50:] = 100
    live[10:30, 50:] = 160                    # a shelf that is now 60 brighter at the edge
    known = np.zeros((h, w), bool)
    known[:, 50:] = True
    known[40:, 50:52] = False                 # a person at the edge below
    before = fill.copy()
    match_edges(fill, live, known, [pic])
    step = lambda img, rows: np.abs(live[rows, 50].astype(np.float32) - img[rows, 49]).mean()  # noqa: E731
    assert step(before, slice(14, 26)) > 55
    assert step(fill, slice(14, 26)) < 3
    # It fades into the fill, not a band across it.
    assert 20 < (fill[14:26, 45] - before[14:26, 45]).mean() < 50
    assert np.abs(fill[14:26, :30] - before[14:26, :30]).max() < 3
    # Beside the person the fill is as built.
    assert np.abs(fill[46:, 38:50] - before[46:, 38:50]).max() < 1e-3


def test_the_fill_is_built_at_the_detail_the_cameras_give():
    h, w = 720, 1984
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (90, 248, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    known = np.ones((h, w), bool)
    known[:, 960:1024] = False  # the gap
    known[:100, :400] = False   # a margin above a shrunk picture
    rooms = np.zeros((h, w), np.int32)
    rooms[:, 992:] = 1
    targets = ~known
    seen = {}

    def fill(img, kn, rm, tg, cancel):
        seen.update(shape=kn.shape, known=kn.copy(), rooms=rm.copy(), image=img.copy())
        out = img.copy()
        out[~kn] = (10, 200, 30)
        return out

    out = at_detail(fill, 2.3, image, known, rooms, targets, None)
    assert out.shape == image.shape
    assert seen["shape"] == (h // 2, w // 2)  # by the whole part of the detail
    # A cell is known only where all of it was.
    assert not seen["known"][:, 480:512].any() and seen["known"][60:, :480].all()
    assert not seen["known"][:50, :200].any()
    assert set(np.unique(seen["rooms"])) == {0, 1}
    # The fill comes back at the canvas's size, where it was unknown.
    assert np.abs(out[300:, 975:1010].astype(int) - (10, 200, 30)).max() < 3
    assert np.abs(out[400:, 100:900].astype(int) - image[400:, 100:900]).mean() < 3
    # A picture drawn at its camera's size, or less than twice it: built as it is.
    at_detail(fill, 1.9, image, known, rooms, targets, None)
    assert seen["shape"] == (h, w)


@pytest.mark.timeout(30)
def test_a_build_for_seats_that_are_gone_is_stopped():
    gate = threading.Event()
    seen = []

    class Slow(Builder):
        def __call__(self, image, known, rooms, targets, cancel):
            seen.append(cancel)
            assert gate.wait(10)
            if cancel.is_set():
                from roomfuse.growth.texture import Cancelled
                raise Cancelled("stopped")
            return super().__call__(image, known, rooms, targets, cancel)

    fill = RoomFill(cfg(inline=False), Slow(), fps=10)
    try:
        for _ in range(3):
            fill.frame(make_canvas())
        deadline = time.monotonic() + 10
        while not seen:  # the worker has taken the build up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(seen) == 1 and not seen[0].is_set()
        moved = (Rect(0, 0, 80, 80), Rect(100, 0, 80, 80))
        fill.frame(make_canvas(moved))  # the seats moved on: the build in flight is told to stop
        assert seen[0].is_set()
        gate.set()
        deadline = time.monotonic() + 10
        while fill.frame(make_canvas(moved)) is None:  # and one for the new seats follows
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(seen) == 2 and not seen[1].is_set()
    finally:
        gate.set()
        fill.close()


def test_room_newly_seen_deep_inside_a_picture_needs_no_new_fill():
    """A person who moved aside uncovers their room: near the gap it changes what the
    fill continues (rebuilt); in the middle of a wide picture the fill would not change."""
    wide = (Rect(0, 0, 96, 80), Rect(136, 0, 64, 80))
    for hidden, rebuilt in (((slice(8, 72), slice(30, 60)), False), ((slice(8, 72), slice(74, 96)), True)):
        build = Builder()
        fill = RoomFill(cfg(min_interval_s=0.0), build, fps=10)
        before = make_canvas(wide)
        known = before.known.copy()
        known[hidden] = False  # a person stands there while the fill is built
        before = Canvas(image=before.image, background=before.background, known=known,
                        alpha=before.alpha, tiles=wide)
        for _ in range(3):
            fill.frame(before)
        assert len(build.calls) == 1
        for _ in range(6):  # they moved away: their room is seen
            fill.frame(make_canvas(wide))
        assert (len(build.calls) == 2) == rebuilt, hidden
