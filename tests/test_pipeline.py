"""The whole chain: synthetic feeds (no model) and real clips (mediapipe, real video)."""
from __future__ import annotations

import json
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from roomfuse.config import LayoutConfig, PipelineConfig
from roomfuse.pipeline import STAGES, Pipeline, StageTimer
from roomfuse.synthetic import PERSON_RGB, SyntheticSource


def _run_synthetic(n_frames=8, **layout):
    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2)]
    cfg = PipelineConfig(layout=LayoutConfig(height=240, gap=48, **layout))
    with Pipeline(cfg, segmenter="key") as pipe:
        for i in range(n_frames):
            timer = StageTimer()
            result = pipe.process([s.frame_at(i / 30) for s in srcs], timer=timer)
    return srcs, result


def test_synthetic_two_feeds_end_to_end():
    srcs, r = _run_synthetic()
    a, b = r.canvas.tiles
    assert r.image.shape == (240, a.w + 48 + b.w, 3)
    assert set(r.ms) >= {"feeds", "layout", "grow", "composite"}  # each feed drawn as it is segmented
    # The gap is grown (no black), between the two rooms' colours.
    gap = r.image[:, a.x + a.w:b.x].reshape(-1, 3).astype(float)
    assert gap.mean(axis=1).min() > 15
    # People are back on top, in their own colour.
    person = r.canvas.alpha > 0.99
    assert person.sum() > 5000
    assert np.abs(r.image[person].astype(int) - PERSON_RGB).mean() < 20
    # Away from people and gaps the room is the room (up to the colour harmonisation).
    ys, xs = a.slices
    room = srcs[0].background
    tile_bg = r.canvas.known[ys, xs]
    resized = cv2.resize(room, (a.w, a.h), interpolation=cv2.INTER_LINEAR)
    diff = np.abs(r.image[ys, xs].astype(int) - resized.astype(int))[tile_bg]
    assert np.median(diff) < 25


def test_grid_layout_runs():
    srcs = [SyntheticSource(seed=s) for s in range(3)]
    cfg = PipelineConfig(layout=LayoutConfig(height=240, gap=16, mode="grid"))
    with Pipeline(cfg, segmenter="key") as pipe:
        r = pipe.process([s.frame_at(0) for s in srcs])
    assert len({t.y for t in r.canvas.tiles}) == 2
    assert r.grown[~r.canvas.known].mean() > 15


def _render(tmp_path, clips, frames=45, extra=()):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "room.mp4"
    cmd = [sys.executable, "-m", "roomfuse", "render", *map(str, clips), "-o", str(out),
           "--frames", str(frames), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with av.open(str(out)) as c:
        frames_out = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames_out


@pytest.fixture(scope="module")
def two_room_render(tmp_path_factory, data_dir):
    clips = [data_dir / "person_clips" / "intel_asl_bird.mkv", data_dir / "person_clips" / "pyfeat_single_face.mp4"]
    # The plain layout (known tile borders); the framed one is tested in test_framing.py.
    frames = _render(tmp_path_factory.mktemp("render"), clips, extra=("--framing", "off", "--order", "given"))
    return frames


def test_render_two_rooms_shows_both_people(two_room_render):
    import mediapipe as mp

    frames = two_room_render
    assert len(frames) == 45
    h, w = frames[0].shape[:2]
    assert (w, h) == (480 + 64 + 640, 360)
    seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
    for f in frames[5::10]:
        # Each feed's place on the canvas, segmented on its own (as a webcam frame).
        for name, crop in (("first", f[:, :480]), ("second", f[:, 544:])):
            mask = seg.process(np.ascontiguousarray(crop)).segmentation_mask > 0.5
            assert mask.mean() > 0.08, f"{name} person missing"
    seg.close()


def test_render_fills_the_gap_without_a_band_or_seam(two_room_render):
    for f in two_room_render[::15]:
        f = f.astype(np.float32)
        gap = f[:, 480:544]
        # Not black, not flat: the grown gap carries the rooms' structure down the frame.
        assert gap.mean() > 40
        assert gap.mean(axis=2).std(axis=0).min() > 8
        # No seam: the step from the feed into the fill is no larger than the
        # changes next to it, on either side.
        step = lambda x: np.abs(f[:, x + 1] - f[:, x]).mean()  # noqa: E731
        for edge in (479, 543):
            around = np.mean([step(edge + d) for d in (-6, -4, -2, 2, 4, 6)])
            assert step(edge) < 2.5 * around + 2.0, f"seam at x={edge}"


def test_bench_writes_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    cmd = [sys.executable, "-m", "roomfuse", "bench", "synthetic:1", "synthetic:2", "--segmenter", "key",
           "--frames", "20", "--warmup", "3", "--json", str(out_json), "--plot", str(out_png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out_json.read_text())
    assert r["frames"] == 20 and r["canvas"] == [480 + 64 + 480, 360] and r["grower"] == "nca"
    assert r["device"] == "cpu" and r["fps"] > 0
    # Each feed drawn as soon as it is segmented ("feeds"); "segment" alone runs only
    # for a new feed (a warm-up frame here) or mid-slide, so it is left out.
    assert set(r["stages"]) == set(STAGES) - {"segment"}
    for v in r["stages"].values():
        assert 0 <= v["p50_ms"] <= v["p95_ms"] and 0 <= v["share"] <= 1
    assert abs(sum(v["share"] for v in r["stages"].values()) - 1) < 0.01
    assert r["cpu_ms_per_frame"] > 0
    assert r["fill"]["builds"] >= 0 and 0 <= r["fill"]["timed_frames"] <= 20
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert "end to end" in proc.stdout and "room fill:" in proc.stdout and "share" in proc.stdout


def test_bench_says_the_size_it_works_at(tmp_path):
    """640x480 feeds drawn twice their size: worked at half the canvas unless told not to."""
    for detail, work in (("camera", [1312, 480]), ("canvas", [2624, 960])):
        out_json = tmp_path / f"{detail}.json"
        cmd = [sys.executable, "-m", "roomfuse", "bench", "synthetic:1", "synthetic:2", "--segmenter", "key",
               "--framing", "off", "--height", "960", "--room-fill", "off", "--frames", "3", "--warmup", "1",
               "--detail", detail, "--json", str(out_json)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        r = json.loads(out_json.read_text())
        assert r["canvas"] == [2624, 960] and r["work"] == work
        assert ("worked at 1312x480" in proc.stdout) == (detail == "camera")


def test_bench_can_wait_for_the_room_fill(tmp_path):
    out_json = tmp_path / "b.json"
    cmd = [sys.executable, "-m", "roomfuse", "bench", "synthetic:1", "synthetic:2", "--segmenter", "key",
           "--frames", "10", "--warmup", "3", "--settle", "120", "--json", str(out_json)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out_json.read_text())
    # Timed only once the fill was in place: it applies in every timed frame.
    assert r["fill"]["builds"] >= 1 and r["fill"]["timed_frames"] == 10
    assert r["fill"]["first_frame"] >= 3


def test_render_builds_the_room_fill_inline_so_two_renders_agree(tmp_path):
    """render builds the room fill in the frame's thread: the same clips give the same
    video however busy the machine is; --room-fill off leaves the gap to the grower."""
    clips = ["synthetic:3", "synthetic:8"]
    extra = ("--segmenter", "key", "--height", "240", "--gap", "64", "--framing", "off")
    a = _render(tmp_path / "a", clips, frames=40, extra=extra)
    b = _render(tmp_path / "b", clips, frames=40, extra=extra)
    off = _render(tmp_path / "off", clips, frames=40, extra=(*extra, "--room-fill", "off"))
    assert len(a) == len(b) == len(off) == 40
    diff = [np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]
    assert max(diff) < 0.2, diff
    assert np.abs(a[-1].astype(int) - off[-1]).mean() > 1.0   # the fill did change the room


class _CountingGrower:
    """A grower that fills every unknown pixel with the number of its call, so a test
    can tell which frame's work a composite shows (the subject here is the pipeline's
    scheduling, not the growth model)."""

    def __init__(self):
        self.calls = 0
        self.resets = 0

    def fill(self, image, known, covered=None):
        self.calls += 1
        out = image.copy()
        out[~known] = self.calls
        return out

    def reset(self):
        self.resets += 1


def _grow_pipeline(behind: bool, every: int = 1):
    from dataclasses import replace
    cfg = PipelineConfig(layout=LayoutConfig(height=240, gap=48))
    cfg = replace(cfg, grow=replace(cfg.grow, behind=behind, every=every), fill=replace(cfg.fill, enabled=False))
    grower = _CountingGrower()
    return Pipeline(cfg, segmenter="key", grower=grower), grower


def test_growing_one_frame_behind_shows_the_last_fill_under_this_frames_room():
    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2)]
    pipe, grower = _grow_pipeline(behind=True)
    with pipe:
        results = [pipe.process([s.frame_at(i / 30) for s in srcs]) for i in range(30)]
        # Every frame's canvas is grown exactly once, in order, one at a time.
        pipe._finish_growing()
        assert grower.calls == 30
    for i in range(20, 30):
        r = results[i]
        known = r.canvas.known
        # This frame's room where it is known, to the bit ...
        assert np.array_equal(r.grown[known], r.canvas.background[known])
        # ... where it was known a frame ago and is not now, that frame's room; and
        # where it is unknown in both, the fill grown from the canvas just before (call
        # i: frame 0 was grown at once, then each canvas beside the next frame).
        before = results[i - 1].canvas
        newly = before.known & ~known
        assert np.array_equal(r.grown[newly], before.background[newly])
        values = np.unique(r.grown[~known & ~before.known])
        assert values.tolist() == [i]


def test_growing_behind_is_synchronous_while_seats_move_and_the_same_otherwise():
    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2), SyntheticSource(seed=3)]
    now, now_grower = _grow_pipeline(behind=False)
    late, late_grower = _grow_pipeline(behind=True)
    moving = 0
    with now, late:
        for i in range(20):
            feeds = srcs if i < 10 else srcs[:2]  # someone leaves: the seats slide
            a = now.process([s.frame_at(i / 30) for s in feeds])
            b = late.process([s.frame_at(i / 30) for s in feeds])
            assert np.array_equal(a.canvas.image, b.canvas.image)
            if late._moving or i == 0:
                # While the tiles move (and on the first frame) the fill is this frame's.
                assert np.array_equal(a.grown, b.grown)
                moving += late._moving
        late._finish_growing()
        assert late_grower.calls == now_grower.calls == 20
    assert moving >= 5  # the slide was seen, and grown at once


def test_before_the_room_fill_the_grower_starts_on_every_second_canvas():
    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2)]
    pipe, grower = _grow_pipeline(behind=True, every=2)
    with pipe:
        results = []
        for i in range(30):
            results.append(pipe.process([s.frame_at(i / 30) for s in srcs]))
        pipe._finish_growing()
    assert grower.calls == 15  # frame 0 at once, then every second canvas beside the next
    for i in range(20, 30):
        r, known = results[i], results[i].canvas.known
        # This frame's own room where it is known; elsewhere the last fill grown.
        assert np.array_equal(r.grown[known], r.canvas.background[known])
        unknown = ~known & ~results[i - 1].canvas.known & ~results[i - 2].canvas.known
        assert len(np.unique(r.grown[unknown])) == 1


def test_with_the_room_fill_in_place_the_grower_starts_every_few_frames():
    from dataclasses import replace
    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2)]
    cfg = PipelineConfig(layout=LayoutConfig(height=240, gap=48))
    cfg = replace(cfg, fill=replace(cfg.fill, inline=True), grow=replace(cfg.grow, steady_every=3))
    grower = _CountingGrower()
    with Pipeline(cfg, segmenter="key", grower=grower) as pipe:
        i, steady = 0, []
        while len(steady) < 30 and i < 200:
            calls = grower.calls
            r = pipe.process([s.frame_at(i / 30) for s in srcs])
            fill = pipe.room_fill
            if fill.ready and fill._fade >= 1.0 and not pipe._moving:
                steady.append(grower.calls - calls)
                # The room fill is this frame's, the known pixels too.
                where = fill._where[1][0]
                assert np.array_equal(r.grown[where], fill._shown[where])
                assert np.array_equal(r.grown[r.canvas.known], r.canvas.background[r.canvas.known])
            i += 1
    assert len(steady) == 30 and 9 <= sum(steady) <= 11


def test_at_the_cameras_detail_the_composite_matches_the_full_canvas():
    """Pictures enlarged twice: drawn, grown and composed at half size and enlarged once,
    the composite is the full-canvas one to within the enlargement's rounding."""
    from roomfuse.config import RoomFillConfig

    results = {}
    for at_detail in (True, False):
        srcs = [SyntheticSource(seed=s, size=(320, 240)) for s in (1, 2)]
        cfg = PipelineConfig(layout=LayoutConfig(height=480, gap=64, at_detail=at_detail),
                             fill=RoomFillConfig(enabled=False))
        with Pipeline(cfg, segmenter="key") as pipe:
            for i in range(6):
                r = pipe.process([s.frame_at(i / 30) for s in srcs])
            results[at_detail] = r, pipe.placer.work
    (small, work), (full, one) = results[True], results[False]
    assert work == 2 and one == 1
    assert small.image.shape == full.image.shape and small.canvas.output_size == full.canvas.size
    assert small.canvas.size == (full.canvas.size[0] // 2, full.canvas.size[1] // 2)
    assert small.canvas.output_tiles == full.canvas.tiles
    # Inside the pictures (the gaps are grown at another size: invented either way).
    inside = np.zeros(full.canvas.known.shape, bool)
    for p in full.canvas.pictures:
        inside[p.slices] = True
    diff = np.abs(small.image.astype(int) - full.image.astype(int)).max(axis=2)[inside]
    # The same to a level or two but at the synthetic rooms' hard edges, where bicubic
    # and bilinear enlargements differ (2 % of the pixels; a camera's edges are soft).
    assert np.median(diff) <= 1 and diff.mean() < 4 and (diff > 30).mean() < 0.04, \
        (np.median(diff), diff.mean(), (diff > 30).mean())


@pytest.mark.timeout(60)
def test_with_the_room_fill_in_place_a_frame_does_not_wait_for_the_grower():
    """The grower's job started with the room fill in place has until the frame before
    the next one starts: the frame after it starts goes on while it is still running."""
    import threading
    from dataclasses import replace

    class Gated(_CountingGrower):
        def __init__(self):
            super().__init__()
            self.gate = threading.Event()
            self.gate.set()

        def fill(self, image, known, covered=None):
            assert self.gate.wait(20)
            return super().fill(image, known, covered)

    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2)]
    cfg = PipelineConfig(layout=LayoutConfig(height=240, gap=48))
    cfg = replace(cfg, fill=replace(cfg.fill, inline=True), grow=replace(cfg.grow, steady_every=3))
    grower = Gated()
    with Pipeline(cfg, segmenter="key", grower=grower) as pipe:
        i = 0

        def step():
            nonlocal i
            r = pipe.process([s.frame_at(i / 30) for s in srcs])
            i += 1
            return r

        while not (pipe.room_fill.ready and pipe._steady and pipe._growing is None) and i < 200:
            step()
        assert i < 200
        grower.gate.clear()
        while pipe._growing is None:  # the next job starts, and is held
            step()
        calls = grower.calls
        r = step()  # goes on: the fill behind people is the one grown before
        assert pipe._growing is not None and not pipe._growing.done() and grower.calls == calls
        assert np.array_equal(r.grown[r.canvas.known], r.canvas.background[r.canvas.known])
        grower.gate.set()
        step()  # the frame before the next start takes the job's fill up
        assert pipe._growing is None and grower.calls == calls + 1


class _Now:
    """A framer's worker that takes each look at once: the looks land on known frames,
    so two pipelines given the same feeds frame them the same."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        done = Future()
        done.set_result(fn(*args))
        return done

    def shutdown(self, wait=True):
        pass


def _frames_of(pipe_config, schedule, canvas_size=(960, 240)):
    """Composites and stage names of a run where feeds come and go: ``schedule`` is a
    list of (frame index, feed seeds)."""
    srcs = {}
    out = []
    with Pipeline(pipe_config, segmenter="key", canvas_size=canvas_size) as pipe:
        pipe.framer._worker.shutdown()
        pipe.framer._worker = _Now()
        for i, seeds in schedule:
            feeds = [srcs.setdefault(k, SyntheticSource(seed=k, sway=0.2, period_s=1.5)) for k in seeds]
            r = pipe.process([f.frame_at(i / 30) for f in feeds], keys=list(seeds))
            out.append((r.image, set(r.ms)))
    return out


def test_drawing_each_feed_as_it_is_segmented_changes_no_pixel():
    """SegmentConfig.draw_each: the views and tiles worked out before the people are
    segmented, then each of two threads segments a feed and draws it, then the next. The
    same composites as the stages one after the other, through a newcomer (framed from
    its first look) and the slide that makes room for them (tiles overlapping mid-slide:
    drawn in feed order)."""
    from dataclasses import replace

    cfg = PipelineConfig(layout=LayoutConfig(height=240, gap=32))
    cfg = replace(cfg, fill=replace(cfg.fill, inline=True))
    schedule = [(i, (1, 2)) for i in range(8)] + [(i, (1, 2, 3)) for i in range(8, 26)]
    each = _frames_of(cfg, schedule)
    apart = _frames_of(replace(cfg, segment=replace(cfg.segment, draw_each=False)), schedule)
    for i, ((a, stages_a), (b, stages_b)) in enumerate(zip(each, apart)):
        assert np.array_equal(a, b), f"frame {i}: {np.abs(a.astype(int) - b).max()}"
        assert "feeds" not in stages_b
    # Newcomers' first frames one stage after the other, a slide with overlapping tiles
    # segmented first, and otherwise each feed drawn as it is segmented.
    drawn_each = [i for i, (_, st) in enumerate(each) if "feeds" in st]
    assert 0 not in drawn_each and 8 not in drawn_each
    assert any("segment" in st for _, st in each[9:20]), "no frame drew overlapping tiles"
    assert set(range(1, 8)) | set(range(20, 26)) <= set(drawn_each)


class _Breaks:
    """A segmenter that fails on its third call, as a camera's decoder might."""

    def __init__(self):
        from roomfuse.segment import KeySegmenter

        self.inner, self.calls = KeySegmenter(), 0

    def __call__(self, frame):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("feed 2 broke")
        return self.inner(frame)

    def reset(self):
        self.inner.reset()

    def close(self):
        pass


def test_a_feed_failing_in_the_other_thread_fails_that_frame_only():
    class Pool:
        def __init__(self):
            from roomfuse.segment import KeySegmenter

            self.made = [KeySegmenter(), _Breaks()]

        def acquire(self):
            return self.made.pop(0)

        def release(self, seg):
            pass

    srcs = [SyntheticSource(seed=1), SyntheticSource(seed=2)]
    with Pipeline(PipelineConfig(layout=LayoutConfig(height=240)), segmenter_pool=Pool()) as pipe:
        for i in range(2):
            pipe.process([s.frame_at(i / 30) for s in srcs])
        with pytest.raises(RuntimeError, match="feed 2 broke"):
            pipe.process([s.frame_at(2 / 30) for s in srcs])
        r = pipe.process([s.frame_at(3 / 30) for s in srcs])
    assert "feeds" in r.ms and r.image.shape[0] == 240
