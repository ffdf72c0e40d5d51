// The room page: camera preview, join/leave, the room's composite, who is in, live stats.
"use strict";

const $ = (id) => document.getElementById(id);
const roomName = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const roomPath = `/rooms/${encodeURIComponent(roomName)}`;
const key = roomKey();

let config = null;     // GET /config: iceServers, fps, canvas
let camera = null;     // MediaStream from getUserMedia
let pc = null;         // RTCPeerConnection while joined
let me = null;         // our participant id while joined
let frames = 0;        // composite frames presented (requestVideoFrameCallback)
let last = { frames: 0, t: performance.now() };

// What tests and curious users can read: window.roomfuse.frames etc.
window.roomfuse = { get frames() { return frames; }, get participant() { return me; },
                    get state() { return pc ? pc.connectionState : "idle"; } };

function setStatus(text) { $("status").textContent = text; }
function showError(text) { $("error").textContent = text; }

async function init() {
  $("room-name").textContent = roomName;
  $("name").value = localStorage.getItem("roomfuse-name") || "";
  if (!ROOM_NAME.test(roomName)) return showError("This room name is not valid: use 1-64 letters, digits, '-' or '_'.");
  if (!key) return showError("The room key is missing: open the link the host printed (it ends in #key=...).");
  try {
    config = await api("GET", "/config", key);
  } catch (e) {
    return showError(`Cannot use this room: ${e.message}`);
  }
  try {
    camera = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: config.fps } },
    });
  } catch (e) {
    return showError(`Camera unavailable (${e.name}): ${e.message}`);
  }
  $("preview").srcObject = camera;
  setStatus("camera ready");
  $("join").disabled = false;
  countFrames();
  poll();
  setInterval(poll, 2000);
  setInterval(stats, 1000);
}

// aiortc answers only complete offers (no trickle ICE): wait until every candidate is in.
function gatheringComplete(conn, timeoutMs) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { conn.removeEventListener("icegatheringstatechange", check); clearTimeout(timer); resolve(); };
    const check = () => { if (conn.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);  // a slow STUN server must not block joining
    conn.addEventListener("icegatheringstatechange", check);
  });
}

async function join() {
  $("join").disabled = true;
  showError("");
  setStatus("connecting");
  const name = $("name").value.trim() || "guest";
  localStorage.setItem("roomfuse-name", name);
  const conn = pc = new RTCPeerConnection({ iceServers: config.iceServers });
  conn.addEventListener("connectionstatechange", () => onConnectionState(conn));
  conn.addEventListener("track", (ev) => {
    $("composite").srcObject = ev.streams[0] || new MediaStream([ev.track]);
  });
  const transceiver = conn.addTransceiver(camera.getVideoTracks()[0], { direction: "sendrecv", streams: [camera] });
  try {
    await conn.setLocalDescription(await conn.createOffer());
    await gatheringComplete(conn, 5000);
    const answer = await api("POST", `${roomPath}/offer`, key,
                             { sdp: conn.localDescription.sdp, type: "offer", name, key });
    if (pc !== conn) return;  // left while the request was in flight
    me = answer.participant;
    await conn.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await keepResolution(transceiver.sender);
    $("leave").disabled = false;
    poll();
  } catch (e) {
    showError(`Could not join: ${e.message}`);
    disconnect("camera ready");
  }
}

// Under bandwidth pressure keep the camera's resolution and lower the frame rate: the
// server cuts people out of the picture, and a blurry matte edge shows in the room.
async function keepResolution(sender) {
  try {
    const params = sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await sender.setParameters(params);
  } catch (e) {
    console.warn("degradationPreference not applied:", e);
  }
}

function onConnectionState(conn) {
  if (conn !== pc) return;
  setStatus(conn.connectionState);
  if (conn.connectionState === "failed" || conn.connectionState === "closed") {
    showError("The connection to the room was lost. Join again to come back.");
    disconnect("disconnected");
  }
}

function disconnect(status) {
  if (pc) { pc.close(); pc = null; }
  me = null;
  $("composite").srcObject = null;
  $("join").disabled = !camera;
  $("leave").disabled = true;
  setStatus(status);
}

async function leave() {
  const id = me;
  $("leave").disabled = true;
  disconnect("left");
  if (!id) return;
  try {
    await api("DELETE", `${roomPath}/participants/${id}`, key);
  } catch (e) {
    if (e.status !== 404) showError(`Leaving: ${e.message}`);
  }
  poll();
}

// Closing the tab says goodbye too (keepalive lets the request outlive the page).
window.addEventListener("pagehide", () => {
  if (me) fetch(`${roomPath}/participants/${me}`, { method: "DELETE", headers: { [KEY_HEADER]: key }, keepalive: true });
});

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
  let info;
  try {
    info = await api("GET", roomPath, key);
  } catch (e) {
    return showError(`Room list: ${e.message}`);
  }
  const list = $("people");
  list.replaceChildren();
  const mine = info.participants.find((p) => p.id === me);
  // From our frame's arrival at the server to the first composite showing it: with the
  // network round trip, most of what a movement takes to come back.
  $("stat-delay").textContent = mine && mine.delay_ms !== null ? `${mine.delay_ms.toFixed(0)} ms` : "-";
  for (const p of info.participants) {
    const li = document.createElement("li");
    if (p.id === me) li.className = "me";
    const who = document.createElement("span");
    who.textContent = p.id === me ? `${p.name} (you)` : p.name;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = p.state === "live" ? `${p.fps.toFixed(0)} fps` : p.state;
    li.append(who, state);
    list.append(li);
  }
  if (!info.participants.length) list.innerHTML = '<li class="muted">nobody yet</li>';
}

async function stats() {
  const video = $("composite");
  const now = performance.now();
  let decoded = null, rtt = null, send = null;
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

$("join").addEventListener("click", join);
$("leave").addEventListener("click", leave);
init();
