"""Where a server's memory goes as rooms come and go: one room at a time, measured inside.

    .venv/bin/python benchmarks/memory_rooms.py                     # 6 rooms of 2, 6 s each
    .venv/bin/python benchmarks/memory_rooms.py --rooms 8 --tracemalloc
    MALLOC_ARENA_MAX=8 .venv/bin/python benchmarks/memory_rooms.py  # try glibc settings (env)

A `Server` runs in a child process (as `roomfuse serve` would, allocator settings
included); two aiortc participants in this process send a team clip into a room for
--seconds, leave by DELETE, and once the room has closed the child reports, as one JSON
line: its RSS; what glibc's malloc holds (mallinfo2: bytes in use, free bytes it keeps,
the arenas' size, mmapped blocks); how many objects of the room's classes are alive
(a leak shows there); and its threads by name (mediapipe names its own). With
--tracemalloc, the Python allocations that grew most between the second room and the
last. `benchmarks/soak.py` is the long, churning version, measured from outside.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

KEY = "memory-rooms-key"
CLASSES = ("Room", "Participant", "RTCPeerConnection", "Pipeline", "Compositor", "PersonSegmenter", "NCAGrower",
           "GrowthNet", "ThreadPoolExecutor", "SharedEncoder", "RTCRtpReceiver", "RTCDtlsTransport", "VideoFrame",
           "ndarray", "Tensor", "Task")


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def report(tag: str) -> dict:
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    mi = libc.mallinfo2()
    with open("/proc/self/status") as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    names = collections.Counter(Path(f"/proc/self/task/{t}/comm").read_text().strip().rstrip("0123456789/")
                                for t in os.listdir("/proc/self/task"))
    mb = 1 << 20
    return {"tag": tag, "rss_mb": round(rss / 1024, 1), "malloc_in_use_mb": round(mi.uordblks / mb, 1),
            "malloc_free_kept_mb": round(mi.fordblks / mb, 1), "arenas_mb": round(mi.arena / mb, 1),
            "mmapped_mb": round(mi.hblkhd / mb, 1), "objects": {k: counts[k] for k in CLASSES if counts[k]},
            "threads": dict(names)}


def child(conn, trace: bool) -> None:
    """The server's process: start, then answer "report", "snapshot", "grown" or "stop"."""
    import tracemalloc

    if trace:
        tracemalloc.start(8)
    from roomfuse.rtc.compositor import RoomSettings
    from roomfuse.rtc.reuse import tune_allocator
    from roomfuse.rtc.server import Server, preflight

    tune_allocator()  # as `roomfuse serve` does
    settings = RoomSettings()
    preflight(settings)

    async def main():
        srv = Server(settings, KEY, host="127.0.0.1", port=0)
        await srv.start()
        conn.send(srv.base)
        loop = asyncio.get_running_loop()
        snapshot = None
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                break
            if cmd == "snapshot":
                snapshot = tracemalloc.take_snapshot()
                conn.send("ok")
            elif cmd == "grown":
                stats = tracemalloc.take_snapshot().compare_to(snapshot, "traceback")[:8]
                conn.send([f"{s.size_diff / 2**20:+.2f} MB in {s.count_diff:+d} blocks at "
                           + " <- ".join(f"{fr.filename.rsplit('/', 2)[-1]}:{fr.lineno}" for fr in s.traceback[:4])
                           for s in stats])
            else:
                conn.send(report(cmd))
        await srv.stop()

    asyncio.run(main())


async def room(base: str, clip: Path, name: str, seconds: float) -> list[int]:
    import aiohttp

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from rtc_util import Participant, SourceTrack

    from roomfuse.capture import ClipSource

    sources = [ClipSource(clip) for _ in range(2)]
    people = [Participant(SourceTrack(s, size=(640, 360)), f"p{i}") for i, s in enumerate(sources)]
    try:
        async with aiohttp.ClientSession() as http:
            for p in people:
                await p.join(http, base, name, key=KEY)
            await asyncio.sleep(seconds)
            for p in people:
                async with http.delete(f"{base}/rooms/{name}/participants/{p.id}",
                                       headers={"X-Roomfuse-Key": KEY}):
                    pass
        return [p.frames for p in people]
    finally:
        for p in people:
            await p.close()
        for s in sources:
            s.close()


def main() -> int:
    from roomfuse.datapath import data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=6)
    p.add_argument("--seconds", type=float, default=6.0, help="each room's length")
    p.add_argument("--clip", default="intel_asl_bird.mkv", help="team clip both participants send")
    p.add_argument("--tracemalloc", action="store_true", help="trace Python allocations (slower)")
    p.add_argument("--json", type=Path, default=None, help="also write every report here")
    args = p.parse_args()
    mp.set_start_method("spawn")
    ours, theirs = mp.Pipe()
    server = mp.Process(target=child, args=(theirs, args.tracemalloc))
    server.start()
    base = ours.recv()
    reports = []

    def ask(what):
        ours.send(what)
        return ours.recv()

    reports.append(ask("fresh"))
    print(json.dumps(reports[-1]), flush=True)
    for i in range(args.rooms):
        frames = asyncio.run(room(base, data_root() / "person_clips" / args.clip, f"room{i}", args.seconds))
        time.sleep(3.0)  # the room closes, its memory is given back
        reports.append({**ask(f"after room {i + 1}"), "frames_received": frames})
        print(json.dumps(reports[-1]), flush=True)
        if args.tracemalloc and i == 1:
            ask("snapshot")
    if args.tracemalloc:
        print("\n".join(ask("grown")))
    ours.send("stop")
    server.join(60)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
