"""Replay a frame's step loop as a CUDA graph: one launch instead of a hundred small ones.

A frame of the growth model is a few dozen small kernels per step; on a GPU their launch
overhead, not their arithmetic, sets the time. ``GraphRunner(fn)`` records ``fn`` once
per input signature (shapes, dtypes, device) and replays the recording afterwards:

- inputs are copied into static buffers the graph reads, outputs come back in static
  buffers the graph writes; they stay valid until the next call with the same
  signature, so a caller that keeps one copies it;
- capture follows the CUDA-graph recipe: a few warm-up calls on a side stream (lazy
  initialisation, allocator pools, cuDNN's choice of algorithm happen there, not in the
  graph), then the recording, under a process-wide lock and in thread-local capture
  mode, so rooms working on the GPU from other threads do not break it;
- a new tile bucket or canvas size is a new signature and records a new graph; the
  oldest is dropped beyond ``max_graphs``;
- any failure to record (an op that synchronises, an old driver) logs once and the
  runner calls ``fn`` eagerly from then on: slower, never wrong.

``capture`` is a parameter so the buffer logic can run without CUDA: ``eager_capture``
records nothing and replays by calling ``fn`` on the same static buffers, which is what
a test on the CPU uses.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

_capture_lock = threading.Lock()


class _Recorded:
    """What a capture returns: ``replay()`` runs the recording; outputs are fixed tensors."""

    def __init__(self, replay: Callable[[], None], outputs: tuple[torch.Tensor, ...], graph=None):
        self.replay = replay
        self.outputs = outputs
        self.graph = graph  # keeps a CUDA graph (and its memory pool) alive


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def cuda_capture(fn: Callable, inputs: Sequence[torch.Tensor], warmup: int = 2) -> _Recorded:
    """Record ``fn(*inputs)`` into a CUDA graph (inputs are the static buffers)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with _capture_lock, torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = _as_tuple(fn(*inputs))
    return _Recorded(graph.replay, outputs, graph)


def eager_capture(fn: Callable, inputs: Sequence[torch.Tensor], warmup: int = 2) -> _Recorded:
    """A stand-in with a graph's contract and no CUDA: replay calls ``fn`` on the static
    inputs and copies the results into the outputs of the first call."""
    outputs = tuple(t.clone() for t in _as_tuple(fn(*inputs)))

    def replay():
        for o, t in zip(outputs, _as_tuple(fn(*inputs))):
            if t is not o:
                o.copy_(t)
    return _Recorded(replay, outputs)


def signature(inputs: Sequence[torch.Tensor]) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)


class GraphRunner:
    """``runner(*tensors)`` computes ``fn(*tensors)`` by replaying a recording of it.

    ``fn`` must take and return tensors only, keep its shapes fixed for fixed input
    shapes and never synchronise with the host. It may write its inputs in place (the
    growth step updates the state it is given); the static copy is what it writes."""

    def __init__(self, fn: Callable, capture: Callable = cuda_capture, max_graphs: int = 8,
                 warmup: int = 2):
        self.fn = fn
        self.capture = capture
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.graphs: OrderedDict[tuple, tuple[list[torch.Tensor], _Recorded]] = OrderedDict()
        self.recorded = 0  # graphs recorded so far (a new one per new signature)
        self.failed: str | None = None  # why recording was given up, once it was

    def __call__(self, *inputs: torch.Tensor, static: tuple = ()) -> tuple[torch.Tensor, ...]:
        """``static``: further arguments that are not tensors (sizes, step counts); they
        are part of the signature and passed after the tensors."""
        if self.failed is not None:
            return _as_tuple(self.fn(*inputs, *static))
        key = signature(inputs) + (static,)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._record(key, inputs, static)
            if entry is None:
                return _as_tuple(self.fn(*inputs, *static))
        else:
            self.graphs.move_to_end(key)
        static, recorded = entry
        for s, t in zip(static, inputs):
            s.copy_(t)
        recorded.replay()
        return recorded.outputs

    def _record(self, key: tuple, inputs: Sequence[torch.Tensor], args: tuple):
        static = [t.clone() for t in inputs]
        try:
            recorded = self.capture(lambda *t: self.fn(*t, *args), static, self.warmup)
        except Exception as e:  # any failure: fall back to eager for good
            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            log.warning("growth step: CUDA graph capture failed (%s); running eagerly", self.failed)
            self.graphs.clear()
            return None
        self.recorded += 1
        self.graphs[key] = (static, recorded)
        while len(self.graphs) > self.max_graphs:
            self.graphs.popitem(last=False)
        return static, recorded
