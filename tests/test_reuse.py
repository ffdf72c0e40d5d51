"""What a server keeps across rooms: segmenters lent from one pool, memory given back."""
from __future__ import annotations

import os
import sys
import threading

import aiohttp
import numpy as np
import pytest

from roomfuse.config import PipelineConfig
from roomfuse.frames import Frame
from roomfuse.pipeline import Pipeline
from roomfuse.rtc.reuse import SegmenterPool, give_back_memory, tune_allocator
from roomfuse.segment import KeySegmenter
from roomfuse.synthetic import SyntheticSource

from rtc_util import Participant, SourceTrack, run, serving, wait_for

pytestmark = pytest.mark.timeout(120)


class Counting(KeySegmenter):
    """A real (colour-key) segmenter that counts resets and closes."""

    def __init__(self):
        super().__init__()
        self.resets = self.closes = 0

    def reset(self):
        super().reset()
        self.resets += 1

    def close(self):
        self.closes += 1


def test_pool_lends_resets_keeps_and_closes():
    made = []
    pool = SegmenterPool(lambda: made.append(Counting()) or made[-1], keep=2)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    assert pool.built == 3 and len({id(a), id(b), id(c)}) == 3
    for seg in (a, b, c):
        pool.release(seg)
    assert pool.idle == 2 and c.closes == 1  # one over ``keep`` is closed
    assert all(s.resets == 1 for s in (a, b, c))  # no state crosses from one feed to the next
    again = pool.acquire()
    assert again in (a, b) and pool.built == 3
    pool.close()
    assert sum(s.closes for s in made) == 3 - 1  # the idle one closed; the lent one stays with its feed
    pool.release(again)  # returned after close: closed, not kept
    assert again.closes == 1 and pool.idle == 0


def test_pool_is_safe_from_many_threads():
    pool = SegmenterPool(Counting, keep=4)

    def work():
        for _ in range(200):
            pool.release(pool.acquire())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.built <= 4 and pool.idle == pool.built


def test_a_pipeline_borrows_segmenters_and_gives_them_back():
    pool = SegmenterPool(Counting, keep=4)
    src = [SyntheticSource(i, size=(160, 90)) for i in range(2)]
    with Pipeline(PipelineConfig(), segmenter="key", grower=_nothing(), segmenter_pool=pool) as pipe:
        pipe.process([s.read() for s in src], keys=["a", "b"])
        assert pool.built == 2 and pool.idle == 0
        pipe.process([src[0].read()], keys=["a"])  # b left: its segmenter goes back
        assert pool.idle == 1
    assert pool.idle == 2 and pool.built == 2


class _nothing:
    def fill(self, image, known, covered=None):
        return image.copy()

    def reset(self):
        pass


def test_rooms_reuse_segmenters_and_the_server_gives_memory_back():
    async def main():
        async with serving(segmenter="key") as srv, aiohttp.ClientSession() as http:
            for room in ("first", "second", "third"):
                p = Participant(SourceTrack(SyntheticSource(1, size=(320, 180))), room)
                try:
                    await p.join(http, srv.base, room)
                    await p.wait_frames(5)
                    assert await p.leave(http, srv.base, room) == 200
                finally:
                    await p.close()
                await wait_for(lambda: _idle(srv), 10, "the room's segmenter to come back")
            assert srv.rooms.segmenters.built == 1  # one segmenter served all three rooms

    run(main, timeout=60)


async def _idle(srv) -> bool:
    return not srv.rooms.rooms and srv.rooms.segmenters.idle == 1


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_in_the_middle_of_the_heap_goes_back_to_the_system():
    assert tune_allocator()
    # 2000 blocks of 64 KB, every 50th kept: what is freed between them stays in the
    # process (free() only returns the top of the heap) until it is trimmed.
    blocks = [np.ones(8192) for _ in range(2000)]
    kept = blocks[::50]
    del blocks
    before = _rss()
    give_back_memory()
    after = _rss()
    assert before - after > 50 * 2**20, (before - after) / 2**20
    assert all(k[0] == 1.0 for k in kept)


ROOM_GONE = r"""
import asyncio, gc, sys
sys.path.insert(0, sys.argv[1])
import aiohttp
from rtc_util import Participant, SourceTrack, serving
from roomfuse.synthetic import SyntheticSource

async def main():
    async with serving(segmenter="mediapipe") as srv, aiohttp.ClientSession() as http:
        p = Participant(SourceTrack(SyntheticSource(1, size=(320, 180)), fps=15), "a")
        try:
            await p.join(http, srv.base, "r")
            await p.wait_frames(10, timeout=60)
            await p.leave(http, srv.base, "r")
        finally:
            await p.close()
        for _ in range(100):
            if not srv.rooms.rooms:
                break
            await asyncio.sleep(0.1)
        for _ in range(100):  # the room's pipeline closes in its own thread just after
            await asyncio.sleep(0.1)
            gc.collect()
            alive = sum(type(o).__name__ == "Pipeline" for o in gc.get_objects())
            if not alive:
                break
        print("pipelines alive:", alive)

asyncio.run(main())
"""


def test_a_closed_room_leaves_nothing_of_its_pipeline_in_a_fresh_server(tmp_path):
    """The first mediapipe graph a process builds keeps the stack it was built from; the
    server builds it at start, so the first room's pipeline (its room fill, its memory)
    is not held for the server's life. A fresh process: nothing else built one before."""
    import subprocess

    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", ROOM_GONE, tests], capture_output=True, text=True,
                          timeout=110, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pipelines alive: 0" in proc.stdout, proc.stdout[-500:]
