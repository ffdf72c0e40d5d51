"""Does a change keep the composite's look? The same frames, deterministically, before and after.

    PYTHONPATH=<old tree> python benchmarks/composite_diff.py --save /tmp/before.npz
    PYTHONPATH=<new tree> python benchmarks/composite_diff.py --against /tmp/before.npz

or, in one tree, the canvas worked at its own size against the cameras' detail:
``--detail canvas --save`` then ``--against`` (with ``--detail camera``, the default).

Runs the pipeline on the team's 640x480 webcam clips (4 feeds at height 720 in a row by
default: the 4032x720 canvas) with everything that is otherwise timing-dependent made
deterministic: faces are found on the frame path, the room fill is built in the calling
thread and its rebuild interval counts frames, not seconds. Every ``--every``-th
composite is saved (``--save``) or compared with the saved ones (``--against``): mean and
largest absolute difference per frame (0..255), the share of pixels that differ by more
than 2 levels, and overall. The clips and frame count must match the saved run's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feeds import WEBCAMS  # noqa: E402

from roomfuse.config import LayoutConfig, PipelineConfig  # noqa: E402
from roomfuse.datapath import data_root  # noqa: E402
from roomfuse.framing import Framer  # noqa: E402
from roomfuse.pipeline import Pipeline  # noqa: E402
from roomfuse.render import open_sources  # noqa: E402


def composites(feeds: int, height: int, layout: str, frames: int, every: int, detail: str = "camera"):
    clips = [str(data_root() / "person_clips" / c) for c in WEBCAMS[:feeds]]
    layout_cfg = LayoutConfig(height=height, mode=layout)
    if detail != "camera":  # (older trees have no such setting: leave it out there)
        layout_cfg = LayoutConfig(height=height, mode=layout, at_detail=False)
    cfg = PipelineConfig(layout=layout_cfg)
    sources = open_sources(clips)
    count = [0]
    try:
        with Pipeline(cfg) as pipe:
            pipe.framer.close()
            pipe.framer = Framer(cfg.framing, fps=cfg.fps, finder="mediapipe", sync=True)
            if pipe.room_fill is not None:
                pipe.room_fill.close()
                pipe.room_fill = pipe._room_fill(PipelineConfig(
                    fill=type(cfg.fill)(**{**cfg.fill.__dict__, "inline": True})))
                pipe.room_fill.clock = lambda: count[0] / cfg.fps
            for i in range(frames):
                count[0] = i
                result = pipe.process([s.frame_at(i / cfg.fps) for s in sources])
                if i % every == every - 1:
                    yield i, result.image
            if pipe.room_fill is not None:
                print(f"room fill built {pipe.room_fill.builds} times, in place at the end: "
                      f"{getattr(pipe.room_fill, 'ready', '?')}")  # (older trees: no ready)
    finally:
        for s in sources:
            s.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feeds", type=int, default=4)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--layout", default="row")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--detail", choices=("camera", "canvas"), default="camera",
                   help="work at the cameras' detail (the default) or at the canvas's own size")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path)
    g.add_argument("--against", type=Path)
    p.add_argument("--picture", type=Path, default=None,
                   help="with --against: write the frame that differs most: before, after and "
                        "their difference x8 (PNG)")
    args = p.parse_args()
    run = composites(args.feeds, args.height, args.layout, args.frames, args.every, args.detail)
    if args.save:
        saved = dict((f"f{i}", img) for i, img in run)
        np.savez_compressed(args.save, **saved)
        print(f"saved {len(saved)} composites to {args.save}")
        return 0
    ref = np.load(args.against)
    diffs, worst = [], None
    for i, img in run:
        before = ref[f"f{i}"]
        if before.shape != img.shape:
            print(f"frame {i}: canvas {before.shape[1]}x{before.shape[0]} before, "
                  f"{img.shape[1]}x{img.shape[0]} now")
            return 1
        d = np.abs(before.astype(np.int16) - img.astype(np.int16))
        diffs.append(d)
        if worst is None or d.mean() > worst[0]:
            worst = (d.mean(), i, before, img, d)
        off = 100 * (d.max(axis=2) > 2).mean()
        print(f"frame {i:4d}: mean {d.mean():.4f}  max {d.max():3d}  >2 levels {off:.3f} %")
    if args.picture:
        # The frame that differs most: before above after above the difference (x8), at half size.
        _, i, before, img, d = worst
        sheet = np.vstack([before, img, np.clip(d * 8, 0, 255).astype(np.uint8)])
        sheet = cv2.resize(sheet, (sheet.shape[1] // 2, sheet.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(args.picture), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"wrote {args.picture} (frame {i})")
    all_d = np.stack(diffs)
    print(f"all {len(diffs)} frames: mean abs difference {all_d.mean():.4f}, max {all_d.max()}, "
          f">2 levels {100 * (all_d.max(axis=3) > 2).mean():.3f} % of pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
