"""A tiny training run on synthetic pictures must beat its own starting point."""
import numpy as np
import torch

from roomfuse.growth.data import Sampler
from roomfuse.growth.masks import rectangles
from roomfuse.growth.model import GrowthNet, NCAConfig
from roomfuse.growth.rule import GrowthRule, RuleConfig
from roomfuse.growth.train import TrainConfig, TrainData, _batch, frame_loss, train


def blocks(seed, h=160, w=240, cell=4):
    """Independent random grey levels in blocks the size of one working-resolution cell.
    The best guess for a hidden block is the mean level, not the blend of two random
    border blocks that the rule starts from; pulling a cell toward its neighbours'
    average (the Laplacian it perceives) is the lesson, and a small network learns it
    in a few hundred steps."""
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.2, 0.8, (h // cell, w // cell, 1)).repeat(3, axis=2)
    img = levels.repeat(cell, axis=0).repeat(cell, axis=1)
    return (img * 255).astype(np.uint8)


def test_tiny_training_run_lowers_the_loss(tmp_path):
    images = [blocks(s) for s in range(6)]
    cfg = TrainConfig(iterations=300, batch=4, crop=(16, 32), min_steps=5, max_steps=6,
                      seq_frac=0.1, seq_frames=2, val_every=300, lr=3e-3, db_weight=0.0,
                      grad_weight=0.0, model={"channels": 10, "hidden": 24})
    prepared = TrainData(images, [], val_cases=[], train_cases=[])
    net, summary = train(cfg, tmp_path / "m.pt", prepared=prepared, log=lambda *_: None,
                         show_progress=False)
    assert (tmp_path / "m.pt").is_file() and summary["history"]

    # A held-back batch of rectangular holes: the zero-initialised start (exactly the row
    # blend) against the trained network, both under the deterministic inference schedule.
    rng = np.random.default_rng(7)
    sampler = Sampler(images, [], cfg.crop, cfg.factor, seed=123)
    samples = []
    for _ in range(24):
        truth = sampler._crop(1.0)
        samples.append(sampler._low(truth, rectangles(rng, *truth.shape[:2], 0.3)))
    img, known, truth = _batch(samples, torch)
    start = GrowthRule(GrowthNet(NCAConfig(channels=10, hidden=24)), RuleConfig())
    trained = GrowthRule(net.eval(), RuleConfig())
    with torch.no_grad():
        before = frame_loss(start(img, known, steps=6)[0], known, truth, cfg)[0]
        after = frame_loss(trained(img, known, steps=6)[0], known, truth, cfg)[0]
    assert after < 0.97 * before, (float(before), float(after))
