"""The evaluation: its metrics, its flicker measure, its outputs, and the fixed split."""
import json

import numpy as np
import pytest

from roomfuse.eval_report import markdown
from roomfuse.evaluate import flicker, measure, run, score
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


class Truthful(Grower):
    """Knows the answer: fills every hole with the truth it was given."""
    name = "truthful"

    def __init__(self, truth):
        self.truth = truth

    def fill(self, image, known, covered=None):
        return self.truth.copy()


def test_measure_scores_fidelity_and_realism_per_method():
    rng = np.random.default_rng(4)
    import cv2

    truth = np.clip(120 + cv2.GaussianBlur(rng.normal(0, 40, (90, 160, 3)).astype(np.float32), (0, 0), 1),
                    0, 255).astype(np.uint8)
    known = np.ones((90, 160), bool)
    known[:, 60:100] = False
    res = measure({"blend": BlendGrower(), "truthful": Truthful(truth)}, [(truth, known)] * 3)
    assert res["cases"] == 3 and res["truthful"]["psnr"] > 100 > res["blend"]["psnr"]
    assert res["truthful"]["swd"] < res["blend"]["swd"]
    assert abs(res["truthful"]["detail"] - 1) < 1e-6 and res["blend"]["detail"] < 0.6
    assert len(res["blend"]["swd_levels"]) == 4 and res["floor_swd"] > 0


def test_markdown_has_a_table_per_kind_and_a_row_per_method():
    r = {"psnr": 20.0, "ssim": 0.6, "swd": 150.0, "swd_levels": [1.0, 2.0, 3.0, 4.0], "detail": 0.9,
         "seam": 1.1, "ms_per_picture": 3.0}
    res = {"methods": ["a", "b"],
           "kinds": {"gap 96": {"cases": 3, "floor_swd": 20.0, "a": r, "b": r}},
           "two_rooms": {"cases": 2, "floor_swd": 30.0, "a": {"swd": 99.0, "swd_levels": [1, 2, 3, 4]},
                         "b": {"swd": 98.0, "swd_levels": [1, 2, 3, 4]}},
           "flicker": {"a": 0.1}, "time": {"a": {"median_ms": 1.0, "p95_ms": 2.0}},
           "canvas": {"size": "1024x360", "unknown_fraction": 0.3}}
    md = markdown(res)
    assert "### gap 96 (3 cases" in md and "| a | 20.00 | 0.600 | 150 | 1 2 3 4 | 0.90 | 1.10 | 3 |" in md
    assert "| b | 98 |" in md and "30 %" in md


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
def test_eval_run_writes_table_json_sheet_and_plot(data_dir, tmp_path):
    res = run(["blend", "telea"], data_dir, tmp_path, None, "cpu", frames=8, progress=False)
    assert {"blend", "telea"} <= set(res["kinds"]["gap 96"])
    assert set(res["kinds"]) == {"gap 48", "gap 96", "gap 160", "person", "free-form"}
    assert res["two_rooms"]["blend"]["swd"] > 0
    assert (tmp_path / "examples.png").stat().st_size > 10_000
    assert (tmp_path / "realism.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results.json").read_text())["methods"] == ["blend", "telea"]
    assert "| blend |" in (tmp_path / "results.md").read_text()
