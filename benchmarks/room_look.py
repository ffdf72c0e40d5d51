"""The room fill, seen: the same call with the room fill off and on, one above the other.

Three person clips through the whole pipeline (mediapipe, framing, seats), the room fill
built inline as in `render`; the frame at --at seconds of each run, stacked (top: the
grower alone, as with --room-fill off; bottom: the room fill).

    .venv/bin/python benchmarks/room_look.py --out docs/room-fill.jpg
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roomfuse.capture import open_source  # noqa: E402
from roomfuse.config import LayoutConfig, PipelineConfig, RoomFillConfig  # noqa: E402
from roomfuse.datapath import data_root  # noqa: E402
from roomfuse.pipeline import Pipeline  # noqa: E402

CLIPS = ("person_clips/intel_asl_bird.mkv", "person_clips/pexels_wolfganglanger.mp4",
         "person_clips/pyfeat_single_face.mp4")


def frame_at(clips, seconds: float, fill: bool, size, fps: float = 30.0) -> np.ndarray:
    config = PipelineConfig(layout=LayoutConfig(height=size[1]), fill=RoomFillConfig(enabled=fill, inline=True),
                            fps=fps)
    sources = [open_source(str(c)) for c in clips]
    try:
        with Pipeline(config, canvas_size=size) as pipe:
            for i in range(int(seconds * fps) + 1):
                r = pipe.process([s.frame_at(i / fps) for s in sources])
        return r.image
    finally:
        for s in sources:
            s.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("clips", nargs="*", help=f"clips (default: {', '.join(CLIPS)} under the data root)")
    p.add_argument("--at", type=float, default=3.0, help="seconds into the call")
    p.add_argument("--size", default="1280x360", help="canvas WxH")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/room-fill.jpg"))
    args = p.parse_args()
    clips = args.clips or [data_root() / c for c in CLIPS]
    size = tuple(int(v) for v in args.size.split("x"))
    off = frame_at(clips, args.at, False, size)
    on = frame_at(clips, args.at, True, size)
    sheet = np.vstack([off, np.full((6, off.shape[1], 3), 255, np.uint8), on])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {args.out}: top --room-fill off, bottom on, {args.at:.1f} s into the call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
