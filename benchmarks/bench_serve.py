"""`roomfuse serve` under load: participants sending real clips, the composite received.

    .venv/bin/python benchmarks/bench_serve.py                      # 2 x 640x360, default grower
    .venv/bin/python benchmarks/bench_serve.py --seconds 60 --json benchmarks/out/serve.json
    .venv/bin/python benchmarks/bench_serve.py -- --grower blend    # flags after -- go to serve

The server runs as its own process (`python -m roomfuse serve`, as a user starts it); the
participants are aiortc peers in this process, each sending a looped webcam clip at the
given size and rate.

Round-trip latency is measured in the pictures themselves. Every frame a participant
sends carries a marker in its top-left corner: two rows of black and white cells holding
a 10-bit frame counter (sync cells give the black and white levels, a parity cell catches
a misread). The participant notes when it handed each frame to its encoder. In
each composite it receives it reads the marker back from its own tile (the server
reports where each participant's tile is), and the round trip is the time from handing
frame N to the encoder to receiving the first composite that shows frame N: encode,
network, server decode, waiting for the room's tick, the pipeline, the server's encode,
network and decode. Frames whose marker cannot be read are counted, not guessed.

The participants are aiortc peers, but they hand each composite to their decoder as soon
as its last packet is in, as browsers do (aiortc on its own holds a frame until the next
one starts arriving: one more frame period; --stock-client-buffer measures that).

Frame rate is composites received per second by each participant. The machine's load
(other jobs) and each process's CPU time per composite are recorded with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

from roomfuse.capture import ClipSource
from roomfuse.datapath import data_root
from roomfuse.rtc.ice import rtc_configuration, use_host_addresses
from roomfuse.rtc.signalling import KEY_HEADER, offer_body, offer_url, parse_answer, room_url
from roomfuse.rtc.aiortc_compat import make_prompt

KEY = "bench"
TIME_BASE = fractions.Fraction(1, 90000)
CLIPS = ["pyfeat_single_face.mp4", "pexels_wolfganglanger.mp4"]

# The marker, in source pixels: a COLS x 2 grid of CELL x CELL cells at the top-left
# corner, small enough to stay clear of a head near the top of the picture.
CELL, COLS = 28, 7
BITS = 10
# white sync, black sync, the counter (MSB first), even parity, white sync
LAYOUT = ["w", "b"] + [f"bit{i}" for i in range(BITS)] + ["parity", "w"]


def cell_origin(i: int) -> tuple[int, int]:
    return (i % COLS) * CELL, (i // COLS) * CELL


def draw_marker(image: np.ndarray, counter: int) -> None:
    value = counter % (1 << BITS)
    bits = [(value >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    cells = [1, 0] + bits + [sum(bits) % 2, 1]
    for i, on in enumerate(cells):
        x, y = cell_origin(i)
        image[y:y + CELL, x:x + CELL] = 255 if on else 0


def read_marker(luma: np.ndarray, tile, source_w: int) -> int | None:
    """The counter shown in ``tile`` (x, y, w, h) of a composite's luma plane, or None."""
    x, y, w, h = tile
    s = w / source_w  # the tile is the source scaled by this
    r = max(1, int(CELL * s * 0.25))  # sample the middle half of each cell
    levels = []
    for i in range(len(LAYOUT)):
        cx, cy = cell_origin(i)
        cx, cy = int(x + (cx + CELL / 2) * s), int(y + (cy + CELL / 2) * s)
        patch = luma[cy - r:cy + r, cx - r:cx + r]
        if patch.size == 0:
            return None
        levels.append(float(patch.mean()))
    white, black = min(levels[0], levels[-1]), levels[1]
    if white - black < 80:
        return None
    mid = (white + black) / 2
    data = levels[2:2 + BITS + 1]
    # Cells must be clearly black or white: a blend of two markers is not a reading.
    if any(abs(v - mid) < 0.25 * (white - black) for v in data):
        return None
    bits = [1 if v > mid else 0 for v in data]
    if sum(bits[:BITS]) % 2 != bits[BITS]:
        return None
    return sum(b << (BITS - 1 - i) for i, b in enumerate(bits[:BITS]))


class MarkedClip:
    """A camera stand-in: a clip, decoded in advance (a camera does not decode either),
    scaled to ``size``, looped, a marker drawn on each frame sent."""

    def __init__(self, path: Path, size: tuple[int, int], max_frames: int = 150):
        import cv2

        src = ClipSource(path)
        try:
            self.frames = [cv2.resize(src.read().image, size, interpolation=cv2.INTER_AREA)
                           for _ in range(max_frames)]
        finally:
            src.close()


def make_track(clip: MarkedClip, fps: float, sent: dict):
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class MarkedTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.count = 0
            self.start = None

        async def recv(self):
            import av

            if self.readyState != "live":
                raise MediaStreamError
            if self.start is None:
                self.start = time.monotonic()
            delay = self.start + self.count / fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            image = clip.frames[self.count % len(clip.frames)].copy()
            draw_marker(image, self.count)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(self.count / fps / TIME_BASE)
            frame.time_base = TIME_BASE
            sent[self.count % (1 << BITS)] = (self.count, time.monotonic())
            self.count += 1
            return frame

    return MarkedTrack()


class Peer:
    def __init__(self, name: str, clip: MarkedClip, fps: float, size: tuple[int, int], prompt: bool):
        from aiortc import RTCPeerConnection

        self.name = name
        self.size = size
        self.prompt = prompt
        self.sent: dict[int, tuple[int, float]] = {}  # counter mod 2^BITS -> (counter, time)
        self.track = make_track(clip, fps, self.sent)
        self.pc = RTCPeerConnection(rtc_configuration())
        self.id = None
        self.tile = None
        self.received: list[float] = []  # arrival times of composites
        self.rtt: list[tuple[float, float]] = []  # (arrival time, seconds)
        self.unreadable = 0
        self.canvas = None
        self.keep_last = False
        self.last = None  # the newest composite received (BGR), when keep_last
        self._seen = -1
        self._task = None
        self.pc.on("track", lambda t: self._start(t))

    def _start(self, track):
        if track.kind == "video":
            self._task = asyncio.ensure_future(self._receive(track))

    async def _receive(self, track):
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.received.append(now)
                self.canvas = (frame.width, frame.height)
                if self.keep_last:
                    self.last = frame.to_ndarray(format="bgr24")
                if self.tile is None:
                    continue
                luma = frame.to_ndarray()[:frame.height]  # yuv420p: the Y plane comes first
                value = read_marker(luma, self.tile, self.size[0])
                hit = self.sent.get(value) if value is not None else None
                if hit is None:
                    self.unreadable += 1
                elif hit[0] > self._seen:  # the first composite to show this frame
                    self._seen = hit[0]
                    self.rtt.append((now, now - hit[1]))
        except MediaStreamError:
            pass

    async def join(self, http, base: str, room: str):
        from aiortc import RTCSessionDescription

        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        if self.prompt:  # decode each composite when its last packet is in, as a browser does
            make_prompt(transceiver.receiver)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(offer_url(base, room), json=offer_body(self.pc.localDescription.sdp, self.name, KEY)) as r:
            body = await r.json()
            if r.status != 200:
                raise SystemExit(f"join failed: {r.status} {body}")
        sdp, self.id = parse_answer(body)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self):
        await self.pc.close()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)


def cpu_seconds(pid: int | None = None) -> float:
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "roomfuse", "serve", "--port", "0", "--key", KEY, *extra]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    if not line.startswith("roomfuse serve: open "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}\n{log.read_text()[-2000:]}")
    return proc, line.split("open ", 1)[1].split("/#", 1)[0]


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)) * 1e3, 1) if len(values) else None


async def measure(args, base: str, server_pid: int) -> dict:
    root = data_root() / "person_clips"
    clips = [MarkedClip(root / name, args.size) for name in args.clips]
    peers = [Peer(f"p{i}", c, args.send_fps, args.size, not args.stock_client_buffer) for i, c in enumerate(clips)]
    peers[0].keep_last = args.save_frame is not None
    async with aiohttp.ClientSession() as http:
        try:
            for p in peers:
                await p.join(http, base, "bench")

            async def refresh_tiles():
                async with http.get(room_url(base, "bench"), headers={KEY_HEADER: KEY}) as r:
                    info = await r.json()
                tiles = {q["id"]: q["tile"] for q in info["participants"]}
                for p in peers:
                    p.tile = tiles.get(p.id)
                return info

            t_end_warm = time.monotonic() + args.warmup
            while time.monotonic() < t_end_warm:
                await refresh_tiles()
                await asyncio.sleep(0.5)
            info0 = await refresh_tiles()
            t0, cpu0, srv0 = time.monotonic(), cpu_seconds(), cpu_seconds(server_pid)
            load0 = os.getloadavg()
            await asyncio.sleep(args.seconds)
            t1, cpu1, srv1 = time.monotonic(), cpu_seconds(), cpu_seconds(server_pid)
            info1 = await refresh_tiles()
            load1 = os.getloadavg()
            for p in peers:
                stats = await p.pc.getStats()
                p.lost = sum(getattr(st, "packetsLost", 0) for st in stats.values() if st.type == "inbound-rtp")
            if args.save_frame and peers[0].last is not None:
                import cv2

                cv2.imwrite(str(args.save_frame), peers[0].last)
        finally:
            for p in peers:
                await p.close()
    window = t1 - t0
    composed = info1["composed"] - info0["composed"]
    out = {"window_s": round(window, 1), "loadavg_start": load0, "loadavg_end": load1,
           "room_fps": round(composed / window, 2), "late_composites": info1["late"] - info0["late"],
           "server_cpu_pct": round(100 * (srv1 - srv0) / window, 1),
           "server_cpu_ms_per_composite": round(1e3 * (srv1 - srv0) / max(composed, 1), 2),
           "clients_cpu_pct": round(100 * (cpu1 - cpu0) / window, 1),
           "stage_ms_last": info1["stage_ms"], "participants": []}
    server_side = {q["id"]: q for q in info1["participants"]}
    for p in peers:
        got = [t for t in p.received if t0 <= t <= t1]
        rtt = [r for t, r in p.rtt if t0 <= t <= t1]
        out["participants"].append({
            "canvas": list(p.canvas) if p.canvas else None, "fps": round(len(got) / window, 2),
            "rtt_p50_ms": pct(rtt, 50), "rtt_p95_ms": pct(rtt, 95), "rtt_samples": len(rtt),
            "unreadable_markers": p.unreadable, "packets_lost": p.lost,
            "server_delay_ms": server_side.get(p.id, {}).get("delay_ms"),
            "picture_losses": server_side.get(p.id, {}).get("picture_losses")})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", nargs="+", default=CLIPS, help="clip names in the team data's person_clips/")
    p.add_argument("--size", default="640x360", help="what each participant sends, WxH")
    p.add_argument("--send-fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=30.0, help="measured window")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring")
    p.add_argument("--runs", type=int, default=1, help="repeat with a fresh server each time")
    p.add_argument("--stock-client-buffer", action="store_true",
                   help="participants keep aiortc's receive buffer, which holds each composite until "
                        "the next one starts arriving (a browser does not)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--save-frame", type=Path, default=None, help="write the last composite received (PNG)")
    p.add_argument("serve_args", nargs="*", help="after --: extra `roomfuse serve` flags")
    args = p.parse_args()
    w, _, h = args.size.partition("x")
    args.size = (int(w), int(h))
    log_dir = Path(__file__).parent / "out"
    log_dir.mkdir(exist_ok=True)
    restore = use_host_addresses(["127.0.0.1"])
    runs = []
    try:
        for i in range(args.runs):
            proc, base = start_server(args.serve_args, log_dir / f"serve-{i}.log")
            try:
                runs.append(asyncio.run(measure(args, base, proc.pid)))
            finally:
                proc.terminate()
                proc.wait(timeout=20)
            print(json.dumps(runs[-1]), flush=True)
    finally:
        restore()
    result = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "clips": args.clips, "size": list(args.size), "serve_args": args.serve_args,
              "client_buffer": "aiortc" if args.stock_client_buffer else "prompt", "runs": runs}
    for i, r in enumerate(runs):
        cells = [f"{q['fps']:.1f} fps, RTT p50 {q['rtt_p50_ms']} / p95 {q['rtt_p95_ms']} ms "
                 f"({q['rtt_samples']} samples, {q['unreadable_markers']} unreadable; server delay "
                 f"{q['server_delay_ms']} ms)" for q in r["participants"]]
        print(f"run {i}: load {r['loadavg_start'][0]:.2f}->{r['loadavg_end'][0]:.2f}; room {r['room_fps']} fps, "
              f"{r['late_composites']} late; server {r['server_cpu_pct']}% CPU "
              f"({r['server_cpu_ms_per_composite']} ms/composite), clients {r['clients_cpu_pct']}%; "
              + " | ".join(cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def machine() -> str:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
