"""A call's steady state alone: the pipeline on settled frames, nothing else running.

    .venv/bin/python benchmarks/steady_state.py              # threaded, as in a call
    .venv/bin/python benchmarks/steady_state.py --inline     # every pool job in one thread

Four webcams at height 720 in a row by default. The frames are read beforehand (no
decoding), the room fill is built in the calling thread and never rebuilt, and the first
``--warmup`` frames are not timed, so what is measured is the frame path once a call has
settled: CPU per frame (every thread of the process) and the frame time. ``--inline``
runs every job the pipeline gives its pool in the calling thread, with OpenCV on one
thread: the CPU a frame needs without two cores sharing it.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feeds import WEBCAMS  # noqa: E402

from roomfuse.config import LayoutConfig, PipelineConfig  # noqa: E402
from roomfuse.datapath import data_root  # noqa: E402
from roomfuse.pipeline import Pipeline  # noqa: E402
from roomfuse.render import open_sources  # noqa: E402


class Inline:
    """An executor that runs each job at once, in the caller's thread."""

    def submit(self, fn, *args, **kwargs) -> Future:
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done

    def map(self, fn, *iterables):
        return [fn(*a) for a in zip(*iterables)]

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feeds", type=int, default=4)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--layout", default="row")
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--inline", action="store_true", help="every pool job in the calling thread")
    args = p.parse_args()
    clips = [str(data_root() / "person_clips" / c) for c in WEBCAMS[:args.feeds]]
    sources = open_sources(clips)
    try:
        frames = [[s.frame_at(i / 30) for s in sources] for i in range(args.warmup + args.frames)]
    finally:
        for s in sources:
            s.close()
    cfg = PipelineConfig(layout=LayoutConfig(height=args.height, mode=args.layout))
    cfg = replace(cfg, fill=replace(cfg.fill, inline=True, min_interval_s=1e9))
    with Pipeline(cfg) as pipe:
        if args.inline:
            cv2.setNumThreads(1)
            pipe._pool = pipe.placer.pool = pipe.compositor.pool = Inline()
        for batch in frames[:args.warmup]:
            pipe.process(batch)
        ready = pipe.room_fill is not None and pipe.room_fill.ready
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for batch in frames[args.warmup:]:
            result = pipe.process(batch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    w, h = result.canvas.output_size
    ww, wh = result.canvas.size
    print(f"{args.feeds} feeds -> {w}x{h} (worked at {ww}x{wh}), {'inline' if args.inline else 'threaded'}, "
          f"room fill in place: {ready}: {cpu / args.frames * 1e3:.1f} ms of CPU per frame, "
          f"{wall / args.frames * 1e3:.1f} ms per frame ({args.frames / wall:.1f} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
