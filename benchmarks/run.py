"""Pipeline benchmark scenarios: feeds x canvas height x grower x device, in one command.

    .venv/bin/python benchmarks/run.py                 # every scenario this machine can run
    .venv/bin/python benchmarks/run.py --only 2x360    # scenarios whose name contains "2x360"

Each scenario runs `roomfuse bench` in-process on real webcam clips from the team data
(ROOMFUSE_DATA) with a warm-up, writes its JSON and PNG to benchmarks/out/, and the run
ends with a markdown table ready for RESULTS.md, headed by the machine it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from roomfuse.bench import bench, plot
from roomfuse.config import GrowConfig, LayoutConfig, PipelineConfig
from roomfuse.datapath import data_root
from roomfuse.render import open_sources

# 640x480 webcam clips of people in an office (each one a different signer).
WEBCAMS = ["intel_asl_bird.mkv", "intel_asl_again.mkv", "intel_asl_book.mkv", "intel_asl_yes.mkv"]


@dataclass(frozen=True)
class Scenario:
    feeds: int
    height: int
    grower: str
    device: str = "cpu"
    layout: str = "row"

    @property
    def name(self) -> str:
        return f"{self.feeds}x{self.height}-{self.layout}-{self.grower}-{self.device}"


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
]


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


def runnable(s: Scenario) -> str | None:
    """Why a scenario cannot run here, or None."""
    if s.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    if s.grower == "nca":
        from roomfuse.growth import make_grower

        try:
            make_grower("nca", device=s.device)
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
    args = p.parse_args()
    clips = [str(data_root() / "person_clips" / c) for c in WEBCAMS]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in SCENARIOS:
        if args.only not in s.name:
            continue
        why = runnable(s)
        if why:
            print(f"skip {s.name}: {why}", file=sys.stderr)
            continue
        print(f"== {s.name}", file=sys.stderr)
        cfg = PipelineConfig(layout=LayoutConfig(height=s.height, gap=args.gap, mode=s.layout),
                             grow=GrowConfig(grower=s.grower, device=s.device))
        sources = open_sources(clips[:s.feeds])
        try:
            r = bench(sources, args.frames, args.warmup, cfg)
        finally:
            for src in sources:
                src.close()
        (args.out / f"{s.name}.json").write_text(json.dumps(r, indent=2) + "\n")
        plot(r, args.out / f"{s.name}.png")
        rows.append((s, r))
    print(f"\nMachine: {machine()}\n")
    stages = ["decode", "segment", "layout", "grow", "composite"]
    print("| scenario | canvas | fps | " + " | ".join(f"{st} p50/p95 ms" for st in stages) + " |")
    print("|---|---|---|" + "---|" * len(stages))
    for s, r in rows:
        cells = [f"{r['stages'][st]['p50_ms']:.1f} / {r['stages'][st]['p95_ms']:.1f}" for st in stages]
        print(f"| {s.name} | {r['canvas'][0]}x{r['canvas'][1]} | {r['fps']:.1f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
