// The chat connection (SPEC §4, §4.1): ticket from /IM/token, node from /route, one WebSocket, packets in
// and out, and everything a phone-grade client needs around it -- acks, retries with the same id, pings,
// reconnect with backoff and jitter, and sync by seq so nothing stored while away, or lost on the way, is
// missed and nothing is handled twice.
//
// Sync (SPEC §4.1): the client keeps the highest seq it handled with every one before it (`seq.last`,
// stored per user in localStorage so a reload resumes). After every login, and whenever a delivered seq is
// more than one past it, it sends Y {after: last} and repeats while "more"; each packet of the answer it has
// not handled yet becomes a "message" event. A browser with no stored seq starts at the timeline's end
// (the page shows older messages from H, GET /conversations, and for groups the timeline read back).
//
// Events (EventTarget): "state" {state: connecting|online|offline|loggedout}, "message" {packet, synced}
// (t, i, g and s packets), "ack" {id, mid, seq}, "failed" {id, reason}, "read" {packet} (an r packet),
// "synced" {last} (caught up), "servererror" {reason}, "closed" {reason} (the server closed us on purpose:
// C packet).

import { api } from "./api.js";
import { Backoff } from "./backoff.js";
import { SeqTracker, loadSeq, saveSeq } from "./timeline.js";

const SYNC_LIMIT = 200; // Y page size (the server allows 1..500)
const START_AT_END = Number.MAX_SAFE_INTEGER; // Y after this: no messages, just the timeline's max

let counter = 0;
/** Packet ids: time + random, as seed 001 suggests; unique per sender. */
export function packetId() {
  counter = (counter + 1) % 1000000;
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${counter}`;
}

export class ChatClient extends EventTarget {
  constructor({ token, userId, pingMs = 20000, pongTimeoutMs = 8000, requestTimeoutMs = 10000, storage = localStorage }) {
    super();
    this.token = token;
    this.userId = userId;
    this.pingMs = pingMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.requestTimeoutMs = requestTimeoutMs;
    this.ws = null;
    this.state = "offline";
    this.stopped = true;
    this.backoff = new Backoff();
    this.pending = new Map(); // id -> outgoing packet, until A (or E)
    this.waiting = new Map(); // id -> {resolve, reject, timer} for P, O, H, Y, R requests
    this.storage = storage;
    this.seqKey = `magpie.web.seq.${userId}`;
    this.seq = new SeqTracker(loadSeq(storage, this.seqKey));
    this.syncing = false; // a Y loop is running
    this.syncAgain = false; // something asked for another while it ran
    this.syncBackoff = new Backoff({ base: 1000, max: 30000 });
    this.syncTimer = null;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.onOnline = () => this.nudge();
    // A socket that outlived a network change cannot be trusted (and a phone's usually dies anyway):
    // drop it; reconnect and catch-up run when the browser is back online.
    this.onOffline = () => this.drop(this.ws, 4001, "offline");
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.syncTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000);
    this.setState("offline");
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  async connect() {
    clearTimeout(this.reconnectTimer);
    if (this.stopped || this.ws) return;
    this.setState("connecting");
    const route = await api("/route", { token: this.token });
    const ticket = route.code === 0 ? await api("/IM/token", { token: this.token }) : route;
    if (this.stopped) return;
    if (ticket.code === 13) {
      this.stopped = true;
      this.setState("loggedout");
      return;
    }
    if (route.code !== 0 || ticket.code !== 0) {
      this.setState("offline");
      this.scheduleReconnect();
      return;
    }
    const url = `${route.result.ws_url.replace(/\/$/, "")}/${encodeURIComponent(ticket.result.wstoken)}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.onPacket(ev.data);
    ws.onclose = () => this.onClose(ws);
    ws.onerror = () => {}; // onclose follows and handles it
  }

  scheduleReconnect(delay = this.backoff.next()) {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** The network may be back (or flaky): check the connection now instead of waiting for the timers. */
  nudge() {
    if (this.stopped) return;
    if (!this.ws) {
      this.backoff.reset();
      this.connect();
    } else if (this.state === "online") {
      this.ping().catch(() => {});
      this.sync();
    }
  }

  /** Stop using a socket at once: when the network is gone its close handshake may not finish for a long time,
   * and neither the state nor the requests waiting on it should wait for that. Its onclose, when it comes,
   * finds it replaced (onClose ignores it), and nothing it still receives is read. */
  drop(ws, code, reason) {
    if (!ws) return;
    ws.onmessage = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this.onClose(ws);
  }

  onClose(ws) {
    if (this.ws !== ws) return;
    this.ws = null;
    clearInterval(this.pingTimer);
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new Error("connection closed"));
      this.waiting.delete(id);
    }
    if (this.stopped) return;
    this.setState("offline");
    this.scheduleReconnect();
  }

  onPacket(text) {
    let p;
    try {
      p = JSON.parse(text);
    } catch {
      return;
    }
    if (!p || typeof p.type !== "string") return;
    switch (p.type) {
      case "L":
        this.backoff.reset();
        this.setState("online");
        this.startPings();
        for (const pkt of this.pending.values()) this.ws.send(JSON.stringify(pkt)); // same ids: no duplicates
        this.sync();
        break;
      case "A":
        if (this.pending.delete(p.id)) {
          // Our own message is in our timeline too: its seq is handled (the page shows it already).
          if (Number.isSafeInteger(p.seq)) this.live(p.seq);
          this.dispatchEvent(new CustomEvent("ack", { detail: { id: p.id, mid: p.mid, seq: p.seq } }));
        }
        this.resolve(p);
        break;
      case "E":
        if (this.pending.delete(p.id)) {
          this.dispatchEvent(new CustomEvent("failed", { detail: { id: p.id, reason: String(p.msg) } }));
        } else if (!this.reject(p)) {
          this.dispatchEvent(new CustomEvent("servererror", { detail: { reason: String(p.msg) } }));
        }
        break;
      case "C":
        this.stopped = ["logout", "kicked"].includes(p.msg);
        this.dispatchEvent(new CustomEvent("closed", { detail: { reason: String(p.msg) } }));
        if (this.stopped) this.setState("loggedout");
        break;
      case "t":
      case "i":
      case "g":
      case "s":
        // A packet without a seq (a system event outside the timeline) is passed on as it is.
        if (!Number.isSafeInteger(p.seq) || this.live(p.seq)) {
          this.dispatchEvent(new CustomEvent("message", { detail: { packet: p, synced: false } }));
        }
        break;
      case "r":
        this.dispatchEvent(new CustomEvent("read", { detail: { packet: p } }));
        break;
      default:
        this.resolve(p); // P, O, H, T answers
    }
  }

  resolve(p) {
    const w = this.waiting.get(p.id);
    if (!w) return false;
    clearTimeout(w.timer);
    this.waiting.delete(p.id);
    w.resolve(p);
    return true;
  }

  reject(p) {
    const w = this.waiting.get(p.id);
    if (!w) return false;
    clearTimeout(w.timer);
    this.waiting.delete(p.id);
    w.reject(new Error(String(p.msg)));
    return true;
  }

  /** Send a command packet and wait for its answer (the packet with the same id). */
  request(type, msg) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.state !== "online") {
        reject(new Error("not connected"));
        return;
      }
      const id = packetId();
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error("timeout"));
      }, this.requestTimeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, to: 0, type, msg }));
    });
  }

  ping() {
    return this.request("P", "ping");
  }

  startPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      const timer = setTimeout(() => this.drop(ws, 4000, "no pong"), this.pongTimeoutMs);
      this.ping().then(() => clearTimeout(timer), () => {});
    }, this.pingMs);
  }

  async online(uid) {
    const p = await this.request("O", String(uid));
    return p.msg;
  }

  async history({ since = 0, withUid, limit = 100 } = {}) {
    const msg = { since, limit };
    if (withUid) msg.with = withUid;
    const p = await this.request("H", msg);
    return p.msg;
  }

  /** A seq delivered on the connection: whether it is new; a gap (or no place yet) starts a Y. */
  live(seq) {
    const isNew = this.seq.handle(seq, true);
    this.saveSeq();
    if (this.seq.behind) this.sync();
    return isNew;
  }

  saveSeq(force = false) {
    try {
      saveSeq(this.storage, this.seqKey, this.seq.last, force);
    } catch {
      // storage full or refused: the seq lives on in memory; a reload then starts at the timeline's end
    }
  }

  /** Y until caught up: after a login, on a gap, when the network may be back. One loop at a time; a call
   * while it runs makes it go round once more. An E ("temporarily unavailable, retry"), a timeout, or an
   * answer that cannot go on yet is retried with backoff; a closed connection syncs again on the next login. */
  async sync() {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    if (this.stopped || this.state !== "online") return;
    clearTimeout(this.syncTimer);
    this.syncing = true;
    const ws = this.ws;
    let rounds = 0;
    let failed = false;
    try {
      do {
        this.syncAgain = false;
        rounds += 1;
        if (this.seq.last === null) {
          const res = await this.request("Y", { after: START_AT_END, limit: 1 });
          this.seq.baseline(Number(res.msg.max) || 0);
          this.saveSeq();
        }
        for (;;) {
          const res = await this.request("Y", { after: this.seq.last, limit: SYNC_LIMIT });
          const { messages = [], more = false, max = 0 } = res.msg ?? {};
          if (this.seq.rebase(max)) {
            this.saveSeq(true);
            continue;
          }
          for (const p of messages) {
            if (this.seq.handle(p.seq, false)) {
              this.dispatchEvent(new CustomEvent("message", { detail: { packet: p, synced: true } }));
            }
          }
          this.saveSeq();
          if (!more) break;
          if (messages.length === 0) throw new Error("sync cannot go on yet");
        }
      } while (this.syncAgain || (this.seq.behind && rounds < 3));
      // Still a hole below a delivered seq after answers that say "nothing more": not tight-looping on it.
      if (this.seq.behind) throw new Error("gap not filled yet");
      this.syncBackoff.reset();
      this.dispatchEvent(new CustomEvent("synced", { detail: { last: this.seq.last } }));
    } catch {
      failed = true;
    } finally {
      this.syncing = false;
    }
    if (!failed || this.stopped || this.state !== "online") return;
    if (this.ws !== ws) {
      this.sync(); // it failed with the old connection; the new one's login asked for a sync meanwhile
    } else {
      this.syncTimer = setTimeout(() => this.sync(), this.syncBackoff.next() + 200);
    }
  }

  /** R: the user has read the conversation with `withUid` up to message `mid`. */
  async read(withUid, mid) {
    const p = await this.request("R", { with: withUid, mid });
    return p.msg;
  }

  /** R for a group (SPEC §4.1): read up to `mid`, which must be a g of that group. */
  async readGroup(gid, mid) {
    const p = await this.request("R", { group: gid, mid });
    return p.msg;
  }

  /** One page of the timeline as it is (Y {after, limit}), outside the sync: what it answers is history and
   * does not move this client's place. */
  async timeline(after, limit) {
    const p = await this.request("Y", { after, limit });
    return p.msg ?? {};
  }

  /** Queue a text message; it is sent now if connected, else after the next login, with the same id until
   * acked. Returns the packet. */
  sendText(to, text) {
    return this.queue({ id: packetId(), to, type: "t", msg: text });
  }

  /** Queue a message to group `gid` (SPEC §4.2: g), like sendText. */
  sendGroup(gid, text) {
    return this.queue({ id: packetId(), to: gid, type: "g", msg: text });
  }

  queue(pkt) {
    this.pending.set(pkt.id, pkt);
    if (this.ws && this.state === "online") this.ws.send(JSON.stringify(pkt));
    return pkt;
  }
}
