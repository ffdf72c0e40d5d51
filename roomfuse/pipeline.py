"""One frame's journey: segment -> frame -> layout -> grow -> composite, with per-stage timings.

Synchronous on purpose: the server runs ``Pipeline.process`` in an executor thread, the
renderer and the benchmark call it in a loop. Inside, a pool of two threads keeps both
cores of a small machine on the frame: the frame's views and tiles are worked out first
(from the looks and seats of the frames before), then this thread and one in the pool
each take a feed, segment it (mediapipe runs its graph in its own threads; the caller
waits without the GIL) and draw it on the canvas, then the next feed (the "feeds"
stage, ``SegmentConfig.draw_each``); the harmoniser's gains are worked out in the pool,
the grower works on each canvas there while the next frame is segmented and drawn (a
frame shows the fill grown one frame before under its own pixels: ``GrowConfig.behind``),
and the canvas is composed in two halves. OpenCV runs in the calling thread
(roomfuse/threads.py).

Where every picture is enlarged twice or more, the layout draws the canvas smaller, at
the detail the cameras give, everything after it works there, and the composite is
enlarged once at the end of the composite stage (``LayoutConfig.at_detail``,
docs/detail.md).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import cv2
import numpy as np

from .composite import Compositor, fade_people
from .config import GrowConfig, PipelineConfig
from .errors import ConfigError
from .frames import Canvas, Cutout, Frame
from .framing import Framer
from .growth import make_grower
from .growth.joiner import Joiner
from .layout import Placer
from .regions import box_slices
from .roomfill import RoomFill, at_detail
from .segment import make_segmenter
from .threads import one_blas_thread, one_cv_thread

log = logging.getLogger(__name__)

# "feeds": each feed segmented and drawn on the canvas, in place of "segment" and the
# drawing part of "layout" (SegmentConfig.draw_each; they run one after the other when a
# new feed is to be framed from its first look, or mid-slide).
STAGES = ("decode", "segment", "frame", "layout", "feeds", "grow", "composite")
BESIDE = "grow_beside"  # the grower's own time, when it works beside the frames (GrowConfig.behind)
COVERED_ALPHA = 0.98  # a person this opaque shows at most 2 % of the fill behind them
LEARNED_GROWERS = ("nca",)  # growers that load weights: checkpoint and precision apply


def build_grower(grow: GrowConfig):
    """The grower ``grow`` describes, weights and precision included."""
    if grow.precision not in ("float32", "float16"):
        raise ConfigError(f"precision {grow.precision!r}: choose float32 or float16")
    options = {}
    if grow.grower in LEARNED_GROWERS:
        options = {"checkpoint": grow.checkpoint, "half": grow.precision == "float16",
                   "work_height": grow.work_height or None}
    elif grow.checkpoint is not None:
        raise ConfigError(f"--checkpoint {grow.checkpoint}: only the growth model (--grower nca) "
                          f"loads weights, not {grow.grower}")
    return make_grower(grow.grower, device=grow.device, threads=grow.threads, **options)


def _paste_fill(fill, dst: np.ndarray) -> None:
    """The room fill's image into ``dst`` where it applies, box by box. In place."""
    where = fill.where.view(np.uint8)
    for box in fill.boxes or ((0, 0) + dst.shape[1::-1],):
        ys, xs = box_slices(box)
        cv2.copyTo(fill.image[ys, xs], where[ys, xs], dst[ys, xs])


class StageTimer:
    """Collects milliseconds per stage for one frame; ``stage(name)`` is a context manager."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


@dataclass
class Result:
    image: np.ndarray  # the composite, HxWx3 uint8 RGB
    # What the grower was given, and the background with every gap filled: at the
    # cameras' detail, smaller than the composite where the pictures are enlarged (its
    # ``output_size`` and ``output_tiles`` say where the feeds are in ``image``).
    canvas: Canvas
    grown: np.ndarray
    ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    views: list | None = None  # each feed's framing.View (None: framing off)


class Pipeline:
    """Feeds in, one-room composite out. Keeps per-feed state (matte smoothing, framing,
    seat, background memory, colour gains) keyed by feed, and the grower's state across
    frames."""

    def __init__(self, config: PipelineConfig = PipelineConfig(), segmenter: str = "mediapipe",
                 canvas_size: tuple[int, int] | None = None, grower=None, segmenter_pool=None):
        """``segmenter_pool`` (optional): where feeds' segmenters come from and go back to
        (``acquire()``, ``release(seg)``), so that a server reuses them across rooms instead
        of building a model graph for every participant; without one each feed builds
        its own and closes it when it leaves."""
        one_blas_thread()
        one_cv_thread()
        self.config = config
        self.segmenter_kind = segmenter
        self.segmenters: dict[Hashable, object] = {}
        self.segmenter_pool = segmenter_pool
        # Faces are found by mediapipe where people are segmented by it; a colour-keyed
        # synthetic participant has no face, only a matte with a head.
        self.framer = Framer(config.framing, fps=config.fps,
                             finder="mediapipe" if segmenter == "mediapipe" else "matte",
                             ) if config.framing.enabled else None
        # Two cores: the feeds are segmented two at a time, and the canvas passes (drawing
        # the feeds, composing) run in two halves, one in this thread and one in the pool;
        # one more pool thread for the grower working a frame behind. Its threads sleep
        # between jobs (no spinning).
        self._pool = ThreadPoolExecutor(max_workers=max(2, config.segment.threads) + 1,
                                        thread_name_prefix="roomfuse")
        self.placer = Placer(config.layout, config.memory, canvas_size=canvas_size, framing=config.framing,
                             pool=self._pool)
        self.grower = grower if grower is not None else build_grower(config.grow)
        self.compositor = Compositor(config.composite, pool=self._pool)
        # Canvas pixels per camera pixel of the sharpest picture (1: as sharp as the canvas).
        self._detail = 1.0
        self.room_fill = self._room_fill(config) if config.fill.enabled else None
        self._canvas_size = None
        self._tiles: tuple = ()
        self._moving = False
        # Growing one frame behind: the grower's job for the last canvas, and the last
        # grown background with the layout it was grown for.
        self._growing: Future | None = None
        self._grown: tuple[tuple, np.ndarray] | None = None
        self._since = 0  # frames since the grower last started on a canvas
        self._steady = False  # the room fill was in place in the last frame

    def _room_fill(self, config: PipelineConfig) -> RoomFill:
        builder = make_grower(config.fill.grower, device=config.grow.device)

        def fill(image, known, rooms, targets, cancel):
            # The still fill sees which camera each pixel shows, and what will be seen,
            # when it can use them, and stops early when the room closes.
            if isinstance(builder, Joiner):
                return builder.fill(image, known, rooms=rooms, targets=targets, cancel=cancel)
            return builder.fill(image, known)

        def build(image, known, rooms, targets, cancel):
            # At the detail the cameras give: no finer than the sharpest picture's pixels.
            return at_detail(fill, self._detail, image, known, rooms, targets, cancel)
        return RoomFill(config.fill, build, fps=config.fps)

    def _segmenter(self, key: Hashable):
        seg = self.segmenters.get(key)
        if seg is None:
            seg = self.segmenters[key] = (self.segmenter_pool.acquire() if self.segmenter_pool is not None
                                          else make_segmenter(self.segmenter_kind, self.config.segment))
        return seg

    def _drop_segmenter(self, key: Hashable) -> None:
        seg = self.segmenters.pop(key)
        if self.segmenter_pool is not None:
            self.segmenter_pool.release(seg)
        else:
            seg.close()

    def process(self, frames: Sequence[Frame], keys: Sequence[Hashable] | None = None,
                timer: StageTimer | None = None, opacity: Sequence[float] | None = None) -> Result:
        """``opacity`` (optional, one per feed, 1 = as is) fades a feed's people out."""
        keys = list(range(len(frames))) if keys is None else list(keys)
        timer = timer or StageTimer()
        for gone in set(self.segmenters) - set(keys):
            self._drop_segmenter(gone)
        segs = [self._segmenter(k) for k in keys]
        drawn = self._draw_each(frames, keys, segs, timer) if self.config.segment.draw_each else None
        if drawn is not None:
            canvas, views = drawn
        else:
            with timer.stage("segment"):
                cutouts = self._segment_all(segs, frames)
            with timer.stage("frame"):
                views = self.framer(cutouts, keys) if self.framer is not None else None
            with timer.stage("layout"):
                canvas = self.placer(cutouts, keys, views)
        if opacity is not None:
            with timer.stage("layout"):
                canvas = fade_people(canvas, opacity)
        with timer.stage("grow"):
            # The harmoniser's gains need only the canvas: worked out beside the grower.
            gains = self._pool.submit(self.compositor.gains, canvas)
            grown = self._grow_frame(canvas, timer)
        with timer.stage("composite"):
            image = self.compositor.compose(canvas, grown, gains.result())
            if canvas.output_size != canvas.size:
                # Drawn at the cameras' detail: enlarged once, bicubic (as sharp as each
                # picture enlarged straight onto the full canvas: docs/detail.md).
                image = cv2.resize(image, canvas.output_size, interpolation=cv2.INTER_CUBIC)
        return Result(image=image, canvas=canvas, grown=grown, ms=dict(timer.ms), views=views)

    def _segment_all(self, segs: Sequence, frames: Sequence[Frame]) -> list[Cutout]:
        if len(frames) > 1 and self.config.segment.threads > 1:
            return list(self._pool.map(lambda sf: sf[0](sf[1]), zip(segs, frames)))
        return [s(f) for s, f in zip(segs, frames)]

    def _draw_each(self, frames: Sequence[Frame], keys: Sequence[Hashable], segs: Sequence,
                   timer: StageTimer) -> tuple[Canvas, list | None] | None:
        """The canvas with each feed drawn on it as soon as it is segmented
        (``SegmentConfig.draw_each``): the views and the tiles first, from the frames'
        sizes and the looks and seats of the frames before; then each thread takes the
        next feed, segments it and draws it (the "feeds" stage). (canvas, views), or
        None where a new feed is to be framed from its first look (then nothing has
        changed yet, and the stages run one after the other)."""
        sizes = [f.size for f in frames]
        views = None
        if self.framer is not None:
            with timer.stage("frame"):
                views = self.framer.views_ahead(sizes, keys)
            if views is None:
                return None
        with timer.stage("layout"):
            draft = self.placer.begin(sizes, keys, views)
        n = len(frames)
        if draft.overlapping:
            # Mid-slide: drawn one after the other, in feed order.
            with timer.stage("segment"):
                cutouts = self._segment_all(segs, frames)
            with timer.stage("layout"):
                pictures = [self.placer.draw(draft, i, c) for i, c in enumerate(cutouts)]
        else:
            cutouts, pictures = [None] * n, [None] * n
            todo, claim = iter(range(n)), threading.Lock()

            def work() -> None:
                while True:
                    with claim:
                        i = next(todo, None)
                    if i is None:
                        return
                    cutouts[i] = segs[i](frames[i])
                    pictures[i] = self.placer.draw(draft, i, cutouts[i])

            with timer.stage("feeds"):
                helpers = [self._pool.submit(work) for _ in range(min(n, self.config.segment.threads) - 1)]
                try:
                    work()
                finally:
                    wait(helpers)
                for h in helpers:
                    h.result()  # a helper's error is raised here
        with timer.stage("layout"):
            canvas = self.placer.finish(draft, pictures)
        if self.framer is not None:
            with timer.stage("frame"):
                self.framer.look_again(cutouts, keys)
        return canvas, views

    def _grow_frame(self, canvas: Canvas, timer: StageTimer) -> np.ndarray:
        """This frame's grown background: grown now, or (``GrowConfig.behind``) the one
        grown from an earlier canvas with this frame's room fill and known pixels pasted
        over it, while the grower works on this canvas in the pool for the next frame
        (every ``GrowConfig.every`` frames while there is no room fill, every
        ``GrowConfig.steady_every`` once it is in place, every frame while it fades in).
        Once the room fill is in place a job has until the frame before the next one
        starts (the frame after it starts shows the fill grown before), so a frame does
        not wait for the grower."""
        same_seats = canvas.size == self._canvas_size and tuple(canvas.tiles) == self._tiles
        if (same_seats and self._growing is not None and self._steady
                and self._since + 1 < self.config.grow.steady_every - 1):
            last = self._grown
        else:
            last = self._finish_growing(timer)
        self._follow_layout(canvas)
        self._detail = min(self.placer.scales.values(), default=1.0)
        layout = (canvas.size, tuple(canvas.tiles))
        fill = self.room_fill.frame(canvas) if self.room_fill is not None else None
        if not self.config.grow.behind or self._moving or last is None or last[0] != layout:
            self._finish_growing(timer)
            grown = self._grow(canvas, fill)
            self._grown, self._since, self._steady = (layout, grown), 0, False
            return grown
        grown = last[1].copy()
        steady = self._steady = fill is not None and fill.opacity >= 1.0
        if steady:
            _paste_fill(fill, grown)
        cv2.copyTo(canvas.background, canvas.known.view(np.uint8), grown)
        self._since += 1
        every = self.config.grow.steady_every if steady else self.config.grow.every if fill is None else 1
        if self._since < every:
            return grown
        self._since = 0
        self._finish_growing(timer)  # (one job at a time: one still in flight ends first)

        def grow_behind() -> tuple[tuple, np.ndarray, float]:
            t0 = time.perf_counter()
            out = self._grow(canvas, fill)
            return layout, out, (time.perf_counter() - t0) * 1e3
        self._growing = self._pool.submit(grow_behind)
        return grown

    def _finish_growing(self, timer: StageTimer | None = None) -> tuple[tuple, np.ndarray] | None:
        """Wait for the grower's job on the last canvas (if any); the last grown. The
        job's own milliseconds go to ``timer`` as "grow_beside" (not a stage of this
        frame: it ran beside the frame before and this one)."""
        if self._growing is not None:
            job, self._growing = self._growing, None
            layout, grown, ms = job.result()
            self._grown = (layout, grown)
            if timer is not None:
                timer.ms[BESIDE] = ms
        return self._grown

    def _follow_layout(self, canvas: Canvas) -> None:
        """Drop the live grower's carried state when the canvas or the seats change: when
        feeds start to slide and again when they settle. Cells that were a feed a moment
        ago would otherwise keep its colours (the outline of someone who left)."""
        tiles = tuple(canvas.tiles)
        moving = tiles != self._tiles
        if canvas.size != self._canvas_size or moving != self._moving:
            self.grower.reset()
        self._canvas_size, self._tiles, self._moving = canvas.size, tiles, moving

    def _grow(self, canvas: Canvas, fill) -> np.ndarray:
        """The background with every unknown pixel filled. Away from the pictures (gaps,
        margins, the room around a shrunk picture) the room's cached joined background
        (``fill``, this frame's, or None while there is none for these seats); near and
        inside them (what a person hides), and everywhere while there is none, the live
        grower."""
        # Where a person is opaque the fill never shows: growers may skip it.
        covered = canvas.alpha >= COVERED_ALPHA
        if fill is None:
            return self.grower.fill(canvas.background, canvas.known, covered)
        where = fill.where.view(np.uint8)
        boxes = fill.boxes or ((0, 0) + canvas.size,)
        if fill.opacity < 1.0:
            # Fading in over the live fill.
            grown = self.grower.fill(canvas.background, canvas.known, covered)
            for box in boxes:
                ys, xs = box_slices(box)
                mixed = cv2.addWeighted(grown[ys, xs], 1.0 - fill.opacity, fill.image[ys, xs], fill.opacity, 0.0)
                cv2.copyTo(mixed, where[ys, xs], grown[ys, xs])
            return grown
        context = canvas.background.copy()
        _paste_fill(fill, context)
        return self.grower.fill(context, canvas.known | fill.where, covered)

    def reset(self) -> None:
        self._finish_growing()
        self._grown, self._steady = None, False
        if self.room_fill is not None:
            self.room_fill.reset()
        for seg in self.segmenters.values():
            seg.reset()
        if self.framer is not None:
            self.framer.reset()
        self.placer.reset()
        self.grower.reset()
        self.compositor.reset()

    def close(self) -> None:
        if self._growing is not None:
            self._growing.cancel() or wait([self._growing])
            self._growing = None
        if self.room_fill is not None:
            self.room_fill.close()
        for key in list(self.segmenters):
            self._drop_segmenter(key)
        if self.framer is not None:
            self.framer.close()
        self._pool.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
