"""One connection to a room: the signalling requests (HTTP) and the peer connection
(WebRTC) that sends this participant's camera and receives the room's composite.

A ``Connection`` lives from one offer to one close. Rejoining after a loss makes a new
one (a new peer connection, a new participant id) around the same ``SourceReader``, so
the camera stays open across reconnects.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import RoomfuseError
from .ice import IceServer, rtc_configuration
from .signalling import (CONFIG_PATH, KEY_HEADER, SignallingError, check_room_name, offer_body, offer_url,
                         parse_answer, participant_url, room_url)

log = logging.getLogger(__name__)


class JoinError(RoomfuseError):
    """The room could not be joined. ``retry`` is True for causes that waiting can fix
    (server down or restarting, room full), False for those only the user can (a wrong
    key, a URL that is not a roomfuse server)."""

    def __init__(self, message: str, retry: bool = False, status: int | None = None):
        super().__init__(message)
        self.retry = retry
        self.status = status  # the HTTP status that said no, if one did


@dataclass(frozen=True)
class Link:
    """Where the room is: the server's base URL, the room's name and its key."""

    base: str  # scheme://host[:port][/prefix], no trailing slash
    room: str
    key: str | None

    @property
    def host(self) -> str:
        return urlsplit(self.base).hostname or ""


# Paths that name a room in the URLs people copy: the room page and the API.
ROOM_IN_PATH = ("/r/", "/rooms/")


def parse_link(url: str, room: str | None = None, key: str | None = None, default_room: str = "main") -> Link:
    """The room a URL points at. ``--room``/``--key`` win over the URL's own room
    (``/r/NAME``, ``/rooms/NAME`` or ``room=``) and ``key=`` (in the query or after ``#``),
    so the URL that ``roomfuse serve`` prints works as it is."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as e:
        raise JoinError(f"bad URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise JoinError(f"bad URL {url!r}: expected http://HOST:PORT or https://HOST")
    if not parts.hostname:
        raise JoinError(f"bad URL {url!r}: no host name")
    fields = {**parse_qs(parts.fragment), **parse_qs(parts.query)}
    path = parts.path.rstrip("/")
    url_room = (fields.get("room") or [None])[0]
    for marker in ROOM_IN_PATH:
        head, sep, tail = path.rpartition(marker)
        if sep and tail and "/" not in tail:
            path, url_room = head, url_room or unquote(tail)
            break
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    chosen = room or url_room or default_room
    try:
        check_room_name(chosen)
    except SignallingError as e:
        raise JoinError(str(e)) from None
    return Link(base=f"{parts.scheme}://{netloc}{path}", room=chosen,
                key=key if key is not None else (fields.get("key") or [None])[0])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Signalling:
    """The server's HTTP contract, with every failure turned into a one-line JoinError."""

    def __init__(self, http, link: Link):
        self.http, self.link = http, link

    async def offer(self, sdp: str, name: str) -> tuple[str, str]:
        """Send our offer; return the server's answer SDP and our participant id."""
        url = offer_url(self.link.base, self.link.room)
        data = await self._request("POST", url, json=offer_body(sdp, name, self.link.key or ""))
        try:
            answer, participant = parse_answer(data)
        except SignallingError as e:
            raise JoinError(f"{url}: {e}") from None
        if not participant:
            raise JoinError(f"{url}: the answer names no participant id")
        return answer, participant

    async def leave(self, participant: str, timeout: float) -> None:
        url = participant_url(self.link.base, self.link.room, quote(participant, safe=""))
        await self._request("DELETE", url, timeout=timeout)

    async def ice_servers(self) -> list[IceServer]:
        """The STUN/TURN servers the room server was started with (what its page uses)."""
        url = self.link.base + CONFIG_PATH
        try:
            data = await self._request("GET", url)
        except JoinError as e:
            # A refused key is final; any other answer leaves it to the offer to tell
            # whether this is a roomfuse server at all.
            if e.status is None or e.status in (401, 403):
                raise
            return []
        out = []
        for entry in (data.get("iceServers") or []) if isinstance(data, dict) else []:
            urls = entry.get("urls") if isinstance(entry, dict) else None
            for u in [urls] if isinstance(urls, str) else (urls or []):
                out.append(IceServer(url=u, username=entry.get("username"), credential=entry.get("credential")))
        return out

    async def participants(self) -> list:
        url = room_url(self.link.base, self.link.room)
        data = await self._request("GET", url)
        listing = data.get("participants") if isinstance(data, dict) else None
        if not isinstance(listing, list):
            raise JoinError(f"{url}: the answer has no participant list")
        return listing

    async def _request(self, method: str, url: str, json: dict | None = None, timeout: float | None = None):
        import aiohttp

        where = self.link.base
        kw = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        # The offer carries the key in its body; GET and DELETE in a header, which unlike
        # a query parameter stays out of access logs.
        headers = {KEY_HEADER: self.link.key} if self.link.key and json is None else {}
        try:
            async with self.http.request(method, url, json=json, headers=headers, **kw) as resp:
                text = await resp.text()
                status = resp.status
        except asyncio.TimeoutError:
            raise JoinError(f"{where}: no answer to {method} within the time limit", retry=True) from None
        except aiohttp.ClientConnectorError as e:
            raise JoinError(f"cannot reach {where} ({_os_reason(e)})", retry=True) from None
        except aiohttp.ClientError as e:
            raise JoinError(f"{where}: connection broke during {method} ({type(e).__name__})",
                            retry=True) from None
        data = _json_or_none(text)
        said = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else None
        if status < 300:
            if data is None:
                raise JoinError(f"{url}: not a roomfuse server (answer is not JSON)")
            return data
        room = f"room {self.link.room!r} at {where}"
        if status in (401, 403):
            # The server's own words ("wrong room key") add nothing; say what to do.
            if self.link.key:
                raise JoinError(f"{room}: wrong room key (HTTP {status})", status=status)
            raise JoinError(f"{room}: this room needs a key: pass --key KEY or the URL `roomfuse serve` "
                            f"printed, with its #key= (HTTP {status})", status=status)
        if status == 404 and said is None:
            raise JoinError(f"{url}: not a roomfuse server (HTTP 404)", status=status)
        if status == 409:
            raise JoinError(f"{room}: {said or 'room is full'} (HTTP 409)", retry=True, status=status)
        if status in (502, 503, 504) or (status >= 500 and said is None):
            raise JoinError(f"{room}: server unavailable{f' ({said})' if said else ''} (HTTP {status})",
                            retry=True, status=status)
        raise JoinError(f"{room}: {method} refused: {said or 'no reason given'} (HTTP {status})", status=status)


def _json_or_none(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def _os_reason(e) -> str:
    import os
    import socket

    err = getattr(e, "os_error", None)
    if isinstance(err, socket.gaierror):
        return f"host name not found: {err.strerror or err}".lower()
    if isinstance(err, OSError) and err.errno and err.errno > 0:
        return os.strerror(err.errno).lower()
    text = str(err or e).strip()
    return (text.splitlines() or [type(e).__name__])[0].lower()[:120]


class SourceReader:
    """A capture source read at its own rate in one thread of its own.

    Decoding a clip or waiting for a webcam blocks, and so does the RGB to YUV
    conversion the encoder needs; both happen here, off the event loop. One thread keeps
    reads in order even when a closing connection's last read overlaps the next one's
    first.
    """

    def __init__(self, source, fps: float | None = None):
        self.source = source
        self.fps = float(fps or getattr(source, "fps", None) or 30.0)
        self.error: RoomfuseError | None = None  # set when the source stops delivering
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roomfuse-source")
        self._next_t: float | None = None

    async def read(self):
        period = 1.0 / self.fps
        now = time.monotonic()
        if self._next_t is None:
            self._next_t = now
        if self._next_t > now:
            await asyncio.sleep(self._next_t - now)
        # After a stall (a reconnect, a slow read) go on from now instead of sending a
        # burst of frames to catch up.
        self._next_t = max(self._next_t + period, time.monotonic() - period)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read_frame)

    def _read_frame(self):
        import av

        image = self.source.read().image
        h, w = image.shape[:2]
        # 4:2:0 video needs even sizes; a camera or clip with an odd edge loses one pixel.
        image = image[:h - h % 2, :w - w % 2]
        return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.source.close()


def _source_track(reader: SourceReader):
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

    class SourceTrack(MediaStreamTrack):
        """Our camera (or clip) as the video track we send."""

        kind = "video"

        def __init__(self):
            super().__init__()
            self._start: float | None = None

        async def recv(self):
            try:
                frame = await reader.read()
            except RoomfuseError as e:
                reader.error = e
                self.stop()
                raise MediaStreamError from None
            now = time.monotonic()
            if self._start is None:
                self._start = now
            frame.pts = int((now - self._start) * VIDEO_CLOCK_RATE)
            frame.time_base = VIDEO_TIME_BASE
            return frame

    return SourceTrack()


class Connection:
    """One peer connection to the room, from offer to close."""

    def __init__(self, signalling: Signalling, reader: SourceReader, on_frame: Callable, *,
                 ice_servers: Sequence = (), timeouts, sound=None, on_sound: Callable | None = None):
        """``sound`` (a ``sound.SoundSource``) is sent to the room; ``on_sound`` gets the
        room's sound, as ``av.AudioFrame``s. Without either the offer has no audio."""
        self.signalling, self.reader, self.on_frame = signalling, reader, on_frame
        self.ice_servers, self.timeouts = ice_servers, timeouts
        self.sound, self.on_sound = sound, on_sound
        self.participant: str | None = None
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self._pc = None
        self._tasks: list[asyncio.Task] = []
        self._lost: str | None = None
        self._opened_at = self._last_frame_at = time.monotonic()
        self._closed = False

    async def open(self, name: str) -> None:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        # The STUN/TURN servers of the room server (so a TURN server given to `serve`
        # reaches every participant) plus any given here; never a default one: an
        # explicit configuration keeps aiortc from adding a public STUN server.
        servers = [*self.ice_servers, *await self.signalling.ice_servers()]
        pc = self._pc = RTCPeerConnection(rtc_configuration(servers))
        pc.addTrack(_source_track(self.reader))  # sendrecv: the composite comes back on it
        if self.sound is not None or self.on_sound is not None:
            direction = {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}[
                (self.sound is not None, self.on_sound is not None)]
            pc.addTransceiver(self.sound.track() if self.sound is not None else "audio", direction=direction)

        @pc.on("track")
        def on_track(track):
            self._tasks.append(asyncio.ensure_future(self._receive(track)))

        @pc.on("connectionstatechange")
        def on_state():
            log.debug("peer connection: %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed") and not self._closed:
                self._lost = self._lost or f"peer connection {pc.connectionState}"

        await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate (no trickle)
        answer, self.participant = await self.signalling.offer(pc.localDescription.sdp, name)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as e:  # aiortc raises ValueError and others for SDP it cannot use
            raise JoinError(f"{self.signalling.link.base}: cannot use the server's answer "
                            f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
        self._opened_at = time.monotonic()

    async def _receive(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                if track.kind != "video":
                    # Drained in any case, so that aiortc's queue does not grow.
                    if self.on_sound is not None and track.kind == "audio":
                        self.on_sound(frame)
                    continue
                self.frames += 1
                self._last_frame_at = time.monotonic()
                size = (frame.width, frame.height)
                if size != self.size:
                    log.info("receiving the room's composite at %dx%d", *size)
                    self.size = size
                self.on_frame(frame)
        except MediaStreamError:
            self._lost = self._lost or "the server ended the stream"

    async def watch(self, stop: asyncio.Event) -> str | None:
        """Wait until ``stop`` (returns None) or until the connection is lost (returns why)."""
        t = self.timeouts
        while True:
            if self.reader.error is not None:
                raise self.reader.error
            if stop.is_set():
                return None
            if self._lost:
                return self._lost
            now = time.monotonic()
            if not self.frames and now - self._opened_at > t.first_frame_s:
                return f"no video from the room within {t.first_frame_s:g} s"
            if self.frames and now - self._last_frame_at > t.stall_s:
                return f"no video from the room for {t.stall_s:g} s"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def close(self, leave: bool, quiet: bool = False) -> None:
        """Give the seat back (``leave``) and close the peer connection. Safe to repeat."""
        if self._closed:
            return
        self._closed = True
        # Leave before closing: the server then removes us at once instead of noticing a
        # dead peer connection seconds later.
        if leave and self.participant is not None:
            try:
                await self.signalling.leave(self.participant, timeout=self.timeouts.leave_s)
                log.debug("left as participant %s", self.participant)
            except JoinError as e:
                (log.debug if quiet else log.warning)("could not leave the room cleanly: %s", e)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pc is not None:
            await self._pc.close()


__all__ = ["JoinError", "Link", "parse_link", "is_loopback", "Signalling", "SourceReader", "Connection"]
