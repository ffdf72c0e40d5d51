"""A server left running: participants come and go for minutes; does its memory come back?

    .venv/bin/python benchmarks/soak.py                           # 10 minutes, 8 participants
    .venv/bin/python benchmarks/soak.py --minutes 2 --json benchmarks/out/soak.json --plot soak.png
    .venv/bin/python benchmarks/soak.py -- --grower blend         # flags after -- go to serve

`roomfuse serve` runs as its own process, started as a user starts it; every participant
is a process of its own too (this script with --participant): an aiortc peer sending a
team clip, looped, at --size and --fps. Three phases:

1. warm-up: two short rooms of two, one after the other, each left by DELETE. The
   server's size once both are closed is the baseline: what a server that has hosted a
   room costs (imports, first-use buffers, the pooled segmenters).
2. churn, --minutes long: in one room a steady observer stays throughout, while seven
   seats churn: each participant stays 10-30 s and leaves by the next of four ways, in
   turn: DELETE, closing its peer connection without a word, freezing (its video stops,
   the connection lives on until the server removes it) or being killed (SIGKILL), and a
   new one takes the seat a few seconds later.
3. tail: everyone leaves, then --tail-rooms more short rooms of two; the server's size
   is taken once each has closed.

The server's resident size (VmRSS), threads and open files are sampled every 2 s all
along. The verdict compares the empty server after the churn and after each tail room
with the baseline, and counts tracebacks in the server's log. Measured while other work
shares the machine, the room's frame rate means little; the memory does not depend on
it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

KEY = "soak-benchmark-key"
CLIPS = ["intel_asl_bird.mkv", "intel_asl_book.mkv", "pyfeat_single_face.mp4", "intel_asl_milk.mkv",
         "intel_asl_thanks.mkv", "intel_asl_walk.mkv", "intel_asl_yes.mkv", "intel_asl_help.mkv"]
LEAVES = ("delete", "close", "freeze", "kill")
ROOM = "soak"


# ---- a participant, in a process of its own --------------------------------------------

async def participant(args) -> None:
    """Join, send the clip until told otherwise, print what happens (one line each).
    SIGTERM: leave by DELETE; SIGUSR1: close the connection without leaving; SIGUSR2:
    freeze the video and stay; SIGKILL: die."""
    import fractions

    import aiohttp
    import av
    import cv2
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    from roomfuse.capture import ClipSource
    from roomfuse.rtc.ice import rtc_configuration, use_host_addresses
    from roomfuse.rtc.signalling import KEY_HEADER, offer_body, offer_url, parse_answer, participant_url

    use_host_addresses(["127.0.0.1"])
    src = ClipSource(args.clip)
    try:
        frames = [cv2.resize(src.read().image, args.size, interpolation=cv2.INTER_AREA) for _ in range(90)]
    finally:
        src.close()
    base = fractions.Fraction(1, 90000)
    frozen = asyncio.Event()

    class Clip(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.n, self.t0 = 0, None

        async def recv(self):
            if self.readyState != "live":
                raise MediaStreamError
            self.t0 = self.t0 or time.monotonic()
            delay = self.t0 + self.n / args.fps - time.monotonic()
            if frozen.is_set():
                await asyncio.Event().wait()
            if delay > 0:
                await asyncio.sleep(delay)
            f = av.VideoFrame.from_ndarray(frames[self.n % len(frames)], format="rgb24")
            f.pts, f.time_base = int(self.n / args.fps / base), base
            self.n += 1
            return f

    pc = RTCPeerConnection(rtc_configuration())
    received = 0

    @pc.on("track")
    def on_track(track):
        async def drain():
            nonlocal received
            try:
                while True:
                    await track.recv()
                    received += 1
            except MediaStreamError:
                pass
        asyncio.ensure_future(drain())

    pc.addTransceiver(Clip(), direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        for attempt in range(60):  # a seat may still be held by someone leaving
            async with http.post(offer_url(args.base, args.room),
                                 json=offer_body(pc.localDescription.sdp, args.name, KEY)) as r:
                body = await r.json()
            if r.status == 200:
                break
            print(f"refused {r.status} {body.get('error')}", flush=True)
            await asyncio.sleep(1.0)
        else:
            raise SystemExit(2)
        sdp, pid = parse_answer(body)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        print(f"joined {pid}", flush=True)
        done = asyncio.Event()
        how = {"leave": None}
        loop = asyncio.get_running_loop()
        for sig, name in ((signal.SIGTERM, "delete"), (signal.SIGUSR1, "close"), (signal.SIGUSR2, "freeze")):
            loop.add_signal_handler(sig, lambda name=name: (how.__setitem__("leave", name), done.set()))
        last = time.monotonic()
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() - last >= 2.0:
                print(f"frames {received}", flush=True)
                last = time.monotonic()
        if how["leave"] == "delete":
            async with http.delete(participant_url(args.base, args.room, pid), headers={KEY_HEADER: KEY}) as r:
                print(f"left {r.status}", flush=True)
        if how["leave"] == "freeze":
            frozen.set()
            print("frozen", flush=True)
            await asyncio.Event().wait()  # until killed
    await pc.close()


# ---- the conductor -----------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.samples: list[dict] = []
        self.events: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.server = None
        self.base = None
        self.leaves = {m: 0 for m in LEAVES}
        self.rng = random.Random(args.seed)
        self.children: set[subprocess.Popen] = set()

    def note(self, what: str) -> None:
        t = round(time.monotonic() - self.t0, 1)
        self.events.append((t, what))
        if self.args.verbose:
            print(f"{t:7.1f} s  {what}", file=sys.stderr)

    def sample(self, phase: str, names: bool = False) -> dict:
        pid = self.server.pid
        status = Path(f"/proc/{pid}/status").read_text()
        field = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
        field = {k: int(field[k].split()[0]) for k in ("VmRSS", "Threads")}
        s = {"t": round(time.monotonic() - self.t0, 1), "phase": phase, "rss_mb": round(field["VmRSS"] / 1024, 1),
             "threads": field["Threads"], "fds": len(os.listdir(f"/proc/{pid}/fd"))}
        if names:  # which threads: a count per thread name
            tasks = Path(f"/proc/{pid}/task")
            s["thread_names"] = dict(Counter((t / "comm").read_text().strip().rstrip("0123456789/")
                                             for t in tasks.iterdir()))
        self.samples.append(s)
        return s

    def start_server(self) -> None:
        a = self.args
        cmd = [sys.executable, "-m", "roomfuse", "serve", "--port", "0", "--key", KEY, *a.serve_args]
        self.log = open(a.out / "serve.log", "w")
        self.server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.server.stdout.readline()
        if not line.startswith("roomfuse serve: open "):
            self.server.kill()
            raise SystemExit(f"server did not start: {line!r}")
        self.base = line.split("open ", 1)[1].split("/#", 1)[0]

    def spawn(self, room: str, name: str, clip: str) -> subprocess.Popen:
        a = self.args
        cmd = [sys.executable, __file__, "--participant", "--base", self.base, "--room", room, "--name", name,
               "--clip", str(a.data / clip), "--size", f"{a.size[0]}x{a.size[1]}", "--fps", str(a.fps)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.children.add(p)
        return p

    async def joined(self, p: subprocess.Popen, timeout: float = 90.0) -> bool:
        """Wait for the participant's "joined" line (its stdout read in a thread)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = await loop.run_in_executor(None, p.stdout.readline)
            if not line:
                return False
            if line.startswith("joined"):
                return True
        return False

    def leave(self, p: subprocess.Popen, how: str) -> None:
        self.leaves[how] += 1
        if how == "kill":
            p.kill()
        else:
            p.send_signal({"delete": signal.SIGTERM, "close": signal.SIGUSR1, "freeze": signal.SIGUSR2}[how])

    async def finish(self, p: subprocess.Popen, how: str) -> None:
        """Reap a participant that was told to leave; a frozen one is killed once the
        server has had time to notice it (stall, fade) and remove it."""
        await asyncio.sleep(8.0 if how == "freeze" else 0.0)
        if how == "freeze":
            p.kill()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, p.wait, 20)
        except subprocess.TimeoutExpired:
            p.kill()
            await loop.run_in_executor(None, p.wait)
        self.children.discard(p)

    async def people(self, room: str) -> int:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.base}/rooms/{room}", headers={"X-Roomfuse-Key": KEY}) as r:
                return len((await r.json())["participants"])

    async def until_empty(self, room: str, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.people(room) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # the room closes and its memory is given back

    async def short_room(self, room: str, seconds: float, phase: str) -> dict:
        ps = [self.spawn(room, f"{room}-{i}", CLIPS[i]) for i in range(2)]
        for p in ps:
            await self.joined(p)
        self.note(f"room {room}: 2 joined")
        await asyncio.sleep(seconds)
        for p in ps:
            self.leave(p, "delete")
        await asyncio.gather(*(self.finish(p, "delete") for p in ps))
        await self.until_empty(room)
        s = self.sample(phase, names=True)
        self.note(f"room {room} closed: {s['rss_mb']} MB, {s['threads']} threads")
        return s

    async def seat(self, index: int, until: float) -> None:
        """One churning seat: join, stay, leave the next way, again until ``until``."""
        turn = index
        while time.monotonic() < until - 12:
            p = self.spawn(ROOM, f"seat{index}", CLIPS[1 + index % (len(CLIPS) - 1)])
            if not await self.joined(p):
                await self.finish(p, "kill")
                continue
            stay = self.rng.uniform(*self.args.stay)
            await asyncio.sleep(max(0.0, min(stay, until - time.monotonic())))
            how = LEAVES[turn % len(LEAVES)]
            turn += 1
            self.leave(p, how)
            self.note(f"seat {index} leaves by {how}")
            await self.finish(p, how)
            await asyncio.sleep(self.rng.uniform(1.0, 4.0))

    async def sampler(self, phase_of) -> None:
        while True:
            self.sample(phase_of())
            await asyncio.sleep(2.0)

    async def run(self) -> dict:
        a = self.args
        self.start_server()
        phase = ["start"]
        sampling = asyncio.ensure_future(self.sampler(lambda: phase[0]))
        try:
            phase[0] = "warm-up"
            warm = [await self.short_room(f"warm{i}", a.room_seconds, "warm-up") for i in range(2)]
            baseline = warm[-1]["rss_mb"]
            phase[0] = "churn"
            observer = self.spawn(ROOM, "observer", CLIPS[0])
            await self.joined(observer)
            until = time.monotonic() + a.minutes * 60
            await asyncio.gather(*(self.seat(i, until) for i in range(a.seats)))
            self.leave(observer, "delete")
            await self.finish(observer, "delete")
            await self.until_empty(ROOM)
            after_churn = self.sample("after churn", names=True)
            phase[0] = "tail"
            tail = [await self.short_room(f"tail{i}", a.room_seconds, "tail") for i in range(a.tail_rooms)]
        finally:
            sampling.cancel()
            for p in list(self.children):
                p.kill()
            self.server.send_signal(signal.SIGTERM)
            try:
                code = self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                code = None
            self.log.close()
        log = (a.out / "serve.log").read_text()
        empties = [after_churn["rss_mb"]] + [s["rss_mb"] for s in tail]
        churn = [s["rss_mb"] for s in self.samples if s["phase"] == "churn"]
        return {
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "loadavg_end": os.getloadavg(), "minutes": a.minutes, "seats": a.seats, "size": list(a.size),
            "fps": a.fps, "serve_args": a.serve_args, "leaves": self.leaves, "server_exit": code,
            "rss_start_mb": self.samples[0]["rss_mb"], "rss_baseline_mb": baseline,
            "rss_churn_max_mb": max(churn) if churn else None, "rss_empty_after_mb": empties,
            "growth_mb": round(max(empties) - baseline, 1),
            "tracebacks": log.count("Traceback"), "warnings": log.count(" WARNING "),
            "errors": log.count(" ERROR "), "samples": self.samples, "events": self.events,
        }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=110)
    ax.plot(t, [s["rss_mb"] for s in result["samples"]], lw=1.2)
    ax.axhline(result["rss_baseline_mb"], color="grey", ls="--", lw=1, label="after the warm-up rooms")
    ax.axhline(result["rss_baseline_mb"] + 40, color="tab:red", ls=":", lw=1, label="+40 MB")
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS, MB")
    ax.set_title(f"soak: {sum(result['leaves'].values())} leaves over {result['minutes']:g} min")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    from roomfuse.argtypes import size
    from roomfuse.datapath import data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--participant", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    p.add_argument("--room", default=ROOM, help=argparse.SUPPRESS)
    p.add_argument("--name", default="p", help=argparse.SUPPRESS)
    p.add_argument("--clip", help=argparse.SUPPRESS)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the churn")
    p.add_argument("--seats", type=int, default=7, help="churning seats beside the observer")
    p.add_argument("--stay", type=float, nargs=2, default=(10.0, 30.0), metavar=("MIN", "MAX"),
                   help="seconds a participant stays")
    p.add_argument("--room-seconds", type=float, default=15.0, help="length of each warm-up and tail room")
    p.add_argument("--tail-rooms", type=int, default=4)
    p.add_argument("--size", type=size(low=16, even=True), default=(480, 270), help="each participant's video")
    p.add_argument("--fps", type=float, default=15.0, help="each participant's frame rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/soak"), help="folder for the server log")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("-v", "--verbose", action="store_true", help="print each event")
    p.add_argument("serve_args", nargs="*", help="after --: extra `roomfuse serve` flags")
    args = p.parse_args()
    if args.participant:
        asyncio.run(participant(args))
        return 0
    args.data = data_root() / "person_clips"
    args.out.mkdir(parents=True, exist_ok=True)
    r = asyncio.run(Soak(args).run())
    print(f"{sum(r['leaves'].values())} leaves ({', '.join(f'{k} {v}' for k, v in r['leaves'].items())}) "
          f"over {r['minutes']:g} min; server RSS: {r['rss_start_mb']} MB fresh, {r['rss_baseline_mb']} MB after "
          f"two rooms, churn peak {r['rss_churn_max_mb']} MB, empty after: {r['rss_empty_after_mb']} MB; "
          f"growth {r['growth_mb']} MB; {r['tracebacks']} tracebacks, {r['errors']} errors, "
          f"{r['warnings']} warnings in the server log")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    if args.plot:
        plot(r, args.plot)
    return 0 if r["growth_mb"] <= 40 and r["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
