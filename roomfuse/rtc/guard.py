"""The server's front door: how many connections, from whom, and for how long.

aiohttp on its own holds a connection for as long as the client likes: a request whose
headers or body arrive a byte at a time, or never, keeps its socket, and enough of them
take every file descriptor the process has. Here each connection passes a guard first:

* a cap on open connections, and on open connections per client address: one more is
  answered 503 at once and closed;
* a header timeout: a connection must deliver a complete request header within
  ``header_timeout_s`` of opening (or of its first byte after a response); an idle
  keep-alive connection is closed after ``idle_timeout_s``. Bodies have their own
  timeout where they are read (``signalling.read_body``).

Each refusal is one log line, and a flood of them is summarised rather than written out
(``LineLog``). ``KeyThrottle`` slows down whoever guesses room keys, per client address.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque

from ..config import ServerLimits

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 0.5
LINGER_S = 1.0  # a refused connection stays open this long for its answer to be read
MAX_LINGERING = 64


class LineLog:
    """One log line per event, but at most ``burst`` per ``every_s`` seconds; the rest
    are counted and reported in one line when the next window opens."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO, burst: int = 20,
                 every_s: float = 10.0, clock=time.monotonic):
        self.logger, self.level, self.burst, self.every_s, self.clock = logger, level, burst, every_s, clock
        self._window = -float("inf")
        self._written = 0
        self._held = 0

    def __call__(self, message: str, *args) -> None:
        now = self.clock()
        if now - self._window >= self.every_s:
            self.flush()
            self._window, self._written = now, 0
        if self._written < self.burst:
            self._written += 1
            self.logger.log(self.level, message, *args)
        else:
            self._held += 1

    def flush(self) -> None:
        """Report what was held back, once its window is over (call it now and then)."""
        if self._held and self.clock() - self._window >= self.every_s:
            self.logger.log(self.level, "... and %d more like that in %.0f s", self._held, self.every_s)
            self._held = 0


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = ('{"error": "%s"}' % message.replace('"', "'")).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class Guarded(asyncio.Protocol):
    """One connection: counted, timed, then handed to aiohttp's protocol (``inner``).
    Only the public asyncio protocol methods are forwarded."""

    def __init__(self, door: "Door"):
        self.door = door
        self.inner = None
        self.transport = None
        self.address = "?"
        now = door.clock()
        self.opened = self.waiting_since = now
        self.first_byte: float | None = None  # of the request being received, while waiting
        self.served = 0  # requests answered on this connection
        self.busy = False  # a request is being handled

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        refusal = self.door.admit(self)
        if refusal is not None:
            self.door.turn_away(transport, refusal)
            return
        self.inner = self.door.make_protocol()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.busy and self.first_byte is None:
            self.first_byte = self.door.clock()
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc) -> None:
        if self.inner is None:
            return
        self.door.forget(self)
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # ---- told by the request middleware ------------------------------------------------

    def request_started(self) -> None:
        self.busy, self.first_byte = True, None

    def request_done(self) -> None:
        self.busy, self.first_byte = False, None
        self.served += 1
        self.waiting_since = self.door.clock()

    def overdue(self, now: float, limits: ServerLimits) -> str | None:
        """Why this connection should be closed now, or None."""
        if self.busy:
            return None
        if self.served == 0 and now - self.opened > limits.header_timeout_s:
            return "partial" if self.first_byte is not None else "silent"
        if self.first_byte is not None and now - self.first_byte > limits.header_timeout_s:
            return "partial"
        if self.first_byte is None and now - self.waiting_since > limits.idle_timeout_s:
            return "idle"
        return None


class Door:
    """Every open connection of a server, the caps on them and the sweeper that closes
    the overdue ones. ``make_protocol`` builds aiohttp's protocol for an admitted one."""

    def __init__(self, make_protocol, limits: ServerLimits, clock=time.monotonic):
        self.make_protocol = make_protocol
        self.limits = limits
        self.clock = clock
        self.open: dict[object, Guarded] = {}  # transport -> guard
        self.per_address: Counter = Counter()
        self.refused = 0
        self.timed_out = 0
        self._lingering = 0
        self._log_refusal = LineLog(log, logging.WARNING)
        self._log_timeout = LineLog(log, logging.INFO)
        self.logs = [self._log_refusal, self._log_timeout]  # flushed by the sweeper; others may join
        self._task: asyncio.Task | None = None

    def __call__(self) -> Guarded:  # the protocol factory for loop.create_server
        return Guarded(self)

    def admit(self, g: Guarded) -> bytes | None:
        lim = self.limits
        if len(self.open) >= lim.max_connections:
            why = f"the server is at its limit of {lim.max_connections} open connections"
        elif self.per_address[g.address] >= lim.max_connections_per_address:
            why = f"{g.address} already has {lim.max_connections_per_address} open connections"
        else:
            self.open[g.transport] = g
            self.per_address[g.address] += 1
            return None
        self.refused += 1
        self._log_refusal("refused a connection from %s: %s", g.address, why)
        return _refusal(503, "Service Unavailable", why)

    def turn_away(self, transport, refusal: bytes) -> None:
        """Answer a refused connection and close it. Closing at once, with the client's
        request unread, would reset the connection before the answer is read; so the
        answer is followed by a half-close and the socket lingers a moment (unless many
        already do: a flood gets no answers)."""
        transport.write(refusal)
        if self._lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering += 1

        def close():
            self._lingering -= 1
            transport.close()
        asyncio.get_running_loop().call_later(LINGER_S, close)

    def forget(self, g: Guarded) -> None:
        if self.open.pop(g.transport, None) is not None:
            self.per_address[g.address] -= 1
            if self.per_address[g.address] <= 0:
                del self.per_address[g.address]

    def of(self, transport) -> Guarded | None:
        return self.open.get(transport)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.sweep()

    def sweep(self) -> None:
        now, lim = self.clock(), self.limits
        for lines in self.logs:
            lines.flush()
        for g in list(self.open.values()):
            why = g.overdue(now, lim)
            if why is None:
                continue
            self.forget(g)
            if why == "partial":
                # A request begun and not finished in time: say so, to the client and once in the log.
                self.timed_out += 1
                self._log_timeout("closed a connection from %s: no complete request header within %g s",
                                  g.address, lim.header_timeout_s)
                g.transport.write(_refusal(408, "Request Timeout", "request header not received in time"))
            elif why == "silent":
                self.timed_out += 1
                log.debug("closed a connection from %s: nothing sent within %g s", g.address, lim.header_timeout_s)
            g.transport.close()


class KeyThrottle:
    """Wrong room keys per client address: after ``per_minute`` in the last minute, that
    address is refused (429) until the oldest of them is a minute old, right key or not,
    so a key cannot be guessed faster than that."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._misses: dict[str, deque] = {}
        self.log = LineLog(log, logging.WARNING)

    def _recent(self, address: str, now: float) -> deque | None:
        q = self._misses.get(address)
        if q is None:
            return None
        while q and q[0] <= now - self.WINDOW_S:
            q.popleft()
        if not q:
            del self._misses[address]
            return None
        return q

    def wait_s(self, address: str) -> float:
        """Seconds until ``address`` may try a key again; 0 when it may now."""
        now = self.clock()
        q = self._recent(address, now)
        if q is None or len(q) < self.per_minute:
            return 0.0
        return q[-self.per_minute] + self.WINDOW_S - now

    def missed(self, address: str) -> None:
        now = self.clock()
        q = self._recent(address, now)
        if q is None:
            q = self._misses[address] = deque()
        q.append(now)
        if len(q) == self.per_minute:
            self.log("%s sent %d wrong room keys within a minute; refusing its keys for a while",
                      address, self.per_minute)
        if len(self._misses) > 10_000:  # addresses that stopped trying: forget the oldest
            for old in list(self._misses)[:1000]:
                self._recent(old, now)
