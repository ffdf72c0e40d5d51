"""`roomfuse render`: recorded clips in, one-room video out.

All clips are sampled against one output clock at their own timestamps (a 10 fps clip
holds each frame for three output frames at 30 fps) and loop when they end.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .argtypes import add_device_argument, add_model_arguments, non_negative_int, positive_float, positive_int
from .capture import SourceError, open_source
from .config import FramingConfig, GrowConfig, LayoutConfig, PipelineConfig, RoomFillConfig, SegmentConfig
from .growth import DEFAULT_GROWER, GROWERS
from .layout import MAX_FEEDS
from .pipeline import Pipeline, StageTimer
from .progress import Progress
from .sinks import VideoWriter

log = logging.getLogger(__name__)


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by render and bench: the clips and how the room is built."""
    p.add_argument("clips", nargs="+", metavar="CLIP",
                   help="clip files (anything FFmpeg reads), camera:N, or synthetic[:SEED]")
    p.add_argument("--frames", type=positive_int, default=None, help="number of output frames")
    p.add_argument("--height", type=positive_int, default=LayoutConfig.height, help="canvas height in pixels")
    p.add_argument("--gap", type=non_negative_int, default=LayoutConfig.gap, help="pixels between feeds")
    p.add_argument("--margin", type=non_negative_int, default=LayoutConfig.margin,
                   help="pixels around the feeds")
    p.add_argument("--layout", choices=("row", "grid"), default=LayoutConfig.mode)
    p.add_argument("--framing", choices=("on", "off"), default="on" if FramingConfig.enabled else "off",
                   help="on: every face the same size, eyes on one line; off: each whole picture at one height")
    p.add_argument("--order", choices=("auto", "given"), default=LayoutConfig.order,
                   help="auto: seat feeds so neighbouring rooms are most alike; given: in the order named")
    p.add_argument("--grower", choices=sorted(GROWERS), default=DEFAULT_GROWER,
                   help="what fills the gaps and hidden background")
    p.add_argument("--room-fill", choices=("on", "off"), default="on" if RoomFillConfig.enabled else "off",
                   help="on: gaps and margins get the rooms' own texture, built off the frame path; "
                        "off: the grower fills them every frame")
    add_device_argument(p)
    add_model_arguments(p)
    p.add_argument("--fps", type=positive_float, default=30.0, help="output frame rate")
    p.add_argument("--segmenter", choices=("mediapipe", "key"), default="mediapipe",
                   help="person segmentation (key: colour key, for synthetic sources)")
    p.add_argument("--detail", choices=("camera", "canvas"), default="camera" if LayoutConfig.at_detail else "canvas",
                   help="work at the detail the cameras give and enlarge the composite once (camera), "
                        "or at the canvas's own size (canvas)")
    p.add_argument("--segment-model", choices=("landscape", "general"), default=SegmentConfig.model)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(p)
    p.add_argument("-o", "--output", required=True, type=Path, help="output video (.mp4, .mkv, .webm)")


def config_from_args(args: argparse.Namespace, inline: bool = False) -> PipelineConfig:
    """``inline``: build the room fill in the frame's own thread (render: the output does
    not depend on how fast the machine is) instead of a worker (bench: as in a call)."""
    return PipelineConfig(
        segment=SegmentConfig(model=args.segment_model),
        framing=FramingConfig(enabled=args.framing == "on"),
        layout=LayoutConfig(height=args.height, gap=args.gap, margin=args.margin, mode=args.layout,
                            order=args.order, at_detail=args.detail == "camera"),
        grow=GrowConfig(grower=args.grower, device=args.device, checkpoint=args.checkpoint,
                        precision=args.precision),
        fill=RoomFillConfig(enabled=args.room_fill == "on", inline=inline),
        fps=args.fps,
    )


def open_sources(specs: list[str]) -> list:
    if not 1 <= len(specs) <= MAX_FEEDS:
        raise SourceError(f"give 1 to {MAX_FEEDS} clips, got {len(specs)}")
    sources = []
    try:
        for spec in specs:
            sources.append(open_source(spec))
    except SourceError:
        for s in sources:
            s.close()
        raise
    return sources


def default_frames(sources: list, fps: float, fallback: int = 300) -> int:
    """One pass of the longest clip, at the output rate."""
    durations = [getattr(s, "duration", None) for s in sources]
    durations = [d for d in durations if d]
    return max(1, int(round(max(durations) * fps))) if durations else fallback


def render(sources: list, output: Path, frames: int, config: PipelineConfig,
           segmenter: str = "mediapipe", progress: bool = True) -> dict:
    """Render ``frames`` output frames; returns a summary (frames, seconds, fps, size)."""
    t0 = time.perf_counter()
    size = None
    with Pipeline(config, segmenter=segmenter) as pipe, VideoWriter(output, fps=config.fps) as out, \
            Progress(frames, "render", enabled=progress) as bar:
        for i in range(frames):
            t = i / config.fps
            timer = StageTimer()
            with timer.stage("decode"):
                batch = [s.frame_at(t) for s in sources]
            result = pipe.process(batch, timer=timer)
            out.write(result.image)
            size = result.canvas.output_size
            bar.update(note=f"grow {timer.ms['grow']:.1f} ms")
    seconds = time.perf_counter() - t0
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "canvas": size}


def main(args: argparse.Namespace) -> int:
    sources = open_sources(args.clips)
    try:
        frames = args.frames or default_frames(sources, args.fps)
        summary = render(sources, args.output, frames, config_from_args(args, inline=True),
                         segmenter=args.segmenter)
    finally:
        for s in sources:
            s.close()
    w, h = summary["canvas"]
    print(f"wrote {args.output}: {summary['frames']} frames, {w}x{h}, "
          f"{summary['fps']:.1f} fps rendering ({args.grower})", file=sys.stderr)
    return 0
