"""The growth stage against full-resolution Telea, on the very same canvases.

    .venv/bin/python benchmarks/grow_cost.py [--frames 300] [CLIP CLIP]

Runs the live pipeline (default: two 640x480 webcam clips at canvas height 360) and, on
every frame, also times full-resolution Telea on the canvas the grower was given (its
output is thrown away). Prints the median and p95 of both and their ratio.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from roomfuse.config import LayoutConfig, PipelineConfig
from roomfuse.datapath import data_root
from roomfuse.growth import make_grower
from roomfuse.pipeline import COVERED_ALPHA, Pipeline
from roomfuse.render import open_sources


class TimedGrower:
    """Wraps the live grower: times it, and Telea at full resolution on the same input."""

    def __init__(self, live, reference):
        self.live, self.reference = live, reference
        self.name = live.name
        self.live_ms: list[float] = []
        self.reference_ms: list[float] = []

    def fill(self, image, known, covered=None):
        t0 = time.perf_counter()
        out = self.live.fill(image, known, covered)
        t1 = time.perf_counter()
        self.reference.fill(image, known)
        t2 = time.perf_counter()
        self.live_ms.append((t1 - t0) * 1e3)
        self.reference_ms.append((t2 - t1) * 1e3)
        return out

    def reset(self):
        self.live.reset()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    clips = data_root() / "person_clips"
    p.add_argument("clips", nargs="*", default=[str(clips / "intel_asl_bird.mkv"),
                                                str(clips / "intel_asl_again.mkv")])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--grower", default="nca")
    p.add_argument("--height", type=int, default=LayoutConfig.height)
    args = p.parse_args()
    cfg = PipelineConfig(layout=LayoutConfig(height=args.height))
    live = make_grower(args.grower, device="cpu", threads=cfg.grow.threads)
    timed = TimedGrower(live, make_grower("telea-full"))
    sources = open_sources(args.clips)
    with Pipeline(cfg, grower=timed) as pipe:
        for i in range(args.warmup + args.frames):
            result = pipe.process([s.frame_at(i / cfg.fps) for s in sources])
    for s in sources:
        s.close()
    live_ms = np.array(timed.live_ms[args.warmup:])
    ref_ms = np.array(timed.reference_ms[args.warmup:])
    w, h = result.canvas.size
    unknown = 1 - result.canvas.known.mean()
    covered = (~result.canvas.known & (result.canvas.alpha >= COVERED_ALPHA)).mean()
    print(f"{len(live_ms)} frames, {w}x{h} canvas, {unknown:.0%} unknown ({covered:.0%} covered by people)")
    for name, v in ((args.grower, live_ms), ("telea-full", ref_ms)):
        print(f"{name:<11} p50 {np.median(v):6.2f} ms   p95 {np.percentile(v, 95):6.2f} ms")
    print(f"ratio of medians: {np.median(live_ms) / np.median(ref_ms):.3f}  "
          f"(per frame, median of ratios: {np.median(live_ms / ref_ms):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
