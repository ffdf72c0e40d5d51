"""The signalling contract: one HTTP exchange per join, no signalling server of its own.

    POST   /rooms/{room}/offer                  {"sdp", "type": "offer", "name", "key"}
                                                -> {"sdp", "type": "answer", "participant", "token"}
    GET    /rooms/{room}                        -> {"room", "participants": [...], ...}
    DELETE /rooms/{room}/participants/{id}      -> {"left": id}

The key travels in the offer body, or for GET and DELETE in the ``X-Roomfuse-Key``
header; never in the URL, which proxies and access logs keep. Errors are JSON
``{"error": "one line"}`` with 400 (malformed), 403 (wrong or missing key), 404 (no such
participant), 408 (body too slow), 409 (room full), 413 (body too large), 429 (too many
wrong keys from one address) or 503 (the server is at its room limit). What a
participant changes while in the room (mute, camera, the room's layout: ``token`` proves
who asks) is in ``controls.py``. aiortc has no trickle ICE: the offer must carry every
candidate, so a browser waits for ``iceGatheringState == "complete"`` before posting it.

The names and helpers a client needs are at the top of this module; the aiohttp routes
and the validation of what arrives are below them.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from pathlib import Path

from ..config import ServerLimits
from ..errors import RoomfuseError

log = logging.getLogger(__name__)

OFFER_PATH = "/rooms/{room}/offer"
ROOM_PATH = "/rooms/{room}"
PARTICIPANT_PATH = "/rooms/{room}/participants/{participant}"
CONFIG_PATH = "/config"
KEY_HEADER = "X-Roomfuse-Key"
FIELD_SDP, FIELD_TYPE, FIELD_NAME, FIELD_KEY, FIELD_PARTICIPANT = "sdp", "type", "name", "key", "participant"

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PARTICIPANT_ID = re.compile(r"[0-9a-f]{12}")
MAX_NAME = 64
MAX_BODY = 64 * 1024  # a browser's offer with every candidate is about 5-10 KB
ROOM_CODEC = "VP8"  # the composite is encoded once, as VP8, for every viewer


class SignallingError(RoomfuseError):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


def check_room_name(room: str) -> str:
    if not isinstance(room, str) or not ROOM_NAME.fullmatch(room):
        raise SignallingError(f"room name {str(room)[:80]!r}: use 1-64 letters, digits, '-' or '_', "
                              "starting with a letter or digit")
    return room


def offer_body(sdp: str, name: str, key: str) -> dict:
    """The JSON body of a join request."""
    return {FIELD_SDP: sdp, FIELD_TYPE: "offer", FIELD_NAME: name, FIELD_KEY: key}


def offer_url(base: str, room: str) -> str:
    return base.rstrip("/") + OFFER_PATH.format(room=check_room_name(room))


def room_url(base: str, room: str) -> str:
    return base.rstrip("/") + ROOM_PATH.format(room=check_room_name(room))


def participant_url(base: str, room: str, participant: str) -> str:
    return base.rstrip("/") + PARTICIPANT_PATH.format(room=check_room_name(room), participant=participant)


def parse_answer(body: dict) -> tuple[str, str]:
    """(answer sdp, participant id) from the server's reply to an offer."""
    if not isinstance(body, dict) or body.get(FIELD_TYPE) != "answer" or not isinstance(body.get(FIELD_SDP), str):
        raise SignallingError(f"server reply is not an SDP answer: {str(body)[:120]}")
    return body[FIELD_SDP], str(body.get(FIELD_PARTICIPANT, ""))


# ---- what arrives at the server -------------------------------------------------------

def check_key(given, expected: str) -> None:
    if not isinstance(given, str) or not given:
        raise SignallingError(f"missing room key (send it in the {KEY_HEADER} header, or in the offer's "
                              f"'{FIELD_KEY}' field)", 403)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise SignallingError("wrong room key", 403)


def parse_offer_body(raw: bytes, expected_key: str, check=check_key) -> tuple[str, str]:
    """Validate a join request; returns (sdp, participant name). ``check(given,
    expected)`` judges the key (the server's also throttles wrong ones)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignallingError(f"request body is not JSON ({str(e).splitlines()[0][:80]})") from None
    except RecursionError:  # the parser recurses per level: "[[[[...", 60 KB deep
        raise SignallingError("request body is JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise SignallingError("request body must be a JSON object")
    check(body.get(FIELD_KEY), expected_key)
    if body.get(FIELD_TYPE) != "offer":
        raise SignallingError(f"field 'type' must be \"offer\", got {str(body.get(FIELD_TYPE))[:40]!r}")
    sdp = body.get(FIELD_SDP)
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignallingError("field 'sdp' must be a non-empty string")
    name = body.get(FIELD_NAME, "guest")
    if not isinstance(name, str):
        raise SignallingError("field 'name' must be a string")
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:MAX_NAME] or "guest"
    check_offer_sdp(sdp)
    return sdp, name


def check_offer_sdp(sdp: str) -> None:
    """Refuse an offer aiortc could not answer, naming what is wrong with it."""
    from aiortc.sdp import SessionDescription

    if not sdp.lstrip().startswith("v=0"):
        raise SignallingError("sdp: not a session description (must start with 'v=0')")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as e:  # the parser raises ValueError, KeyError, IndexError...
        raise SignallingError(f"sdp: cannot parse ({type(e).__name__}: {str(e)[:80]})") from None
    video = [m for m in desc.media if m.kind == "video"]
    if len(video) != 1:
        raise SignallingError(f"sdp: needs exactly one video section (m=video), found {len(video)}")
    m = video[0]
    if m.direction not in (None, "sendrecv"):
        raise SignallingError(f"sdp: the video section must be sendrecv (send the camera, receive the "
                              f"room), got {m.direction}")
    if not m.ice.usernameFragment or not m.ice.password:
        raise SignallingError("sdp: missing a=ice-ufrag / a=ice-pwd")
    if not m.dtls or not m.dtls.fingerprints:
        raise SignallingError("sdp: missing a=fingerprint (DTLS)")
    if not m.ice_candidates:
        raise SignallingError("sdp: no ICE candidates; wait for ICE gathering to complete before "
                              "sending the offer (no trickle ICE)")
    names = {c.name.upper() for c in m.rtp.codecs}
    if ROOM_CODEC not in names:
        raise SignallingError(f"sdp: the room is sent as {ROOM_CODEC}, which the offer lacks (it offers "
                              f"{', '.join(sorted(names - {'RTX'})) or 'no video codec'})")


# ---- the aiohttp application ----------------------------------------------------------

STATIC = Path(__file__).parent / "static"

# The pages load their scripts and stylesheet from /static only, talk to this server only
# (fetch, and WebRTC, which CSP does not govern) and may not be framed by another site.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def make_app(rooms, key: str, client_config: dict, limits: ServerLimits = ServerLimits(), door=None):
    """The web app: pages, static files and the signalling routes for ``rooms``
    (a ``room.Rooms``). ``client_config`` is what ``GET /config`` tells a page. ``door``
    (a ``guard.Door``, optional) is told when each request starts and ends, so that its
    header timeout never cuts a request being answered."""
    import asyncio

    from aiohttp import web

    from .guard import KeyThrottle, LineLog

    throttle = KeyThrottle(limits.wrong_keys_per_minute)
    refused = LineLog(log, logging.INFO)  # one line per refused request; a flood is summarised
    if door is not None:
        door.logs += [refused, throttle.log]

    def key_of(request) -> str | None:
        return request.headers.get(KEY_HEADER)

    def checker(request):
        """check_key, refusing addresses that sent too many wrong keys lately."""
        def check(given, expected: str) -> None:
            address = request.remote or "?"
            wait = throttle.wait_s(address)
            if wait > 0:
                raise SignallingError(f"too many wrong room keys from {address}; try again in {wait:.0f} s", 429)
            try:
                check_key(given, expected)
            except SignallingError:
                if isinstance(given, str) and given:
                    throttle.missed(address)
                raise
        return check

    @web.middleware
    async def track(request, handler):
        g = door.of(request.transport) if door is not None else None
        if g is not None:
            g.request_started()
        try:
            return await handler(request)
        finally:
            if g is not None:
                g.request_done()

    @web.middleware
    async def json_errors(request, handler):
        try:
            return await handler(request)
        except SignallingError as e:
            refused("%s %s from %s -> %d: %s", request.method, request.path, request.remote, e.status, e)
            return web.json_response({"error": str(e)}, status=e.status)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
            return web.json_response({"error": message}, status=e.status)
        except Exception as e:  # a bug: answer in the same shape, keep the traceback in the log
            log.exception("%s %s failed", request.method, request.path)
            return web.json_response({"error": f"internal error ({type(e).__name__})"}, status=500)

    async def read_body(request) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise SignallingError(f"request body of {request.content_length} bytes is over the "
                                  f"{MAX_BODY} byte limit", 413)
        try:
            return await asyncio.wait_for(request.read(), limits.body_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            raise SignallingError(f"request body is over the {MAX_BODY} byte limit", 413) from None
        except asyncio.TimeoutError:
            raise SignallingError(f"request body not complete within {limits.body_timeout_s:g} s", 408) from None
        except (ConnectionError, web.RequestPayloadError) as e:  # the client went away mid-body
            raise SignallingError(f"request body cut off ({type(e).__name__})") from None

    async def offer(request):
        room = check_room_name(request.match_info["room"])
        sdp, name = parse_offer_body(await read_body(request), key, checker(request))
        answer, pid = await rooms.join(room, name, sdp)
        return web.json_response({FIELD_SDP: answer, FIELD_TYPE: "answer", FIELD_PARTICIPANT: pid,
                                  "token": rooms.tokens.token(room, pid)})

    async def room_info(request):
        checker(request)(key_of(request), key)
        room = check_room_name(request.match_info["room"])
        return web.json_response(rooms.describe(room))

    async def leave(request):
        checker(request)(key_of(request), key)
        room = check_room_name(request.match_info["room"])
        pid = request.match_info["participant"]
        if not PARTICIPANT_ID.fullmatch(pid):
            raise SignallingError(f"participant id {pid[:40]!r} is malformed")
        await rooms.leave(room, pid)
        return web.json_response({"left": pid})

    async def config(request):
        checker(request)(key_of(request), key)
        return web.json_response(client_config)

    def page(name: str):
        async def handler(request):
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})
        return handler

    async def security_headers(request, response):
        response.headers.update(SECURITY_HEADERS)

    app = web.Application(middlewares=[track, json_errors], client_max_size=MAX_BODY)
    app.on_response_prepare.append(security_headers)
    app.add_routes([
        web.get("/", page("index.html")),
        web.get("/r/{room}", page("room.html")),
        web.get(CONFIG_PATH, config),
        web.post(OFFER_PATH, offer),
        web.get(ROOM_PATH, room_info),
        web.delete(PARTICIPANT_PATH, leave),
        web.static("/static", STATIC),
    ])
    from .controls import add_routes

    add_routes(app, rooms, key, MAX_BODY)
    return app
