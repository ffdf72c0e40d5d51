"""The texture stage and the still fill built on it (structure, then texture)."""
from __future__ import annotations

import cv2
import numpy as np

from roomfuse.growth import make_grower
from roomfuse.growth.joiner import Joiner, known_rooms
from roomfuse.growth.classical import BlendGrower
from roomfuse.growth.realism import FillStats, PatchSWD
from roomfuse.growth.texture import PATCH, R, TextureConfig, _Level, synthesize


def _wood(seed: int, size=(240, 180)) -> np.ndarray:
    """Grain running across the picture: texture a blur cannot keep."""
    w, h = size
    rng = np.random.default_rng(seed)
    rows = cv2.GaussianBlur(rng.normal(0, 1, (h, 1)).astype(np.float32), (0, 0), 1.2)
    grain = np.repeat(rows, w, axis=1) * 30 + rng.normal(0, 6, (h, w)).astype(np.float32)
    base = np.array([150, 110, 70], np.float32)
    return np.clip(base + grain[..., None], 0, 255).astype(np.uint8)


def _gap_case(img, x0=100, w=40):
    known = np.ones(img.shape[:2], bool)
    known[:, x0:x0 + w] = False
    return known


def test_known_pixels_are_kept_and_the_fill_is_deterministic():
    img = _wood(0)
    known = _gap_case(img)
    smooth = BlendGrower().fill(img, known)
    a = synthesize(img, known, smooth)
    b = synthesize(img, known, smooth)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a[known], img[known].astype(np.float32))
    assert np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 255


def test_texture_keeps_the_grain_a_blend_loses():
    stats = {"blend": FillStats(), "texture": FillStats()}
    swd = PatchSWD()
    for seed in range(3):
        img = _wood(seed)
        known = _gap_case(img)
        smooth = BlendGrower().fill(img, known)
        tex = np.clip(synthesize(img, known, cv2.GaussianBlur(smooth, (0, 0), 3)) + 0.5, 0, 255).astype(np.uint8)
        blurred = img.copy()
        blurred[~known] = cv2.GaussianBlur(smooth, (0, 0), 3)[~known]
        stats["blend"].add(blurred, img, ~known)
        stats["texture"].add(tex, img, ~known)
        swd.add(img, {"blend": blurred, "texture": tex}, ~known)
    res = swd.result()
    assert stats["texture"].detail > 0.7 > 0.4 > stats["blend"].detail
    assert res["texture"]["mean"] < 0.5 * res["blend"]["mean"]
    assert stats["texture"].seam < 1.5


def test_each_room_fills_from_its_own_pixels():
    h, w = 120, 260
    rng = np.random.default_rng(3)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :110] = np.clip(np.array([200, 60, 50]) + rng.normal(0, 12, (h, 110, 3)), 0, 255)
    img[:, 150:] = np.clip(np.array([40, 70, 210]) + rng.normal(0, 12, (h, 110, 3)), 0, 255)
    known = np.ones((h, w), bool)
    known[:, 110:150] = False
    rooms = known_rooms(known)
    assert set(np.unique(rooms)) == {-1, 0, 1}
    smooth = BlendGrower().fill(img, known)
    out = synthesize(img, known, smooth, rooms=rooms, cfg=TextureConfig(structure_weight=0.0))
    left, right = out[:, 112:126], out[:, 134:148]
    # Red room's side stays red, blue room's side stays blue: no double exposure.
    assert (left[..., 0] > left[..., 2] + 60).mean() > 0.95
    assert (right[..., 2] > right[..., 0] + 60).mean() > 0.95


def test_only_targets_are_synthesised():
    img = _wood(5)
    known = _gap_case(img)
    targets = np.zeros_like(known)
    targets[:90] = True
    smooth = BlendGrower().fill(img, known).astype(np.float32)
    out = synthesize(img, known, smooth, targets=targets, cfg=TextureConfig(structure_weight=0.0))
    rest = ~known & ~targets
    assert np.array_equal(out[rest], smooth[rest])
    assert not np.array_equal(out[~known & targets], smooth[~known & targets])


def test_still_fill_by_name_and_small_parts_join_their_neighbour():
    grower = make_grower("rule-tex", device="cpu")
    assert isinstance(grower, Joiner)
    img = _wood(9)
    known = _gap_case(img)
    known[5:8, 5:8] = True  # stays part of the left room (not a hole: the room around it)
    out = grower.fill(img, known)
    assert out.dtype == np.uint8 and np.array_equal(out[known], img[known])
    parts = np.zeros_like(known)
    parts[:, :30] = True
    parts[:, 40:] = True
    speck = np.zeros_like(known)
    speck[2:4, 32:34] = True  # 4 pixels alone in the hole: join the nearest part
    labels = known_rooms(parts | speck)
    assert labels[3, 33] == labels[3, 29] and labels[3, 29] != labels[3, 41]


def test_the_realism_peers_fill_by_name_and_keep_the_known_pixels():
    """The eval's peers are real: PatchMatch (pypatchmatch) and OpenCV's FSR."""
    img = _wood(5)
    known = _gap_case(img)
    for name in ("patchmatch", "fsr"):
        out = make_grower(name).fill(img, known)
        assert out.shape == img.shape and out.dtype == np.uint8, name
        assert np.array_equal(out[known], img[known]), name
        # A real fill, not the hole left black or flat.
        hole = out[~known].astype(np.float32)
        assert hole.mean() > 60 and hole.std() > 5, (name, hole.mean(), hole.std())


def _level_case(seed: int = 5):
    """A level with a hole reaching the image's edge (so the patches around it cover the
    padding), a guide, descriptors and a random field with random weights."""
    rng = np.random.default_rng(seed)
    img = _wood(seed, (90, 60)).astype(np.float32)
    known = np.ones((60, 90), bool)
    known[:20, 30:55] = False
    known[45:, 70:] = False
    guide = cv2.GaussianBlur(img, (0, 0), 2.0)
    lvl = _Level(img, known, ~known, known, None, rng, (guide, 2.0), dims=12)
    nnf = lvl.random_sources()
    weight = rng.uniform(0.01, 1.0, len(nnf)).astype(np.float32)
    weight[::7] = weight[3]          # equal weights: the first in patch order wins
    return lvl, img, known, guide, nnf, weight


def test_proposals_gathered_per_pixel_match_patches_pasted_one_by_one():
    """Each pixel's proposals worked out from the patches around it equal pasting every
    target's patch in turn (weighted sums, and the best of them with its weight),
    on the hole and on the ring of known pixels around it, padding included."""
    lvl, *_, nnf, weight = _level_case()
    n = lvl.ph * lvl.pw
    flat_src = lvl.image.reshape(-1, 3)
    acc, wsum = np.zeros((n, 3), np.float64), np.zeros(n)
    best, bw = np.zeros((n, 3), np.float32), np.full(n, -1.0)
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            shift = dy * lvl.pw + dx
            for t, s, w in zip(lvl.targets, nnf, weight):
                acc[t + shift] += w * flat_src[s + shift]
                wsum[t + shift] += w
                if w > bw[t + shift]:
                    best[t + shift], bw[t + shift] = flat_src[s + shift], w
    covered = np.flatnonzero(wsum > 0)
    ring = covered[lvl.known.reshape(-1)[covered]]
    pad = np.zeros((lvl.ph, lvl.pw), bool)
    pad[:R], pad[-R:], pad[:, :R], pad[:, -R:] = True, True, True, True
    assert pad.reshape(-1)[ring].any() and len(lvl.hole_idx)
    for at in (lvl.hole_idx, ring):
        got, gw = lvl._proposals(nnf, weight, False, at)
        np.testing.assert_allclose(got, acc[at], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(gw, wsum[at], rtol=1e-5)
        got, gw = lvl._proposals(nnf, weight, True, at)
        assert np.array_equal(got, best[at]) and np.array_equal(gw, bw[at].astype(np.float32))


def test_target_descriptors_are_the_patches_projected():
    """A target's descriptor (colours each round, the guide's part once) is its patch of
    colours and guide times the basis, as a filter over the image gives it."""
    lvl, img, known, guide, *_ = _level_case()
    est = lvl.image + np.random.default_rng(1).normal(0, 5, lvl.image.shape).astype(np.float32)
    got = lvl.target_desc(est)
    feats = np.concatenate([est, lvl.guide], axis=2)
    k = got.shape[1]
    want = np.empty_like(got)
    for i, t in enumerate(lvl.targets):
        y, x = divmod(t, lvl.pw)
        patch = feats[y - R:y + R + 1, x - R:x + R + 1].reshape(-1)
        want[i] = patch @ lvl._basis_matrix - lvl.offset
    assert want.shape == (len(lvl.targets), k)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-2)
    # The sources' descriptors, the same projection of the image's own patches.
    y, x = divmod(lvl.valid_idx[17], lvl.pw)
    patch = np.concatenate([lvl.image, lvl.guide], axis=2)[y - R:y + R + 1, x - R:x + R + 1].reshape(-1)
    np.testing.assert_allclose(lvl.src_desc[lvl.valid_idx[17]], patch @ lvl._basis_matrix - lvl.offset,
                               rtol=1e-4, atol=1e-2)
    assert PATCH == 2 * R + 1
