"""Checkpoints carry their own configuration, so loading never depends on matching flags.

A checkpoint is one ``torch.save`` dict: the network weights, the network and rule
configs, the working-resolution factor, and free-form training metadata (steps, data,
time, validation scores) that the model card quotes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import RoomfuseError
from .model import GrowthNet, NCAConfig
from .rule import RuleConfig

FORMAT = "roomfuse-nca/1"


class CheckpointError(RoomfuseError):
    """A checkpoint is missing or is not a growth-model checkpoint; the message names it."""


def save_checkpoint(path: str | os.PathLike, net: GrowthNet, rule: RuleConfig, factor: int,
                    meta: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu() for k, v in net.state_dict().items()}
    torch.save({"format": FORMAT, "model": net.config.to_dict(), "rule": rule.to_dict(),
                "factor": int(factor), "state_dict": state, "meta": meta or {}}, path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[GrowthNet, RuleConfig, int, dict]:
    """(network in eval mode on ``device``, rule config, factor, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    net = GrowthNet(NCAConfig.from_dict(ckpt["model"]))
    net.load_state_dict(ckpt["state_dict"])
    net.to(device).eval()
    return net, RuleConfig.from_dict(ckpt["rule"]), int(ckpt["factor"]), ckpt.get("meta", {})
