"""The rule that applies the growth network: which cells change, when, and what carries over.

``rgb, state = rule(image, known, state)`` with image (B, 3, H, W) in 0..1 and known
(B, 1, H, W) bool, both at the working (reduced) resolution. The state (``GrowthState``:
the automaton's cells and the number of its next step) is a value the caller keeps
between frames and may drop at any time (``None`` starts afresh), in the manner of
recurrent video models. Training, the grower and a batch of rooms all hold it this way.

The growth rule:
- known cells are clamped to what the camera saw and never written;
- an unknown cell is updated only when at least ``alpha`` of its 3x3 neighbourhood is
  alive; updated cells become alive, so life spreads from the known border inwards;
- while training, each eligible cell fires with probability one half (the usual
  asynchronous NCA update). Inference is deterministic, by one of two schedules:
  ``mean`` (default) fires every eligible cell with half the update, the expected value
  of a training step; ``hash`` fires the half of the cells picked by a fixed hash of
  (row, column, step), the same density as in training at half the work. On held-out
  clips the hash schedule flickered almost twice as much (a different half of the cells
  moves each frame) for 0.02 dB more gap PSNR; a regular checkerboard was 0.05 dB worse
  than the hash. The step counter (``phase``) runs on across frames.

Coarse to fine: the rule runs at a reduced resolution (the grower uses 1/4 and upsamples
into the unknown pixels). A fresh cell's colour starts from a row-wise blend between the
nearest known cells on its left and right, a fill that already spans any gap, so the two
fronts do not have to meet before the picture is whole; the network then grows a
correction inward from the border. Between frames, cells that stay unknown keep their
state, easing toward the new frame's blend (the hidden channels toward zero) by ``follow``
per frame; cells that become hidden start from the last colour seen there (background
the person now covers); cells that become known are clamped again. So on video the
growth is amortised: each frame runs only ``frame_steps`` steps from where the last one
stopped.

One loop, ``advance``: start (or carry) the cells, then run the steps, in one of three
forms of the same step: ``step`` gathers the cells to update and their neighbourhoods
(the CPU form: work follows the hole); ``step_dense`` runs the network on every cell of
the canvas and keeps the update where the rule allows it (the reference for the others,
and a static shape); ``tiled_steps`` does the dense step on the tiles that hold cells to
update (``tiles.py``), the accelerator form, with static shapes for CUDA graphs and
compilers. A test holds all three to the same result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .model import ALIVE, GEOMETRY, RGB, GrowthNet
from .tiles import Tiles, tile_index


@dataclass(frozen=True)
class RuleConfig:
    alpha: float = 0.2        # fraction of the 3x3 neighbourhood that must be alive
    grow_steps: int = 16      # steps on a fresh state (a still image, the first frame)
    frame_steps: int = 1      # steps per later frame, starting from the carried state
    follow: float = 0.1       # per frame, how far a carried cell moves toward the new start
    schedule: str = "mean"    # inference: "mean" (all fire, half update) or "hash" (half fire)

    def __post_init__(self):
        if self.schedule not in ("mean", "hash"):
            raise ValueError(f"schedule must be 'mean' or 'hash', got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RuleConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class GrowthState:
    """What a canvas batch carries from frame to frame, held by the caller.

    ``cells`` (B, C, h, w): the automaton's state at the working resolution. ``phase``:
    the number of the next step (the hash schedule's clock), an int, or a (B,) long
    tensor on the host when canvases grown together are at different steps."""

    cells: torch.Tensor
    phase: int | torch.Tensor = 0

    def fits(self, like: torch.Tensor) -> bool:
        """Whether these cells carry over to a frame shaped like ``like`` (B, *, h, w)."""
        return self.cells.shape[0] == like.shape[0] and self.cells.shape[2:] == like.shape[2:]

    @staticmethod
    def join(states: list["GrowthState"]) -> "GrowthState":
        """One state for canvases grown together (of one size), each keeping its step."""
        if len(states) == 1:
            return states[0]
        return GrowthState(torch.cat([s.cells for s in states]),
                           torch.tensor([int(s.phase) for s in states], dtype=torch.long))

    def split(self) -> list["GrowthState"]:
        """The state of each canvas, the inverse of ``join``."""
        b = self.cells.shape[0]
        if b == 1:
            return [self]
        phases = self.phase.tolist() if isinstance(self.phase, torch.Tensor) else [self.phase] * b
        return [GrowthState(self.cells[j:j + 1], int(p)) for j, p in enumerate(phases)]


def row_blend(image: torch.Tensor, known: torch.Tensor, geometry: bool = False):
    """Each unknown cell interpolates linearly along its row between the nearest known
    cells left and right (one side if only one exists); rows with no known cell take the
    mean known colour. The torch twin of ``classical.line_blend``, batched, for the rule.

    With ``geometry`` also returns (B, 2, H, W): the cell's position across its run of
    unknown cells (0 at the left edge, 1 at the right) and the run's length over 32, the
    two facts a learned correction of this blend most needs and cannot see locally."""
    b, _, h, w = image.shape
    k = known[:, 0]
    idx = torch.arange(w, device=image.device).expand(b, h, w)
    left = torch.where(k, idx, torch.full_like(idx, -1)).cummax(dim=2).values
    right = torch.where(k, idx, torch.full_like(idx, w)).flip(2).cummin(dim=2).values.flip(2)
    has_l, has_r = left >= 0, right < w
    cl = image.gather(3, left.clamp(0, w - 1).unsqueeze(1).expand(b, 3, h, w))
    cr = image.gather(3, right.clamp(0, w - 1).unsqueeze(1).expand(b, 3, h, w))
    span = (right - left).clamp(min=1).to(image.dtype)
    t = torch.where(has_l & has_r, (idx - left).to(image.dtype) / span,
                    torch.where(has_l, torch.zeros_like(span), torch.ones_like(span)))
    out = cl * (1 - t.unsqueeze(1)) + cr * t.unsqueeze(1)
    # The mean in float32 whatever the image's precision: in float16 a sum over a
    # canvas of 1280x720 / 16 cells overflows to inf.
    kf = known.to(torch.float32)
    mean = ((image.float() * kf).sum((2, 3), keepdim=True)
            / kf.sum((2, 3), keepdim=True).clamp(min=1)).to(image.dtype)
    row_has = (has_l | has_r).unsqueeze(1)
    # Known cells need no clamping here: there left == right == the cell, t == 0, so
    # ``out`` is already exactly the image.
    out = torch.where(row_has, out, mean.expand_as(out))
    if not geometry:
        return out
    run = torch.where(has_l & has_r, span, torch.full_like(span, float(w))) / 32
    geo = torch.stack([t, run], 1) * (~known).to(image.dtype)
    return out, geo


def fire_hash(ys: torch.Tensor, xs: torch.Tensor, phase: int) -> torch.Tensor:
    """Bool, about half True: a 32-bit integer hash (murmur3's finaliser) of canvas
    position and step number; looks random, is the same on every run and device."""
    m = 0xFFFFFFFF
    v = (ys.long() * 0x9E3779B1 + xs.long() * 0x85EBCA77 + (phase & m) * 0xC2B2AE3D) & m
    v = ((v ^ (v >> 16)) * 0x85EBCA6B) & m
    v = ((v ^ (v >> 13)) * 0xC2B2AE35) & m
    return ((v ^ (v >> 16)) & 1) == 1


def fire_pattern(h: int, w: int, origin: tuple[int, int], phase: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """The (h, w) inference fire pattern of a box whose top-left cell is ``origin``."""
    ys = torch.arange(origin[0], origin[0] + h, device=device).view(h, 1)
    xs = torch.arange(origin[1], origin[1] + w, device=device).view(1, w)
    return fire_hash(ys, xs, phase)


class Cells:
    """The unknown cells of a frame and their 3x3 neighbourhoods as flat indices into a
    channels-last state; built once per frame, used by every step. Neighbours past the
    border are clamped to it (replicate padding).

    ``skip`` (optional, like ``known``) leaves some unknown cells out of the update: in
    the live pipeline, cells that a person will cover completely once composited. Their
    fill would never be seen; they keep their starting colour, which their neighbours
    still perceive."""

    def __init__(self, known: torch.Tensor, skip: torch.Tensor | None = None):
        b, _, h, w = known.shape
        todo = ~known[:, 0] if skip is None else ~known[:, 0] & ~skip[:, 0]
        bi, yi, xi = todo.nonzero(as_tuple=True)
        self.b, self.y, self.x = bi, yi, xi
        d = torch.tensor([-1, 0, 1], device=known.device)
        ny = (yi[:, None, None] + d[None, :, None]).clamp(0, h - 1)
        nx = (xi[:, None, None] + d[None, None, :]).clamp(0, w - 1)
        self.neigh = ((bi[:, None, None] * h + ny) * w + nx).reshape(-1, 9)   # (N, 9)
        self.index = self.neigh[:, 4]                                         # the cell itself


def per_canvas(phase, canvas: torch.Tensor):
    """``phase`` as one step number for every canvas of a batch, or a (B,) long tensor
    when the batch joins canvases that are at different steps (rooms grown together):
    then each cell takes its own canvas's number."""
    if isinstance(phase, torch.Tensor):
        return phase.to(canvas.device).index_select(0, canvas)
    return phase


class GrowthRule:
    """Applies a ``GrowthNet`` under the growth rule; holds no per-video state itself."""

    def __init__(self, net: GrowthNet, config: RuleConfig = RuleConfig()):
        self.net = net
        self.config = config

    def init_state(self, image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        fill, geo = row_blend(image, known, geometry=True)
        hidden = image.new_zeros(b, self.net.config.channels - 6, h, w)
        return torch.cat([fill, known.to(image.dtype), geo, hidden], 1)

    def carry(self, state: torch.Tensor, image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Start a new frame from the previous state (see the module notes)."""
        fill, geo = row_blend(image, known, geometry=True)
        keep = (state[:, ALIVE:ALIVE + 1] > 0.5) & ~known   # still hidden, with a history
        # Kept cells follow this frame's starting fill at rate ``follow``: a first-order
        # low-pass in time. Sensor noise on the border, which the row blend would carry
        # straight across the gap every frame, is damped, while a real change (a light
        # switched on, a person leaving the border) arrives within a few frames instead
        # of never, as it would with a frozen fill and a network that learned to leave
        # good fills alone. Every other cell starts as in ``init_state``: known cells
        # clamped (the blend equals the image there), newly hidden ones from the blend,
        # both with hidden channels at zero. Written channel group by channel group:
        # one pass each, several times cheaper than building a fresh state and selecting.
        # The hidden channels ease toward their fresh start (zero) at the same rate.
        # Each step adds to them without bound, and a cell that stays hidden for good (a
        # gap between feeds) is stepped on every frame: held as they were, they grew
        # about 2 % a frame, wrecked the fill within 300 frames and overflowed to
        # inf / NaN after some 3,500 (training carries 4 frames, and never saw it).
        rgb = torch.where(keep, state[:, RGB].lerp(fill, self.config.follow), fill)
        alive = (keep | known).to(state.dtype)
        hidden = state[:, GEOMETRY.stop:] * (keep.to(state.dtype) * (1.0 - self.config.follow))
        return torch.cat([rgb, alive, geo, hidden], 1)

    def step(self, state: torch.Tensor, known: torch.Tensor, phase=0, cells: Cells | None = None,
             folded=None, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """One update of the unknown cells. ``phase`` numbers the step for the inference
        fire pattern (an int, or (B,) per canvas, see ``per_canvas``). Known cells are
        never touched: the work is a gather over the unknown cells and a scatter back, so
        it follows the size of the hole, not of the frame. ``cells``: the frame's
        ``Cells`` (built here when not given). ``folded``: the network's
        ``folded_gathered()`` weights, perception and first layer as one product (the
        same function up to rounding; the loop folds once per frame)."""
        cells = cells or Cells(known)
        b, c, h, w = state.shape
        flat = state.permute(0, 2, 3, 1).reshape(-1, c)       # a view if channels-last
        if cells.index.numel() == 0:
            return state
        share = flat[cells.neigh, ALIVE].mean(1)
        gate = share >= self.config.alpha - 1e-6
        scale = 1.0
        if train:
            gate = gate & (torch.rand(gate.shape, generator=generator, device=gate.device) < 0.5)
        elif self.config.schedule == "hash":
            gate = gate & fire_hash(cells.y, cells.x, per_canvas(phase, cells.b))
        else:
            scale = 0.5
        sel = gate.nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            return state
        neigh = cells.neigh[sel]
        # index_select rather than flat[neigh]: the same gather, several times faster on a CPU.
        taps = flat.index_select(0, neigh.reshape(-1))                      # (N * 9, C)
        if folded is not None:
            hidden = torch.addmm(folded[1], taps.view(neigh.shape[0], -1), folded[0])
            update = self.net.fc2(F.relu(hidden)) * scale
        else:
            update = self.net.mlp(self.net.perceive_gathered(taps.view(neigh.shape[0], 9, c))) * scale
        old = taps.view(neigh.shape[0], 9, c)[:, 4]
        # Colour stays in range, the cell becomes alive, and geometry (a fact about this
        # frame's hole, an input) ignores the update.
        new = torch.cat([(old[:, RGB] + update[:, RGB]).clamp(0, 1),
                         torch.ones_like(old[:, ALIVE:ALIVE + 1]), old[:, GEOMETRY],
                         old[:, GEOMETRY.stop:] + update[:, GEOMETRY.stop:]], 1)
        flat = flat.index_put((neigh[:, 4],), new)
        return flat.view(b, h, w, c).permute(0, 3, 1, 2)

    # ---- the dense forms ---------------------------------------------------------------

    def _update_blocks(self, blocks: torch.Tensor, todo: torch.Tensor, ys: torch.Tensor,
                       xs: torch.Tensor, phase, folded=None) -> torch.Tensor:
        """One step of the inner cells of blocks that carry a one-cell border.

        blocks (N, C, h+2, w+2), any memory format; todo (N, h, w, 1) bool; ys and xs
        canvas coordinates broadcastable to (N, h, w); ``phase`` an int or (N, 1, 1).
        Returns the inner cells after the step, (N, h, w, C): the gathered ``step``
        written for every cell, with the rule's choices as masks instead of indices."""
        net = self.net
        if folded is not None:  # perception and fc1 as one convolution (``GrowthNet.folded``)
            hidden = F.conv2d(blocks, *folded).permute(0, 2, 3, 1)
        else:
            hidden = net.fc1(net.perceive_valid(blocks).permute(0, 2, 3, 1))
        update = net.fc2(F.relu(hidden))
        old = blocks[:, :, 1:-1, 1:-1].permute(0, 2, 3, 1)
        # The alive share in float32 whatever the state's precision: it is compared
        # with a threshold, and k/9 rounded to float16 first could land on the other
        # side of an alpha set close to a multiple of 1/9.
        share = F.avg_pool2d(blocks[:, ALIVE:ALIVE + 1].float(), 3, stride=1).permute(0, 2, 3, 1)
        gate = todo & (share >= self.config.alpha - 1e-6)
        scale = 1.0
        if self.config.schedule == "hash":
            gate = gate & fire_hash(ys, xs, phase).unsqueeze(-1)
        else:
            scale = 0.5
        update = update * scale
        new = torch.cat([(old[..., RGB] + update[..., RGB]).clamp(0, 1),
                         torch.ones_like(old[..., ALIVE:ALIVE + 1]), old[..., GEOMETRY],
                         old[..., GEOMETRY.stop:] + update[..., GEOMETRY.stop:]], -1)
        return torch.where(gate, new, old)

    def step_dense(self, state: torch.Tensor, known: torch.Tensor, phase=0,
                   skip: torch.Tensor | None = None, fold: bool = False) -> torch.Tensor:
        """``step`` at inference, computed for every cell of the canvas: perception as a
        convolution (``GrowthNet.perceive``), the network on every cell, the update kept
        where the rule allows it. Static shapes, no gather; the reference for the tiled
        form. ``phase``: an int or a (B,) tensor (see ``per_canvas``)."""
        b, _, h, w = state.shape
        todo = ~known if skip is None else ~known & ~skip
        ys = torch.arange(h, device=state.device).view(1, h, 1)
        xs = torch.arange(w, device=state.device).view(1, 1, w)
        if isinstance(phase, torch.Tensor):
            phase = phase.to(state.device).view(b, 1, 1)
        padded = F.pad(state, (1, 1, 1, 1), mode="replicate")
        folded = self.net.folded() if fold else None
        new = self._update_blocks(padded, todo.permute(0, 2, 3, 1), ys, xs, phase, folded)
        return new.permute(0, 3, 1, 2)

    def tiled_steps(self, state: torch.Tensor, tiles: Tiles, phase: torch.Tensor, steps: int,
                    fold: bool = False) -> torch.Tensor:
        """``steps`` dense steps on the tiles of ``tiles`` (on the state's device);
        (B, C, H, W) in and out, the result channels-last.

        The state is worked on as (B*H*W + 1, C) with a spare row last (see
        ``tiles.py``), in place. Tensors in, a tensor out, no host synchronisation: part
        of what a CUDA graph records (``cuda_graph.GraphRunner``) or a compiler fuses.
        ``phase`` (B,) long: the number of each canvas's first step. ``fold``: perception
        and the first layer as one convolution (``GrowthNet.folded``), the same function
        up to rounding; folded here, from the weights as they are, so a graph recorded
        from this never holds stale weights."""
        b, c, h, w = state.shape
        size = tiles.size
        flat = torch.cat([state.permute(0, 2, 3, 1).reshape(-1, c), state.new_zeros(1, c)])
        read, write, ys, xs, canvas = tile_index(tiles.coords, (b, h, w), size)
        n = ys.shape[0]
        cell_todo = tiles.todo.index_select(0, write).view(n, size, size, 1)
        ys, xs = ys[:, :, None], xs[:, None, :]
        first = phase.index_select(0, canvas).view(n, 1, 1)
        folded = self.net.folded() if fold else None
        for i in range(steps):
            blocks = flat.index_select(0, read).view(n, size + 2, size + 2, c).permute(0, 3, 1, 2)
            new = self._update_blocks(blocks, cell_todo, ys, xs, first + i, folded)
            flat.index_copy_(0, write, new.reshape(-1, c))
        return flat[:-1].view(b, h, w, c).permute(0, 3, 1, 2)

    # ---- the loop ----------------------------------------------------------------------

    def advance(self, image: torch.Tensor, known: torch.Tensor, cells: torch.Tensor | None,
                phase, steps: int, *, skip: torch.Tensor | None = None, form: str = "gathered",
                tiles: Tiles | None = None, fold: bool = False, train: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The one step loop: start the cells afresh (``cells`` None) or carry them to this
        frame, then run ``steps`` steps numbered from ``phase`` (an int or (B,) long) in
        ``form``: "gathered", "dense" or "tiled" (inference only), the same function
        computed three ways. Tensors in, a tensor out; the grower records the tiled form
        as a CUDA graph, so nothing here may wait on the device.

        ``skip``: unknown cells not to update (see ``Cells``). ``tiles``: the frame's plan
        for the tiled form (planned here from the masks when not given). ``fold``:
        perception and the first layer folded into one product, the same function up to
        rounding (inference; the grower's default)."""
        if form not in ("gathered", "dense", "tiled"):
            raise ValueError(f"form must be 'gathered', 'dense' or 'tiled', got {form!r}")
        if train and form != "gathered":
            raise ValueError("training steps fire at random: only the gathered form draws them")
        if known.dtype != torch.bool:
            known = known > 0.5
        if skip is not None and skip.dtype != torch.bool:
            skip = skip > 0.5
        cells = self.init_state(image, known) if cells is None else self.carry(cells, image, known)
        if steps == 0:
            return cells
        if form == "gathered":
            # Channels-last: the per-cell gathers then read the state without a copy.
            cells = cells.contiguous(memory_format=torch.channels_last)
            plan = Cells(known, skip)
            folded = self.net.folded_gathered() if fold else None
            for i in range(steps):
                cells = self.step(cells, known, phase + i, plan, folded, train, generator)
        elif form == "dense":
            for i in range(steps):
                cells = self.step_dense(cells, known, phase + i, skip, fold)
        else:
            if not isinstance(phase, torch.Tensor):
                phase = torch.full((cells.shape[0],), int(phase), dtype=torch.long, device=cells.device)
            tiles = tiles if tiles is not None else Tiles.plan(known, skip)
            cells = self.tiled_steps(cells, tiles, phase.to(cells.device), steps, fold)
        return cells

    def begin(self, state: GrowthState | None, like: torch.Tensor, steps: int | None = None):
        """(cells to carry or None, first step number, steps) for a frame shaped like
        ``like``: a missing or differently shaped state starts afresh at step 0 with
        ``grow_steps`` steps, a carried one runs ``frame_steps``; ``steps`` overrides."""
        fresh = state is None or not state.fits(like)
        if steps is None:
            steps = self.config.grow_steps if fresh else self.config.frame_steps
        return (None, 0, steps) if fresh else (state.cells, state.phase, steps)

    def __call__(self, image: torch.Tensor, known: torch.Tensor, state: GrowthState | None = None,
                 steps: int | None = None, **options) -> tuple[torch.Tensor, GrowthState]:
        """(colour (B, 3, H, W), the state after this frame): ``advance`` from ``state`` as
        ``begin`` says. ``options``: those of ``advance`` (skip, form, tiles, fold, train,
        generator)."""
        cells, phase, steps = self.begin(state, image, steps)
        cells = self.advance(image, known, cells, phase, steps, **options)
        return cells[:, RGB], GrowthState(cells, phase + steps)
