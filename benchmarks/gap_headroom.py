"""How much better than the row blend can any gap fill be? Bounds from oracles.

    .venv/bin/python benchmarks/gap_headroom.py

On the held-out gap-join cases of `roomfuse eval` (growth/data.py: EVAL_SPLIT, height 360,
gaps centred at 0.4/0.5/0.6 of the width), prints the mean gap PSNR of:

- the row blend, and the row blend of the known pixels after a known-only (normalised)
  Gaussian blur: the best cheap classical variants;
- oracles that are handed part of the truth, which no fill can beat in expectation:
  the truth itself blurred (a fill that knew the gap's content up to a scale), the
  truth's own mean of every row of the gap, and the best of 41 slants per band of 32
  rows for a blend along a slanted line (a fill that always guessed the right
  direction of every edge crossing the gap).

A fill needs information the inputs do not hold to approach the oracles; how far the
row blend sits below them bounds what a better model could gain on this data.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from roomfuse.datapath import data_root
from roomfuse.growth.classical import line_blend
from roomfuse.growth.data import GAP_CENTRES, eval_gap_images, gap_cases


def psnr(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    e = out.astype(np.float32)[hole] - truth.astype(np.float32)[hole]
    return float(10 * np.log10(255.0 ** 2 / max(np.mean(e ** 2), 1e-10)))


def known_blur(img: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    k = known.astype(np.float32)
    num = cv2.GaussianBlur(img.astype(np.float32) * k[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(k, (0, 0), sigma)
    return num / np.maximum(den, 1e-6)[..., None]


def slant_oracle(img: np.ndarray, x0: int, x1: int, band: int = 32) -> float:
    """Gap MSE of the best slanted blend per band of rows (slants chosen with the truth)."""
    t = img.astype(np.float32)
    h, w = x1 - x0, t.shape[0]
    left, right = t[:, x0 - 1], t[:, x1]
    a = ((np.arange(h) + 1) / (h + 1))[None, :, None]
    rows = np.arange(w)
    errs = []
    for d in range(-40, 41, 2):
        yl = np.clip(np.round(rows - d / 2).astype(int), 0, w - 1)
        yr = np.clip(np.round(rows + d / 2).astype(int), 0, w - 1)
        pred = left[yl][:, None] * (1 - a) + right[yr][:, None] * a
        errs.append(((pred - t[:, x0:x1]) ** 2).mean(axis=(1, 2)))
    e = np.stack(errs)  # slants x rows
    return float(np.mean([e[:, i:i + band].mean(1).min() for i in range(0, w, band)]))


def main() -> int:
    images = eval_gap_images(data_root())
    print(f"{len(images)} held-out images, {len(GAP_CENTRES)} gap positions each\n")
    print(f"{'method':<44} {'48 px':>7} {'96 px':>7} {'160 px':>7}")
    rows: dict[str, list[float]] = {}
    for width in (48, 96, 160):
        scores: dict[str, list[float]] = {}
        for img, known in gap_cases(images, [width]):
            hole = ~known
            cols = np.flatnonzero(hole[0])
            x0, x1 = int(cols[0]), int(cols[-1]) + 1
            add = lambda k, v: scores.setdefault(k, []).append(v)  # noqa: E731
            add("row blend", psnr(line_blend(img, known), img, hole))
            for s in (1, 2):
                add(f"row blend of known-only blur, sigma {s}",
                    psnr(line_blend(np.clip(known_blur(img, known, s), 0, 255), known), img, hole))
            for s in (4, 8, 16):
                add(f"oracle: truth blurred, sigma {s}",
                    psnr(cv2.GaussianBlur(img.astype(np.float32), (0, 0), s), img, hole))
            m = img.astype(np.float32).copy()
            m[:, x0:x1] = m[:, x0:x1].mean(axis=1, keepdims=True)
            add("oracle: true mean of each gap row", psnr(m, img, hole))
            add("oracle: best slant per 32-row band",
                float(10 * np.log10(255.0 ** 2 / slant_oracle(img, x0, x1))))
        for k, v in scores.items():
            rows.setdefault(k, []).append(float(np.mean(v)))
    for k, v in rows.items():
        print(f"{k:<44} " + " ".join(f"{x:7.2f}" for x in v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
