// The chat page: the chat list (the conversations of GET /conversations, most recent first, with unread
// badges, then friends not talked to yet, with online dots), one conversation at a time with its history,
// sending with a pending -> sent -> read state, live incoming messages, and everything missed while away
// fetched by seq (chat-client.js). Opening a conversation marks it read (R) up to its latest message.
//
// Unread counts (timeline.js): the server's count from GET /conversations, plus one for each message from
// the peer whose seq is above the latest one that count included; an R from here or an r from the user's
// other device clears it (or, when the mark is not the latest message, asks the server again). The list is
// fetched again after every reconnect, since r packets are not in the timeline and can be missed.

import { api, webLogin, whoAmI } from "./api.js";
import { ChatClient } from "./chat-client.js";
import { applyMessage, applyReadMark, applyReceipt, compareChats, compareMessages, mergeConversation, newChat } from "./timeline.js";

const ONLINE_REFRESH_MS = 10000;
const CONVERSATIONS_LIMIT = 100; // one page of GET /conversations (its maximum); older ones appear when active
const me = webLogin.userId;
const token = webLogin.token;
const chats = new Map(); // peer uid -> conversation (timeline.js newChat) with online, friend, loaded
const items = new Map(); // peer uid -> its <li> in the chat list
let peer = 0;
let client = null;

/** Both sides of a message have the same (from, id): our key for "shown once". */
const keyOf = (p) => `${p.from}:${p.id}`;
const textOf = (p) => (p.type === "i" ? `[image ${p.msg}]` : String(p.msg));

function chat(uid) {
  if (!chats.has(uid)) chats.set(uid, { ...newChat(uid), online: false, friend: false, loaded: false });
  return chats.get(uid);
}

/** Bring c's entry in the chat list up to date (made on first use; sortChats places it). */
function renderChat(c) {
  let li = items.get(c.uid);
  if (!li) {
    li = document.createElement("li");
    li.dataset.uid = c.uid;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chat-item";
    button.innerHTML = `<span class="dot" aria-hidden="true"></span><span class="who"><span class="name"></span><span class="preview"></span></span><span class="badge" aria-hidden="true"></span>`;
    button.querySelector(".name").textContent = `User ${c.uid}`;
    button.addEventListener("click", () => openConversation(c.uid));
    li.append(button);
    items.set(c.uid, li);
  }
  li.dataset.online = c.online ? "true" : "false";
  li.dataset.unread = String(c.unread);
  li.classList.toggle("active", c.uid === peer);
  li.querySelector(".preview").textContent = c.last ? `${c.last.from === me ? "You: " : ""}${textOf(c.last)}` : "";
  li.querySelector(".badge").textContent = c.unread > 0 ? String(c.unread) : "";
  const unread = c.unread > 0 ? `, ${c.unread} unread` : "";
  li.querySelector(".chat-item").setAttribute("aria-label", `User ${c.uid}, ${c.online ? "online" : "offline"}${unread}`);
}

/** Put the chat list in its order (moving nodes only when it changed, so focus stays where it is). */
function sortChats() {
  const list = document.getElementById("chats");
  const want = [...chats.values()].sort(compareChats).map((c) => items.get(c.uid));
  if (want.length !== list.children.length || want.some((li, i) => list.children[i] !== li)) list.replaceChildren(...want);
  document.getElementById("chats-empty").hidden = chats.size > 0;
}

function update(c) {
  renderChat(c);
  sortChats();
}

/** Show (or update) one message of the open conversation, in compareMessages order. */
function render(c, msg) {
  const list = document.getElementById("messages");
  let li = list.querySelector(`li[data-key="${CSS.escape(msg.key)}"]`);
  const place = !li || li.dataset.seq !== String(msg.seq ?? "");
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = msg.key;
    li.innerHTML = `<p class="text"></p><span class="meta"></span>`;
  }
  const out = msg.from === me;
  const read = out && msg.state === "sent" && msg.seq <= c.peerReadSeq;
  li.className = `msg ${out ? "out" : "in"}`;
  li.dataset.from = msg.from;
  li.dataset.seq = String(msg.seq ?? "");
  li.dataset.state = msg.state;
  li.dataset.read = read ? "true" : "false";
  li.querySelector(".text").textContent = msg.text;
  const when = new Date(msg.ts).toLocaleTimeString();
  const stateText = read ? "read" : ({ pending: "sending…", sent: "sent", failed: `not sent: ${msg.reason}` }[msg.state] ?? "");
  li.querySelector(".meta").textContent = out ? `${when} · ${stateText}` : when;
  if (place) {
    li.remove();
    const after = [...list.children].find((x) => compareMessages(c.messages.get(x.dataset.key), msg) > 0);
    list.insertBefore(li, after || null);
  }
  list.scrollTop = list.scrollHeight;
}

/** Add or update a message of c; returns false if it was known already. */
function store(c, msg) {
  const known = c.messages.get(msg.key);
  c.messages.set(msg.key, { ...known, ...msg });
  if (c.uid === peer) render(c, c.messages.get(msg.key));
  return !known;
}

/** A chat message: `counts` when it came live or by Y (it may be new to the unread count and the latest),
 * not when it is history (H); `synced` when by Y (marked read once the sync is over, not one by one). */
function onMessage(p, { counts, synced = false }) {
  if (p.type !== "t" && p.type !== "i") return; // system messages are not part of a conversation
  const c = chat(p.from === me ? p.to : p.from);
  store(c, { key: keyOf(p), from: p.from, to: p.to, text: textOf(p), ts: p.ts ?? Date.now(), mid: p.mid, seq: p.seq, state: "sent" });
  if (counts && applyMessage(c, p, me) && !synced && p.from !== me) markRead(c);
  update(c);
}

/** R for the open conversation's latest message, when the user can see it and it is not read yet. */
function markRead(c) {
  if (c.uid !== peer || document.visibilityState !== "visible" || client?.state !== "online") return;
  const mid = c.last?.mid;
  if (!mid || (c.unread === 0 && c.readMid === mid)) return;
  applyReadMark(c, mid); // the badge goes now; a failed R is redone after the next login's list refresh
  renderChat(c);
  client.read(c.uid, mid).catch((e) => {
    if (client.state === "online") showError(`Could not mark as read: ${e.message}`);
  });
}

async function openConversation(uid) {
  peer = uid;
  const c = chat(uid);
  for (const other of chats.values()) renderChat(other);
  document.getElementById("peer").textContent = `User ${uid}`;
  const list = document.getElementById("messages");
  list.replaceChildren();
  for (const msg of [...c.messages.values()].sort(compareMessages)) render(c, msg);
  document.getElementById("text").disabled = false;
  document.getElementById("send").disabled = false;
  document.getElementById("text").focus();
  markRead(c);
  if (!c.loaded && client.state === "online") loadHistory(c);
}

async function loadHistory(c) {
  try {
    const res = await client.history({ since: 0, withUid: c.uid, limit: 100 });
    c.loaded = true;
    for (const p of res.messages) onMessage(p, { counts: false });
  } catch (e) {
    showError(`History not available: ${e.message}`);
  }
}

/** GET /conversations into the chat list; calls made while one runs share one more run after it. */
let refreshing = null;
let refreshAgain = false;
function refreshConversations() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      const res = await api(`/conversations?limit=${CONVERSATIONS_LIMIT}`, { method: "GET", token });
      if (res.code !== 0) {
        if (res.code !== 13 && client?.state === "online") showError(`Conversations not available: ${res.message}`);
        return;
      }
      for (const entry of res.result.conversations) {
        if (!Number.isSafeInteger(entry.with)) continue; // groups: not in this page yet
        const c = chat(entry.with);
        mergeConversation(c, entry, me);
        renderChat(c);
      }
      sortChats();
    } while (refreshAgain);
    if (peer) markRead(chat(peer));
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** An r packet: our read mark moved on another device, or the peer's read receipt. */
function onRead(p) {
  const m = p.msg && typeof p.msg === "object" ? p.msg : {};
  const mid = String(m.mid);
  if (p.from === me) {
    if (!Number.isSafeInteger(m.with)) return; // a group's mark: no groups on this page yet
    const c = chat(m.with);
    if (!applyReadMark(c, mid)) refreshConversations();
    update(c);
  } else {
    const c = chats.get(p.from); // a receipt for a conversation this page does not show changes nothing
    if (c && applyReceipt(c, mid) && c.uid === peer) {
      for (const msg of c.messages.values()) if (msg.from === me) render(c, msg);
    }
  }
}

function showError(text) {
  document.getElementById("chat-error").textContent = text;
}

async function refreshOnline() {
  if (client.state !== "online") return;
  for (const c of chats.values()) {
    if (!c.friend) continue;
    try {
      c.online = (await client.online(c.uid)).online;
      renderChat(c);
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
  for (const f of friends.code === 0 ? friends.result.friends : []) {
    const c = chat(f.uid);
    c.friend = true;
    c.online = f.online;
    renderChat(c);
  }
  sortChats();

  client = new ChatClient({ token, userId: me });
  client.addEventListener("state", (ev) => {
    const el = document.getElementById("conn");
    el.dataset.state = ev.detail.state;
    el.textContent = ev.detail.state;
    if (ev.detail.state === "online") {
      showError("");
      refreshConversations();
      if (peer && !chat(peer).loaded) loadHistory(chat(peer));
      refreshOnline();
    }
    if (ev.detail.state === "loggedout") {
      webLogin.clear();
      location.assign("index.html");
    }
  });
  client.addEventListener("message", (ev) => onMessage(ev.detail.packet, { counts: true, synced: ev.detail.synced }));
  client.addEventListener("synced", () => peer && markRead(chat(peer)));
  client.addEventListener("read", (ev) => onRead(ev.detail.packet));
  client.addEventListener("ack", (ev) => {
    const { id, mid, seq } = ev.detail;
    const key = `${me}:${id}`;
    for (const c of chats.values()) {
      const msg = c.messages.get(key);
      if (!msg) continue;
      store(c, { key, state: "sent", mid, seq });
      applyMessage(c, { id, from: me, to: c.uid, type: "t", msg: msg.text, ts: msg.ts, mid, seq }, me);
      update(c);
    }
  });
  client.addEventListener("failed", (ev) => {
    const key = `${me}:${ev.detail.id}`;
    for (const c of chats.values()) {
      if (c.messages.has(key)) store(c, { key, state: "failed", reason: ev.detail.reason });
    }
  });
  client.addEventListener("servererror", (ev) => showError(ev.detail.reason));
  client.addEventListener("closed", (ev) => showError(`Disconnected by the server: ${ev.detail.reason}`));
  await refreshConversations();
  client.start();
  setInterval(refreshOnline, ONLINE_REFRESH_MS);
  document.addEventListener("visibilitychange", () => peer && markRead(chat(peer)));

  document.getElementById("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("text");
    const text = input.value;
    if (!peer || text.trim() === "") return;
    const pkt = client.sendText(peer, text);
    store(chat(peer), { key: `${me}:${pkt.id}`, from: me, to: peer, text, ts: Date.now(), state: "pending" });
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
