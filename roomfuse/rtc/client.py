"""`roomfuse join`: take part in a room from the command line.

Our camera (or a clip) goes to the room; the room's composite comes back and goes to
any of: a virtual camera that Zoom, Teams or Meet can pick, a video file, a window.

Threads, and why: the event loop (aiortc, signalling, reconnects) runs in a thread of
its own, because the main thread must stay free for what only it can do: receive Ctrl-C
and, on macOS, drive a window. Received frames go into one ``NewestFrame``; each output
reads it on its own clock (``PacedOutput``), so a slow disk never slows the camera and a
reconnect never starves it.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..argtypes import positive_float, size
from ..errors import RoomfuseError
from ..vcam import NewestFrame, PacedOutput, VirtualCamera, VirtualCameraError, letterbox, placeholder
from .connection import JoinError, Link, SourceReader, is_loopback, parse_link
from .ice import IceServer, host_addresses, parse_ice_server, use_host_addresses
from .reconnect import RoomSession, Timeouts
from .sound import MODES, open_sound

log = logging.getLogger(__name__)

AUTO_DEVICE = "auto"  # --virtual-camera without DEVICE: the first free device


def _ice_server(text: str) -> IceServer:
    try:
        return parse_ice_server(text)
    except RoomfuseError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Optional to argparse only so that a URL taken by --virtual-camera gets a clear error.
    p.add_argument("url", metavar="URL", nargs="?", help="the address `roomfuse serve` printed: http://HOST:PORT/#key=KEY, "
                   "or a room's http://HOST:PORT/r/NAME#key=KEY")
    p.add_argument("--room", metavar="NAME", help="room to join (default: the URL's, else main)")
    p.add_argument("--key", metavar="KEY", help="room key (default: the URL's #key=)")
    p.add_argument("--name", metavar="NAME", help="name shown to the others (default: user@host)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", metavar="INDEX", type=int, default=None, help="webcam to send (default: 0)")
    src.add_argument("--clip", metavar="FILE", type=Path, help="send a video file instead, looping")
    p.add_argument("--virtual-camera", metavar="DEVICE", nargs="?", const=AUTO_DEVICE, default=None,
                   help="show the room as a virtual camera: /dev/videoN on Linux (v4l2loopback), "
                        "OBS Virtual Camera on Windows/macOS; without DEVICE the first free one")
    p.add_argument("--vcam-size", metavar="WxH", type=size(), default=(1280, 720),
                   help="virtual camera size; the room is scaled to fit between black bars (default: 1280x720)")
    p.add_argument("--vcam-backend", metavar="NAME", default=None,
                   help="pyvirtualcam backend: v4l2loopback, obs or unitycapture (default: try each)")
    p.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate of the virtual camera and the recording (default: 30)")
    p.add_argument("--record", metavar="OUT.mp4", type=Path, help="also write the room to a video file")
    p.add_argument("--show", action="store_true", help="also show the room in a window (q or Esc leaves)")
    p.add_argument("--duration", metavar="SECONDS", type=positive_float, default=None,
                   help="leave after this many seconds in the room, counted from its first picture "
                        "(default: stay until Ctrl-C)")
    p.add_argument("--ice-server", metavar="URL", type=_ice_server, action="append", default=[],
                   help="STUN or TURN server for networks that need one: stun:HOST[:PORT] or "
                        "turn:USER:PASS@HOST[:PORT] (repeatable)")
    p.add_argument("--ice-host", metavar="ADDR", action="append", default=[],
                   help="offer only this local address for media (repeatable; default: loopback for a "
                        "server on loopback, otherwise every interface)")
    p.add_argument("--stall-timeout", metavar="SECONDS", type=positive_float, default=Timeouts.stall_s,
                   help="rejoin when no video has come from the room for this long (default: %(default)s)")
    p.add_argument("--audio", metavar="MODE", nargs="?", const="both", choices=MODES, default=None,
                   help="take part in the room's sound: send the microphone (with --clip, the clip's sound) "
                        "and play the room; MODE send or play for one of the two (default: no sound, "
                        "as a meeting app reading the virtual camera carries its own)")


@dataclass(frozen=True)
class JoinPlan:
    """Everything ``join`` was asked to do, checked."""

    link: Link
    name: str
    source: str  # for capture.open_source: a clip path or camera:N
    vcam_device: str | None  # None: no virtual camera; AUTO_DEVICE: the first free one
    vcam_size: tuple[int, int]
    vcam_backend: str | None
    fps: float
    record: Path | None
    show: bool
    duration: float | None
    ice_servers: tuple[IceServer, ...]
    ice_hosts: tuple[str, ...]
    timeouts: Timeouts
    audio: str | None = None  # --audio MODE
    clip: Path | None = None


def plan_from_args(args: argparse.Namespace) -> JoinPlan:
    device = args.virtual_camera
    if device is not None and "://" in device:
        # argparse gives an optional DEVICE the next word, even when it was the URL.
        if args.url is None:
            raise JoinError(f"--virtual-camera took {device!r} as its DEVICE: put the URL before the flag")
        raise JoinError(f"--virtual-camera {device!r}: a URL is not a camera device")
    if args.url is None:
        raise JoinError("the room's URL is required, e.g. roomfuse join 'http://HOST:8080/r/main#key=KEY'")
    if args.clip is not None:
        if not args.clip.is_file():
            raise JoinError(f"--clip {args.clip}: no such file")
        source = str(args.clip)
    else:
        index = 0 if args.camera is None else args.camera
        if index < 0:
            raise JoinError(f"--camera {index}: camera index must be >= 0")
        source = f"camera:{index}"
    if args.record is not None and args.record.suffix.lower() not in (".mp4", ".mkv", ".mov", ".webm"):
        raise JoinError(f"--record {args.record}: name a .mp4, .mkv, .mov or .webm file")
    name = (args.name or f"{getpass.getuser()}@{socket.gethostname()}").strip()
    if not name:
        raise JoinError("--name: must not be empty")
    return JoinPlan(
        link=parse_link(args.url, room=args.room, key=args.key), name=name, source=source,
        vcam_device=device, vcam_size=args.vcam_size, vcam_backend=args.vcam_backend, fps=args.fps,
        record=args.record, show=args.show, duration=args.duration, ice_servers=tuple(args.ice_server),
        ice_hosts=tuple(args.ice_host), timeouts=Timeouts(stall_s=args.stall_timeout),
        audio=getattr(args, "audio", None), clip=args.clip)


def media_addresses(plan: JoinPlan) -> list[str] | None:
    """Local addresses to offer for media, or None for every interface (aioice's choice)."""
    if plan.ice_hosts:
        return host_addresses("", plan.ice_hosts)
    if is_loopback(plan.link.host):
        # aioice never offers loopback by itself, and a server on loopback offers only that.
        return ["::1"] if plan.link.host == "::1" else ["127.0.0.1"]
    return None


def main(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        # aioice logs every connectivity check at INFO.
        logging.getLogger("aioice").setLevel(logging.WARNING)
    return run(plan_from_args(args))


class Window:
    """``--show``: the room in an OpenCV window, driven from the main thread."""

    TITLE = "roomfuse"

    def __init__(self, idle):
        import cv2

        headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if sys.platform.startswith("linux") and headless:
            # OpenCV's Qt window aborts the whole process without a display; say so first.
            raise RoomfuseError("--show: no display to open a window on (DISPLAY is not set)")
        self._cv2 = cv2
        self._seq = -1
        cv2.namedWindow(self.TITLE, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        cv2.imshow(self.TITLE, cv2.cvtColor(idle, cv2.COLOR_RGB2BGR))
        self.shown = 0

    def update(self, slot: NewestFrame, wait_s: float) -> bool:
        """Show the newest frame and handle events for ``wait_s``; False once the user closed it."""
        cv2 = self._cv2
        seq, image = slot.get()
        if image is not None and seq != self._seq:
            if not self.shown:  # from the placeholder's shape to the room's
                cv2.resizeWindow(self.TITLE, image.shape[1], image.shape[0])
            cv2.imshow(self.TITLE, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            self._seq = seq
            self.shown += 1
        key = cv2.waitKey(max(1, int(wait_s * 1000))) & 0xFF
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.TITLE, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        self._cv2.destroyWindow(self.TITLE)
        self._cv2.waitKey(1)


class SessionThread(threading.Thread):
    """The event loop, with the session in it, in a thread of its own."""

    def __init__(self, session: RoomSession):
        super().__init__(name="roomfuse-session", daemon=True)
        self.session = session
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._guard = threading.Lock()
        self._stop_asked = False
        self.done = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by the main thread
            self.error = e
        finally:
            self.done.set()

    def wait(self, timeout: float) -> bool:
        """True once the session has ended.

        An Event, not ``join``/``is_alive``: a Ctrl-C that lands inside ``Thread.join``
        can leave the thread marked as stopped while it still runs (CPython 3.11), and
        the session would then be torn down under its feet.
        """
        return self.done.wait(timeout)

    async def _main(self) -> None:
        with self._guard:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            self._task = asyncio.current_task()
            if self._stop_asked:
                self._stop_event.set()
        await self.session.run(self._stop_event)

    def stop(self) -> None:
        """Leave the room (thread-safe; the session gives its seat back first)."""
        with self._guard:
            self._stop_asked = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._stop_event.set)

    def abort(self) -> None:
        """Stop at once, without waiting for the server."""
        with self._guard:
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._task.cancel)
                except RuntimeError:  # the loop has already closed: nothing left to stop
                    pass


def _raise_on_sigterm():
    """SIGTERM leaves the room like Ctrl-C does (service managers and CI send it)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _open_outputs(plan: JoinPlan, slot: NewestFrame, stack: list) -> tuple[list[PacedOutput], Window | None]:
    """Open every output before joining, so a missing camera fails before anyone sees us."""
    from ..sinks import SinkError, VideoWriter

    idle = placeholder(*plan.vcam_size, f"roomfuse: joining room {plan.link.room}")
    outputs = []
    if plan.vcam_device is not None:
        device = None if plan.vcam_device == AUTO_DEVICE else plan.vcam_device
        cam = VirtualCamera(*plan.vcam_size, fps=plan.fps, device=device, backend=plan.vcam_backend)
        stack.append(cam.close)
        log.info("virtual camera %s (%s): %dx%d at %g fps", cam.device, cam.backend, cam.width, cam.height,
                 plan.fps)

        def send(image, cam=cam):
            try:
                cam.send(image)
            except Exception as e:  # pyvirtualcam raises plain RuntimeError when a device goes away
                raise VirtualCameraError(f"virtual camera {cam.device}: {str(e).splitlines()[0][:160]}") from None

        # Fed from the start: apps list a v4l2loopback device only once it has frames.
        # pyvirtualcam paces it: from each send to the next, adapting to the sends' cost.
        outputs.append(PacedOutput("virtual camera", slot, plan.fps, send, prepare=cam.fit, idle=idle,
                                   pace=cam.sleep_until_next_frame))
    if plan.record is not None:
        writer = VideoWriter(plan.record, fps=plan.fps)
        stack.append(writer.close)
        size: list[tuple[int, int]] = []

        def fit_first(image):
            # The composite widens as people join; the file keeps the first size.
            if not size:
                size.append((image.shape[1], image.shape[0]))
            return letterbox(image, *size[0])

        def write(image, tick):
            try:
                writer.write(image, tick)
            except Exception as e:
                raise SinkError(f"{plan.record}: cannot write ({str(e).splitlines()[0][:120]})") from None

        # Timed: every frame at its tick of the call's clock, so the file lasts as long as
        # the call even when the machine cannot encode every tick.
        outputs.append(PacedOutput("recording", slot, plan.fps, write, prepare=fit_first, timed=True))
    window = Window(idle) if plan.show else None
    if window is not None:
        stack.append(window.close)
    return outputs, window


def run(plan: JoinPlan) -> int:
    from ..capture import open_source

    slot = NewestFrame(convert=lambda frame: frame.to_ndarray(format="rgb24"))
    stack: list = []  # closers, run in reverse order
    outputs: list[PacedOutput] = []
    thread = None
    restore_sigterm = _raise_on_sigterm()
    try:
        addresses = media_addresses(plan)
        if addresses:
            stack.append(use_host_addresses(addresses))
        outputs, window = _open_outputs(plan, slot, stack)
        sound, speaker = open_sound(plan.audio, plan.clip)
        for device in (sound, speaker):
            if device is not None:
                stack.append(device.close)
        reader = SourceReader(open_source(plan.source))
        stack.append(reader.close)
        if not outputs:
            log.debug("no --virtual-camera, --record or --show: sending to the room without showing it")
        for out in outputs:
            out.start()
        session = RoomSession(plan.link, plan.name, reader, slot.put, ice_servers=plan.ice_servers,
                              timeouts=plan.timeouts, sound=sound, on_sound=speaker.put if speaker else None)
        thread = SessionThread(session)
        thread.start()
        _wait(plan, thread, outputs, window, slot)
        if thread.error is not None:
            raise thread.error
        for out in outputs:
            if out.error is not None:
                raise out.error
        return 0
    finally:
        if thread is not None:
            if not thread.done.is_set():
                thread.abort()
                thread.wait(5)
            thread.join(1)
        for out in outputs:
            out.stop()
        for close in reversed(stack):
            try:
                close()
            except Exception as e:  # one failing closer must not keep the camera open
                log.warning("while closing: %s", e)
        restore_sigterm()


def _end_recordings(outputs: list[PacedOutput]) -> None:
    """The call ends for a recording when leaving starts, not when the goodbye is done."""
    for out in outputs:
        if out.timed:
            out.stop()
            if out.sent:
                log.info("%s: %.1f s of the room recorded", out.name, out.seconds)


def _wait(plan: JoinPlan, thread: SessionThread, outputs: list[PacedOutput], window: Window | None,
          slot: NewestFrame) -> None:
    """Until the session ends: watch the clock, the outputs, the window and Ctrl-C."""
    interrupts = 0
    leaving = False
    while not thread.done.is_set():
        try:
            why = None
            if (plan.duration is not None and slot.first_at is not None
                    and time.monotonic() >= slot.first_at + plan.duration):
                why = f"--duration {plan.duration:g} s is over"
            failed = next((o for o in outputs if o.error is not None), None)
            if failed is not None:
                why = f"the {failed.name} failed"
            if window is not None and not leaving:
                if not window.update(slot, 1 / plan.fps):
                    why = "the window was closed"  # and not shown again: imshow would reopen it
            else:
                thread.wait(0.1)
            if why and not leaving:
                log.info("leaving room %r: %s", plan.link.room, why)
                leaving = True
                _end_recordings(outputs)
                thread.stop()
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                log.info("leaving room %r (Ctrl-C again to quit at once)", plan.link.room)
                leaving = True
                _end_recordings(outputs)
                thread.stop()
            else:
                thread.abort()
                thread.wait(5)
                raise
