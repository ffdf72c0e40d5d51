"""How close a fill is to the truth, and how steady it stays: the scores that training's
validation and ``roomfuse eval`` share.

- ``score``: PSNR and SSIM over the hole pixels only (damage elsewhere is not the
  grower's doing: it never writes known pixels);
- ``flicker``: on a clip with a steady camera, the mean absolute change between
  consecutive fills over pixels unknown in both frames whose true content did not
  change, so every change there is the grower's own.

numpy in, floats out; scikit-image (an eval and training dependency) only when scoring.
"""
from __future__ import annotations

import numpy as np

STATIC_LEVEL = 6.0    # max channel change (of 255) under which a true pixel counts as static


def score(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) over the hole pixels only. SSIM is the Gaussian-window (sigma 1.5)
    map of Wang et al. averaged over hole pixels, channels averaged."""
    from skimage.metrics import structural_similarity

    err = out.astype(np.float32)[hole] - truth.astype(np.float32)[hole]
    mse = float(np.mean(err ** 2)) if err.size else 0.0
    psnr = 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))
    _, ssim_map = structural_similarity(truth, out, channel_axis=2, data_range=255,
                                        gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
    return float(psnr), float(ssim_map.mean(axis=2)[hole].mean())


def flicker(grower, clip) -> float:
    """Mean |out_t - out_t-1| over pixels unknown in both frames and truly static.
    ``clip``: (frame, known) pairs; the grower is reset first and keeps its state."""
    grower.reset()
    prev, total, count = None, 0.0, 0
    for frame, known in clip:
        out = grower.fill(frame, known).astype(np.float32)
        if prev is not None:
            static = np.abs(frame.astype(np.float32) - prev[0]).max(axis=2) < STATIC_LEVEL
            sel = ~known & ~prev[1] & static
            total += float(np.abs(out - prev[2])[sel].sum())
            count += int(sel.sum()) * 3
        prev = (frame.astype(np.float32), known, out)
    return total / max(count, 1)
