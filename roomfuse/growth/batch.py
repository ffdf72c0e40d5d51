"""Growing several canvases in one call, so one GPU serves many rooms.

A room's growth step is small: at 1/4 resolution a 1280x720 canvas has 57,600 cells,
and on a GPU a frame of it costs launch overhead rather than arithmetic. Rooms that
grow together pay that overhead once. Two pieces:

- ``grow_batch``: canvases of several rooms through the rule in one batch, each with
  its own carried ``Memory`` (state and step number). Fresh canvases (no state, or the
  canvas changed size) take ``grow_steps`` and carried ones ``frame_steps``, so they are
  grouped by that and by size; every canvas grows as it would alone (bit for bit on a
  CPU; on a GPU the kernels chosen for a larger batch may round differently).
- ``GrowthService``: a thread that collects grow requests from the rooms' pipeline
  threads and runs each round as one batch. A round starts at the first request and
  ends when every live room has asked or ``max_wait_s`` has passed, whichever is
  first. Live: a member that asked within ``live_s`` (a room with nobody sending video
  composes nothing and is not waited for); a room that leaves stops being waited for at
  once; one live room alone never waits. An error goes back to the room whose canvas
  caused it. ``BatchedGrower`` is a room's handle on it: a ``Grower`` whose host work
  (downsampling, upsampling) stays in the room's own thread.

Batching pays only where the device work is launch-bound, i.e. on CUDA; on a CPU the
rooms' growth is arithmetic that batching cannot shrink, and the round adds waiting
(see ``use_batching``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import RoomfuseError
from .base import Grower

log = logging.getLogger(__name__)


@dataclass
class LowCanvas:
    """A batch of canvases at the working resolution, on the grower's device."""

    image: torch.Tensor               # (B, 3, h, w), 0..1
    known: torch.Tensor               # (B, 1, h, w) bool
    skip: torch.Tensor | None         # (B, 1, h, w) bool: unknown cells not to update
    host_known: torch.Tensor | None = None  # the masks again on the host, for planning
    host_skip: torch.Tensor | None = None   # tiles without waiting on the device


@dataclass
class Memory:
    """What a canvas carries from frame to frame: the automaton's state and the number
    of its next step (the hash schedule's clock)."""

    state: torch.Tensor | None = None
    phase: int = 0


def _join(parts: list, like: list) -> torch.Tensor | None:
    """Concatenate masks along the batch; a canvas without one gets zeros."""
    if all(p is None for p in parts):
        return None
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p if p is not None else torch.zeros_like(k) for p, k in zip(parts, like)])


def _cat(ts: list[torch.Tensor]) -> torch.Tensor:
    return ts[0] if len(ts) == 1 else torch.cat(ts)


def grow_batch(rule, run: Callable, canvases: list[LowCanvas], memories: list[Memory]
               ) -> list[tuple[Memory, torch.Tensor | None]]:
    """Grow each canvas (batch size 1 each) from its memory; returns, per canvas, the new
    memory and the colour ``run`` gave for it (or None).

    ``run(canvas, prev, steps, phase) -> (state, colour or None)`` starts a batched
    ``LowCanvas`` (``rule.init_state`` when ``prev`` is None, else ``rule.carry``) and
    runs its steps: the grower's gathered or tiled loop. ``phase`` is an int for one
    canvas, a (B,) long tensor for several. Canvases of one size and freshness share
    one call."""
    groups: dict[tuple, list[int]] = {}
    for i, (c, m) in enumerate(zip(canvases, memories)):
        size = tuple(c.known.shape[2:])
        fresh = m.state is None or tuple(m.state.shape[2:]) != size
        groups.setdefault((fresh, size), []).append(i)
    out: list = [None] * len(canvases)
    for (fresh, _), idx in groups.items():
        part = [canvases[i] for i in idx]
        knowns = [c.known for c in part]
        group = LowCanvas(_cat([c.image for c in part]), _cat(knowns), _join([c.skip for c in part], knowns),
                          None if part[0].host_known is None else _cat([c.host_known for c in part]),
                          None if part[0].host_known is None else
                          _join([c.host_skip for c in part], [c.host_known for c in part]))
        if fresh:
            prev, steps, phases = None, rule.config.grow_steps, [0] * len(idx)
        else:
            prev = _cat([memories[i].state for i in idx])
            steps, phases = rule.config.frame_steps, [memories[i].phase for i in idx]
        phase = phases[0] if len(idx) == 1 else torch.tensor(phases, dtype=torch.long)
        state, colour = run(group, prev, steps, phase)
        for j, i in enumerate(idx):
            one = state if len(idx) == 1 else state[j:j + 1]
            out[i] = (Memory(one, phases[j] + steps), None if colour is None else colour[j])
    return out


class GrowthServiceError(RoomfuseError):
    """The shared growth service is closed or stopped answering."""


class _Request:
    __slots__ = ("prepared", "memory", "done", "result", "error")

    def __init__(self, prepared, memory: Memory):
        self.prepared, self.memory = prepared, memory
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class GrowthService:
    """Runs the device part of every member's growth, a round at a time, in one thread.

    ``engine`` is an ``NCAGrower`` (``prepare``/``grow``/``finish``); only this thread
    calls its ``grow``. ``client()`` makes a member, ``BatchedGrower.close()`` ends one."""

    def __init__(self, engine, max_wait_s: float = 0.004, max_batch: int = 64, live_s: float = 1.0):
        self.engine = engine
        self.max_wait_s = float(max_wait_s)
        self.max_batch = int(max_batch)
        self.live_s = float(live_s)
        self.rounds = Counter()  # batch size -> rounds of that size
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._last_ask: dict[int, float] = {}  # member id -> when it last asked (or -inf)
        self._ids = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="growth-batch", daemon=True)
        self._thread.start()

    @property
    def members(self) -> int:
        return len(self._last_ask)

    def client(self) -> "BatchedGrower":
        with self._cond:
            if self._closed:
                raise GrowthServiceError("the growth service is closed")
            self._ids += 1
            self._last_ask[self._ids] = -float("inf")
            return BatchedGrower(self, self._ids)

    def _leave(self, member: int) -> None:
        with self._cond:
            self._last_ask.pop(member, None)
            self._cond.notify_all()  # a round waiting for this member can end now

    def _live(self) -> int:
        since = time.monotonic() - self.live_s
        return sum(1 for t in self._last_ask.values() if t >= since)

    def submit(self, prepared, memory: Memory, member: int = 0):
        """(colour, new memory) for one canvas, grown in the next round; blocks."""
        req = _Request(prepared, memory)
        with self._cond:
            if self._closed:
                raise GrowthServiceError("the growth service is closed")
            if member in self._last_ask:
                self._last_ask[member] = time.monotonic()
            self._pending.append(req)
            self._cond.notify_all()
        # No fixed timeout: a first CUDA graph or a compile can take seconds. Only a
        # service thread that died unanswered is an error.
        while not req.done.wait(1.0):
            if not self._thread.is_alive() and not req.done.is_set():
                raise GrowthServiceError("the growth service stopped without answering")
        if req.error is not None:
            raise req.error
        return req.result

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed, nothing left to answer
                deadline = time.monotonic() + self.max_wait_s
                while not self._closed and len(self._pending) < min(self._live(), self.max_batch):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = self._pending[:self.max_batch]
                del self._pending[:len(batch)]
            self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        self.rounds[len(batch)] += 1
        try:
            colours, memories = self.engine.grow([r.prepared for r in batch], [r.memory for r in batch])
            for r, c, m in zip(batch, colours, memories):
                r.result = (c, m)
        except Exception as e:
            if len(batch) == 1:
                batch[0].error = e
            else:
                # One room's canvas must not fail the others: grow each alone, and each
                # request gets its own result or its own error.
                log.warning("growth batch of %d failed (%s: %s); growing each alone",
                            len(batch), type(e).__name__, e)
                for r in batch:
                    try:
                        (c,), (m,) = self.engine.grow([r.prepared], [r.memory])
                        r.result = (c, m)
                    except Exception as e1:
                        r.error = e1
        finally:
            for r in batch:
                r.done.set()

    def close(self) -> None:
        """Answer what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()


class BatchedGrower(Grower):
    """A room's grower on a shared ``GrowthService``: prepares and finishes its canvas in
    the calling thread, has the service grow it with the other rooms' canvases, and
    keeps its own state like an ``NCAGrower``."""

    name = "nca"

    def __init__(self, service: GrowthService, member: int):
        self.service = service
        self.member = member
        self.engine = service.engine
        self.device = self.engine.device
        self.state: torch.Tensor | None = None
        self.phase = 0
        self._closed = False

    def fill(self, image: np.ndarray, known: np.ndarray,
             covered: np.ndarray | None = None) -> np.ndarray:
        prepared = self.engine.prepare(image, known, covered)
        if isinstance(prepared, np.ndarray):
            self.state = None
            return prepared
        rgb, memory = self.service.submit(prepared, Memory(self.state, self.phase), self.member)
        self.state, self.phase = memory.state, memory.phase
        return self.engine.finish(image, known, rgb)

    def reset(self) -> None:
        self.state = None
        self.phase = 0

    def close(self) -> None:
        """Leave the service (idempotent): its rounds stop waiting for this room."""
        if not self._closed:
            self._closed = True
            self.service._leave(self.member)


def use_batching(mode: str, grower: str, device: str) -> bool:
    """Whether a server's rooms share one growth service. "auto": when the growth model
    runs on CUDA (on a CPU, batching saves nothing and adds the wait of each round);
    "on" also on a CPU; "off" never."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"batching must be 'auto', 'on' or 'off', got {mode!r}")
    if mode == "off":
        return False
    if grower != "nca":
        if mode == "on":
            raise ValueError(f"batching rooms needs the growth model (grower 'nca'), not {grower!r}")
        return False
    if mode == "on":
        return True
    from .nca_grower import resolve_device

    return resolve_device(device).type == "cuda"


class SharedGrowth:
    """One ``GrowthService`` for all rooms of a server, started by the first room that
    asks for a grower (``client()``, from that room's thread) and closed with the server."""

    def __init__(self, make_engine: Callable[[], object], max_wait_s: float = 0.004):
        self._make_engine = make_engine
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self.service: GrowthService | None = None

    def client(self) -> BatchedGrower:
        with self._lock:
            if self.service is None:
                self.service = GrowthService(self._make_engine(), self.max_wait_s)
            return self.service.client()

    def close(self) -> None:
        with self._lock:
            service, self.service = self.service, None
        if service is not None:
            service.close()
