"""Joining, leaving and vanishing, with synthetic participants over real loopback WebRTC.

The synthetic person is flat magenta, so how much of a participant is still visible in
the composite is a pixel count, no segmentation model needed.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.rtc.ice import rtc_configuration
from roomfuse.rtc.signalling import offer_body
from roomfuse.synthetic import SyntheticSource, make_room

from rtc_util import KEY, Participant, SourceTrack, room_info, run, serving, wait_for

pytestmark = pytest.mark.timeout(120)

ROOM = "den"
CANVAS = (1280, 360)


def magenta_fraction(image: np.ndarray, tile) -> float:
    x, y, w, h = tile
    t = image[y:y + h, x:x + w].astype(np.int16)
    person = (t[..., 0] > 180) & (t[..., 1] < 90) & (t[..., 2] > 180)
    return float(person.mean())


def room_likeness(image: np.ndarray, tile, seed: int) -> float:
    """Correlation of a tile's background with the synthetic room it shows: near 1 for a
    faithful picture (colour gains do not change it), far lower for a damaged stream."""
    x, y, w, h = tile
    got = cv2.cvtColor(np.ascontiguousarray(image[y:y + h, x:x + w]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    want = cv2.cvtColor(cv2.resize(make_room(seed, (640, 360)), (w, h)), cv2.COLOR_RGB2GRAY).astype(np.float32)
    t = image[y:y + h, x:x + w].astype(np.int16)
    person = ((t[..., 0] > 150) & (t[..., 1] < 120) & (t[..., 2] > 150)).astype(np.uint8)
    room = cv2.dilate(person, np.ones((25, 25), np.uint8)) == 0
    return float(np.corrcoef(got[room], want[room])[0, 1])


def synthetic(seed: int, name: str) -> Participant:
    # The person sways slowly so the frames differ but stay comparable.
    return Participant(SourceTrack(SyntheticSource(seed, size=(640, 360), sway=0.05)), name)


async def people(http, base) -> dict[str, dict]:
    return {p["id"]: p for p in (await room_info(http, base, ROOM))["participants"]}


def test_join_and_leave_relayout_on_a_fixed_canvas():
    async def main():
        # Whole pictures in join order, so each tile can be compared with its room.
        async with serving(segmenter="key", pipeline=replace(
                ROOM_PIPELINE, framing=replace(ROOM_PIPELINE.framing, enabled=False),
                layout=replace(ROOM_PIPELINE.layout, order="given"))) as srv, aiohttp.ClientSession() as http:
            a, b = synthetic(1, "a"), synthetic(2, "b")
            try:
                await a.join(http, srv.base, ROOM)
                await a.wait_frames(5)
                alone = (await people(http, srv.base))[a.id]["tile"]
                await b.join(http, srv.base, ROOM)
                await b.wait_frames(30)
                both = await people(http, srv.base)
                ta, tb = both[a.id]["tile"], both[b.id]["tile"]
                # How long the server held each new frame (the page shows it).
                assert all(0 < both[x.id]["delay_ms"] < 2000 for x in (a, b)), both
                # Side by side in join order, the gap between them for the grower.
                assert ta[0] + ta[2] < tb[0] and ta[1] == tb[1], (ta, tb)
                assert ta != alone
                # Both see both people, in their own rooms, undamaged.
                img = b.image()
                assert img.shape[1::-1] == CANVAS
                assert magenta_fraction(img, ta) > 0.05 and magenta_fraction(img, tb) > 0.05
                for _ in range(10):
                    await asyncio.sleep(0.2)
                    for viewer in (a, b):
                        shown = viewer.image()
                        likeness = [room_likeness(shown, ta, 1), room_likeness(shown, tb, 2)]
                        assert min(likeness) > 0.9, (viewer.name, likeness)
                # The gap between the tiles was grown, not left black.
                gap = img[ta[1]:ta[1] + ta[3], ta[0] + ta[2] + 4:tb[0] - 4]
                assert gap.size and gap.mean() > 30, gap.mean()

                assert await b.leave(http, srv.base, ROOM) == 200
                left = await people(http, srv.base)
                assert list(left) == [a.id]
                # a slides back to the middle over a few frames, then stays there.
                await wait_for(lambda: _tile_is(http, srv.base, a.id, alone), 5, "a back in the middle")
                n = a.frames
                await a.wait_frames(n + 20, timeout=10)
                assert a.sizes == {CANVAS} and b.sizes == {CANVAS}
            finally:
                await a.close()
                await b.close()
    run(main, timeout=90)


async def _tile_is(http, base, pid, tile) -> bool:
    return (await people(http, base))[pid]["tile"] == tile


def test_frozen_participant_fades_out_and_is_removed():
    async def main():
        stall, fade = 1.0, 1.0
        # Seats in join order: automatic seating may swap the two after b's tile is read,
        # and the fade, not the seating, is the subject here.
        in_join_order = replace(ROOM_PIPELINE, layout=replace(ROOM_PIPELINE.layout, order="given"))
        async with serving(segmenter="key", pipeline=in_join_order, stall_s=stall, fade_s=fade) as srv, \
                aiohttp.ClientSession() as http:
            a, b = synthetic(1, "a"), synthetic(2, "b")
            try:
                await a.join(http, srv.base, ROOM)
                await b.join(http, srv.base, ROOM)
                await a.wait_frames(30)
                tile_b = (await people(http, srv.base))[b.id]["tile"]
                shown = magenta_fraction(a.image(), tile_b)
                assert shown > 0.05
                b.track.freeze()  # b's camera stops; the connection stays up
                t0 = time.monotonic()
                await wait_for(lambda: _state_is(http, srv.base, b.id, "leaving"), stall + 3, "b fading")
                # While fading, b's person melts into the room behind them.
                faintest = shown
                while b.id in await people(http, srv.base):
                    faintest = min(faintest, magenta_fraction(a.image(), tile_b))
                    assert time.monotonic() - t0 < stall + fade + 5, "b was never removed"
                    await asyncio.sleep(0.05)
                removed_after = time.monotonic() - t0
                assert removed_after < stall + fade + 3
                assert faintest < 0.5 * shown, (faintest, shown)
                # The server hung up on b; a is alone and still served.
                await wait_for(lambda: _closed(b.pc), 5, "b's connection closed by the server")
                n = a.frames
                await a.wait_frames(n + 20, timeout=10)
                assert list(await people(http, srv.base)) == [a.id]
            finally:
                await a.close()
                await b.close()
    run(main, timeout=90)


async def _state_is(http, base, pid, state) -> bool:
    p = (await people(http, base)).get(pid)
    return p is not None and p["state"] == state


async def _closed(pc) -> bool:
    return pc.connectionState == "closed"


def test_peer_that_hangs_up_without_leaving_is_removed():
    async def main():
        async with serving(segmenter="key", fade_s=0.5) as srv, aiohttp.ClientSession() as http:
            a, b = synthetic(1, "a"), synthetic(2, "b")
            try:
                await a.join(http, srv.base, ROOM)
                await b.join(http, srv.base, ROOM)
                await b.wait_frames(10)
                await b.pc.close()  # no DELETE
                await wait_for(lambda: _absent(http, srv.base, b.id), 5, "b removed")
                n = a.frames
                await a.wait_frames(n + 10, timeout=10)
            finally:
                await a.close()
                await b.close()
    run(main, timeout=60)


async def _absent(http, base, pid) -> bool:
    return pid not in await people(http, base)


def test_participant_that_never_connects_is_removed():
    async def main():
        async with serving(segmenter="key", connect_timeout_s=1.5) as srv, aiohttp.ClientSession() as http:
            from aiortc import VideoStreamTrack

            pc = RTCPeerConnection(rtc_configuration())
            pc.addTransceiver(VideoStreamTrack(), direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(f"{srv.base}/rooms/{ROOM}/offer",
                                 json=offer_body(pc.localDescription.sdp, "ghost", KEY)) as resp:
                pid = (await resp.json())["participant"]
            await pc.close()  # never applies the answer: ICE never completes
            assert (await people(http, srv.base))[pid]["state"] == "connecting"
            await wait_for(lambda: _absent(http, srv.base, pid), 5, "the ghost removed")
            assert not srv.rooms.rooms  # the empty room was closed
    run(main, timeout=30)


def test_a_camera_that_changes_resolution_is_redrawn_in_its_new_shape():
    async def main():
        async with serving(segmenter="key") as srv, aiohttp.ClientSession() as http:
            a, b = synthetic(1, "a"), synthetic(2, "b")
            try:
                await a.join(http, srv.base, ROOM)
                await b.join(http, srv.base, ROOM)
                await a.wait_frames(10)
                before = (await people(http, srv.base))[a.id]
                assert before["size"] == [640, 360]
                a.track.size = (320, 240)  # a 4:3 camera mode, as a browser may switch to
                await wait_for(lambda: _size_is(http, srv.base, a.id, [320, 240]), 10, "the new size")
                # The tiles slide to the new plan over a few frames; a's is then 4:3.
                await wait_for(lambda: _aspect_is(http, srv.base, a.id, 4 / 3), 10, "a 4:3 tile")
                n = [a.frames, b.frames]
                await a.wait_frames(n[0] + 10, timeout=10)
                await b.wait_frames(n[1] + 10, timeout=10)
                assert a.sizes == b.sizes == {CANVAS}
            finally:
                await a.close()
                await b.close()
    run(main, timeout=60)


async def _size_is(http, base, pid, size) -> bool:
    return (await people(http, base))[pid]["size"] == size


async def _aspect_is(http, base, pid, aspect) -> bool:
    tile = (await people(http, base))[pid]["tile"]
    return abs(tile[2] / tile[3] - aspect) < 0.02
