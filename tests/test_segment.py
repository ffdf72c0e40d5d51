"""Person mattes: the temporal smoother, the colour key, and mediapipe on real footage."""
from __future__ import annotations

import numpy as np
import pytest

from roomfuse.capture import ClipSource
from roomfuse.config import SegmentConfig
from roomfuse.segment import KeySegmenter, MatteSmoother, PersonSegmenter
from roomfuse.synthetic import SyntheticSource


def test_smoother_damps_edge_noise():
    rng = np.random.default_rng(0)
    base = np.zeros((40, 40), np.float32)
    base[:, 20:] = 1.0
    sm = MatteSmoother(min_rate=0.15, snap=0.4)
    raw_changes, smooth_changes = [], []
    prev_raw = prev_smooth = None
    for _ in range(30):
        raw = np.clip(base + rng.normal(0, 0.05, base.shape).astype(np.float32), 0, 1)
        out = sm(raw)
        if prev_raw is not None:
            raw_changes.append(np.abs(raw - prev_raw).mean())
            smooth_changes.append(np.abs(out - prev_smooth).mean())
        prev_raw, prev_smooth = raw, out
    assert np.mean(smooth_changes) < 0.5 * np.mean(raw_changes)


def test_smoother_does_not_trail_motion():
    """A head that moves 8 px is followed in the same frame, not over many frames."""
    sm = MatteSmoother(min_rate=0.15, snap=0.4)
    a = np.zeros((20, 60), np.float32)
    a[:, 10:30] = 1
    b = np.zeros_like(a)
    b[:, 18:38] = 1
    sm(a)
    out = sm(b)
    assert np.allclose(out, b, atol=1e-6)
    # A plain running average at the same base rate would still be far behind.
    ema = a + 0.15 * (b - a)
    assert np.abs(ema - b).max() > 0.7


def test_smoother_rejects_bad_settings():
    with pytest.raises(ValueError):
        MatteSmoother(min_rate=0)
    with pytest.raises(ValueError):
        MatteSmoother(snap=0)


def test_key_segmenter_matches_truth():
    src = SyntheticSource(seed=4)
    seg = KeySegmenter()
    f = src.frame_at(0.3)
    cut = seg(f)
    import cv2
    alpha = cv2.resize(cut.alpha, f.size, interpolation=cv2.INTER_LINEAR) > 0.5
    truth = src.truth_alpha(0.3) > 0.5
    iou = (alpha & truth).sum() / (alpha | truth).sum()
    assert iou > 0.95


@pytest.fixture(scope="module")
def mediapipe_segmenter():
    seg = PersonSegmenter(SegmentConfig())
    yield seg
    seg.close()


def test_mediapipe_finds_the_person(person_clip, mediapipe_segmenter):
    src = ClipSource(person_clip("pyfeat_single_face.mp4"))
    mediapipe_segmenter.reset()
    cut = mediapipe_segmenter(src.frame_at(0.5))
    a = cut.alpha
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    h, w = a.shape
    assert w == 256  # computed at the model's working size
    # A talking head fills the middle of the frame and not the corners.
    assert a[h // 3:, w // 3: 2 * w // 3].mean() > 0.7
    assert a[: h // 6, : w // 8].mean() < 0.1
    # Soft edges: some pixels are neither 0 nor 1.
    assert ((a > 0.1) & (a < 0.9)).mean() > 0.002
    src.close()


def _jitter(seq):
    """Mean |second temporal difference|: back-and-forth wobble, not steady motion."""
    return np.mean([np.abs(a - 2 * b + c).mean() for a, b, c in zip(seq, seq[1:], seq[2:])])


def test_mediapipe_smoothing_steadies_edges_without_lag(person_clip):
    """On a talking head the smoothed matte wobbles less than the raw one and stays
    close to it (a lagging matte would drift away from the raw one)."""
    src = ClipSource(person_clip("pexels_wolfganglanger.mp4"))
    smooth = PersonSegmenter(SegmentConfig())
    raw = PersonSegmenter(SegmentConfig(min_rate=1.0))
    s_seq, r_seq = [], []
    for _ in range(40):
        f = src.read()
        s_seq.append(smooth(f).alpha)
        r_seq.append(raw(f).alpha)
    assert _jitter(s_seq) < 0.85 * _jitter(r_seq)
    assert np.mean([np.abs(s - r).mean() for s, r in zip(s_seq, r_seq)]) < 0.01
    smooth.close(), raw.close(), src.close()
