"""Sound and picture in step: how far apart a participant's voice and lips reach the others.

    .venv/bin/python benchmarks/bench_av_sync.py                   # 12 events, the room as served
    .venv/bin/python benchmarks/bench_av_sync.py --no-follow       # the voice not held for the picture
    .venv/bin/python benchmarks/bench_av_sync.py --json benchmarks/out/av_sync.json

A sender joins a room with a synthetic camera and a microphone; every 1.5 s both "clap"
at the same instant: the picture goes dark for 0.3 s and a 1 kHz tone sounds for 0.3 s.
A listener in the same room (another aiortc peer) notes when each clap's darkness
reaches it in the composite (the sender's tile, read from the room listing) and when
its tone reaches it in the mixed sound. The offset is tone arrival minus picture
arrival: positive when sound lags the picture. Both peers stamp with the same clock,
on the same machine: no clock sync is involved.

The listener hands each composite to its decoder as soon as its last packet is in, and
each sound packet as soon as it is in, as a browser's receive path would before its own
playout buffers; what a browser adds on top (its jitter buffers, and its own lip sync
between the two tracks, which come in one stream) is not measured here.

Also measured: the mixer's own cost per 20 ms tick for rooms of 2 to 8 voices.
"""
from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from roomfuse.rtc.audio import FRAME, RATE, Inbox, Mixer, Voice
from roomfuse.rtc.aiortc_compat import make_prompt, make_prompt_audio
from roomfuse.rtc.compositor import ROOM_PIPELINE, RoomSettings
from roomfuse.rtc.ice import rtc_configuration
from roomfuse.rtc.server import Server
from roomfuse.rtc.signalling import KEY_HEADER, offer_body, offer_url, parse_answer, room_url
from roomfuse.synthetic import SyntheticSource

KEY = "bench"
ROOM = "sync"
PERIOD_S, CLAP_S = 1.5, 0.3
VIDEO_TB = fractions.Fraction(1, 90000)


def clapping(t: float, t0: float) -> bool:
    return t >= t0 and (t - t0) % PERIOD_S < CLAP_S


class ClapVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self, t0: float, fps: float = 30.0):
        super().__init__()
        self.t0, self.fps, self.n, self.start = t0, fps, 0, None
        self.source = SyntheticSource(1, size=(640, 360))

    async def recv(self):
        import av

        if self.start is None:
            self.start = time.time()
        due = self.start + self.n / self.fps
        await asyncio.sleep(max(0.0, due - time.time()))
        image = self.source.frame_at(self.n / self.fps).image
        if clapping(due, self.t0):
            image = (image // 8).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = int(self.n / self.fps / VIDEO_TB), VIDEO_TB
        self.n += 1
        return frame


class ClapAudio(MediaStreamTrack):
    kind = "audio"

    def __init__(self, t0: float):
        super().__init__()
        self.t0, self.n, self.start = t0, 0, None

    async def recv(self):
        import av

        if self.start is None:
            self.start = time.time()
        due = self.start + self.n * FRAME / RATE
        await asyncio.sleep(max(0.0, due - time.time()))
        t = due + np.arange(FRAME) / RATE
        on = np.array([clapping(x, self.t0) for x in t[::48]]).repeat(48)
        wave = np.where(on, 0.4 * np.sin(2 * np.pi * 1000 * t), 0.0)
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.n * FRAME, fractions.Fraction(1, RATE)
        self.n += 1
        return frame


class Peer:
    def __init__(self, name: str, video, audio):
        self.name = name
        self.pc = RTCPeerConnection(rtc_configuration())
        self.video, self.audio = video, audio
        self.pictures: list[tuple[float, object]] = []  # (arrival, av.VideoFrame)
        self.sounds: list[tuple[float, float]] = []  # (arrival, rms of 20 ms)
        self.tasks = []

        @self.pc.on("track")
        def on_track(track):
            self.tasks.append(asyncio.ensure_future(self._take(track)))

    async def _take(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.time()
                if track.kind == "video":
                    self.pictures.append((now, frame))
                else:
                    x = frame.to_ndarray().astype(np.float32) / 32768
                    self.sounds.append((now, float(np.sqrt(np.mean(x * x)))))
        except MediaStreamError:
            pass

    async def join(self, http, base: str) -> None:
        self.pc.addTransceiver(self.video, direction="sendrecv")
        self.pc.addTransceiver(self.audio if self.audio is not None else "audio",
                               direction="sendrecv" if self.audio is not None else "recvonly")
        for t in self.pc.getTransceivers():
            if t.kind == "video":
                make_prompt(t.receiver)
            else:
                make_prompt_audio(t.receiver)  # one packet, not aiortc's four, before a sound is handed on
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(offer_url(base, ROOM), json=offer_body(self.pc.localDescription.sdp, self.name, KEY)) as r:
            sdp, self.id = parse_answer(await r.json())
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def onsets(times: np.ndarray, values: np.ndarray, events: list[float], on) -> list[float | None]:
    """The first arrival after each event (within one period) whose value ``on`` says
    the clap has arrived."""
    out = []
    for e in events:
        sel = (times > e) & (times < e + PERIOD_S - 0.2) & on(values)
        out.append(float(times[sel][0]) if sel.any() else None)
    return out


async def measure(args) -> dict:
    if args.no_follow:
        Voice.follow_video = lambda self, delay: None
    settings = RoomSettings(segmenter="key", pipeline=replace(ROOM_PIPELINE, fps=args.fps,
                                                              grow=replace(ROOM_PIPELINE.grow, grower=args.grower)))
    async with Server(settings, KEY, host="127.0.0.1", port=0) as server, aiohttp.ClientSession() as http:
        t0 = time.time() + 4.0  # the first clap, once both are in and the room runs
        sender = Peer("sender", ClapVideo(t0, args.fps), ClapAudio(t0))
        listener = Peer("listener", ClapVideo(float("inf")), None)
        await sender.join(http, server.base)
        await listener.join(http, server.base)
        await asyncio.sleep(4.0 + PERIOD_S * args.events + 1.0)
        async with http.get(room_url(server.base, ROOM), headers={KEY_HEADER: KEY}) as r:
            info = await r.json()
        room = server.rooms.rooms[ROOM]
        voice = room.audio.voices[sender.id]
        inbox = {"delay_ms": round(voice.inbox.delay / RATE * 1e3, 1), "underruns": voice.inbox.underruns,
                 "dropped_ms": round(voice.inbox.dropped / RATE * 1e3, 1)}
        await sender.close()
        await listener.close()
    tile = next(p["tile"] for p in info["participants"] if p["id"] == sender.id)
    x, y, w, h = tile
    pt = np.array([t for t, _ in listener.pictures])
    luma = np.array([f.to_ndarray(format="gray")[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4].mean()
                     for _, f in listener.pictures])
    st = np.array([t for t, _ in listener.sounds])
    rms = np.array([v for _, v in listener.sounds])
    events = [t0 + i * PERIOD_S for i in range(args.events)]
    bright = float(np.median(luma))
    video = onsets(pt, luma, events, lambda v: v < 0.5 * bright)
    audio = onsets(st - FRAME / RATE, rms, events, lambda v: v > 0.05)  # a sound's first sample
    rows = [(e, v, a) for e, v, a in zip(events, video, audio) if v is not None and a is not None]
    offsets = [1e3 * (a - v) for _, v, a in rows]
    return {
        "events": args.events, "matched": len(rows), "follow_video": not args.no_follow, "fps": args.fps,
        "offset_ms": {"median": round(statistics.median(offsets), 1), "min": round(min(offsets), 1),
                      "max": round(max(offsets), 1)} if offsets else None,
        "video_latency_ms": round(statistics.median([1e3 * (v - e) for e, v, _ in rows]), 1) if rows else None,
        "audio_latency_ms": round(statistics.median([1e3 * (a - e) for e, _, a in rows]), 1) if rows else None,
        "server_video_delay_ms": next(p["delay_ms"] for p in info["participants"] if p["id"] == sender.id),
        "inbox": inbox, "mixer": mixer_cost(),
    }


def mixer_cost(ticks: int = 2000) -> dict:
    """Milliseconds per 20 ms tick to mix N voices (each listener gets all but their own)."""
    out = {}
    for n in (2, 4, 8):
        mixer = Mixer()
        for k in range(n):
            v = mixer.add(str(k))
            v.inbox = Inbox(delay_s=0.02)
            v.send_to()
        chunk = (0.1 * np.sin(np.arange(FRAME) / 7)).astype(np.float32)
        times = []
        for _ in range(ticks):
            for v in mixer.voices.values():
                v.inbox.put_samples(chunk)
                v.track._queue.clear()
            t = time.perf_counter()
            mixer.mix_once()
            times.append(time.perf_counter() - t)
        out[str(n)] = round(1e3 * statistics.median(times), 3)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=12, help="claps to time (default: %(default)s)")
    p.add_argument("--fps", type=float, default=30.0, help="the room's and the camera's frame rate (default: %(default)s)")
    p.add_argument("--grower", default="nca", help="the room's grower (default: %(default)s)")
    p.add_argument("--no-follow", action="store_true", help="do not hold sound as long as the picture")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--mixer-only", action="store_true", help="only the mixer's cost per tick")
    args = p.parse_args()
    if args.mixer_only:
        print(json.dumps({"mixer_ms_per_tick": mixer_cost()}))
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(measure(args))
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
