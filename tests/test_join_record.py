"""A recording lasts as long as the call, even on a machine too slow to encode every frame.

The recording's encoder is slowed on purpose (each frame 50 ms more, where 30 fps leaves
33 ms): it then writes only some of the ticks, and the ones it misses are covered by the
frame before, as a repeat would be, so the file keeps the call's length.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from roomfuse.sinks import VideoWriter
from roomfuse.vcam import NewestFrame, PacedOutput

from test_join import KEY, Serve, TESTS  # noqa: F401  (the real server, started as users do)

SLOW_ENCODE_S = 0.05
# `roomfuse join` with every frame the recording encodes made SLOW_ENCODE_S slower.
WITH_SLOW_RECORDING = (
    "import sys, time; from roomfuse import sinks; write = sinks.VideoWriter.write\n"
    "def slow(self, image, index=None):\n"
    f"    time.sleep({SLOW_ENCODE_S}); return write(self, image, index)\n"
    "sinks.VideoWriter.write = slow\n"
    "from roomfuse.cli import main; sys.exit(main(sys.argv[1:]))"
)


def video_seconds(path) -> tuple[float, int]:
    """(duration in seconds as players see it, frames stored)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
        last = frames[-1]
        end = float((last.pts + 1) * stream.time_base) if last.duration in (None, 0) else \
            float((last.pts + last.duration) * stream.time_base)
        start = float(frames[0].pts * stream.time_base)
    return end - start, len(frames)


@pytest.mark.timeout(180)
def test_join_record_for_20_s_with_a_slowed_encoder_writes_20_s(tmp_path, person_clip):
    server = Serve(tmp_path).start()
    out = tmp_path / "call.mp4"
    try:
        result = subprocess.run(
            [sys.executable, "-c", WITH_SLOW_RECORDING, "join", server.url, "--name", "slow-recorder",
             "--clip", str(person_clip("intel_asl_bird.mkv")), "--record", str(out), "--duration", "20",
             "--fps", "30"], capture_output=True, text=True, timeout=150)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    seconds, frames = video_seconds(out)
    assert abs(seconds - 20.0) <= 0.5, (seconds, frames, result.stderr[-2000:])
    # It really was too slow for every tick: well under 30 frames a second were encoded.
    assert frames < 0.8 * 20 * 30, frames
    assert "of the room recorded" in result.stderr


def test_timed_output_covers_every_tick_even_when_the_sink_is_slow(tmp_path):
    """The same, in miniature and without a network: 2 s at 40 fps into a sink that takes
    40 ms a frame (25 fps at most)."""
    slot = NewestFrame()
    image = np.full((64, 96, 3), 128, np.uint8)
    writer = VideoWriter(tmp_path / "paced.mp4", fps=40)
    stamps = []

    def write(img, tick):
        time.sleep(0.04)
        stamps.append(tick)
        writer.write(img, tick)

    out = PacedOutput("recording", slot, 40, write, timed=True).start()
    stop_at = None

    def feed():
        nonlocal stop_at
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            slot.put(image)
            time.sleep(0.01)
        stop_at = time.monotonic()
        out.stop()

    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join()
    writer.close()
    assert out.error is None
    assert stamps == sorted(set(stamps))  # strictly growing
    assert len(stamps) < 0.8 * 2.0 * 40  # the sink could not keep up ...
    seconds, _ = video_seconds(tmp_path / "paced.mp4")
    assert abs(seconds - 2.0) < 0.15, seconds  # ... and the file still lasts 2 s
    # Stopping twice adds nothing.
    n = len(stamps)
    out.stop()
    assert len(stamps) == n
