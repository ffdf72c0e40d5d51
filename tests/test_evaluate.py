"""The evaluation: its metrics, its flicker measure, its outputs, and the fixed split."""
import json

import numpy as np
import pytest

from roomfuse.evaluate import flicker, markdown, run, score
from roomfuse.growth import data
from roomfuse.growth.base import Grower
from roomfuse.growth.classical import BlendGrower


def test_score_is_perfect_only_for_the_truth():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    hole = np.zeros((40, 60), bool)
    hole[:, 20:40] = True
    psnr, ssim = score(truth.copy(), truth, hole)
    assert psnr > 100 and ssim == pytest.approx(1.0)
    worse = truth.copy()
    worse[hole] = 128
    p2, s2 = score(worse, truth, hole)
    assert p2 < 15 and s2 < 0.5
    outside = truth.copy()
    outside[~hole] = 0                       # damage outside the hole is not scored by PSNR
    assert score(outside, truth, hole)[0] > 100


class Jittery(Grower):
    name = "jittery"

    def __init__(self):
        self.rng = np.random.default_rng(1)

    def fill(self, image, known):
        noise = self.rng.integers(0, 40, image.shape, dtype=np.uint8)
        out = image.copy()
        out[~known] = noise[~known]
        return out


def test_flicker_is_zero_for_a_steady_fill_and_positive_for_a_noisy_one():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    known = np.ones((30, 40), bool)
    known[:, 15:25] = False
    clip = [(frame, known)] * 5
    assert flicker(BlendGrower(), clip) == 0.0
    assert flicker(Jittery(), clip) > 5.0
    # Pixels whose true content changes are not counted.
    moving = [(np.roll(frame, i, axis=0), known) for i in range(5)]
    assert flicker(Jittery(), moving) < flicker(Jittery(), clip)


def test_markdown_has_a_row_per_method():
    s = {"psnr": 20.0, "ssim": 0.6}
    res = {"methods": ["a", "b"], "gap": {48: {"a": s, "b": s}}, "holes": {
        "person": {"a": s, "b": s}, "free-form": {"a": s, "b": s}},
        "flicker": {"a": 0.1, "b": 0.2},
        "time": {m: {"median_ms": 1.0, "p95_ms": 2.0} for m in "ab"},
        "canvas": {"size": "1024x360", "unknown_fraction": 0.3}}
    md = markdown(res)
    assert md.count("\n| a |") + md.count("| a |") >= 1 and "| b |" in md
    assert "20.00 / 0.600" in md and "30 %" in md


def test_the_fixed_evaluation_split_is_present_and_kept_out_of_training(data_dir):
    media = data.list_media(data_dir)
    every = {p for paths in media.values() for p in paths}
    assert data.EVAL_SPLIT <= every, sorted(data.EVAL_SPLIT - every)
    train = data.split_media(data_dir, held_out=False)
    held = data.split_media(data_dir, held_out=True)
    for kind in media:
        assert not set(train[kind]) & set(held[kind])
        assert train[kind], f"no training {kind}"


@pytest.mark.slow
def test_eval_run_writes_table_json_and_sheet(data_dir, tmp_path):
    res = run(["blend", "telea"], data_dir, tmp_path, None, "cpu", frames=8, log=lambda *_: None)
    assert set(res["gap"][96]) == {"blend", "telea"}
    assert (tmp_path / "examples.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results.json").read_text())["methods"] == ["blend", "telea"]
    assert "| blend |" in (tmp_path / "results.md").read_text()
