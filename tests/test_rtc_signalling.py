"""Bad requests to a live room: each gets a one-line JSON error with the right status, and
none of them disturbs the people already in the room."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import aiohttp
import pytest

from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.rtc.signalling import KEY_HEADER, MAX_BODY, offer_body
from roomfuse.synthetic import SyntheticSource

from rtc_util import KEY, Participant, SourceTrack, real_offer, room_info, run, serving

pytestmark = pytest.mark.timeout(120)

ROOM = "lab"


def without(sdp: str, prefix: str) -> str:
    return "".join(line + "\r\n" for line in sdp.splitlines() if line and not line.startswith(prefix))


def bad_requests(sdp: str, pid: str) -> list[tuple[str, str, dict, int, str]]:
    """(method, path, request kwargs, expected status, text the error must contain)."""
    offer = f"/rooms/{ROOM}/offer"
    ok = offer_body(sdp, "mallory", KEY)
    recvonly = sdp.replace("a=sendrecv", "a=recvonly")
    no_vp8 = re.sub(r"a=rtpmap:(\d+) VP8/90000", r"a=rtpmap:\1 VP9/90000", sdp)  # VP9 and H264 left
    audio = sdp.replace("m=video", "m=audio")
    return [
        ("POST", offer, {"json": {**ok, "key": "nope"}}, 403, "wrong room key"),
        ("POST", offer, {"json": {k: v for k, v in ok.items() if k != "key"}}, 403, "missing room key"),
        ("POST", offer, {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not JSON"),
        ("POST", offer, {"data": b"\xff\xfe\x00", }, 400, "not JSON"),
        ("POST", offer, {"json": [1, 2]}, 400, "JSON object"),
        ("POST", offer, {"json": {**ok, "type": "answer"}}, 400, "'type'"),
        ("POST", offer, {"json": {k: v for k, v in ok.items() if k != "sdp"}}, 400, "'sdp'"),
        ("POST", offer, {"json": {**ok, "sdp": 42}}, 400, "'sdp'"),
        ("POST", offer, {"json": {**ok, "name": {"x": 1}}}, 400, "'name'"),
        ("POST", offer, {"json": {**ok, "sdp": "hello"}}, 400, "v=0"),
        ("POST", offer, {"json": {**ok, "sdp": "v=0\r\n"}}, 400, "m=video"),
        ("POST", offer, {"json": {**ok, "sdp": audio}}, 400, "m=video"),
        ("POST", offer, {"json": {**ok, "sdp": recvonly}}, 400, "sendrecv"),
        ("POST", offer, {"json": {**ok, "sdp": without(sdp, "a=candidate")}}, 400, "no ICE candidates"),
        ("POST", offer, {"json": {**ok, "sdp": without(sdp, "a=fingerprint")}}, 400, "fingerprint"),
        ("POST", offer, {"json": {**ok, "sdp": without(sdp, "a=ice-ufrag")}}, 400, "ice-ufrag"),
        ("POST", offer, {"json": {**ok, "sdp": no_vp8}}, 400, "sent as VP8"),
        ("POST", offer, {"json": {**ok, "sdp": sdp + "a=x\r\n" * (MAX_BODY // 4)}}, 413, "limit"),
        ("POST", "/rooms/bad.name/offer", {"json": ok}, 400, "room name"),
        ("POST", f"/rooms/{'r' * 65}/offer", {"json": ok}, 400, "room name"),
        ("PUT", offer, {"json": ok}, 405, ""),
        ("GET", f"/rooms/{ROOM}", {}, 403, "missing room key"),
        ("GET", f"/rooms/{ROOM}", {"headers": {KEY_HEADER: "nope"}}, 403, "wrong room key"),
        ("GET", f"/rooms/{ROOM}?key={KEY}", {}, 403, "missing room key"),  # never in the URL
        ("GET", "/config", {}, 403, "missing room key"),
        ("DELETE", f"/rooms/{ROOM}/participants/{pid}", {}, 403, "missing room key"),
        ("DELETE", f"/rooms/{ROOM}/participants/{pid}", {"headers": {KEY_HEADER: "x"}}, 403, "wrong room key"),
        ("DELETE", f"/rooms/{ROOM}/participants/0123456789ab", {"headers": {KEY_HEADER: KEY}}, 404, "no participant"),
        ("DELETE", f"/rooms/{ROOM}/participants/zz", {"headers": {KEY_HEADER: KEY}}, 400, "malformed"),
        ("DELETE", f"/rooms/elsewhere/participants/{pid}", {"headers": {KEY_HEADER: KEY}}, 404, "no participant"),
    ]


def test_bad_requests_are_refused_and_the_room_keeps_serving():
    async def main():
        async with serving(segmenter="key", max_participants=2) as srv, aiohttp.ClientSession() as http:
            alice = Participant(SourceTrack(SyntheticSource(1, size=(320, 180))), "alice")
            try:
                await alice.join(http, srv.base, ROOM)
                await alice.wait_frames(10)
                sdp = await real_offer()
                before = await room_info(http, srv.base, ROOM)
                for method, path, kw, status, text in bad_requests(sdp, alice.id):
                    async with http.request(method, srv.base + path, **kw) as resp:
                        body = await resp.text()
                    assert resp.status == status, f"{method} {path} {kw.get('json', '')!s:.60}: {resp.status} {body}"
                    err = json.loads(body)["error"]
                    assert text in err and "\n" not in err, f"{method} {path}: {err!r}"
                # The room is as it was: same people, and the composite still flows.
                after = await room_info(http, srv.base, ROOM)
                assert [p["id"] for p in after["participants"]] == [p["id"] for p in before["participants"]]
                assert after["participants"][0]["state"] == "live"
                n = alice.frames
                await alice.wait_frames(n + 15, timeout=10)
            finally:
                await alice.close()
    run(main, timeout=90)


def test_full_room_refuses_the_extra_participant_only():
    async def main():
        async with serving(segmenter="key", max_participants=2) as srv, aiohttp.ClientSession() as http:
            people = [Participant(SourceTrack(SyntheticSource(i, size=(320, 180))), f"p{i}") for i in range(3)]
            try:
                for p in people[:2]:
                    await p.join(http, srv.base, ROOM)
                sdp = await real_offer()
                async with http.post(f"{srv.base}/rooms/{ROOM}/offer", json=offer_body(sdp, "late", KEY)) as resp:
                    assert resp.status == 409
                    assert "full" in (await resp.json())["error"]
                # Another room on the same server is not full.
                await people[2].join(http, srv.base, "other")
                for p in people:
                    await p.wait_frames(10)
                info = await room_info(http, srv.base, ROOM)
                assert sorted(p["id"] for p in info["participants"]) == sorted(p.id for p in people[:2])
                # A seat frees when someone leaves.
                assert await people[0].leave(http, srv.base, ROOM) == 200
                info = await room_info(http, srv.base, ROOM)
                assert [p["id"] for p in info["participants"]] == [people[1].id]
            finally:
                for p in people:
                    await p.close()
    run(main, timeout=90)


def test_pages_and_config_are_served():
    async def main():
        async with serving(segmenter="key", pipeline=replace(ROOM_PIPELINE, fps=24.0)) as srv, aiohttp.ClientSession() as http:
            for path, needle in [("/", "lobby.js"), (f"/r/{ROOM}", "room.js"), ("/static/call.js", "maintain-resolution"),
                                 ("/static/common.js", KEY_HEADER), ("/static/style.css", "#composite")]:
                async with http.get(srv.base + path) as resp:
                    assert resp.status == 200, path
                    assert needle in await resp.text(), path
            async with http.get(srv.base + "/config", headers={KEY_HEADER: KEY}) as resp:
                cfg = await resp.json()
            # No STUN server unless one is configured: the room must work offline.
            assert cfg == {"iceServers": [], "fps": 24.0, "canvas": [1280, 360], "maxParticipants": 8}
            async with http.get(srv.base + "/static/../server.py") as resp:
                assert resp.status in (403, 404)
    run(main, timeout=30)
