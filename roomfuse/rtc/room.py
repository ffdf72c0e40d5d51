"""Rooms and their participants: who is in, what they send, when they are gone.

A room exists while someone is in it. Each participant has a peer connection, a
newest-frame slot fed by their camera track, and a handle on the room's composite. One
task per room composes at the room's frame rate, in step with the cameras: it takes the
newest frame of every participant, composes and encodes them in the room's executor
thread and publishes the packets. The same loop notices participants whose video stopped
(a frozen camera, a vanished peer, a closed connection): they fade out and are removed,
and the others slide over.

Sound goes through the room's ``audio.Mixer``: everyone hears everyone else, held back
as long as the picture so that both arrive together. The room also keeps what its
people may change while it runs (``RoomControls``): who is muted or has their camera
off, how the room is laid out, in which order people sit and whether names are drawn;
the host (whoever has been in the room longest) decides, or lets everyone decide.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from . import controls
from .aiortc_compat import make_prompt, make_prompt_audio
from .audio import Mixer, Voice
from .compositor import Compositor, FeedInput, LateLog, RoomSettings
from .controls import RoomControls, Tokens
from .ice import rtc_configuration
from .reuse import SegmenterPool, give_back_memory
from .signalling import SignallingError
from .tracks import CompositeFeed, CompositeTrack, FrameSlot, pump

log = logging.getLogger(__name__)


@dataclass
class Participant:
    id: str
    name: str
    pc: object  # RTCPeerConnection
    joined: float
    slot: FrameSlot = field(default_factory=FrameSlot)
    track: CompositeTrack | None = None
    pump_task: asyncio.Task | None = None
    fade_from: float | None = None  # clock time the fade-out started
    fade_reason: str = ""
    tile: tuple | None = None
    label: tuple | None = None  # where their name was drawn (x, y, w, h), if it was
    size: tuple[int, int] | None = None
    shown_seq: int = 0  # the slot seq of the frame last composed
    delays: deque = field(default_factory=lambda: deque(maxlen=60))  # arrival -> first composite out, s
    voice: Voice | None = None  # their place in the room's sound, if their offer has audio
    muted: bool = False  # their microphone, as they said (the mixer leaves them out)
    camera: bool = True  # off: the room shows their room without them, from their last frame

    def delay_ms(self) -> float | None:
        """Median over the last 60 new frames (about 2 s)."""
        return round(1e3 * statistics.median(self.delays), 1) if self.delays else None

    def opacity(self, now: float, fade_s: float) -> float:
        if self.fade_from is None:
            return 1.0
        return max(0.0, 1.0 - (now - self.fade_from) / max(fade_s, 1e-6))

    def state(self) -> str:
        if self.fade_from is not None:
            return "leaving"
        return "live" if self.slot.frame is not None else "connecting"

    @property
    def shows_video(self) -> bool:
        """Sending camera frames that the room waits for and watches for stalls."""
        return self.camera and self.fade_from is None


class Room:
    def __init__(self, name: str, settings: RoomSettings, on_empty=None, clock=time.monotonic,
                 grower_factory=None, segmenter_pool=None):
        self.name = name
        self.settings = settings
        self.clock = clock
        self.participants: dict[str, Participant] = {}
        self.compositor = Compositor(name, settings, clock=clock, grower_factory=grower_factory,
                                     segmenter_pool=segmenter_pool)
        self.audio = Mixer(name)
        self.controls = RoomControls(layout=settings.pipeline.layout.mode, names=settings.names)
        self.feed = CompositeFeed(self.compositor.encoder)
        self.late = LateLog(name, clock=clock)
        self.composed = 0
        self.stage_ms: dict[str, float] = {}
        self._on_empty = on_empty
        self._recent: deque[float] = deque()  # publish times in the last second
        self._task: asyncio.Task | None = None
        self._encoding: asyncio.Task | None = None  # the composite being encoded
        self._arrived = asyncio.Event()  # set whenever any participant's frame arrives
        self._closing: set[asyncio.Task] = set()
        self.closed = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self.audio.start()

    # ---- joining and leaving ----------------------------------------------------------

    async def join(self, name: str, sdp: str) -> tuple[str, str]:
        """Answer a participant's offer; returns (answer sdp, participant id)."""
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        if self.closed:
            raise SignallingError(f"room {self.name} is closing; try again", 409)
        if len(self.participants) >= self.settings.max_participants:
            raise SignallingError(f"room {self.name} is full ({self.settings.max_participants} "
                                  "participants)", 409)
        pc = RTCPeerConnection(rtc_configuration(self.settings.ice_servers))
        p = Participant(id=secrets.token_hex(6), name=name, pc=pc, joined=self.clock(),
                        slot=FrameSlot(clock=self.clock, on_put=self._arrived.set))
        self.participants[p.id] = p  # the seat is taken before the first await

        @pc.on("track")
        def on_track(track):
            if track.kind == "video" and p.pump_task is None:
                p.pump_task = asyncio.ensure_future(pump(track, p.slot, f"{self.name}/{p.id}"))
            elif track.kind == "audio" and p.voice is None:
                p.voice = self.audio.add(p.id)
                p.voice.receive(track)

        @pc.on("connectionstatechange")
        def on_state():
            if pc.connectionState in ("failed", "closed") and p.id in self.participants:
                self._fade(p, f"connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            audio = next((t for t in pc.getTransceivers() if t.kind == "audio"), None)
            for t in pc.getTransceivers():
                if t.kind == "video":
                    if not make_prompt(t.receiver):
                        log.debug("aiortc's receive buffer not found; frames wait one period more")
                elif t is not audio:
                    t.direction = "inactive"  # nothing else is used; never queue it
            if audio is not None:
                # The room's sound for this participant, on their (first) audio section;
                # an offer without a microphone (recvonly) still hears the room.
                if not make_prompt_audio(audio.receiver):
                    log.debug("aiortc's audio receive buffer not found; sound waits 60 ms more")
                p.voice = p.voice or self.audio.add(p.id)
                pc.addTrack(p.voice.send_to())
            p.track = CompositeTrack(self.feed)
            p.track.attach(pc.addTrack(p.track))
            video = next(t for t in pc.getTransceivers() if t.kind == "video")
            # The composite is encoded once, as VP8, for everyone (offers without VP8
            # are refused before this); VP8 is also 2-3x cheaper to encode than H.264.
            codecs = RTCRtpSender.getCapabilities("video").codecs
            video.setCodecPreferences([c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")])
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:
            await self._remove(p, "offer refused")
            raise SignallingError(f"sdp: cannot answer this offer ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:100] if str(e) else 'no detail'})") from None
        if p.id not in self.participants:  # closed while the answer was being made
            raise SignallingError(f"room {self.name} closed while joining", 409)
        log.info("room %s: %s (%s) joined, %d in the room", self.name, p.name, p.id, len(self.participants))
        return pc.localDescription.sdp, p.id

    async def leave(self, pid: str) -> None:
        p = self.participants.get(pid)
        if p is None:
            raise SignallingError(f"no participant {pid} in room {self.name}", 404)
        await self._remove(p, "left")

    def _fade(self, p: Participant, reason: str) -> None:
        if p.fade_from is not None:
            return
        if p.slot.frame is None:  # never shown: nothing to fade
            self._spawn(self._remove(p, reason))
            return
        p.fade_from, p.fade_reason = self.clock(), reason
        log.info("room %s: %s (%s) %s; fading out", self.name, p.name, p.id, reason)

    async def _remove(self, p: Participant, reason: str) -> None:
        if self.participants.get(p.id) is not p:
            return
        del self.participants[p.id]
        log.info("room %s: %s (%s) removed (%s), %d left", self.name, p.name, p.id, reason,
                 len(self.participants))
        if p.pump_task is not None:
            p.pump_task.cancel()
        if p.track is not None:
            p.track.stop()
        await self.audio.remove(p.id)
        await p.pc.close()
        if p.pump_task is not None:
            await asyncio.gather(p.pump_task, return_exceptions=True)
        if not self.participants and self._on_empty is not None and not self.closed:
            self._on_empty(self)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ---- the compositor loop ----------------------------------------------------------

    def _check_departures(self, now: float) -> None:
        s = self.settings
        for p in list(self.participants.values()):
            if p.fade_from is not None:
                if p.opacity(now, s.fade_s) <= 0.0:
                    self._spawn(self._remove(p, p.fade_reason))
                continue
            if not p.camera and (p.slot.frame is not None or p.pc.connectionState == "connected"):
                continue  # no frames on purpose; a dead connection is noticed by its state
            age = p.slot.age(now)
            if age is None:
                if now - p.joined > s.connect_timeout_s:
                    self._spawn(self._remove(p, f"no video within {s.connect_timeout_s:.0f} s"))
            elif age > s.stall_s:
                self._fade(p, f"no video for {age:.1f} s")

    async def _run(self) -> None:
        try:
            await self._compose_forever()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A broken pipeline must not leave people connected to a frozen room.
            log.exception("room %s: compositor failed; closing the room", self.name)
            for p in list(self.participants.values()):
                self._spawn(self._remove(p, "room failed"))

    async def _compose_forever(self) -> None:
        period = 1.0 / self.settings.fps
        await self.compositor.start()
        last = -float("inf")
        while True:
            tick = await self._wait_for_tick(last, period)
            due = min(tick, last + period)
            last = tick
            self._check_departures(tick)
            feeds = []
            for p in self.seated():
                opacity = p.opacity(tick, self.settings.fade_s)
                if p.slot.frame is not None and opacity > 0.0:
                    seq, frame = p.slot.take()
                    feeds.append(FeedInput(key=p.id, seq=seq, frame=frame, arrived=p.slot.arrived,
                                           opacity=opacity if p.camera else 0.0, name=p.name,
                                           name_opacity=opacity))
                    p.size = (frame.width, frame.height)
            if not feeds:
                continue
            composed = await self.compositor.compose(feeds, tick, names=self.controls.names)
            # One encode in flight at most: if the encoder is the slower stage the room
            # slows down to it instead of queueing frames for it.
            if self._encoding is not None:
                await self._encoding
            self._encoding = asyncio.ensure_future(self._encode_and_publish(composed, feeds, due, period))

    async def _encode_and_publish(self, composed, feeds: list[FeedInput], due: float, period: float) -> None:
        composed = await self.compositor.encode(composed)
        if composed.packet is not None:
            self._publish(composed)
        done = self.clock()
        self._note_delays(feeds, done)
        for f in feeds:
            p = self.participants.get(f.key)
            if p is not None and p.voice is not None:
                p.voice.follow_video(statistics.median(p.delays) if p.delays else None)
        if done > due + period:  # not out before the next one was due
            self.late(done - due - period, composed.ms)

    async def _wait_for_tick(self, last: float, period: float) -> float:
        """When to compose next: as soon as every participant on screen has a new frame,
        so the room runs in step with the cameras and a frame waits least for its
        composite, but not sooner than 0.8 period after the last composite (the rate
        stays near the room's) and never later than one period after it (a slow or
        stalled camera does not hold the others back)."""
        earliest, deadline = last + 0.8 * period, last + period
        while True:
            now = self.clock()
            if now >= deadline or (now >= earliest and self._all_fresh()):
                return now
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), (earliest if now < earliest else deadline) - now)
            except asyncio.TimeoutError:
                pass

    def _all_fresh(self) -> bool:
        shown = [p for p in self.participants.values() if p.slot.frame is not None and p.shows_video]
        return bool(shown) and all(p.slot.fresh for p in shown)

    def seated(self) -> list[Participant]:
        """Participants in seat order: the order the room was given, then the others
        as they joined."""
        chosen = [self.participants[pid] for pid in self.controls.order if pid in self.participants]
        return chosen + [p for p in self.participants.values() if p not in chosen]

    @property
    def host(self) -> Participant | None:
        """Whoever has been in the room longest."""
        return next((p for p in self.participants.values() if p.fade_from is None), None)

    def _note_delays(self, feeds: list[FeedInput], done: float) -> None:
        """How long each new frame waited in the server, from arrival to composite out
        (tick wait, pipeline, encode); shown on the page beside the network round trip."""
        for f in feeds:
            p = self.participants.get(f.key)
            if p is None or f.seq == p.shown_seq:
                continue
            p.shown_seq = f.seq
            p.delays.append(done - f.arrived)

    def _publish(self, composed) -> None:
        self.feed.publish(composed.packet, composed.keyframe)
        self.composed += 1
        self.stage_ms = composed.ms
        now = self.clock()
        self._recent.append(now)
        while self._recent and self._recent[0] < now - 1.0:
            self._recent.popleft()
        for pid, r in composed.tiles.items():
            p = self.participants.get(pid)
            if p is not None:
                p.tile = (r.x, r.y, r.w, r.h)
                label = composed.labels.get(pid)
                p.label = (label.x, label.y, label.w, label.h) if label is not None and label.w else None

    def describe(self) -> dict:
        now = self.clock()
        return {
            "room": self.name,
            "canvas": list(self.settings.canvas),
            "fps": float(sum(1 for t in self._recent if t >= now - 1.0)),
            "composed": self.composed,
            "late": self.late.late,
            "stage_ms": {k: round(v, 2) for k, v in self.stage_ms.items()},
            "bitrate": self.compositor.encoder.bitrate,
            **controls.describe(self),
            "participants": [{
                "id": p.id, "name": p.name, "state": p.state(),
                "fps": p.slot.fps(now), "dropped": p.slot.dropped,
                "size": list(p.size) if p.size else None,
                "tile": list(p.tile) if p.tile else None,
                "label": list(p.label) if p.label and self.controls.names else None,
                "picture_losses": p.track.picture_losses if p.track else 0,
                "delay_ms": p.delay_ms(),
                "audio": p.voice is not None and p.voice.inbox is not None,
                "muted": p.muted, "camera": p.camera,
            } for p in self.participants.values()],
        }

    async def close(self) -> None:
        if self.closed:  # two last participants leaving at once both find the room empty
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._encoding is not None:
            await asyncio.gather(self._encoding, return_exceptions=True)
        for p in list(self.participants.values()):
            await self._remove(p, "room closed")
        await self.audio.close()
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        self.feed.close()
        await self.compositor.close()


class Rooms:
    """Every room of a server, made on first join and dropped when the last one leaves;
    at most ``max_rooms`` at once.

    When rooms batch their growth (``RoomSettings.batch_rooms``), every room's grower is
    a handle on one shared growth service, started with the first room and stopped
    with the server. Segmenters are lent to every room from one pool (``reuse.py``)."""

    def __init__(self, settings: RoomSettings, max_rooms: int = 8):
        from ..growth.batch import SharedGrowth, use_batching
        from ..segment import make_segmenter

        self.settings = settings
        self.max_rooms = max_rooms
        self.rooms: dict[str, Room] = {}
        self.tokens = Tokens()
        self._closing: set[asyncio.Task] = set()
        self.closed = False
        self.growth = None
        grow = settings.pipeline.grow
        if use_batching(settings.batch_rooms, grow.grower, grow.device):
            self.growth = SharedGrowth(self._growth_engine, settings.batch_wait_ms / 1e3)
        self.segmenters = SegmenterPool(lambda: make_segmenter(settings.segmenter, settings.pipeline.segment))

    def _growth_engine(self):
        from ..pipeline import build_grower

        return build_grower(self.settings.pipeline.grow)

    async def join(self, room: str, name: str, sdp: str) -> tuple[str, str]:
        if self.closed:
            raise SignallingError("the server is shutting down", 503)
        r = self.rooms.get(room)
        if r is None:
            if len(self.rooms) >= self.max_rooms:
                raise SignallingError(f"room {room}: the server already hosts its limit of {self.max_rooms} "
                                      "rooms (--max-rooms); try again later", 503)
            r = self.rooms[room] = Room(room, self.settings, on_empty=self._empty,
                                        grower_factory=self.growth.client if self.growth else None,
                                        segmenter_pool=self.segmenters)
            r.start()
        try:
            return await r.join(name, sdp)
        finally:
            if not r.participants and self.rooms.get(room) is r:
                self._empty(r)

    async def leave(self, room: str, pid: str) -> None:
        r = self.rooms.get(room)
        if r is None:
            raise SignallingError(f"no participant {pid} in room {room}", 404)
        await r.leave(pid)

    def describe(self, room: str) -> dict:
        r = self.rooms.get(room)
        if r is None:
            return {"room": room, "canvas": list(self.settings.canvas), "fps": 0.0, "composed": 0,
                    "late": 0, "stage_ms": {}, "bitrate": None, "host": None,
                    "layout": self.settings.pipeline.layout.mode, "names": self.settings.names, "order": [],
                    "open": False, "participants": []}
        return r.describe()

    def _empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        task = asyncio.ensure_future(self._close_room(room))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_room(self, room: Room) -> None:
        await room.close()
        # What the room's frames and threads freed goes back to the system (reuse.py).
        await asyncio.get_running_loop().run_in_executor(None, give_back_memory)

    async def close(self) -> None:
        self.closed = True
        for room in list(self.rooms.values()):
            self._empty(room)
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        if self.growth is not None:
            self.growth.close()  # every room is closed: nothing waits on it any more
        await asyncio.get_running_loop().run_in_executor(None, self.segmenters.close)
