"""``roomfuse train``: train the growth model on the team data and packaged photos.

One command reproduces the shipped weights (fixed seed, CPU feasible) in a new file,
with its training curves beside it:

    roomfuse train --out runs/nca.pt        # also writes runs/nca-curves.png

Each iteration draws a batch of crops with holes (stills) or a short static-camera
sequence with moving holes (state carried from frame to frame), runs the rule with
stochastic updates, and descends on: L1 on hole cells (weight 6) plus L1 on valid cells,
the mean of each sample's log MSE on hole cells (PSNR, averaged per image, is what the
product is judged by), an L1 term on image gradients inside the hole (sharpness), and on
sequences an L1 term on frame-to-frame change of cells that stay hidden while the scene
behind them is static (flicker). It runs on CUDA when one is present (``--device``).
Validation runs the real grower on the fixed held-out split at every checkpoint, and on
as many training images, so the gap between the two shows any overfitting.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..argtypes import add_device_argument


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 1500
    batch: int = 8
    crop: tuple[int, int] = (64, 112)  # working-resolution crop (x4 at canvas scale)
    factor: int = 4                    # working resolution = canvas / factor
    lr: float = 1e-3
    seed: int = 0
    min_steps: int = 12                # steps per still are drawn from this range
    max_steps: int = 24
    seq_frac: float = 0.25             # share of iterations spent on sequences
    seq_frames: int = 4
    hole_weight: float = 6.0
    valid_weight: float = 1.0
    db_weight: float = 1.0             # on mean per-sample 10*log10(MSE) of hole cells
    grad_weight: float = 0.25
    temporal_weight: float = 16.0
    curriculum: float = 0.6            # share of training over which holes grow to full size
    val_every: int = 250
    model: dict = field(default_factory=lambda: {"channels": 16, "hidden": 64})
    rule: dict = field(default_factory=dict)


def _batch(samples, torch, device="cpu"):
    img = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2).float()
    known = torch.from_numpy(np.stack([s[1] for s in samples])).unsqueeze(1)
    truth = torch.from_numpy(np.stack([s[2] for s in samples])).permute(0, 3, 1, 2).float()
    return img.to(device), known.to(device), truth.to(device)


def frame_loss(out, known, truth, cfg: TrainConfig):
    """Per-frame loss at the working resolution (see the module notes for the terms)."""
    import torch

    hole = (~known).float()
    n_hole = hole.sum().clamp(min=1) * 3
    n_valid = (1 - hole).sum().clamp(min=1) * 3
    err = out - truth
    l1_hole = (err.abs() * hole).sum() / n_hole
    l1_valid = (err.abs() * (1 - hole)).sum() / n_valid
    # PSNR is averaged over images, so the loss that matches it is the mean of each
    # sample's log MSE: an easy image counts as much as a hard one, in decibels.
    mse = (err.square() * hole).sum((1, 2, 3)) / (hole.sum((1, 2, 3)) * 3).clamp(min=1)
    db = 10 * torch.log10(mse + 1e-5).mean()
    gx = (err[..., :, 1:] - err[..., :, :-1]).abs() * hole[..., :, 1:]
    gy = (err[..., 1:, :] - err[..., :-1, :]).abs() * hole[..., 1:, :]
    grad = (gx.sum() + gy.sum()) / (2 * n_hole)
    return (cfg.hole_weight * l1_hole + cfg.valid_weight * l1_valid + cfg.db_weight * db
            + cfg.grad_weight * grad), db


def validate(net, rule_cfg, factor: int, cases) -> dict:
    """Gap-join PSNR/SSIM of the real grower (full resolution in and out) on ``cases``."""
    from .nca_grower import NCAGrower
    from .scores import score

    if not cases:
        return {"psnr": float("nan"), "ssim": float("nan")}
    device = next(net.parameters()).device.type          # validate where it trains
    grower = NCAGrower(device=device, net=net, rule=rule_cfg, factor=factor)
    scores = []
    for image, known in cases:
        grower.reset()
        scores.append(score(grower.fill(image, known), image, ~known))
    net.train()
    return {"psnr": float(np.mean([s[0] for s in scores])),
            "ssim": float(np.mean([s[1] for s in scores]))}


@dataclass
class TrainData:
    images: list            # RGB uint8 photos and stills to crop from
    person_bank: list       # bool person masks
    val_cases: list         # (image, known) gap cases from the held-out split
    train_cases: list       # the same kind of cases from training photos

    @classmethod
    def load(cls, root: Path) -> "TrainData":
        from . import data

        val = data.gap_cases(data.eval_gap_images(root), (96,))
        return cls(data.training_images(root), data.training_person_bank(root), val,
                   data.gap_cases(data.train_gap_images(root, len(val) // 3), (96,)))


def train(cfg: TrainConfig, out: Path, data_root: Path | None = None, log=print,
          prepared: TrainData | None = None, show_progress: bool = True,
          device: str = "cpu"):
    """Trains, writing ``out`` at every validation; returns (network, summary)."""
    import torch

    from ..progress import Progress
    from .checkpoint import save_checkpoint
    from .data import Sampler
    from .model import GrowthNet, NCAConfig
    from .rule import GrowthRule, RuleConfig

    validate(GrowthNet(NCAConfig()), RuleConfig(), cfg.factor, [])  # import everything now
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    t0 = time.time()
    td = prepared or TrainData.load(data_root)
    sampler = Sampler(td.images, td.person_bank, cfg.crop, cfg.factor, cfg.seed)
    val_cases, train_cases = td.val_cases, td.train_cases
    log(f"data: {len(td.images)} training images, {len(td.person_bank)} person masks, "
        f"{len(val_cases)} validation gaps ({time.time() - t0:.0f}s)")

    net = GrowthNet(NCAConfig.from_dict(cfg.model)).to(device)
    rule_cfg = RuleConfig.from_dict(cfg.rule)
    rule = GrowthRule(net, rule_cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, i / cfg.iterations))))
    history, running, t_start = [], None, time.time()
    losses = []  # the running loss at every iteration, for the curves
    bar = Progress(cfg.iterations, "train", enabled=show_progress)
    for it in range(1, cfg.iterations + 1):
        level = min(1.0, it / max(1, cfg.curriculum * cfg.iterations))
        if sampler.rng.random() < cfg.seq_frac:
            seqs = [sampler.sequence(level, cfg.seq_frames) for _ in range(cfg.batch // 2)]
            loss, state, prev = 0.0, None, None
            for f in range(cfg.seq_frames):
                img, known, truth = _batch([s[f] for s in seqs], torch, device)
                steps = cfg.max_steps if f == 0 else rule_cfg.frame_steps
                rgb, state = rule(img, known, state, steps=steps, train=True, generator=gen)
                loss = loss + frame_loss(rgb, known, truth, cfg)[0] / cfg.seq_frames
                if prev is not None:
                    steady = (~known & ~prev[1]).float()
                    flick = ((rgb - prev[0]).abs() * steady).sum() / (steady.sum() * 3 + 1)
                    loss = loss + cfg.temporal_weight * flick
                prev = (rgb, known)
        else:
            samples = [sampler.still(level) for _ in range(cfg.batch)]
            img, known, truth = _batch(samples, torch, device)
            steps = int(sampler.rng.integers(cfg.min_steps, cfg.max_steps + 1))
            rgb, _ = rule(img, known, steps=steps, train=True, generator=gen)
            loss = frame_loss(rgb, known, truth, cfg)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        losses.append(running)
        bar.update(1, note=f"loss {running:.4f}")
        if it % cfg.val_every == 0 or it == cfg.iterations:
            val = validate(net, rule_cfg, cfg.factor, val_cases)
            trn = validate(net, rule_cfg, cfg.factor, train_cases)
            entry = {"iteration": it, "loss": round(running, 5),
                     "minutes": round((time.time() - t_start) / 60, 1),
                     "val_psnr": round(val["psnr"], 3), "val_ssim": round(val["ssim"], 4),
                     "train_psnr": round(trn["psnr"], 3), "train_ssim": round(trn["ssim"], 4)}
            history.append(entry)
            log(json.dumps(entry))
            meta = {"config": asdict(cfg), "history": history, "data_root": str(data_root),
                    "device": str(device), "torch_threads": torch.get_num_threads()}
            save_checkpoint(out, net, rule_cfg, cfg.factor, meta)
    bar.close()
    return net, {"history": history, "losses": losses, "minutes": (time.time() - t_start) / 60}


def plot_curves(summary: dict, path: Path) -> None:
    """The training curves as a PNG: the running loss, and validation PSNR on held-out
    and on training images at every checkpoint (a widening gap shows overfitting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    losses = summary.get("losses") or []
    left.plot(range(1, len(losses) + 1), losses, color="tab:blue", lw=1)
    left.set(title="training loss (running mean)", xlabel="iteration", ylabel="loss")
    history = summary.get("history") or []
    its = [h["iteration"] for h in history]
    right.plot(its, [h["val_psnr"] for h in history], "o-", label="held-out", color="tab:green")
    right.plot(its, [h["train_psnr"] for h in history], "s--", label="training", color="tab:orange")
    right.set(title="gap-join PSNR at checkpoints", xlabel="iteration", ylabel="PSNR (dB)")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--out", default="runs/nca.pt",
                        help="checkpoint to write (its folder is made); "
                             "the curves go beside it as NAME-curves.png")
    parser.add_argument("--data", default=None,
                        help="data root (default $ROOMFUSE_DATA or ../shared/data)")
    parser.add_argument("--iterations", type=int, default=d.iterations)
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--val-every", type=int, default=d.val_every)
    parser.add_argument("--threads", type=int, default=0, help="torch threads, 0 to let torch choose")
    add_device_argument(parser, "training")


def main(args: argparse.Namespace) -> int:
    import torch

    from .data import DataError, data_root
    from .nca_grower import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = replace(TrainConfig(), iterations=args.iterations, batch=args.batch, lr=args.lr,
                  seed=args.seed, val_every=args.val_every)
    out = Path(args.out)
    curves = out.with_name(out.stem + "-curves.png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"roomfuse train: --out {args.out}: cannot make its folder ({err.strerror or err})", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device).type
        _, result = train(cfg, out, data_root(args.data), device=device)
    except (DataError, ValueError) as err:
        print(f"roomfuse train: {err}", file=sys.stderr)
        return 2
    plot_curves(result, curves)
    print(f"wrote {out} and {curves} after {result['minutes']:.1f} min")
    return 0
