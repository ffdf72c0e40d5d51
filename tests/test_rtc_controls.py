"""What people change in a running room: the host's layout, seats and names, a camera
turned off and on, and the rules on who may do what. Synthetic participants (a flat
magenta person) over real loopback WebRTC, so what the room shows is a pixel count."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import numpy as np
import pytest

from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.rtc.signalling import KEY_HEADER
from roomfuse.synthetic import SyntheticSource

from rtc_util import KEY, Participant, SourceTrack, room_info, run, serving, wait_for
from test_rtc_room import magenta_fraction

pytestmark = pytest.mark.timeout(120)

ROOM = "studio"
# A cheap fill at a low rate: the controls are the subject, and every peer runs in this process.
TELEA_10 = replace(ROOM_PIPELINE, fps=10, grow=replace(ROOM_PIPELINE.grow, grower="telea"))


class Camera(SourceTrack):
    """A synthetic camera that can be turned off (no frames at all, as a page that
    replaced its track with none) and on again."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.on = asyncio.Event()
        self.on.set()

    async def recv(self):
        await self.on.wait()
        return await super().recv()


def synthetic(seed: int, name: str) -> Participant:
    return Participant(Camera(SyntheticSource(seed, size=(640, 360), sway=0.05), fps=10), name)


async def post(http, base: str, path: str, body: dict, key: str = KEY) -> tuple[int, dict]:
    async with http.post(f"{base}/rooms/{ROOM}{path}", json=body, headers={KEY_HEADER: key}) as resp:
        return resp.status, await resp.json()


async def settings(http, base: str, who: Participant, **changes) -> tuple[int, dict]:
    return await post(http, base, "/settings", {"participant": who.id, "token": who.token, **changes})


async def people(http, base) -> dict[str, dict]:
    return {p["id"]: p for p in (await room_info(http, base, ROOM))["participants"]}


def test_only_the_host_changes_the_layout_until_the_host_opens_it():
    # Seats "given": with no order chosen the room seats people as they joined (the
    # server's automatic seating is tested in test_seats.py).
    async def main():
        async with serving(segmenter="key", canvas=(1280, 720),
                           pipeline=replace(TELEA_10, layout=replace(TELEA_10.layout, order="given"))) as srv, \
                aiohttp.ClientSession() as http:
            a, b, c = synthetic(1, "a"), synthetic(2, "b"), synthetic(3, "c")
            try:
                for p in (a, b, c):
                    await p.join(http, srv.base, ROOM)
                await a.wait_frames(10)
                info = await room_info(http, srv.base, ROOM)
                assert info["host"] == a.id and info["layout"] == "auto" and info["order"] == []

                # b is not the host.
                status, body = await settings(http, srv.base, b, layout="grid")
                assert status == 403 and "only the room's host (a)" in body["error"]
                status, body = await settings(http, srv.base, b, open=True)
                assert status == 403
                # A token that is not b's own proves nothing.
                status, _ = await post(http, srv.base, "/settings", {"participant": a.id, "token": b.token,
                                                                     "layout": "grid"})
                assert status == 403
                # Malformed requests are named.
                for bad, field in (({"layout": "circle"}, "layout"), ({"names": "yes"}, "names"),
                                   ({"order": ["nobody"]}, "order")):
                    status, body = await settings(http, srv.base, a, **bad)
                    assert status == 400 and f"field '{field}'" in body["error"], body

                # The host lays the room out in one row, then in a grid: the tiles follow.
                assert (await settings(http, srv.base, a, layout="row"))[0] == 200
                await wait_for(lambda: _one_row(http, srv.base, True), 10, "one row")
                assert (await settings(http, srv.base, a, layout="grid"))[0] == 200
                await wait_for(lambda: _one_row(http, srv.base, False), 10, "a grid")
                # Seats as the host gives them: c first, then a; b (not named) after them.
                status, body = await settings(http, srv.base, a, layout="row", order=[c.id, a.id])
                assert status == 200 and body["order"] == [c.id, a.id, b.id]
                await wait_for(lambda: _seated(http, srv.base, [c.id, a.id, b.id]), 10, "c, a, b from the left")

                # Opened to everyone: b may change it now.
                assert (await settings(http, srv.base, a, open=True))[0] == 200
                status, body = await settings(http, srv.base, b, order=[])
                assert status == 200 and body["order"] == [] and body["open"] is True
                await wait_for(lambda: _seated(http, srv.base, [a.id, b.id, c.id]), 10, "back in join order")

                # The host leaves: the next one in becomes host.
                assert await a.leave(http, srv.base, ROOM) == 200
                assert (await room_info(http, srv.base, ROOM))["host"] == b.id
            finally:
                for p in (a, b, c):
                    await p.close()

    run(main, timeout=100)


async def _one_row(http, base, want: bool) -> bool:
    ys = {p["tile"][1] for p in (await people(http, base)).values() if p["tile"]}
    return (len(ys) == 1) == want


async def _seated(http, base, order: list[str]) -> bool:
    ps = await people(http, base)
    xs = [ps[pid]["tile"][0] for pid in order if ps[pid]["tile"]]
    return len(xs) == len(order) and xs == sorted(xs) and len(set(xs)) == len(xs)


def test_names_are_drawn_under_people_and_can_be_switched_off():
    async def main():
        async with serving(segmenter="key", pipeline=TELEA_10) as srv, aiohttp.ClientSession() as http:
            a, b = synthetic(1, "Ada"), synthetic(2, "Björk")
            try:
                await a.join(http, srv.base, ROOM)
                await b.join(http, srv.base, ROOM)
                await a.wait_frames(10)
                ps = await wait_for(lambda: _labelled(http, srv.base), 10, "labels in the listing")
                for p in ps.values():
                    lx, ly, lw, lh = p["label"]
                    tx, ty, tw, th = p["tile"]
                    # Inside the tile, at its bottom, under the (centred) person.
                    assert tx <= lx and lx + lw <= tx + tw and ty + th - 3 * lh < ly and ly + lh <= ty + th
                    assert abs((lx + lw / 2) - (tx + tw / 2)) < tw / 4
                    assert lh >= 12 and lw > lh
                await a.wait_frames(a.frames + 5)
                image = a.image()
                for p in ps.values():
                    lx, ly, lw, lh = p["label"]
                    patch = image[ly:ly + lh, lx:lx + lw].astype(np.int16).mean(axis=2)
                    # Light letters on a dark box: both tones are there, in quantity.
                    assert (patch < 90).mean() > 0.3 and (patch > 180).mean() > 0.04, p["name"]

                status, body = await settings(http, srv.base, a, names=False)
                assert status == 200 and body["names"] is False
                await wait_for(lambda: _unlabelled(http, srv.base), 10, "labels gone from the listing")
                await a.wait_frames(a.frames + 5)
                ly, lx, lh, lw = (ps[a.id]["label"][i] for i in (1, 0, 3, 2))
                patch = a.image()[ly:ly + lh, lx:lx + lw].astype(np.int16).mean(axis=2)
                assert (patch > 180).mean() < 0.02  # the magenta person, no white letters
            finally:
                await a.close()
                await b.close()

    run(main, timeout=90)


async def _labelled(http, base):
    """The listing once both have labels that stay put (the tiles slide for a few frames
    after a join)."""
    ps = await people(http, base)
    if len(ps) != 2 or not all(p["label"] for p in ps.values()):
        return None
    await asyncio.sleep(0.5)
    again = await people(http, base)
    return ps if all(again[k]["label"] == p["label"] for k, p in ps.items()) else None


async def _unlabelled(http, base) -> bool:
    return all(p["label"] is None for p in (await people(http, base)).values())


def test_camera_off_shows_the_room_without_the_person_and_keeps_the_seat():
    async def main():
        async with serving(segmenter="key", pipeline=TELEA_10, stall_s=1.0) as srv, \
                aiohttp.ClientSession() as http:
            a, b = synthetic(1, "a"), synthetic(2, "b")
            try:
                await a.join(http, srv.base, ROOM)
                await b.join(http, srv.base, ROOM)
                await a.wait_frames(10)
                tile = (await people(http, srv.base))[b.id]["tile"]
                await a.wait_frames(a.frames + 5)
                assert magenta_fraction(a.image(), tile) > 0.05

                status, body = await post(http, srv.base, f"/participants/{b.id}/state",
                                          {"token": b.token, "camera": False})
                assert status == 200 and body == {"muted": False, "camera": False}
                b.track.on.clear()  # the page stops sending after telling the room
                await asyncio.sleep(2.5)  # past the stall timeout: a camera turned off is no stall
                ps = await people(http, srv.base)
                assert ps[b.id]["state"] == "live" and ps[b.id]["camera"] is False
                await a.wait_frames(a.frames + 5)
                assert magenta_fraction(a.image(), tile) < 0.005  # b's room, without b
                # ... and it is still b's room, not a black or frozen-with-person tile.
                assert a.image()[tile[1]:tile[1] + tile[3], tile[0]:tile[0] + tile[2]].std() > 10

                b.track.on.set()
                assert (await post(http, srv.base, f"/participants/{b.id}/state",
                                   {"token": b.token, "camera": True}))[0] == 200
                await wait_for(lambda: _shows_person(a, tile), 10, "b back in the picture")
                # Only the participant's own token changes their state.
                status, body = await post(http, srv.base, f"/participants/{b.id}/state",
                                          {"token": a.token, "camera": False})
                assert status == 403 and "token" in body["error"]
                status, body = await post(http, srv.base, f"/participants/{b.id}/state",
                                          {"token": b.token, "camera": "off"})
                assert status == 400 and "field 'camera'" in body["error"]
            finally:
                await a.close()
                await b.close()

    run(main, timeout=90)


async def _shows_person(viewer: Participant, tile) -> bool:
    return magenta_fraction(viewer.image(), tile) > 0.05
