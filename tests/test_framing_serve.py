"""A served room frames its participants: over real loopback WebRTC, a close-up and a
person further back come out the same size, eyes on one line."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import numpy as np
import pytest

from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.synthetic import SyntheticSource

from rtc_util import Participant, SourceTrack, room_info, run, serving
from test_framing import _CloseUp

pytestmark = pytest.mark.timeout(120)

ROOM = "seats"
IN_JOIN_ORDER = replace(ROOM_PIPELINE, layout=replace(ROOM_PIPELINE.layout, order="given"))


def head(image: np.ndarray, tile) -> tuple[int, int]:
    """(top, height) of the flat magenta head in a tile: the synthetic head is a disc,
    widest at its middle."""
    x, y, w, h = tile
    t = image[y:y + h, max(x, 0):x + w].astype(np.int16)
    person = (t[..., 0] > 170) & (t[..., 1] < 100) & (t[..., 2] > 170)
    rows = person.sum(axis=1)
    top = int(np.argmax(rows > 2))
    mid = top + int(np.argmax(rows[top:top + h // 3]))
    return top, 2 * (mid - top)


def test_served_room_frames_near_and_far_alike():
    async def main():
        # Seats in join order: seating is tested elsewhere, and a reseat mid-check
        # would move the tiles between reading them and reading the picture.
        async with serving(segmenter="key", pipeline=IN_JOIN_ORDER) as srv, aiohttp.ClientSession() as http:
            far = Participant(SourceTrack(SyntheticSource(1, size=(640, 360), sway=0.02)), "far")
            near = Participant(SourceTrack(_CloseUp(seed=2, zoom=2.2)), "near")
            try:
                await far.join(http, srv.base, ROOM)
                await near.join(http, srv.base, ROOM)
                await near.wait_frames(60)
                # Settled within a few seconds of composing, however loaded the machine.
                for _ in range(40):
                    info = {p["id"]: p["tile"] for p in (await room_info(http, srv.base, ROOM))["participants"]}
                    image = far.image()
                    (top_f, h_f), (top_n, h_n) = head(image, info[far.id]), head(image, info[near.id])
                    ratio = max(h_f, h_n) / max(1, min(h_f, h_n))
                    apart = abs((top_f + h_f / 2) - (top_n + h_n / 2)) / image.shape[0]
                    if ratio < 1.2 and apart < 0.04:
                        break
                    await asyncio.sleep(0.25)
                assert ratio < 1.2 and apart < 0.04, (h_f, h_n, apart)
            finally:
                await far.close()
                await near.close()

    run(main)
