// The chat page: the chat list (the conversations of GET /conversations, 1:1 and groups, most recent first,
// with unread badges, then groups and friends not talked to yet, friends with online dots), one
// conversation at a time with its history, sending with a pending -> sent -> read state, live incoming
// messages, and everything missed while away fetched by seq (chat-client.js). Opening a conversation marks
// it read (R) up to its latest message.
//
// Groups (SPEC §4.2, groups.js): "New group" creates one (POST /groups) with friends picked from the list;
// a group's conversation shows its g messages, its s events as system lines, and a member panel (GET
// /groups/<id>) to add a member (owner/admin) or leave. The page knows its groups from GET /groups, and
// learns of changes from the s events, after which it asks GET /groups/<id> again. A group's older messages
// come from the timeline itself, read back page by page with Y (there is no H for groups).
//
// Unread counts (timeline.js): the server's count from GET /conversations, plus one for each message from
// someone else whose seq is above the latest one that count included; an R from here or an r from the
// user's other device clears it (or, when the mark is not the latest message, asks the server again). The
// list is fetched again after every reconnect, since r packets are not in the timeline and can be missed.

import { api, webLogin, whoAmI } from "./api.js";
import { ChatClient } from "./chat-client.js";
import { applyGroupEvent, canManage, canRemove, convKey, eventText, historyPage, memberLines } from "./groups.js";
import {
  applyMessage, applyReadMark, applyReceipt, compareChats, compareMessages, isMessage, mergeConversation,
  newChat, newGroupChat, noteHistory,
} from "./timeline.js";

const ONLINE_REFRESH_MS = 10000;
const CONVERSATIONS_LIMIT = 100; // one page of GET /conversations (its maximum); older ones appear when active
const GROUP_HISTORY_PAGE = 500; // Y's largest page
const GROUP_HISTORY_PAGES = 4; // read back at most this many pages of the timeline per opened group...
const GROUP_HISTORY_WANT = 50; // ...or until the group has this many messages shown
const me = webLogin.userId;
const token = webLogin.token;
const chats = new Map(); // key ("u<uid>" or "g<gid>", groups.js) -> conversation (timeline.js) with more
const items = new Map(); // key -> its <li> in the chat list
let open = null; // key of the open conversation
let client = null;

/** Both sides of a message have the same (from, id): our key for "shown once". */
const keyOf = (p) => `${p.from}:${p.id}`;
const textOf = (p) => (p.type === "i" ? `[image ${p.msg}]` : String(p.msg));

/** A 1:1 conversation; `friend` and `online` for friends, `loaded` once its history (H) is in. */
function chat(uid) {
  const key = `u${uid}`;
  if (!chats.has(key)) chats.set(key, { ...newChat(uid), online: false, friend: false, loaded: false });
  return chats.get(key);
}

/** A group conversation; what GET /groups and GET /groups/<id> said of it: name, whether the user is a
 * member (null: not known yet), the user's role, the members [{uid, role}] (null: not fetched). */
function group(gid) {
  const key = `g${gid}`;
  if (!chats.has(key)) {
    const name = groupNames[gid] ?? null;
    chats.set(key, { ...newGroupChat(gid), name, member: null, deleted: false, role: null, members: null, loaded: false });
  }
  return chats.get(key);
}

/** Group names this browser has seen, per user: the server tells a group's name to its members only, and a
 * group the user left stays in the chat list. */
const namesKey = `magpie.web.groupnames.${me}`;
const groupNames = (() => {
  try {
    const v = JSON.parse(localStorage.getItem(namesKey) ?? "{}");
    return v && typeof v === "object" ? v : {};
  } catch {
    return {};
  }
})();
function rememberName(c) {
  if (!c.gid || !c.name || groupNames[c.gid] === c.name) return;
  groupNames[c.gid] = c.name;
  try {
    localStorage.setItem(namesKey, JSON.stringify(groupNames));
  } catch {
    // storage full or refused: the name is shown as long as this page lives
  }
}

function byKey(key) {
  return key[0] === "g" ? group(Number(key.slice(1))) : chat(Number(key.slice(1)));
}

const titleOf = (c) => (c.gid ? c.name || `Group ${c.gid}` : `User ${c.uid}`);

/** The chat list's second line: the latest entry, with who sent it in a group; an event's system line. */
function previewOf(c) {
  const p = c.last;
  if (!p) return "";
  if (p.type === "s") return eventText(p.msg, me);
  const who = p.from === me ? "You: " : c.gid ? `User ${p.from}: ` : "";
  return `${who}${textOf(p)}`;
}

/** Bring c's entry in the chat list up to date (made on first use; sortChats places it). */
function renderChat(c) {
  let li = items.get(c.key);
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = c.key;
    if (c.gid) {
      li.dataset.group = c.gid;
      li.classList.add("group");
    } else {
      li.dataset.uid = c.uid;
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chat-item";
    button.innerHTML = `<span class="dot" aria-hidden="true"></span><span class="who"><span class="name"></span><span class="preview"></span></span><span class="badge" aria-hidden="true"></span>`;
    button.addEventListener("click", () => openConversation(c.key));
    li.append(button);
    items.set(c.key, li);
  }
  li.querySelector(".name").textContent = titleOf(c);
  if (c.gid) li.dataset.member = c.member === false ? "false" : "true";
  else li.dataset.online = c.online ? "true" : "false";
  li.dataset.unread = String(c.unread);
  li.classList.toggle("active", c.key === open);
  li.querySelector(".preview").textContent = previewOf(c);
  li.querySelector(".badge").textContent = c.unread > 0 ? String(c.unread) : "";
  const unread = c.unread > 0 ? `, ${c.unread} unread` : "";
  const what = c.gid ? `Group ${titleOf(c)}${c.member === false ? ", not a member" : ""}` : `User ${c.uid}, ${c.online ? "online" : "offline"}`;
  li.querySelector(".chat-item").setAttribute("aria-label", `${what}${unread}`);
}

/** Put the chat list in its order (moving nodes only when it changed, so focus stays where it is). */
function sortChats() {
  const list = document.getElementById("chats");
  const want = [...chats.values()].sort(compareChats).map((c) => items.get(c.key));
  if (want.length !== list.children.length || want.some((li, i) => list.children[i] !== li)) list.replaceChildren(...want);
  document.getElementById("chats-empty").hidden = chats.size > 0;
}

function update(c) {
  rememberName(c);
  renderChat(c);
  sortChats();
  if (c.key === open) document.getElementById("peer").textContent = titleOf(c);
}

/** Show (or update) one message or system line of the open conversation, in compareMessages order. */
function render(c, msg) {
  const list = document.getElementById("messages");
  let li = list.querySelector(`li[data-key="${CSS.escape(msg.key)}"]`);
  const place = !li || li.dataset.seq !== String(msg.seq ?? "");
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = msg.key;
    li.innerHTML = `<span class="from"></span><p class="text"></p><span class="meta"></span>`;
  }
  const when = new Date(msg.ts).toLocaleTimeString();
  li.dataset.seq = String(msg.seq ?? "");
  if (msg.type === "s") {
    li.className = "sys";
    li.dataset.event = msg.event?.event ?? "";
    li.querySelector(".text").textContent = eventText(msg.event, me);
    li.querySelector(".meta").textContent = when;
  } else {
    const out = msg.from === me;
    const read = out && !c.gid && msg.state === "sent" && msg.seq <= c.peerReadSeq;
    li.className = `msg ${out ? "out" : "in"}`;
    li.dataset.from = msg.from;
    li.dataset.state = msg.state;
    li.dataset.read = read ? "true" : "false";
    li.querySelector(".from").textContent = c.gid && !out ? `User ${msg.from}` : "";
    li.querySelector(".text").textContent = msg.text;
    const stateText = read ? "read" : ({ pending: "sending…", sent: "sent", failed: `not sent: ${msg.reason}` }[msg.state] ?? "");
    li.querySelector(".meta").textContent = out ? `${when} · ${stateText}` : when;
  }
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
  if (c.key === open) render(c, c.messages.get(msg.key));
  return !known;
}

/** A timeline entry (t, i, g, or a group's s event): `counts` when it came live or by Y (it may be new to
 * the unread count and the latest), not when it is history (H, or the timeline read back); `synced` when by
 * Y (marked read once the sync is over, not one by one). */
function onMessage(p, { counts, synced = false }) {
  const key = convKey(p, me);
  if (key === null) return; // system messages outside a conversation (e.g. order_taken)
  const c = byKey(key);
  const event = p.type === "s" ? p.msg : undefined;
  store(c, {
    key: keyOf(p), type: p.type, from: p.from, to: p.to, text: event ? "" : textOf(p), event,
    ts: p.ts ?? Date.now(), mid: p.mid, seq: p.seq, state: "sent",
  });
  if (counts) {
    const newest = applyMessage(c, p, me);
    // The members changed: ask for the list again (not when the user is out: that would only be refused).
    if (event && applyGroupEvent(c, event, me) && c.member !== false) refreshGroup(c);
    if (newest && !synced && p.from !== me && isMessage(p)) markRead(c);
  } else {
    noteHistory(c, p);
  }
  update(c);
  if (c.key === open && event) renderGroupPanel(c);
}

/** R for the open conversation's latest message, when the user can see it and it is not read yet. */
function markRead(c) {
  if (c.key !== open || document.visibilityState !== "visible" || client?.state !== "online") return;
  const mid = c.lastMsg?.mid;
  if (!mid || (c.unread === 0 && c.readMid === mid)) return;
  applyReadMark(c, mid); // the badge goes now; a failed R is redone after the next login's list refresh
  renderChat(c);
  (c.gid ? client.readGroup(c.gid, mid) : client.read(c.uid, mid)).catch((e) => {
    if (client.state === "online") showError(`Could not mark as read: ${e.message}`);
  });
}

function openConversation(key) {
  open = key;
  const c = byKey(key);
  for (const other of chats.values()) renderChat(other);
  document.getElementById("peer").textContent = titleOf(c);
  const list = document.getElementById("messages");
  list.replaceChildren();
  for (const msg of [...c.messages.values()].sort(compareMessages)) render(c, msg);
  showError("");
  document.getElementById("group-error").textContent = "";
  document.getElementById("rename-form").hidden = true;
  renderGroupPanel(c);
  if (c.gid && c.member !== false) refreshGroup(c);
  document.getElementById("text").focus();
  markRead(c);
  if (!c.loaded && client?.state === "online") loadHistory(c);
}

/** The composer and the member panel for the open conversation. */
function renderGroupPanel(c) {
  const panel = document.getElementById("group-panel");
  const canSend = !c.gid || c.member !== false;
  document.getElementById("text").disabled = !canSend;
  document.getElementById("send").disabled = !canSend;
  panel.hidden = !c.gid;
  if (!c.gid) return;
  const status = document.getElementById("group-status");
  const list = document.getElementById("group-members");
  const member = c.member !== false;
  const lines = member ? memberLines(c.members, me) : [];
  list.replaceChildren(
    ...lines.map((m) => {
      const li = document.createElement("li");
      li.dataset.uid = m.uid;
      li.dataset.role = m.role;
      li.append(m.text);
      if (m.uid !== me && canRemove(c.role, m.role)) {
        const x = document.createElement("button");
        x.type = "button";
        x.className = "remove";
        x.textContent = "×";
        x.setAttribute("aria-label", `Remove User ${m.uid}`);
        x.addEventListener("click", () => removeMember(c, m.uid));
        li.append(x);
      }
      return li;
    }),
  );
  list.dataset.count = String(lines.length);
  if (!member) status.textContent = c.deleted ? "This group was deleted." : "You are not a member of this group.";
  else status.textContent = c.members === null ? "Members: loading…" : `${lines.length} member${lines.length === 1 ? "" : "s"}`;
  const form = document.getElementById("add-member-form");
  form.hidden = !member || !canManage(c.role);
  document.getElementById("rename-group").hidden = !member || !canManage(c.role);
  if (!member || !canManage(c.role)) document.getElementById("rename-form").hidden = true;
  document.getElementById("leave-group").hidden = !member;
  // Friends who are not members yet.
  const inGroup = new Set(lines.map((m) => m.uid));
  const select = document.getElementById("add-member");
  const before = select.value;
  const candidates = [...chats.values()].filter((x) => x.friend && !inGroup.has(x.uid)).sort((a, b) => a.uid - b.uid);
  select.replaceChildren(
    ...candidates.map((x) => {
      const o = document.createElement("option");
      o.value = String(x.uid);
      o.textContent = `User ${x.uid}`;
      return o;
    }),
  );
  if (candidates.length === 0) {
    const o = document.createElement("option");
    o.textContent = "no friends left to add";
    select.append(o);
  } else if (candidates.some((x) => String(x.uid) === before)) {
    select.value = before;
  }
  select.disabled = candidates.length === 0;
  document.getElementById("add-member-button").disabled = candidates.length === 0;
}

/** GET /groups/<id> into c (name, members, the user's role); calls while one runs share one more run. */
function refreshGroup(c) {
  if (c.refreshing) {
    c.refreshAgain = true;
    return c.refreshing;
  }
  c.refreshing = (async () => {
    do {
      c.refreshAgain = false;
      const res = await api(`/groups/${c.gid}`, { method: "GET", token });
      if (res.code === 0) {
        c.name = res.result.name ?? c.name;
        c.members = Array.isArray(res.result.members) ? res.result.members : [];
        c.role = c.members.find((m) => m.uid === me)?.role ?? null;
        c.member = c.role !== null;
      } else if (res.code === 14 || res.code === 15) {
        // not (or no longer) a member, or the group is gone: what the page shows, not an error
        c.member = false;
        c.members = null;
        c.role = null;
        if (res.code === 15) c.deleted = true;
      } else if (res.code !== 13 && c.key === open) {
        document.getElementById("group-error").textContent = `Members not available: ${res.message}`;
      }
      update(c);
      if (c.key === open) renderGroupPanel(c);
    } while (c.refreshAgain);
  })().finally(() => {
    c.refreshing = null;
  });
  return c.refreshing;
}

function loadHistory(c) {
  return c.gid ? loadGroupHistory(c) : loadChatHistory(c);
}

async function loadChatHistory(c) {
  try {
    const res = await client.history({ since: 0, withUid: c.uid, limit: 100 });
    c.loaded = true;
    for (const p of res.messages) onMessage(p, { counts: false });
  } catch (e) {
    showError(`History not available: ${e.message}`);
  }
}

/** A group's older messages: the user's timeline read back with Y from below what the sync handled, page
 * by page, until the group has GROUP_HISTORY_WANT messages or GROUP_HISTORY_PAGES pages were read (the
 * timeline holds every conversation's entries). Every entry read goes to its conversation as history, so
 * the pages read for one group serve the others; `floor` is the lowest seq read, shared, one walk at a
 * time. */
let floor = null;
let walks = Promise.resolve();
function loadGroupHistory(c) {
  if (c.walking) return c.walking;
  c.walking = walks = walks.then(async () => {
    try {
      if (c.loaded || client.seq.last === null) return; // no place in the timeline yet: after the first sync
      if (floor === null) floor = client.seq.last + 1;
      const count = () => [...c.messages.values()].filter((m) => m.type === "g").length;
      for (let pages = 0; pages < GROUP_HISTORY_PAGES && count() < GROUP_HISTORY_WANT; pages++) {
        const page = historyPage(floor, GROUP_HISTORY_PAGE);
        if (page === null) break;
        const res = await client.timeline(page.after, page.limit);
        for (const p of res.messages ?? []) if (Number.isSafeInteger(p.seq) && p.seq < floor) onMessage(p, { counts: false });
        floor = page.after + 1;
      }
      c.loaded = true;
    } catch (e) {
      if (client.state === "online") showError(`History not available: ${e.message}`);
    } finally {
      c.walking = null;
    }
  });
  return c.walking;
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
        let c = null;
        if (Number.isSafeInteger(entry.with)) c = chat(entry.with);
        else if (Number.isSafeInteger(entry.group)) c = group(entry.group);
        if (c === null) continue;
        mergeConversation(c, entry, me);
        // A group GET /groups did not list: one the user left (or joined a moment ago: its member_added
        // event, live or by Y, says so).
        if (c.gid && c.member === null && groupsKnown) c.member = false;
        renderChat(c);
      }
      sortChats();
    } while (refreshAgain);
    if (open) markRead(byKey(open));
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** GET /groups: the groups the user belongs to, with their names and the user's role. */
let groupsKnown = false;
async function loadGroups() {
  const res = await api("/groups", { method: "GET", token });
  if (res.code !== 0) {
    if (res.code !== 13) showError(`Groups not available: ${res.message}`);
    return;
  }
  groupsKnown = true;
  for (const g of res.result.groups) {
    if (!Number.isSafeInteger(g.group_id)) continue;
    const c = group(g.group_id);
    c.name = g.name ?? c.name;
    c.role = g.role ?? c.role;
    c.member = true;
    c.deleted = false;
    rememberName(c);
    renderChat(c);
  }
  sortChats();
  if (open) renderGroupPanel(byKey(open));
}

/** An r packet: our read mark moved on another device, or the peer's read receipt. */
function onRead(p) {
  const m = p.msg && typeof p.msg === "object" ? p.msg : {};
  const mid = String(m.mid);
  if (p.from === me) {
    let c = null;
    if (Number.isSafeInteger(m.group)) c = group(m.group);
    else if (Number.isSafeInteger(m.with)) c = chat(m.with);
    if (c === null) return;
    if (!applyReadMark(c, mid)) refreshConversations();
    update(c);
  } else {
    const c = chats.get(`u${p.from}`); // a receipt for a conversation this page does not show changes nothing
    if (c && applyReceipt(c, mid) && c.key === open) {
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

/** The "new group" form: a name and friends to add; POST /groups, then the new group is opened. */
function setUpNewGroup() {
  const form = document.getElementById("new-group-form");
  const toggle = document.getElementById("new-group");
  const error = document.getElementById("new-group-error");
  const show = (on) => {
    form.hidden = !on;
    toggle.setAttribute("aria-expanded", on ? "true" : "false");
    if (!on) return;
    error.textContent = "";
    const pick = document.getElementById("group-pick");
    for (const old of pick.querySelectorAll("label")) old.remove();
    const friends = [...chats.values()].filter((c) => c.friend).sort((a, b) => a.uid - b.uid);
    for (const f of friends) {
      const label = document.createElement("label");
      label.innerHTML = `<input type="checkbox"> <span></span>`;
      label.querySelector("input").value = String(f.uid);
      label.querySelector("span").textContent = `User ${f.uid}`;
      pick.append(label);
    }
    document.getElementById("group-pick-empty").hidden = friends.length > 0;
    document.getElementById("group-name").focus();
  };
  toggle.addEventListener("click", () => show(form.hidden));
  document.getElementById("cancel-group").addEventListener("click", () => show(false));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = document.getElementById("group-name").value.trim();
    const members = [...form.querySelectorAll("#group-pick input:checked")].map((i) => Number(i.value));
    if (name === "") {
      error.textContent = "Give the group a name.";
      return;
    }
    const button = document.getElementById("create-group");
    button.disabled = true;
    const res = await api("/groups", { body: { name, members }, token });
    button.disabled = false;
    if (res.code !== 0) {
      error.textContent = `Could not create the group: ${res.message || `code ${res.code}`}`;
      return;
    }
    const c = group(res.result.group_id);
    c.name = name;
    c.member = true;
    c.role = "owner";
    update(c);
    document.getElementById("group-name").value = "";
    show(false);
    openConversation(c.key);
  });
}

/** Remove a member (owner/admin; the × on a member): POST /groups/<id>/members {remove}. */
async function removeMember(c, uid) {
  const error = document.getElementById("group-error");
  error.textContent = "";
  const res = await api(`/groups/${c.gid}/members`, { body: { remove: [uid] }, token });
  if (res.code !== 0) {
    error.textContent = `Could not remove User ${uid}: ${res.message || `code ${res.code}`}`;
    return;
  }
  if (Array.isArray(res.result?.members)) c.members = res.result.members;
  if (c.key === open) renderGroupPanel(c);
}

/** The member panel's controls: add a friend, rename (owner/admin), leave. */
function setUpGroupPanel() {
  const error = document.getElementById("group-error");
  const renameForm = document.getElementById("rename-form");
  const renameToggle = document.getElementById("rename-group");
  renameToggle.addEventListener("click", () => {
    const c = open && byKey(open);
    renameForm.hidden = !renameForm.hidden;
    renameToggle.setAttribute("aria-expanded", renameForm.hidden ? "false" : "true");
    if (!renameForm.hidden) {
      document.getElementById("rename-name").value = c?.name ?? "";
      document.getElementById("rename-name").focus();
    }
  });
  renameForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const c = open && byKey(open);
    if (!c?.gid) return;
    error.textContent = "";
    const name = document.getElementById("rename-name").value.trim();
    const res = await api(`/groups/${c.gid}`, { body: { name }, token });
    if (res.code !== 0) {
      error.textContent = `Could not rename the group: ${res.message || `code ${res.code}`}`;
      return;
    }
    c.name = res.result?.name ?? name;
    if (Array.isArray(res.result?.members)) c.members = res.result.members;
    renameForm.hidden = true;
    renameToggle.setAttribute("aria-expanded", "false");
    update(c);
    renderGroupPanel(c);
  });
  document.getElementById("add-member-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const c = open && byKey(open);
    const uid = Number(document.getElementById("add-member").value);
    if (!c?.gid || !Number.isSafeInteger(uid) || uid <= 0) return;
    error.textContent = "";
    const button = document.getElementById("add-member-button");
    button.disabled = true;
    const res = await api(`/groups/${c.gid}/members`, { body: { add: [uid] }, token });
    button.disabled = false;
    if (res.code !== 0) {
      error.textContent = `Could not add User ${uid}: ${res.message || `code ${res.code}`}`;
      return;
    }
    if (Array.isArray(res.result?.members)) c.members = res.result.members;
    renderGroupPanel(c);
  });
  document.getElementById("leave-group").addEventListener("click", async () => {
    const c = open && byKey(open);
    if (!c?.gid) return;
    error.textContent = "";
    const res = await api(`/groups/${c.gid}/leave`, { token });
    if (res.code !== 0) {
      error.textContent = `Could not leave the group: ${res.message || `code ${res.code}`}`;
      return;
    }
    c.member = false;
    c.members = null;
    c.role = null;
    update(c);
    renderGroupPanel(c);
  });
}

async function main() {
  const who = await whoAmI();
  if (who === null) return;
  document.getElementById("me").textContent = `User ${who.userId} (${who.mobile})`;
  const friends = await api("/friends", { method: "GET", token });
  if (friends.code !== 0 && friends.code !== 13) showError(`Friends not available: ${friends.message}`);
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
      loadGroups().then(refreshConversations);
      if (open && !byKey(open).loaded) loadHistory(byKey(open));
      refreshOnline();
    }
    if (ev.detail.state === "loggedout") {
      webLogin.clear();
      location.assign("index.html");
    }
  });
  client.addEventListener("message", (ev) => onMessage(ev.detail.packet, { counts: true, synced: ev.detail.synced }));
  client.addEventListener("synced", () => {
    if (!open) return;
    const c = byKey(open);
    markRead(c);
    if (!c.loaded) loadHistory(c); // a group opened before the page had its place in the timeline
  });
  client.addEventListener("read", (ev) => onRead(ev.detail.packet));
  client.addEventListener("ack", (ev) => {
    const { id, mid, seq } = ev.detail;
    const key = `${me}:${id}`;
    for (const c of chats.values()) {
      const msg = c.messages.get(key);
      if (!msg) continue;
      store(c, { key, state: "sent", mid, seq });
      applyMessage(c, { id, from: me, to: msg.to, type: msg.type, msg: msg.text, ts: msg.ts, mid, seq }, me);
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
  await loadGroups();
  await refreshConversations();
  client.start();
  setInterval(refreshOnline, ONLINE_REFRESH_MS);
  document.addEventListener("visibilitychange", () => open && markRead(byKey(open)));
  setUpNewGroup();
  setUpGroupPanel();

  document.getElementById("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("text");
    const text = input.value;
    if (!open || text.trim() === "") return;
    const c = byKey(open);
    if (c.gid && c.member === false) return;
    const pkt = c.gid ? client.sendGroup(c.gid, text) : client.sendText(c.uid, text);
    store(c, { key: `${me}:${pkt.id}`, type: pkt.type, from: me, to: pkt.to, text, ts: Date.now(), state: "pending" });
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
