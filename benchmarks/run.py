"""Pipeline benchmark scenarios: feeds x canvas height x grower x device, in one command.

    .venv/bin/python benchmarks/run.py                 # every scenario this machine can run
    .venv/bin/python benchmarks/run.py --only 2x360    # scenarios whose name contains "2x360"
    .venv/bin/python benchmarks/run.py --scaling       # 1/2/4/8 feeds x 360/540/720 x row/grid
    python benchmarks/run.py --only cuda --source synthetic   # no mediapipe, no PyAV

Each scenario runs `roomfuse bench` in-process on real webcam clips from the team data
(ROOMFUSE_DATA) with a warm-up, writes its JSON and PNG to benchmarks/out/, and the run
ends with a markdown table ready for RESULTS.md, headed by the machine it ran on.

Scenarios with a feed size (``-1280x720feeds``) take the clips at that size: decoded
once with OpenCV, cropped to 16:9 and upscaled from 640x360 (the clips are 640x480),
and served from memory, so their "decode" stage is only the pick of a frame. So do all
scenarios where PyAV is missing. ``--source synthetic`` replaces the clips by synthetic
participants segmented by colour key, for a machine without mediapipe; its holes are
smaller than real people's (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feeds import WEBCAMS, open_feeds, segmenter_for  # noqa: E402

from roomfuse.bench import bench, plot  # noqa: E402
from roomfuse.config import GrowConfig, LayoutConfig, PipelineConfig  # noqa: E402
from roomfuse.datapath import data_root  # noqa: E402
from roomfuse.growth import GROWERS  # noqa: E402
from roomfuse.pipeline import STAGES  # noqa: E402
from roomfuse.render import open_sources  # noqa: E402


def _nca_fp16(device="auto", threads=None, **kw):
    from roomfuse.growth.nca_grower import NCAGrower

    return NCAGrower(device=device, half=True, **kw)


# The growth model in float16, for the GPU scenarios (half precision is a CUDA option).
GROWERS.setdefault("nca-fp16", _nca_fp16)


@dataclass(frozen=True)
class Scenario:
    feeds: int
    height: int
    grower: str
    device: str = "cpu"
    layout: str = "row"
    feed: tuple[int, int] | None = None  # each feed's size; None: the clips' own

    @property
    def name(self) -> str:
        size = f"-{self.feed[0]}x{self.feed[1]}feeds" if self.feed else ""
        return f"{self.feeds}x{self.height}-{self.layout}-{self.grower}-{self.device}{size}"


SCENARIOS = [
    Scenario(2, 360, "telea"),
    Scenario(2, 360, "nca"),
    Scenario(2, 360, "blend"),
    Scenario(4, 720, "telea"),
    Scenario(4, 720, "nca"),
    Scenario(4, 720, "telea", layout="grid"),
    Scenario(4, 720, "nca", layout="grid"),
    Scenario(2, 360, "nca", device="cuda"),
    Scenario(4, 720, "nca", device="cuda"),
    # Four 1280x720 webcams side by side at their own size: a 5312x720 canvas.
    Scenario(4, 720, "nca", feed=(1280, 720)),
    Scenario(4, 720, "nca", device="cuda", feed=(1280, 720)),
    Scenario(4, 720, "nca-fp16", device="cuda", feed=(1280, 720)),
]


# The scaling table: every feed count and height, in a row and in a grid, the default
# grower on the CPU.
SCALING = [Scenario(n, h, "nca", layout=mode) for mode in ("row", "grid") for h in (360, 540, 720)
           for n in (1, 2, 4, 8)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{gpu}, Python {platform.python_version()}"


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def runnable(s: Scenario, source: str = "clips") -> str | None:
    """Why a scenario cannot run here, or None."""
    if s.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    if source == "clips" and _missing("mediapipe"):
        return "mediapipe is not installed (--source synthetic runs without it)"
    if s.grower.startswith("nca"):
        from roomfuse.growth import make_grower

        try:
            make_grower(s.grower, device=s.device)
        except Exception as e:  # no shipped checkpoint, or it fails to load
            return f"growth model unavailable ({str(e).splitlines()[0][:80]})"
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="run scenarios whose name contains this")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--gap", type=int, default=LayoutConfig.gap)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    p.add_argument("--scaling", action="store_true",
                   help="the scaling table (1, 2, 4, 8 feeds x heights 360, 540, 720, row and grid) "
                        "instead of the scenario list")
    p.add_argument("--source", choices=("clips", "synthetic"), default="clips",
                   help="synthetic: made-up participants and a colour key (no mediapipe needed)")
    args = p.parse_args()
    clips = [str(data_root() / "person_clips" / c) for c in WEBCAMS]
    args.out.mkdir(parents=True, exist_ok=True)
    in_memory = args.source == "synthetic" or _missing("av")
    rows = []
    for s in SCALING if args.scaling else SCENARIOS:
        if args.only not in s.name:
            continue
        why = runnable(s, args.source)
        if why:
            print(f"skip {s.name}: {why}", file=sys.stderr)
            continue
        print(f"== {s.name}", file=sys.stderr)
        load = os.getloadavg()[0]  # what else the machine was running, as the run starts
        cfg = PipelineConfig(layout=LayoutConfig(height=s.height, gap=args.gap, mode=s.layout),
                             grow=GrowConfig(grower=s.grower, device=s.device))
        if s.feed or in_memory:
            sources = open_feeds(args.source, s.feeds, s.feed or (640, 480), frames=120)
        else:
            sources = open_sources(clips[:s.feeds])
        try:
            r = bench(sources, args.frames, args.warmup, cfg, segmenter=segmenter_for(args.source))
        finally:
            for src in sources:
                src.close()
        r["source"] = args.source + (" (in memory)" if s.feed or in_memory else "")
        r["load_before"] = round(load, 2)
        (args.out / f"{s.name}.json").write_text(json.dumps(r, indent=2) + "\n")
        try:
            plot(r, args.out / f"{s.name}.png")
        except ImportError:  # no matplotlib on this machine: the JSON has it all
            pass
        rows.append((s, r))
    print(f"\nMachine: {machine()}" + (f"; feeds: {args.source}" if args.source != "clips" else "") + "\n")
    if args.scaling:
        print("| feeds | height | layout | canvas (worked at) | fps | frame p50 / p95 ms | CPU ms per frame | load before |")
        print("|---|---|---|---|---|---|---|---|")
        for s, r in rows:
            work = r.get("work") or r["canvas"]
            drawn = f" ({work[0]}x{work[1]})" if list(work) != list(r["canvas"]) else ""
            print(f"| {s.feeds} | {s.height} | {s.layout} | {r['canvas'][0]}x{r['canvas'][1]}{drawn} | {r['fps']:.1f} | "
                  f"{r['total']['p50_ms']:.1f} / {r['total']['p95_ms']:.1f} | {r['cpu_ms_per_frame']:.0f} | "
                  f"{r['load_before']:.1f} |")
        return 0
    stages = [st for st in STAGES if any(st in r["stages"] for _, r in rows)]
    print("| scenario | canvas | fps | " + " | ".join(f"{st} p50/p95 ms" for st in stages) + " |")
    print("|---|---|---|" + "---|" * len(stages))
    for s, r in rows:
        cells = [f"{r['stages'][st]['p50_ms']:.1f} / {r['stages'][st]['p95_ms']:.1f}" if st in r["stages"] else "-"
                 for st in stages]
        print(f"| {s.name} | {r['canvas'][0]}x{r['canvas'][1]} | {r['fps']:.1f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
