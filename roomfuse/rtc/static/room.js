// The room page: the room's picture and sound, the call's buttons, who is in, how the
// room is arranged, live stats. The call itself (media, connection, reconnects) is call.js.
"use strict";

const $ = (id) => document.getElementById(id);
const roomName = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const roomPath = `/rooms/${encodeURIComponent(roomName)}`;
const key = roomKey();
const inviteLink = `${location.origin}/r/${encodeURIComponent(roomName)}#key=${encodeURIComponent(key)}`;

let call = null;       // Call (call.js) once the room's settings are in
let info = null;       // the newest room listing
let frames = 0;        // composite frames presented (requestVideoFrameCallback)
let last = { frames: 0, t: performance.now() };
let polling = false;

// What tests and curious users can read: window.roomfuse.frames etc.
window.roomfuse = {
  get frames() { return frames; },
  get participant() { return call && call.me; },
  get state() { return call && call.pc ? call.pc.connectionState : (call && call.lost ? "reconnecting" : "idle"); },
  get reconnecting() { return !!(call && call.lost); },
  get microphone() { return !!(call && call.mic); },
  invite: inviteLink,
};

function setStatus(text) { $("status").textContent = text; }
function showError(text) { $("error").textContent = text; }

async function init() {
  $("room-name").textContent = roomName;
  $("name").value = localStorage.getItem("roomfuse-name") || "";
  $("invite-link").value = inviteLink;
  if (!ROOM_NAME.test(roomName)) return showError("This room name is not valid: use 1-64 letters, digits, '-' or '_'.");
  if (!key) return showError("The room key is missing: open the link the host printed (it ends in #key=...).");
  let config;
  try {
    config = await api("GET", "/config", key);
  } catch (e) {
    return showError(`Cannot use this room: ${e.message}`);
  }
  call = new Call(roomPath, key, config, {
    onTrack: showRoom,
    onState: setStatus,
    onLost: (reason) => { showError(`Connection lost: ${reason}. Getting back in by itself...`); render(); },
    onBack: () => { showError(""); setStatus("back in the room"); render(); poll(); },
    onError: (message) => { showError(message); render(); },
  });
  try {
    await call.openDevices();
  } catch (e) {
    return showError(`Camera unavailable (${e.name}): ${e.message}`);
  }
  $("preview").srcObject = call.stream;
  setStatus(call.mic ? "camera and microphone ready" : "camera ready");
  if (!call.mic) {
    $("mic-note").textContent = `No microphone (${call.micError ? call.micError.name : "none found"}): `
      + "you hear the room but are not heard.";
    $("mic-note").hidden = false;
  }
  render();
  countFrames();
  poll();
  setInterval(poll, 2000);
  setInterval(stats, 1000);
}

function showRoom(stream, track) {
  if (track.kind === "video") $("composite").srcObject = stream;
  if (track.kind === "audio") {
    const audio = $("room-audio");
    audio.srcObject = new MediaStream([track]);
    audio.play().catch(() => showError("Click anywhere to hear the room (the browser holds back sound until then)."));
  }
}
document.addEventListener("click", () => { const a = $("room-audio"); if (a.srcObject && a.paused) a.play().catch(() => {}); });

// Buttons follow the call's state.
function render() {
  const inRoom = !!(call && call.wanted);
  $("join").disabled = !call || !call.stream || inRoom;
  $("leave").disabled = !inRoom;
  $("mute").disabled = !call || !call.mic;
  $("mute").textContent = call && call.muted ? "Unmute" : "Mute";
  $("mute").setAttribute("aria-pressed", String(!!(call && call.muted)));
  $("camera").disabled = !call || !call.stream;
  $("camera").textContent = call && !call.cameraOn ? "Camera on" : "Camera off";
  $("camera").setAttribute("aria-pressed", String(!!(call && !call.cameraOn)));
}

async function join() {
  showError("");
  setStatus("connecting");
  const name = $("name").value.trim() || "guest";
  localStorage.setItem("roomfuse-name", name);
  $("join").disabled = true;
  try {
    await call.join(name);
    setStatus("joined");
  } catch (e) {
    call.wanted = false;
    call.hangUp();
    showError(`Could not join: ${e.message}`);
    setStatus("camera ready");
  }
  render();
  poll();
}

async function leave() {
  $("leave").disabled = true;
  $("composite").srcObject = null;
  $("room-audio").srcObject = null;
  try {
    await call.leave();
  } catch (e) {
    showError(`Leaving: ${e.message}`);
  }
  setStatus("left");
  render();
  poll();
}

async function toggle(what) {
  try {
    if (what === "mute") {
      const done = call.setMuted(!call.muted);  // silent at once; the room is told after
      render();
      await done;
    } else {
      await call.setCamera(!call.cameraOn);
      $("preview").srcObject = call.cameraOn ? call.stream : null;
    }
  } catch (e) {
    showError(`${what === "mute" ? "Muting" : "Camera"}: ${e.message}`);
  }
  render();
  poll();
}

async function copyInvite() {
  const button = $("invite");
  try {
    await navigator.clipboard.writeText(inviteLink);
  } catch (e) {
    // No clipboard API outside https and localhost: select the link for Ctrl-C instead.
    $("invite-link").select();
    if (!document.execCommand || !document.execCommand("copy")) {
      button.textContent = "Press Ctrl-C";
      return;
    }
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy invite link"; }, 2000);
}

function fullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else $("screen").requestFullscreen().catch((e) => showError(`Fullscreen: ${e.message}`));
}

function countFrames() {
  const video = $("composite");
  if (!video.requestVideoFrameCallback) return;  // stats() falls back to framesDecoded
  const onFrame = () => {
    frames += 1;
    video.dataset.frames = String(frames);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

async function poll() {
  if (polling || !call) return;
  polling = true;
  try {
    info = await api("GET", roomPath, key);
  } catch (e) {
    // In the room, no answer at all means the server is gone: the call says so (once)
    // and gets back in. Otherwise say why the list is stale, in the status line.
    if (call.wanted && e.status === undefined) call.noticeListing(null, false);
    else if (!call.lost) setStatus(`room list unavailable (${e.message})`);
    return;
  } finally {
    polling = false;
  }
  call.noticeListing(info, true);
  showPeople();
  showSettings();
}

function canArrange() {
  return !!(info && call && call.me && (info.host === call.me || info.open));
}

function showPeople() {
  const list = $("people");
  list.replaceChildren();
  const me = call.me;
  const mine = info.participants.find((p) => p.id === me);
  // From our frame's arrival at the server to the first composite showing it: with the
  // network round trip, most of what a movement takes to come back.
  $("stat-delay").textContent = mine && mine.delay_ms !== null ? `${mine.delay_ms.toFixed(0)} ms` : "-";
  const seats = info.participants.map((p) => p.id);
  if (info.order && info.order.length) seats.sort((a, b) => info.order.indexOf(a) - info.order.indexOf(b));
  const arrange = canArrange();
  seats.forEach((id, i) => {
    const p = info.participants.find((q) => q.id === id);
    const li = document.createElement("li");
    li.dataset.id = p.id;
    if (p.id === me) li.className = "me";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = (p.id === me ? `${p.name} (you)` : p.name) + (p.id === info.host ? " \u2605" : "");
    const state = document.createElement("span");
    state.className = "state";
    const marks = [];
    if (!p.audio) marks.push("no mic");
    else if (p.muted) marks.push("muted");
    if (!p.camera) marks.push("camera off");
    marks.push(p.state === "live" ? `${p.fps.toFixed(0)} fps` : p.state);
    state.textContent = marks.join(" \u00b7 ");
    li.append(who, state);
    if (arrange && seats.length > 1) {
      for (const [label, step] of [["\u2191", -1], ["\u2193", 1]]) {
        const b = document.createElement("button");
        b.className = "small secondary seat";
        b.textContent = label;
        b.title = step < 0 ? "seat further left" : "seat further right";
        b.disabled = i + step < 0 || i + step >= seats.length;
        b.addEventListener("click", () => {
          const order = seats.slice();
          [order[i], order[i + step]] = [order[i + step], order[i]];
          arrangeRoom({ order });
        });
        li.append(b);
      }
    }
    list.append(li);
  });
  if (!info.participants.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "nobody yet";
    list.append(li);
  }
}

function showSettings() {
  const box = $("room-settings");
  box.hidden = !canArrange();
  if (box.hidden) return;
  if (document.activeElement !== $("layout")) $("layout").value = info.layout;
  $("names").checked = info.names;
  $("open-controls").checked = info.open;
  $("open-row").hidden = info.host !== call.me;
  const custom = info.order && info.order.length;
  $("seats").textContent = custom ? "seats as arranged" : "seats as people joined";
  $("seats-reset").hidden = !custom;
}

async function arrangeRoom(changes) {
  try {
    await call.configure(changes);
  } catch (e) {
    showError(`Arranging the room: ${e.message}`);
  }
  poll();
}

async function stats() {
  const video = $("composite");
  const now = performance.now();
  let decoded = null, rtt = null, send = null;
  const pc = call && call.pc;
  if (pc) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
      if (s.type === "remote-inbound-rtp" && rtt === null && s.roundTripTime !== undefined) rtt = s.roundTripTime;
      if (s.type === "inbound-rtp" && s.kind === "video") decoded = s.framesDecoded;
      if (s.type === "outbound-rtp" && s.kind === "video" && s.frameWidth)
        send = `${s.frameWidth}x${s.frameHeight} @ ${(s.framesPerSecond || 0).toFixed(0)} fps`;
    });
  }
  if (!video.requestVideoFrameCallback && decoded !== null) frames = decoded;
  const fps = (frames - last.frames) * 1000 / Math.max(1, now - last.t);
  last = { frames, t: now };
  $("stat-fps").textContent = pc ? `${fps.toFixed(1)} fps` : "-";
  $("stat-res").textContent = video.videoWidth ? `${video.videoWidth}x${video.videoHeight}` : "-";
  $("stat-rtt").textContent = rtt !== null ? `${(rtt * 1000).toFixed(0)} ms` : "-";
  $("stat-send").textContent = send || "-";
  $("stat-frames").textContent = String(frames);
}

// Closing the tab says goodbye too (keepalive lets the request outlive the page).
window.addEventListener("pagehide", () => {
  if (call && call.me) fetch(`${roomPath}/participants/${call.me}`, { method: "DELETE", headers: { [KEY_HEADER]: key }, keepalive: true });
});

$("join").addEventListener("click", join);
$("leave").addEventListener("click", leave);
$("mute").addEventListener("click", () => toggle("mute"));
$("camera").addEventListener("click", () => toggle("camera"));
$("invite").addEventListener("click", copyInvite);
$("fullscreen").addEventListener("click", fullscreen);
$("layout").addEventListener("change", () => arrangeRoom({ layout: $("layout").value }));
$("names").addEventListener("change", () => arrangeRoom({ names: $("names").checked }));
$("open-controls").addEventListener("change", () => arrangeRoom({ open: $("open-controls").checked }));
$("seats-reset").addEventListener("click", () => arrangeRoom({ order: [] }));
init();
