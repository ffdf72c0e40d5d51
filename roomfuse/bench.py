"""`roomfuse bench`: frames per second and the cost of every stage, on recorded clips.

Runs the same pipeline as `render` (without writing video): a warm-up, then timed frames.
Reports p50/p95 milliseconds per stage (decode, segment, frame, layout, grow, composite),
each stage's share of the mean frame, and the end-to-end rate, as a table, optionally as
JSON and as a PNG chart.

The clips are decoded one frame ahead in a thread of their own, as a live call's
receivers decode while the room composes: "decode" is the time the pipeline waited for
its frames. The room fill (the joined background between the pictures) is built in a
low-priority worker while the frames run, as in a call; the report says when it was
first in place and in how many timed frames it applied. The live grower works one frame
behind, beside the frames (``GrowConfig.behind``): its own time is reported on a line of
its own, not in "grow" (which is then what the frame waited for and pasted).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .argtypes import positive_float, positive_int
from .pipeline import BESIDE, STAGES, Pipeline, StageTimer
from .progress import Progress
from .render import add_pipeline_arguments, config_from_args, open_sources


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(p)
    p.set_defaults(frames=300)
    p.add_argument("--warmup", type=positive_int, default=30, help="untimed frames first")
    p.add_argument("--settle", type=positive_float, default=None, metavar="SECONDS",
                   help="go on warming up until the room fill is in place (at most this long): "
                        "the cost of a call that has been going for a while")
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
          progress: bool = True, settle: float | None = None) -> dict:
    """``settle``: warm up beyond ``warmup`` frames until the room fill is in place, for
    at most that many seconds."""
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    ran: set[str] = set()  # the stages that ran in some timed frame
    beside: list[float] = []  # the grower's jobs beside the frames
    totals = []
    total = warmup + frames
    fill_first, fill_frames = None, 0

    def read(i: int) -> list:
        return [s.frame_at(i / config.fps) for s in sources]

    with Pipeline(config, segmenter=segmenter) as pipe, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as reader, \
            Progress(total, "bench", enabled=progress) as bar:
        wall0 = None
        ahead = reader.submit(read, 0)
        deadline = time.perf_counter() + (settle or 0.0)
        i = 0
        while i < total:
            if i == warmup and settle and not _fill_applied(pipe) and time.perf_counter() < deadline:
                warmup, total = warmup + 1, total + 1  # one more frame of warm-up
            if i == warmup:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            t0 = time.perf_counter()
            timer = StageTimer()
            with timer.stage("decode"):
                batch = ahead.result()
            ahead = reader.submit(read, i + 1)  # (one frame too many at the end: harmless)
            result = pipe.process(batch, timer=timer)
            filled = _fill_applied(pipe)
            if filled and fill_first is None:
                fill_first = i
            if i >= warmup:
                totals.append((time.perf_counter() - t0) * 1e3)
                ran.update(timer.ms)
                for s in STAGES:
                    per_stage[s].append(timer.ms.get(s, 0.0))
                if BESIDE in timer.ms:
                    beside.append(timer.ms[BESIDE])
                fill_frames += filled
            bar.update(note=f"{1e3 / max(1e-6, (time.perf_counter() - t0) * 1e3):.0f} fps")
            i += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        device = grower_device(pipe.grower)
        builds = pipe.room_fill.builds if pipe.room_fill is not None else 0
    w, h = result.canvas.output_size
    work = list(result.canvas.size)
    # (A stage that never ran is left out: "segment" where each feed is drawn as it is
    # segmented, the "feeds" stage, except for a new feed or mid-slide; "feeds" where not.)
    stages = {s: percentiles(v) for s, v in per_stage.items() if s in ran}
    mean = sum(v["mean_ms"] for v in stages.values()) or 1.0
    for v in stages.values():
        v["share"] = round(v["mean_ms"] / mean, 3)
    return {
        "fps": round(frames / wall, 2),
        # Processor time of the whole process (every thread, the room fill's builds
        # included) per timed frame: what a frame costs, whatever else the machine runs.
        "cpu_ms_per_frame": round(cpu / frames * 1e3, 2),
        "frames": frames,
        "feeds": len(sources),
        "canvas": [w, h],
        # The size the canvas was drawn, grown and composed at (the cameras' detail).
        "work": work,
        "device": device,
        "grower": config.grow.grower,
        "stages": stages,
        "total": percentiles(totals),
        # The room fill: builds finished, the first frame (warm-up included) it applied
        # in, and how many of the timed frames it applied in.
        "fill": {"builds": builds, "first_frame": fill_first, "timed_frames": fill_frames},
        # The grower's own time where it worked beside the frames (one frame behind), and
        # in how many timed frames such a job finished; not part of the stages above.
        "grow_beside": {**(percentiles(beside) if beside else {}), "jobs": len(beside)},
    }


def _fill_applied(pipe: Pipeline) -> bool:
    return pipe.room_fill is not None and pipe.room_fill.ready


def format_table(r: dict) -> str:
    w, h = r["canvas"]
    work = r.get("work") or [w, h]
    drawn = f" (worked at {work[0]}x{work[1]}, the cameras' detail)" if list(work) != [w, h] else ""
    lines = [f"{r['feeds']} feeds -> {w}x{h} canvas{drawn}, grower {r['grower']} on {r['device']}, "
             f"{r['frames']} frames",
             f"{'stage':<10} {'p50 ms':>8} {'p95 ms':>8} {'share':>6}"]
    for s, v in r["stages"].items():
        share = f"{100 * v['share']:5.0f}%" if "share" in v else ""
        lines.append(f"{s:<10} {v['p50_ms']:>8.2f} {v['p95_ms']:>8.2f} {share:>6}")
    lines.append(f"{'total':<10} {r['total']['p50_ms']:>8.2f} {r['total']['p95_ms']:>8.2f}")
    fill = r.get("fill")
    if fill is not None:
        when = "never" if fill["first_frame"] is None else f"from frame {fill['first_frame']}"
        lines.append(f"room fill: {fill['builds']} built, applied {when} "
                     f"({fill['timed_frames']} of {r['frames']} timed frames)")
    beside = r.get("grow_beside") or {}
    if beside.get("jobs"):
        lines.append(f"grower beside the frames: p50 {beside['p50_ms']:.2f} ms, p95 {beside['p95_ms']:.2f} ms "
                     f"({beside['jobs']} jobs in {r['frames']} frames)")
    cpu = f", {r['cpu_ms_per_frame']:.0f} ms of CPU per frame" if "cpu_ms_per_frame" in r else ""
    lines.append(f"end to end: {r['fps']:.1f} fps{cpu}")
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
        result = bench(sources, args.frames, args.warmup, config_from_args(args), segmenter=args.segmenter,
                       settle=args.settle)
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
