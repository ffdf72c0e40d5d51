"""`roomfuse join --audio`: a clip's sound reaches the others; the room's sound reaches the
speaker; no sound device is one clear line. Sound devices are PortAudio's; these
machines have none, so the device classes are driven through their stream factories."""
from __future__ import annotations

import asyncio
import fractions
import subprocess
import sys
import time
from dataclasses import replace

import aiohttp
import numpy as np
import pytest

from roomfuse.rtc.audio import FRAME, RATE
from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.rtc.sound import Microphone, Speaker
from roomfuse.synthetic import SyntheticSource

from audio_util import Listener, band_level
from rtc_util import KEY, SourceTrack, room_info, run, serving

pytestmark = pytest.mark.timeout(120)

TELEA_10 = replace(ROOM_PIPELINE, fps=10, grow=replace(ROOM_PIPELINE.grow, grower="telea"))  # cheap: sound is the subject


def clip_with_tone(path, hz: float, seconds: float = 3.0):
    """A short clip with a synthetic room on video and a sine on its sound track."""
    import av

    src = SyntheticSource(4, size=(320, 180))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=15)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for i in range(int(seconds * 15)):
            frame = av.VideoFrame.from_ndarray(src.frame_at(i / 15).image, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        n = 1024
        for i in range(int(seconds * RATE / n)):
            t = (np.arange(n) + i * n) / RATE
            samples = (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, i * n, fractions.Fraction(1, RATE)
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)
    return path


def test_join_sends_a_clips_sound_to_the_room(tmp_path):
    clip = clip_with_tone(tmp_path / "tone.mkv", 523.0)

    async def main():
        async with serving(segmenter="key", pipeline=TELEA_10) as srv, aiohttp.ClientSession() as http:
            listener = Listener(SourceTrack(SyntheticSource(1, size=(320, 180)), fps=5), None, "listener")
            join = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "roomfuse", "join", f"{srv.base}/#key={KEY}", "--name", "clip",
                "--clip", str(clip), "--audio", "send", "--duration", "30",
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                await listener.join(http, srv.base, "main")
                deadline = time.monotonic() + 60
                while True:
                    heard = listener.samples(time.monotonic() - 1.5)
                    if len(heard) > RATE and band_level(heard, 523) > 0.05:
                        break
                    assert join.returncode is None, (await join.stderr.read()).decode()[-2000:]
                    assert time.monotonic() < deadline, f"no 523 Hz from the clip: {band_level(heard, 523)}"
                    await asyncio.sleep(0.5)
                people = {p["name"]: p for p in (await room_info(http, srv.base, "main"))["participants"]}
                assert people["clip"]["audio"] is True
            finally:
                if join.returncode is None:
                    join.send_signal(2)
                    await asyncio.wait_for(join.wait(), 30)
                await listener.close()
            assert join.returncode == 0, (await join.stderr.read()).decode()[-2000:]

    run(main, timeout=100)


class FakeStream:
    """What sounddevice's InputStream/OutputStream are to the classes: a callback driven
    block by block (here by the test instead of PortAudio's thread)."""

    def __init__(self, *, samplerate, channels, dtype, blocksize, device, callback):
        assert (samplerate, channels, dtype, blocksize) == (RATE, 1, "int16", FRAME)
        self.callback = callback
        self.started = self.closed = False

    def start(self):
        self.started = True

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_speaker_plays_the_rooms_sound():
    import av

    streams = []
    speaker = Speaker(stream_factory=lambda **kw: streams.append(FakeStream(**kw)) or streams[-1])
    played = []
    for i in range(40):
        t = (np.arange(FRAME) + i * FRAME) / RATE
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
                                           .reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        speaker.put(frame)
        out = np.zeros((FRAME, 1), np.int16)
        streams[0].callback(out, FRAME, None, None)
        played.append(out[:, 0].astype(np.float32) / 32767)
    speaker.close()
    assert streams[0].started and streams[0].closed
    sound = np.concatenate(played)
    assert band_level(sound, 440) > 0.2
    assert np.abs(sound[:FRAME]).max() == 0  # it waits for its short buffer first


def test_microphone_blocks_become_an_audio_track():
    streams = []
    mic = Microphone(stream_factory=lambda **kw: streams.append(FakeStream(**kw)) or streams[-1])

    async def main():
        track = mic.track()
        block = (np.arange(FRAME) % 100).astype(np.int16).reshape(-1, 1)
        for _ in range(3):
            streams[0].callback(block, FRAME, None, None)
        frames = [await asyncio.wait_for(track.recv(), 2) for _ in range(3)]
        track.stop()
        assert [f.pts for f in frames] == [0, FRAME, 2 * FRAME]
        assert all(f.sample_rate == RATE and f.samples == FRAME for f in frames)
        assert np.array_equal(frames[1].to_ndarray().reshape(-1), block.reshape(-1))

    run(main, timeout=10)
    mic.close()


def test_audio_without_a_sound_system_is_one_line_and_exit_2():
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass
    else:
        pytest.skip("PortAudio is installed here: the missing-library path cannot be shown")
    result = subprocess.run([sys.executable, "-m", "roomfuse", "join", "http://127.0.0.1:9/#key=k", "--audio"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--audio: no microphone" in result.stderr
    assert "PortAudio" in result.stderr
