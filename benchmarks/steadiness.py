"""How steady the join between two real feeds is, frame to frame.

Two person clips side by side through the whole pipeline (mediapipe, framing, the room
fill in its worker as in `roomfuse serve` and `bench`, or inline with --inline as in
`render`). Per frame: the mean absolute change (0..255) of the composite over the pixels
between and around the feeds; reported as the mean over the run and the largest single
frame, with the room fill's builds marked. A refresh must not show as a jump.

    .venv/bin/python benchmarks/steadiness.py --frames 300 --plot benchmarks/out/steadiness.png
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roomfuse.capture import open_source  # noqa: E402
from roomfuse.config import PipelineConfig, RoomFillConfig  # noqa: E402
from roomfuse.datapath import data_root  # noqa: E402
from roomfuse.pipeline import Pipeline  # noqa: E402
from roomfuse.roomfill import tile_rooms  # noqa: E402

CLIPS = ("person_clips/intel_asl_bird.mkv", "person_clips/intel_asl_book.mkv")


def run(clips, frames: int, inline: bool, fps: float = 30.0, realtime: bool = False) -> dict:
    sources = [open_source(str(c)) for c in clips]
    config = PipelineConfig(fill=RoomFillConfig(inline=inline), fps=fps)
    changes, builds, prev, outside = [], [], None, None
    with Pipeline(config) as pipe:
        for i in range(frames):
            t0 = time.perf_counter()
            r = pipe.process([s.frame_at(i / fps) for s in sources])
            if outside is None or r.canvas.output_tiles != prev_tiles:
                outside = tile_rooms(r.canvas.output_size, r.canvas.output_tiles) < 0
            img = r.image.astype(np.float32)
            if prev is not None and r.canvas.output_tiles == prev_tiles:
                changes.append(float(np.abs(img - prev)[outside].mean()))
            else:
                changes.append(float("nan"))
            prev, prev_tiles = img, r.canvas.output_tiles
            builds.append(pipe.room_fill.builds if pipe.room_fill else 0)
            if realtime:
                time.sleep(max(0.0, 1 / fps - (time.perf_counter() - t0)))
    for s in sources:
        s.close()
    settled = np.array(changes[int(fps):])   # after the first second (framing settles)
    settled = settled[np.isfinite(settled)]
    # Each arrival of a new fill, its cross-fade and a few frames either side, the first
    # one included even when it lands while framing is settling.
    fade = int(round(config.fill.fade_s * fps))
    window = []
    for b in np.flatnonzero(np.diff(builds)) + 1:
        window += [c for c in changes[max(0, b - 2):b + fade + 3] if np.isfinite(c)]
    return {"frames": frames, "mean_change": float(settled.mean()), "max_change": float(settled.max()),
            "arrival_max": float(max(window, default=float("nan"))),
            "builds": builds[-1], "changes": changes, "build_counts": builds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--inline", action="store_true", help="build the room fill in the frame's thread")
    p.add_argument("--realtime", action="store_true", help="pace frames at the output rate")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args()
    root = data_root()
    res = run([root / c for c in CLIPS], args.frames, args.inline, realtime=args.realtime)
    print(f"{args.frames} frames, {res['builds']} room fills built: gap change per frame "
          f"mean {res['mean_change']:.3f}, largest {res['max_change']:.3f}, largest while a new fill "
          f"arrives {res['arrival_max']:.3f} (0..255)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(res["changes"], lw=0.8, label="mean |change| around the feeds")
        steps = np.flatnonzero(np.diff(res["build_counts"])) + 1
        for s in steps:
            ax.axvline(s, color="orange", lw=0.8, ls="--")
        ax.axhline(1.5, color="red", lw=0.8, label="largest allowed jump")
        ax.set_xlabel("frame (dashed: a new room fill arrives)")
        ax.set_ylabel("0..255")
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
