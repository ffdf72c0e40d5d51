// Shared by the roomfuse pages: the room key and the signalling requests.
"use strict";

const KEY_HEADER = "X-Roomfuse-Key";  // roomfuse/rtc/signalling.py: KEY_HEADER

// The key arrives in the URL fragment (#key=...), which browsers never send to a server
// or put in a Referer. It is kept for this tab's session so moving between the lobby
// and a room does not ask again.
function roomKey() {
  const frag = new URLSearchParams(location.hash.slice(1));
  const key = frag.get("key") || sessionStorage.getItem("roomfuse-key") || "";
  if (key) sessionStorage.setItem("roomfuse-key", key);
  return key;
}

function setRoomKey(key) {
  sessionStorage.setItem("roomfuse-key", key);
}

// fetch() that returns parsed JSON or throws an Error carrying the server's one-line reason.
async function api(method, path, key, body, extra) {
  const init = Object.assign({ method, headers: { [KEY_HEADER]: key } }, extra || {});
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON: reported below */ }
  if (!resp.ok) {
    const why = data && data.error ? data.error : `${resp.status} ${resp.statusText}`;
    const err = new Error(why);
    err.status = resp.status;
    throw err;
  }
  return data;
}

const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

function randomRoomName() {
  const words = ["oak", "fern", "cedar", "maple", "willow", "birch", "aspen", "hazel", "rowan", "alder"];
  const w = words[Math.floor(Math.random() * words.length)];
  return `${w}-${Math.random().toString(36).slice(2, 6)}`;
}
