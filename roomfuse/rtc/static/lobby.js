// The landing page: pick a room by name (or make one up) and go to it.
"use strict";

const form = document.getElementById("lobby");
const roomInput = document.getElementById("room");
const keyInput = document.getElementById("key");
const errorBox = document.getElementById("error");
const occupancy = document.getElementById("occupancy");

keyInput.value = roomKey();
if (keyInput.value) keyInput.closest("form").querySelector("label[for=key]").textContent = "Room key (from your link)";

function go(room) {
  const key = keyInput.value.trim();
  if (!ROOM_NAME.test(room)) { errorBox.textContent = "Room names are 1-64 letters, digits, '-' or '_'."; return; }
  if (!key) { errorBox.textContent = "The room key is missing: use the link the host printed."; return; }
  setRoomKey(key);
  location.href = `/r/${encodeURIComponent(room)}#key=${encodeURIComponent(key)}`;
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); go(roomInput.value.trim()); });
document.getElementById("create").addEventListener("click", () => go(randomRoomName()));

// Say how many people are already in the room typed, and check the key on the way.
let pending = null;
roomInput.addEventListener("input", () => {
  clearTimeout(pending);
  occupancy.textContent = "";
  pending = setTimeout(async () => {
    const room = roomInput.value.trim();
    const key = keyInput.value.trim();
    if (!ROOM_NAME.test(room) || !key) return;
    try {
      const info = await api("GET", `/rooms/${encodeURIComponent(room)}`, key);
      const n = info.participants.length;
      occupancy.textContent = n ? `${n} inside` : "empty";
      errorBox.textContent = "";
    } catch (e) {
      errorBox.textContent = e.message;
    }
  }, 300);
});
