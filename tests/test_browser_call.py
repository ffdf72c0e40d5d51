"""A call in real browsers: sound both ways, mute, names on the picture, the invite link
and getting back in after a server restart.

Each browser's fake microphone plays a tone of its own pitch (Chromium from a WAV file,
Firefox its synthetic tone at a pitch set by preference), and each page's received sound
is analysed in the page (Web Audio) to tell whose voice it carries. Run inside a
loopback-only network namespace, like test_browser.py: `scripts/browser_test.sh`.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from test_browser import (CHROMIUM, FIREFOX, FLAGS, KEY, PICTURE_STATS, Serve, browser_ready,  # noqa: F401
                          firefox_ready, make_y4m, wait_js)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOM = "call-room"


def tone_wav(path: Path, hz: float, seconds: float = 4.0, level: float = 0.4) -> Path:
    """A fake microphone's input: a sine (Chromium loops the file)."""
    t = np.arange(int(48000 * seconds)) / 48000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((level * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hear_js(freqs: list[float], seconds: float = 2.0) -> str:
    """An expression: the room sound's level at each of ``freqs`` (peak magnitude within
    +-20 Hz, averaged over ``seconds``), as Web Audio's analyser sees the received track."""
    return f"""(async () => {{
  const freqs = {json.dumps(freqs)};
  const audio = document.getElementById('room-audio');
  if (!audio.srcObject) return null;
  const ctx = new AudioContext();
  await ctx.resume();
  const an = ctx.createAnalyser();
  an.fftSize = 16384;
  ctx.createMediaStreamSource(audio.srcObject).connect(an);
  const bins = new Float32Array(an.frequencyBinCount), acc = new Float32Array(an.frequencyBinCount);
  const n = Math.round({seconds} / 0.2);
  for (let i = 0; i < n; i++) {{
    await new Promise((r) => setTimeout(r, 200));
    an.getFloatFrequencyData(bins);
    for (let j = 0; j < bins.length; j++) acc[j] += Math.pow(10, bins[j] / 20) / n;
  }}
  const hz = ctx.sampleRate / an.fftSize;
  const out = freqs.map((f) => {{
    let m = 0;
    for (let j = Math.floor((f - 20) / hz); j <= Math.ceil((f + 20) / hz); j++) m = Math.max(m, acc[j]);
    return m;
  }});
  await ctx.close();
  return out;
}})()"""


def label_js(rect) -> str:
    """How much of a label's rectangle in the received picture is dark box and how much
    light lettering."""
    x, y, w, h = rect
    return f"""(() => {{
  const v = document.getElementById('composite');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const d = g.getImageData({x}, {y}, {w}, {h}).data;
  let dark = 0, light = 0;
  for (let i = 0; i < d.length; i += 4) {{
    const l = (d[i] + d[i + 1] + d[i + 2]) / 3;
    if (l < 90) dark++; else if (l > 180) light++;
  }}
  return {{dark: dark / (d.length / 4), light: light / (d.length / 4)}};
}})()"""


async def chromium_page(pw, folder: Path, hz: float, clip: Path | None, name: str, *, url: str,
                        mic: bool = True, permissions: tuple[str, ...] = ()):
    """A Chromium of its own (its fake microphone plays ``hz``) on the room page, joined.
    ``mic=False``: the microphone is refused (the camera allowed), as a user may do."""
    args = FLAGS + [f"--use-file-for-fake-audio-capture={tone_wav(folder / f'tone-{name}.wav', hz)}"]
    if clip is not None:
        args.append(f"--use-file-for-fake-video-capture={make_y4m(clip, folder / f'camera-{name}.y4m', frames=90)}")
    if not mic:
        args.remove("--use-fake-ui-for-media-stream")  # permissions as the context grants them
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    # Permissions are given with the context: granting more later (Playwright's
    # grant_permissions) withdraws the camera from a page that is using it.
    context = await browser.new_context(viewport={"width": 1400, "height": 800},
                                        permissions=[*permissions, *(() if mic else ("camera",))] or None)
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(url)
    await join_page(page, name)
    return browser, page


async def join_page(page, name: str) -> None:
    await page.wait_for_selector("#join:not([disabled])", timeout=60_000)
    await page.fill("#name", name)
    await page.click("#join")
    await wait_js(page, "window.roomfuse.frames >= 20", 90, f"{name}: composite frames")


async def hears(page, want: float, other: float, what: str, timeout_s: float = 30) -> list[float]:
    """Wait until ``page`` hears ``want`` clearly and ``other`` (its own voice) hardly."""
    deadline = time.monotonic() + timeout_s
    while True:
        levels = await page.evaluate(hear_js([want, other]))
        if levels and levels[0] > 5e-4 and levels[1] < 0.2 * levels[0]:
            return levels
        assert time.monotonic() < deadline, f"{what}: levels at {want:g} / {other:g} Hz: {levels}"


async def silent_at(page, hz: float, reference: float, what: str, timeout_s: float = 15) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        level = (await page.evaluate(hear_js([hz], 1.0)))[0]
        if level < 0.1 * reference:
            return level
        assert time.monotonic() < deadline, f"{what}: still {level:.2g} at {hz:g} Hz (was {reference:.2g})"


def test_chromium_pages_hear_each_other_mute_and_see_names(browser_ready, person_clip, tmp_path):
    server = Serve(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(_sound_and_names(server, person_clip, tmp_path), 260))
    finally:
        code = server.stop()
    log = server.log.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


async def _sound_and_names(server: Serve, person_clip, out: Path) -> None:
    from playwright.async_api import async_playwright

    url = f"{server.base}/r/{ROOM}#key={KEY}"
    async with async_playwright() as pw:
        a_browser, a = await chromium_page(pw, out, 440, person_clip("pyfeat_single_face.mp4"), "Ada", url=url)
        b_browser, b = await chromium_page(pw, out, 700, person_clip("intel_asl_bird.mkv"), "Bea", url=url)
        try:
            # Each hears the other's pitch, not its own.
            await hears(a, 700, 440, "Ada hears Bea")
            b_levels = await hears(b, 440, 700, "Bea hears Ada")

            # Names under both people, in the picture every page receives.
            deadline = time.monotonic() + 20
            while not all(p["label"] for p in server.room(ROOM)["participants"]):
                assert time.monotonic() < deadline, server.room(ROOM)
                await asyncio.sleep(0.5)
            people = {p["name"]: p for p in server.room(ROOM)["participants"]}
            assert set(people) == {"Ada", "Bea"}
            for who in people.values():
                seen = await b.evaluate(label_js(who["label"]))
                assert seen["dark"] > 0.3 and seen["light"] > 0.04, (who["name"], seen)
            assert (await b.evaluate(PICTURE_STATS))["std"] > 15
            await b.screenshot(path=str(out / "names.png"))

            # Ada mutes: Bea's sound of Ada goes, Ada still hears Bea; the list says so.
            await a.click("#mute")
            await wait_js(a, "document.getElementById('mute').textContent === 'Unmute'", 5, "the Unmute button")
            await silent_at(b, 440, b_levels[0], "Bea after Ada muted")
            await hears(a, 700, 440, "Ada after muting")
            await wait_js(b, "document.querySelector('#people').innerText.includes('muted')", 10,
                          "Ada shown as muted in Bea's list")
            assert [p["muted"] for p in server.room(ROOM)["participants"] if p["name"] == "Ada"] == [True]
            await a.click("#mute")
            await hears(b, 440, 700, "Bea after Ada unmuted")

            # Camera off: the room keeps Ada's seat, the list says so; on again, frames flow.
            await a.click("#camera")
            await wait_js(b, "document.querySelector('#people').innerText.includes('camera off')", 10,
                          "Ada's camera shown as off in Bea's list")
            ada = next(p for p in server.room(ROOM)["participants"] if p["name"] == "Ada")
            assert ada["camera"] is False and ada["state"] == "live"
            await a.click("#camera")
            await wait_js(b, "!document.querySelector('#people').innerText.includes('camera off')", 10,
                          "Ada's camera back on")

            # Ada, the host, arranges the room; Bea is not offered to.
            assert await a.is_visible("#room-settings") and not await b.is_visible("#room-settings")
            await a.uncheck("#names")
            deadline = time.monotonic() + 10
            while server.room(ROOM)["names"]:
                assert time.monotonic() < deadline, "names still on"
                await asyncio.sleep(0.3)
            # Fullscreen shows the room alone; Esc (or the button) leaves it.
            await a.click("#fullscreen")
            await wait_js(a, "document.fullscreenElement && document.fullscreenElement.id === 'screen'", 5,
                          "fullscreen")
            await a.click("#fullscreen")
            assert not a.errors and not b.errors, (a.errors, b.errors)
        finally:
            await a_browser.close()
            await b_browser.close()


def test_invite_link_joins_a_third_page_and_pages_rejoin_after_a_server_restart(browser_ready, tmp_path):
    server = Serve(tmp_path, port=free_port())
    try:
        asyncio.run(asyncio.wait_for(_invite_and_restart(server, tmp_path), 260))
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]
    for log in tmp_path.glob("serve*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


async def _invite_and_restart(server: Serve, out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser, first = await chromium_page(pw, out, 500, None, "host", url=f"{server.base}/r/{ROOM}#key={KEY}",
                                             permissions=("clipboard-read", "clipboard-write"))
        browsers = [browser]
        try:
            await first.click("#invite")
            await wait_js(first, "document.getElementById('invite').textContent === 'Copied'", 5, "the copy")
            link = await first.evaluate("navigator.clipboard.readText()")
            assert link == f"{server.base}/r/{ROOM}#key={KEY}", link  # the key rides in the fragment

            # Two others open the link, each in a browser of their own (nothing but the link
            # to go on), and join.
            # The third refuses the microphone: it joins all the same, and hears the room.
            others = [await chromium_page(pw, out, 600, None, "guest", url=link),
                      await chromium_page(pw, out, 800, None, "third", url=link, mic=False)]
            browsers += [b for b, _ in others]
            second, third = (p for _, p in others)
            people = {p["name"]: p for p in server.room(ROOM)["participants"]}
            assert sorted(people) == ["guest", "host", "third"], people
            assert people["third"]["audio"] is False and people["guest"]["audio"] is True
            assert "No microphone" in await third.inner_text("#mic-note")
            assert await third.evaluate("window.roomfuse.microphone") is False
            assert await third.is_disabled("#mute")
            await hears(third, 500, 800, "the page without a microphone hears the host")
            pages = [first, second, third]

            # The server restarts on the same port; every page says so, once, and gets back
            # in by itself.
            server.stop()
            for page in pages:
                await wait_js(page, "window.roomfuse.reconnecting", 15, "the page noticing the server is gone")
                assert "Connection lost" in await page.inner_text("#error")
                assert "reconnecting" in await page.inner_text("#status")
            await asyncio.sleep(2.0)  # down for a while: the pages keep trying
            server.start()
            back = time.monotonic()
            for page in pages:
                n = await page.evaluate("window.roomfuse.frames")
                await wait_js(page, f"!window.roomfuse.reconnecting && window.roomfuse.frames > {n + 10}",
                              max(1.0, 10 - (time.monotonic() - back)), "the page back in the room with frames")
            took = time.monotonic() - back
            (out / "rejoin-seconds.txt").write_text(f"{took:.1f}\n")  # for the record
            assert took < 10, took
            names = sorted(p["name"] for p in server.room(ROOM)["participants"])
            assert names == ["guest", "host", "third"], names
            for page in pages:
                assert "Failed to fetch" not in await page.inner_text("body")
                assert "Connection lost" not in await page.inner_text("#error")
            await first.screenshot(path=str(out / "rejoined.png"))
            assert not any(p.errors for p in pages), [p.errors for p in pages]
        finally:
            for b in browsers:
                await b.close()


def test_firefox_and_chromium_hear_each_other(browser_ready, firefox_ready, tmp_path):
    """Firefox's WebRTC stack and Opus against the room's mix, with Chromium on the other side."""
    server = Serve(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(_firefox_sound(server, tmp_path), 260))
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


async def _firefox_sound(server: Serve, out: Path) -> None:
    from bidi import Firefox
    from playwright.async_api import async_playwright

    url = f"{server.base}/r/{ROOM}#key={KEY}"
    # Firefox's fake microphone at 900 Hz, and an audio output that needs no sound card
    # (without one a Web Audio context never starts).
    prefs = {"media.navigator.audio.fake_frequency": 900, "media.autoplay.block-webaudio": False,
             "media.cubeb.force_mock_context": True}
    async with Firefox(FIREFOX, prefs=prefs, log=out / "firefox.log") as ff, async_playwright() as pw:
        ctx = await ff.page()
        await ff.goto(ctx, url)

        async def until(expression: str, timeout_s: float, what: str):
            deadline = time.monotonic() + timeout_s
            while not await ff.js(ctx, expression):
                assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
                await asyncio.sleep(0.25)

        await until("!!document.querySelector('#join:not([disabled])')", 60, "the camera preview")
        await ff.js(ctx, "document.getElementById('name').value = 'fox'; document.getElementById('join').click()")
        await until("window.roomfuse.frames >= 20", 90, "composite frames in Firefox")
        browser, chrome = await chromium_page(pw, out, 440, None, "chrome", url=url)
        try:
            heard = await hears(chrome, 900, 440, "Chromium hears Firefox")
            deadline = time.monotonic() + 30
            while True:
                levels = await ff.js(ctx, hear_js([440, 900]))
                if levels and levels[0] > 5e-4 and levels[1] < 0.2 * levels[0]:
                    break
                assert time.monotonic() < deadline, f"Firefox hears: {levels}"
            await ff.js(ctx, "document.getElementById('mute').click()")
            await silent_at(chrome, 900, heard[0], "Chromium after Firefox muted")
            await ff.screenshot(ctx, out / "firefox-call.png")
        finally:
            await browser.close()
