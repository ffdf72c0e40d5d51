"""Framing, seats and light on the team clips: what they cost and what they change.

    .venv/bin/python benchmarks/framing.py                      # numbers: markdown + benchmarks/out/framing.json
    .venv/bin/python benchmarks/framing.py --pictures docs      # also the pictures of docs/framing.md

Measures, on real clips with real mediapipe:
- cost per frame of the frame, layout and composite stages with framing on and off
  (2 feeds at height 360), back to back, in CPU time (the machine is shared), and the
  CPU time of the whole process per frame (every thread: segmentation, and the face
  detection that runs in a worker thread); and one face detection on its own;
- face sizes and eye lines in the composite, with OpenCV's Haar cascade (a detector the
  stage does not use): max/min face height and the spread of face centres;
- each join's background luminance and white-balance difference
  (``composite.join_report``) without harmonisation, with the former harmoniser
  (``FormerHarmonizer`` below: whole tiles half-way toward their neighbours) and with
  the current one, all on the same framed, seated canvases.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from roomfuse.capture import open_source  # noqa: E402
from roomfuse.composite import Harmonizer, join_report  # noqa: E402
from roomfuse.config import CompositeConfig, FramingConfig, LayoutConfig, PipelineConfig  # noqa: E402
from roomfuse.datapath import data_root  # noqa: E402
from roomfuse.framing import FaceFinder  # noqa: E402
from roomfuse.pipeline import Pipeline, StageTimer  # noqa: E402

SETS = {
    "three": ("intel_asl_book.mkv", "pexels_wolfganglanger.mp4", "pyfeat_single_face.mp4"),
    "two": ("intel_asl_bird.mkv", "pyfeat_single_face.mp4"),
    "four": ("intel_asl_again.mkv", "pexels_wolfganglanger.mp4", "intel_asl_walk.mkv", "pyfeat_single_face.mp4"),
}
# Two far people (both enlarged about 2x: the dearer case for layout) and two close-ups
# (both shrunk).
COST_PAIRS = (("intel_asl_bird.mkv", "intel_asl_book.mkv"), ("pyfeat_single_face.mp4", "pexels_wolfganglanger.mp4"))
HAAR = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


class FormerHarmonizer(Harmonizer):
    """The harmoniser before join gains, for comparison: each tile's whole-background
    mean moved half-way (in ratio) toward the geometric mean of itself and its
    neighbours, one gain per tile."""

    def update(self, canvas):
        n = len(canvas.tiles)
        keys = self.keys_of(canvas)
        target = np.ones((n, 3), np.float32)
        if n >= 2:
            means = self.measure(canvas)
            for i, a in enumerate(canvas.tiles):
                nb = [j for j, b in enumerate(canvas.tiles)
                      if max(b.x - (a.x + a.w), a.x - (b.x + b.w), b.y - (a.y + a.h), a.y - (b.y + b.h), 0) <= 98]
                target[i] = (np.exp(np.log(means[nb]).mean(axis=0)) / means[i]) ** self.cfg.harmonize
        target = np.clip(target, 1 / self.cfg.max_gain, self.cfg.max_gain)
        gains = np.empty((n, 3), np.float32)
        for i, k in enumerate(keys):
            g = self.gains.get(k, np.ones(3, np.float32))
            gains[i] = self.gains[k] = g + (target[i] - g) / self.cfg.smooth_frames
        return gains, {}


def clips(names):
    return [str(data_root() / "person_clips" / n) for n in names]


class CPUTimer(StageTimer):
    """Stage costs in CPU time of the calling thread: on a machine shared with other
    work, wall-clock stage times grow with the load, CPU times much less."""

    @contextmanager
    def stage(self, name: str):
        t0 = time.thread_time()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.thread_time() - t0) * 1e3


def run(paths, frames, config, keep_from=45, harmonizer=None, timer=StageTimer):
    """Results from ``keep_from`` on, and per frame the stage times plus "process_cpu":
    the CPU time of the whole process (every thread: segmentation, face detection)."""
    sources = [open_source(p) for p in paths]
    out, stages = [], []
    try:
        with Pipeline(config) as pipe:
            if harmonizer is not None:
                pipe.compositor.harmonizer = harmonizer(config.composite)
            for i in range(frames):
                t = timer()
                cpu0 = time.process_time()
                r = pipe.process([s.frame_at(i / config.fps) for s in sources], timer=t)
                stages.append({**t.ms, "process_cpu": (time.process_time() - cpu0) * 1e3})
                if i >= keep_from:
                    out.append(r)
    finally:
        for s in sources:
            s.close()
    return out, stages


def faces(results):
    """Haar faces per tile over every 5th frame: the worst frame, and the per-tile
    medians (robust to a hand over a face, which Haar misses or stretches)."""
    ratios, spreads, per_tile = [], [], [[] for _ in results[0].canvas.output_tiles]
    for r in results[::5]:
        gray = cv2.cvtColor(r.image, cv2.COLOR_RGB2GRAY)
        found = []
        for i, t in enumerate(r.canvas.output_tiles):
            f = HAAR.detectMultiScale(gray[:, max(t.x, 0):t.x + t.w], 1.1, 5, minSize=(30, 30))
            if len(f):
                x, y, w, h = max(f, key=lambda b: b[3])
                found.append((h, y + h / 2))
                per_tile[i].append((h, y + h / 2))
        if len(found) == len(r.canvas.output_tiles):
            hs, cs = [f[0] for f in found], [f[1] for f in found]
            ratios.append(max(hs) / min(hs))
            spreads.append((max(cs) - min(cs)) / r.image.shape[0])
    hs = [np.median([f[0] for f in t]) for t in per_tile if t]
    cs = [np.median([f[1] for f in t]) for t in per_tile if t]
    return {"frames_all_found": len(ratios), "frames": len(results[::5]),
            "height_ratio_worst_frame": round(max(ratios), 3) if ratios else None,
            "centre_spread_worst_frame": round(max(spreads), 3) if spreads else None,
            "height_ratio": round(max(hs) / min(hs), 3),
            "centre_spread": round((max(cs) - min(cs)) / results[0].image.shape[0], 3)}


def joins(results):
    rep = [join_report(r.image, r.canvas) for r in results[-15:]]
    return {"luminance": [round(float(np.mean([j[i]["luminance"] for j in rep])), 1) for i in range(len(rep[0]))],
            "white_balance": [round(float(np.mean([j[i]["white_balance"] for j in rep])), 3)
                              for i in range(len(rep[0]))]}


def stage_ms(stages, name, skip=30):
    v = np.array([s.get(name, 0.0) for s in stages[skip:]])
    return {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}


def detection_ms(paths, n=40):
    finder = FaceFinder()
    src = open_source(paths[0])
    images = [src.frame_at(i / 30).image for i in range(n)]
    src.close()
    finder(images[0])
    t = []
    for img in images:
        t0 = time.perf_counter()
        finder(img)
        t.append((time.perf_counter() - t0) * 1e3)
    finder.close()
    return {"p50": round(float(np.median(t)), 2), "p95": round(float(np.percentile(t, 95)), 2)}


def pictures(out: Path) -> None:
    """Before/after of the three-person room, and a close-up shrunk by framing with the
    room around it grown (and what the grower was given)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = clips(SETS["three"])
    for name, cfg in (("framing-before", PipelineConfig(framing=FramingConfig(enabled=False),
                                                        layout=LayoutConfig(order="given"))),
                      ("framing-after", PipelineConfig())):
        r = run(paths, 61, cfg, keep_from=60)[0][0]
        _save(out / f"{name}.png", r.image, width=1200)
    r = run(clips(("intel_asl_bird.mkv", "pexels_wolfganglanger.mp4")), 61,
            PipelineConfig(layout=LayoutConfig(order="given")), keep_from=60)[0][0]
    t = r.canvas.output_tiles[1]
    x0, x1 = max(t.x - 64, 0), min(t.x + t.w + 64, r.image.shape[1])
    given = r.canvas.background.copy()
    given[~r.canvas.known] = (255, 0, 255)  # what the grower had to invent, in magenta
    given = cv2.resize(given, r.canvas.output_size, interpolation=cv2.INTER_NEAREST)  # as shown
    sheet = np.concatenate([given[:, x0:x1], np.full((r.image.shape[0], 8, 3), 255, np.uint8),
                            r.image[:, x0:x1]], axis=1)
    _save(out / "framing-closeup.png", sheet, width=None)


def _save(path: Path, rgb: np.ndarray, width: int | None) -> None:
    if width and rgb.shape[1] > width:
        rgb = cv2.resize(rgb, (width, round(rgb.shape[0] * width / rgb.shape[1])), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=150, help="frames per cost run")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "out" / "framing.json")
    p.add_argument("--pictures", type=Path, default=None, help="write the docs pictures here")
    args = p.parse_args()
    result = {"cost": {}, "sets": {}}
    for pair in COST_PAIRS:
        paths = clips(pair)
        cost = result["cost"][" + ".join(pair)] = {}
        for rep in range(2):  # off, on, off, on: back to back, so the load is shared alike
            for framing in (False, True):
                cfg = PipelineConfig(framing=FramingConfig(enabled=framing), layout=LayoutConfig(order="given"))
                _, stages = run(paths, args.frames, cfg, timer=CPUTimer)
                cost.setdefault("on" if framing else "off", []).append(
                    {s: stage_ms(stages, s) for s in ("frame", "layout", "composite", "process_cpu")})
    result["cost"]["detection"] = detection_ms(clips(SETS["two"]))
    for name, names in SETS.items():
        paths = clips(names)
        on, _ = run(paths, 105, PipelineConfig())
        plain, _ = run(paths, 105, PipelineConfig(composite=CompositeConfig(harmonize=0.0)))
        former, _ = run(paths, 105, PipelineConfig(), harmonizer=FormerHarmonizer)
        off, _ = run(paths, 50, PipelineConfig(framing=FramingConfig(enabled=False)))
        result["sets"][name] = {"clips": list(names),
                                "seated": [names[k] for k, _ in sorted(zip(on[-1].canvas.keys, on[-1].canvas.tiles),
                                                                       key=lambda kt: kt[1].x)],
                                "faces_on": faces(on), "faces_off": faces(off),
                                "joins_none": joins(plain), "joins_former": joins(former), "joins_now": joins(on)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.pictures:
        pictures(args.pictures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
