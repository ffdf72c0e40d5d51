"""A server you can leave running: slow clients shed, connections and rooms capped, every
malformed request a 4xx and one log line, keys kept out of URLs and logs and throttled.

Real sockets against a real server on loopback; the slow-client test runs `roomfuse serve`
itself, as a user starts it.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import aiohttp
import pytest

from roomfuse.config import ServerLimits
from roomfuse.rtc.signalling import KEY_HEADER, SECURITY_HEADERS, offer_body
from roomfuse.synthetic import SyntheticSource

from rtc_util import KEY, Participant, SourceTrack, real_offer, room_info, run, serving, wait_for

pytestmark = pytest.mark.timeout(120)


def _connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _http(port: int, raw: bytes, source: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``raw`` on a new connection; (status, whole answer) once the server closes or
    the answer's body is in."""
    with _connect(port, source, timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    status = int(data.split(b" ", 2)[1]) if data.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0
    return status, data


def _get(path: str, key: str | None = KEY) -> bytes:
    extra = f"{KEY_HEADER}: {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()


def _lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("roomfuse")]


def _no_tracebacks(caplog) -> None:
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ---- slow clients, against `roomfuse serve` ------------------------------------------

def test_200_slow_half_sent_requests_are_closed_while_others_are_answered(tmp_path):
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "roomfuse", "serve", "--port", "0", "--key", KEY, "--segmenter", "key",
             "--grower", "blend", "--max-connections-per-address", "400", "--max-connections", "400"],
            stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    slow: list[socket.socket] = []
    try:
        line = proc.stdout.readline()
        assert line.startswith("roomfuse serve: open http://127.0.0.1:"), (line, log_path.read_text())
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        t0 = time.monotonic()
        for i in range(200):
            s = _connect(port, timeout=5.0)  # a busy machine may retry a SYN
            if i % 2:  # the header never ends
                s.sendall(b"GET /config HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:  # the header ends, the body never does
                s.sendall(b"POST /rooms/lab/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 5000\r\n\r\n{\"sdp\": \"v=0")
            slow.append(s)
        opened = time.monotonic() - t0
        # While they hang, other clients are answered promptly.
        waits = []
        closed_at: dict[int, float] = {}
        while len(closed_at) < len(slow) and time.monotonic() - t0 < 40:
            t = time.monotonic()
            status, body = _http(port, _get("/config"), timeout=5.0)
            waits.append(time.monotonic() - t)
            assert status == 200, body[:200]
            for i, s in enumerate(slow):
                if i in closed_at:
                    continue
                s.setblocking(False)
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            closed_at[i] = time.monotonic() - t0
                            break
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[i] = time.monotonic() - t0
            time.sleep(0.5)
        assert len(closed_at) == len(slow), f"{len(slow) - len(closed_at)} slow connections still open after 40 s"
        assert max(closed_at.values()) < 30 + opened, sorted(closed_at.values())[-5:]
        assert max(waits) < 2.0, f"a normal request waited {max(waits):.2f} s"
        assert len(waits) >= 10
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        for s in slow:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    # One line per connection shed, a flood summarised: never more lines than connections.
    shed = [ln for ln in text.splitlines() if "no complete request header" in ln or "-> 408" in ln
            or "more like that" in ln]
    assert 1 <= len(shed) <= 200, len(shed)


# ---- caps ----------------------------------------------------------------------------

def test_connection_caps_refuse_with_one_line_each(caplog):
    caplog.set_level(logging.INFO)
    limits = ServerLimits(max_connections=5, max_connections_per_address=3)

    async def main():
        async with serving(segmenter="key", limits=limits) as srv:
            port = srv.port

            def probe():
                held = [_connect(port) for _ in range(3)]
                status, body = _http(port, _get("/config"))  # a 4th from the same address
                assert status == 503 and b"127.0.0.1 already has 3 open connections" in body, body
                held += [_connect(port, "127.0.0.2") for _ in range(2)]  # 5 in all
                status, body = _http(port, _get("/config"), "127.0.0.3")
                assert status == 503 and b"limit of 5 open connections" in body, body
                for s in held:
                    s.close()

            await _in_thread(probe)
            await wait_for(lambda: _count_open(srv, 0), 5, "the held connections to close")
            status, _ = await _in_thread(_http, port, _get("/config"), "127.0.0.3")
            assert status == 200  # room again once they closed

    run(main, timeout=30)
    refusals = [r.getMessage() for r in _lines(caplog) if "refused a connection" in r.getMessage()]
    assert len(refusals) == 2, refusals
    assert "from 127.0.0.1" in refusals[0] and "from 127.0.0.3" in refusals[1]
    _no_tracebacks(caplog)


async def _count_open(srv, n: int) -> bool:
    return len(srv.door.open) == n


def test_room_cap_refuses_one_more_room_with_one_line(caplog):
    caplog.set_level(logging.INFO)

    async def main():
        async with serving(segmenter="key", limits=ServerLimits(max_rooms=1)) as srv, \
                aiohttp.ClientSession() as http:
            alice = Participant(SourceTrack(SyntheticSource(1, size=(320, 180))), "alice")
            bob = Participant(SourceTrack(SyntheticSource(2, size=(320, 180))), "bob")
            try:
                await alice.join(http, srv.base, "first")
                await alice.wait_frames(5)
                sdp = await real_offer()
                async with http.post(f"{srv.base}/rooms/second/offer", json=offer_body(sdp, "x", KEY)) as resp:
                    assert resp.status == 503
                    assert "limit of 1 rooms" in (await resp.json())["error"]
                # A second person in the open room is still welcome.
                await bob.join(http, srv.base, "first")
                await bob.wait_frames(5)
            finally:
                await alice.close()
                await bob.close()

    run(main, timeout=60)
    lines = [r.getMessage() for r in _lines(caplog) if "limit of 1 rooms" in r.getMessage()]
    assert len(lines) == 1, lines
    _no_tracebacks(caplog)


def test_offers_that_never_connect_free_their_seats_within_10_s():
    async def main():
        async with serving(segmenter="key", max_participants=2) as srv, aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            for i in range(2):  # offers from peers that are gone before they connect
                async with http.post(f"{srv.base}/rooms/lab/offer",
                                     json=offer_body(await real_offer(), f"ghost{i}", KEY)) as resp:
                    assert resp.status == 200
            async with http.post(f"{srv.base}/rooms/lab/offer", json=offer_body(await real_offer(), "x", KEY)) as resp:
                assert resp.status == 409  # the ghosts hold both seats

            async def empty():
                return not (await room_info(http, srv.base, "lab"))["participants"]

            await wait_for(empty, 12, "the seats to be freed")
            freed = time.monotonic() - t0
            assert freed <= 11.5, freed
            carol = Participant(SourceTrack(SyntheticSource(3, size=(320, 180))), "carol")
            try:
                await carol.join(http, srv.base, "lab")
                await carol.wait_frames(5)
            finally:
                await carol.close()

    run(main, timeout=60)


# ---- malformed requests ----------------------------------------------------------------

def test_malformed_requests_get_a_4xx_and_one_log_line(caplog):
    caplog.set_level(logging.INFO)
    nested = b"[" * 30_000 + b"]" * 30_000  # 60 KB, under the body limit

    async def main():
        async with serving(segmenter="key") as srv:
            port = srv.port
            cases = {}

            def send():
                caplog.clear()
                head = (f"POST /rooms/lab/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(nested)}\r\nConnection: close\r\n\r\n").encode()
                cases["nested"] = _http(port, head + nested), list(_lines(caplog))

                caplog.clear()
                with _connect(port) as s:  # drops mid-body
                    s.sendall(head.replace(b"Connection: close", b"X-Drop: 1") + nested[:1000])
                    time.sleep(0.3)
                time.sleep(0.7)
                cases["drop"] = (None, b""), list(_lines(caplog))

                caplog.clear()
                big = b"GET /config HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
                cases["header"] = _http(port, big), list(_lines(caplog))
                time.sleep(0.3)
                cases["header"] = cases["header"][0], list(_lines(caplog))

                caplog.clear()
                cases["garbage"] = _http(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 50), \
                    list(_lines(caplog))

            await _in_thread(send)
            status, _ = await _in_thread(_http, port, _get("/config"))
            assert status == 200  # and the server keeps serving
            return cases

    cases = run(main, timeout=60)
    (status, body), records = cases["nested"]
    assert status == 400 and b"nested too deeply" in body, body[:300]
    assert len(records) == 1 and "nested too deeply" in records[0].getMessage(), [r.getMessage() for r in records]
    _, records = cases["drop"]
    assert len(records) == 1 and "cut off" in records[0].getMessage(), [r.getMessage() for r in records]
    (status, body), records = cases["header"]
    assert 400 <= status < 500, body[:200]
    assert len(records) == 1, [r.getMessage() for r in records]
    (status, _), records = cases["garbage"]
    assert status in (0, 400) and len(records) <= 1, [r.getMessage() for r in records]
    for _, records in cases.values():
        assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
        assert all("\n" not in r.getMessage() for r in records)


# ---- the key -----------------------------------------------------------------------------

def test_the_key_never_rides_in_the_url_and_is_never_logged(caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        async with serving(segmenter="key", access_log=True) as srv, aiohttp.ClientSession() as http:
            async with http.get(f"{srv.base}/rooms/lab?key={KEY}") as resp:
                assert resp.status == 403
                assert "missing room key" in (await resp.json())["error"]
            async with http.get(f"{srv.base}/rooms/lab", headers={KEY_HEADER: KEY}) as resp:
                assert resp.status == 200
            async with http.get(f"{srv.base}/r/lab?key={KEY}") as resp:
                assert resp.status == 200  # the page itself needs no key
            async with http.post(f"{srv.base}/rooms/lab/offer", json=offer_body("v=0", "x", KEY)) as resp:
                assert resp.status == 400

    run(main, timeout=30)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert '"GET /rooms/lab"' in text  # the access log is on, paths only
    assert KEY not in text, [ln for ln in text.splitlines() if KEY in ln]


def test_wrong_keys_are_throttled_per_address(caplog):
    caplog.set_level(logging.INFO)
    limits = ServerLimits(wrong_keys_per_minute=5)

    async def main():
        async with serving(segmenter="key", limits=limits) as srv:
            port = srv.port

            def guess():
                codes = [_http(port, _get("/rooms/lab", key=f"guess{i}"))[0] for i in range(8)]
                right_here = _http(port, _get("/rooms/lab"))[0]
                right_elsewhere = _http(port, _get("/rooms/lab"), "127.0.0.2")[0]
                return codes, right_here, right_elsewhere

            return await _in_thread(guess)

    codes, right_here, right_elsewhere = run(main, timeout=30)
    assert codes == [403] * 5 + [429] * 3, codes
    assert right_here == 429  # even the right key, while this address is throttled
    assert right_elsewhere == 200
    throttled = [r.getMessage() for r in _lines(caplog) if "wrong room keys within a minute" in r.getMessage()]
    assert len(throttled) == 1 and "127.0.0.1" in throttled[0], throttled


def test_pages_carry_security_headers():
    async def main():
        async with serving(segmenter="key") as srv, aiohttp.ClientSession() as http:
            for path in ("/", "/r/lab", "/static/room.js", "/static/style.css"):
                async with http.get(srv.base + path) as resp:
                    assert resp.status == 200, path
                    for name, value in SECURITY_HEADERS.items():
                        assert resp.headers.get(name) == value, (path, name)
                    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            async with http.get(srv.base + "/config") as resp:  # errors too
                assert resp.status == 403 and resp.headers["X-Content-Type-Options"] == "nosniff"

    run(main, timeout=30)


def test_a_short_key_is_warned_about(tmp_path):
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "roomfuse", "serve", "--port", "0", "--key", "abc",
                                 "--segmenter", "key", "--grower", "blend"],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("roomfuse serve: open "), (line, log_path.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    warnings = [ln for ln in log_path.read_text().splitlines() if "WARNING" in ln and "--key" in ln]
    assert len(warnings) == 1 and "3 characters" in warnings[0], log_path.read_text()


def test_the_last_two_leaving_at_once_close_the_room_once(caplog):
    """Both find the room empty after their peer connections close, and both ask for it
    to be closed: the second close must be a no-op, not a failing task in the log."""
    caplog.set_level(logging.INFO)

    async def main():
        async with serving(segmenter="key") as srv, aiohttp.ClientSession() as http:
            people = [Participant(SourceTrack(SyntheticSource(i, size=(320, 180))), f"p{i}") for i in range(2)]
            try:
                for p in people:
                    await p.join(http, srv.base, "lab")
                for p in people:
                    await p.wait_frames(5)
                room = srv.rooms.rooms["lab"]
                await asyncio.gather(room.close(), room.close())  # what the race amounts to
                assert room.closed and not room.participants
                srv.rooms.rooms.pop("lab")
                for p in people:
                    await p.close()
                people = [Participant(SourceTrack(SyntheticSource(i, size=(320, 180))), f"q{i}") for i in range(2)]
                for p in people:
                    await p.join(http, srv.base, "lab")
                for p in people:
                    await p.wait_frames(5)
                codes = await asyncio.gather(*(p.leave(http, srv.base, "lab") for p in people))
                assert codes == [200, 200]
                await wait_for(lambda: _no_rooms(srv), 10, "the room to close")
            finally:
                for p in people:
                    await p.close()

    run(main, timeout=60)
    gc.collect()  # a task that failed unobserved says so when it is collected
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    _no_tracebacks(caplog)


async def _no_rooms(srv) -> bool:
    return not srv.rooms.rooms and not srv.rooms._closing


# ---- the pieces, with a clock of our own ---------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_flood_of_refusals_is_summarised(caplog):
    from roomfuse.rtc.guard import LineLog

    caplog.set_level(logging.INFO)
    clock = Clock()
    lines = LineLog(logging.getLogger("roomfuse.test"), burst=3, every_s=10.0, clock=clock)
    for i in range(10):
        lines("refused %d", i)
    lines.flush()  # the window is not over: nothing yet
    assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
    clock.t += 10.0
    lines.flush()
    assert caplog.records[-1].getMessage() == "... and 7 more like that in 10 s"
    lines("refused again")
    assert caplog.records[-1].getMessage() == "refused again"


def test_key_throttle_forgets_after_a_minute():
    from roomfuse.rtc.guard import KeyThrottle

    clock = Clock()
    throttle = KeyThrottle(per_minute=3, clock=clock)
    for _ in range(3):
        assert throttle.wait_s("10.0.0.1") == 0
        throttle.missed("10.0.0.1")
        clock.t += 1.0
    assert 56 < throttle.wait_s("10.0.0.1") <= 58  # until the first miss is a minute old
    assert throttle.wait_s("10.0.0.2") == 0  # per address
    clock.t += 58.0
    assert throttle.wait_s("10.0.0.1") == 0


def test_the_open_file_limit_is_raised_for_the_caps():
    import resource

    from roomfuse.rtc.http import raise_open_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = ServerLimits(max_connections=300, max_rooms=2)
    want = 300 + 2 * 200 + 256
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the hard limit here ({hard}) is below {want}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        raise_open_file_limit(limits)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
