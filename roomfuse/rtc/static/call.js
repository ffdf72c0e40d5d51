// One participant's call: the camera and microphone, the peer connection to the room,
// and staying in the room when the server goes away and comes back.
"use strict";

const MIC = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function cameraConstraints(fps) {
  return { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: fps } };
}

// The camera is needed (the room is a picture of everyone); the microphone is not: a
// participant without one, or who refused it, still joins and hears the room.
async function openMedia(fps) {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(fps), audio: MIC });
    return { stream, micError: null };
  } catch (first) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(fps) });
    return { stream, micError: first };
  }
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

// Delays between attempts to get back in: 0.5 s doubling to 2 s, each spread by +-20 %
// so that everyone dropped by one server restart does not return at the same instant.
// An attempt costs the server one small request until it is back, so the cap is low:
// a restarted server has everyone back within about 2 s of its return.
function backoff(attempt) {
  return Math.min(2000, 500 * 2 ** attempt) * (0.8 + 0.4 * Math.random());
}

class Call {
  // events: onTrack(stream), onState(text), onLost(reason), onBack(), onError(message)
  constructor(roomPath, key, config, events) {
    Object.assign(this, { roomPath, key, config, events });
    this.stream = null;       // camera (+ microphone) MediaStream
    this.camera = null;       // the camera's track, null while it is off
    this.mic = null;          // the microphone's track, null without one
    this.micError = null;
    this.muted = false;
    this.cameraOn = true;
    this.pc = null;
    this.me = null;           // participant id while in the room
    this.token = null;        // proves we are `me` to the state and settings requests
    this.wanted = false;      // the user wants to be in the room (joined, not left)
    this.lost = null;         // { reason, attempt, timer } while getting back in
    this.joinedAt = 0;
    this.unlisted = 0;        // polls in a row that did not list us
  }

  async openDevices() {
    const { stream, micError } = await openMedia(this.config.fps);
    this.stream = stream;
    this.camera = stream.getVideoTracks()[0];
    this.watchCamera();
    this.mic = stream.getAudioTracks()[0] || null;
    this.micError = micError;
  }

  // A camera unplugged, or its permission withdrawn, ends its track: say so and carry
  // on with the camera off (the room keeps the seat) rather than send nothing unnoticed.
  watchCamera() {
    const track = this.camera;
    track.addEventListener("ended", async () => {
      if (track !== this.camera || !this.cameraOn) return;
      await this.setCamera(false).catch(() => {});
      this.events.onError("Your camera stopped (unplugged, or its permission withdrawn): Camera on tries again.");
    });
  }

  async join(name) {
    this.name = name;
    this.wanted = true;
    await this.connect();
  }

  async connect() {
    const conn = this.pc = new RTCPeerConnection({ iceServers: this.config.iceServers });
    conn.addEventListener("connectionstatechange", () => this.onConnectionState(conn));
    conn.addEventListener("track", (ev) => {
      if (conn === this.pc) this.events.onTrack(ev.streams[0] || new MediaStream([ev.track]), ev.track);
    });
    const video = conn.addTransceiver(this.cameraOn ? this.camera : "video",
                                      { direction: "sendrecv", streams: [this.stream] });
    this.videoSender = video.sender;
    if (this.mic) conn.addTransceiver(this.mic, { direction: "sendrecv", streams: [this.stream] });
    else conn.addTransceiver("audio", { direction: "recvonly" });  // no microphone: still hear the room
    await conn.setLocalDescription(await conn.createOffer());
    await gatheringComplete(conn, 5000);
    const answer = await api("POST", `${this.roomPath}/offer`, this.key,
                             { sdp: conn.localDescription.sdp, type: "offer", name: this.name, key: this.key });
    if (this.pc !== conn) return;  // left while the request was in flight
    this.me = answer.participant;
    this.token = answer.token;
    this.joinedAt = performance.now();
    this.unlisted = 0;
    await conn.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    if (this.cameraOn) await keepResolution(video.sender);
    // A room we come back to does not know what we had switched off.
    if (this.muted || !this.cameraOn) await this.sendState({ muted: this.muted, camera: this.cameraOn });
  }

  onConnectionState(conn) {
    if (conn !== this.pc) return;
    this.events.onState(conn.connectionState);
    if (["failed", "closed"].includes(conn.connectionState)) this.connectionLost("the connection to the room dropped");
  }

  // Told by the page's poll of the room listing.
  noticeListing(info, reachable) {
    if (!this.wanted || this.lost) return;
    if (!reachable) return this.connectionLost("the server does not answer");
    if (!this.me || performance.now() - this.joinedAt < 4000) return;
    const listed = info.participants.some((p) => p.id === this.me);
    this.unlisted = listed ? 0 : this.unlisted + 1;
    if (this.unlisted >= 2) this.connectionLost("the room no longer has us (the server restarted?)");
  }

  // Said once; then try again with growing delays until back in or the user leaves.
  connectionLost(reason) {
    if (!this.wanted || this.lost) return;
    this.hangUp();
    this.lost = { reason, attempt: 0, timer: null };
    this.events.onLost(reason);
    this.retryLater();
  }

  retryLater() {
    const delay = backoff(this.lost.attempt);
    this.events.onState(`reconnecting in ${(delay / 1000).toFixed(1)} s`);
    this.lost.timer = setTimeout(() => this.retry(), delay);
  }

  async retry() {
    if (!this.lost || !this.wanted) return;
    this.lost.attempt += 1;
    this.events.onState(`reconnecting (attempt ${this.lost.attempt})`);
    try {
      await api("GET", "/config", this.key);  // the server is back, and the key still opens it
      await this.connect();
      this.lost = null;
      this.events.onBack();
    } catch (e) {
      this.hangUp();
      if (e.status === 403) {  // a new key: only the user can fix that
        this.wanted = false;
        this.lost = null;
        return this.events.onError(`The room's key changed while you were away: ${e.message}`);
      }
      if (this.lost && this.wanted) this.retryLater();
    }
  }

  hangUp() {
    if (this.pc) { this.pc.close(); this.pc = null; }
    this.me = null;
    this.token = null;
  }

  async leave() {
    const id = this.me;
    this.wanted = false;
    if (this.lost) { clearTimeout(this.lost.timer); this.lost = null; }
    this.hangUp();
    if (!id) return;
    try {
      await api("DELETE", `${this.roomPath}/participants/${id}`, this.key);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
  }

  async sendState(state) {
    if (!this.me) return null;
    return api("POST", `${this.roomPath}/participants/${this.me}/state`, this.key, { token: this.token, ...state });
  }

  async setMuted(muted) {
    this.muted = muted;
    if (this.mic) this.mic.enabled = !muted;  // a muted track sends silence
    await this.sendState({ muted });
  }

  // Off: no frames at all, and the camera released; the room shows our room without us.
  async setCamera(on) {
    if (on === this.cameraOn) return;
    if (!on) {
      this.cameraOn = false;
      await this.sendState({ camera: false });  // first, so the room does not take the silence for a stall
      if (this.videoSender) await this.videoSender.replaceTrack(null);
      if (this.camera) { this.camera.stop(); this.stream.removeTrack(this.camera); this.camera = null; }
      return;
    }
    const fresh = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(this.config.fps) });
    this.camera = fresh.getVideoTracks()[0];
    this.watchCamera();
    this.stream.addTrack(this.camera);
    this.cameraOn = true;
    if (this.videoSender) {
      await this.videoSender.replaceTrack(this.camera);
      await keepResolution(this.videoSender);
    }
    await this.sendState({ camera: true });
  }

  async configure(changes) {
    return api("POST", `${this.roomPath}/settings`, this.key, { participant: this.me, token: this.token, ...changes });
  }
}
