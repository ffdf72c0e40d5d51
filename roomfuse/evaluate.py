"""``roomfuse eval``: every grower on the same held-out inputs, in one run.

Three measurements on the held-out split of the team data (``growth.data.EVAL_SPLIT``):

- gap join: each photo or clip still, at height 360, is cut into two feeds by a vertical
  gap of 48, 96 and 160 px (centred at 0.4, 0.5 and 0.6 of the width); PSNR and SSIM over
  the gap pixels;
- holes: person-shaped masks (mediapipe masks from held-out clips) and free-form masks
  (blobs, strokes) on the held-out photos; PSNR and SSIM over the hole pixels;
- flicker: static-camera clips with a person, a 64-px centre gap plus the person's mask
  as the unknown region, frame by frame with each grower's state kept; the mean absolute
  change between consecutive outputs over pixels unknown in both frames whose true
  content did not change (so every change there is the grower's own).

Plus the time per frame of each grower on a live-size 2-feed canvas (``bench_canvas``).
Writes ``results.md``, ``results.json`` and ``examples.png`` under ``--out``.
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
FLICKER_CLIPS = ("person_clips/intel_asl_walk.mkv", "person_clips/pyfeat_single_face.mp4",
                 "scene_clips/intel_one_by_one_person_detection.mp4")


def make_growers(names: list[str], checkpoint: str | None, device: str) -> dict:
    from .growth import make_grower
    from .growth.nca_grower import NCAGrower

    growers = {}
    for name in names:
        if name == "nca":
            growers[name] = NCAGrower(device=device, checkpoint=checkpoint)
        elif name == "nca-untrained":
            # The rule with a zero-initialised network: exactly its starting fill. Shows
            # what the learned correction adds on top.
            from .growth.model import GrowthNet, NCAConfig
            from .growth.rule import RuleConfig

            growers[name] = NCAGrower(device=device, net=GrowthNet(NCAConfig()), rule=RuleConfig())
        else:
            growers[name] = make_grower(name, device=device)
    return growers


def mean_scores(grower, cases) -> dict:
    vals = []
    for image, known in cases:
        grower.reset()
        vals.append(score(grower.fill(image, known), image, ~known))
    return {"psnr": float(np.mean([v[0] for v in vals])),
            "ssim": float(np.mean([v[1] for v in vals])), "cases": len(vals)}


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


def example_sheet(rows: list[tuple[str, np.ndarray, np.ndarray]], growers: dict,
                  path: Path, width: int = 300) -> None:
    """One row per case: truth, input (unknown in magenta), then each grower's fill."""
    import cv2

    def label(img, text):
        img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])),
                         interpolation=cv2.INTER_AREA)
        cv2.rectangle(img, (0, 0), (width, 16), (0, 0, 0), -1)
        cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        return img

    lines = []
    for title, image, known in rows:
        shown = image.copy()
        shown[~known] = (255, 0, 255)
        cells = [label(image.copy(), f"truth: {title}"), label(shown, "input")]
        for name, grower in growers.items():
            grower.reset()
            cells.append(label(grower.fill(image, known), name))
        lines.append(np.hstack(cells))
    sheet = np.vstack([np.pad(l, ((0, 0), (0, max(x.shape[1] for x in lines) - l.shape[1]), (0, 0)))
                       for l in lines])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def run(names: list[str], root: Path, out: Path, checkpoint: str | None, device: str,
        frames: int, log=print) -> dict:
    from .growth import data

    growers = make_growers(names, checkpoint, device)
    images = data.eval_gap_images(root)
    results: dict = {"methods": names, "gap": {}, "holes": {}, "flicker": {}, "time": {}}
    for width in GAP_WIDTHS:
        cases = data.gap_cases(images, (width,))
        results["gap"][width] = {n: mean_scores(g, cases) for n, g in growers.items()}
        log(f"gap {width}: " + ", ".join(f"{n} {s['psnr']:.2f}/{s['ssim']:.3f}"
                                          for n, s in results["gap"][width].items()))
    parts = data.split_media(root, held_out=True)
    photos = [data.resize_height(data.load_rgb(root / p), 360) for p in parts["images"]]
    bank = [m for rel in parts["person_clips"]
            for m in data.person_masks(data.read_frames(root / rel, step=20))]
    for kind, cases in hole_cases(photos, bank).items():
        results["holes"][kind] = {n: mean_scores(g, cases) for n, g in growers.items()}
        log(f"holes {kind}: " + ", ".join(f"{n} {s['psnr']:.2f}/{s['ssim']:.3f}"
                                           for n, s in results["holes"][kind].items()))
    clips = flicker_inputs(root, frames)
    results["flicker"] = {n: float(np.mean([flicker(g, c) for c in clips]))
                          for n, g in growers.items()}
    log("flicker: " + ", ".join(f"{n} {v:.3f}" for n, v in results["flicker"].items()))
    canvases = bench_canvas(root, frames)
    results["canvas"] = {"size": "1024x360", "unknown_fraction":
                         float(np.mean([(~k).mean() for _, k in canvases]))}
    results["time"] = {n: time_per_frame(g, canvases) for n, g in growers.items()}
    log("ms/frame: " + ", ".join(f"{n} {v['median_ms']:.1f}" for n, v in results["time"].items()))
    sheet_rows = [(f"gap {w}", *data.gap_cases([images[i]], (w,), (0.5,))[0])
                  for i, w in ((1, 96), (2, 160), (4, 96), (8, 96))]
    sheet_rows.append(("person hole", *hole_cases(photos[5:6], bank, seed=1)["person"][0]))
    example_sheet(sheet_rows, growers, out / "examples.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    return results


def markdown(results: dict) -> str:
    gap = results["gap"]
    head = ["method"] + [f"gap {w} PSNR / SSIM" for w in gap] + \
        ["person holes", "free-form holes", "flicker", "ms/frame (p95)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in results["methods"]:
        row = [name] + [f"{gap[w][name]['psnr']:.2f} / {gap[w][name]['ssim']:.3f}" for w in gap]
        row += [f"{results['holes'][k][name]['psnr']:.2f} / {results['holes'][k][name]['ssim']:.3f}"
                for k in ("person", "free-form")]
        row.append(f"{results['flicker'][name]:.3f}")
        t = results["time"][name]
        row.append(f"{t['median_ms']:.1f} ({t['p95_ms']:.1f})")
        lines.append("| " + " | ".join(row) + " |")
    canvas = results.get("canvas", {})
    lines.append("")
    lines.append(f"PSNR in dB and SSIM over the unknown pixels only; flicker = mean absolute "
                 f"change (0..255) of filled, truly static pixels between frames; time on a "
                 f"{canvas.get('size', '?')} 2-feed canvas with "
                 f"{100 * canvas.get('unknown_fraction', 0):.0f} % unknown.")
    return "\n".join(lines) + "\n"


DEFAULT_METHODS = "nca,nca-untrained,telea-full,ns-full,telea,ns,blend"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/eval",
                        help="folder for results.md/.json and examples.png")
    parser.add_argument("--data", default=None,
                        help="data root (default $ROOMFUSE_DATA or ../shared/data)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="growth-model weights (default: the ones shipped with roomfuse)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated grower names")
    add_device_argument(parser, "the growth model")
    parser.add_argument("--frames", type=int, default=60,
                        help="frames per clip for flicker and timing")


def main(args: argparse.Namespace) -> int:
    from .growth import UnknownGrower
    from .growth.checkpoint import CheckpointError
    from .growth.data import DataError, data_root

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    try:
        results = run(names, data_root(args.data), Path(args.out), args.checkpoint,
                      args.device, args.frames)
    except (DataError, CheckpointError, UnknownGrower) as err:
        print(f"roomfuse eval: {err}", file=sys.stderr)
        return 2
    print(markdown(results))
    return 0
