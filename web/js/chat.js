// The chat page: friends with online dots, one conversation at a time with its history, sending with a
// pending -> sent state, live incoming messages, and everything missed while offline fetched on reconnect.

import { api, webLogin, whoAmI } from "./api.js";
import { ChatClient } from "./chat-client.js";

const ONLINE_REFRESH_MS = 10000;
const me = webLogin.userId;
const token = webLogin.token;
const conversations = new Map(); // peer uid -> Map(key -> message)
const loaded = new Set(); // peers whose history was fetched
let peer = 0;
let client = null;

/** Both sides of a message have the same (from, id): our key for "shown once". */
const keyOf = (p) => `${p.from}:${p.id}`;

function conversation(uid) {
  if (!conversations.has(uid)) conversations.set(uid, new Map());
  return conversations.get(uid);
}

function friendItem(uid) {
  return document.querySelector(`#friends li[data-uid="${uid}"]`);
}

function addFriend(uid, online) {
  let li = friendItem(uid);
  if (!li) {
    li = document.createElement("li");
    li.dataset.uid = uid;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "friend";
    button.innerHTML = `<span class="dot" aria-hidden="true"></span><span class="name"></span><span class="unread"></span>`;
    button.querySelector(".name").textContent = `User ${uid}`;
    button.addEventListener("click", () => openConversation(uid));
    li.append(button);
    document.getElementById("friends").append(li);
  }
  setOnline(uid, online);
}

function setOnline(uid, online) {
  const li = friendItem(uid);
  if (!li) return;
  li.dataset.online = online ? "true" : "false";
  li.querySelector(".friend").setAttribute("aria-label", `User ${uid}, ${online ? "online" : "offline"}`);
}

function render(msg) {
  const list = document.getElementById("messages");
  let li = list.querySelector(`li[data-key="${CSS.escape(msg.key)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = msg.key;
    li.innerHTML = `<p class="text"></p><span class="meta"></span>`;
    // Keep time order; late history fills in before newer messages.
    const after = [...list.children].find((c) => Number(c.dataset.ts) > msg.ts);
    list.insertBefore(li, after || null);
  }
  li.className = `msg ${msg.from === me ? "out" : "in"}`;
  li.dataset.from = msg.from;
  li.dataset.ts = msg.ts;
  li.dataset.state = msg.state;
  li.querySelector(".text").textContent = msg.text;
  const when = new Date(msg.ts).toLocaleTimeString();
  const stateText = { pending: "sending…", sent: "sent", failed: `not sent: ${msg.reason}` }[msg.state] ?? "";
  li.querySelector(".meta").textContent = msg.from === me ? `${when} · ${stateText}` : when;
  list.scrollTop = list.scrollHeight;
}

/** Add or update a message; returns false if it was already shown. */
function store(peerUid, msg) {
  const conv = conversation(peerUid);
  const known = conv.get(msg.key);
  if (known && known.state === "sent" && msg.state === "sent") return false;
  conv.set(msg.key, { ...known, ...msg });
  if (peerUid === peer) render(conv.get(msg.key));
  return !known;
}

function onPacket(p) {
  if (p.type !== "t" && p.type !== "i") return; // system messages are not part of a conversation
  const peerUid = p.from === me ? p.to : p.from;
  const isNew = store(peerUid, {
    key: keyOf(p),
    from: p.from,
    to: p.to,
    text: p.type === "i" ? `[image ${p.msg}]` : String(p.msg),
    ts: p.ts ?? Date.now(),
    state: "sent",
  });
  if (isNew && peerUid !== peer) {
    if (!friendItem(peerUid)) addFriend(peerUid, true);
    friendItem(peerUid).classList.add("has-unread");
  }
}

async function openConversation(uid) {
  peer = uid;
  document.querySelectorAll("#friends li").forEach((li) => li.classList.toggle("active", Number(li.dataset.uid) === uid));
  friendItem(uid)?.classList.remove("has-unread");
  document.getElementById("peer").textContent = `User ${uid}`;
  document.getElementById("messages").replaceChildren();
  for (const msg of conversation(uid).values()) render(msg);
  document.getElementById("text").disabled = false;
  document.getElementById("send").disabled = false;
  document.getElementById("text").focus();
  if (!loaded.has(uid) && client.state === "online") loadHistory(uid);
}

async function loadHistory(uid) {
  try {
    const res = await client.history({ since: 0, withUid: uid, limit: 100 });
    loaded.add(uid);
    for (const p of res.messages) onPacket(p);
  } catch (e) {
    showError(`History not available: ${e.message}`);
  }
}

function showError(text) {
  document.getElementById("chat-error").textContent = text;
}

async function refreshOnline() {
  if (client.state !== "online") return;
  for (const li of document.querySelectorAll("#friends li")) {
    const uid = Number(li.dataset.uid);
    try {
      const r = await client.online(uid);
      setOnline(uid, r.online);
    } catch {
      return;
    }
  }
}

async function main() {
  const who = await whoAmI();
  if (who === null) return;
  document.getElementById("me").textContent = `User ${who.userId} (${who.mobile})`;
  const friends = await api("/friends", { method: "GET", token });
  const list = friends.code === 0 ? friends.result.friends : [];
  list.forEach((f) => addFriend(f.uid, f.online));
  document.getElementById("friends-empty").hidden = list.length > 0;

  client = new ChatClient({ token, userId: me });
  client.addEventListener("state", (ev) => {
    const el = document.getElementById("conn");
    el.dataset.state = ev.detail.state;
    el.textContent = ev.detail.state;
    if (ev.detail.state === "online") {
      showError("");
      if (peer && !loaded.has(peer)) loadHistory(peer);
      refreshOnline();
    }
    if (ev.detail.state === "loggedout") {
      webLogin.clear();
      location.assign("index.html");
    }
  });
  client.addEventListener("message", (ev) => onPacket(ev.detail.packet));
  client.addEventListener("ack", (ev) => {
    for (const [uid, conv] of conversations) {
      const key = `${me}:${ev.detail.id}`;
      if (conv.has(key)) store(uid, { key, state: "sent" });
    }
  });
  client.addEventListener("failed", (ev) => {
    for (const [uid, conv] of conversations) {
      const key = `${me}:${ev.detail.id}`;
      if (conv.has(key)) store(uid, { key, state: "failed", reason: ev.detail.reason });
    }
  });
  client.addEventListener("servererror", (ev) => showError(ev.detail.reason));
  client.addEventListener("closed", (ev) => showError(`Disconnected by the server: ${ev.detail.reason}`));
  client.start();
  setInterval(refreshOnline, ONLINE_REFRESH_MS);

  document.getElementById("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("text");
    const text = input.value;
    if (!peer || text.trim() === "") return;
    const pkt = client.sendText(peer, text);
    store(peer, { key: `${me}:${pkt.id}`, from: me, to: peer, text, ts: Date.now(), state: "pending" });
    input.value = "";
  });
  document.getElementById("logout").addEventListener("click", async () => {
    client.stop();
    await api("/logout", { token });
    webLogin.clear();
    location.assign("index.html");
  });
}

main();
