"""The learned growth model as a pipeline grower (``--grower nca``).

numpy in, numpy out. Per frame: average the known pixels down to the working resolution
(the shared ``downsample_known``), carry the automaton's state to the new frame, run the
rule's steps (which gather and update the unknown cells only), and write the upsampled
colour into the unknown pixels only (``upsample_into``). The state stays here between calls;
``reset()`` drops it and a change of canvas size starts afresh.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from .base import Grower, check_inputs, downsample_known, paste_unknown, upsample_into
from .checkpoint import load_checkpoint
from .model import ALIVE, GrowthNet
from .rule import Cells, GrowthRule, RuleConfig

MODEL_ENV = "ROOMFUSE_MODEL"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "nca.pt"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but torch sees no CUDA device")
    return torch.device(device)


class NCAGrower(Grower):
    name = "nca"

    def __init__(self, device: str = "auto", checkpoint: str | os.PathLike | None = None,
                 half: bool = False, steps: int | None = None,
                 net: GrowthNet | None = None, rule: RuleConfig | None = None,
                 factor: int = 4):
        """Loads ``checkpoint`` (else $ROOMFUSE_MODEL, else models/nca.pt) unless an
        in-memory ``net`` is given (training uses that for validation). ``half`` runs in
        float16 and is honoured on CUDA only, where it changes results slightly.
        ``steps`` overrides the steps per carried frame."""
        self.device = resolve_device(device)
        if net is None:
            path = checkpoint or os.environ.get(MODEL_ENV) or DEFAULT_CHECKPOINT
            net, rule, factor, self.meta = load_checkpoint(path, self.device)
        else:
            self.meta = {}
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.net = net.to(self.device, self.dtype).eval()
        rule = rule or RuleConfig()
        if steps is not None:
            rule = RuleConfig(**{**rule.to_dict(), "frame_steps": int(steps)})
        self.rule = GrowthRule(self.net, rule)
        self.factor = int(factor)
        self.state: torch.Tensor | None = None
        self.phase = 0          # checkerboard colour of the next step

    def reset(self) -> None:
        self.state = None
        self.phase = 0

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(self.device, self.dtype if t.is_floating_point() else None)

    def _skip(self, covered: np.ndarray | None, shape: tuple[int, int]) -> torch.Tensor | None:
        """Working-resolution cells covered by a person in every pixel, shrunk by one
        cell so the cells next to what shows are still grown."""
        if covered is None:
            return None
        h, w = shape
        frac = cv2.resize(covered.view(np.uint8) * np.uint8(255), (w, h), interpolation=cv2.INTER_AREA)
        skip = cv2.erode((frac == 255).view(np.uint8), np.ones((3, 3), np.uint8))
        if not skip.any():
            return None
        return self._tensor(skip.view(bool)).unsqueeze(0).unsqueeze(0)

    @torch.inference_mode()
    def fill(self, image: np.ndarray, known: np.ndarray,
             covered: np.ndarray | None = None) -> np.ndarray:
        check_inputs(image, known)
        if known.all():
            self.state = None
            return image.copy()
        low, low_known = downsample_known(image, known, self.factor)
        if not low_known.any():
            self.state = None
            return paste_unknown(image, known, np.full_like(image, 127))
        img = self._tensor(low * (1 / 255)).permute(2, 0, 1).unsqueeze(0)
        kn = self._tensor(low_known).unsqueeze(0).unsqueeze(0)
        state = self.state
        if state is None or state.shape[2:] != kn.shape[2:]:
            state, steps, self.phase = self.rule.init_state(img, kn), self.rule.config.grow_steps, 0
        else:
            state, steps = self.rule.carry(state, img, kn), self.rule.config.frame_steps
        # Channels-last: the rule's per-cell gathers then read the state without a copy.
        state = state.contiguous(memory_format=torch.channels_last)
        cells = Cells(kn, self._skip(covered, low_known.shape))
        for _ in range(steps):
            state = self.rule.step(state, img, kn, phase=self.phase, cells=cells)
            self.phase += 1
        self.state = state
        rgb = state[0, :ALIVE].permute(1, 2, 0).float().mul(255).cpu().numpy()
        return upsample_into(image, known, rgb)
