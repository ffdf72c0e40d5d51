"""``roomfuse eval``: every grower on the same held-out inputs, in one run.

On the held-out split of the team data (``growth.data.EVAL_SPLIT``):

- cases with a truth: each photo or clip still at height 360 cut into two feeds by a
  vertical gap of 48, 96 and 160 px (centred at 0.4, 0.5 and 0.6 of the width), and
  person-shaped and free-form holes on the photos. Per kind: PSNR and SSIM over the hole;
  and, because PSNR rewards a blur on large holes, realism: the patch SWD of the fills
  against the truth (pooled over the kind's cases, per pyramid level and mean; the truth
  against itself is the floor), the detail ratio and the seam ratio
  (``growth.realism``);
- two rooms: pairs of *different* held-out photos side by side with a 96-px gap, as a
  call joins them. There is no truth: the fill's patches are compared with the two
  rooms' own patches next to the gap;
- flicker and time per frame of the live growers on video (state kept frame to frame);
  the still fills (structure then texture, and the peers) are timed per picture.

Writes ``results.md``, ``results.json``, ``examples.png`` (the picture sheet) and
``realism.png`` (realism against fidelity, per method) under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .argtypes import add_device_argument
from .growth.scores import flicker, score

GAP_WIDTHS = (48, 96, 160)
TWO_ROOMS_GAP = 96
FLICKER_CLIPS = ("person_clips/intel_asl_walk.mkv", "person_clips/pyfeat_single_face.mp4",
                 "scene_clips/intel_one_by_one_person_detection.mp4")
# Seconds a picture: measured on single pictures, never run per frame of a video.
STILL = {"rule-tex", "nca-tex", "patchmatch", "fsr"}
DEFAULT_METHODS = "rule-tex,nca-tex,nca,rule,telea-full,ns-full,telea,blend,patchmatch,fsr"


def make_growers(names: list[str], checkpoint: str | None, device: str) -> dict:
    from .growth import make_grower

    growers = {}
    for name in names:
        if name in ("nca", "nca-tex") and checkpoint:
            growers[name] = make_grower(name, device=device, checkpoint=checkpoint)
        else:
            growers[name] = make_grower(name, device=device)
    return growers


def hole_cases(images: list[np.ndarray], bank: list[np.ndarray], seed: int = 0) -> dict:
    """Person and free-form masks on each photo, drawn from a fixed seed."""
    from .growth.masks import blobs, person_hole, strokes

    rng = np.random.default_rng(seed)
    cases = {"person": [], "free-form": []}
    for img in images:
        h, w = img.shape[:2]
        for _ in range(2):
            cases["person"].append((img, ~person_hole(rng, h, w, 0.8, bank)))
        cases["free-form"].append((img, ~blobs(rng, h, w, 0.8)))
        cases["free-form"].append((img, ~strokes(rng, h, w, 0.8)))
    return cases


def truth_cases(root: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Every kind of case with a truth: {"gap 48": [(image, known), ...], ...}."""
    from .growth import data

    images = data.eval_gap_images(root)
    cases = {f"gap {w}": data.gap_cases(images, (w,)) for w in GAP_WIDTHS}
    parts = data.split_media(root, held_out=True)
    photos = [data.resize_height(data.load_rgb(root / p), 360) for p in parts["images"]]
    bank = [m for rel in parts["person_clips"]
            for m in data.person_masks(data.read_frames(root / rel, step=20))]
    cases.update(hole_cases(photos, bank))
    return cases


def two_room_cases(root: Path, gap: int = TWO_ROOMS_GAP, side: int = 300
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(canvas, known, reference): the left part of one held-out photo and the right part
    of the next, ``gap`` apart; ``reference`` marks the real pixels within one gap width
    of the band, what the band's patches are compared with."""
    from .growth import data

    parts = data.split_media(root, held_out=True)
    photos = [data.resize_height(data.load_rgb(root / p), 360) for p in parts["images"]]
    photos = [p for p in photos if p.shape[1] >= side]
    out = []
    for a, b in zip(photos, photos[1:] + photos[:1]):
        h = a.shape[0]
        canvas = np.zeros((h, 2 * side + gap, 3), np.uint8)
        canvas[:, :side] = a[:, :side]
        canvas[:, side + gap:] = b[:, -side:]
        known = np.ones((h, 2 * side + gap), bool)
        known[:, side:side + gap] = False
        reference = np.zeros_like(known)
        reference[:, side - gap:side] = True
        reference[:, side + gap:side + 2 * gap] = True
        out.append((canvas, known, reference))
    return out


def measure(growers: dict, cases: list, bar=None) -> dict:
    """Fidelity and realism of every grower on one kind of case."""
    from .growth.realism import FillStats, PatchSWD

    swd = PatchSWD()
    stats = {n: FillStats() for n in growers}
    scores = {n: [] for n in growers}
    times = {n: [] for n in growers}
    for image, known in cases:
        fills = {}
        for name, grower in growers.items():
            grower.reset()
            t = time.perf_counter()
            fills[name] = grower.fill(image, known)
            times[name].append((time.perf_counter() - t) * 1e3)
            scores[name].append(score(fills[name], image, ~known))
            stats[name].add(fills[name], image, ~known)
        swd.add(image, fills, ~known)
        if bar is not None:
            bar.update(1)
    realism = swd.result()
    out = {"cases": len(cases), "floor_swd": realism["truth"]["mean"]}
    for name in growers:
        out[name] = {"psnr": float(np.mean([s[0] for s in scores[name]])),
                     "ssim": float(np.mean([s[1] for s in scores[name]])),
                     "swd": realism[name]["mean"], "swd_levels": realism[name]["levels"],
                     "detail": stats[name].detail, "seam": stats[name].seam,
                     "ms_per_picture": float(np.median(times[name]))}
    return out


def measure_two_rooms(growers: dict, cases: list, bar=None) -> dict:
    from .growth.realism import PatchSWD

    swd = PatchSWD()
    for canvas, known, reference in cases:
        fills = {}
        for name, grower in growers.items():
            grower.reset()
            fills[name] = grower.fill(canvas, known)
        swd.add(canvas, fills, ~known, reference=reference)
        if bar is not None:
            bar.update(1)
    res = swd.result()
    return {"cases": len(cases), "floor_swd": res["truth"]["mean"],
            **{n: {"swd": res[n]["mean"], "swd_levels": res[n]["levels"]} for n in growers}}


def flicker_inputs(root: Path, frames: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per clip: (frame, known) with known = not (centre gap or dilated person)."""
    import cv2

    from .growth.data import person_masks, read_frames, resize_height
    from .growth.masks import gap_mask

    clips = []
    for rel in FLICKER_CLIPS:
        raw = [resize_height(f, 360) for f in read_frames(root / rel, limit=frames)]
        prob = person_masks(raw, keep_empty=True)
        seq = []
        for frame, person in zip(raw, prob):
            person = cv2.dilate(person.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
            seq.append((frame, ~(gap_mask(*frame.shape[:2], 64) | person)))
        clips.append(seq)
    return clips


def time_per_frame(grower, canvases, warmup: int = 5) -> dict:
    """Median and p95 milliseconds of ``fill`` over a sequence of canvases (state kept)."""
    grower.reset()
    for image, known in canvases[:warmup]:
        grower.fill(image, known)
    times = []
    for image, known in canvases[warmup:]:
        t = time.perf_counter()
        grower.fill(image, known)
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def bench_canvas(root: Path, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A live-size 2-feed canvas: two held-out webcam clips as 480x360 tiles with a 64-px
    gap (1024x360); unknown = the gap plus each person's dilated mask, as the pipeline
    hands the grower when no background has been remembered yet."""
    import cv2

    from .growth.data import person_masks, read_frames, resize_height

    tiles = []
    for rel in FLICKER_CLIPS[:2]:
        raw = [resize_height(f, 360) for f in read_frames(root / rel, limit=frames)]
        raw = [f[:, (f.shape[1] - 480) // 2:(f.shape[1] - 480) // 2 + 480] for f in raw]
        masks = [cv2.dilate(m.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
                 for m in person_masks(raw, keep_empty=True)]
        tiles.append(list(zip(raw, masks)))
    n = min(len(t) for t in tiles)
    out = []
    for i in range(n):
        image = np.zeros((360, 1024, 3), np.uint8)
        known = np.zeros((360, 1024), bool)
        for (frame, person), x in zip((tiles[0][i], tiles[1][i]), (0, 544)):
            image[:, x:x + 480] = frame
            known[:, x:x + 480] = ~person
        out.append((image, known))
    return out


def run(names: list[str], root: Path, out: Path, checkpoint: str | None, device: str,
        frames: int, progress: bool = True, kinds: list[str] | None = None) -> dict:
    from .eval_report import example_sheet, markdown, realism_plot
    from .progress import Progress

    growers = make_growers(names, checkpoint, device)
    cases = truth_cases(root)
    if kinds:
        cases = {k: v for k, v in cases.items() if k in kinds}
    rooms = two_room_cases(root)
    live = {n: g for n, g in growers.items() if n not in STILL}
    results: dict = {"methods": names, "kinds": {}, "two_rooms": {}, "flicker": {}, "time": {}}
    total = sum(len(c) for c in cases.values()) + len(rooms)
    with Progress(total, "eval", enabled=progress) as bar:
        for kind, kind_cases in cases.items():
            results["kinds"][kind] = measure(growers, kind_cases, bar)
        results["two_rooms"] = measure_two_rooms(growers, rooms, bar)
    if live and frames > 0:
        clips = flicker_inputs(root, frames)
        results["flicker"] = {n: float(np.mean([flicker(g, c) for c in clips])) for n, g in live.items()}
        canvases = bench_canvas(root, frames)
        results["canvas"] = {"size": "1024x360", "unknown_fraction":
                             float(np.mean([(~k).mean() for _, k in canvases]))}
        results["time"] = {n: time_per_frame(g, canvases) for n, g in live.items()}
    out.mkdir(parents=True, exist_ok=True)
    example_sheet(root, growers, out / "examples.png")
    realism_plot(results, out / "realism.png")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .argtypes import positive_int

    parser.add_argument("--out", default="out/eval",
                        help="folder for results.md/.json, examples.png and realism.png")
    parser.add_argument("--data", default=None,
                        help="data root (default $ROOMFUSE_DATA or ../shared/data)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="growth-model weights (default: the ones shipped with roomfuse)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated grower names")
    parser.add_argument("--kinds", default=None,
                        help="only these kinds of case, comma-separated (e.g. 'gap 96,person')")
    add_device_argument(parser, "the growth model")
    parser.add_argument("--frames", type=positive_int, default=60,
                        help="frames per clip for flicker and timing")


def main(args: argparse.Namespace) -> int:
    from .eval_report import markdown
    from .growth import UnknownGrower
    from .growth.checkpoint import CheckpointError
    from .growth.data import DataError, data_root

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    out = Path(args.out)
    try:
        results = run(names, data_root(args.data), out, args.checkpoint, args.device, args.frames,
                      kinds=kinds)
    except (DataError, CheckpointError, UnknownGrower) as err:
        print(f"roomfuse eval: {err}", file=sys.stderr)
        return 2
    print(markdown(results))
    print(f"wrote {out / 'results.md'}, results.json, examples.png and realism.png in {out}", file=sys.stderr)
    return 0
