"""The learned growth model as a pipeline grower (``--grower nca``).

numpy in, numpy out. Per frame: average the known pixels down to the working resolution
(the shared ``downsample_known``), carry the automaton's state to the new frame, run the
rule's steps, and write the upsampled colour into the unknown pixels only
(``upsample_into``). The state stays here between calls; ``reset()`` drops it and a
change of canvas size starts afresh.

A frame is three parts, so that several rooms can share the device part (``batch.py``):
``prepare`` (host: the working-resolution canvas), ``grow`` (device: any number of
canvases in one batch, each with its own carried ``Memory``) and ``finish`` (host: the
upsampled fill). ``fill`` is the three for one canvas.

Where the steps run decides how: on the CPU the rule gathers the cells to update and
their neighbours (the work follows the hole); on CUDA it steps dense tiles (static
shapes), recorded as a CUDA graph per tile bucket, optionally compiled, optionally in
half precision, with the host side staged through pinned buffers and one
synchronisation per frame. The same function either way; tests hold them together.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import ConfigError
from .base import Grower, check_inputs, downsample_known, paste_unknown, upsample_into
from .batch import LowCanvas, Memory, grow_batch
from .checkpoint import load_checkpoint
from .cuda_graph import GraphRunner, cuda_capture
from .model import ALIVE, GrowthNet
from .rule import Cells, GrowthRule, RuleConfig
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


@dataclass
class Prepared:
    """One canvas at the working resolution, on the host: all the device part needs."""

    low: np.ndarray          # float32 h x w x 3, 0..255, the mean of the known pixels
    known: np.ndarray        # bool h x w
    skip: np.ndarray | None  # bool h x w: unknown cells a person covers (not updated)


class Staging:
    """Pinned host buffers, reused frame after frame, for copies that do not block.

    A copy from ordinary (pageable) memory waits for the device to finish its queue;
    from pinned memory it is queued like a kernel. Within a frame (``begin()`` starts
    one) every request gets a buffer of its own, so a later copy never overwrites a
    buffer whose transfer is still queued; buffers are reused by later frames, after
    the synchronisation that ends each frame. They only grow (pinning memory is slow)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.buffers: dict[tuple[str, int], torch.Tensor] = {}
        self._used: dict[str, int] = {}

    def begin(self) -> None:
        self._used.clear()

    def host(self, name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        slot = self._used.get(name, 0)
        self._used[name] = slot + 1
        nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        buf = self.buffers.get((name, slot))
        if buf is None or buf.numel() < nbytes:
            buf = self.buffers[(name, slot)] = torch.empty(max(nbytes, 1), dtype=torch.uint8,
                                                           pin_memory=True)
        return buf[:nbytes].view(dtype).view(shape)

    def upload(self, name: str, array) -> torch.Tensor:
        src = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
        buf = self.host(name, tuple(src.shape), src.dtype)
        buf.copy_(src)
        return buf.to(self.device, non_blocking=True)


class NCAGrower(Grower):
    name = "nca"

    def __init__(self, device: str = "auto", checkpoint: str | os.PathLike | None = None,
                 half: bool = False, steps: int | None = None,
                 net: GrowthNet | None = None, rule: RuleConfig | None = None,
                 factor: int = 4, tiled: bool | None = None, tile: int = TILE,
                 graphs: bool | None = None, fold: bool = True, compile: bool = False):
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
        tiled frame (off by default: every new tile bucket compiles anew, seconds each)."""
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
        self.state: torch.Tensor | None = None
        self.phase = 0          # number of the next step (the hash schedule's clock)
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
        self.staging = Staging(self.device) if cuda else None
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        self.timing = False  # record where the device time goes, into ``last_ms``
        self.last_ms: dict[str, float] = {}

    def record_graphs(self, capture=cuda_capture) -> None:
        """Run the tiled frame from recorded graphs, one per (fresh or carried, canvas
        batch and size, tile bucket, steps). ``capture``: how to record; a test on the
        CPU passes ``cuda_graph.eager_capture`` to run the same buffer logic."""
        if not self.tiled:
            raise ValueError("graphs record the tiled step; this grower gathers")
        fn = self._frame_fn
        self.runners = {"fresh": GraphRunner(lambda *t: fn(t[0], t[1], None, *t[2:]), capture),
                        "carried": GraphRunner(fn, capture)}

    def reset(self) -> None:
        self.state = None
        self.phase = 0

    # ---- host: in and out of the working resolution ---------------------------------------

    def prepare(self, image: np.ndarray, known: np.ndarray,
                covered: np.ndarray | None = None) -> Prepared | np.ndarray:
        """The working-resolution canvas, or the finished image when there is nothing to
        grow (all known) or nothing to grow from (nothing known). Host only, no state:
        safe from any thread."""
        check_inputs(image, known)
        if known.all():
            return image.copy()
        low, low_known = downsample_known(image, known, self.factor)
        if not low_known.any():
            return paste_unknown(image, known, np.full_like(image, 127))
        return Prepared(low, low_known, self._skip(covered, low_known.shape))

    def _skip(self, covered: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        """Working-resolution cells covered by a person in every pixel, shrunk by one
        cell so the cells next to what shows are still grown."""
        if covered is None:
            return None
        h, w = shape
        frac = cv2.resize(covered.view(np.uint8) * np.uint8(255), (w, h), interpolation=cv2.INTER_AREA)
        skip = cv2.erode((frac == 255).view(np.uint8), np.ones((3, 3), np.uint8))
        if not skip.any():
            return None
        return skip.view(bool)

    @staticmethod
    def finish(image: np.ndarray, known: np.ndarray, low_rgb: np.ndarray) -> np.ndarray:
        return upsample_into(image, known, low_rgb)

    # ---- device: the rule's steps ----------------------------------------------------------

    def _canvas(self, p: Prepared) -> LowCanvas:
        if self.staging is None:
            image = torch.from_numpy(p.low * (1 / 255)).permute(2, 0, 1).unsqueeze(0)
            known = torch.from_numpy(p.known)[None, None]
            skip = None if p.skip is None else torch.from_numpy(p.skip)[None, None]
            return LowCanvas(image.to(self.dtype), known, skip, known, skip)
        image = self.staging.upload("image", p.low).permute(2, 0, 1).unsqueeze(0)
        known = self.staging.upload("known", p.known)[None, None]
        skip = None if p.skip is None else self.staging.upload("skip", p.skip)[None, None]
        host_known = torch.from_numpy(p.known)[None, None]
        host_skip = None if p.skip is None else torch.from_numpy(p.skip)[None, None]
        return LowCanvas(image.mul(1 / 255).to(self.dtype), known, skip, host_known, host_skip)

    def _run(self, group: LowCanvas, prev: torch.Tensor | None, steps: int, phase):
        """Start a batch of canvases (fresh when ``prev`` is None, else carried) and run
        its steps; returns (state, uint8 colour (B, h, w, 3) or None), tensors of their own."""
        if not self.tiled:
            if prev is None:
                state = self.rule.init_state(group.image, group.known)
            else:
                state = self.rule.carry(prev, group.image, group.known)
            if steps == 0:
                return state, None
            # Channels-last: the rule's per-cell gathers then read the state without a copy.
            state = state.contiguous(memory_format=torch.channels_last)
            cells = Cells(group.known, group.skip)
            folded = self.net.folded_gathered() if self.fold else None
            for i in range(steps):
                state = self.rule.step(state, group.image, group.known, phase=phase + i, cells=cells,
                                       folded=folded)
            return state, None
        # Plan on the host masks (no wait on the device), send coordinates and mask.
        plan = Tiles(group.host_known, group.host_skip, size=self.tile)
        if plan.used == 0:
            steps = 0
        b, _, h, w = group.known.shape
        if isinstance(phase, int):
            phase = torch.full((b,), phase, dtype=torch.long)
        if self.staging is not None:
            coords = self.staging.upload("coords", plan.coords)
            todo = self.staging.upload("todo", plan.todo)
            phase = self.staging.upload("phase", phase)
        else:
            coords, todo = plan.coords, plan.todo
        static = ((b, h, w), self.tile, steps)
        if self.runners is None:
            return self._frame_fn(group.image, group.known, prev, todo, coords, phase, *static)
        if prev is None:
            state, colour = self.runners["fresh"](group.image, group.known, todo, coords, phase, static=static)
        else:
            state, colour = self.runners["carried"](group.image, group.known, prev, todo, coords, phase,
                                                    static=static)
        return state.clone(), colour.clone()  # the graph's buffers change at its next replay

    def _tiled_frame(self, image, known, prev, todo, coords, phase, shape, size, steps):
        """The whole device part of a tiled frame, as one recordable function: start (or
        carry) the state, run the steps on tiles, and round the colour to uint8 (the
        host's ``to_uint8`` in the same float32 steps), a third of the bytes to copy back."""
        state = self.rule.init_state(image, known) if prev is None else self.rule.carry(prev, image, known)
        b, c, h, w = state.shape
        flat = torch.cat([state.permute(0, 2, 3, 1).reshape(-1, c), state.new_zeros(1, c)])
        flat = self.rule.tiled_steps(flat, todo, coords, phase, shape, size, steps, fold=self.fold)
        state = flat[:-1].view(b, h, w, c).permute(0, 3, 1, 2)
        colour = (state[:, :ALIVE].permute(0, 2, 3, 1).float() * 255 + 0.5).clamp(0, 255).to(torch.uint8)
        return state, colour

    def grow(self, frames: list[Prepared], memories: list[Memory]
             ) -> tuple[list[np.ndarray], list[Memory]]:
        """The device part for any number of canvases at once: each grows from its own
        ``Memory`` (fresh ones ``grow_steps``, carried ones ``frame_steps``); returns the
        working-resolution colours (h x w x 3, for ``finish``) and the new memories.
        One thread at a time."""
        with torch.inference_mode(), self._on_stream():
            if self.staging is not None:
                self.staging.begin()
            marks = [self._mark()]
            canvases = [self._canvas(p) for p in frames]
            marks.append(self._mark())
            grown = grow_batch(self.rule, self._run, canvases, memories)
            marks.append(self._mark())
            colours = self._download(grown)
            marks.append(self._mark())
        if self.timing:
            self.last_ms = self._elapsed(marks)
        return colours, [m for m, _ in grown]

    def _download(self, grown: list[tuple[Memory, torch.Tensor | None]]) -> list[np.ndarray]:
        if self.staging is None:
            return [m.state[0, :ALIVE].permute(1, 2, 0).float().mul(255).cpu().numpy() for m, _ in grown]
        # Queue every copy, then one synchronisation for all canvases.
        hosts = []
        for m, colour in grown:
            if colour is None:  # the gathered form: round here as the tiled frame does
                colour = (m.state[0, :ALIVE].permute(1, 2, 0).float() * 255 + 0.5).clamp(0, 255).to(torch.uint8)
            buf = self.staging.host("rgb", tuple(colour.shape), torch.uint8)
            buf.copy_(colour, non_blocking=True)
            hosts.append(buf)
        self.stream.synchronize()
        return [h.numpy().copy() for h in hosts]  # the pinned buffers are reused next frame

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else _nothing()

    def _mark(self):
        if not self.timing:
            return None
        if self.stream is None:
            return time.perf_counter()
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(self.stream)
        return ev

    def _elapsed(self, marks) -> dict[str, float]:
        names = ("upload", "steps", "download")
        if self.stream is None:
            return {n: (b - a) * 1e3 for n, a, b in zip(names, marks, marks[1:])}
        return {n: a.elapsed_time(b) for n, a, b in zip(names, marks, marks[1:])}

    # ---- the Grower interface ---------------------------------------------------------------

    def fill(self, image: np.ndarray, known: np.ndarray,
             covered: np.ndarray | None = None) -> np.ndarray:
        prepared = self.prepare(image, known, covered)
        if isinstance(prepared, np.ndarray):
            self.state = None
            return prepared
        (rgb,), (memory,) = self.grow([prepared], [Memory(self.state, self.phase)])
        self.state, self.phase = memory.state, memory.phase
        return self.finish(image, known, rgb)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
