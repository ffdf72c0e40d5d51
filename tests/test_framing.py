"""Framing on synthetic feeds: the operator's calm, the aim, and drawing through a view."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from roomfuse.config import FramingConfig, LayoutConfig, MemoryConfig, PipelineConfig
from roomfuse.frames import Cutout, Frame, View
from roomfuse.framing import Face, Framer, Operator, Subject, aim, head_from_matte, spring
from roomfuse.layout import Placer, crop_plan, paste, view_geometry
from roomfuse.pipeline import Pipeline
from roomfuse.synthetic import SyntheticSource


def _subject(cx=0.5, eye=0.3, face=0.2):
    return Subject(cx=cx, eye=eye, face=face, x0=cx - 0.06, x1=cx + 0.06)


def test_spring_reaches_the_target_without_overshoot():
    x, v = np.zeros(1), np.zeros(1)
    omega = 4.74 / 0.6  # as the operator sets it for move_s = 0.6
    path = []
    for _ in range(60):
        x, v = spring(x, v, np.ones(1), omega, 1 / 30)
        path.append(float(x[0]))
    assert all(b >= a for a, b in zip(path, path[1:]))  # monotone: never back and forth
    assert max(path) <= 1.0 + 1e-9  # no overshoot
    assert path[17] >= 0.949  # 95 % after 0.6 s (18 frames)


def test_operator_ignores_noise_and_follows_a_real_move():
    cfg = FramingConfig()
    op = Operator(cfg, fps=30)
    rng = np.random.default_rng(0)
    views = []
    for i in range(90):
        # Detector noise and small nods: a few percent of a face height.
        if i % 6 == 0:
            op.observe(_subject(cx=0.5 + rng.normal(0, 0.004), eye=0.3 + rng.normal(0, 0.006),
                                face=0.2 * math.exp(rng.normal(0, 0.03))))
        views.append(op.step(aim({0: op.subject}, {0: 4 / 3}, cfg)[0]))
    assert op.reframes == 1  # framed once, when the person appeared
    assert all(v == views[0] for v in views)  # and never moved for noise
    # The person steps aside by a face width and a half: followed within about a second.
    moved_at = len(views)
    for i in range(60):
        if i % 6 == 0:
            op.observe(_subject(cx=0.7))
        views.append(op.step(aim({0: op.subject}, {0: 4 / 3}, cfg)[0]))
    xs = [v.cx for v in views[moved_at:]]
    assert op.reframes == 2
    arrived = next(i for i, x in enumerate(xs) if abs(x - 0.7) < 0.01)
    assert arrived <= 30  # frames at 30 fps: confirmation + the move, within a second
    assert all(b >= a - 1e-12 for a, b in zip(xs, xs[1:])) and max(xs) <= 0.7 + 1e-9
    assert xs[-1] == pytest.approx(0.7) and xs[-1] == xs[-2]  # settled exactly


def test_operator_holds_the_view_when_the_person_leaves():
    cfg = FramingConfig()
    op = Operator(cfg, fps=30)
    op.observe(_subject())
    first = op.step(aim({0: op.subject}, {0: 4 / 3}, cfg)[0])
    for _ in range(90):
        op.observe(None)
        last = op.step(aim({0: op.subject}, {0: 4 / 3}, cfg)[0])
    assert last == first and op.reframes == 1


def test_aim_gives_every_face_one_size_on_one_line():
    cfg = FramingConfig()
    far, near, mid = _subject(face=0.12), _subject(face=0.68, eye=0.5), _subject(face=0.3)
    views = aim({"far": far, "near": near, "mid": mid}, {k: 4 / 3 for k in ("far", "near", "mid")}, cfg)
    drawn = {k: views[k].zoom * s.face for k, s in (("far", far), ("near", near), ("mid", mid))}
    # The far person reaches 0.24 at the 2x limit; everyone is drawn that size.
    assert views["far"].zoom == pytest.approx(2.0)
    assert all(d == pytest.approx(0.24) for d in drawn.values())
    assert views["near"].eye == 0.5 and views["near"].zoom < 0.4


def test_aim_keeps_limits_for_a_very_far_person():
    cfg = FramingConfig()
    views = aim({"tiny": _subject(face=0.04), "near": _subject(face=0.4)}, {"tiny": 4 / 3, "near": 4 / 3}, cfg)
    assert views["tiny"].zoom == pytest.approx(cfg.max_zoom)  # never enlarged beyond the limit
    # Nobody is shrunk below the floor to match them.
    assert views["near"].zoom * 0.4 == pytest.approx(cfg.min_face_height)


def test_a_group_is_framed_together():
    cfg = FramingConfig()
    faces = [Face(0.1, 0.2, 0.08, 0.1, 0.24), Face(0.8, 0.25, 0.08, 0.1, 0.28)]
    group = Subject.of(faces)
    assert group.cx == pytest.approx((0.1 + 0.88) / 2) and group.eye == pytest.approx(0.26)
    v = aim({0: group}, {0: 16 / 9}, cfg)[0]
    # Both people stay inside the tile, with some room each side: no 2x zoom for them.
    s, x, _ = view_geometry((640, 360), (640, 360), v, cfg.eye_line)
    for f in faces:
        assert 0.05 * 640 < x + s * f.x * 640 and x + s * (f.x + f.w) * 640 < 0.95 * 640
    assert v.zoom < 1.4


def test_head_from_matte_finds_the_synthetic_head():
    src = SyntheticSource(seed=3)
    alpha = cv2.resize(src.truth_alpha(0.0), (256, 192), interpolation=cv2.INTER_AREA)
    face = head_from_matte(alpha)
    # The synthetic head is a circle of radius 0.11 h centred at (0.5 w, 0.30 h).
    assert face is not None
    assert abs(face.x + face.w / 2 - 0.5) < 0.02
    assert 0.2 < face.eye < 0.32
    assert 0.1 < face.h < 0.2
    assert head_from_matte(np.zeros((192, 256), np.float32)) is None


def test_plain_view_draws_today_layout():
    img = SyntheticSource(seed=1).frame_at(0).image
    s, x, y = view_geometry((640, 480), (480, 360), View(0.5, 0.38, 1.0), 0.38)
    assert (s, x, y) == (0.75, 0.0, 0.0)
    crop = crop_plan((640, 480), (s, s), (x, y), (480, 360))
    out = np.zeros((360, 480, 3), np.uint8)
    paste(out, img, crop, cv2.INTER_LINEAR)
    ref = cv2.resize(img, (480, 360), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out.astype(int) - ref).mean() < 1.0


def _cutout(src: SyntheticSource, t=0.0, size=None):
    f = src.frame_at(t)
    alpha = src.truth_alpha(t)
    if size is not None:
        f = Frame(cv2.resize(f.image, size, interpolation=cv2.INTER_AREA), f.pts, f.index)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    return Cutout(f, alpha)


def test_shrunk_picture_leaves_its_margins_unknown():
    placer = Placer(LayoutConfig(height=360, gap=32, order="given"), MemoryConfig(enabled=False))
    cut = _cutout(SyntheticSource(seed=2))
    view = View(0.5, 0.3, 0.5)  # half size, the person's eyes on the eye line
    canvas = placer([cut, cut], ["a", "b"], [view, View(0.5, 0.38, 1.0)])
    t = canvas.tiles[0]
    assert t.w == 288  # narrowed from 480 to a seat of 0.8 tile heights (the picture is 240 wide)
    tile_known = canvas.known[t.slices]
    rows = np.nonzero(tile_known.any(axis=1))[0]
    # The half-size picture (180 px tall) hangs from the eye line: above and below it the
    # tile is unknown, for the grower.
    assert rows[0] == pytest.approx(0.38 * 360 - 0.3 * 180, abs=2)
    assert rows[-1] + 1 == pytest.approx(rows[0] + 180, abs=2)
    assert not tile_known[:rows[0]].any() and not tile_known[rows[-1] + 1:].any()
    assert canvas.alpha[t.slices][:rows[0]].max() == 0
    # Where the picture ends inside the tile, the person fades out instead of a cut.
    bottom = canvas.alpha[t.slices][rows[-1]]
    assert bottom.max() < 0.2 and canvas.alpha[t.slices][rows[-1] - 30].max() > 0.9


def test_a_faded_torso_is_still_the_person_not_room():
    """The fade at a shrunk picture's cut edge is how the person is drawn, not what is
    room: under a torso that reaches the picture's bottom edge nothing is known
    background (taken for room, the shirt went into the memory and drew a dark line)."""
    placer = Placer(LayoutConfig(height=360, gap=32, order="given"), MemoryConfig())
    src = SyntheticSource(seed=2)
    cut = _cutout(src)
    alpha = cut.alpha.copy()
    alpha[-80:, 200:440] = 1.0                         # a torso down to the bottom edge
    cut = Cutout(cut.frame, alpha)
    canvas = placer([cut, cut], ["a", "b"], [View(0.5, 0.3, 0.5), View(0.5, 0.38, 1.0)])
    t = canvas.tiles[0]
    tile_known = canvas.known[t.slices]
    rows = np.nonzero(tile_known.any(axis=1))[0]
    shown = canvas.alpha[t.slices]
    torso = np.zeros(t.w, bool)
    cols = np.nonzero(shown[rows[-1] - 20] > 0.9)[0]
    torso[cols.min() + 3:cols.max() - 3] = True
    assert torso.sum() > 60
    assert shown[rows[-1], torso].max() < 0.2            # drawn faded out
    assert not tile_known[rows[-1] - 4:rows[-1] + 1][:, torso].any()   # and still not room


def test_zoomed_picture_covers_its_tile_and_keeps_the_eye_line():
    placer = Placer(LayoutConfig(height=360, gap=32, order="given"), MemoryConfig(enabled=False))
    cut = _cutout(SyntheticSource(seed=2))
    canvas = placer([cut], ["a"], [View(0.5, 0.3, 2.0)])
    t = canvas.tiles[0]
    alpha = canvas.alpha[t.slices]
    # The head (a circle at 0.30 h) is now centred on the eye line at 0.38 of the tile.
    col = alpha[:, t.w // 2] > 0.5
    head_top = np.argmax(col)
    assert head_top == pytest.approx(0.38 * 360 - 2 * 0.11 * 360, abs=4)
    assert (canvas.image[t.slices].sum(axis=2) > 0).all()  # no bare margin


def test_background_memory_follows_the_feed_through_a_reframe():
    placer = Placer(LayoutConfig(height=240, gap=16, order="given"), MemoryConfig())
    src = SyntheticSource(seed=5, sway=0.25, period_s=2.0)
    v = View(0.5, 0.3, 1.0)
    for i in range(30):  # the person sways: the memory sees the room behind them
        placer([_cutout(src, i / 30)], ["a"], [v])
    # A different view: the memory (kept in the picture's own coordinates) still knows
    # the room behind the person, and restores it in the right place.
    v2 = View(0.45, 0.3, 1.6)
    canvas = placer([_cutout(src, 1.0)], ["a"], [v2])
    t = canvas.tiles[0]
    hidden = canvas.alpha[t.slices] > 0.9
    assert canvas.known[t.slices][hidden].mean() > 0.8
    s, x, y = view_geometry((640, 480), (t.w, t.h), v2, 0.38)
    truth = cv2.warpAffine(src.background, np.float32([[s, 0, x], [0, s, y]]), (t.w, t.h))
    diff = np.abs(canvas.background[t.slices].astype(int) - truth)[hidden]
    assert np.median(diff) < 12


class _CloseUp:
    """A synthetic participant seen from nearer: the middle of the picture, enlarged."""

    def __init__(self, seed, zoom):
        self.src, self.zoom = SyntheticSource(seed=seed, sway=0.02), zoom

    def frame_at(self, t):
        f = self.src.frame_at(t)
        h, w = f.image.shape[:2]
        cw, ch = int(w / self.zoom), int(h / self.zoom)
        x0, y0 = (w - cw) // 2, int(0.3 * h - 0.3 * ch)
        img = cv2.resize(f.image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_NEAREST)
        return Frame(img, f.pts, f.index)


def _head_box(alpha):
    """Top and height of the synthetic head (the topmost blob of the matte)."""
    col = alpha.max(axis=1) > 0.5
    top = int(np.argmax(col))
    widths = (alpha > 0.5).sum(axis=1)
    # The head is a circle: its widest row is its middle.
    mid = top + int(np.argmax(widths[top:top + alpha.shape[0] // 3]))
    return top, 2 * (mid - top)


def test_pipeline_draws_near_and_far_people_the_same_size():
    feeds = [SyntheticSource(seed=1, sway=0.02), _CloseUp(seed=2, zoom=2.2)]
    cfg = PipelineConfig(framing=FramingConfig(), layout=LayoutConfig(height=360, gap=48, order="given"))
    with Pipeline(cfg, segmenter="key") as pipe:
        for i in range(20):
            r = pipe.process([s.frame_at(i / 30) for s in feeds])
    boxes = [_head_box(r.canvas.alpha[t.slices]) for t in r.canvas.tiles]
    (top_a, h_a), (top_b, h_b) = boxes
    assert max(h_a, h_b) / min(h_a, h_b) < 1.15
    assert abs((top_a + h_a / 2) - (top_b + h_b / 2)) < 0.03 * 360
    # Without framing they differ by the close-up's zoom.
    off = PipelineConfig(framing=FramingConfig(enabled=False), layout=cfg.layout)
    with Pipeline(off, segmenter="key") as pipe:
        r = pipe.process([s.frame_at(0) for s in feeds])
    (_, h_a), (_, h_b) = [_head_box(r.canvas.alpha[t.slices]) for t in r.canvas.tiles]
    assert h_b / h_a > 1.8


def test_framer_state_is_per_feed():
    framer = Framer(FramingConfig(), finder="matte", sync=True)
    a, b = SyntheticSource(seed=1), _CloseUp(seed=2, zoom=2.0)
    cut = lambda s: Cutout(s.frame_at(0), _key_alpha(s.frame_at(0)))  # noqa: E731
    va, vb = framer([cut(a), cut(b)], ["a", "b"])
    # Reordered: each feed keeps its own view.
    vb2, va2 = framer([cut(b), cut(a)], ["b", "a"])
    assert (va2.zoom, vb2.zoom) == pytest.approx((va.zoom, vb.zoom))
    # "a" leaves and "c" takes its place: "c" gets its own operator, not a's.
    old = framer.operators["a"]
    framer([cut(b), cut(a)], ["b", "c"])
    assert "a" not in framer.operators and framer.operators["c"] is not old
    framer.close()


def _key_alpha(frame):
    from roomfuse.segment import KeySegmenter

    return KeySegmenter()(frame).alpha


def test_looks_in_the_worker_thread_arrive_and_departures_are_clean():
    framer = Framer(FramingConfig(detect_hz=30), finder="matte")  # a look every frame
    a, b = SyntheticSource(seed=1, sway=0.3, period_s=1.0), SyntheticSource(seed=2)
    cut = lambda s, t: Cutout(s.frame_at(t), _key_alpha(s.frame_at(t)))  # noqa: E731
    for i in range(40):
        t = i / 30
        if i < 20:
            framer([cut(a, t), cut(b, t)], ["a", "b"])
        else:  # "a" leaves, maybe with a look in flight
            framer([cut(b, t)], ["b"])
        if i == 19:
            assert framer.operators["a"].reframes >= 2  # the swaying person was followed
    assert set(framer.operators) == {"b"} and not set(framer._pending) - {"b"}
    framer.close()


@pytest.mark.parametrize("command", ["render", "bench", "serve"])
@pytest.mark.parametrize("flag, value", [("--framing", "maybe"), ("--order", "random")])
def test_bad_framing_flags_are_one_line_and_exit_2(command, flag, value):
    import subprocess
    import sys

    args = [sys.executable, "-m", "roomfuse", command, flag, value]
    if command != "serve":
        args += ["synthetic:1"] + (["-o", "x.mp4"] if command == "render" else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and value in lines[0]


def test_views_ahead_need_each_feed_framed_once_and_looks_off_the_frame_path():
    """Before a frame is segmented its views come from the looks taken so far; a new feed
    (framed from its first look) and a framer that looks on the frame path need the
    frame's people first: no views ahead then."""
    a, b = SyntheticSource(seed=1), _CloseUp(seed=2, zoom=2.0)
    cut = lambda s: Cutout(s.frame_at(0), _key_alpha(s.frame_at(0)))  # noqa: E731
    sizes = [(640, 480), (640, 480)]
    framer = Framer(FramingConfig(), finder="matte")
    assert framer.views_ahead(sizes, ["a", "b"]) is None
    views = framer([cut(a), cut(b)], ["a", "b"])
    ahead = framer.views_ahead(sizes, ["a", "b"])
    assert [v.zoom for v in ahead] == pytest.approx([v.zoom for v in views], rel=0.05)
    assert framer.views_ahead(sizes, ["a", "c"]) is None  # "c" is new
    framer.close()
    sync = Framer(FramingConfig(), finder="matte", sync=True)
    sync([cut(a), cut(b)], ["a", "b"])
    assert sync.views_ahead(sizes, ["a", "b"]) is None
    sync.close()
