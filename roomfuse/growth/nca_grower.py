"""The learned growth model as a pipeline grower (``--grower nca``).

numpy in, numpy out. Per frame: average the known pixels down to the working resolution
(the shared ``downsample_known``), carry the automaton's state to the new frame, run the
rule's steps, and write the upsampled colour into the unknown pixels only
(``upsample_into``). The state (a ``GrowthState``) stays here between calls; ``reset()``
drops it and a change of canvas size starts afresh.

A frame is three parts, so that several rooms can share the device part (``batch.py``):
``prepare`` (host: the working-resolution canvas), ``grow`` (device: any number of
canvases in one batch, each from its own carried state) and ``finish`` (host: the
upsampled fill). ``fill`` is the three for one canvas.

Where the steps run decides how: on the CPU the rule gathers the cells to update and
their neighbours (the work follows the hole); on CUDA it steps dense tiles (static
shapes), recorded as a CUDA graph per tile bucket, optionally compiled, optionally in
half precision, with the host side staged through pinned buffers and one
synchronisation per frame (``staging.py``). The same function either way (the rule's
one loop, ``GrowthRule.advance``); tests hold them together.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import ConfigError
from ..regions import halve
from .base import Grower, check_inputs, downsample_known, paste_unknown, upsample_into
from .checkpoint import load_checkpoint
from .cuda_graph import GraphRunner, cuda_capture
from .model import GrowthNet
from .rule import GrowthRule, GrowthState, RuleConfig
from .staging import LowCanvas, Prepared, Staging, colour_bytes
from .tiles import TILE, Tiles

# The shipped weights are package data, so an installed wheel has them too.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "nca.pt"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device on this machine (use --device auto or cpu)")
    return torch.device(device)


class NCAGrower(Grower):
    name = "nca"

    def __init__(self, device: str = "auto", checkpoint: str | os.PathLike | None = None,
                 half: bool = False, steps: int | None = None,
                 net: GrowthNet | None = None, rule: RuleConfig | None = None,
                 factor: int = 4, tiled: bool | None = None, tile: int = TILE,
                 graphs: bool | None = None, fold: bool = True, compile: bool = False,
                 work_height: int | None = None):
        """Loads ``checkpoint`` (else the shipped ``DEFAULT_CHECKPOINT``) unless an
        in-memory ``net`` is given (training uses that for validation). ``half`` runs in
        float16 and is honoured on CUDA only, where it changes results slightly.
        ``steps`` overrides the steps per carried frame.

        How the steps run (None: chosen by device): ``tiled`` dense tiles of ``tile``
        cells instead of gathered cells (CUDA: yes; on the CPU gathering is several
        times faster); ``graphs`` the tiled frame (carry, steps, colour out) replayed
        from CUDA graphs (CUDA only); ``fold`` (default on) perception folded into the
        first layer: one convolution in the tiled form, one matrix product in the
        gathered form, the same function up to rounding; ``compile`` torch.compile the
        tiled frame (off by default: every new tile bucket compiles anew, seconds each).
        ``work_height`` (None: off): a canvas k whole times taller than this grows at k
        times the factor, so its working grid holds what the model sees on a canvas of
        this height (a 720-high call at 1/8 is the same grid as a 360-high one at 1/4);
        the live pipeline's grower, not the still fills, which keep the factor."""
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        if net is None:
            path = checkpoint or DEFAULT_CHECKPOINT
            net, rule, factor, self.meta = load_checkpoint(path, self.device)
        else:
            self.meta = {}
        self.dtype = torch.float16 if half and cuda else torch.float32
        self.net = net.to(self.device, self.dtype).eval()
        rule = rule or RuleConfig()
        if steps is not None:
            rule = RuleConfig(**{**rule.to_dict(), "frame_steps": int(steps)})
        self.rule = GrowthRule(self.net, rule)
        self.factor = int(factor)
        self.work_height = work_height
        self.state: GrowthState | None = None
        self.tiled = cuda if tiled is None else bool(tiled)
        self.tile = int(tile)
        self.fold = bool(fold)
        graphs = cuda and self.tiled if graphs is None else bool(graphs)
        if graphs and not (cuda and self.tiled):
            raise ValueError("CUDA graphs need device 'cuda' and the tiled step")
        frame_fn = self._tiled_frame
        if compile:
            frame_fn = torch.compile(frame_fn, dynamic=False)
        self._frame_fn = frame_fn
        self.runners: dict[str, GraphRunner] | None = None
        if graphs:
            self.record_graphs()
        self.staging = Staging(self.device)
        self.timing = False  # record where the device time goes, into ``last_ms``
        self.last_ms: dict[str, float] = {}

    def record_graphs(self, capture=cuda_capture) -> None:
        """Run the tiled frame from recorded graphs, one per (fresh or carried, canvas
        batch and size, tile bucket, steps). ``capture``: how to record; a test on the
        CPU passes ``cuda_graph.eager_capture`` to run the same buffer logic."""
        if not self.tiled:
            raise ValueError("graphs record the tiled step; this grower gathers")
        fn = self._frame_fn
        self.runners = {"fresh": GraphRunner(lambda image, known, todo, coords, size, steps:
                                             fn(image, known, todo, coords, None, 0, size, steps), capture),
                        "carried": GraphRunner(fn, capture)}

    def reset(self) -> None:
        self.state = None

    # ---- host: in and out of the working resolution ---------------------------------------

    def prepare(self, image: np.ndarray, known: np.ndarray,
                covered: np.ndarray | None = None) -> Prepared | np.ndarray:
        """The working-resolution canvas, or the finished image when there is nothing to
        grow (all known) or nothing to grow from (nothing known). Host only, no state:
        safe from any thread."""
        check_inputs(image, known)
        if known.all():
            return image.copy()
        low, low_known = downsample_known(image, known, self.factor_for(image.shape[0]))
        if not low_known.any():
            return paste_unknown(image, known, np.full_like(image, 127))
        return Prepared(low, low_known, self._skip(covered, low_known.shape))

    def factor_for(self, height: int) -> int:
        """The working factor for a canvas ``height`` pixels tall."""
        if not self.work_height:
            return self.factor
        return self.factor * max(1, height // self.work_height)

    def _skip(self, covered: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        """Working-resolution cells covered by a person in every pixel, shrunk by one
        cell so the cells next to what shows are still grown."""
        if covered is None:
            return None
        h, w = shape
        full = cv2.compare(covered.view(np.uint8), 0, cv2.CMP_GT)  # 0 / 255
        factor = covered.shape[0] // h
        # Halvings keep a block that is all 255 at 255 and take any other below it.
        frac = halve(full, factor) if covered.shape == (h * factor, w * factor) else None
        if frac is None:
            frac = cv2.resize(full, (w, h), interpolation=cv2.INTER_AREA)
        skip = cv2.erode((frac == 255).view(np.uint8), np.ones((3, 3), np.uint8))
        if not skip.any():
            return None
        return skip.view(bool)

    @staticmethod
    def finish(image: np.ndarray, known: np.ndarray, low_rgb: np.ndarray) -> np.ndarray:
        return upsample_into(image, known, low_rgb)

    # ---- device: the rule's steps ----------------------------------------------------------

    def grow(self, frames: list[Prepared], states: list[GrowthState | None]
             ) -> tuple[list[np.ndarray], list[GrowthState]]:
        """The device part for any number of canvases at once: each grows from its own
        state (None: afresh). Returns the working-resolution colours (h x w x 3, for
        ``finish``) and the new states. One thread at a time.

        Canvases of one size and freshness grow as one batch (fresh ones ``grow_steps``,
        carried ones ``frame_steps``); each grows as it would alone (bit for bit on a
        CPU; on a GPU the kernels chosen for a larger batch may round differently)."""
        staging = self.staging
        with torch.inference_mode(), staging.on_stream():
            staging.begin()
            marks = [staging.mark()] if self.timing else []
            canvases = [staging.canvas(p, self.dtype) for p in frames]
            if self.timing:
                marks.append(staging.mark())
            groups: dict[tuple, list[int]] = {}
            for i, (c, s) in enumerate(zip(canvases, states)):
                fresh = s is None or not s.fits(c.known)
                groups.setdefault((fresh, tuple(c.known.shape[2:])), []).append(i)
            grown: list = [None] * len(frames)
            colours: list = [None] * len(frames)
            for (fresh, _), idx in groups.items():
                prev = None if fresh else GrowthState.join([states[i] for i in idx])
                state, colour = self._grow_group(LowCanvas.join([canvases[i] for i in idx]), prev)
                for j, (i, one) in enumerate(zip(idx, state.split())):
                    grown[i], colours[i] = one, None if colour is None else colour[j]
            if self.timing:
                marks.append(staging.mark())
            out = staging.download([g.cells for g in grown], colours)
            if self.timing:
                marks.append(staging.mark())
        if self.timing:
            self.last_ms = staging.elapsed(marks, ("upload", "steps", "download"))
        return out, grown

    def _grow_group(self, group: LowCanvas, prev: GrowthState | None, steps: int | None = None
                    ) -> tuple[GrowthState, torch.Tensor | None]:
        """One batch of canvases through the rule's loop (fresh when ``prev`` is None);
        returns the new state and, from the tiled form, the uint8 colour (B, h, w, 3)."""
        cells, phase, steps = self.rule.begin(prev, group.known, steps)
        if not self.tiled:
            cells = self.rule.advance(group.image, group.known, cells, phase, steps,
                                      skip=group.skip, fold=self.fold)
            return GrowthState(cells, phase + steps), None
        # Plan on the host masks (no wait on the device); send the plan and the clock.
        plan = Tiles.plan(group.host_known, group.host_skip, size=self.tile)
        tensors = [group.image, group.known, self.staging.upload("todo", plan.todo),
                   self.staging.upload("coords", plan.coords)]
        if cells is not None:
            clock = phase if isinstance(phase, torch.Tensor) else \
                torch.full((group.known.shape[0],), phase, dtype=torch.long)
            tensors += [cells, self.staging.upload("phase", clock)]
        # Nothing to update: only carry (the clock runs on all the same).
        static = (self.tile, steps if plan.used else 0)
        if self.runners is None:
            start = [None, 0] if cells is None else []   # afresh, from step 0
            cells, colour = self._frame_fn(*tensors, *start, *static)
        else:
            runner = self.runners["fresh" if cells is None else "carried"]
            cells, colour = runner(*tensors, static=static)
            cells, colour = cells.clone(), colour.clone()  # the graph's buffers change at its next replay
        return GrowthState(cells, phase + steps), colour

    def _tiled_frame(self, image, known, todo, coords, cells, phase, size, steps):
        """The whole device part of a tiled frame, as one recordable function: the rule's
        loop on the planned tiles (``cells`` None starts afresh), then the colour rounded
        to uint8 on the device."""
        cells = self.rule.advance(image, known, cells, phase, steps, form="tiled",
                                  tiles=Tiles(coords, todo, size), fold=self.fold)
        return cells, colour_bytes(cells)

    # ---- the Grower interface ---------------------------------------------------------------

    def fill(self, image: np.ndarray, known: np.ndarray,
             covered: np.ndarray | None = None) -> np.ndarray:
        prepared = self.prepare(image, known, covered)
        if isinstance(prepared, np.ndarray):
            self.state = None
            return prepared
        (rgb,), (self.state,) = self.grow([prepared], [self.state])
        return self.finish(image, known, rgb)
