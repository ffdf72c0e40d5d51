"""How real a fill looks, measured without any trained network.

PSNR rewards the average of every plausible fill, a blur (Blau & Michaeli, CVPR 2018), so
a fill is also judged by three weight-free measures:

- ``PatchSWD``: the sliced Wasserstein distance between Laplacian-pyramid patches of the
  fills and of the truth, inside the holes (the recipe of Karras et al. 2018, section 5:
  4 pyramid levels, 7x7x3 patches, 4 x 128 random unit projections, sorted projections
  compared, reported x 1e3). Both patch sets are normalised by the *truth's* per-channel
  mean and std, so a fill that lost contrast is far from the truth, not just rescaled.
  Patches are pooled over all cases before comparing: the distance is between two
  distributions, not an average of per-image scores.
- detail ratio: mean |Laplacian| of the fill over that of the truth, inside the holes
  (1 = as much fine detail as the real thing; a blur is near 0).
- seam ratio: the mean step across the fill/known border over the step one pixel inside
  the known area (1 = the border is as invisible as any other pixel pair).

Everything here is numpy and OpenCV on uint8 RGB images and bool masks (True = hole).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

LEVELS = 4          # Laplacian pyramid levels: 3 band-pass and the low-pass residual
PATCH = 7           # patch side, per level
PER_IMAGE = 192     # patches drawn per image per level
REPEATS = 4         # independent sets of projections
DIRECTIONS = 128    # projections per set


def laplacian_pyramid(image: np.ndarray, levels: int = LEVELS) -> list[np.ndarray]:
    """Float32 band-pass levels, finest first, the last one the low-pass residual."""
    g = [image.astype(np.float32)]
    for _ in range(levels - 1):
        g.append(cv2.pyrDown(g[-1]))
    out = []
    for fine, coarse in zip(g, g[1:]):
        up = cv2.pyrUp(coarse, dstsize=(fine.shape[1], fine.shape[0]))
        out.append(fine - up)
    out.append(g[-1])
    return out


def hole_pyramid(hole: np.ndarray, levels: int = LEVELS) -> list[np.ndarray]:
    """The hole at each pyramid level: a cell counts when any of its pixels was missing."""
    out = [hole]
    for _ in range(levels - 1):
        m = out[-1].astype(np.float32)
        h, w = m.shape
        out.append(cv2.resize(m, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA) > 0)
    return out


def _centres(hole: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """Up to ``count`` random patch centres inside the hole, away from the image edge."""
    r = PATCH // 2
    inner = np.zeros_like(hole)
    inner[r:hole.shape[0] - r, r:hole.shape[1] - r] = hole[r:hole.shape[0] - r, r:hole.shape[1] - r]
    ys, xs = np.nonzero(inner)
    if len(ys) == 0:
        return None
    pick = rng.choice(len(ys), size=count, replace=len(ys) < count)
    return np.stack([ys[pick], xs[pick]], 1)


def _patches(level: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, PATCH * PATCH * 3) patches around ``centres``."""
    r = PATCH // 2
    d = np.arange(-r, r + 1)
    ys = centres[:, 0, None, None] + d[None, :, None]
    xs = centres[:, 1, None, None] + d[None, None, :]
    return level[ys, xs].reshape(len(centres), -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                       repeats: int = REPEATS, directions: int = DIRECTIONS) -> float:
    """Mean over random unit projections of the 1-D Wasserstein distance between the
    projected sets (equal sizes: sorted values compared pairwise)."""
    if len(a) != len(b):
        n = min(len(a), len(b))
        a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    total = 0.0
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], directions)).astype(np.float32)
        dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
        pa = np.sort(a @ dirs, axis=0)
        pb = np.sort(b @ dirs, axis=0)
        total += float(np.abs(pa - pb).mean())
    return total / repeats


@dataclass
class PatchSWD:
    """Collects patches case by case, then ``result()`` compares the pooled sets.

    ``add(truth, {name: fill}, hole)`` samples the same patch centres in the truth and
    in every fill (so the sets differ only by what was filled) plus an independent set
    of truth centres, which gives the floor: truth against itself. With ``reference``
    the truth's patches come from there instead (a join of two rooms has no truth).
    """

    seed: int = 0
    per_image: int = PER_IMAGE
    _truth: list = field(default_factory=lambda: [[] for _ in range(LEVELS)])
    _floor: list = field(default_factory=lambda: [[] for _ in range(LEVELS)])
    _fills: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def add(self, truth: np.ndarray, fills: dict[str, np.ndarray], hole: np.ndarray,
            reference: np.ndarray | None = None) -> None:
        """Patches of every fill inside ``hole``, against patches of ``truth`` at the same
        places; or, when there is no truth there (two different rooms joined), against
        patches of ``truth`` inside ``reference`` (the real rooms next to the hole)."""
        holes = hole_pyramid(hole)
        refs = holes if reference is None else hole_pyramid(reference)
        truth_pyr = laplacian_pyramid(truth)
        fill_pyrs = {name: laplacian_pyramid(f) for name, f in fills.items()}
        for lvl in range(LEVELS):
            centres = _centres(holes[lvl], self.per_image, self.rng)
            ref_centres = centres if reference is None else _centres(refs[lvl], self.per_image, self.rng)
            if centres is None or ref_centres is None:
                continue
            other = _centres(refs[lvl], self.per_image, self.rng)
            self._truth[lvl].append(_patches(truth_pyr[lvl], ref_centres))
            self._floor[lvl].append(_patches(truth_pyr[lvl], other))
            for name, pyr in fill_pyrs.items():
                self._fills.setdefault(name, [[] for _ in range(LEVELS)])[lvl].append(
                    _patches(pyr[lvl], centres))

    def result(self) -> dict[str, dict]:
        """{name: {"levels": [SWD x 1e3 per level, finest first], "mean": ...}}, with the
        truth-against-itself floor as "truth"."""
        rng = np.random.default_rng(self.seed + 1)
        out = {}
        sets = {"truth": self._floor, **self._fills}
        for name, per_level in sets.items():
            levels = []
            for lvl in range(LEVELS):
                if not self._truth[lvl]:
                    continue
                t = np.concatenate(self._truth[lvl]).reshape(-1, PATCH * PATCH, 3)
                mean = t.mean(axis=(0, 1))
                std = t.std(axis=(0, 1)) + 1e-6
                norm = lambda p: ((p.reshape(-1, PATCH * PATCH, 3) - mean) / std).reshape(len(p), -1)
                f = np.concatenate(per_level[lvl])
                levels.append(1e3 * sliced_wasserstein(norm(t.reshape(len(t), -1)), norm(f), rng))
            out[name] = {"levels": levels, "mean": float(np.mean(levels)) if levels else float("nan")}
        return out


def laplacian_energy(image: np.ndarray, hole: np.ndarray) -> tuple[float, int]:
    """(sum of |Laplacian| of the grey image over hole pixels, their count)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1))
    return float(lap[hole].sum()), int(hole.sum())


def border_steps(image: np.ndarray, hole: np.ndarray) -> tuple[float, float, int]:
    """Steps at the hole's border, horizontally and vertically: (sum of |fill - known|
    across the border, sum of |known - next known| one pixel further out, pair count).
    Only border pairs whose outer neighbour is known too are counted."""
    img = image.astype(np.float32)
    across = inside = 0.0
    count = 0
    for axis in (0, 1):
        for flip in (False, True):
            a = np.flip(img, axis) if flip else img
            m = np.flip(hole, axis) if flip else hole
            n = m.shape[axis]
            sl = lambda s, e: (slice(s, e), slice(None)) if axis == 0 else (slice(None), slice(s, e))
            # pixel i is hole, i+1 and i+2 known
            pick = m[sl(0, n - 2)] & ~m[sl(1, n - 1)] & ~m[sl(2, n)]
            if not pick.any():
                continue
            d_across = np.abs(a[sl(0, n - 2)] - a[sl(1, n - 1)]).mean(axis=2)
            d_inside = np.abs(a[sl(1, n - 1)] - a[sl(2, n)]).mean(axis=2)
            across += float(d_across[pick].sum())
            inside += float(d_inside[pick].sum())
            count += int(pick.sum())
    return across, inside, count


@dataclass
class FillStats:
    """Detail and seam ratios pooled over cases (sums, then one ratio)."""

    fill_lap: float = 0.0
    truth_lap: float = 0.0
    across: float = 0.0
    inside: float = 0.0

    def add(self, fill: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> None:
        self.fill_lap += laplacian_energy(fill, hole)[0]
        self.truth_lap += laplacian_energy(truth, hole)[0]
        a, i, _ = border_steps(fill, hole)
        self.across += a
        self.inside += i

    @property
    def detail(self) -> float:
        return self.fill_lap / max(self.truth_lap, 1e-9)

    @property
    def seam(self) -> float:
        return self.across / max(self.inside, 1e-9)
