"""What the server writes to its log about HTTP, and the process limits it runs under.

Malformed traffic is normal on an open port: requests cut off mid-body, headers of
100 KB, bytes that are not HTTP. aiohttp logs each with a full traceback, and the event
loop does the same for sockets that fail; a few hundred such clients a second write
hundreds of megabytes of log. Here each becomes one line, rate-limited (``LineLog``),
while a fault in roomfuse's own code keeps its traceback. The access log (``-v``)
names the path only: never a query string, never a header, so never a key.
"""
from __future__ import annotations

import logging
import resource

from aiohttp.abc import AbstractAccessLogger

from ..config import ServerLimits
from .guard import LineLog

log = logging.getLogger(__name__)

# Errors that come from the client or the network, not from roomfuse.
CLIENT_FAULTS = (ConnectionError, TimeoutError)


def _is_client_fault(exc: BaseException | None) -> bool:
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, CLIENT_FAULTS + (HttpProcessingError,))


class OneLine(logging.Filter):
    """Turns a record whose exception the client caused into one line (naming the
    exception) and rate-limits those; other records pass as they are."""

    def __init__(self):
        super().__init__()
        self._lines = LineLog(log, logging.INFO)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not _is_client_fault(exc):
            return True
        text = getattr(exc, "message", None) or str(exc)  # aiohttp's errors: "400, message:\n  why"
        detail = text.strip().splitlines()[0][:160] if isinstance(text, str) and text.strip() else ""
        self._lines("%s: %s%s", record.getMessage(), type(exc).__name__, f" ({detail})" if detail else "")
        return False


# aiohttp's server logger for the app's connections (``AppRunner(logger=...)``).
HTTP_LOG = logging.getLogger("roomfuse.rtc.http.server")
HTTP_LOG.addFilter(OneLine())


class AccessLog(AbstractAccessLogger):
    """``ADDRESS "METHOD PATH" STATUS BYTES SECONDS``: the path without its query string."""

    def log(self, request, response, time: float) -> None:
        self.logger.info('%s "%s %s" %d %d %.3fs', request.remote, request.method, request.path,
                         response.status, response.body_length, time)


def quiet_loop_errors(loop) -> None:
    """One line, rate-limited, for socket errors the event loop reports on its own (a
    client that vanished mid-handshake, a reset during a write); anything else goes to
    asyncio's default handler, traceback and all."""
    lines = LineLog(log, logging.INFO)

    def handler(loop, context):
        exc = context.get("exception")
        if isinstance(exc, (OSError,) + CLIENT_FAULTS):
            lines("%s: %s: %s", context.get("message", "event loop"), type(exc).__name__, exc)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def raise_open_file_limit(limits: ServerLimits, per_room: int = 200) -> None:
    """Raise this process's open-file limit to its hard limit, and warn when even that
    leaves too little beside the connection cap: when accept() runs out of descriptors
    the server stops answering everyone. ``per_room``: descriptors a full room may use
    (sockets for ICE, DTLS and the peers, pipes of its threads)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limits.max_connections + limits.max_rooms * per_room + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(hard, want)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning("this process may open %d files (ulimit -n), fewer than the %d that --max-connections %d "
                    "and --max-rooms %d may need; lower them or raise the limit", soft, want,
                    limits.max_connections, limits.max_rooms)
