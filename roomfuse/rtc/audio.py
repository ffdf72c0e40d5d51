"""A room's sound: every microphone mixed for everyone else (mix-minus).

The room already composes one picture for everyone; sound is handled the same way: each
participant receives one audio track carrying everyone but themselves. Mixing rather
than forwarding each microphone as a track of its own, because a browser's offer fixes
its tracks once (a join or a leave would otherwise need a renegotiation with every
viewer, a round aiortc cannot start from the server side) and a viewer's downlink stays
one Opus stream whatever the size of the room. The mix of a room of eight costs well
under a millisecond per 20 ms tick (benchmarks/RESULTS.md).

Per participant (``Voice``):

* an ``Inbox``: the decoded sound, held briefly and bounded. It is the mixer's jitter
  buffer, and also where sound waits for the picture: a participant's video reaches the
  composite after the room's tick wait, the pipeline and the encode, so their voice is
  held about as long (``Voice.follow_video``) to come out in step with their lips;
* a ``MixTrack``: what the participant hears, encoded by their own sender.

Level: voices are summed as floats and each listener's mix goes through a peak limiter
(instant attack, slow release) before it becomes 16-bit, so many people talking at once
get quieter together instead of clipping.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RATE = 48000  # Opus works at 48 kHz; other codecs' sound is resampled to it
FRAME = 960  # samples per tick: 20 ms, Opus's usual packet
FRAME_S = FRAME / RATE
AUDIO_TIME_BASE = fractions.Fraction(1, RATE)
CEILING = 0.89  # -1 dBFS: headroom for the encoder's own overshoot


def mono_float(frame, resampler) -> np.ndarray:
    """An ``av.AudioFrame`` of any format, rate and layout as mono float32 at ``RATE``."""
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


def make_resampler():
    import av

    return av.AudioResampler(format="flt", layout="mono", rate=RATE)


class Inbox:
    """One participant's received sound on its way to the mixer.

    It starts silent and begins to play once ``delay`` seconds are buffered; from then on
    it hands out one tick per tick. If the sender falls silent (a lost packet, a stall)
    it plays what is left, then waits for ``delay`` again; if sound piles up well beyond
    the delay (a burst after a stall, a faster clock at the sender) the oldest is
    dropped, so the delay never grows.

    The delay asked for (``set_delay``: in step with the picture) is a floor: a sender
    whose packets arrive unevenly (a busy network or server) runs the inbox dry, and
    each time it does the inbox keeps ``JITTER_STEP_S`` more, easing back after
    ``CALM_S`` without a gap. A gap is heard as a click; a few more milliseconds of
    delay are not heard at all.
    """

    JITTER_STEP_S = 0.02
    CALM_S = 10.0

    def __init__(self, delay_s: float = 0.04, max_s: float = 0.5):
        self.max = int(max_s * RATE)
        self.wanted = int(delay_s * RATE)  # the delay asked for
        self.margin = 0  # what jitter added to it
        self.size = 0
        self.playing = False
        self.underruns = 0
        self.dropped = 0  # samples thrown away to keep the delay
        self.received = 0  # samples put
        self.level = 0.0  # RMS of the newest sound, 0..1
        self._calm = 0  # samples played since the last underrun
        self._chunks: deque[np.ndarray] = deque()
        self._resampler = make_resampler()

    @property
    def delay(self) -> int:
        """Samples held before playing."""
        return min(self.wanted + self.margin, self.max // 2)

    def set_delay(self, seconds: float) -> None:
        self.wanted = int(min(max(seconds, FRAME_S), self.max / RATE / 2) * RATE)

    def put(self, frame) -> None:
        self.put_samples(mono_float(frame, self._resampler))

    def put_samples(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self._chunks.append(samples)
        self.size += len(samples)
        self.received += len(samples)
        self.level = float(np.sqrt(np.mean(np.square(samples))))
        if self.size > self.max:
            self._drop(self.size - self.delay)

    def _drop(self, n: int) -> None:
        self.dropped += n
        self._pop(n)

    def _pop(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        filled = 0
        while filled < n and self._chunks:
            head = self._chunks[0]
            take = min(n - filled, len(head))
            out[filled:filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[take:]
        self.size -= filled
        return out

    def take(self, n: int = FRAME) -> np.ndarray | None:
        """The next ``n`` samples, or None while there is nothing to play yet."""
        if not self.playing:
            if self.size < self.delay + n:
                return None
            self.playing = True
        if self.size < n:  # ran dry: play the rest, then wait for a longer delay
            self.playing = False
            self.underruns += 1
            self.margin = min(self.margin + int(self.JITTER_STEP_S * RATE), self.max // 2)
            self._calm = 0
            return self._pop(n)
        self._calm += n
        if self._calm > self.CALM_S * RATE and self.margin:
            self.margin = max(0, self.margin - int(self.JITTER_STEP_S * RATE))
            self._calm = 0
        # Bursts up to the delay again are normal jitter; beyond that the sound is old.
        excess = self.size - n - 2 * self.delay - FRAME
        if excess > 0:
            self._drop(self.size - n - self.delay)
        return self._pop(n)

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0
        self.playing = False


class Limiter:
    """Keeps a mix's peaks under ``ceiling``: the gain drops at once when a frame would
    go over it and comes back over about ``release_s`` (gain changes within a frame
    are ramped, so there are no steps to hear)."""

    def __init__(self, ceiling: float = CEILING, release_s: float = 0.3):
        self.ceiling = ceiling
        self.release = 1.0 - np.exp(-FRAME_S / release_s)
        self.gain = 1.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        limit = self.ceiling / peak if peak > 0 else 1.0
        if limit < self.gain:  # attack: the whole frame at the lower gain
            self.gain = limit
            return x * np.float32(limit)
        new = min(limit, self.gain + (1.0 - self.gain) * self.release)
        if new == self.gain == 1.0:
            return x
        ramp = np.linspace(self.gain, new, len(x), dtype=np.float32)
        self.gain = new
        return x * ramp


class MixTrack(MediaStreamTrack):
    """What one participant hears: the mixer pushes a frame per tick, the participant's
    sender pulls it. If the sender falls behind only the newest ``backlog`` ticks are
    kept (live sound drops stale frames; it is never queued for)."""

    kind = "audio"

    def __init__(self, backlog: int = 5):
        super().__init__()
        self._queue: deque[np.ndarray] = deque(maxlen=backlog)
        self._ready = asyncio.Event()
        self._pts = 0
        self.sent = 0
        self.dropped = 0  # ticks the sender never took

    def push(self, samples: np.ndarray) -> None:
        """``samples``: int16 mono, one tick."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(samples)
        self._ready.set()

    async def recv(self):
        import av

        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        samples = self._queue.popleft()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = AUDIO_TIME_BASE
        self._pts += len(samples)
        self.sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class Voice:
    """One participant in the mix: what they send (``inbox``, None until their
    microphone's track arrives) and what they hear (``track``)."""

    # The server delay of a participant's video, less what the audio receive buffer
    # already holds (aiortc_compat.make_prompt_audio: a packet is handed on when the next is in).
    RECEIVE_BUFFER_S = FRAME_S
    MIN_DELAY_S = 0.02
    MAX_DELAY_S = 0.25

    def __init__(self, key: str):
        self.key = key
        self.inbox: Inbox | None = None
        self.track: MixTrack | None = None
        self.muted = False
        self.limiter = Limiter()
        self.pump: asyncio.Task | None = None

    def receive(self, track) -> None:
        """Start taking the participant's microphone track into the inbox."""
        if self.inbox is None:
            self.inbox = Inbox()
        if self.pump is None:
            self.pump = asyncio.ensure_future(pump_audio(track, self.inbox, self.key))

    def send_to(self) -> MixTrack:
        if self.track is None:
            self.track = MixTrack()
        return self.track

    def follow_video(self, video_delay_s: float | None) -> None:
        """Hold this voice about as long as the same participant's video is held, so
        both come out together (hysteresis: a change under 20 ms is ignored)."""
        if self.inbox is None or video_delay_s is None:
            return
        want = min(max(video_delay_s - self.RECEIVE_BUFFER_S, self.MIN_DELAY_S), self.MAX_DELAY_S)
        if abs(want * RATE - self.inbox.wanted) > 0.02 * RATE:
            self.inbox.set_delay(want)

    async def close(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.gather(self.pump, return_exceptions=True)
        if self.track is not None:
            self.track.stop()


async def pump_audio(track, inbox: Inbox, label: str = "") -> None:
    """Move decoded sound from ``track`` into ``inbox`` until the track ends (aiortc's
    own queue behind ``recv`` is unbounded: drain it as fast as it fills)."""
    try:
        while True:
            inbox.put(await track.recv())
    except MediaStreamError:
        log.debug("%s: audio track ended", label or "track")


class Mixer:
    """A room's sound: every ``FRAME_S`` each voice's inbox gives a tick, and each
    listener gets the sum of everyone else's, limited."""

    def __init__(self, name: str = "", clock=time.monotonic):
        self.name = name
        self.clock = clock
        self.voices: dict[str, Voice] = {}
        self.ticks = 0
        self.late = 0  # ticks skipped because the event loop was held up
        self.ms = 0.0  # the newest tick's mixing time
        self._task: asyncio.Task | None = None

    def add(self, key: str) -> Voice:
        voice = self.voices.get(key)
        if voice is None:
            voice = self.voices[key] = Voice(key)
        return voice

    async def remove(self, key: str) -> None:
        voice = self.voices.pop(key, None)
        if voice is not None:
            await voice.close()

    def mix_once(self) -> None:
        t0 = time.perf_counter()
        chunks: dict[str, np.ndarray] = {}
        for key, v in self.voices.items():
            if v.inbox is None:
                continue
            chunk = v.inbox.take(FRAME)
            if chunk is not None and not v.muted:
                chunks[key] = chunk
        total = sum(chunks.values()) if chunks else None
        for key, v in self.voices.items():
            if v.track is None:
                continue
            own = chunks.get(key)
            if total is None or (own is not None and len(chunks) == 1):
                mix = np.zeros(FRAME, np.float32)  # nobody else is talking
            else:
                mix = total - own if own is not None else total
            mix = v.limiter(mix)
            v.track.push(np.clip(mix * 32767.0, -32768, 32767).astype(np.int16))
        self.ticks += 1
        self.ms = (time.perf_counter() - t0) * 1e3

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        next_t = self.clock()
        while True:
            next_t += FRAME_S
            wait = next_t - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -5 * FRAME_S:
                # The loop was held up for a while: go on from now rather than sending
                # a burst that every listener's jitter buffer would have to absorb.
                missed = int(-wait / FRAME_S)
                self.late += missed
                next_t += missed * FRAME_S
            if any(v.track is not None for v in self.voices.values()):
                self.mix_once()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for key in list(self.voices):
            await self.remove(key)
