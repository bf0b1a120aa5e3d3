// The room page: join a room by id, see the member count, send and receive messages (merged batches are
// unpacked by the RoomClient).

import { api, webLogin, whoAmI } from "./api.js";
import { RoomClient } from "./room-client.js";

const token = webLogin.token;
let client = null;

function setState(state) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.textContent = state;
  const on = state === "online";
  document.getElementById("room-text").disabled = !on;
  document.getElementById("room-send").disabled = !on;
}

function show(bytes) {
  let text = new TextDecoder().decode(bytes);
  let from = "";
  try {
    const m = JSON.parse(text);
    if (m && typeof m.text === "string") {
      text = m.text;
      from = m.from ? `User ${m.from}` : "";
    }
  } catch {
    // not our JSON: show the bytes as text
  }
  const li = document.createElement("li");
  li.className = "msg in";
  li.innerHTML = `<span class="from"></span> <span class="text"></span>`;
  li.querySelector(".from").textContent = from;
  li.querySelector(".text").textContent = text;
  const list = document.getElementById("room-messages");
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

async function join(roomId) {
  if (client) client.stop();
  document.getElementById("room-messages").replaceChildren();
  document.getElementById("room-error").textContent = "";
  const route = await api("/route", { token });
  if (route.code !== 0) {
    document.getElementById("room-error").textContent = `Cannot reach the server: ${route.message}`;
    return;
  }
  document.getElementById("room-name").textContent = roomId;
  client = new RoomClient({ url: route.result.room_url, token, roomId });
  client.addEventListener("state", (ev) => setState(ev.detail.state));
  client.addEventListener("message", (ev) => show(ev.detail.bytes));
  client.addEventListener("members", (ev) => {
    const el = document.getElementById("members");
    el.textContent = String(ev.detail.count);
    el.dataset.count = String(ev.detail.count);
  });
  client.addEventListener("error", (ev) => {
    document.getElementById("room-error").textContent = `Room error ${ev.detail.code}: ${ev.detail.msg}`;
  });
  await client.start();
  history.replaceState(null, "", `?room=${encodeURIComponent(roomId)}`);
}

async function main() {
  const who = await whoAmI();
  if (who === null) return;
  const me = who.userId;
  document.getElementById("me").textContent = `User ${me}`;
  document.getElementById("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = document.getElementById("room-id").value.trim();
    if (id) join(id);
  });
  document.getElementById("room-send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("room-text");
    if (!input.value.trim() || !client) return;
    client.send(new TextEncoder().encode(JSON.stringify({ from: me, text: input.value })));
    input.value = "";
  });
  const fromUrl = new URLSearchParams(location.search).get("room");
  if (fromUrl) {
    document.getElementById("room-id").value = fromUrl;
    join(fromUrl);
  }
}

main();
