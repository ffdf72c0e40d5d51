"""Per-pixel work restricted to boxes gives the very pixels of the whole-canvas pass."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from roomfuse.composite import Compositor, blend_people, compose, people_boxes
from roomfuse.config import CompositeConfig
from roomfuse.frames import Canvas, Rect
from roomfuse.growth.base import downsample_known, paste_unknown, upsample_into
from roomfuse.regions import (band_boxes, block_counts, block_sums, box_slices, cell_boxes, halve, mask_boxes, snap,
                              upsample_box, whole_scale)
from roomfuse.roomfill import _low


def _rng_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("box", [(0, 0, 640, 360), (8, 16, 200, 104), (3, 5, 97, 61), (600, 300, 640, 360)])
def test_an_upsampled_box_is_the_whole_resize_there(scale, box):
    h, w = 360, 640
    rng = np.random.default_rng(1)
    low8 = rng.integers(0, 256, (h // scale, w // scale, 3), dtype=np.uint8)
    lowf = rng.random((h // scale, w // scale, 3)).astype(np.float32)
    b = snap(box, scale, (w, h))
    assert b[0] <= box[0] and b[1] <= box[1] and b[2] >= box[2] and b[3] >= box[3]
    for low in (low8, lowf):
        whole = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(upsample_box(low, scale, b), whole[box_slices(b)])


def test_block_sums_and_counts_are_exact():
    img = _rng_image(64, 96)
    mask = (np.random.default_rng(2).random((64, 96)) < 0.4).view(np.uint8)
    for f in (4, 8):
        sums = block_sums(img, f).astype(np.int64)
        want = img.reshape(64 // f, f, 96 // f, f, 3).sum(axis=(1, 3))
        assert np.array_equal(sums, want)
        counts = block_counts(mask, f).astype(np.int64)
        assert np.array_equal(counts, mask.reshape(64 // f, f, 96 // f, f).sum(axis=(1, 3)))


def test_whole_scale_only_for_whole_numbers():
    assert whole_scale((4032, 720), (504, 90)) == 8
    assert whole_scale((940, 720), (117, 90)) is None
    assert whole_scale((640, 360), (160, 91)) is None


def test_mask_boxes_hold_every_set_pixel_even_outside_the_rects():
    mask = np.zeros((50, 100), np.uint8)
    mask[10:20, 5:15] = 255
    mask[30:40, 60:70] = 255
    rects = [Rect(0, 0, 50, 50), Rect(50, 0, 50, 50)]
    assert mask_boxes(mask, rects) == [(5, 10, 15, 20), (60, 30, 70, 40)]
    mask[45, 95] = 255
    assert mask_boxes(mask, rects[:1]) == [(5, 10, 96, 46)]  # one box around all of it
    assert band_boxes(mask, band=50) == [(5, 10, 15, 20), (60, 30, 96, 46)]


def _people_canvas(h=360, w=640, seed=3):
    rng = np.random.default_rng(seed)
    image = _rng_image(h, w, seed)
    alpha = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[:h, :w]
    for cx in (150, 470):
        d = np.hypot((xx - cx) / 80.0, (yy - 250) / 140.0)
        alpha = np.maximum(alpha, np.clip(1.5 - d, 0, 1).astype(np.float32))
    alpha += rng.random((h, w)).astype(np.float32) * 1e-4  # a real matte is never exactly 0
    alpha[:, 300:340] = 0  # the gap
    known = alpha < 0.2
    tiles = (Rect(0, 0, 300, h), Rect(340, 0, 300, h))
    return Canvas(image=image, background=image.copy(), known=known, alpha=np.clip(alpha, 0, 1),
                  tiles=tiles, keys=("a", "b"))


@pytest.mark.parametrize("size", [(360, 640), (362, 636)])
def test_composing_in_strips_and_boxes_is_the_two_passes_to_the_bit(size):
    h, w = size
    c = _people_canvas(h, w)
    grown = _rng_image(h, w, 9)
    low = (0.8 + 0.4 * np.random.default_rng(4).random((h // 8, w // 8, 3))).astype(np.float32)
    two_pass = cv2.multiply(blend_people(c, grown), cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR),
                            dtype=cv2.CV_8U)
    with ThreadPoolExecutor(1) as pool:
        for p in (None, pool):
            assert np.array_equal(compose(c, grown, low, p), two_pass)
    assert np.array_equal(compose(c, grown, None), blend_people(c, grown))
    # The people's boxes hold every pixel the matte changes, and leave the gap out.
    boxes = people_boxes(c)
    assert len(boxes) == 2 and all(b[2] <= 300 or b[0] >= 340 for b in boxes)


def test_the_compositor_halves_give_what_it_gives_whole():
    c = _people_canvas()
    grown = _rng_image(360, 640, 5)
    a = Compositor(CompositeConfig(smooth_frames=1))
    b = Compositor(CompositeConfig(smooth_frames=1))
    for _ in range(3):
        whole = a(c, grown)
        assert np.array_equal(b.compose(c, grown, b.gains(c)), whole)


@pytest.mark.parametrize("size,factor", [((360, 640), 4), ((720, 1280), 8), ((358, 642), 4)])
def test_upsample_into_boxes_is_the_whole_upsample(size, factor):
    h, w = size
    img = _rng_image(h, w, 6)
    known = np.ones((h, w), bool)
    known[100:200, 30:90] = False     # a small hole: upsampled box by box
    low, _ = downsample_known(img, known, factor)
    whole = paste_unknown(img, known, cv2.resize(np.clip(low + 0.5, 0, 255).astype(np.uint8), (w, h),
                                                 interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(upsample_into(img, known, low), whole)
    known[:, : w // 2] = False        # most of the canvas: one whole resize
    low, _ = downsample_known(img, known, factor)
    whole = paste_unknown(img, known, cv2.resize(np.clip(low + 0.5, 0, 255).astype(np.uint8), (w, h),
                                                 interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(upsample_into(img, known, low), whole)


@pytest.mark.parametrize("size", [(360, 1024), (358, 1020)])
def test_the_room_fills_low_means_are_the_float_area_means(size):
    h, w = size
    img = _rng_image(h, w, 7)
    known = np.random.default_rng(8).random((h, w)) < 0.6
    k = known.astype(np.float32)
    lsize = (w // 8, h // 8)
    num = cv2.resize(img.astype(np.float32) * k[..., None], lsize, interpolation=cv2.INTER_AREA)
    den = cv2.resize(k, lsize, interpolation=cv2.INTER_AREA)
    low, full = _low(img, known)
    assert np.array_equal(low, num / np.maximum(den, 1e-6)[..., None])
    assert np.array_equal(full, den > 0.99)


def test_halve_is_within_two_levels_of_one_area_resize():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (720, 4032, 3), dtype=np.uint8)
    image[:, 2000:] = cv2.GaussianBlur(image[:, 2000:], (0, 0), 4)  # smooth and rough parts
    got = halve(image, 8)
    want = cv2.resize(image, (504, 90), interpolation=cv2.INTER_AREA)
    diff = np.abs(got.astype(int) - want)
    assert got.shape == want.shape and diff.max() <= 2 and diff.mean() < 0.5
    assert halve(image, 6) is None and halve(image[:, :4030], 8) is None


def test_halve_keeps_only_whole_blocks_at_255():
    mask = np.full((64, 64), 255, np.uint8)
    mask[9, 9] = 0  # one pixel off in block (1, 1)
    low = halve(mask, 8)
    assert low[1, 1] < 255 and (low[np.arange(8) != 1].min() == 255)


def test_cell_boxes_cover_the_mask_tightly():
    mask = np.zeros((720, 4032), bool)
    for x in (960, 2000, 3000):
        mask[:, x:x + 64] = True  # gaps
    mask[:40, 1024:2000] = True   # a margin joining two of them
    boxes = cell_boxes(mask, 32)
    covered = np.zeros_like(mask)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered[mask].all()
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
    assert area < 2.5 * mask.sum() and len(boxes) < 12
