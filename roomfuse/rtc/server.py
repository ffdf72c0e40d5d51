"""`roomfuse serve`: host rooms that browsers join with their webcam.

One process serves the web page, answers the signalling requests and runs every room's
compositor. It needs nothing else on the machine: no signalling server, and no STUN or
TURN unless given (--ice-server). It listens on loopback unless told otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import ssl
import sys
from dataclasses import replace
from pathlib import Path

from ..argtypes import add_device_argument, add_model_arguments, non_negative_int, number, positive_float, size
from ..config import ServerLimits
from ..errors import ConfigError, RoomfuseError
from ..growth import DEFAULT_GROWER, GROWERS
from ..layout import MAX_FEEDS
from .compositor import ROOM_PIPELINE, RoomSettings
from .connection import is_loopback
from .ice import IceServer, host_addresses, parse_ice_server, use_host_addresses

log = logging.getLogger(__name__)

# A key shorter than the one the server makes up itself (12 characters, 72 random
# bits) can be guessed: the throttle slows guessing down, it does not stop it.
SHORT_KEY = 12


class ServeError(RoomfuseError):
    """The server cannot start: a bad flag, a busy port, an unusable grower."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    d, lim = RoomSettings(), ServerLimits()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    p.add_argument("--key", default=None, help="room key every request must carry (default: a random one "
                                               f"of {SHORT_KEY} characters)")
    p.add_argument("--max-participants", type=number(int, low=1, high=MAX_FEEDS), default=d.max_participants,
                   help="people per room")
    p.add_argument("--ice-host", action="append", default=[], metavar="ADDR",
                   help="interface address to offer as ICE host candidate (repeatable; default: --host, "
                        "or every address when --host is a wildcard)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server: stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT][?transport=tcp] "
                        "(repeatable; default: none)")
    p.add_argument("--fps", type=number(float, low=1, high=60), default=d.fps, help="composite frame rate")
    p.add_argument("--canvas", type=size(low=64, high=3840, even=True), default=d.canvas, metavar="WxH",
                   help="composite size (default 1280x360: two or three people side by side; "
                        "1280x720 suits rooms of 4-8)")
    p.add_argument("--layout", choices=("auto", "row", "grid"), default=d.pipeline.layout.mode,
                   help="auto: row or grid, whichever draws people larger on the canvas")
    p.add_argument("--gap", type=non_negative_int, default=d.pipeline.layout.gap,
                   help="pixels between feeds, filled by the grower")
    p.add_argument("--room-fill", choices=("on", "off"), default="on" if d.pipeline.fill.enabled else "off",
                   help="on: gaps and margins get the rooms' own texture, built off the frame path; "
                        "off: the grower fills them every frame")
    p.add_argument("--framing", choices=("on", "off"), default="on" if d.pipeline.framing.enabled else "off",
                   help="on: every face the same size, eyes on one line; off: each whole picture at one height")
    p.add_argument("--order", choices=("auto", "given"), default=d.pipeline.layout.order,
                   help="auto: seat participants so neighbouring rooms are most alike; given: in order of joining")
    p.add_argument("--names", choices=("on", "off"), default="on" if d.names else "off",
                   help="draw everyone's name under them in the picture (each room's host can switch it)")
    p.add_argument("--grower", choices=sorted(GROWERS), default=DEFAULT_GROWER,
                   help="what fills the gaps and hidden background")
    add_device_argument(p, "the grower")
    add_model_arguments(p)
    p.add_argument("--batch-rooms", choices=("auto", "on", "off"), default=d.batch_rooms,
                   help="grow every room's canvas in one batch per round (auto: when the growth model "
                        "runs on CUDA; on a CPU it saves nothing and adds waiting)")
    p.add_argument("--segmenter", choices=("mediapipe", "key"), default=d.segmenter,
                   help="person segmentation (key: colour key, for synthetic participants)")
    p.add_argument("--stall-timeout", type=positive_float, default=d.stall_s, metavar="S",
                   help="fade out and remove a participant whose video stops for this long")
    p.add_argument("--connect-timeout", type=positive_float, default=d.connect_timeout_s, metavar="S",
                   help="free the seat of a participant whose video has not arrived this long after its offer")
    g = p.add_argument_group("limits (each refusal is one log line)")
    g.add_argument("--max-rooms", type=number(int, low=1), default=lim.max_rooms, metavar="N",
                   help="rooms at once; a join that would open one more gets 503")
    g.add_argument("--max-connections", type=number(int, low=1), default=lim.max_connections, metavar="N",
                   help="open HTTP connections in all")
    g.add_argument("--max-connections-per-address", type=number(int, low=1),
                   default=lim.max_connections_per_address, metavar="N", help="open HTTP connections per client address")
    g.add_argument("--header-timeout", type=positive_float, default=lim.header_timeout_s, metavar="S",
                   help="close a connection whose request header is not complete within this")
    g.add_argument("--body-timeout", type=positive_float, default=lim.body_timeout_s, metavar="S",
                   help="refuse (408) a request whose body is not complete within this")
    g.add_argument("--idle-timeout", type=positive_float, default=lim.idle_timeout_s, metavar="S",
                   help="close a keep-alive connection idle this long")
    g.add_argument("--max-wrong-keys", type=number(int, low=1), default=lim.wrong_keys_per_minute, metavar="N",
                   help="wrong room keys per client address per minute before its keys are refused (429)")
    p.add_argument("--tls-cert", type=Path, default=None,
                   help="serve HTTPS with this certificate (browsers allow cameras only on https or localhost)")
    p.add_argument("--tls-key", type=Path, default=None, help="private key for --tls-cert")


def settings_from_args(args: argparse.Namespace, ice_servers: tuple[IceServer, ...] = ()) -> RoomSettings:
    pipeline = replace(
        ROOM_PIPELINE, fps=args.fps,
        framing=replace(ROOM_PIPELINE.framing, enabled=args.framing == "on"),
        layout=replace(ROOM_PIPELINE.layout, mode=args.layout, gap=args.gap, order=args.order),
        grow=replace(ROOM_PIPELINE.grow, grower=args.grower, device=args.device,
                     checkpoint=args.checkpoint, precision=args.precision),
        fill=replace(ROOM_PIPELINE.fill, enabled=args.room_fill == "on"))
    return replace(RoomSettings(), pipeline=pipeline, canvas=args.canvas, segmenter=args.segmenter,
                   max_participants=args.max_participants, stall_s=args.stall_timeout,
                   connect_timeout_s=args.connect_timeout, ice_servers=ice_servers, batch_rooms=args.batch_rooms,
                   names=args.names == "on")


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    return ServerLimits(max_rooms=args.max_rooms, max_connections=args.max_connections,
                        max_connections_per_address=args.max_connections_per_address,
                        header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                        idle_timeout_s=args.idle_timeout, wrong_keys_per_minute=args.max_wrong_keys)


def preflight(settings: RoomSettings) -> None:
    """Build the grower and a segmenter once, so a missing model fails now, not at the
    first join (and the first room does not pay for the imports)."""
    from ..growth.batch import use_batching
    from ..layout import plan_layout
    from ..pipeline import build_grower
    from ..segment import make_segmenter

    grow = settings.pipeline.grow
    try:
        use_batching(settings.batch_rooms, grow.grower, grow.device)
    except ConfigError:
        raise  # names its own flag (--device)
    except ValueError as e:
        raise ServeError(f"--batch-rooms {settings.batch_rooms}: {e}") from None
    try:
        build_grower(grow).reset()
        make_segmenter(settings.segmenter, settings.pipeline.segment).close()
        if settings.pipeline.framing.enabled and settings.segmenter == "mediapipe":
            from ..framing import FaceFinder

            FaceFinder().close()
        plan_layout([(640, 360)] * settings.max_participants, settings.pipeline_config().layout,
                    settings.canvas)
    except RoomfuseError:
        raise
    except Exception as e:
        raise ServeError(f"cannot build the room pipeline ({type(e).__name__}: {str(e)[:120]})") from None


class Server:
    """The web app and its rooms, listening on one address."""

    def __init__(self, settings: RoomSettings, key: str, host: str = "127.0.0.1", port: int = 0,
                 ice_hosts=(), ssl_context=None, access_log: bool = False, limits: ServerLimits = ServerLimits()):
        self.settings, self.key, self.host, self.port = settings, key, host, port
        self.limits = limits
        self.ice_addresses = host_addresses(host, ice_hosts)
        self.ssl_context = ssl_context
        self.access_log = access_log
        self.rooms = None
        self.door = None
        self._runner = None
        self._listener = None
        self._restore_ice = None

    @property
    def wildcard(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")

    def _base(self, host: str) -> str:
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.ssl_context else 'http'}://{host}:{self.port}"

    @property
    def base(self) -> str:
        return self._base(self.shared_hosts()[0])

    def shared_hosts(self) -> list[str]:
        """The addresses others reach this server on: the one it listens on, or for a
        wildcard every address of the machine but loopback (IPv4 first), loopback
        only when there is nothing else."""
        if not self.wildcard:
            return [self.host]
        # 0.0.0.0 listens on IPv4 only and :: on IPv6 only (asyncio sets IPV6_V6ONLY);
        # an empty --host listens on both.
        family = [a for a in self.ice_addresses
                  if self.host == "" or (":" in a) == (self.host == "::")]
        wanted = sorted((a for a in family if not is_loopback(a)), key=lambda a: ":" in a)
        return wanted or family or list(self.ice_addresses)

    @property
    def url(self) -> str:
        """The page to open; the key rides in the fragment, which browsers never send."""
        return f"{self.base}/#key={self.key}"

    @property
    def urls(self) -> list[str]:
        """``url`` on every address in ``shared_hosts``."""
        return [f"{self._base(h)}/#key={self.key}" for h in self.shared_hosts()]

    async def start(self) -> str:
        from aiohttp import web

        from .aiortc_compat import untested_version
        from .guard import Door
        from .http import HTTP_LOG, AccessLog, quiet_loop_errors
        from .room import Rooms
        from .signalling import make_app

        quiet_loop_errors(asyncio.get_running_loop())
        warning = untested_version()
        if warning:
            log.warning("%s", warning)
        self._restore_ice = use_host_addresses(self.ice_addresses)
        self.rooms = Rooms(self.settings, max_rooms=self.limits.max_rooms)
        await asyncio.get_running_loop().run_in_executor(None, self.rooms.segmenters.prewarm)
        s, lim = self.settings, self.limits
        client_config = {"iceServers": [i.to_json() for i in s.ice_servers], "fps": s.fps,
                         "canvas": list(s.canvas), "maxParticipants": s.max_participants}
        self.door = Door(None, lim)
        app = make_app(self.rooms, self.key, client_config, lim, door=self.door)
        # aiohttp's own timers are a backstop here; the door (guard.py) enforces the limits.
        self._runner = web.AppRunner(app, handle_signals=False, logger=HTTP_LOG,
                                     access_log=log if self.access_log else None, access_log_class=AccessLog,
                                     keepalive_timeout=lim.idle_timeout_s + lim.header_timeout_s,
                                     lingering_time=lim.body_timeout_s)
        await self._runner.setup()
        self.door.make_protocol = self._runner.server
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(self.door, self.host, self.port, ssl=self.ssl_context,
                                                      backlog=1024)  # a burst of callers waits in the kernel, not refused
        except OSError as e:
            await self.stop()
            raise ServeError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        self.door.start()
        self.port = self._listener.sockets[0].getsockname()[1]  # the real one when port 0 was asked
        return self.url

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connections; open ones are closed below
            self._listener = None
        if self.door is not None:
            await self.door.stop()
        if self.rooms is not None:
            await self.rooms.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._restore_ice is not None:
            self._restore_ice()
            self._restore_ice = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()


def _ssl_context(args) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ServeError("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ServeError(f"--tls-cert {args.tls_cert}: cannot load ({e})") from None
    return ctx


async def _serve(server: Server) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        first, *others = server.urls
        print(f"roomfuse serve: open {first}", flush=True)
        for url in others:
            print(f"roomfuse serve:   or {url}", flush=True)
        print(f"  (rooms: {server.base}/r/NAME#key={server.key}; ICE host candidates: "
              f"{', '.join(server.ice_addresses)}; Ctrl-C stops)", file=sys.stderr, flush=True)
        if server.ssl_context is None and not all(is_loopback(h) for h in server.shared_hosts()):
            print("roomfuse serve: warning: without --tls-cert and --tls-key the room key and everyone's "
                  "signalling travel in plain text on the network; browsers also allow cameras only on "
                  "https (or localhost)", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main(args: argparse.Namespace) -> int:
    from .http import raise_open_file_limit
    from .reuse import tune_allocator

    tune_allocator()  # before any room allocates: see reuse.py
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:
        # aioice logs every connectivity check at INFO.
        logging.getLogger("aioice").setLevel(logging.WARNING)
    key = args.key if args.key is not None else secrets.token_urlsafe(9)
    if not key or len(key) > 128 or not key.isprintable() or any(c in key for c in " #&"):
        raise ServeError("--key must be 1-128 printable characters without spaces, '#' or '&'")
    if len(key) < SHORT_KEY:
        log.warning("--key is %d characters: anyone who can reach the server can guess a key that short; "
                    "use %d or more, or leave --key out for a random one", len(key), SHORT_KEY)
    if not 0 <= args.port <= 65535:
        raise ServeError(f"--port must be 0-65535, got {args.port}")
    ice_servers = tuple(parse_ice_server(u) for u in args.ice_server)
    settings = settings_from_args(args, ice_servers)
    limits = limits_from_args(args)
    raise_open_file_limit(limits)
    server = Server(settings, key, host=args.host, port=args.port, ice_hosts=args.ice_host,
                    ssl_context=_ssl_context(args), access_log=verbose, limits=limits)
    preflight(settings)
    asyncio.run(_serve(server))
    return 0
