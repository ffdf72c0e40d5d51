"""`roomfuse join --audio`: sound in and out of the command line.

A meeting app that reads the virtual camera carries its own sound, so `join` sends and
plays none by default. With ``--audio`` it sends the system's microphone (or, with
``--clip``, the clip's own sound track) and plays the room's sound on the system's
speaker. Devices are PortAudio's, through ``sounddevice``.

Threads: a microphone delivers blocks in PortAudio's thread and a clip is decoded in a
thread of its own; either hands 20 ms blocks to the event loop of whichever connection
is current (a reconnect makes a new track around the same source, so the device stays
open). The speaker pulls from a short buffer (``audio.Inbox``) in PortAudio's thread.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import RoomfuseError
from .audio import FRAME, RATE, Inbox

log = logging.getLogger(__name__)

MODES = ("both", "send", "play")


class SoundError(RoomfuseError):
    """No sound device (or no sound in a clip); the message says which and why."""


def _sounddevice(what: str):
    try:
        import sounddevice
    except OSError as e:  # the PortAudio library itself is missing
        raise SoundError(f"--audio: no {what}: {e} (install PortAudio: apt-get install libportaudio2, "
                         "brew install portaudio)") from None
    return sounddevice


class SoundSource:
    """Blocks of 20 ms (int16 mono at 48 kHz) for whichever track is current."""

    def __init__(self):
        self._lock = threading.Lock()
        self._consumer: tuple[asyncio.AbstractEventLoop, asyncio.Queue] | None = None
        self.blocks = 0

    def _deliver(self, block: np.ndarray) -> None:
        self.blocks += 1
        with self._lock:
            consumer = self._consumer
        if consumer is not None:
            loop, queue = consumer
            try:
                loop.call_soon_threadsafe(_offer, queue, block)
            except RuntimeError:  # that connection's loop has closed
                pass

    def track(self):
        """A new audio track for the current connection (call inside its event loop)."""
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

        queue: asyncio.Queue = asyncio.Queue(maxsize=10)
        with self._lock:
            self._consumer = (asyncio.get_running_loop(), queue)
        source = self

        class SoundTrack(MediaStreamTrack):
            kind = "audio"

            def __init__(self):
                super().__init__()
                self._pts = 0

            async def recv(self):
                import av

                if self.readyState != "live":
                    raise MediaStreamError
                block = await queue.get()
                frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate, frame.pts = RATE, self._pts
                frame.time_base = fractions.Fraction(1, RATE)
                self._pts += len(block)
                return frame

            def stop(self):
                super().stop()
                with source._lock:
                    if source._consumer is not None and source._consumer[1] is queue:
                        source._consumer = None

        return SoundTrack()

    def close(self) -> None:
        pass


def _offer(queue: asyncio.Queue, block: np.ndarray) -> None:
    if queue.full():  # the sender fell behind: live sound drops the oldest
        queue.get_nowait()
    queue.put_nowait(block)


class Microphone(SoundSource):
    """The system's default input (or ``device``)."""

    def __init__(self, device=None, stream_factory=None):
        super().__init__()
        factory = stream_factory or _sounddevice("microphone").InputStream
        try:
            self._stream = factory(samplerate=RATE, channels=1, dtype="int16", blocksize=FRAME, device=device,
                                   callback=self._callback)
            self._stream.start()
        except Exception as e:  # PortAudioError and friends
            raise SoundError(f"--audio: cannot open the microphone ({str(e).splitlines()[0][:120]})") from None

    def _callback(self, data, frames, when, status) -> None:
        self._deliver(np.array(data, np.int16).reshape(-1))

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class ClipSound(SoundSource):
    """A clip's sound track, looping, decoded and paced in a thread of its own."""

    def __init__(self, path: str | Path):
        import av

        super().__init__()
        self.path = Path(path)
        try:
            with av.open(str(self.path)) as container:
                has_sound = bool(container.streams.audio)
        except Exception as e:
            raise SoundError(f"{self.path}: cannot open ({str(e).splitlines()[0][:100]})") from None
        if not has_sound:
            raise SoundError(f"--audio with --clip {self.path}: the clip has no sound track")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roomfuse-clip-sound", daemon=True)
        self._thread.start()

    def _blocks(self):
        import av

        while not self._stop.is_set():
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            pending = np.zeros(0, np.int16)
            with av.open(str(self.path)) as container:
                for frame in container.decode(container.streams.audio[0]):
                    for f in resampler.resample(frame):
                        pending = np.concatenate([pending, f.to_ndarray().reshape(-1)])
                    while len(pending) >= FRAME:
                        yield pending[:FRAME]
                        pending = pending[FRAME:]
                    if self._stop.is_set():
                        return

    def _run(self) -> None:
        next_t = time.monotonic()
        for block in self._blocks():
            next_t += FRAME / RATE
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if delay < -0.2:  # held up (a busy machine): go on from now
                next_t = time.monotonic()
            self._deliver(block)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Speaker:
    """The room's sound on the system's default output (or ``device``)."""

    def __init__(self, device=None, stream_factory=None):
        self._inbox = Inbox(delay_s=0.06)
        self._lock = threading.Lock()
        factory = stream_factory or _sounddevice("speaker").OutputStream
        try:
            self._stream = factory(samplerate=RATE, channels=1, dtype="int16", blocksize=FRAME, device=device,
                                   callback=self._callback)
            self._stream.start()
        except Exception as e:
            raise SoundError(f"--audio: cannot open the speaker ({str(e).splitlines()[0][:120]})") from None

    def put(self, frame) -> None:
        """A received sound (``av.AudioFrame``), from the event loop."""
        with self._lock:
            self._inbox.put(frame)

    def _callback(self, out, frames, when, status) -> None:
        with self._lock:
            block = self._inbox.take(frames)
        samples = np.zeros(frames, np.float32) if block is None else block
        out[:, 0] = np.clip(samples * 32767.0, -32768, 32767).astype(np.int16)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


def open_sound(mode: str | None, clip: Path | None) -> tuple[SoundSource | None, Speaker | None]:
    """What ``--audio MODE`` asks for: (what to send, where to play), either may be None."""
    if mode is None:
        return None, None
    source = speaker = None
    try:
        if mode in ("both", "send"):
            source = ClipSound(clip) if clip is not None else Microphone()
        if mode in ("both", "play"):
            speaker = Speaker()
    except SoundError:
        if source is not None:
            source.close()
        raise
    return source, speaker
