"""Between the host and the device: canvases up, colours down, on a stream of their own.

The grower's frame is host work (resampling, in numpy) around device work (the rule's
steps, in torch). This module is the border between the two:

- ``Prepared``: one canvas at the working resolution on the host, what the device part
  needs; ``LowCanvas``: a batch of them on the device;
- ``Staging``: moves them across. On CUDA, copies go through pinned host buffers reused
  frame after frame, on a stream of the grower's own, with one synchronisation per
  frame; on a CPU the same calls only wrap the arrays as tensors;
- ``colour_bytes``: a state's colour rounded to uint8 on the device (the host's
  ``to_uint8`` in the same float32 steps), a third of the bytes to copy back.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from .model import ALIVE


@dataclass
class Prepared:
    """One canvas at the working resolution, on the host: all the device part needs."""

    low: np.ndarray          # float32 h x w x 3, 0..255, the mean of the known pixels
    known: np.ndarray        # bool h x w
    skip: np.ndarray | None  # bool h x w: unknown cells a person covers (not updated)


@dataclass
class LowCanvas:
    """A batch of canvases at the working resolution, on the grower's device."""

    image: torch.Tensor               # (B, 3, h, w), 0..1
    known: torch.Tensor               # (B, 1, h, w) bool
    skip: torch.Tensor | None         # (B, 1, h, w) bool: unknown cells not to update
    host_known: torch.Tensor          # the masks again on the host, for planning tiles
    host_skip: torch.Tensor | None    # without waiting on the device

    @staticmethod
    def join(parts: list["LowCanvas"]) -> "LowCanvas":
        """One batch of canvases of one size (a canvas without a skip mask gets zeros)."""
        if len(parts) == 1:
            return parts[0]
        return LowCanvas(torch.cat([c.image for c in parts]), torch.cat([c.known for c in parts]),
                         _join_masks([c.skip for c in parts], [c.known for c in parts]),
                         torch.cat([c.host_known for c in parts]),
                         _join_masks([c.host_skip for c in parts], [c.host_known for c in parts]))


def _join_masks(parts: list, like: list) -> torch.Tensor | None:
    if all(p is None for p in parts):
        return None
    return torch.cat([p if p is not None else torch.zeros_like(k) for p, k in zip(parts, like)])


def colour_bytes(cells: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) state -> (B, h, w, 3) uint8 colour."""
    return (cells[:, :ALIVE].permute(0, 2, 3, 1).float() * 255 + 0.5).clamp(0, 255).to(torch.uint8)


class Staging:
    """Uploads, downloads and the stream they run on, for one grower's device.

    A copy from ordinary (pageable) memory waits for the device to finish its queue;
    from pinned memory it is queued like a kernel. Within a frame (``begin()`` starts
    one) every request gets a buffer of its own, so a later copy never overwrites a
    buffer whose transfer is still queued; buffers are reused by later frames, after
    the synchronisation that ends each frame. They only grow (pinning memory is slow)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.buffers: dict[tuple[str, int], torch.Tensor] = {}
        self._used: dict[str, int] = {}

    def begin(self) -> None:
        self._used.clear()

    def on_stream(self):
        """Context in which the frame's device work is queued (the grower's stream)."""
        return torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext()

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
        """An array or host tensor on the device (on a CPU: the same memory, as a tensor)."""
        src = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
        if not self.cuda:
            return src
        buf = self.host(name, tuple(src.shape), src.dtype)
        buf.copy_(src)
        return buf.to(self.device, non_blocking=True)

    def canvas(self, p: Prepared, dtype: torch.dtype) -> LowCanvas:
        host_known = torch.from_numpy(p.known)[None, None]
        host_skip = None if p.skip is None else torch.from_numpy(p.skip)[None, None]
        if not self.cuda:
            image = torch.from_numpy(p.low * (1 / 255)).permute(2, 0, 1).unsqueeze(0)
            return LowCanvas(image.to(dtype), host_known, host_skip, host_known, host_skip)
        image = self.upload("image", p.low).permute(2, 0, 1).unsqueeze(0)
        known = self.upload("known", p.known)[None, None]
        skip = None if p.skip is None else self.upload("skip", p.skip)[None, None]
        return LowCanvas(image.mul(1 / 255).to(dtype), known, skip, host_known, host_skip)

    def download(self, cells: list[torch.Tensor], colours: list[torch.Tensor | None]) -> list[np.ndarray]:
        """Each canvas's colour on the host, h x w x 3, from its (1, C, h, w) ``cells`` or
        the uint8 ``colours`` already rounded on the device. On a CPU float32 0..255,
        unrounded; on CUDA uint8, every copy queued, then one synchronisation."""
        if not self.cuda:
            return [c[0, :ALIVE].permute(1, 2, 0).float().mul(255).cpu().numpy() for c in cells]
        hosts = []
        for c, colour in zip(cells, colours):
            colour = colour_bytes(c)[0] if colour is None else colour
            buf = self.host("rgb", tuple(colour.shape), torch.uint8)
            buf.copy_(colour, non_blocking=True)
            hosts.append(buf)
        self.stream.synchronize()
        return [h.numpy().copy() for h in hosts]  # the pinned buffers are reused next frame

    def mark(self):
        """A point in the frame's device time: a CUDA event on the stream, else a clock."""
        if not self.cuda:
            return time.perf_counter()
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(self.stream)
        return ev

    def elapsed(self, marks: list, names: tuple[str, ...]) -> dict[str, float]:
        """Milliseconds between consecutive marks (after the frame's synchronisation)."""
        if not self.cuda:
            return {n: (b - a) * 1e3 for n, a, b in zip(names, marks, marks[1:])}
        marks[-1].synchronize()
        return {n: a.elapsed_time(b) for n, a, b in zip(names, marks, marks[1:])}
