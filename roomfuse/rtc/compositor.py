"""A room's picture: the synchronous pipeline, run off the event loop.

All pipeline work of a room happens in one executor thread, so the pipeline (which keeps
per-feed state and is not thread-safe) is only ever touched from that thread, frames are
composed in order, and the event loop stays free for the network. Decoded frames are
converted to RGB there too, and only the ones actually used: a frame replaced in its slot
before the next tick costs nothing but its decode. The composite is then encoded once
for every viewer (``encoder.SharedEncoder``) in a second thread, while the next frame is
being composed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..config import LayoutConfig, PipelineConfig
from ..frames import Frame, Rect
from ..pipeline import BESIDE, Pipeline, StageTimer
from .encoder import SharedEncoder
from .labels import Labels
from .tracks import VIDEO_TIME_BASE

log = logging.getLogger(__name__)


# The pipeline of a served room: the same stages and defaults as `render`, except that the
# layout picks row or grid for the room's fixed canvas (``RoomSettings.canvas``, whose
# height is the layout's).
ROOM_PIPELINE = PipelineConfig(layout=LayoutConfig(mode="auto"))


@dataclass(frozen=True)
class RoomSettings:
    """How every room of a server is built. The defaults are what `roomfuse serve` uses."""

    pipeline: PipelineConfig = ROOM_PIPELINE  # segment, layout, grow, composite, fps
    # One fixed output size for every room: the composite never changes size, so joins
    # and leaves slide feeds instead of restarting the encoder and every viewer's
    # decoder. 1280x360 holds two or three 16:9 webcams side by side near their own size
    # (the one-room look), and at half the pixels of 720p every per-pixel stage and the
    # encode stay inside the frame budget on two CPU cores. Rooms of 4-8 look better at
    # 1280x720.
    canvas: tuple[int, int] = (1280, 360)
    segmenter: str = "mediapipe"  # "key" for synthetic participants (tests)
    max_participants: int = 8
    # A participant whose frames stop for stall_s is faded out over fade_s and removed:
    # well inside ICE consent expiry (about 30 s), after which aiortc would fail anyway.
    stall_s: float = 5.0
    fade_s: float = 1.0
    # A participant that never delivers a frame (ICE or DTLS failed, or an offer sent and
    # abandoned) is removed after this and its seat freed. Loopback and LAN peers connect
    # in well under a second, a TURN relay in a few.
    connect_timeout_s: float = 10.0
    ice_servers: tuple = ()  # ice.IceServer
    # Rooms share one growth service that grows their canvases in one batch per round
    # ("auto": when the growth model runs on CUDA, where a room's growth is launch-bound
    # and batching divides that cost; "on", "off"). A round waits at most batch_wait_ms
    # for every live room (one that composed within the last second) to ask; a room
    # that is alone, or the only one live, never waits.
    batch_rooms: str = "auto"
    batch_wait_ms: float = 4.0
    # Everyone's name drawn under them in the composite (the room's host can switch it).
    names: bool = True

    @property
    def fps(self) -> float:
        return self.pipeline.fps

    def pipeline_config(self) -> PipelineConfig:
        """``pipeline`` with the layout's height set to the canvas's."""
        return replace(self.pipeline, layout=replace(self.pipeline.layout, height=self.canvas[1]))


@dataclass(frozen=True)
class FeedInput:
    """One participant's newest frame, as handed to the executor."""

    key: str
    seq: int  # the slot's frame count; the same seq means the same picture
    frame: object  # av.VideoFrame
    arrived: float  # clock seconds
    opacity: float = 1.0  # of the people in it: 0 shows the participant's room without them
    name: str = ""  # drawn under them when the room shows names
    name_opacity: float = 1.0  # fades with a departing participant, not with a camera turned off


@dataclass
class Composed:
    frame: object  # av.VideoFrame, yuv420p, stamped with the RTP clock
    tiles: dict[str, Rect]  # where each feed was drawn
    ms: dict[str, float] = field(default_factory=dict)  # stage -> ms ("convert", then "encode", included)
    packet: object = None  # av.Packet, once encoded (None if the encoder gave nothing)
    keyframe: bool = False
    labels: dict[str, Rect] = field(default_factory=dict)  # where each name was drawn


class Compositor:
    """Owns a room's pipeline and encoder, each used from one thread of its own.

    Composing frame N+1 overlaps encoding frame N: each waits only for its own stage, so
    the room's rate is set by the slower of the two rather than by their sum.
    """

    def __init__(self, name: str, settings: RoomSettings, clock=time.monotonic, grower_factory=None,
                 segmenter_pool=None):
        """``grower_factory`` (optional): makes this room's grower, in the room's thread
        (a handle on the server's shared growth service); the grower is closed with the
        room if it has a ``close``. ``segmenter_pool`` (optional): the server's
        segmenters, lent to this room's feeds (``Pipeline``)."""
        self.name = name
        self.settings = settings
        self.clock = clock
        self._grower_factory = grower_factory
        self._segmenter_pool = segmenter_pool
        self._grower = None
        self.t0 = clock()
        self.encoder = SharedEncoder(clock=clock)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"room-{name}")
        self._encode_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"encode-{name}")
        self._pipe: Pipeline | None = None
        self._images: dict[str, tuple[int, np.ndarray]] = {}  # key -> (seq, RGB) already converted
        self._labels = Labels()
        self.layout = settings.pipeline.layout.mode  # changed live with set_layout
        # Seats: the server's --order, or "given" while the host has chosen an order
        # (the room then hands the feeds in that order).
        self.seat_mode = settings.pipeline.layout.order

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._pipe = await loop.run_in_executor(self._executor, self._build)

    def _build(self) -> Pipeline:
        s = self.settings
        self._grower = self._grower_factory() if self._grower_factory is not None else None
        return Pipeline(self._config(), segmenter=s.segmenter, canvas_size=s.canvas, grower=self._grower,
                        segmenter_pool=self._segmenter_pool)

    def _config(self):
        config = self.settings.pipeline_config()
        return replace(config, layout=replace(config.layout, mode=self.layout))

    async def set_layout(self, mode: str) -> None:
        """Arrange the room as ``mode`` ("auto", "row", "grid") from the next frame on."""
        if mode == self.layout:
            return
        self.layout = mode
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._rebuild)

    def _rebuild(self) -> None:
        # A new pipeline around the same grower: the placer's geometry and per-feed
        # memory start over (one frame's cost), the growth model's weights do not load again.
        old = self._pipe
        if old is None:
            return
        self._pipe = Pipeline(self._config(), segmenter=self.settings.segmenter, canvas_size=self.settings.canvas,
                              grower=old.grower, segmenter_pool=self._segmenter_pool)
        old.close()

    async def compose(self, feeds: list[FeedInput], now: float, names: bool = False) -> Composed:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._compose, feeds, now, names)

    def _compose(self, feeds: list[FeedInput], now: float, names: bool = False) -> Composed:
        import av

        timer = StageTimer()
        frames = []
        with timer.stage("decode"):
            for f in feeds:
                cached = self._images.get(f.key)
                if cached is None or cached[0] != f.seq:
                    cached = self._images[f.key] = (f.seq, f.frame.to_ndarray(format="rgb24"))
                frames.append(Frame(image=cached[1], pts=f.arrived - self.t0, index=f.seq, source=f.key))
            for gone in set(self._images) - {f.key for f in feeds}:
                del self._images[gone]
        keys = [f.key for f in feeds]
        self._pipe.placer.seats.mode = self.seat_mode
        result = self._pipe.process(frames, keys, timer=timer, opacity=[f.opacity for f in feeds])
        labels = {}
        if names:
            with timer.stage("names"):
                image = result.image if result.image.flags.writeable else result.image.copy()
                drawn = self._labels.draw(image, result.canvas.output_tiles, [f.name for f in feeds],
                                          people=result.canvas.alpha, people_tiles=result.canvas.tiles,
                                          opacity=[f.name_opacity for f in feeds], keys=keys)
                labels = dict(zip(keys, drawn))
                result.image = image
        with timer.stage("convert"):
            # OpenCV's I420 conversion is BT.601 limited range like libswscale's, and
            # about 15x faster here.
            yuv = cv2.cvtColor(result.image, cv2.COLOR_RGB2YUV_I420)
            out = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            out.pts = int(round((now - self.t0) / VIDEO_TIME_BASE))
            out.time_base = VIDEO_TIME_BASE
        return Composed(frame=out, tiles=dict(zip(keys, result.canvas.output_tiles)), ms=dict(timer.ms), labels=labels)

    async def encode(self, composed: Composed) -> Composed:
        """Fill in ``composed.packet``: the encode of every viewer, done once."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._encode_executor, self._encode, composed)

    def _encode(self, composed: Composed) -> Composed:
        t0 = time.perf_counter()
        encoded = self.encoder.encode(composed.frame, self.settings.fps)
        composed.ms["encode"] = (time.perf_counter() - t0) * 1e3
        if encoded is not None:
            composed.packet, composed.keyframe = encoded
        return composed

    async def close(self) -> None:
        """Release the pipeline and the encoder in their own threads (after any frame
        still being composed or encoded)."""
        loop = asyncio.get_running_loop()
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            await loop.run_in_executor(self._executor, pipe.close)
        if self._grower is not None and hasattr(self._grower, "close"):
            grower, self._grower = self._grower, None
            await loop.run_in_executor(self._executor, grower.close)
        await loop.run_in_executor(self._encode_executor, self.encoder.close)
        self._executor.shutdown(wait=False)
        self._encode_executor.shutdown(wait=False)


class LateLog:
    """Warns when composites miss their deadline: at once, then at most every
    ``every_s`` seconds with a count, so a slow machine does not flood the log."""

    def __init__(self, room: str, every_s: float = 5.0, clock=time.monotonic):
        self.room = room
        self.every_s = every_s
        self.clock = clock
        self.late = 0  # composites late since the room started
        self._unreported = 0
        self._last = -float("inf")

    def __call__(self, late_s: float, ms: dict[str, float]) -> None:
        self.late += 1
        self._unreported += 1
        now = self.clock()
        if now - self._last < self.every_s:
            return
        # The grower's job beside the frames is not a stage of this one.
        beside = ms.get(BESIDE)
        ms = {k: v for k, v in ms.items() if k != BESIDE}
        stage = max(ms, key=ms.get) if ms else "?"
        log.warning("room %s: composite late by %.0f ms (%d late since last report; slowest stage "
                    "%s %.0f ms of %.0f ms%s)", self.room, late_s * 1e3, self._unreported, stage,
                    ms.get(stage, 0.0), sum(ms.values()),
                    "" if beside is None else f"; the grower beside it {beside:.0f} ms")
        self._unreported = 0
        self._last = now
