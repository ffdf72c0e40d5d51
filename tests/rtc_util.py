"""Helpers for the WebRTC tests: a real server on loopback, real aiortc participants.

Every test runs its own event loop through ``run`` (no asyncio plugin needed) and checks
on the way out that it left no task, thread or peer connection behind.
"""
from __future__ import annotations

import asyncio
import contextlib
import fractions
import threading
import time

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from roomfuse.config import ServerLimits
from roomfuse.rtc.compositor import RoomSettings
from roomfuse.rtc.ice import rtc_configuration
from roomfuse.rtc.server import Server
from roomfuse.rtc.signalling import KEY_HEADER, offer_body, offer_url, parse_answer, participant_url, room_url

KEY = "test-key"
TIME_BASE = fractions.Fraction(1, 90000)


def run(coro_fn, timeout: float = 60.0):
    """Run ``coro_fn()`` in a fresh loop; fail if it leaves tasks or threads running."""
    threads_before = set(threading.enumerate())

    async def main():
        try:
            return await asyncio.wait_for(coro_fn(), timeout)
        finally:
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
            for _ in range(50):  # aiortc finishes a few tasks just after close() returns
                if not left:
                    break
                await asyncio.sleep(0.02)
                left = [t for t in left if not t.done()]
            assert not left, f"tasks left running: {left[:5]}"

    result = asyncio.run(main())
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not extra:
            break
        time.sleep(0.05)
    assert not extra, f"threads left running: {[t.name for t in extra]}"
    return result



async def real_offer() -> str:
    """A complete offer from a real peer connection (candidates included)."""
    from aiortc import VideoStreamTrack

    pc = RTCPeerConnection(rtc_configuration())
    try:
        pc.addTransceiver(VideoStreamTrack(), direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()

@contextlib.asynccontextmanager
async def serving(limits: ServerLimits = ServerLimits(), access_log: bool = False, **settings):
    """A real server on 127.0.0.1 (any free port), with RoomSettings overrides."""
    server = Server(RoomSettings(**settings), KEY, host="127.0.0.1", port=0, limits=limits, access_log=access_log)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        assert not server.rooms.rooms, "rooms left open"


class SourceTrack(MediaStreamTrack):
    """A camera stand-in: frames from a source (clip or synthetic) at ``fps``, paced by
    the wall clock. ``freeze()`` stops the frames while the connection stays up."""

    kind = "video"

    def __init__(self, source, fps: float = 30.0, size: tuple[int, int] | None = None):
        super().__init__()
        self.source = source
        self.fps = fps
        self.size = size
        self.sent = 0
        self._start = None
        self._frozen = asyncio.Event()

    def freeze(self) -> None:
        self._frozen.set()

    async def recv(self):
        import av
        import cv2

        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / self.fps
        delay = due - time.monotonic()
        if self._frozen.is_set():
            await asyncio.Event().wait()  # never again; the sender's task is cancelled on close
        if delay > 0:
            await asyncio.sleep(delay)
        image = await asyncio.to_thread(lambda: self.source.frame_at(self.sent / self.fps).image)
        if self.size is not None and image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = int(self.sent / self.fps / TIME_BASE)
        frame.time_base = TIME_BASE
        self.sent += 1
        return frame


class Participant:
    """An aiortc participant: sends ``track``, counts the composite frames it receives
    and keeps the newest one."""

    def __init__(self, track: MediaStreamTrack, name: str = "test"):
        self.track = track
        self.name = name
        self.pc = RTCPeerConnection(rtc_configuration())
        self.id: str | None = None
        self.frames = 0
        self.sizes: set[tuple[int, int]] = set()
        self.latest = None  # av.VideoFrame
        self._image = None
        self.first_at: float | None = None
        self._pump: asyncio.Task | None = None

        @self.pc.on("track")
        def on_track(t):
            if t.kind == "video":
                self._pump = asyncio.ensure_future(self._receive(t))

    async def _receive(self, t) -> None:
        try:
            while True:
                f = await t.recv()
                self.frames += 1
                self.sizes.add((f.width, f.height))
                self.latest = f
                self._image = None
                if self.first_at is None:
                    self.first_at = time.monotonic()
        except MediaStreamError:
            pass

    async def join(self, http: aiohttp.ClientSession, base: str, room: str, key: str = KEY) -> str:
        self.pc.addTransceiver(self.track, direction="sendrecv")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(offer_url(base, room),
                             json=offer_body(self.pc.localDescription.sdp, self.name, key)) as resp:
            body = await resp.json()
            assert resp.status == 200, f"join failed: {resp.status} {body}"
        sdp, self.id = parse_answer(body)
        self.token = body.get("token")  # proves who we are to the state and settings routes
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        return self.id

    async def wait_frames(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.frames < n:
            assert time.monotonic() < deadline, f"{self.name}: {self.frames} of {n} frames in {timeout} s"
            await asyncio.sleep(0.05)

    def image(self) -> np.ndarray:
        """The newest composite received, RGB."""
        if self._image is None:
            self._image = self.latest.to_ndarray(format="rgb24")
        return self._image

    async def leave(self, http: aiohttp.ClientSession, base: str, room: str) -> int:
        async with http.delete(participant_url(base, room, self.id), headers={KEY_HEADER: KEY}) as resp:
            return resp.status

    async def close(self) -> None:
        await self.pc.close()
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)


async def room_info(http: aiohttp.ClientSession, base: str, room: str, key: str = KEY) -> dict:
    async with http.get(room_url(base, room), headers={KEY_HEADER: key}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    """Poll an async ``predicate()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(every)
