"""Texture for a grown fill: real patches of the room, chosen to follow the structure.

The growth model carries structure across a hole (edges, lines, shading) but, working at
1/4 resolution, no texture: alone it is a smooth band. This stage puts the room's own
pixels there: a guided patch synthesis in the manner of Wexler, Shechtman & Irani (2007)
with PatchMatch search (Barnes et al. 2009), written for this project:

- coarse to fine over a pyramid; at each level, rounds of expectation-maximisation: find
  for every patch touching the hole the most similar fully known patch (PatchMatch:
  propagation from neighbours, random search around the current match), then set each
  hole pixel to the vote of the source pixels the overlapping patches put there;
- the similarity includes a *guide* beside the colours: the structure fill, blurred. A
  source patch is chosen because it looks like its surroundings *and* carries the
  shading and edges the structure predicts there, which keeps the fill's layout (and its
  fidelity) close to the structure while its texture is real;
- a match taken from a neighbour competes with its distance discounted (``coherence``),
  so whole pieces of the room are copied together rather than a blur of unrelated
  patches; votes are weighted sharply by similarity, and the finest level takes the
  single best vote, so the fill keeps the sources' own fine detail;
- patches are compared through a PCA projection (``DIMS`` numbers per patch: the patches
  gathered where they are needed, times the basis), which makes a candidate test a short
  vector difference; the finest level does not search: it votes with the field found at
  half resolution, copying full-resolution pixels. Each pixel's vote is gathered from the
  patches around it. Fast enough in numpy for a background refresh on two cores;
- ``rooms`` makes each room fill from its own pixels (two rooms meet along a line, not in
  a double exposure); ``targets`` limits the work to the pixels that will be shown.

Deterministic for a given seed. numpy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PATCH = 7
R = PATCH // 2
DIMS = 24
PROPAGATION = (4, 2, 1)   # jump-flood distances for taking a neighbour's match
CHUNK = 8192              # patches described at a time


@dataclass(frozen=True)
class TextureConfig:
    """Defaults chosen on the held-out gap cases (models/README.md lists the variants)."""

    levels: int = 4            # pyramid levels, each half the size of the one above
    dims: int = DIMS           # PCA components per patch descriptor
    em_iters: int = 2          # search-and-vote rounds per level
    coarse_iters: int = 4      # rounds on the coarsest level, where the layout is decided
    pm_iters: int = 2          # PatchMatch passes per search
    guide_weight: float = 2.0  # weight of the structure guide against the colours
    guide_sigma: float = 2.0   # blur of the guide, in pixels of each level
    coherence: float = 0.4     # cost factor of a neighbour's shifted match
    row_prior: float = 2.0     # cost factor per tenth of the height between source and target rows
    sharpness: float = 8.0     # vote weight exp(-sharpness * distance / median distance)
    search_radius: int = 16    # random search reach below the coarsest level, in pixels
    # Border matching, coarse then fine: the reach of each pass in pixels (() = off).
    border_sigmas: tuple[float, ...] = (8.0, 2.0, 0.7)
    # The result's shading moves this far toward the structure's, below this blur (px).
    structure_weight: float = 0.5
    structure_sigma: float = 5.0
    seed: int = 0


def _pad(a: np.ndarray) -> np.ndarray:
    return cv2.copyMakeBorder(a, R, R, R, R, cv2.BORDER_REFLECT_101)


def _half(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half size, averaging known pixels only; a cell is known when all of it was."""
    h, w = known.shape
    size = ((w + 1) // 2, (h + 1) // 2)
    k = known.astype(np.float32)
    num = cv2.resize(image * k[..., None], size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(k, size, interpolation=cv2.INTER_AREA)
    return num / np.maximum(den, 1e-6)[..., None], den > 0.999


def _patch_offsets(pw: int) -> np.ndarray:
    """Flat index offsets of a patch's pixels from its centre, row by row, in a level
    ``pw`` pixels wide."""
    d = np.arange(-R, R + 1)
    return (d[:, None] * pw + d[None, :]).reshape(-1)


def _nearest_labels(known: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For every pixel, the label of its nearest known pixel."""
    free = (~known).astype(np.uint8)
    _, nearest = cv2.distanceTransformWithLabels(free, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    zero = np.flatnonzero(free.reshape(-1) == 0)      # label k is the k-th known pixel
    return labels.reshape(-1)[zero[np.maximum(nearest.reshape(-1) - 1, 0)]]


class _Level:
    """One pyramid level, in coordinates padded by the patch radius: the masks, the
    allowed sources of every target, and (when it searches) the patch descriptors."""

    def __init__(self, image, known, fill, sources, rooms, rng, describe=None, dims=DIMS):
        self.h, self.w = known.shape
        self.ph, self.pw = self.h + 2 * R, self.w + 2 * R
        self._offsets = _patch_offsets(self.pw)
        self.rng = rng
        self.image = _pad(image.astype(np.float32))
        self.known = _pad(known.astype(np.uint8)) > 0
        inside = np.zeros((self.ph, self.pw), bool)
        inside[R:-R, R:-R] = True
        src = (_pad(sources.astype(np.uint8)) > 0) & self.known & inside
        # A source patch must be known in every pixel, and lie inside the image.
        self.valid = cv2.erode(src.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8),
                               borderType=cv2.BORDER_CONSTANT, borderValue=0).reshape(-1) > 0
        self.valid_idx = np.flatnonzero(self.valid)
        hole = (_pad(fill.astype(np.uint8)) > 0) & ~self.known & inside
        self.hole_idx = np.flatnonzero(hole)
        # Targets: every patch centre inside the image whose patch touches the hole.
        near = cv2.dilate(hole.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8)) > 0
        self.targets = np.flatnonzero(near & inside)
        # Each pixel's target number (-1: not a target), for gathering votes.
        self._slot = np.full(self.ph * self.pw, -1, np.int64)
        self._slot[self.targets] = np.arange(len(self.targets))
        self._rooms(rooms)
        self.src_desc = None
        if describe is not None and len(self.valid_idx):
            self._basis(*describe, dims)

    def _rooms(self, rooms: np.ndarray | None) -> None:
        """Each target may copy from the room of its nearest known pixel only."""
        if rooms is None:
            self.src_room = self.t_room = None
            self.by_room = {0: self.valid_idx}
            return
        lab = cv2.copyMakeBorder(rooms.astype(np.int32), R, R, R, R, cv2.BORDER_REPLICATE).reshape(-1)
        self.src_room = lab
        # An unknown pixel with a room of its own (its seat's territory) keeps it; one
        # without takes the room of its nearest known pixel.
        own = lab[self.targets]
        self.t_room = np.where(own >= 0, own, _nearest_labels(self.known, lab)[self.targets])
        self.by_room = {}
        for room in np.unique(self.t_room):
            idx = self.valid_idx[lab[self.valid_idx] == room]
            self.by_room[int(room)] = idx if len(idx) else self.valid_idx

    # ---- descriptors ---------------------------------------------------------------------

    def _basis(self, guide: np.ndarray, weight: float, dims: int) -> None:
        """PCA of the source patches (colour and guide), and the descriptor of every
        source."""
        self.guide = _pad(guide.astype(np.float32)) * weight
        feats = self._stack(self.image)
        pick = self.valid_idx if len(self.valid_idx) <= 4000 else \
            self.rng.choice(self.valid_idx, 4000, replace=False)
        ys, xs = np.divmod(pick, self.pw)
        d = np.arange(-R, R + 1)
        patches = feats[ys[:, None, None] + d[None, :, None], xs[:, None, None] + d[None, None, :]]
        patches = patches.reshape(len(pick), -1)
        mean = patches.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov((patches - mean).T))
        k = min(dims, vecs.shape[1])
        basis = vecs[:, ::-1][:, :k].astype(np.float32)
        self.offset = (mean @ basis).astype(np.float32)
        self._basis_matrix = basis
        # Descriptors as the patches gathered where they are needed times the basis (a
        # few large matrix products: faster than filtering the whole level, and the
        # targets are a small part of it).
        self.src_desc = np.zeros((self.ph * self.pw, k), np.float32)
        self.src_desc[self.valid_idx] = self._project(feats, basis, self.valid_idx) - self.offset
        # A target's in two parts: the guide's, which stays the same, once; the
        # colours', every round.
        colours = self.image.shape[2]
        rows = basis.reshape(PATCH * PATCH, -1, k)
        self._colour_basis = np.ascontiguousarray(rows[:, :colours].reshape(-1, k))
        self._guide_part = self._project(self.guide, rows[:, colours:].reshape(-1, k), self.targets) - self.offset

    def _stack(self, colours: np.ndarray) -> np.ndarray:
        return np.concatenate([colours, self.guide], axis=2)

    def _project(self, values: np.ndarray, basis: np.ndarray, at: np.ndarray) -> np.ndarray:
        """(len(at), k): the patch of ``values`` (padded level, HxWxC) centred at each
        index of ``at`` times ``basis`` (rows in the patch's order: row, column,
        channel), in chunks that keep the gathered patches small."""
        flat = values.reshape(self.ph * self.pw, -1)
        out = np.empty((len(at), basis.shape[1]), np.float32)
        for a in range(0, len(at), CHUNK):
            idx = at[a:a + CHUNK]
            patches = flat[idx[:, None] + self._offsets[None, :]]
            out[a:a + len(idx)] = patches.reshape(len(idx), -1) @ basis
        return out

    def target_desc(self, estimate: np.ndarray) -> np.ndarray:
        """Every target's descriptor for the colours ``estimate`` (padded level)."""
        return self._project(estimate, self._colour_basis, self.targets) + self._guide_part

    # ---- search --------------------------------------------------------------------------

    def random_sources(self) -> np.ndarray:
        """A random allowed source for every target."""
        if self.t_room is None:
            return self.valid_idx[self.rng.integers(0, len(self.valid_idx), len(self.targets))]
        out = np.empty(len(self.targets), np.int64)
        for room, idx in self.by_room.items():
            sel = np.flatnonzero(self.t_room == room)
            out[sel] = idx[self.rng.integers(0, len(idx), len(sel))]
        return out

    def allowed(self, cand: np.ndarray) -> np.ndarray:
        """Bool per target: ``cand`` (a source index per target, -1 for none) may be used."""
        ok = cand >= 0
        ok[ok] &= self.valid[cand[ok]]
        if self.t_room is not None:
            ok[ok] &= self.src_room[cand[ok]] == self.t_room[ok]
        return ok

    def _row_reach(self) -> np.ndarray:
        """Per target, how many rows away the nearest allowed source is (0 inside the
        rows its room has sources on)."""
        if getattr(self, "_reach", None) is None:
            ty = self.targets // self.pw
            self._reach = np.zeros(len(ty), np.int64)
            for room, idx in self.by_room.items():
                rows = idx // self.pw
                lo, hi = (rows.min(), rows.max()) if len(rows) else (0, self.ph)
                sel = slice(None) if self.t_room is None else self.t_room == room
                self._reach[sel] = np.maximum(np.maximum(lo - ty[sel], ty[sel] - hi), 0)
        return self._reach

    def _neighbours(self) -> list[tuple[int, int, np.ndarray]]:
        """Per propagation offset, the row (in ``targets``) of each target's neighbour
        there, or -1; computed once per level."""
        if getattr(self, "_nb", None) is None:
            pos = np.full(self.ph * self.pw, -1, np.int64)
            pos[self.targets] = np.arange(len(self.targets))
            ty, tx = np.divmod(self.targets, self.pw)
            self._nb = []
            for step in PROPAGATION:
                for dy, dx in ((0, step), (0, -step), (step, 0), (-step, 0)):
                    ny, nx = ty + dy, tx + dx
                    inb = (ny >= 0) & (ny < self.ph) & (nx >= 0) & (nx < self.pw)
                    j = np.full(len(ty), -1, np.int64)
                    j[inb] = pos[ny[inb] * self.pw + nx[inb]]
                    self._nb.append((dy, dx, j))
        return self._nb

    def _shift(self, src: np.ndarray, dy: np.ndarray | int, dx: np.ndarray | int) -> np.ndarray:
        """Source indices moved by (dy, dx); -1 where that leaves the padded level."""
        sy, sx = np.divmod(src, self.pw)
        sy, sx = sy + dy, sx + dx
        inside = (sy >= 0) & (sy < self.ph) & (sx >= 0) & (sx < self.pw)
        return np.where(inside, sy * self.pw + sx, -1)

    def search(self, nnf: np.ndarray, tdesc: np.ndarray, radius: int, cfg: TextureConfig
               ) -> tuple[np.ndarray, np.ndarray]:
        """PatchMatch over the targets; returns (field, squared descriptor distances).

        The cost of a match is its descriptor distance times a prior that prefers
        sources at the target's own height (``row_prior`` per tenth of the level's
        height): across a gap between two feeds, what continues a row of one feed is
        most likely on that row of the room."""
        src = self.src_desc
        ty = self.targets // self.pw
        unit = max(1.0, 0.1 * self.ph)
        reach = self._row_reach()

        def cost(rows, cand):
            d = ((tdesc[rows] - src[cand]) ** 2).sum(1)
            if cfg.row_prior > 0:
                # Rows farther than the nearest row the room has at all: a target above
                # or below every source (a shrunk picture's margin) is not pulled to
                # the picture's edge rows, which would only repeat them.
                far = np.maximum(np.abs(cand // self.pw - ty[rows]) - reach[rows], 0)
                d *= 1.0 + cfg.row_prior * far / unit
            return d

        rows_all = np.arange(len(nnf))
        score = cost(rows_all, nnf)

        def consider(cand, factor=1.0):
            sel = np.flatnonzero(self.allowed(cand))
            if len(sel) == 0:
                return
            d = cost(sel, cand[sel])
            if factor != 1.0:
                d *= factor
            better = d < score[sel]
            nnf[sel[better]] = cand[sel[better]]
            score[sel[better]] = d[better]

        n = len(nnf)
        for _ in range(cfg.pm_iters):
            for dy, dx, j in self._neighbours():
                cand = np.full(n, -1, np.int64)
                has = np.flatnonzero(j >= 0)
                cand[has] = self._shift(nnf[j[has]], -dy, -dx)
                consider(cand, cfg.coherence)
            r = radius
            while r >= 1:
                consider(self._shift(nnf, self.rng.integers(-r, r + 1, n), self.rng.integers(-r, r + 1, n)))
                r //= 2
            consider(self.random_sources())
        return nnf, ((tdesc - src[nnf]) ** 2).sum(1)

    # ---- voting ----------------------------------------------------------------------------

    def vote(self, nnf: np.ndarray, weight: np.ndarray, estimate: np.ndarray,
             best: bool = False) -> np.ndarray:
        """Each hole pixel: the weighted mean of what the patches covering it propose, or
        (``best``) what the most similar of them proposes: no averaging, so no blur."""
        h = self.hole_idx
        acc, wsum = self._proposals(nnf, weight, best, h)
        out = estimate.reshape(-1, 3).copy()
        out[h] = acc if best else acc / np.maximum(wsum, 1e-9)[:, None]
        return out.reshape(self.ph, self.pw, 3)

    def match_border(self, nnf: np.ndarray, weight: np.ndarray, estimate: np.ndarray,
                     sigmas: tuple[float, ...]) -> np.ndarray:
        """Remove the step at the hole's border: the patches also propose colours for the
        known pixels around the hole; where those differ from the real ones, the
        difference is spread smoothly into the hole (a cheap stand-in for Poisson
        blending), coarse to fine: each pass spreads what the previous ones left, so the
        fill meets each feed at its brightness and colour, then pixel by pixel."""
        # The ring: known pixels that a target's patch covers.
        covered = cv2.dilate(self._target_mask().view(np.uint8), np.ones((PATCH, PATCH), np.uint8))
        ring_idx = np.flatnonzero(covered.reshape(-1).view(bool) & self.known.reshape(-1))
        if len(ring_idx) == 0 or not sigmas:
            return estimate
        acc, wsum = self._proposals(nnf, weight, False, ring_idx)
        left = np.zeros((self.ph * self.pw, 3), np.float32)
        left[ring_idx] = self.image.reshape(-1, 3)[ring_idx] - acc / wsum[:, None]
        ring = np.zeros(self.ph * self.pw, bool)
        ring[ring_idx] = True
        m = ring.astype(np.float32).reshape(self.ph, self.pw)
        total = np.zeros((self.ph, self.pw, 3), np.float32)
        for sigma in sigmas:
            num = cv2.GaussianBlur(left.reshape(self.ph, self.pw, 3), (0, 0), sigma)
            den = cv2.GaussianBlur(m, (0, 0), sigma)
            # Full strength next to the ring, fading where it is far away.
            corr = num / np.maximum(den, 1e-3)[..., None] * np.minimum(1.0, den / 0.05)[..., None]
            total += corr
            left[ring_idx] -= corr.reshape(-1, 3)[ring_idx]
        out = estimate.reshape(-1, 3).copy()
        h = self.hole_idx
        out[h] += total.reshape(-1, 3)[h]
        return np.clip(out, 0, 255).reshape(self.ph, self.pw, 3)

    def _target_mask(self) -> np.ndarray:
        mask = np.zeros(self.ph * self.pw, bool)
        mask[self.targets] = True
        return mask.reshape(self.ph, self.pw)

    def _proposals(self, nnf: np.ndarray, weight: np.ndarray, best: bool, at: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """For each pixel index of ``at`` (each covered by at least one target's patch):
        the weighted sum of what the patches covering it propose and the sum of their
        weights, or (``best``) the proposal of the most similar of them (the first in
        patch order among equals) and its weight. Worked out per pixel from the up to
        PATCH x PATCH targets around it, in chunks."""
        flat_src = self.image.reshape(-1, 3)
        offsets = self._offsets
        last = self.ph * self.pw - 1
        acc = np.empty((len(at), 3), np.float32)
        wsum = np.empty(len(at), np.float32)
        for a in range(0, len(at), CHUNK):
            idx = at[a:a + CHUNK]
            # The patch centred at target t covers pixel p when t = p - offset. Targets
            # lie inside the image: where that leaves the padded level (a pixel of the
            # padding), the nearest corner, padding too, stands for it.
            slot = self._slot[np.clip(idx[:, None] - offsets[None, :], 0, last)]
            has = slot >= 0
            k = np.where(has, slot, 0)
            w = np.where(has, weight[k], -1.0 if best else 0.0).astype(np.float32)
            src = nnf[k] + offsets[None, :]
            if best:
                j = np.argmax(w, axis=1)
                rows = np.arange(len(idx))
                acc[a:a + len(idx)] = flat_src[src[rows, j]]
                wsum[a:a + len(idx)] = w[rows, j]
            else:
                prop = flat_src[np.where(has, src, 0)]
                acc[a:a + len(idx)] = np.einsum("pj,pjc->pc", w, prop)
                wsum[a:a + len(idx)] = w.sum(axis=1)
        return acc, wsum

    def unpad(self, a: np.ndarray) -> np.ndarray:
        return a[R:R + self.h, R:R + self.w]


def _weights(dist: np.ndarray, sharpness: float) -> np.ndarray:
    scale = max(float(np.median(dist)), 1e-6) / sharpness
    return np.maximum(np.exp(-dist / scale), 1e-4).astype(np.float32)


def _upsample_field(coarse: _Level, cnnf: np.ndarray, cweight: np.ndarray, fine: _Level
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each target of the finer level takes its parent's match, doubled, plus its own
    place inside the parent, and the parent's vote weight; a match that is not allowed
    there falls back to a random source."""
    full = np.full(coarse.ph * coarse.pw, -1, np.int64)
    full[coarse.targets] = np.arange(len(coarse.targets))
    ty, tx = np.divmod(fine.targets, fine.pw)
    uy, ux = ty - R, tx - R                         # unpadded, fine
    py = np.clip(uy // 2 + R, 0, coarse.ph - 1)     # padded, coarse
    px = np.clip(ux // 2 + R, 0, coarse.pw - 1)
    parent = full[py * coarse.pw + px]
    has = np.flatnonzero(parent >= 0)
    nnf = fine.random_sources()
    weight = np.full(len(ty), 1e-4, np.float32)
    sy, sx = np.divmod(cnnf[parent[has]], coarse.pw)
    sy = (sy - R) * 2 + uy[has] % 2 + R
    sx = (sx - R) * 2 + ux[has] % 2 + R
    inside = (sy >= 0) & (sy < fine.ph) & (sx >= 0) & (sx < fine.pw)
    cand = np.full(len(ty), -1, np.int64)
    cand[has[inside]] = sy[inside] * fine.pw + sx[inside]
    ok = fine.allowed(cand)
    nnf[ok] = cand[ok]
    weight[has] = cweight[parent[has]]
    return nnf, weight


class Cancelled(Exception):
    """A synthesis stopped because its caller no longer wants it."""


def synthesize(image: np.ndarray, known: np.ndarray, structure: np.ndarray,
               sources: np.ndarray | None = None, rooms: np.ndarray | None = None,
               targets: np.ndarray | None = None, cfg: TextureConfig = TextureConfig(),
               cancel=None) -> np.ndarray:
    """Fill the unknown pixels of ``image`` with patches of its known pixels that follow
    ``structure`` (a smooth fill of the same size, e.g. the growth model's). Returns
    float32 HxWx3 (0..255), equal to ``image`` where known.

    ``sources`` (bool, default ``known``): pixels whose patches may be copied.
    ``rooms`` (int, optional): a room number per known pixel; each unknown pixel fills
    from its own room where it has one (>= 0), else from the room of its nearest known
    pixel.
    ``targets`` (bool, default every unknown pixel): the unknown pixels to synthesise;
    the others keep ``structure``. ``cancel`` (a ``threading.Event``, optional): when it
    is set the synthesis stops at its next round and raises ``Cancelled``."""
    rng = np.random.default_rng(cfg.seed)
    img = image.astype(np.float32)
    smooth = structure.astype(np.float32)
    fill = ~known if targets is None else targets & ~known
    if not fill.any():
        return np.where(known[..., None], img, smooth)
    src = known if sources is None else sources & known
    pyr = [(img, known, smooth, src, rooms, fill)]
    for _ in range(cfg.levels - 1):
        i, k, s, so, ro, fi = pyr[-1]
        if min(k.shape) < 4 * PATCH:
            break
        i2, k2 = _half(i, k)
        size = (k2.shape[1], k2.shape[0])
        s2 = cv2.resize(s, size, interpolation=cv2.INTER_AREA)
        so2 = cv2.resize(so.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.999
        fi2 = cv2.resize(fi.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        ro2 = None if ro is None else cv2.resize(ro.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
        pyr.append((i2, k2, s2, so2 & k2, ro2, fi2))

    prev = estimate = None
    for depth in range(len(pyr) - 1, -1, -1):
        i, k, s, so, ro, fi = pyr[depth]
        start = np.where(k[..., None], i, s)
        searches = depth > 0 or len(pyr) == 1
        describe = (cv2.GaussianBlur(start, (0, 0), cfg.guide_sigma), cfg.guide_weight) if searches else None
        lvl = _Level(i, k, fi, so, ro, rng, describe, cfg.dims)
        if len(lvl.valid_idx) == 0 or len(lvl.hole_idx) == 0:
            return np.where(known[..., None], img, smooth)
        if prev is None:
            est = _pad(start)
            nnf = lvl.random_sources()
            weight = np.ones(len(nnf), np.float32)
        else:
            # Start from the coarser level's matches, voted with this level's own
            # pixels: an upsampled estimate would be blurred and attract blurred matches.
            up = cv2.resize(estimate, (lvl.w, lvl.h), interpolation=cv2.INTER_LINEAR)
            est = _pad(np.where(k[..., None], i, np.where(fi[..., None], up, s)))
            nnf, weight = _upsample_field(prev[0], prev[1], prev[2], lvl)
            est = lvl.vote(nnf, weight, est, best=not searches)
        if searches:
            coarsest = depth == len(pyr) - 1
            rounds = cfg.coarse_iters if coarsest else cfg.em_iters
            radius = max(lvl.ph, lvl.pw) if coarsest else cfg.search_radius
            for it in range(rounds):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("texture synthesis cancelled")
                nnf, dist = lvl.search(nnf, lvl.target_desc(est), radius, cfg)
                weight = _weights(dist, cfg.sharpness)
                est = lvl.vote(nnf, weight, est, best=depth == 0 and it == rounds - 1)
        if depth == 0:
            est = lvl.match_border(nnf, weight, est, cfg.border_sigmas)
        estimate = lvl.unpad(est)
        prev = (lvl, nnf, weight)
    if cfg.structure_weight > 0:
        # Part of the way toward the structure's shading: where the patches put a
        # brighter or darker piece of the room than the structure predicts, the error
        # is halved, while every detail finer than structure_sigma stays the room's own.
        shift = cv2.GaussianBlur(smooth, (0, 0), cfg.structure_sigma) - \
            cv2.GaussianBlur(np.where(known[..., None], img, estimate), (0, 0), cfg.structure_sigma)
        estimate = np.clip(estimate + cfg.structure_weight * shift, 0, 255)
    return np.where(known[..., None], img, estimate)
