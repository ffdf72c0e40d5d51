"""`roomfuse bench`: frames per second and the cost of every stage, on recorded clips.

Runs the same pipeline as `render` (without writing video): a warm-up, then timed frames.
Reports p50/p95 milliseconds per stage (decode, segment, layout, grow, composite) and the
end-to-end rate, as a table, optionally as JSON and as a PNG chart.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .argtypes import positive_int
from .pipeline import STAGES, Pipeline, StageTimer
from .progress import Progress
from .render import add_pipeline_arguments, config_from_args, open_sources


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(p)
    p.set_defaults(frames=300)
    p.add_argument("--warmup", type=positive_int, default=30, help="untimed frames first")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG chart of the stage costs here")


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def grower_device(grower) -> str:
    return str(getattr(grower, "device", "cpu"))


def bench(sources: list, frames: int, warmup: int, config, segmenter: str = "mediapipe",
          progress: bool = True) -> dict:
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    totals = []
    with Pipeline(config, segmenter=segmenter) as pipe, \
            Progress(warmup + frames, "bench", enabled=progress) as bar:
        wall0 = None
        for i in range(warmup + frames):
            if i == warmup:
                wall0 = time.perf_counter()
            t0 = time.perf_counter()
            timer = StageTimer()
            with timer.stage("decode"):
                batch = [s.frame_at(i / config.fps) for s in sources]
            result = pipe.process(batch, timer=timer)
            if i >= warmup:
                totals.append((time.perf_counter() - t0) * 1e3)
                for s in STAGES:
                    per_stage[s].append(timer.ms.get(s, 0.0))
            bar.update(note=f"{1e3 / max(1e-6, (time.perf_counter() - t0) * 1e3):.0f} fps")
        wall = time.perf_counter() - wall0
        device = grower_device(pipe.grower)
    w, h = result.canvas.size
    return {
        "fps": round(frames / wall, 2),
        "frames": frames,
        "feeds": len(sources),
        "canvas": [w, h],
        "device": device,
        "grower": config.grow.grower,
        "stages": {s: percentiles(v) for s, v in per_stage.items()},
        "total": percentiles(totals),
    }


def format_table(r: dict) -> str:
    w, h = r["canvas"]
    lines = [f"{r['feeds']} feeds -> {w}x{h} canvas, grower {r['grower']} on {r['device']}, "
             f"{r['frames']} frames",
             f"{'stage':<10} {'p50 ms':>8} {'p95 ms':>8}"]
    for s, v in r["stages"].items():
        lines.append(f"{s:<10} {v['p50_ms']:>8.2f} {v['p95_ms']:>8.2f}")
    lines.append(f"{'total':<10} {r['total']['p50_ms']:>8.2f} {r['total']['p95_ms']:>8.2f}")
    lines.append(f"end to end: {r['fps']:.1f} fps")
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(r["stages"])
    p50 = [r["stages"][s]["p50_ms"] for s in stages]
    p95 = [r["stages"][s]["p95_ms"] for s in stages]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    x = np.arange(len(stages))
    ax.bar(x - 0.2, p50, 0.4, label="p50")
    ax.bar(x + 0.2, p95, 0.4, label="p95")
    ax.axhline(1000 / 30, color="grey", ls="--", lw=1, label="30 fps frame budget")
    ax.set_xticks(x, stages)
    ax.set_ylabel("ms per frame")
    w, h = r["canvas"]
    ax.set_title(f"{r['feeds']} feeds, {w}x{h}, {r['grower']} on {r['device']}: {r['fps']:.1f} fps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    sources = open_sources(args.clips)
    try:
        result = bench(sources, args.frames, args.warmup, config_from_args(args), segmenter=args.segmenter)
    finally:
        for s in sources:
            s.close()
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
