"""Many rooms at once: each room's frame rate and stage costs, with or without batching.

    .venv/bin/python benchmarks/bench_rooms.py --rooms 2 --feeds 2 --feed-size 640x360 --canvas 1280x360
    python benchmarks/bench_rooms.py --rooms 16 --feeds 4 --device cuda --half --batch on \\
        --source synthetic --json out.json                  # a GPU machine without mediapipe

Each room is a ``Pipeline`` in a thread of its own over a fixed canvas, as ``roomfuse
serve`` runs them (one executor thread per room); its feeds are decoded once and held
in memory (``feeds.py``: a server's frames arrive decoded from its WebRTC receivers),
each room starting at a different frame. With ``--batch on`` every room's grower is a
handle on one ``GrowthService`` (``roomfuse/growth/batch.py``), which grows the rooms'
canvases together, a round at a time. The encode that a server adds per room is not
part of this.

Rooms run flat out by default (the capacity: "can every room make 30 fps"), or paced
at ``--fps`` like a live room. Stage times are wall-clock per frame from each room's
thread: the grow stage ends with the copy of its result to the host, so it is
synchronised with the device and includes the wait for its round when batched. Where
the growth model runs on CUDA, CUDA events also time its device part (upload, steps,
download) per grow call. The other stages run on the CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feeds import open_feeds, parse_size, segmenter_for  # noqa: E402

from roomfuse.config import GrowConfig, LayoutConfig, PipelineConfig, SegmentConfig  # noqa: E402
from roomfuse.growth import make_grower  # noqa: E402
from roomfuse.growth.batch import GrowthService  # noqa: E402
from roomfuse.pipeline import STAGES, Pipeline, StageTimer  # noqa: E402


def pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values, np.float64), q)), 2) if values else float("nan")


def record_device_times(engine, sink: list) -> None:
    """Keep the CUDA-event times of every grow call of ``engine``."""
    engine.timing = True
    grow = engine.grow

    def timed(frames, memories):
        out = grow(frames, memories)
        sink.append((len(frames), dict(engine.last_ms)))
        return out
    engine.grow = timed


class RoomRun(threading.Thread):
    def __init__(self, index: int, pipe: Pipeline, feeds, fps: float, start: float, warm: float, stop: float):
        super().__init__(name=f"room-{index}", daemon=True)
        self.index, self.pipe, self.feeds = index, pipe, feeds
        self.fps, self.start_at, self.warm, self.stop_at = fps, start, warm, stop
        self.stages: dict[str, list[float]] = {s: [] for s in STAGES}
        self.totals: list[float] = []
        self.done_at: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            i = 0
            while True:
                now = time.perf_counter()
                if now >= self.stop_at:
                    return
                if self.fps:
                    due = self.start_at + i / self.fps
                    if due > now:
                        time.sleep(due - now)
                t0 = time.perf_counter()
                timer = StageTimer()
                with timer.stage("decode"):
                    frames = [f.frame_at(i / 30.0) for f in self.feeds]
                self.pipe.process(frames, timer=timer)
                t1 = time.perf_counter()
                if t0 >= self.warm:
                    self.done_at.append(t1)
                    self.totals.append((t1 - t0) * 1e3)
                    for s in STAGES:
                        self.stages[s].append(timer.ms.get(s, 0.0))
                i += 1
        except BaseException as e:  # reported by the main thread
            self.error = e


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rooms", type=int, default=16)
    p.add_argument("--feeds", type=int, default=4, help="participants per room")
    p.add_argument("--feed-size", default="1280x720", help="WxH each participant sends")
    p.add_argument("--canvas", default="1280x720", help="each room's fixed composite size")
    p.add_argument("--layout", choices=("auto", "row", "grid"), default="auto")
    p.add_argument("--source", choices=("synthetic", "clips"), default="clips")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--half", action="store_true", help="float16 growth (CUDA only)")
    p.add_argument("--batch", choices=("on", "off"), default="off", help="rooms share one growth service")
    p.add_argument("--batch-wait-ms", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=0.0, help="pace each room at this rate (0: flat out)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured time")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    p.add_argument("--segment-threads", type=int, default=SegmentConfig.threads,
                   help="threads per room for segmenting its feeds")
    p.add_argument("--loop-frames", type=int, default=60, help="frames of each feed held in memory")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    size, canvas = parse_size(args.feed_size), parse_size(args.canvas)
    feeds = open_feeds(args.source, args.feeds, size, frames=args.loop_frames)
    grow = GrowConfig(grower="nca", device=args.device)
    cfg = PipelineConfig(segment=SegmentConfig(threads=args.segment_threads),
                         layout=LayoutConfig(height=canvas[1], mode=args.layout), grow=grow)
    device_times: dict[int, list] = {}
    service = None
    if args.batch == "on":
        engine = make_grower("nca", device=args.device, threads=grow.threads, half=args.half)
        if engine.device.type == "cuda":
            record_device_times(engine, device_times.setdefault(-1, []))
        service = GrowthService(engine, max_wait_s=args.batch_wait_ms / 1e3)
    pipes = []
    for r in range(args.rooms):
        if service is not None:
            grower = service.client()
        else:
            grower = make_grower("nca", device=args.device, threads=grow.threads, half=args.half)
            if grower.device.type == "cuda":
                record_device_times(grower, device_times.setdefault(r, []))
        pipes.append(Pipeline(cfg, segmenter=segmenter_for(args.source), canvas_size=canvas, grower=grower))
    device = str(pipes[0].grower.device)
    start = time.perf_counter() + 0.2
    warm, stop = start + args.warmup, start + args.warmup + args.seconds
    rooms = [RoomRun(r, pipe, [f.shifted(7 * r) for f in feeds], args.fps, start, warm, stop)
             for r, pipe in enumerate(pipes)]
    for room in rooms:
        room.start()
    for room in rooms:
        room.join()
    for pipe in pipes:
        pipe.close()
        if hasattr(pipe.grower, "close"):
            pipe.grower.close()
    if service is not None:
        service.close()
    errors = [r.error for r in rooms if r.error is not None]
    if errors:
        raise errors[0]

    fps = [len(r.done_at) / args.seconds for r in rooms]
    stages = {s: [v for r in rooms for v in r.stages[s]] for s in STAGES}
    result = {
        "rooms": args.rooms, "feeds": args.feeds, "feed_size": list(size), "canvas": list(canvas),
        "source": args.source, "device": device, "half": args.half, "batch": args.batch,
        "batch_wait_ms": args.batch_wait_ms, "paced_fps": args.fps, "seconds": args.seconds,
        "fps_per_room": [round(f, 2) for f in fps],
        "fps_min": round(min(fps), 2), "fps_median": round(statistics.median(fps), 2),
        "fps_total": round(sum(fps), 1),
        "stages": {s: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for s, v in stages.items()},
        "total": {"p50_ms": pct([v for r in rooms for v in r.totals], 50),
                  "p95_ms": pct([v for r in rooms for v in r.totals], 95)},
    }
    if service is not None:
        result["rounds"] = {str(k): v for k, v in sorted(service.rounds.items())}
    if device_times:
        calls = [m for v in device_times.values() for m in v]
        result["grow_device_ms"] = {k: {"p50_ms": pct([m[k] for _, m in calls], 50),
                                        "p95_ms": pct([m[k] for _, m in calls], 95)}
                                    for k in ("upload", "steps", "download")}
        result["grow_device_canvases_per_call"] = round(statistics.mean(n for n, _ in calls), 2)
    print(f"{args.rooms} rooms x {args.feeds} feeds {size[0]}x{size[1]} -> {canvas[0]}x{canvas[1]}, "
          f"{args.source}, growth on {device}{' fp16' if args.half else ''}, batch {args.batch}"
          + (f" (rounds by size: {result['rounds']})" if service is not None else ""))
    print(f"fps per room: min {result['fps_min']}, median {result['fps_median']}, all rooms {result['fps_total']}")
    print(f"{'stage':<10} {'p50 ms':>8} {'p95 ms':>8}")
    for s, v in result["stages"].items():
        print(f"{s:<10} {v['p50_ms']:>8.2f} {v['p95_ms']:>8.2f}")
    print(f"{'total':<10} {result['total']['p50_ms']:>8.2f} {result['total']['p95_ms']:>8.2f}")
    for k, v in result.get("grow_device_ms", {}).items():
        print(f"grow device {k:<9} {v['p50_ms']:>8.3f} {v['p95_ms']:>8.3f} (CUDA events)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
