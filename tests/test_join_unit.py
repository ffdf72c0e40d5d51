"""`roomfuse join` without a room server: URLs, flags, backoff, how HTTP answers become
errors, the source reader's pacing, and the command's one-line errors."""
from __future__ import annotations

import asyncio
import http.server
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from roomfuse.cli import build_parser
from roomfuse.errors import RoomfuseError
from roomfuse.rtc.client import AUTO_DEVICE, media_addresses, plan_from_args
from roomfuse.rtc.connection import JoinError, Link, Signalling, SourceReader, parse_link
from roomfuse.rtc.reconnect import Backoff
from roomfuse.sinks import VideoWriter
from roomfuse.synthetic import SyntheticSource

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("url, room, key, expect", [
    # what `roomfuse serve` prints: the page with the key after '#', and a room's page
    ("http://127.0.0.1:8080/#key=s3cret", None, None, ("http://127.0.0.1:8080", "main", "s3cret")),
    ("http://127.0.0.1:8080/r/team#key=s3cret", None, None, ("http://127.0.0.1:8080", "team", "s3cret")),
    ("https://rooms.example.org/roomfuse/rooms/team?key=a", None, None,
     ("https://rooms.example.org/roomfuse", "team", "a")),
    ("http://host:9000/?room=x&key=q", None, None, ("http://host:9000", "x", "q")),
    ("http://[::1]:8080", None, None, ("http://[::1]:8080", "main", None)),
    # flags win over the URL
    ("http://h:1/r/team#key=url", "other", "flag", ("http://h:1", "other", "flag")),
])
def test_parse_link_reads_the_urls_people_copy(url, room, key, expect):
    link = parse_link(url, room=room, key=key)
    assert (link.base, link.room, link.key) == expect


@pytest.mark.parametrize("url, reason", [
    ("localhost:8080", "expected http://HOST:PORT"),
    ("ftp://h/", "expected http://HOST:PORT"),
    ("http://:8080/", "no host name"),
    ("http://h:notaport/", "bad URL"),
    ("http://h:70000/", "out of range"),
])
def test_parse_link_rejects_bad_urls(url, reason):
    with pytest.raises(JoinError, match=reason) as info:
        parse_link(url)
    assert not info.value.retry


def test_parse_link_checks_the_room_name():
    with pytest.raises(JoinError, match="room name 'no spaces'"):
        parse_link("http://h:1/", room="no spaces")


def test_backoff_doubles_to_its_cap_with_bounded_jitter_and_resets():
    b = Backoff(first=0.5, cap=8.0, rng=lambda: 0.5)  # 0.5: no jitter
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next() == 0.5
    low, high = Backoff(rng=lambda: 0.0, jitter=0.2), Backoff(rng=lambda: 1.0, jitter=0.2)
    assert low.next() == pytest.approx(0.4) and high.next() == pytest.approx(0.6)
    with pytest.raises(ValueError):
        Backoff(first=10, cap=1)


def _args(*argv):
    return build_parser("join").parse_args(["join", *argv])


def test_plan_defaults_and_flags(tmp_path):
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"x")
    plan = plan_from_args(_args("http://127.0.0.1:8080/#key=k"))
    assert plan.source == "camera:0" and plan.vcam_device is None and plan.name
    plan = plan_from_args(_args("http://h:1/", "--clip", str(clip), "--virtual-camera", "--record", "o.mkv",
                                "--vcam-size", "640x360", "--fps", "25", "--name", "Ana"))
    assert plan.source == str(clip) and plan.vcam_device == AUTO_DEVICE
    assert plan.vcam_size == (640, 360) and plan.fps == 25 and plan.name == "Ana"
    assert plan_from_args(_args("http://h:1/", "--virtual-camera", "/dev/video7")).vcam_device == "/dev/video7"
    assert plan_from_args(_args("http://h:1/", "--camera", "2")).source == "camera:2"


@pytest.mark.parametrize("argv, message", [
    (["--virtual-camera", "http://h:1/"], "--virtual-camera took 'http://h:1/' as its DEVICE"),
    ([], "the room's URL is required"),
    (["http://h:1/", "--clip", "/no/such.mp4"], "--clip /no/such.mp4: no such file"),
    (["http://h:1/", "--record", "out.txt"], "--record out.txt: name a .mp4"),
    (["http://h:1/", "--camera", "-1"], "--camera -1"),
    (["http://h:1/", "--name", "  "], "--name"),
])
def test_plan_refuses_bad_flags(argv, message):
    with pytest.raises(RoomfuseError, match=message.replace(".", r"\.").replace("(", r"\(")):
        plan_from_args(_args(*argv))


def test_media_addresses_follow_the_server():
    assert media_addresses(plan_from_args(_args("http://127.0.0.1:8080/"))) == ["127.0.0.1"]
    assert media_addresses(plan_from_args(_args("http://localhost:8080/"))) == ["127.0.0.1"]
    assert media_addresses(plan_from_args(_args("http://[::1]:8080/"))) == ["::1"]
    assert media_addresses(plan_from_args(_args("http://rooms.example.org/"))) is None
    assert media_addresses(plan_from_args(_args("http://rooms.example.org/", "--ice-host", "127.0.0.1"))) \
        == ["127.0.0.1"]
    with pytest.raises(RoomfuseError, match="--ice-host 192.0.2.55: not an address of this machine"):
        media_addresses(plan_from_args(_args("http://h/", "--ice-host", "192.0.2.55")))


async def _answer_with(status: int, body: str, content_type: str, method: str):
    """A real HTTP server that gives one canned answer, and our signalling against it."""
    import aiohttp
    from aiohttp import web

    async def handler(request):
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            sig = Signalling(http, Link(base=f"http://127.0.0.1:{port}", room="main", key="k"))
            if method == "offer":
                return await sig.offer("v=0", "me")
            if method == "config":
                return await sig.ice_servers()
            if method == "leave":
                return await sig.leave("0123456789ab", timeout=5)
            return await sig.participants()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status, body, ctype, method, message, retry", [
    (403, '{"error": "wrong room key"}', "application/json", "offer",
     "room 'main' at http://127.0.0.1:PORT: wrong room key (HTTP 403)", False),
    (409, '{"error": "room main is full (8 participants)"}', "application/json", "offer",
     "room main is full (8 participants) (HTTP 409)", True),
    (400, '{"error": "sdp: no ICE candidates"}', "application/json", "offer",
     "POST refused: sdp: no ICE candidates (HTTP 400)", False),
    (413, '{"error": "too large"}', "application/json", "offer", "POST refused: too large (HTTP 413)", False),
    (503, "<html>down for maintenance</html>", "text/html", "offer", "server unavailable (HTTP 503)", True),
    (404, "<html>Not Found</html>", "text/html", "offer", "not a roomfuse server (HTTP 404)", False),
    (200, "<html>hello</html>", "text/html", "offer", "not a roomfuse server (answer is not JSON)", False),
    (200, '{"sdp": "v=0", "type": "offer"}', "application/json", "offer", "not an SDP answer", False),
    (200, '{"sdp": "v=0", "type": "answer"}', "application/json", "offer", "names no participant", False),
    (404, '{"error": "no participant 0123456789ab in room main"}', "application/json", "leave",
     "DELETE refused: no participant 0123456789ab in room main (HTTP 404)", False),
    (200, '{"room": "main"}', "application/json", "list", "has no participant list", False),
])
def test_http_answers_become_one_line_join_errors(status, body, ctype, method, message, retry):
    with pytest.raises(JoinError) as info:
        asyncio.run(_answer_with(status, body, ctype, method))
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", str(info.value))
    assert message in text and "\n" not in text
    assert info.value.retry is retry


def test_http_answer_that_is_a_roomfuse_answer():
    body = '{"sdp": "v=0", "type": "answer", "participant": "0123456789ab"}'
    assert asyncio.run(_answer_with(200, body, "application/json", "offer")) == ("v=0", "0123456789ab")
    listing = '{"room": "main", "participants": [{"id": "0123456789ab", "name": "me"}]}'
    assert asyncio.run(_answer_with(200, listing, "application/json", "list")) == [{"id": "0123456789ab",
                                                                                    "name": "me"}]


def test_ice_servers_come_from_the_room_server():
    body = ('{"iceServers": [{"urls": "turn:t.example.org:3478", "username": "u", "credential": "p"}, '
            '{"urls": ["stun:a.example.org", "stun:b.example.org:3479"]}], "fps": 30}')
    servers = asyncio.run(_answer_with(200, body, "application/json", "config"))
    assert [(s.url, s.username, s.credential) for s in servers] == [
        ("turn:t.example.org:3478", "u", "p"), ("stun:a.example.org", None, None),
        ("stun:b.example.org:3479", None, None)]
    # Another kind of server: nothing to add, and the offer will say what is wrong.
    assert asyncio.run(_answer_with(404, "<html>Not Found</html>", "text/html", "config")) == []
    assert asyncio.run(_answer_with(501, "<html>no GET</html>", "text/html", "config")) == []
    with pytest.raises(JoinError, match="wrong room key"):
        asyncio.run(_answer_with(403, '{"error": "wrong room key"}', "application/json", "config"))


def test_source_reader_paces_frames_and_makes_them_encodable():
    source = SyntheticSource(size=(321, 241), fps=50)
    reader = SourceReader(source)

    async def read(n):
        t0 = time.monotonic()
        frames = [await reader.read() for _ in range(n)]
        return frames, time.monotonic() - t0

    try:
        frames, took = asyncio.run(read(26))
    finally:
        reader.close()
    assert 0.45 <= took <= 1.5, took  # 25 periods of 20 ms, on a busy machine
    assert all(f.format.name == "yuv420p" and (f.width, f.height) == (320, 240) for f in frames)
    assert not any(t.name.startswith("roomfuse-source") for t in threading.enumerate())


def _join(*args, env=None):
    return subprocess.run([sys.executable, "-m", "roomfuse", "join", *map(str, args)], capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize("url, reason", [
    ("localhost:8080", "bad URL 'localhost:8080'"),
    ("http://h:notaport/", "bad URL 'http://h:notaport/'"),
    ("http://127.0.0.1:8080/r/bad%20room", "room name 'bad room'"),
])
def test_bad_url_is_one_line_and_exit_2(url, reason):
    result = _join(url)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and reason in result.stderr, result.stderr
    assert result.stderr.startswith("roomfuse join: error: ")


class _NotRoomfuse(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_url_of_another_web_server_is_one_line_and_exit_2(tmp_path):
    clip = tmp_path / "c.mp4"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRoomfuse)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        port = server.server_address[1]
        with VideoWriter(clip, fps=10) as w:
            source = SyntheticSource()
            for _ in range(5):
                w.write(source.read().image)
        result = _join(f"http://127.0.0.1:{port}/", "--clip", clip)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert result.returncode == 2
    assert result.stderr == (f"roomfuse join: error: http://127.0.0.1:{port}/rooms/main/offer: "
                             "not a roomfuse server (HTTP 404)\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the DISPLAY check is Linux's")
def test_show_without_a_display_is_one_line_and_exit_2():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = _join("http://127.0.0.1:9/", "--show", env=env)
    assert result.returncode == 2
    assert result.stderr == "roomfuse join: error: --show: no display to open a window on (DISPLAY is not set)\n"
