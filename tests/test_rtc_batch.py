"""Rooms that share one growth service, over real loopback WebRTC."""
from __future__ import annotations

import argparse
from dataclasses import replace

import aiohttp
import pytest

from roomfuse.config import GrowConfig
from roomfuse.rtc.compositor import ROOM_PIPELINE
from roomfuse.rtc.server import ServeError, add_arguments, preflight, settings_from_args
from roomfuse.synthetic import SyntheticSource

from rtc_util import Participant, SourceTrack, room_info, run, serving, wait_for

pytestmark = pytest.mark.timeout(120)


def synthetic(seed: int, name: str) -> Participant:
    return Participant(SourceTrack(SyntheticSource(seed, size=(640, 360), sway=0.05)), name)


def test_two_live_rooms_grow_together_and_one_leaving_frees_the_other():
    async def main():
        # A long round: each waits for both rooms, so rounds of two are certain.
        async with serving(segmenter="key", pipeline=replace(ROOM_PIPELINE, grow=GrowConfig(grower="nca", device="cpu")),
                           batch_rooms="on",
                           batch_wait_ms=100.0) as srv, aiohttp.ClientSession() as http:
            a, b = synthetic(1, "a"), synthetic(2, "b")
            try:
                await a.join(http, srv.base, "east")
                await b.join(http, srv.base, "west")
                await a.wait_frames(15)
                await b.wait_frames(15)
                service = srv.rooms.growth.service
                assert service.members == 2
                assert service.rounds[2] >= 5, service.rounds
                # Each room still shows its own person and room.
                for p, room in ((a, "east"), (b, "west")):
                    info = await room_info(http, srv.base, room)
                    assert info["fps"] > 0 and info["stage_ms"].get("grow", 0) > 0
                    img = p.image()
                    magenta = (img[..., 0] > 180) & (img[..., 1] < 90) & (img[..., 2] > 180)
                    assert magenta.mean() > 0.01
                # One room empties: its grower leaves the service, the other goes on
                # without waiting for it.
                assert await a.leave(http, srv.base, "east") == 200
                await wait_for(lambda: _members(srv, 1), 10, "the empty room to leave the service")
                before = b.frames
                await b.wait_frames(before + 20, timeout=10)
            finally:
                await a.close()
                await b.close()
            assert srv.rooms.growth.service is not None
        assert srv.rooms.growth.service is None    # stopped with the server
    run(main, timeout=90)


async def _members(srv, n: int) -> bool:
    return srv.rooms.growth.service.members == n


def test_batch_rooms_flag():
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert settings_from_args(p.parse_args([])).batch_rooms == "auto"
    assert settings_from_args(p.parse_args(["--batch-rooms", "on"])).batch_rooms == "on"
    with pytest.raises(SystemExit):
        p.parse_args(["--batch-rooms", "maybe"])
    settings = settings_from_args(p.parse_args(["--batch-rooms", "on", "--grower", "telea"]))
    with pytest.raises(ServeError, match="growth model"):
        preflight(settings)
