"""Two participants sending real webcam clips to a real server (mediapipe, the default
grower) over loopback: for ten seconds both receive the room, and segmentation of what
they receive finds both people in it."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from roomfuse.capture import ClipSource
from roomfuse.segment import PersonSegmenter
from roomfuse.frames import Frame

from rtc_util import Participant, SourceTrack, room_info, run, serving

pytestmark = pytest.mark.timeout(180)

ROOM = "clips"
CANVAS = (1280, 360)
SECONDS = 10.0


def person_share(segmenter: PersonSegmenter, image, tile) -> float:
    """Fraction of a tile that segmentation calls person (fresh segmenter state each time)."""
    x, y, w, h = tile
    segmenter.reset()
    cut = segmenter(Frame(image=image[y:y + h, x:x + w].copy(), pts=0.0, index=0))
    return float((cut.alpha > 0.5).mean())


def test_two_real_clips_both_people_reach_both_participants(person_clip):
    clips = [person_clip("intel_asl_bird.mkv"), person_clip("pyfeat_single_face.mp4")]

    async def main():
        sources = [ClipSource(c) for c in clips]
        segmenter = PersonSegmenter()
        async with serving() as srv, aiohttp.ClientSession() as http:
            people = [Participant(SourceTrack(s), name=c.stem) for s, c in zip(sources, clips)]
            try:
                for p in people:
                    await p.join(http, srv.base, ROOM)
                for p in people:
                    await p.wait_frames(10, timeout=60)
                start = [p.frames for p in people]
                t0 = time.monotonic()
                samples = []
                while time.monotonic() - t0 < SECONDS:
                    await asyncio.sleep(1.0)
                    info = await room_info(http, srv.base, ROOM)
                    tiles = [q["tile"] for q in info["participants"]]
                    assert len(tiles) == 2 and all(tiles), info
                    for p in people:
                        image = p.image()
                        assert image.shape[1::-1] == CANVAS
                        shares = await asyncio.to_thread(lambda: [person_share(segmenter, image, t) for t in tiles])
                        samples.append((p.name, shares))
                elapsed = time.monotonic() - t0
                for p, n0 in zip(people, start):
                    assert p.sizes == {CANVAS}, p.sizes
                    fps = (p.frames - n0) / elapsed
                    # A stall detector, not a performance test (benchmarks/bench_serve.py is):
                    # this machine is shared and the clients run in the same process.
                    assert fps >= 5, f"{p.name} received only {fps:.1f} composite fps"
                assert len(samples) >= 2 * int(SECONDS) - 2
                missing = [(name, s) for name, s in samples if min(s) < 0.05]
                assert not missing, f"a person missing from the received room: {missing}"
            finally:
                for p in people:
                    await p.close()
                segmenter.close()
                for s in sources:
                    s.close()
    run(main, timeout=150)
