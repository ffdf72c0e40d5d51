"""The growth step beside its floor: what the hole costs at best, and what it costs here.

    .venv/bin/python benchmarks/growth_roofline.py                      # this machine, 2 feeds at 360
    python benchmarks/growth_roofline.py --device cuda --half --feeds 4 --feed-size 1280x720 \\
        --height 720 --batch 1,16 --json out.json                        # a GPU

A real canvas is built first (feeds -> segmentation -> layout, as the pipeline does;
``--source synthetic`` needs neither mediapipe nor the team clips), then brought to the
working resolution as the grower does. Its hole gives the work:

- cells: unknown cells that are not under an opaque person (the ones a step updates);
- tiles: the ``--tile`` x ``--tile`` tiles holding any such cell (the dense form's work).

FLOPs per updated cell come from the model's configuration: perception (depthwise 3x3,
4 filters per channel), fc1, ReLU, fc2 and the rule's update; folded perception (a 3x3
convolution straight to fc1's width) in place of the first two for ``tiled-fold``.
Bytes per step are those of an ideal fused kernel: each cell's state read once (a tile
with its one-cell border) and written once, plus its one-byte mask. The floor is
max(FLOPs / peak, bytes / bandwidth). Peaks: ``--peak-tflops`` / ``--bandwidth-gbs``;
else on a known GPU its datasheet figures (dense, no sparsity; labelled so), else on a
CPU measured here and now (a float32 matmul, a large copy).

Timed (CUDA events after a warm-up on a GPU, perf_counter on a CPU):
- ``loop``: a carried frame's device part as the grower runs it (plan the tiles on the
  host, copy the plan, carry the state, run or replay the steps, round the colour),
  with ``--loop-steps`` steps and with none: the difference per step is the step's
  cost, the rest the frame's fixed cost;
- ``replay`` (graphs only): the same from the recorded graph alone, the part the floor
  describes;
- ``frame``: a carried frame's device part, upload + carry + 1 step + download (its
  floor adds the PCIe bytes);
- ``stage``: the pipeline's grow stage, host resampling included.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feeds import open_feeds, parse_size, segmenter_for  # noqa: E402

from roomfuse.config import GrowConfig, LayoutConfig, PipelineConfig  # noqa: E402
from roomfuse.growth.base import Grower  # noqa: E402
from roomfuse.growth.nca_grower import NCAGrower  # noqa: E402
from roomfuse.growth.rule import GrowthState  # noqa: E402
from roomfuse.growth.staging import LowCanvas  # noqa: E402
from roomfuse.growth.tiles import TILE, Tiles  # noqa: E402
from roomfuse.pipeline import Pipeline  # noqa: E402

# Datasheet figures, dense (NVIDIA's sheets print the 2:4 sparse tensor figure, twice
# these): FP16 tensor, FP32 (CUDA cores), memory bandwidth, PCIe Gen5 x16 per direction.
DATASHEETS = {
    "h100-sxm": {"label": "H100 SXM5 datasheet", "fp16": 989.5, "fp32": 67.0, "gbs": 3350, "pcie": 64},
    "h100-pcie": {"label": "H100 PCIe datasheet", "fp16": 756.0, "fp32": 51.0, "gbs": 2000, "pcie": 64},
    "h200": {"label": "H200 SXM datasheet", "fp16": 989.5, "fp32": 67.0, "gbs": 4800, "pcie": 64},
}


def preset_for(name: str) -> str | None:
    n = name.lower()
    if "h200" in n:
        return "h200"
    if "h100" in n:
        return "h100-pcie" if "pcie" in n else "h100-sxm"
    return None


def measure_cpu(threads: int) -> dict:
    """Float32 matmul GFLOP/s and copy GB/s (read + write) on this CPU, now."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t0, n = time.perf_counter(), 10
    for _ in range(n):
        a @ b
    gflops = 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9
    src = torch.empty(64 * 2 ** 20)  # 256 MB, far beyond the caches
    dst = torch.empty_like(src)
    dst.copy_(src)
    t0 = time.perf_counter()
    for _ in range(5):
        dst.copy_(src)
    gbs = 2 * src.numel() * 4 * 5 / (time.perf_counter() - t0) / 1e9
    return {"label": f"measured here ({threads} thread{'s' if threads > 1 else ''})",
            "fp16": gflops / 1e3, "fp32": gflops / 1e3, "gbs": gbs, "pcie": None}


class _Keep(Grower):
    """Records the canvases the pipeline hands its grower."""
    name = "record"

    def __init__(self):
        self.seen = []

    def fill(self, image, known, covered=None):
        self.seen.append((image.copy(), known.copy(), None if covered is None else covered.copy()))
        return image.copy()


def make_canvases(args, count: int) -> list[tuple]:
    """``count`` canvases (image, known, covered) from the pipeline, some frames apart."""
    feeds = open_feeds(args.source, args.feeds, parse_size(args.feed_size), frames=max(30, 7 * count + 10))
    keep = _Keep()
    canvas = parse_size(args.canvas) if args.canvas else None
    height = canvas[1] if canvas else args.height
    cfg = PipelineConfig(layout=LayoutConfig(height=height, mode=args.layout),
                         grow=GrowConfig(grower="telea", device="cpu"))
    with Pipeline(cfg, segmenter=segmenter_for(args.source), grower=keep, canvas_size=canvas) as pipe:
        for i in range(10 + 7 * count):
            pipe.process([f.frame_at(i / 30) for f in feeds])
    return keep.seen[10::7][:count]


def per_cell_flops(c: int, hidden: int, fold: bool) -> int:
    perception = 4 * c - 3
    update = 6 * c  # scale, add, clamp (2), select; the gate's 3x3 sum on one channel
    head = 2 * hidden + 2 * hidden * c + update  # fc1 bias + ReLU, fc2
    if fold:
        return 2 * 9 * c * hidden + head
    return 2 * 9 * 4 * c + 2 * perception * hidden + head


def step_bytes(cells: int, tiles: int, tile: int, c: int, elem: int, tiled: bool) -> int:
    if tiled:
        return tiles * ((tile + 2) ** 2 * c * elem + tile * tile * (c * elem + 1))
    return cells * (2 * c * elem + 1)


def timer(device: torch.device, stream=None):
    """start(), stop() -> ms, synchronised with the device."""
    if device.type == "cuda":
        def start():
            ev = torch.cuda.Event(enable_timing=True)
            ev.record(stream)
            return ev

        def stop(ev0):
            ev1 = torch.cuda.Event(enable_timing=True)
            ev1.record(stream)
            ev1.synchronize()
            return ev0.elapsed_time(ev1)
        return start, stop
    return time.perf_counter, lambda t0: (time.perf_counter() - t0) * 1e3


def median_ms(fn, start, stop, repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = start()
        fn()
        times.append(stop(t0))
    return statistics.median(times)


def run_form(form: str, args, device: torch.device, canvases, peaks: dict, loop_steps: int) -> dict:
    tiled = form != "gathered"
    fold = form == "tiled-fold"
    engine = NCAGrower(device=str(device.type), half=args.half, tiled=tiled, fold=fold, tile=args.tile,
                       graphs=None if tiled else False, compile=args.compile)
    prepared = [engine.prepare(*c) for c in canvases]
    if any(isinstance(p, np.ndarray) for p in prepared):
        raise SystemExit("a canvas had nothing to grow; use more feeds or another source")
    start, stop = timer(device, engine.staging.stream)
    # A steady carried state first (a fresh frame runs grow_steps).
    _, states = engine.grow(prepared, [None for _ in prepared])
    out = {"form": form}
    with torch.inference_mode(), engine.staging.on_stream():
        # The batch as the grower forms it: one group, all carried, all of one size.
        group = LowCanvas.join([engine.staging.canvas(p, engine.dtype) for p in prepared])
        prev = GrowthState.join(states)

        # A carried frame's device part with K steps and with none: the difference is
        # the steps, the rest is the frame's fixed cost (carry, colour out).
        def device_part(k):
            engine.staging.begin()  # each call reuses the pinned buffers (timed calls end synchronised)
            engine._grow_group(group, prev, k)
        t = {k: median_ms(lambda: device_part(k), start, stop, args.repeat, args.warmup)
             for k in (0, loop_steps)}
        out["loop_ms_per_step"] = (t[loop_steps] - t[0]) / loop_steps
        out["loop_fixed_ms"] = t[0]
        runner = engine.runners["carried"] if engine.runners else None
        if runner is not None and runner.graphs:
            replays = {key[-1][1]: rec for key, (_, rec) in runner.graphs.items()}
            r = {k: median_ms(replays[k].replay, start, stop, args.repeat, args.warmup) for k in (0, loop_steps)}
            out["replay_ms_per_step"] = (r[loop_steps] - r[0]) / loop_steps
            out["replay_fixed_ms"] = r[0]
            out["graphs_recorded"] = runner.recorded
        if runner is not None and runner.failed:
            out["graph_failure"] = runner.failed

    def frame():
        nonlocal states
        _, states = engine.grow(prepared, states)
    out["frame_ms"] = median_ms(frame, start, stop, args.repeat, args.warmup)
    engine.timing = True
    frame()
    out["frame_parts_ms"] = {k: round(v, 4) for k, v in engine.last_ms.items()}
    engine.timing = False

    def stage():
        nonlocal states
        preps = [engine.prepare(*c) for c in canvases]
        colours, states = engine.grow(preps, states)
        for (image, known, _), rgb in zip(canvases, colours):
            engine.finish(image, known, rgb)
    out["stage_ms"] = median_ms(stage, time.perf_counter, lambda t0: (time.perf_counter() - t0) * 1e3,
                                args.repeat, args.warmup)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--source", choices=("synthetic", "clips"), default="clips")
    p.add_argument("--feeds", type=int, default=2)
    p.add_argument("--feed-size", default="640x480", help="WxH of each feed (clips are cropped and resized)")
    p.add_argument("--height", type=int, default=360, help="canvas height")
    p.add_argument("--layout", choices=("auto", "row", "grid"), default="row",
                   help="auto needs --canvas (a server room's fixed canvas)")
    p.add_argument("--canvas", default=None, help="WxH: a fixed canvas, as a server room has")
    p.add_argument("--batch", default="1", help="canvases (rooms) per grow call, comma-separated")
    p.add_argument("--forms", default=None, help="gathered,tiled,tiled-fold (default: all)")
    p.add_argument("--tile", type=int, default=TILE)
    p.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the tiled step loop")
    p.add_argument("--threads", type=int, default=GrowConfig.threads, help="torch threads on a CPU")
    p.add_argument("--loop-steps", type=int, default=16, help="steps per timed loop")
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None, help="override the compute peak")
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="override the memory bandwidth")
    p.add_argument("--preset", choices=sorted(DATASHEETS), default=None, help="datasheet figures to use")
    p.add_argument("--floor-only", action="store_true",
                   help="only the floors, from --preset or the peaks given (no device needed)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.layout == "auto" and not args.canvas:
        p.error("--layout auto needs --canvas")

    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.floor_only:
        if not args.preset and not (args.peak_tflops and args.bandwidth_gbs):
            p.error("--floor-only needs --preset or --peak-tflops and --bandwidth-gbs")
        name = DATASHEETS[args.preset]["label"] if args.preset else "given peaks"
        peaks = dict(DATASHEETS[args.preset]) if args.preset else {"label": "given", "pcie": None}
    elif device.type == "cpu":
        args.half = False
        torch.set_num_threads(args.threads)
        name = "CPU " + (os.uname().machine)
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        peaks = measure_cpu(args.threads)
    else:
        name = torch.cuda.get_device_name(device)
        preset = args.preset or preset_for(name)
        peaks = dict(DATASHEETS[preset]) if preset else {"label": "given", "fp16": None, "fp32": None,
                                                       "gbs": None, "pcie": None}
    key = "fp16" if args.half else "fp32"
    if args.peak_tflops:
        peaks[key], peaks["label"] = args.peak_tflops, "given"
    if args.bandwidth_gbs:
        peaks["gbs"], peaks["label"] = args.bandwidth_gbs, "given"
    if not peaks.get(key) or not peaks.get("gbs"):
        raise SystemExit(f"no peak figures for {name}: give --peak-tflops and --bandwidth-gbs")
    forms = (args.forms or "gathered,tiled,tiled-fold").split(",")
    batches = [int(b) for b in args.batch.split(",")]
    canvases_all = make_canvases(args, max(batches))
    ref = NCAGrower(device="cpu")
    c, hidden = ref.net.config.channels, ref.net.config.hidden
    elem = 2 if args.half else 4
    results = {"device": name, "peaks": peaks, "precision": key, "tile": args.tile, "runs": []}
    print(f"device: {name}; peaks ({peaks['label']}): {peaks[key]:.3g} TFLOP/s {key}, "
          f"{peaks['gbs']:.4g} GB/s" + (f", PCIe {peaks['pcie']} GB/s" if peaks.get("pcie") else ""))
    for nb in batches:
        canvases = canvases_all[:nb]
        preps = [ref.prepare(*cv) for cv in canvases]
        h, w = preps[0].known.shape
        known = torch.from_numpy(np.stack([pp.known for pp in preps]))[:, None]
        skip = torch.from_numpy(np.stack([pp.skip if pp.skip is not None else np.zeros_like(pp.known)
                                          for pp in preps]))[:, None]
        cells = int((~known & ~skip).sum())
        plan = Tiles.plan(known, skip, size=args.tile)
        ch, cw = canvases[0][1].shape
        layout = f"{args.layout} on {args.canvas}" if args.canvas else args.layout
        print(f"\n{nb} canvas{'es' if nb > 1 else ''} of {cw}x{ch} ({args.feeds} feeds {args.feed_size}, "
              f"{layout}, {args.source}) -> {w}x{h} cells each; updated cells {cells:,} "
              f"({cells / (nb * h * w):.0%}), tiles {plan.used} of {args.tile}x{args.tile} "
              f"(bucket {plan.count}, {plan.used * args.tile ** 2 / max(cells, 1):.2f}x the cells)")
        print(f"{'form':<11} {'GFLOP/step':>10} {'MB/step':>8} {'floor us':>9} {'bound':>7} "
              f"{'loop us':>9} {'x floor':>8} {'replay us':>9} {'x floor':>8} {'frame ms':>9} "
              f"{'frame floor ms':>14} {'stage ms':>9}")
        for form in forms:
            tiled = form != "gathered"
            work = plan.used * args.tile ** 2 if tiled else cells
            flops = work * per_cell_flops(c, hidden, form == "tiled-fold")
            nbytes = step_bytes(cells, plan.used, args.tile, c, elem, tiled)
            t_c, t_m = flops / (peaks[key] * 1e12), nbytes / (peaks["gbs"] * 1e9)
            floor_us = max(t_c, t_m) * 1e6
            # A carried frame: the step, the carry (read the state, image and mask of
            # every cell, write the state) and, on a GPU, the copies over PCIe.
            carry_bytes = nb * h * w * (2 * c * elem + 3 * elem + 2)
            pcie_bytes = nb * h * w * (3 * 4 + 2 + 3)
            frame_floor = floor_us / 1e3 + carry_bytes / (peaks["gbs"] * 1e9) * 1e3
            if peaks.get("pcie"):
                frame_floor += pcie_bytes / (peaks["pcie"] * 1e9) * 1e3
            r = {"form": form} if args.floor_only else run_form(form, args, device, canvases, peaks,
                                                                args.loop_steps)
            r.update(batch=nb, cells=cells, tiles=plan.used, bucket=plan.count, gflop=flops / 1e9,
                     mbytes=nbytes / 1e6, floor_us=floor_us, bound="compute" if t_c > t_m else "memory",
                     frame_floor_ms=frame_floor)
            results["runs"].append(r)
            if args.floor_only:
                print(f"{form:<11} {flops / 1e9:>10.4f} {nbytes / 1e6:>8.2f} {floor_us:>9.2f} {r['bound']:>7} "
                      f"{'-':>9} {'-':>8} {'-':>9} {'-':>8} {'-':>9} {frame_floor:>14.4f} {'-':>9}")
                continue
            loop_us = r["loop_ms_per_step"] * 1e3
            rep = r.get("replay_ms_per_step")
            print(f"{form:<11} {flops / 1e9:>10.4f} {nbytes / 1e6:>8.2f} {floor_us:>9.2f} {r['bound']:>7} "
                  f"{loop_us:>9.1f} {loop_us / floor_us:>8.1f} "
                  f"{(f'{rep * 1e3:.1f}' if rep else '-'):>9} {(f'{rep * 1e3 / floor_us:.1f}' if rep else '-'):>8} "
                  f"{r['frame_ms']:>9.3f} {frame_floor:>14.4f} {r['stage_ms']:>9.2f}")
            if r.get("graph_failure"):
                print(f"  (CUDA graph capture failed: {r['graph_failure']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
