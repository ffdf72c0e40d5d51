"""Staying in a room: join, watch the connection, rejoin with backoff, leave.

States, in the order a session normally visits them::

    JOINING --answer--> LIVE --lost--> RECONNECTING --delay--> JOINING ...
       |                  |                  |
       +------ stop ------+------ stop ------+--> LEAVING --> CLOSED

The first join has to succeed: a wrong key, a bad URL or a server that is not there is
the user's to fix, so it ends the session with that error. After the room has been
joined once, losing the server (a restart, a dropped network, a room briefly full while
our old seat is being freed) is waited out with growing delays, for as long as the user
stays; only a refusal that waiting cannot fix (a changed key) ends the session.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import RoomfuseError
from .connection import Connection, JoinError, Link, Signalling, SourceReader

log = logging.getLogger(__name__)


class Backoff:
    """Delays between attempts: ``first`` seconds, doubling up to ``cap``, each spread by
    +-``jitter`` so that everyone dropped by one server restart does not return at once."""

    def __init__(self, first: float = 0.5, cap: float = 8.0, factor: float = 2.0, jitter: float = 0.2,
                 rng: Callable[[], float] = random.random):
        if not 0 < first <= cap or factor < 1 or not 0 <= jitter < 1:
            raise ValueError(f"bad backoff: first={first} cap={cap} factor={factor} jitter={jitter}")
        self.first, self.cap, self.factor, self.jitter, self._rng = first, cap, factor, jitter, rng
        self.attempts = 0

    def next(self) -> float:
        base = min(self.cap, self.first * self.factor ** self.attempts)
        self.attempts += 1
        return base * (1 + self.jitter * (2 * self._rng() - 1))

    def reset(self) -> None:
        self.attempts = 0


class State(enum.Enum):
    JOINING = "joining"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    LEAVING = "leaving"
    CLOSED = "closed"


@dataclass(frozen=True)
class Timeouts:
    request_s: float = 20.0  # one signalling request, ICE gathering of the answer included
    first_frame_s: float = 20.0  # answer to first composite frame (the server may be warming up)
    stall_s: float = 5.0  # no composite frame for this long: the connection is gone
    leave_s: float = 3.0  # the DELETE when leaving
    join_on_stop_s: float = 5.0  # how long a join already under way may finish when asked to stop


class RoomSession:
    """Keeps one participant in a room until ``stop`` is set. Run it with ``run``."""

    def __init__(self, link: Link, name: str, reader: SourceReader, on_frame: Callable, *,
                 ice_servers: Sequence = (), timeouts: Timeouts = Timeouts(),
                 backoff: Backoff | None = None, sound=None, on_sound: Callable | None = None):
        self.link, self.name, self.reader, self.on_frame = link, name, reader, on_frame
        self.sound, self.on_sound = sound, on_sound  # join --audio (sound.py)
        self.ice_servers = ice_servers
        self.timeouts = timeouts
        self.backoff = backoff or Backoff()
        self.state = State.CLOSED
        self.joins = 0  # successful joins; every one after the first is a reconnect
        self.frames = 0  # composite frames received, over all connections
        self.participant: str | None = None
        self._started = time.monotonic()

    def _set(self, state: State) -> None:
        if state is not self.state:
            log.debug("session: %s -> %s", self.state.value, state.value)
            self.state = state

    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeouts.request_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            signalling = Signalling(http, self.link)
            try:
                await self._loop(signalling, stop)
            finally:
                self._set(State.CLOSED)
        seconds = time.monotonic() - self._started
        if self.joins:
            log.info("left room %r after %.1f s: %d composite frames received, %d reconnect%s",
                     self.link.room, seconds, self.frames, self.joins - 1, "" if self.joins == 2 else "s")

    async def _loop(self, signalling: Signalling, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._set(State.JOINING)
            conn = Connection(signalling, self.reader, self._frame, ice_servers=self.ice_servers,
                              timeouts=self.timeouts, sound=self.sound, on_sound=self.on_sound)
            try:
                joined = await self._join(conn, stop)
            except JoinError as e:
                # The server may have made a seat before the failure (an answer we could
                # not use): give it back rather than leave a ghost for its timeout.
                await conn.close(leave=True, quiet=True)
                if not self.joins or not e.retry:
                    raise
                what = f"rejoining room {self.link.room!r} failed ({e})"
            else:
                if not joined:  # stopped before the server answered
                    await conn.close(leave=False)
                    return
                self.joins += 1
                self.participant = conn.participant
                self._set(State.LIVE)
                log.info("%s room %r at %s as %r (participant %s)", "joined" if self.joins == 1 else "rejoined",
                         self.link.room, self.link.base, self.name, conn.participant)
                try:
                    reason = await conn.watch(stop)
                except RoomfuseError:  # our camera or clip failed: leave, then say why
                    await conn.close(leave=True)
                    raise
                if reason is None:
                    self._set(State.LEAVING)
                    await conn.close(leave=True)
                    return
                # Free our seat if the server is still there (a stalled network, not a
                # restart); otherwise the server drops it when its own checks fail.
                await conn.close(leave=True, quiet=True)
                if not self.frames:
                    # Signalling works but media never did: UDP is blocked or the
                    # addresses offered cannot be reached. Retrying will not change that.
                    raise JoinError(f"room {self.link.room!r} at {self.link.base}: joined, but {reason}; "
                                    "check that UDP between this machine and the server is not blocked")
                if conn.frames:
                    self.backoff.reset()
                what = f"connection to room {self.link.room!r} lost ({reason})"
            delay = self.backoff.next()
            self._set(State.RECONNECTING)
            log.warning("%s; reconnecting in %.1f s", what, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _join(self, conn: Connection, stop: asyncio.Event) -> bool:
        """Join; True once the server answered, False if ``stop`` came first.

        A join under way when asked to stop gets a few seconds to finish, so that the seat
        the server just made can be given back instead of lingering as a ghost.
        """
        join = asyncio.ensure_future(conn.open(self.name))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({join, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not join.done():
                await asyncio.wait({join}, timeout=self.timeouts.join_on_stop_s)
            if not join.done():
                join.cancel()
                await asyncio.gather(join, return_exceptions=True)
                return False
            join.result()  # raises the join's error
            if stop.is_set():
                self._set(State.LEAVING)
                await conn.close(leave=True)
                return False
            return True
        finally:
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)

    def _frame(self, frame) -> None:
        self.frames += 1
        self.on_frame(frame)


__all__ = ["Backoff", "State", "Timeouts", "RoomSession"]
