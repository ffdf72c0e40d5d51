"""Where composites go when they are not sent over WebRTC: a video file."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import RoomfuseError


class SinkError(RoomfuseError):
    """A sink that cannot be written. The message is one line naming the file."""


class VideoWriter:
    """H.264 (libx264) in MP4/MKV/MOV, or VP8 in WebM, chosen by the file name.

    Frame size is fixed by the first frame; sizes must be even for 4:2:0 video, so an
    odd edge is cropped by one pixel.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, crf: int = 20):
        import av

        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise SinkError(f"{self.path}: folder {self.path.parent} does not exist")
        self.fps = fps
        self.crf = crf
        try:
            self._container = av.open(str(self.path), mode="w")
        except Exception as e:
            raise SinkError(f"{self.path}: cannot write ({str(e).splitlines()[0][:120]})") from None
        self._stream = None
        self.frames = 0  # frames encoded
        self._next = 0  # the lowest frame number still free

    def _open_stream(self, w: int, h: int) -> None:
        webm = self.path.suffix.lower() == ".webm"
        codec = "libvpx" if webm else "libx264"
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        if not webm:
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}

    def write(self, image: np.ndarray, index: int | None = None) -> None:
        """Append ``image`` as frame number ``index`` (at ``index / fps`` seconds; the
        next number by default). Numbers must grow; a number skipped shows the frame
        before it for longer, as a repeat would, without encoding one."""
        import av

        h, w = image.shape[:2]
        w2, h2 = w - w % 2, h - h % 2
        if self._stream is None:
            self._open_stream(w2, h2)
        index = self._next if index is None else index
        if index < self._next:
            raise SinkError(f"{self.path}: frame {index} written after frame {self._next - 1}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h2, :w2]), format="rgb24")
        frame.pts = index
        self._next = index + 1
        frame.time_base = Fraction(1) / self._stream.codec_context.framerate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
