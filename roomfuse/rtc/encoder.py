"""One VP8 encode of each composite, shared by every viewer.

aiortc encodes separately for every peer connection, so a room of N people would encode
the same picture N times (each 3-9 ms on these machines) and, worse, restart each
encoder whenever that viewer's bandwidth estimate moves by 10 %. Here the room encodes
once and every viewer's sender only packetizes the result (aiortc sends ``av.Packet``s
as they are). What per-viewer encoders did for free is done here for all:

* a keyframe when a viewer starts or reports picture loss (PLI/FIR);
* the bitrate follows the lowest estimate any viewer reports (REMB), restarting the
  encoder only for a real change and not more often than every few seconds.
"""
from __future__ import annotations

import logging
import threading
import time

from .tracks import VIDEO_TIME_BASE

log = logging.getLogger(__name__)

MIN_BITRATE = 300_000
MAX_BITRATE = 2_000_000
START_BITRATE = 1_000_000


class SharedEncoder:
    """libvpx VP8 with aiortc's real-time settings. ``encode`` runs in the room's
    executor thread; the keyframe and bitrate requests come from the event loop."""

    def __init__(self, bitrate: int = START_BITRATE, reconfigure_every_s: float = 3.0,
                 clock=time.monotonic):
        self.bitrate = bitrate
        self.reconfigure_every_s = reconfigure_every_s
        self.clock = clock
        self.restarts = 0
        self._codec = None
        self._lock = threading.Lock()
        self._keyframe = False
        self._wanted: dict[object, int] = {}  # viewer -> its latest estimate, bits/s
        self._changed_at = -float("inf")

    def request_keyframe(self) -> None:
        with self._lock:
            self._keyframe = True

    def report_bitrate(self, viewer, bits_per_s: int) -> None:
        with self._lock:
            self._wanted[viewer] = bits_per_s

    def forget(self, viewer) -> None:
        with self._lock:
            self._wanted.pop(viewer, None)

    def _target(self) -> int:
        want = min(self._wanted.values()) if self._wanted else self.bitrate
        return max(MIN_BITRATE, min(MAX_BITRATE, int(want)))

    def _open(self, width: int, height: int, fps: float):
        import av

        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = self.bitrate
        codec.framerate = round(fps)
        codec.time_base = VIDEO_TIME_BASE  # composites are stamped with the RTP clock
        codec.gop_size = 3000  # keyframes only when asked for
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": str(self.bitrate), "minrate": str(self.bitrate), "maxrate": str(self.bitrate),
            "cpu-used": "-6", "deadline": "realtime", "lag-in-frames": "0",
            "noise-sensitivity": "4", "overshoot-pct": "15", "undershoot-pct": "100",
            "partitions": "0", "static-thresh": "1",
        }
        # One thread: the room's pipeline and the network already share two cores.
        codec.thread_count = 1
        return codec

    def encode(self, frame, fps: float):
        """(av.Packet, is keyframe) for ``frame`` (yuv420p, pts and time_base set), or
        None when the encoder gave nothing for it."""
        import av

        with self._lock:
            keyframe, self._keyframe = self._keyframe, False
            target = self._target()
        now = self.clock()
        restart = self._codec is not None and (
            (self._codec.width, self._codec.height) != (frame.width, frame.height)
            or (abs(target - self.bitrate) > 0.2 * self.bitrate and now - self._changed_at >= self.reconfigure_every_s))
        if restart:
            log.debug("composite encoder: %d -> %d bit/s", self.bitrate, target)
            self._codec = None
            self.restarts += 1
        if self._codec is None:
            self.bitrate, self._changed_at = target, now
            self._codec = self._open(frame.width, frame.height, fps)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        # Taken before encoding: PyAV rescales the frame's pts to the codec's time base
        # in place, and two composites in one 1/30 s slot would then share an RTP
        # timestamp, which a receiver reads as one frame.
        pts, time_base = frame.pts, frame.time_base
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        if not data:
            return None
        packet = av.Packet(data)
        packet.pts, packet.time_base = pts, time_base
        return packet, data[0] & 0x01 == 0  # VP8 frame tag: bit 0 clear on keyframes

    def close(self) -> None:
        self._codec = None
