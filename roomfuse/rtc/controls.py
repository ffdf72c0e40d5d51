"""What people change in a room while it runs, and the requests that change it.

    POST /rooms/{room}/participants/{id}/state  {"token", "muted"?, "camera"?}
                                                -> {"muted", "camera"}
    POST /rooms/{room}/settings                 {"participant", "token", "layout"?, "names"?,
                                                 "order"?, "open"?}
                                                -> {"host", "layout", "names", "order", "open"}

Both carry the room key in the ``X-Roomfuse-Key`` header, like every other request, and
the participant's ``token`` from the answer to its offer: participant ids are listed to
everyone in the room, the token only to the participant, so nobody can mute someone else
or act as the host. The host is whoever has been in the room longest; only the host may
change the layout, the seat order and the names, unless the host has opened that to
everyone (``open``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field

from .signalling import KEY_HEADER, PARTICIPANT_ID, SignallingError, check_key, check_room_name

log = logging.getLogger(__name__)

STATE_PATH = "/rooms/{room}/participants/{participant}/state"
SETTINGS_PATH = "/rooms/{room}/settings"
FIELD_TOKEN = "token"
LAYOUTS = ("auto", "row", "grid")


@dataclass
class RoomControls:
    """A room's live settings."""

    layout: str = "auto"  # "auto", "row" or "grid"
    names: bool = True  # names drawn under people
    order: list = field(default_factory=list)  # participant ids seated first, in this order
    open: bool = False  # everyone, not only the host, may change the above


class Tokens:
    """A participant's proof of being that participant: an HMAC of room and id under a
    secret of this server process (a restart makes every old token worthless, as it
    does every old seat)."""

    def __init__(self):
        self._secret = secrets.token_bytes(32)

    def token(self, room: str, pid: str) -> str:
        return hmac.new(self._secret, f"{room}/{pid}".encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, room: str, pid: str, given) -> None:
        if not isinstance(given, str) or not given:
            raise SignallingError(f"field '{FIELD_TOKEN}' is missing: send the token from the join's answer", 403)
        if not hmac.compare_digest(given.encode(), self.token(room, pid).encode()):
            raise SignallingError(f"field '{FIELD_TOKEN}' does not belong to participant {pid}", 403)


# ---- the room's side ------------------------------------------------------------------

def set_state(room, p, muted: bool | None = None, camera: bool | None = None) -> dict:
    if muted is not None and muted != p.muted:
        p.muted = muted
        if p.voice is not None:
            p.voice.muted = muted
        log.info("room %s: %s (%s) %s", room.name, p.name, p.id, "muted" if muted else "unmuted")
    if camera is not None and camera != p.camera:
        p.camera = camera
        if camera and p.slot.frame is not None:
            # Frames resume from now: the time it was off is not a stall.
            p.slot.arrived = room.clock()
        log.info("room %s: %s (%s) turned the camera %s", room.name, p.name, p.id, "on" if camera else "off")
    return {"muted": p.muted, "camera": p.camera}


async def configure(room, p, layout: str | None = None, names: bool | None = None,
                    order: list | None = None, open: bool | None = None) -> dict:
    host = room.host
    who = host.name if host is not None else "nobody"
    if open is not None and p is not host:
        raise SignallingError(f"only the room's host ({who}) can let everyone change the layout", 403)
    if (layout, names, order) != (None, None, None) and p is not host and not room.controls.open:
        raise SignallingError(f"only the room's host ({who}) can change the layout", 403)
    c = room.controls
    if order is not None:
        unknown = [x for x in order if x not in room.participants]
        if unknown:
            raise SignallingError(f"field 'order': no participant {str(unknown[0])[:16]} in room {room.name}")
    if layout is not None and layout != c.layout:
        await room.compositor.set_layout(layout)
        c.layout = layout
    if order is not None:
        c.order = list(dict.fromkeys(order))
        room.compositor.seat_mode = "given" if c.order else room.settings.pipeline.layout.order
    if names is not None:
        c.names = names
    if open is not None:
        c.open = open
    log.info("room %s: %s set layout %s, names %s, seats %s, open %s", room.name, p.name, c.layout,
             "on" if c.names else "off", "as given" if c.order else "as joined", c.open)
    return describe(room)


def describe(room) -> dict:
    host = room.host
    c = room.controls
    return {"host": host.id if host is not None else None, "layout": c.layout, "names": c.names,
            "order": [p.id for p in room.seated()] if c.order else [], "open": c.open}


# ---- the requests ---------------------------------------------------------------------

def _object(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignallingError(f"request body is not JSON ({str(e).splitlines()[0][:80]})") from None
    if not isinstance(body, dict):
        raise SignallingError("request body must be a JSON object")
    return body


def _flag(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise SignallingError(f"field '{name}' must be true or false, got {json.dumps(value)[:20]}")
    return value


def parse_state(raw: bytes) -> tuple[str, dict]:
    """(token, {"muted", "camera"} given) from a state request."""
    body = _object(raw)
    state = {k: _flag(body, k) for k in ("muted", "camera")}
    return body.get(FIELD_TOKEN), {k: v for k, v in state.items() if v is not None}


def parse_settings(raw: bytes) -> tuple[str, str, dict]:
    """(participant, token, changes) from a settings request."""
    body = _object(raw)
    pid = body.get("participant")
    if not isinstance(pid, str) or not PARTICIPANT_ID.fullmatch(pid):
        raise SignallingError("field 'participant' must be the participant id from the join's answer")
    changes = {k: _flag(body, k) for k in ("names", "open")}
    layout = body.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise SignallingError(f"field 'layout' must be one of {', '.join(LAYOUTS)}, got {json.dumps(layout)[:20]}")
    order = body.get("order")
    if order is not None and not (isinstance(order, list) and len(order) <= 64
                                  and all(isinstance(x, str) and PARTICIPANT_ID.fullmatch(x) for x in order)):
        raise SignallingError("field 'order' must be a list of participant ids")
    changes.update(layout=layout, order=order)
    return pid, body.get(FIELD_TOKEN), {k: v for k, v in changes.items() if v is not None}


def member(rooms, room: str, pid: str, token):
    """(room, participant) for ``pid`` in ``room`` of ``rooms`` (a ``room.Rooms``), once
    ``token`` proves the caller is that participant."""
    r = rooms.rooms.get(room)
    if r is None or pid not in r.participants:
        raise SignallingError(f"no participant {pid} in room {room}", 404)
    rooms.tokens.check(room, pid, token)
    return r, r.participants[pid]


def add_routes(app, rooms, key: str, max_body: int) -> None:
    """The two routes above, on ``app`` (made by ``signalling.make_app``)."""
    from aiohttp import web

    async def body_of(request) -> bytes:
        check_key(request.headers.get(KEY_HEADER), key)
        if request.content_length is not None and request.content_length > max_body:
            raise SignallingError(f"request body of {request.content_length} bytes is over the "
                                  f"{max_body} byte limit", 413)
        return await request.read()

    async def state(request):
        raw = await body_of(request)
        room = check_room_name(request.match_info["room"])
        pid = request.match_info["participant"]
        if not PARTICIPANT_ID.fullmatch(pid):
            raise SignallingError(f"participant id {pid[:40]!r} is malformed")
        token, changes = parse_state(raw)
        return web.json_response(set_state(*member(rooms, room, pid, token), **changes))

    async def settings(request):
        raw = await body_of(request)
        room = check_room_name(request.match_info["room"])
        pid, token, changes = parse_settings(raw)
        return web.json_response(await configure(*member(rooms, room, pid, token), **changes))

    app.add_routes([web.post(STATE_PATH, state), web.post(SETTINGS_PATH, settings)])
