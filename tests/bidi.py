"""Drive a real Firefox over WebDriver BiDi, the W3C protocol Firefox speaks natively.

Firefox (Debian's firefox-esr) is started with ``--remote-debugging-port`` and answers
BiDi commands on a websocket; no geckodriver, no patched browser build. Only what the
browser tests need: open a page, run JavaScript in it, take a screenshot.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import aiohttp

# Preferences for a headless WebRTC participant on a loopback-only machine.
WEBRTC_PREFS = {
    "media.navigator.streams.fake": True,          # a synthetic camera, no device needed
    "media.navigator.permission.disabled": True,   # grant the camera without a prompt
    "media.peerconnection.ice.loopback": True,     # the only interface in the namespace
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # host candidates, not mDNS
    "media.autoplay.default": 0,                   # play the composite without a gesture
    "remote.prefs.recommended": True,              # quiet: no updates, no first-run pages
}


class BidiError(RuntimeError):
    pass


class Firefox:
    """``async with Firefox(path) as ff: ctx = await ff.page(); await ff.js(ctx, ...)``."""

    def __init__(self, executable: str, prefs: dict | None = None, log: Path | None = None):
        self.executable = executable
        self.prefs = {**WEBRTC_PREFS, **(prefs or {})}
        self.log_path = log
        self._id = 0
        self._pending: dict[int, asyncio.Future] = {}

    async def __aenter__(self) -> "Firefox":
        self.profile = Path(tempfile.mkdtemp(prefix="roomfuse-firefox-"))
        (self.profile / "user.js").write_text(
            "".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in self.prefs.items()))
        self.proc = subprocess.Popen(
            [self.executable, "--headless", "--no-remote", "--remote-debugging-port=0",
             "--profile", str(self.profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            url = await asyncio.wait_for(asyncio.to_thread(self._endpoint), 60)
            self.http = aiohttp.ClientSession()
            self.ws = await self.http.ws_connect(url + "/session", max_msg_size=0)
            self.reader = asyncio.create_task(self._read())
            await self.send("session.new", capabilities={})
        except BaseException:
            await self._close()
            raise
        return self

    def _endpoint(self) -> str:
        """Read Firefox's stderr until it names its BiDi address; keep the rest as a log."""
        lines = []
        for line in self.proc.stderr:
            lines.append(line)
            m = re.search(r"WebDriver BiDi listening on (ws://\S+)", line)
            if m:
                threading.Thread(target=self._drain, args=(lines,), daemon=True).start()
                return m.group(1)
        raise BidiError(f"{self.executable} exited ({self.proc.wait()}) before listening: "
                        + "".join(lines)[-2000:])

    def _drain(self, lines: list[str]) -> None:
        for line in self.proc.stderr:
            lines.append(line)
        if self.log_path:
            self.log_path.write_text("".join(lines))

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
        for fut in self._pending.values():
            fut.set_exception(BidiError("Firefox closed the connection"))

    async def send(self, method: str, **params) -> dict:
        self._id += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._id] = fut
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        reply = await asyncio.wait_for(fut, 60)
        if reply.get("type") == "error":
            raise BidiError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        return reply["result"]

    async def page(self, viewport=(1400, 800)) -> str:
        """The first tab's browsing context id, sized to ``viewport``."""
        ctx = (await self.send("browsingContext.getTree"))["contexts"][0]["context"]
        await self.send("browsingContext.setViewport", context=ctx,
                        viewport={"width": viewport[0], "height": viewport[1]})
        return ctx

    async def goto(self, ctx: str, url: str) -> None:
        await self.send("browsingContext.navigate", context=ctx, url=url, wait="complete")

    async def js(self, ctx: str, expression: str):
        """Evaluate ``expression`` in the page (promises awaited); its value as Python."""
        r = await self.send("script.evaluate", expression=expression, target={"context": ctx},
                            awaitPromise=True)
        if r["type"] == "exception":
            raise BidiError(f"{expression[:80]!r} threw: {r['exceptionDetails']['text']}")
        return _value(r["result"])

    async def screenshot(self, ctx: str, path: Path) -> None:
        data = (await self.send("browsingContext.captureScreenshot", context=ctx))["data"]
        path.write_bytes(base64.b64decode(data))

    async def __aexit__(self, *exc) -> None:
        await self._close()

    async def _close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(self.send("browser.close"), 10)
            except (BidiError, asyncio.TimeoutError, ConnectionError):
                pass
            await ws.close()
        if getattr(self, "reader", None) is not None:
            self.reader.cancel()
        if getattr(self, "http", None) is not None:
            await self.http.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def _value(remote: dict):
    """A BiDi serialised value (``{"type": "number", "value": 3}``...) as plain Python."""
    kind, value = remote.get("type"), remote.get("value")
    if kind == "array":
        return [_value(v) for v in value]
    if kind == "object":
        return {k if isinstance(k, str) else _value(k): _value(v) for k, v in value}
    if kind in ("undefined", "null"):
        return None
    if kind == "number" and isinstance(value, str):   # NaN, Infinity, -0
        return float(value.replace("Infinity", "inf"))
    return value
