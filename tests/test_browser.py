"""A real browser joins a room through the real page.

Headless Chromium (Debian's, driven by Playwright) with a fake camera that plays a team
clip, against `roomfuse serve` started as a user starts it. Run inside a network
namespace that has only loopback, so nothing but the room can be reached and ICE can only
succeed on 127.0.0.1: `scripts/browser_test.sh` sets that up. Outside one these tests
skip (or fail, with ROOMFUSE_REQUIRE_BROWSER=1 as in CI).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CHROMIUM = os.environ.get("ROOMFUSE_CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("ROOMFUSE_FIREFOX", "/usr/bin/firefox-esr")
ROOM = "browser-room"
KEY = "browser-key"
CANVAS = (1280, 360)
FLAGS = [
    "--no-sandbox",  # root in CI containers
    "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",  # the only interface in the namespace
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # real host candidates, not .local names
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _unavailable(browser: str) -> str | None:
    if browser == "chromium":
        try:
            import playwright  # noqa: F401
        except ImportError:
            return "playwright is not installed (pip install playwright; never `playwright install`)"
        if not os.access(CHROMIUM, os.X_OK):
            return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ROOMFUSE_CHROMIUM)"
    elif not os.access(FIREFOX, os.X_OK):
        return f"no Firefox at {FIREFOX} (apt-get install firefox-esr, or set ROOMFUSE_FIREFOX)"
    import ifaddr

    # The namespace's own veth pair (see scripts/browser_test.sh) leads nowhere outside.
    sealed = {"lo", *os.environ.get("ROOMFUSE_SEALED_IFACES", "").split()}
    others = [a.nice_name for a in ifaddr.get_adapters() if a.nice_name not in sealed and a.ips]
    if others:
        return (f"not in a loopback-only network namespace (interfaces {', '.join(others)}); "
                "run scripts/browser_test.sh")
    if browser == "firefox" and not _default_route():
        return ("no default route in the namespace: Firefox then gathers no ICE candidate "
                "(scripts/browser_test.sh adds one with iproute2's `ip`)")
    return None


def _default_route() -> bool:
    with open("/proc/net/route") as f:
        return any(line.split()[1] == "00000000" for line in list(f)[1:])


def _ready(browser: str) -> None:
    why = _unavailable(browser)
    if why:
        if os.environ.get("ROOMFUSE_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser_ready():
    _ready("chromium")


@pytest.fixture(scope="module")
def firefox_ready():
    _ready("firefox")


def make_y4m(clip: Path, path: Path, frames: int = 150, size=(640, 360)) -> Path:
    """The fake camera's input: a team clip as raw y4m (Chromium loops it)."""
    import av

    from roomfuse.capture import ClipSource

    src = ClipSource(clip)
    out = av.open(str(path), "w", format="yuv4mpegpipe")
    try:
        stream = out.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(src.read().image, format="rgb24").reformat(
                width=size[0], height=size[1], format="yuv420p")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()
        src.close()
    return path


class Serve:
    """`roomfuse serve` in a subprocess, as the README starts it (port 0: any free one).
    ``restart()`` starts it again on the same port, as a host restarting it would."""

    def __init__(self, folder: Path, port: int = 0, extra: tuple[str, ...] = ()):
        self.folder, self.port, self.extra = folder, port, list(extra)
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.log = self.folder / ("serve.log" if not self.starts else f"serve-{self.starts + 1}.log")
        self.starts += 1
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "roomfuse", "serve", "--port", str(self.port), "--key", KEY, *self.extra],
                stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        if not line.startswith("roomfuse serve: open "):
            self.stop()
            raise AssertionError(f"serve did not start: {line!r}\n{self.log.read_text()[-3000:]}")
        self.url = line.split("open ", 1)[1].strip()
        self.base = self.url.split("/#", 1)[0]
        self.port = int(self.base.rsplit(":", 1)[1])

    def room(self, name: str = ROOM) -> dict:
        req = urllib.request.Request(f"{self.base}/rooms/{name}", headers={"X-Roomfuse-Key": KEY})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


async def wait_js(page, expression: str, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


# Draw the received composite into a canvas and measure it: a blank or black picture
# would count frames too, so look at what is in them.
PICTURE_STATS = """() => {
  const v = document.getElementById('composite');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * 97) { const y = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += y; sq += y * y; n++; }
  const mean = sum / n;
  return {mean, std: Math.sqrt(sq / n - mean * mean)};
}"""


def test_browser_joins_through_the_page_and_receives_the_room(browser_ready, person_clip, tmp_path):
    y4m = make_y4m(person_clip("pyfeat_single_face.mp4"), tmp_path / "camera.y4m")
    server = Serve(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(_session(server, y4m, tmp_path), 200))
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


async def _session(server: Serve, y4m: Path, out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=FLAGS + [f"--use-file-for-fake-video-capture={y4m}"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # Whatever the pages' Content-Security-Policy blocks, Chromium reports on the console.
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            # The landing page, opened from the address the server printed.
            landing = await page.goto(server.url)
            assert "frame-ancestors 'none'" in landing.headers.get("content-security-policy", "")
            await page.fill("#room", ROOM)
            await page.click("#join")
            await page.wait_for_url(f"**/r/{ROOM}*")
            # The room page: camera preview first, then join.
            await page.wait_for_selector("#join:not([disabled])", timeout=30_000)
            await page.fill("#name", "chromium")
            await page.click("#join")
            frames = await wait_js(page, "window.roomfuse.frames >= 90 && window.roomfuse.frames", 90,
                                   "90 composite frames in the page")
            t0, n0 = time.monotonic(), frames
            await asyncio.sleep(3)
            fps = (await page.evaluate("window.roomfuse.frames") - n0) / (time.monotonic() - t0)
            size = await page.evaluate("[document.getElementById('composite').videoWidth,"
                                       " document.getElementById('composite').videoHeight]")
            assert tuple(size) == CANVAS
            assert fps > 5, f"only {fps:.1f} composite fps reached the page"
            stats = await page.evaluate(PICTURE_STATS)
            assert 20 < stats["mean"] < 235 and stats["std"] > 15, stats  # a real picture
            # The page lists us, and shows its live stats.
            await wait_js(page, "document.querySelector('#people li.me') !== null", 10, "ourselves in the list")
            assert "(you)" in await page.inner_text("#people")
            assert "fps" in await page.inner_text("#stat-fps")
            assert await page.inner_text("#stat-res") == f"{CANVAS[0]}x{CANVAS[1]}"
            await wait_js(page, "document.getElementById('stat-rtt').textContent.endsWith(' ms') &&"
                                " document.getElementById('stat-delay').textContent.endsWith(' ms')", 10,
                          "network round trip and server delay in the stats")
            room = server.room()
            me = await page.evaluate("window.roomfuse.participant")
            assert [p["id"] for p in room["participants"]] == [me]
            assert room["participants"][0]["state"] == "live"
            assert room["participants"][0]["size"] == [640, 360]  # the camera's own resolution
            await page.screenshot(path=str(out / "room.png"), full_page=True)
            # Leaving through the page empties the room.
            await page.click("#leave")
            deadline = time.monotonic() + 10
            while server.room()["participants"]:
                assert time.monotonic() < deadline, "still in the room after Leave"
                await asyncio.sleep(0.2)
            assert not errors, errors
        finally:
            await browser.close()


def test_firefox_joins_through_the_page_and_receives_the_room(firefox_ready, tmp_path):
    """Firefox (ESR, driven over WebDriver BiDi) with its synthetic camera: the same page,
    the same signalling, Firefox's own WebRTC stack and codecs against the room."""
    server = Serve(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(_firefox_session(server, tmp_path), 200))
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


async def _firefox_session(server: Serve, out: Path) -> None:
    from bidi import BidiError, Firefox

    async with Firefox(FIREFOX, log=out / "firefox.log") as ff:
        ctx = await ff.page()

        async def until(expression: str, timeout_s: float, what: str):
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    value = await ff.js(ctx, expression)
                except BidiError as e:  # the page is between documents
                    value, last = None, e
                else:
                    last = None
                if value:
                    return value
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                                         + (f" (last error: {last})" if last else ""))
                await asyncio.sleep(0.25)

        await ff.goto(ctx, server.url)
        await ff.js(ctx, "window.roomfuseErrors = []; addEventListener('error', e => roomfuseErrors.push(e.message))")
        await ff.js(ctx, f"document.getElementById('room').value = {json.dumps(ROOM)};"
                         " document.getElementById('join').click()")
        await until(f"location.pathname === '/r/{ROOM}' && document.readyState === 'complete'", 20,
                    "the room page")
        await ff.js(ctx, "window.roomfuseErrors = []; addEventListener('error', e => roomfuseErrors.push(e.message))")
        await until("!!document.querySelector('#join:not([disabled])')", 30, "the camera preview")
        await ff.js(ctx, "document.getElementById('name').value = 'firefox';"
                         " document.getElementById('join').click()")
        frames = await until("window.roomfuse.frames >= 90 && window.roomfuse.frames", 90,
                             "90 composite frames in the page")
        t0 = time.monotonic()
        await asyncio.sleep(3)
        fps = (await ff.js(ctx, "window.roomfuse.frames") - frames) / (time.monotonic() - t0)
        size = await ff.js(ctx, "[document.getElementById('composite').videoWidth,"
                                " document.getElementById('composite').videoHeight]")
        assert tuple(size) == CANVAS
        assert fps > 5, f"only {fps:.1f} composite fps reached the page"
        stats = await ff.js(ctx, f"({PICTURE_STATS})()")
        assert 20 < stats["mean"] < 235, stats  # a picture, not a black or white frame
        await until("document.querySelector('#people li.me') !== null", 10, "ourselves in the list")
        assert "(you)" in await ff.js(ctx, "document.getElementById('people').innerText")
        assert await ff.js(ctx, "document.getElementById('stat-res').textContent") == f"{CANVAS[0]}x{CANVAS[1]}"
        await until("document.getElementById('stat-rtt').textContent.endsWith(' ms')", 10,
                    "the round trip in the stats")
        room = server.room()
        me = await ff.js(ctx, "window.roomfuse.participant")
        assert [p["id"] for p in room["participants"]] == [me]
        assert room["participants"][0]["state"] == "live"
        assert room["participants"][0]["size"] == [640, 360]  # the page's camera request, honoured
        await ff.screenshot(ctx, out / "room-firefox.png")
        await ff.js(ctx, "document.getElementById('leave').click()")
        deadline = time.monotonic() + 10
        while server.room()["participants"]:
            assert time.monotonic() < deadline, "still in the room after Leave"
            await asyncio.sleep(0.2)
        assert await ff.js(ctx, "window.roomfuseErrors") == []
