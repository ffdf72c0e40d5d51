"""Seats: who sits next to whom.

The grower has to invent less where two neighbouring rooms are alike: the same wall
colour and brightness, the floor and the top of the wall at the same height. "auto"
seats the feeds in the order whose neighbouring backgrounds are most alike, judged on
what each tile shows near each of its sides (the mean colour in Lab, and where the
horizontal lines of the room are). It decides when the set of feeds changes (after
``settle_frames``, once a newcomer's room has been seen; until then a newcomer takes the
next free seat), reviews the order every ``review_frames``, and moves people only for a
clear gain (``hysteresis`` of the cost, and at least ``min_gain``), so nobody is
reshuffled from frame to frame, nor for noise between near-identical rooms.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import permutations
from typing import Hashable, Sequence

import cv2
import numpy as np

from .frames import Canvas, Rect

SIDES = ("left", "right", "top", "bottom")
PROFILE_BINS = 24
STRIP = 0.25  # each side is judged on this outer fraction of what the tile shows


@lru_cache(maxsize=None)
def _warm_lab() -> None:
    """OpenCV builds its Lab conversion tables on the first conversion in a process
    (0.1 s on a 2-core machine): done when a seating is set up, not at the first
    decision mid-call."""
    cv2.cvtColor(np.zeros((1, 1, 3), np.uint8), cv2.COLOR_RGB2Lab)


def side_features(background: np.ndarray, known: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Per side of one tile: (mean Lab colour, line profile). The profile is where the
    strong lines across the join run: for the left and right sides, how much horizontal
    edge each height band holds (the floor line, a shelf, the top of a wall), as a
    distribution over the tile's height; for the top and bottom, vertical edges over its
    width. Only pixels really seen count; None when too little of the room is seen."""
    small_bg = background[::2, ::2]
    small_known = known[::2, ::2]
    if small_known.sum() < 64:
        return None
    lab = cv2.cvtColor(small_bg.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    gray = cv2.cvtColor(small_bg, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # Edges only where both neighbours are known: the border of the unknown is no line.
    ok = cv2.erode(small_known.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    edge_h = np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)) * ok
    edge_v = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)) * ok
    ys, xs = np.nonzero(small_known)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    sx, sy = max(1, int(STRIP * (x1 - x0))), max(1, int(STRIP * (y1 - y0)))
    strips = {"left": (slice(y0, y1), slice(x0, x0 + sx)), "right": (slice(y0, y1), slice(x1 - sx, x1)),
              "top": (slice(y0, y0 + sy), slice(x0, x1)), "bottom": (slice(y1 - sy, y1), slice(x0, x1))}
    h, w = small_known.shape
    out = {}
    for side, (ry, rx) in strips.items():
        k = small_known[ry, rx]
        colour = lab[ry, rx][k].mean(axis=0) if k.sum() >= 8 else lab[small_known].mean(axis=0)
        if side in ("left", "right"):
            prof = np.zeros(h, np.float32)
            prof[ry] = edge_h[ry, rx].sum(axis=1)
        else:
            prof = np.zeros(w, np.float32)
            prof[rx] = edge_v[ry, rx].sum(axis=0)
        out[side] = (colour, _bins(prof))
    return out


def _bins(profile: np.ndarray) -> np.ndarray:
    edges = np.linspace(0, len(profile), PROFILE_BINS + 1).astype(int)
    b = np.add.reduceat(profile, edges[:-1]) if len(profile) else np.zeros(PROFILE_BINS)
    total = b.sum()
    return b / total if total > 0 else np.full(PROFILE_BINS, 1.0 / PROFILE_BINS)


def join_cost(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """How unlike two sides that would meet are: colour distance in Lab (20 is a clearly
    different wall) plus how far their lines sit apart (the 1-D earth mover's distance
    between the profiles, as a fraction of the tile: 0.1 is a floor line a tenth of the
    height off)."""
    colour = float(np.linalg.norm(a[0] - b[0])) / 20.0
    lines = float(np.abs(np.cumsum(a[1] - b[1])).sum()) / PROFILE_BINS / 0.1
    return colour + 0.5 * lines


def adjacency(tiles: Sequence[Rect]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Pairs of seats that meet: (left, right) side by side in a row, (top, bottom) in a
    column (grids)."""
    horiz, vert = [], []
    for i, a in enumerate(tiles):
        right = [j for j, b in enumerate(tiles) if b.x >= a.x + a.w and _overlap(a.y, a.h, b.y, b.h)]
        below = [j for j, b in enumerate(tiles) if b.y >= a.y + a.h and _overlap(a.x, a.w, b.x, b.w)]
        if right:
            horiz.append((i, min(right, key=lambda j: tiles[j].x)))
        if below:
            nearest = min(tiles[j].y for j in below)
            vert += [(i, j) for j in below if tiles[j].y == nearest]
    return horiz, vert


def _overlap(a0: int, al: int, b0: int, bl: int) -> bool:
    return min(a0 + al, b0 + bl) - max(a0, b0) > 0


@lru_cache(maxsize=8)
def _perms(n: int) -> np.ndarray:
    return np.array(list(permutations(range(n))), np.int64).reshape(-1, n)


def best_order(features: Sequence[dict], tiles: Sequence[Rect]) -> tuple[list[int], float, np.ndarray]:
    """Every assignment of feeds to seats, scored (at most 8! = 40320, in one numpy
    gather). Returns the best (seat -> feed index), its cost, and all costs by
    assignment (rows of ``_perms(n)``)."""
    n = len(features)
    horiz, vert = adjacency(tiles)
    H = np.array([[join_cost(features[a]["right"], features[b]["left"]) for b in range(n)] for a in range(n)])
    V = np.array([[join_cost(features[a]["bottom"], features[b]["top"]) for b in range(n)] for a in range(n)])
    perms = _perms(n)
    cost = np.zeros(len(perms))
    for s, t in horiz:
        cost += H[perms[:, s], perms[:, t]]
    for s, t in vert:
        cost += V[perms[:, s], perms[:, t]]
    i = int(np.argmin(cost))
    return perms[i].tolist(), float(cost[i]), cost


def cost_of(order: Sequence[int], costs: np.ndarray) -> float:
    n = len(order)
    idx = np.flatnonzero((_perms(n) == np.asarray(order)).all(axis=1))
    return float(costs[idx[0]])


class Seats:
    """Feed keys in, seat order out (a tuple of the same keys)."""

    def __init__(self, mode: str = "auto", settle_frames: int = 30, review_frames: int = 300,
                 hysteresis: float = 0.15, min_gain: float = 0.25):
        if mode not in ("auto", "given"):
            raise ValueError(f"order must be 'auto' or 'given', got {mode!r}")
        self.mode = mode
        if mode == "auto":
            _warm_lab()
        self.settle_frames = settle_frames
        self.review_frames = review_frames
        self.hysteresis = hysteresis
        self.min_gain = min_gain  # in join_cost units: 0.25 is a colour 5 Lab units closer
        self.order: tuple = ()
        self._until_decision = 0
        self.decisions = 0  # how many times the order was reviewed (for tests)

    def __call__(self, keys: Sequence[Hashable], last: Canvas | None,
                 plan_tiles=None) -> tuple:
        """``last``: the previous canvas (what each feed's tile showed); ``plan_tiles``:
        a function seat sizes -> tiles, for the adjacency of the seats."""
        keys = tuple(keys)
        if self.mode == "given":
            self.order = keys
            return keys
        if set(keys) != set(self.order):
            # Someone joined or left: keep everyone else's seat, newcomers at the end,
            # and look again once the newcomer's room has been seen.
            kept = tuple(k for k in self.order if k in keys)
            self.order = kept + tuple(k for k in keys if k not in kept)
            self._until_decision = self.settle_frames
            return self.order
        self._until_decision -= 1
        if self._until_decision > 0 or len(keys) < 2 or last is None or plan_tiles is None:
            if self._until_decision <= 0:
                self._until_decision = self.review_frames
            return self.order
        self._until_decision = self.review_frames
        self.decisions += 1
        by_key = dict(zip(last.keys, last.tiles)) if last.keys else {}
        feats = []
        for k in self.order:
            r = by_key.get(k)
            f = None
            if r is not None:
                ys = slice(max(r.y, 0), max(r.y + r.h, 0))
                xs = slice(max(r.x, 0), max(r.x + r.w, 0))
                f = side_features(last.background[ys, xs], last.known[ys, xs])
            if f is None:
                return self.order  # a room not seen yet: decide later
            feats.append(f)
        tiles = plan_tiles(self.order)
        best, best_cost, costs = best_order(feats, tiles)
        now = cost_of(list(range(len(self.order))), costs)
        if now - best_cost > max(self.hysteresis * now, self.min_gain):
            self.order = tuple(self.order[i] for i in best)
        return self.order

    def reset(self) -> None:
        self.order = ()
        self._until_decision = 0
