"""The room's sound: real aiortc participants with tone microphones, over loopback.

Each participant sends a sine of its own pitch; what each one receives is judged by its
spectrum: the other voices must be in it, its own must not (mix-minus).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import numpy as np
import pytest

from roomfuse.rtc.audio import CEILING, FRAME, RATE, Inbox, Limiter, Mixer
from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.rtc.signalling import KEY_HEADER
from roomfuse.synthetic import SyntheticSource

from audio_util import Listener, ToneTrack, band_level, rms
from rtc_util import KEY, SourceTrack, room_info, run, serving, wait_for

pytestmark = pytest.mark.timeout(120)

ROOM = "hall"
# A cheap fill: the sound is the subject.
TELEA = replace(ROOM_PIPELINE, grow=replace(ROOM_PIPELINE.grow, grower="telea"))


def person(seed: int, hz: float | None, name: str, level: float = 0.3) -> Listener:
    # Small, slow video: the sound is the subject, and every peer runs in this process.
    video = SourceTrack(SyntheticSource(seed, size=(320, 180)), fps=5)
    return Listener(video, ToneTrack(hz, level) if hz else None, name)


async def set_state(http, base: str, who: Listener, token: str | None = None, **state) -> int:
    body = {"token": who.token if token is None else token, **state}
    async with http.post(f"{base}/rooms/{ROOM}/participants/{who.id}/state", json=body,
                         headers={KEY_HEADER: KEY}) as resp:
        return resp.status


def test_two_participants_each_hear_the_others_tone_and_not_their_own():
    async def main():
        async with serving(segmenter="key", pipeline=replace(TELEA, fps=10)) as srv, aiohttp.ClientSession() as http:
            a, b = person(1, 440.0, "a"), person(2, 660.0, "b")
            try:
                await a.join(http, srv.base, ROOM)
                await b.join(http, srv.base, ROOM)
                await a.wait_frames(5)
                await b.wait_frames(5)
                await asyncio.sleep(1.0)  # past the start of the mix
                since = time.monotonic()
                await a.wait_heard(2.0, since=since)
                await b.wait_heard(2.0, since=since)
                heard_a, heard_b = a.samples(since), b.samples(since)
                # Each hears the other's pitch, clearly, and next to nothing of its own.
                assert band_level(heard_a, 660) > 0.1, band_level(heard_a, 660)
                assert band_level(heard_b, 440) > 0.1, band_level(heard_b, 440)
                assert band_level(heard_a, 440) < 0.05 * band_level(heard_a, 660)
                assert band_level(heard_b, 660) < 0.05 * band_level(heard_b, 440)
                info = await room_info(http, srv.base, ROOM)
                assert all(p["audio"] and not p["muted"] for p in info["participants"]), info
            finally:
                await a.close()
                await b.close()

    run(main)


async def quiet(who: Listener) -> bool:
    # Over 0.6 s: a gap on a busy machine is not the end of a voice.
    recent = who.samples(time.monotonic() - 0.6)
    return len(recent) > 0.4 * RATE and rms(recent) < 0.002


async def loud(who: Listener) -> bool:
    return rms(who.samples(time.monotonic() - 0.2)) > 0.05


def test_mute_silences_a_voice_and_a_participant_without_a_microphone_still_hears():
    async def main():
        async with serving(segmenter="key", pipeline=replace(TELEA, fps=10)) as srv, aiohttp.ClientSession() as http:
            a, b, c = person(1, 440.0, "a"), person(2, 660.0, "b"), person(3, None, "no-mic")
            try:
                for p in (a, b, c):
                    await p.join(http, srv.base, ROOM)
                await c.wait_heard(1.0)
                t = time.monotonic()
                await c.wait_heard(1.5, since=t)
                both = c.samples(t)
                assert band_level(both, 440) > 0.1 and band_level(both, 660) > 0.1
                info = {p["name"]: p for p in (await room_info(http, srv.base, ROOM))["participants"]}
                assert info["no-mic"]["audio"] is False and info["a"]["audio"] is True

                # Someone else's token cannot mute a; a's own can.
                assert await set_state(http, srv.base, a, token=b.token, muted=True) == 403
                assert await set_state(http, srv.base, a, muted=True) == 200
                # What was already mixed and sent drains (quicker than this on a quiet machine).
                await wait_for(lambda: quiet(b), 5, "b's sound to go quiet after a muted")
                t = time.monotonic()
                await c.wait_heard(1.5, since=t)
                heard_c, heard_b = c.samples(t), b.samples(t)
                assert band_level(heard_c, 440) < 0.01, band_level(heard_c, 440)
                assert band_level(heard_c, 660) > 0.1  # b still comes through
                assert rms(heard_b) < 0.005, rms(heard_b)  # b hears only a, who is muted
                info = {p["name"]: p for p in (await room_info(http, srv.base, ROOM))["participants"]}
                assert info["a"]["muted"] is True

                assert await set_state(http, srv.base, a, muted=False) == 200
                await wait_for(lambda: loud(b), 5, "a's voice back for b after unmuting")
                t = time.monotonic()
                await c.wait_heard(1.0, since=t)
                assert band_level(c.samples(t), 440) > 0.1
            finally:
                for p in (a, b, c):
                    await p.close()

    run(main)


def test_many_loud_voices_do_not_clip():
    """Four people at 80 % of full scale each: the mix of three of them would reach
    2.4x full scale; the listener's limiter keeps it under the ceiling."""
    async def main():
        async with serving(segmenter="key", pipeline=replace(TELEA, fps=5)) as srv, aiohttp.ClientSession() as http:
            talkers = [person(i + 1, hz, f"t{i}", level=0.8) for i, hz in enumerate((300.0, 500.0, 700.0, 900.0))]
            listener = person(9, None, "listener")
            try:
                for p in talkers + [listener]:
                    await p.join(http, srv.base, ROOM)
                await listener.wait_heard(2.0, timeout=30)
                t = time.monotonic()
                await listener.wait_heard(2.0, since=t, timeout=30)
                heard = listener.samples(t)
                assert np.abs(heard).max() < 0.99, np.abs(heard).max()  # Opus adds a little overshoot
                for hz in (300, 500, 700, 900):  # everyone is still in it
                    assert band_level(heard, hz) > 0.1, hz
            finally:
                for p in talkers + [listener]:
                    await p.close()

    run(main, timeout=90)


# ---- the pieces, without a network ----------------------------------------------------

def tone(hz: float, n: int = FRAME, level: float = 0.5, start: int = 0) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * (np.arange(n) + start) / RATE)).astype(np.float32)


def test_inbox_waits_for_its_delay_keeps_it_and_recovers_from_a_gap():
    box = Inbox(delay_s=0.04)
    box.put_samples(tone(440, FRAME))
    box.put_samples(tone(440, FRAME))
    assert box.take() is None  # 40 ms buffered, the delay plus one tick needed
    box.put_samples(tone(440, FRAME))
    assert box.take() is not None and box.size == 2 * FRAME
    # A burst after a stall: what is beyond twice the delay is old; back to the delay.
    for _ in range(10):
        box.put_samples(tone(440, FRAME))
    box.take()
    assert box.size == box.delay and box.dropped > 0
    # Running dry: the rest is played, then it waits again, for a longer delay.
    box.take()
    box.take()
    assert box.underruns == 0
    box.take()
    assert box.underruns == 1 and not box.playing
    assert box.take() is None
    assert box.delay == 2 * FRAME + Inbox.JITTER_STEP_S * RATE
    # Ten calm seconds later the extra delay is given back.
    for _ in range(int(Inbox.CALM_S / 0.02) + 10):
        box.put_samples(tone(440, FRAME))
        box.take()
    assert box.delay == 2 * FRAME


def test_limiter_holds_the_ceiling_and_releases_slowly():
    lim = Limiter()
    loud = tone(440, level=2.4)
    out = lim(loud)
    assert np.abs(out).max() <= CEILING + 1e-6
    assert lim.gain == pytest.approx(CEILING / np.abs(loud).max())
    quiet = tone(440, level=0.1)
    gains = []
    for _ in range(10):
        lim(quiet)
        gains.append(lim.gain)
    assert all(b > a for a, b in zip(gains, gains[1:]))  # back toward 1, gradually
    assert gains[0] < 0.5 and gains[-1] < 1.0
    assert np.array_equal(Limiter()(quiet), quiet)  # below the ceiling nothing changes


def test_mixer_sends_each_listener_everyone_but_themselves():
    mixer = Mixer()
    voices = {k: mixer.add(k) for k in ("a", "b", "c")}
    pitches = {"a": 300.0, "b": 500.0, "c": 700.0}
    for k, v in voices.items():
        v.inbox = Inbox(delay_s=0.02)
        v.send_to()
    voices["c"].muted = True
    out = {k: [] for k in voices}
    for i in range(30):  # a tick's sound in, a tick's mix out, as in real time
        for k, v in voices.items():
            v.inbox.put_samples(tone(pitches[k], start=i * FRAME, level=0.2))
        mixer.mix_once()
        for k, v in voices.items():
            while v.track._queue:
                out[k].append(v.track._queue.popleft().astype(np.float32) / 32767)
    got = {k: np.concatenate(v) for k, v in out.items()}
    assert all(len(v) == 30 * FRAME for v in got.values())
    assert band_level(got["a"], 500) > 0.1 and band_level(got["a"], 300) < 0.01
    assert band_level(got["b"], 300) > 0.1 and band_level(got["b"], 500) < 0.01
    assert band_level(got["a"], 700) < 0.01  # c is muted
    assert band_level(got["c"], 300) > 0.1 and band_level(got["c"], 500) > 0.1  # c still hears


def test_a_voice_is_held_as_long_as_the_same_persons_picture():
    from roomfuse.rtc.audio import Voice

    v = Voice("a")
    v.inbox = Inbox(delay_s=0.04)
    v.follow_video(0.2)  # the picture waited 200 ms for its composite
    assert v.inbox.wanted == int((0.2 - Voice.RECEIVE_BUFFER_S) * RATE)
    v.follow_video(0.21)  # a 10 ms wobble is not followed
    assert v.inbox.wanted == int((0.2 - Voice.RECEIVE_BUFFER_S) * RATE)
    v.follow_video(5.0)  # never more than the cap ...
    assert v.inbox.wanted == int(Voice.MAX_DELAY_S * RATE)
    v.follow_video(0.0)  # ... nor less than the floor
    assert v.inbox.wanted == int(Voice.MIN_DELAY_S * RATE)
