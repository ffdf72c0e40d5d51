"""Frames in and out of a room, without queues.

In: aiortc's received tracks queue every decoded frame without limit, so a compositor
that falls behind would fall further behind forever. ``pump`` drains a track as fast as
frames arrive into a ``FrameSlot`` that holds only the newest one
(``aiortc_compat.make_prompt`` has a receiver pass each frame on as soon as its last
packet is in).

Out: the room composes and encodes one picture per tick; ``CompositeFeed`` holds the
last few encoded packets. Every participant's peer connection has its own
``CompositeTrack``, which hands its sender the shared packets in order from a keyframe
on: a viewer that falls behind skips to the next keyframe, it is never queued for.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .aiortc_compat import route_sender_feedback

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)  # the RTP video clock


class FrameSlot:
    """The newest frame of one participant, with arrival statistics.

    ``seq`` counts frames put; a reader remembers the seq it used to tell a new frame
    from the one it already has. ``dropped`` counts frames replaced before anyone took
    them (the input was faster than the room).
    """

    def __init__(self, clock=time.monotonic, on_put=None):
        self.clock = clock
        self.on_put = on_put  # called after each new frame
        self.frame = None
        self.seq = 0
        self.arrived: float | None = None  # clock time of the newest frame
        self.dropped = 0
        self._taken = 0
        self._recent: deque[float] = deque()  # arrival times in the last second, for fps

    def put(self, frame) -> None:
        now = self.clock()
        if self.frame is not None and self._taken != self.seq:
            self.dropped += 1
        self.frame = frame
        self.seq += 1
        self.arrived = now
        self._recent.append(now)
        while self._recent and self._recent[0] < now - 1.0:
            self._recent.popleft()
        if self.on_put is not None:
            self.on_put()

    @property
    def fresh(self) -> bool:
        """A frame arrived that nobody has taken yet."""
        return self.frame is not None and self._taken != self.seq

    def take(self):
        """(seq, frame) of the newest frame, marking it used; (0, None) before any."""
        self._taken = self.seq
        return self.seq, self.frame

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the newest frame arrived; None if none ever did."""
        if self.arrived is None:
            return None
        return (self.clock() if now is None else now) - self.arrived

    def fps(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        return float(sum(1 for t in self._recent if t >= now - 1.0))


async def pump(track: MediaStreamTrack, slot: FrameSlot, label: str = "") -> None:
    """Move frames from ``track`` into ``slot`` until the track ends."""
    try:
        while True:
            slot.put(await track.recv())
    except MediaStreamError:
        log.debug("%s: video track ended", label or "track")


class CompositeFeed:
    """A room's encoded composite, for every viewer.

    Viewers share one encoder (``encoder.SharedEncoder``), so a viewer must take every
    packet from a keyframe on, in order: ``CompositeTrack`` does. The feed keeps only the
    last ``backlog`` packets; a viewer that falls further behind starts again at the next
    keyframe instead of being queued for.
    """

    def __init__(self, encoder=None, backlog: int = 30):
        self.encoder = encoder
        self.packets: deque = deque(maxlen=backlog)  # (seq, packet, keyframe)
        self.seq = 0
        self.closed = False
        self._changed = asyncio.Event()

    def publish(self, packet, keyframe: bool) -> None:
        self.seq += 1
        self.packets.append((self.seq, packet, keyframe))
        # Wake everyone waiting now; later waiters wait on a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    def get(self, seq: int):
        """(packet, keyframe) published as ``seq``, or None if it left the backlog."""
        if not self.packets or not self.packets[0][0] <= seq <= self.seq:
            return None
        _, packet, keyframe = self.packets[seq - self.packets[0][0]]
        return packet, keyframe

    async def wait_for(self, seq: int) -> None:
        while self.seq < seq and not self.closed:
            await self._changed.wait()
        if self.closed:
            raise MediaStreamError

    def request_keyframe(self) -> None:
        if self.encoder is not None:
            self.encoder.request_keyframe()

    def report_bitrate(self, viewer, bits_per_s: int) -> None:
        if self.encoder is not None:
            self.encoder.report_bitrate(viewer, bits_per_s)

    def forget(self, viewer) -> None:
        if self.encoder is not None:
            self.encoder.forget(viewer)

    def close(self) -> None:
        self.closed = True
        self._changed.set()


class CompositeTrack(MediaStreamTrack):
    """One viewer's handle on a room's composite: the shared packets, from a keyframe on."""

    kind = "video"

    def __init__(self, feed: CompositeFeed):
        super().__init__()
        self.feed = feed
        self._next: int | None = None  # the seq to send next; None: wait for a keyframe
        self._need_key = True
        self.sent = 0
        self.resyncs = 0  # times this viewer fell behind and restarted at a keyframe
        self.picture_losses = 0  # PLI/FIR reports from this viewer

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        try:
            while True:
                if self._next is None:
                    self.feed.request_keyframe()
                    self._next, self._need_key = self.feed.seq + 1, True
                await self.feed.wait_for(self._next)
                entry = self.feed.get(self._next)
                if entry is None:  # fell behind the backlog: rejoin at a keyframe
                    self._next = None
                    self.resyncs += 1
                    continue
                self._next += 1
                packet, keyframe = entry
                if self._need_key and not keyframe:
                    continue
                self._need_key = False
                self.sent += 1
                return packet
        except MediaStreamError:
            self.stop()
            raise

    def attach(self, sender) -> None:
        """Route this viewer's feedback to the shared encoder.

        aiortc's sender acts on picture-loss reports and bandwidth estimates only when
        it encodes itself, which it does not here: pass both on to the room's encoder.
        """
        feed = self.feed

        def on_picture_loss():
            self.picture_losses += 1
            feed.request_keyframe()

        if not route_sender_feedback(sender, on_picture_loss, lambda bits: feed.report_bitrate(self, bits)):
            log.debug("aiortc's sender feedback hooks not found; the composite ignores this viewer's reports")

    def stop(self) -> None:
        super().stop()
        self.feed.forget(self)
