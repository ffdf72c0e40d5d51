"""The server's parts on their own: newest-frame slots, the shared encoder and its
fan-out, ICE configuration, the late-frame log, the layout per head count, the fade-out."""
from __future__ import annotations

import asyncio
import logging

import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from roomfuse.config import LayoutConfig
from roomfuse.composite import fade_people
from roomfuse.frames import Canvas, Rect
from roomfuse.layout import plan_layout
from roomfuse.rtc.compositor import LateLog
from roomfuse.rtc.ice import (IceConfigError, host_addresses, parse_ice_server, rtc_configuration,
                              use_host_addresses)
from roomfuse.rtc.encoder import MAX_BITRATE, SharedEncoder
from roomfuse.rtc.tracks import VIDEO_TIME_BASE, CompositeFeed, CompositeTrack, FrameSlot

from rtc_util import run

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_slot_keeps_only_the_newest_frame_and_counts_the_dropped():
    clock = Clock()
    arrivals = []
    slot = FrameSlot(clock=clock, on_put=lambda: arrivals.append(clock.t))
    assert slot.take() == (0, None) and slot.age() is None and not slot.fresh
    for i in range(5):
        clock.t += 0.1
        slot.put(f"frame{i}")
    assert slot.fresh and len(arrivals) == 5
    assert slot.take() == (5, "frame4")
    assert slot.dropped == 4  # frames 0-3 were replaced before anyone took them
    assert not slot.fresh and slot.take() == (5, "frame4")  # taken again: the same picture
    slot.put("frame5")
    assert slot.take() == (6, "frame5") and slot.dropped == 4
    clock.t += 2.5
    assert slot.age() == pytest.approx(2.5)
    assert slot.fps() == 0.0  # nothing in the last second


class KeyframeLog:
    def __init__(self):
        self.requests = 0

    def request_keyframe(self):
        self.requests += 1

    def report_bitrate(self, viewer, bps):
        pass

    def forget(self, viewer):
        pass


def test_viewers_start_at_a_keyframe_take_every_packet_and_resync_when_behind():
    async def main():
        enc = KeyframeLog()
        feed = CompositeFeed(enc, backlog=4)
        feed.publish("p1", True)
        early, late = CompositeTrack(feed), CompositeTrack(feed)
        waiting = asyncio.ensure_future(early.recv())
        await asyncio.sleep(0)
        assert enc.requests == 1 and not waiting.done()  # a new viewer asks for a keyframe
        feed.publish("p2", False)  # not decodable on its own: skipped
        feed.publish("p3", True)
        assert await waiting == "p3"
        feed.publish("p4", False)
        feed.publish("p5", False)
        assert [await early.recv(), await early.recv()] == ["p4", "p5"]  # in order, none skipped
        for i in range(6, 12):  # early stops reading: it falls out of the 4-packet backlog
            feed.publish(f"p{i}", False)
        again = asyncio.ensure_future(early.recv())
        await asyncio.sleep(0)
        assert early.resyncs == 1 and enc.requests == 2  # it asked again (late has not yet)
        feed.publish("p12", False)
        feed.publish("p13", True)
        assert await again == "p13"  # back, at the keyframe it asked for
        pending = asyncio.ensure_future(late.recv())
        await asyncio.sleep(0)
        feed.close()
        with pytest.raises(MediaStreamError):
            await pending
        assert late.readyState == "ended"
    run(main, timeout=10)


def test_shared_encoder_keyframes_on_request_and_follows_the_lowest_estimate():
    import av

    clock = Clock()
    enc = SharedEncoder(bitrate=1_000_000, reconfigure_every_s=3.0, clock=clock)
    decoder = av.CodecContext.create("vp8", "r")
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (18, 32, 3), dtype=np.uint8), (320, 180))
    keys, errors = [], []
    for i in range(12):
        clock.t += 1 / 30
        image = np.roll(base, 2 * i, axis=1)
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        frame.pts, frame.time_base = i * 3000, VIDEO_TIME_BASE
        if i == 6:
            enc.request_keyframe()
        packet, key = enc.encode(frame, 30.0)
        keys.append(key)
        out = decoder.decode(av.Packet(bytes(packet)))[0].to_ndarray(format="rgb24")
        errors.append(np.abs(out.astype(int) - image).mean())
    assert keys[0] and keys[6] and not any(keys[1:6]) and not any(keys[7:])
    assert max(errors) < 12, errors  # the shared packets decode to the composite
    viewer_a, viewer_b = object(), object()
    enc.report_bitrate(viewer_a, 600_000)
    enc.report_bitrate(viewer_b, 5_000_000)
    clock.t += 3.1
    enc.encode(_frame(12), 30.0)
    assert enc.bitrate == 600_000 and enc.restarts == 1  # the slowest viewer sets it
    enc.report_bitrate(viewer_a, 650_000)  # a small change: no restart
    enc.forget(viewer_a)  # a's gone; b alone asks for more, capped
    clock.t += 1.0
    enc.encode(_frame(13), 30.0)
    assert enc.restarts == 1  # too soon after the last restart
    clock.t += 3.0
    enc.encode(_frame(14), 30.0)
    assert enc.bitrate == MAX_BITRATE and enc.restarts == 2


def test_shared_encoder_keeps_each_composites_own_timestamp():
    # Composites come when they are ready, not on a 1/30 s grid: two in one slot must
    # still carry different RTP timestamps, or a receiver merges them into one frame.
    enc = SharedEncoder()
    stamps = [0, 1000, 2000, 9000, 9001]
    out = []
    for ts in stamps:
        frame = _frame(0)
        frame.pts = ts
        out.append(enc.encode(frame, 30.0)[0].pts)
    assert out == stamps


def _frame(i: int):
    import av

    frame = av.VideoFrame.from_ndarray(np.full((270, 320), 128, np.uint8), format="yuv420p")
    frame.pts, frame.time_base = i * 3000, VIDEO_TIME_BASE
    return frame


def test_ice_server_urls():
    s = parse_ice_server("stun:stun.example.org:3478")
    assert (s.url, s.username) == ("stun:stun.example.org:3478", None)
    t = parse_ice_server("turn:alice:s3cret@turn.example.org:3478?transport=tcp")
    assert (t.url, t.username, t.credential) == ("turn:turn.example.org:3478?transport=tcp", "alice", "s3cret")
    assert t.to_json() == {"urls": t.url, "username": "alice", "credential": "s3cret"}
    for bad, why in [("http://x", "must start with"), ("turn:turn.example.org", "USER:PASS"),
                     ("stun:a:b@host", "no credentials"), ("stun:host:notaport", "ice-server")]:
        with pytest.raises(IceConfigError, match=why):
            parse_ice_server(bad)


def test_host_addresses_follow_the_bind_address_or_the_flag():
    assert host_addresses("127.0.0.1") == ["127.0.0.1"]
    assert host_addresses("127.0.0.1", ["127.0.0.1", "127.0.0.1"]) == ["127.0.0.1"]
    assert "127.0.0.1" in host_addresses("0.0.0.0")
    with pytest.raises(IceConfigError, match="not an address of this machine"):
        host_addresses("127.0.0.1", ["203.0.113.77"])
    with pytest.raises(IceConfigError, match="not an IP address"):
        host_addresses("127.0.0.1", ["example.org"])
    with pytest.raises(IceConfigError, match="--host"):
        host_addresses("localhost")


def test_only_the_configured_address_is_offered_and_the_hook_is_restored():
    import aioice.ice

    original = aioice.ice.get_host_addresses

    async def main():
        restore = use_host_addresses(["127.0.0.1"])
        pc = RTCPeerConnection(rtc_configuration())
        try:
            pc.addTransceiver(VideoStreamTrack(), direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            candidates = [line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")]
        finally:
            await pc.close()
            restore()
        return candidates

    candidates = run(main, timeout=20)
    assert candidates and all(" 127.0.0.1 " in c and " typ host" in c for c in candidates), candidates
    assert aioice.ice.get_host_addresses is original
    # No STUN server unless given: an empty, explicit configuration.
    assert rtc_configuration().iceServers == []


def test_late_log_warns_at_once_then_rate_limited(caplog):
    clock = Clock()
    late = LateLog("r", every_s=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="roomfuse.rtc.compositor"):
        late(0.012, {"segment": 5.0, "grow": 40.0})
        for _ in range(10):
            clock.t += 0.1
            late(0.010, {"grow": 30.0})
        clock.t += 5.0
        late(0.020, {"composite": 50.0})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and late.late == 12
    assert "late by 12 ms" in lines[0] and "grow 40 ms" in lines[0]
    assert "11 late since last report" in lines[1] and "composite" in lines[1]


@pytest.mark.parametrize("canvas,n,mode", [((1280, 360), 2, "row"), ((1280, 360), 3, "row"),
                                           ((1280, 360), 5, "grid"), ((1280, 720), 4, "grid"),
                                           ((1280, 720), 8, "grid")])
def test_auto_layout_picks_the_larger_feeds(canvas, n, mode):
    sizes = [(640, 360)] * n
    auto = plan_layout(sizes, LayoutConfig(mode="auto"), canvas)
    chosen = plan_layout(sizes, LayoutConfig(mode=mode), canvas)
    assert auto == chosen
    other = plan_layout(sizes, LayoutConfig(mode="grid" if mode == "row" else "row"), canvas)
    assert auto.tiles[0].h >= other.tiles[0].h
    assert auto.size == canvas


def test_fade_people_scales_only_the_fading_feed():
    h, w = 40, 100
    alpha = np.ones((h, w), np.float32)
    canvas = Canvas(image=np.zeros((h, w, 3), np.uint8), background=np.zeros((h, w, 3), np.uint8),
                    known=np.zeros((h, w), bool), alpha=alpha,
                    tiles=(Rect(-10, 0, 50, 40), Rect(60, 0, 40, 40)))  # the first hangs off mid-slide
    assert fade_people(canvas, [1.0, 1.0]) is canvas
    faded = fade_people(canvas, [0.25, 1.0])
    assert np.allclose(faded.alpha[:, :40], 0.25) and np.allclose(faded.alpha[:, 40:], 1.0)
    assert np.allclose(canvas.alpha, 1.0)  # the input is not changed
    with pytest.raises(ValueError, match="one opacity per feed"):
        fade_people(canvas, [1.0])




def test_late_log_does_not_count_the_grower_beside_the_frame_as_a_stage(caplog):
    late = LateLog("r", every_s=5.0, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="roomfuse.rtc.compositor"):
        late(0.004, {"segment": 9.0, "composite": 12.0, "grow_beside": 30.0})
    (line,) = [r.getMessage() for r in caplog.records]
    assert "slowest stage composite 12 ms of 21 ms" in line and "the grower beside it 30 ms" in line
