"""Several rooms' growth on one device, so one GPU serves many rooms.

A room's growth step is small: at 1/4 resolution a 1280x720 canvas has 57,600 cells,
and on a GPU a frame of it costs launch overhead rather than arithmetic. Rooms that
grow together pay that overhead once: ``NCAGrower.grow`` takes any number of canvases,
each with its own carried state, and grows them in batches.

``GrowthService`` is a thread that collects grow requests from the rooms' pipeline
threads and runs each round as one such call. A round starts at the first request and
ends when every live room has asked or ``max_wait_s`` has passed, whichever is first.
Live: a member that asked within ``live_s`` (a room with nobody sending video composes
nothing and is not waited for); a room that leaves stops being waited for at once; one
live room alone never waits. An error goes back to the room whose canvas caused it.
``BatchedGrower`` is a room's handle on it: a ``Grower`` whose host work (downsampling,
upsampling) stays in the room's own thread, and which holds the room's state.

Batching pays only where the device work is launch-bound, i.e. on CUDA; on a CPU the
rooms' growth is arithmetic that batching cannot shrink, and the round adds waiting
(see ``use_batching``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable

import numpy as np

from ..errors import RoomfuseError
from .base import Grower
from .nca_grower import resolve_device
from .rule import GrowthState

log = logging.getLogger(__name__)


class GrowthServiceError(RoomfuseError):
    """The shared growth service is closed or stopped answering."""


class _Request:
    __slots__ = ("prepared", "state", "done", "result", "error")

    def __init__(self, prepared, state: GrowthState | None):
        self.prepared, self.state = prepared, state
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

    def submit(self, prepared, state: GrowthState | None, member: int = 0):
        """(colour, new state) for one canvas, grown in the next round; blocks."""
        req = _Request(prepared, state)
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
            colours, states = self.engine.grow([r.prepared for r in batch], [r.state for r in batch])
            for r, c, s in zip(batch, colours, states):
                r.result = (c, s)
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
                        (c,), (s,) = self.engine.grow([r.prepared], [r.state])
                        r.result = (c, s)
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
        self.state: GrowthState | None = None
        self._closed = False

    def fill(self, image: np.ndarray, known: np.ndarray,
             covered: np.ndarray | None = None) -> np.ndarray:
        prepared = self.engine.prepare(image, known, covered)
        if isinstance(prepared, np.ndarray):
            self.state = None
            return prepared
        rgb, self.state = self.service.submit(prepared, self.state, self.member)
        return self.engine.finish(image, known, rgb)

    def reset(self) -> None:
        self.state = None

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
