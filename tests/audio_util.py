"""Sound for the WebRTC tests: a tone as a microphone, and a participant that listens.

The received sound is judged by frequency: a sine of a known pitch goes in, and the
spectrum of what comes out says whose voice it is, however the codec and the mixer
changed its level and phase.
"""
from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from rtc_util import Participant

RATE = 48000
FRAME = 960


class ToneTrack(MediaStreamTrack):
    """A microphone stand-in: a sine of ``hz`` at ``level`` (0..1 of full scale), paced
    by the wall clock in 20 ms frames. ``silent = True`` sends silence instead."""

    kind = "audio"

    def __init__(self, hz: float, level: float = 0.3):
        super().__init__()
        self.hz, self.level = hz, level
        self.silent = False
        self.sent = 0
        self._start: float | None = None

    async def recv(self):
        import av

        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.sent * FRAME / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self.sent * FRAME) / RATE
        wave = np.zeros(FRAME) if self.silent else self.level * np.sin(2 * np.pi * self.hz * t)
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.sent * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += 1
        return frame


class Listener(Participant):
    """A participant that also sends ``audio`` (a track, or None for no microphone:
    the offer then only receives sound) and keeps what it hears, as mono float
    samples with their arrival times."""

    def __init__(self, video: MediaStreamTrack, audio: MediaStreamTrack | None, name: str = "test",
                 hear: bool = True):
        super().__init__(video, name)
        self.audio = audio
        self.hear = hear
        self.heard: list[tuple[float, np.ndarray]] = []
        self._audio_pump: asyncio.Task | None = None

        @self.pc.on("track")
        def on_audio(t):
            if t.kind == "audio":
                self._audio_pump = asyncio.ensure_future(self._listen(t))

    async def _listen(self, t) -> None:
        import av

        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        try:
            while True:
                frame = await t.recv()
                now = time.monotonic()
                for f in resampler.resample(frame):
                    self.heard.append((now, f.to_ndarray().reshape(-1).copy()))
        except MediaStreamError:
            pass

    async def join(self, http, base: str, room: str, **kw) -> str:
        if self.audio is not None:
            self.pc.addTransceiver(self.audio, direction="sendrecv" if self.hear else "sendonly")
        elif self.hear:
            self.pc.addTransceiver("audio", direction="recvonly")
        return await super().join(http, base, room, **kw)

    def samples(self, since: float = 0.0) -> np.ndarray:
        chunks = [s for t, s in self.heard if t >= since]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def wait_heard(self, seconds: float, since: float = 0.0, timeout: float = 20.0) -> None:
        """Until ``seconds`` of sound have arrived after ``since``."""
        deadline = time.monotonic() + timeout
        while len(self.samples(since)) < seconds * RATE:
            assert time.monotonic() < deadline, f"{self.name}: heard only {len(self.samples(since)) / RATE:.1f} s"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await super().close()
        if self._audio_pump is not None:
            await asyncio.gather(self._audio_pump, return_exceptions=True)


def band_level(samples: np.ndarray, hz: float, width: float = 15.0) -> float:
    """RMS amplitude of ``samples`` within ``hz`` +- ``width`` (a Hann-windowed spectrum)."""
    if len(samples) < RATE // 10:
        return 0.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) * 2 / window.sum()
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    band = (freqs > hz - width) & (freqs < hz + width)
    return float(np.sqrt(np.sum(np.square(spectrum[band])) / 2))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0
