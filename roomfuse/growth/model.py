"""The growth network: what one cell of the automaton computes from its neighbourhood.

A cell's state holds colour (3 channels, 0..1), an "alive" channel, two channels of gap
geometry and hidden channels. Perception is fixed and local: identity, Sobel x, Sobel y
and a Laplacian on every channel, except that the absolute colour (the identity filter
on the colour channels) is left out: a cell sees only how its colour differs from its
neighbours'. Trained on a few dozen photos, a network that sees absolute colour learns
their colour biases (it darkened bright walls it had never seen); one that sees only
differences has to learn structure. A per-pixel MLP (two 1x1 layers) turns the
perception into a residual update of the whole state. Its last layer starts at zero, so
an untrained network leaves the state exactly as the rule initialised it (a classical
fill), and training learns a correction on top.

Which cells may change, how many steps run and how state is carried between frames is
the rule's business (``rule.py``); this module only predicts updates. It imports nothing
but torch so it can be used anywhere a tensor can.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

RGB = slice(0, 3)
ALIVE = 3
GEOMETRY = slice(4, 6)   # position across the gap's run, run length (set by the rule)


@dataclass(frozen=True)
class NCAConfig:
    channels: int = 16     # state channels: 3 colour + 1 alive + 2 gap geometry + hidden
    hidden: int = 64       # width of the per-pixel MLP
    filters: int = 4       # identity, sobel x, sobel y, laplacian

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NCAConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def perception(self) -> int:
        return self.channels * self.filters - 3   # minus the three absolute colours


def _kernels() -> torch.Tensor:
    ident = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.float32)
    sobel_x = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float32) / 8
    lap = torch.tensor([[1, 2, 1], [2, -12, 2], [1, 2, 1]], dtype=torch.float32) / 16
    return torch.stack([ident, sobel_x, sobel_x.T, lap])  # (4, 3, 3)


class GrowthNet(nn.Module):
    def __init__(self, config: NCAConfig = NCAConfig()):
        super().__init__()
        if config.channels < 7:
            raise ValueError("a cell needs colour, alive and at least one hidden channel")
        self.config = config
        c = config.channels
        # Depthwise weights: each channel gets the 4 filters; output order is channel-major.
        self.register_buffer("kernel", _kernels().repeat(c, 1, 1).unsqueeze(1), persistent=False)
        keep = [i for i in range(c * 4) if i not in (0, 4, 8)]   # identity of R, G, B
        self.register_buffer("keep", torch.tensor(keep), persistent=False)
        self.fc1 = nn.Linear(config.perception, config.hidden)
        self.fc2 = nn.Linear(config.hidden, c, bias=False)
        nn.init.zeros_(self.fc2.weight)

    def perceive(self, state: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 4C - 3, H, W). Replicate padding: a border cell sees itself
        beyond the edge rather than black, which would read as a strong false edge."""
        return self.perceive_valid(F.pad(state, (1, 1, 1, 1), mode="replicate"))

    def perceive_valid(self, blocks: torch.Tensor) -> torch.Tensor:
        """(N, C, h + 2, w + 2) -> (N, 4C - 3, h, w): perception of blocks that already
        carry a one-cell border (their neighbours' cells, or the replicated edge). The
        tiled step cuts the canvas into such blocks; ``perceive`` pads the whole canvas."""
        feats = F.conv2d(blocks, self.kernel, groups=self.config.channels)
        return feats.index_select(1, self.keep)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Perception and the first layer folded into one 3x3 convolution, (hidden, C, 3,
        3) weights and a bias: both are linear, so fc1(perceive(x)) is a plain convolution
        of x. It costs more arithmetic than the depthwise filters plus fc1 (2 * 9 * C *
        hidden against about 2 * 4C * hidden per cell) but is one dense kernel with no
        4C-channel intermediate, which suits tensor cores; the same function up to
        rounding."""
        c = self.config.channels
        full = self.fc1.weight.new_zeros(self.fc1.out_features, c * 4)
        full = full.index_copy(1, self.keep, self.fc1.weight)   # (hidden, 4C), channel-major
        taps = self.kernel.view(c, 4, 9).to(full.dtype)         # channel, filter, tap
        w = torch.einsum("hcf,cft->hct", full.view(-1, c, 4), taps)
        return w.reshape(-1, c, 3, 3), self.fc1.bias

    def folded_gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``folded`` for gathered neighbourhoods: (9C, hidden) weights and a bias, so that
        ``fc1(perceive_gathered(neigh))`` is ``neigh.reshape(N, 9C) @ w + bias``. One
        matrix product instead of a dozen elementwise passes over (N, C) taps: 2.3x the
        arithmetic, yet on a 2-core CPU about 0.9 ms against 1.3 ms for a live 2-feed
        canvas (benchmarks/RESULTS.md). Cheap to build (tiny tensors): callers fold once
        per frame, from the weights as they are."""
        w, bias = self.folded()                                  # (hidden, C, 3, 3)
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t(), bias

    def perceive_gathered(self, neigh: torch.Tensor) -> torch.Tensor:
        """Perception from gathered 3x3 neighbourhoods (N, 9, C), row-major taps, to
        (N, 4C - 3) in the order of ``perceive``. The rule gathers only the cells it
        updates, so the cost follows the hole, not the area around it (a depthwise
        convolution over the whole box was most of a frame's time on a CPU)."""
        n = neigh.unbind(1)       # nine (N, C) taps, row-major from the top-left
        # The filters of _kernels(), written out: a few cheap ops on small tensors beat
        # a batched matmul over the 3x3 taps by a wide margin on a CPU.
        sobel_x = (n[2] + 2 * n[5] + n[8] - n[0] - 2 * n[3] - n[6]) * 0.125
        sobel_y = (n[6] + 2 * n[7] + n[8] - n[0] - 2 * n[1] - n[2]) * 0.125
        lap = (n[0] + n[2] + n[6] + n[8] + 2 * (n[1] + n[3] + n[5] + n[7]) - 12 * n[4]) * 0.0625
        feats = torch.stack([n[4], sobel_x, sobel_y, lap], 2).reshape(neigh.shape[0], -1)
        return feats.index_select(1, self.keep)

    def mlp(self, features: torch.Tensor) -> torch.Tensor:
        """(..., 4C) -> (..., C): the per-pixel update, run only where the rule asks."""
        return self.fc2(F.relu(self.fc1(features)))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Dense update for every cell, (B, C, H, W) -> (B, C, H, W)."""
        feats = self.perceive(state).permute(0, 2, 3, 1)
        return self.mlp(feats).permute(0, 3, 1, 2)
