// Unit tests of the web client's pure parts (no browser needed).
import { test } from "node:test";
import assert from "node:assert/strict";

import { packBatch, unpackBatch } from "../../web/js/batch.js";
import { Backoff } from "../../web/js/backoff.js";
import { ChatClient } from "../../web/js/chat-client.js";
import {
  SeqTracker, loadSeq, saveSeq, compareMessages, compareChats, newChat, newGroupChat, applyMessage,
  mergeConversation, applyReadMark, applyReceipt, noteHistory,
} from "../../web/js/timeline.js";
import {
  convKey, isGroupEvent, eventText, joinNames, applyGroupEvent, memberLines, canManage, canRemove, historyPage,
} from "../../web/js/groups.js";

test("unpackBatch reads seed 004's layout", () => {
  // The seed's own example: |5 0 0 0|pack1|10 0 0 0|i am pack2|
  const bytes = new Uint8Array([5, 0, 0, 0, 112, 97, 99, 107, 49, 10, 0, 0, 0, 105, 32, 97, 109, 32, 112, 97, 99, 107, 50]);
  const out = unpackBatch(bytes).map((b) => new TextDecoder().decode(b));
  assert.deepEqual(out, ["pack1", "i am pack2"]);
});

test("packBatch and unpackBatch are inverses, empty messages included", () => {
  const msgs = ["", "x", "ü".repeat(300)];
  assert.deepEqual(unpackBatch(packBatch(msgs)).map((b) => new TextDecoder().decode(b)), msgs);
  assert.deepEqual(unpackBatch(new Uint8Array()), []);
});

test("unpackBatch rejects truncated and lying batches instead of returning part of them", () => {
  const good = packBatch(["hello", "world"]);
  for (let cut = 1; cut < good.length; cut++) {
    if (cut === 9) continue; // exactly after the first message: a valid batch of one
    assert.throws(() => unpackBatch(good.subarray(0, cut)), /truncated|overruns/, `cut at ${cut}`);
  }
  assert.throws(() => unpackBatch(new Uint8Array([255, 255, 255, 255, 1])), /overruns/);
});

test("Backoff grows exponentially with full jitter and is capped", () => {
  const top = new Backoff({ base: 100, max: 1000, random: () => 0.999999 });
  const delays = Array.from({ length: 8 }, () => top.next());
  assert.deepEqual(delays, [99, 199, 399, 799, 999, 999, 999, 999]);
  const bottom = new Backoff({ base: 100, max: 1000, random: () => 0 });
  assert.equal(bottom.next(), 0);
  top.reset();
  assert.equal(top.next(), 99);
});

test("SeqTracker: in-order seqs advance; a repeat is not new", () => {
  const t = new SeqTracker(5);
  assert.equal(t.handle(6, true), true);
  assert.equal(t.handle(7, true), true);
  assert.equal(t.last, 7);
  assert.equal(t.behind, false);
  assert.equal(t.handle(7, true), false);
  assert.equal(t.handle(3, false), false);
});

test("SeqTracker: a gap is noticed, Y fills it, and what was delivered past it is not shown twice", () => {
  const t = new SeqTracker(10);
  assert.equal(t.handle(13, true), true); // 11 and 12 were lost on the way
  assert.equal(t.behind, true);
  assert.equal(t.last, 10);
  assert.equal(t.handle(14, true), true);
  // Y {after: 10} answers 11..14: only 11 and 12 are new
  assert.deepEqual([11, 12, 13, 14].map((s) => t.handle(s, false)), [true, true, false, false]);
  assert.equal(t.last, 14);
  assert.equal(t.behind, false);
  assert.deepEqual([...t.ahead], []);
});

test("SeqTracker: a fresh browser starts at the timeline's end; live seqs in the skipped range still count", () => {
  const t = new SeqTracker(null);
  assert.equal(t.behind, true);
  assert.equal(t.handle(41, true), true); // delivered before the baseline Y was answered
  t.baseline(42);
  assert.equal(t.last, 42);
  assert.equal(t.behind, false);
  assert.equal(t.handle(42, true), true); // stored before the baseline, delivered after it
  assert.equal(t.handle(40, false), false); // never from Y: that part is history, not sync
  assert.equal(t.handle(43, true), true);
  assert.equal(t.last, 43);
  t.baseline(100); // only once
  assert.equal(t.last, 43);
});

test("SeqTracker: rebase when the server's timeline ends below our place", () => {
  const t = new SeqTracker(50);
  t.handle(55, true);
  assert.equal(t.rebase(60), false);
  assert.equal(t.rebase(20), true);
  assert.equal(t.last, 20);
  assert.equal(t.behind, false);
  assert.equal(t.handle(21, false), true);
});

test("SeqTracker: packets without a seq are passed on; bad stored seqs mean no place", () => {
  const t = new SeqTracker(3);
  assert.equal(t.handle(undefined, true), true);
  assert.equal(t.last, 3);
  for (const bad of [-1, 1.5, NaN, "7"]) assert.equal(new SeqTracker(bad).last, null);
});

test("loadSeq and saveSeq: per key, forward only unless forced, junk reads as none", () => {
  const m = new Map();
  const storage = { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, v) };
  assert.equal(loadSeq(storage, "k"), null);
  saveSeq(storage, "k", 7);
  saveSeq(storage, "k", 5); // another tab that is behind
  assert.equal(loadSeq(storage, "k"), 7);
  saveSeq(storage, "k", 5, true);
  assert.equal(loadSeq(storage, "k"), 5);
  saveSeq(storage, "k", null);
  assert.equal(loadSeq(storage, "k"), 5);
  m.set("k", "12abc");
  assert.equal(loadSeq(storage, "k"), null);
});

test("compareMessages: history without seq, then by seq, then what is still being sent", () => {
  const msgs = [
    { key: "p", state: "pending", ts: 5 },
    { key: "s9", seq: 9, ts: 1 },
    { key: "old", state: "sent", ts: 3 },
    { key: "s2", seq: 2, ts: 100 },
    { key: "f", state: "failed", ts: 4 },
  ];
  assert.deepEqual(msgs.sort(compareMessages).map((m) => m.key), ["old", "s2", "s9", "f", "p"]);
});

test("compareChats: most recent conversation first, friends never talked to after, by uid", () => {
  const list = [{ uid: 9, lastSeq: 0 }, { uid: 3, lastSeq: 10 }, { uid: 2, lastSeq: 0 }, { uid: 7, lastSeq: 12 }];
  assert.deepEqual(list.sort(compareChats).map((c) => c.uid), [7, 3, 2, 9]);
});

const ME = 1;
const pkt = (seq, from, mid = `m${seq}`) => ({ id: `i${seq}`, from, to: from === ME ? 2 : ME, type: "t", msg: "x", seq, mid });

test("applyMessage counts the peer's messages once, never our own", () => {
  const c = newChat(2);
  assert.equal(applyMessage(c, pkt(4, 2), ME), true);
  assert.equal(applyMessage(c, pkt(4, 2), ME), false); // again (H, or a live copy after Y)
  assert.equal(applyMessage(c, pkt(5, ME), ME), true);
  assert.equal(applyMessage(c, pkt(3, 2), ME), false); // older than the latest
  assert.equal(c.unread, 1);
  assert.equal(c.last.mid, "m5");
});

test("mergeConversation: the server's count, plus what arrived here after it", () => {
  const c = newChat(2);
  mergeConversation(c, { with: 2, last: pkt(10, 2), unread: 3, read_mid: "m7" }, ME);
  assert.deepEqual([c.lastSeq, c.unread, c.readMid], [10, 3, "m7"]);
  // Y brings 11 (theirs) and 12 (ours) while the list is being fetched again; the list is from before them
  for (const p of [pkt(11, 2), pkt(12, ME)]) {
    c.messages.set(p.id, { ...p, key: p.id });
    applyMessage(c, p, ME);
  }
  assert.equal(c.unread, 4);
  mergeConversation(c, { with: 2, last: pkt(10, 2), unread: 3, read_mid: "m7" }, ME);
  assert.deepEqual([c.lastSeq, c.unread], [12, 4]);
  // a newer list replaces it all (another device read up to m11 meanwhile)
  mergeConversation(c, { with: 2, last: pkt(12, ME), unread: 0, read_mid: "m11" }, ME);
  assert.deepEqual([c.lastSeq, c.unread, c.readMid], [12, 0, "m11"]);
});

test("applyReadMark clears the count only at the latest message", () => {
  const c = newChat(2);
  applyMessage(c, pkt(1, 2), ME);
  applyMessage(c, pkt(2, 2), ME);
  assert.equal(applyReadMark(c, "m1"), false);
  assert.equal(c.unread, 2);
  assert.equal(applyReadMark(c, "m2"), true);
  assert.equal(c.unread, 0);
  assert.equal(c.readMid, "m2");
});

test("applyReceipt moves the peer's read position forward by our seq of that message", () => {
  const c = newChat(2);
  for (const p of [pkt(1, ME), pkt(2, ME), pkt(3, 2)]) c.messages.set(p.id, p);
  assert.equal(applyReceipt(c, "m2"), true);
  assert.equal(c.peerReadSeq, 2);
  assert.equal(applyReceipt(c, "m1"), false);
  assert.equal(applyReceipt(c, "unknown"), false);
  assert.equal(c.peerReadSeq, 2);
});

// Groups (SPEC §4.2). ME is user 1; group 2 has the same number as user 2 on purpose.
const g = (seq, from, mid = `g${seq}`) => ({ id: `gi${seq}`, from, to: 2, type: "g", msg: "x", seq, mid });
const ev = (seq, msg) => ({ id: `e${seq}`, from: 0, to: msg.group, type: "s", msg, seq, mid: `e${seq}` });

test("convKey keeps a group apart from the user with the same number", () => {
  assert.equal(convKey(pkt(1, 2), ME), "u2");
  assert.equal(convKey(pkt(1, ME), ME), "u2"); // our own message: the other side
  assert.equal(convKey(g(1, 5), ME), "g2");
  assert.equal(convKey(g(1, ME), ME), "g2");
  assert.equal(convKey(ev(1, { event: "member_added", group: 7, by: 3, members: [1] }), ME), "g7");
  assert.equal(convKey({ from: 0, type: "s", msg: { event: "order_taken", order: "o1", courier: 3 } }, ME), null);
  assert.equal(convKey({ from: 0, type: "s", msg: "hello" }, ME), null);
  assert.equal(convKey({ from: 3, to: 0, type: "g", msg: "x" }, ME), null);
  assert.equal(convKey(null, ME), null);
});

test("eventText: each group event as the user reads it", () => {
  const e = (event, by, more = {}) => ({ event, group: 2, by, ...more });
  assert.equal(eventText(e("group_created", 5, { name: "Trio", members: [5, 1, 7] }), ME), "User 5 created the group “Trio”");
  assert.equal(eventText(e("group_created", ME, { members: [1] }), ME), "You created the group");
  assert.equal(eventText(e("member_added", 5, { members: [7] }), ME), "User 5 added User 7");
  assert.equal(eventText(e("member_added", 5, { members: [7, ME, 9] }), ME), "User 5 added User 7, you and User 9");
  assert.equal(eventText(e("member_added", ME, { members: [7, 8] }), ME), "You added User 7 and User 8");
  assert.equal(eventText(e("member_removed", 5, { members: [7] }), ME), "User 5 removed User 7");
  assert.equal(eventText(e("member_removed", 7, { members: [7] }), ME), "User 7 left");
  assert.equal(eventText(e("member_removed", ME, { members: [ME] }), ME), "You left");
  assert.equal(eventText(e("member_removed", 5, { members: [ME] }), ME), "User 5 removed you");
  assert.equal(eventText(e("group_renamed", 5, { name: "Quartet" }), ME), "User 5 renamed the group to “Quartet”");
  assert.equal(eventText(e("group_renamed", 5), ME), "User 5 renamed the group");
  assert.equal(eventText(e("group_deleted", 5), ME), "User 5 deleted the group");
  // names are text, never markup (the page sets textContent); junk is no event
  assert.equal(eventText(e("group_renamed", 5, { name: "<b>x</b>" }), ME), "User 5 renamed the group to “<b>x</b>”");
  for (const bad of [null, "x", {}, { event: "member_added" }, { event: "nope", group: 2 }, { event: "group_deleted", group: "2" }]) {
    assert.equal(isGroupEvent(bad), false);
    assert.equal(eventText(bad, ME), "");
  }
  assert.equal(joinNames([]), "");
  assert.equal(joinNames(["a"]), "a");
});

test("applyGroupEvent follows the user's own membership and the name", () => {
  const st = { name: null, member: null, deleted: false };
  assert.equal(applyGroupEvent(st, { event: "group_created", group: 2, by: 5, name: "Trio", members: [5, 1] }, ME), true);
  assert.deepEqual(st, { name: "Trio", member: true, deleted: false });
  assert.equal(applyGroupEvent(st, { event: "group_renamed", group: 2, by: 5, name: "Duo" }, ME), false);
  assert.equal(st.name, "Duo");
  assert.equal(applyGroupEvent(st, { event: "member_removed", group: 2, by: 5, members: [7] }, ME), true);
  assert.equal(st.member, true); // someone else
  applyGroupEvent(st, { event: "member_removed", group: 2, by: 5, members: [ME] }, ME);
  assert.equal(st.member, false);
  applyGroupEvent(st, { event: "member_added", group: 2, by: 5, members: [ME] }, ME);
  assert.equal(st.member, true);
  applyGroupEvent(st, { event: "group_deleted", group: 2, by: 5 }, ME);
  assert.deepEqual(st, { name: "Duo", member: false, deleted: true });
  assert.equal(applyGroupEvent(st, { event: "group_deleted" }, ME), false);
});

test("memberLines: owner, admins, then members in join order; canManage", () => {
  const lines = memberLines([{ uid: 7, role: "member" }, { uid: ME, role: "admin" }, { uid: 5, role: "owner" }, { uid: 3, role: "member" }, { role: "x" }], ME);
  assert.deepEqual(lines.map((l) => [l.uid, l.role, l.text]), [
    [5, "owner", "User 5 · owner"], [ME, "admin", "User 1 (you) · admin"], [7, "member", "User 7"], [3, "member", "User 3"],
  ]);
  assert.deepEqual(memberLines(null, ME), []);
  assert.deepEqual(["owner", "admin", "member", null].map(canManage), [true, true, false, false]);
  // only a higher role removes: the owner admins and members, an admin members
  const roles = ["owner", "admin", "member"];
  assert.deepEqual(roles.map((r) => roles.map((t) => canRemove(r, t))), [[false, true, true], [false, false, true], [false, false, false]]);
});

test("historyPage reads the timeline back in pages that end just below the floor", () => {
  assert.deepEqual(historyPage(1201, 500), { after: 700, limit: 500 }); // seqs 701..1200
  assert.deepEqual(historyPage(701, 500), { after: 200, limit: 500 });
  assert.deepEqual(historyPage(201, 500), { after: 0, limit: 200 }); // seqs 1..200
  assert.equal(historyPage(1, 500), null);
  assert.equal(historyPage(null, 500), null);
});

test("a group conversation: s events are its latest entry but neither unread nor what R marks", () => {
  const c = newGroupChat(2);
  assert.equal(c.key, "g2");
  assert.equal(newChat(2).key, "u2");
  applyMessage(c, ev(1, { event: "group_created", group: 2, by: 5, members: [5, ME] }), ME);
  assert.deepEqual([c.unread, c.lastMsg], [0, null]);
  applyMessage(c, g(2, 5), ME);
  applyMessage(c, g(3, 7), ME);
  applyMessage(c, ev(4, { event: "member_added", group: 2, by: 5, members: [9] }), ME);
  assert.equal(c.unread, 2);
  assert.equal(c.last.type, "s");
  assert.deepEqual(c.lastMsg, { mid: "g3", seq: 3 });
  assert.equal(applyReadMark(c, "g3"), true); // r {group, mid} from another device: the latest message
  assert.equal(c.unread, 0);
  applyMessage(c, g(5, 7), ME);
  applyMessage(c, g(6, 9), ME);
  assert.equal(c.unread, 2);
  applyMessage(c, g(7, ME), ME); // our own g moves our mark to it, as the server does
  assert.deepEqual([c.unread, c.readMid], [0, "g7"]);
});

test("mergeConversation for a group: the server's count, then what came after it, our own g resetting it", () => {
  const c = newGroupChat(2);
  mergeConversation(c, { group: 2, last: ev(4, { event: "member_added", group: 2, by: 5, members: [9] }), unread: 2, read_mid: null }, ME);
  assert.deepEqual([c.lastSeq, c.unread, c.lastMsg], [4, 2, null]);
  // the group's history read back from the timeline: the newest message held is the latest message
  noteHistory(c, g(2, 5));
  noteHistory(c, g(3, 7));
  noteHistory(c, ev(4, { event: "member_added", group: 2, by: 5, members: [9] }));
  assert.deepEqual(c.lastMsg, { mid: "g3", seq: 3 });
  noteHistory(c, g(9, 7)); // past the latest entry: not history, left to the live path
  assert.deepEqual(c.lastMsg, { mid: "g3", seq: 3 });
  for (const p of [g(5, 7), g(6, ME), g(7, 9), ev(8, { event: "group_renamed", group: 2, by: 5, name: "n" })]) {
    c.messages.set(p.id, p);
    applyMessage(c, p, ME);
  }
  mergeConversation(c, { group: 2, last: ev(4, { event: "member_added", group: 2, by: 5, members: [9] }), unread: 2, read_mid: null }, ME);
  assert.equal(c.unread, 1); // 2, +1 (g5), reset by our g6, +1 (g7); the s event counts nothing
  mergeConversation(c, { group: 2, last: g(10, 5), unread: 4, read_mid: "g6" }, ME);
  assert.deepEqual([c.lastSeq, c.unread, c.lastMsg.mid], [10, 4, "g10"]);
});

test("compareChats: groups not talked to before friends not talked to", () => {
  const list = [{ uid: 3, lastSeq: 0 }, { gid: 9, lastSeq: 0 }, { uid: 2, lastSeq: 5 }, { gid: 4, lastSeq: 0 }, { gid: 1, lastSeq: 7 }];
  assert.deepEqual(list.sort(compareChats).map((c) => c.gid ? `g${c.gid}` : `u${c.uid}`), ["g1", "u2", "g4", "g9", "u3"]);
});

globalThis.window ??= new EventTarget(); // ChatClient.stop() unhooks the browser's online/offline events

/** A ChatClient logged in over a stand-in socket: what it sends, and the seqs it passes on as messages. */
function loggedIn(stored) {
  const m = new Map(stored === undefined ? [] : [["magpie.web.seq.1", String(stored)]]);
  const storage = { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v) };
  const client = new ChatClient({ token: "t", userId: 1, storage });
  const sent = [];
  client.ws = { send: (s) => sent.push(JSON.parse(s)), close() {} };
  client.stopped = false;
  client.state = "online";
  client.syncBackoff = new Backoff({ random: () => 0 });
  const got = [];
  client.addEventListener("message", (ev) => got.push(ev.detail.packet.seq));
  const deliver = (p) => client.onPacket(JSON.stringify(p));
  const answer = (req, msg, type = "Y") => deliver({ id: req.id, from: 0, type, msg });
  return { client, sent, got, deliver, answer, stored: () => m.get("magpie.web.seq.1") };
}
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const t = (seq) => ({ id: `x${seq}`, from: 2, to: 1, type: "t", msg: `m${seq}`, seq, mid: String(100 + seq) });

test("ChatClient: a delivered seq past a gap sends Y; the answer fills the gap without repeating", async () => {
  const { client, sent, got, deliver, answer, stored } = loggedIn(10);
  deliver(t(11));
  assert.deepEqual(sent, []);
  deliver(t(14)); // 12 and 13 lost on the way
  assert.deepEqual(sent.map((p) => [p.type, p.msg]), [["Y", { after: 11, limit: 200 }]]);
  deliver(t(15)); // while the Y is out: no second Y at once
  assert.equal(sent.length, 1);
  answer(sent[0], { messages: [t(12), t(13), t(14), t(15)], more: false, max: 15 });
  await tick();
  assert.deepEqual(got, [11, 14, 15, 12, 13]);
  assert.equal(stored(), "15");
  assert.equal(client.seq.behind, false);
  // 15 came while the first Y was out: one more round, from the new place
  assert.deepEqual(sent.map((p) => p.msg.after), [11, 15]);
  answer(sent[1], { messages: [], more: false, max: 15 });
  await tick();
  assert.equal(sent.length, 2);
  client.stop();
});

test("ChatClient: going offline drops the socket at once, without waiting for its close to finish", async () => {
  const { client, sent } = loggedIn(0);
  const states = [];
  client.addEventListener("state", (ev) => states.push(ev.detail.state));
  const old = client.ws;
  let closed = null;
  old.close = (code, reason) => { closed = [code, reason]; }; // a dead network: onclose does not come
  const pending = client.request("P", "ping");
  client.onOffline();
  assert.deepEqual(closed, [4001, "offline"]);
  assert.deepEqual(states, ["offline"]);
  assert.equal(client.ws, null);
  await assert.rejects(pending, /connection closed/);
  await assert.rejects(client.request("P", "ping"), /not connected/);
  assert.equal(sent.length, 1); // the first ping only: nothing is sent on the dropped socket
  client.onClose(old); // its onclose, late: changes nothing
  assert.deepEqual(states, ["offline"]);
  client.stop();
});

test("ChatClient: a sync pages while more; a fresh browser starts at the end", async () => {
  const old = loggedIn(0);
  old.client.sync();
  assert.deepEqual(old.sent[0].msg, { after: 0, limit: 200 });
  old.answer(old.sent[0], { messages: [t(1), t(2)], more: true, max: 3 });
  await tick();
  assert.deepEqual(old.sent[1].msg, { after: 2, limit: 200 });
  old.answer(old.sent[1], { messages: [t(3)], more: false, max: 3 });
  await tick();
  assert.deepEqual(old.got, [1, 2, 3]);
  assert.equal(old.stored(), "3");
  assert.equal(old.sent.length, 2);
  old.client.stop();

  const fresh = loggedIn();
  fresh.client.sync();
  assert.deepEqual(fresh.sent[0].msg, { after: Number.MAX_SAFE_INTEGER, limit: 1 });
  fresh.answer(fresh.sent[0], { messages: [], more: false, max: 7 });
  await tick();
  assert.deepEqual(fresh.sent[1].msg, { after: 7, limit: 200 });
  fresh.answer(fresh.sent[1], { messages: [], more: false, max: 7 });
  await tick();
  assert.deepEqual(fresh.got, []);
  assert.equal(fresh.stored(), "7");
  fresh.client.stop();
});

test("ChatClient: E 'temporarily unavailable, retry' is retried; the A of our own message moves the seq", async () => {
  const { client, sent, got, deliver, answer, stored } = loggedIn(4);
  client.sync();
  answer(sent[0], "temporarily unavailable, retry", "E");
  assert.equal(sent.length, 1); // not at once: after the backoff (no jitter here) + 200 ms
  for (let waited = 0; sent.length < 2 && waited < 5000; waited += 50) await tick(50);
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1].msg, { after: 4, limit: 200 });
  answer(sent[1], { messages: [], more: false, max: 4 });
  await tick();
  const own = client.sendText(2, "hi");
  deliver({ id: own.id, from: 0, type: "A", msg: "success", mid: "900", seq: 5 });
  assert.equal(stored(), "5");
  assert.deepEqual(got, []);
  assert.equal(sent.filter((p) => p.type === "Y").length, 2); // no gap: no Y
  client.stop();
});

test("ChatClient: g is sent and acked like t; a delivered g and a group event come out as messages", async () => {
  const { client, sent, got, deliver, stored } = loggedIn(4);
  const own = client.sendGroup(2, "hello group");
  assert.deepEqual(sent[0], { id: own.id, to: 2, type: "g", msg: "hello group" });
  deliver({ id: own.id, from: 0, type: "A", msg: "success", mid: "900", seq: 5 });
  deliver({ id: "x", from: 7, to: 2, type: "g", msg: "hi", ts: 1, mid: "901", seq: 6 });
  deliver({ id: "902", from: 0, to: 2, type: "s", msg: { event: "member_added", group: 2, by: 7, members: [9] }, ts: 2, mid: "902", seq: 7 });
  assert.deepEqual(got, [6, 7]);
  assert.equal(stored(), "7");
  const read = client.readGroup(2, "901");
  assert.deepEqual([sent[1].type, sent[1].msg], ["R", { group: 2, mid: "901" }]);
  deliver({ id: sent[1].id, from: 0, type: "A", msg: "success" });
  assert.equal(await read, "success");
  const back = client.timeline(1, 2);
  assert.deepEqual([sent[2].type, sent[2].msg], ["Y", { after: 1, limit: 2 }]);
  deliver({ id: sent[2].id, from: 0, type: "Y", msg: { messages: [t(2), t(3)], more: true, max: 7 } });
  assert.deepEqual((await back).messages.map((p) => p.seq), [2, 3]);
  assert.deepEqual(got, [6, 7]); // history, not sync: no message events,
  assert.equal(client.seq.last, 7); // and our place in the timeline stays
  client.stop();
});
