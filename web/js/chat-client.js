// The chat connection (SPEC §4): ticket from /IM/token, node from /route, one WebSocket, packets in and
// out, and everything a phone-grade client needs around it -- acks, retries with the same id, pings,
// reconnect with backoff and jitter, and history catch-up so nothing sent while away is missed.
//
// Events (EventTarget): "state" {state: connecting|online|offline|loggedout}, "message" {packet},
// "ack" {id}, "failed" {id, reason}, "closed" {reason} (the server closed us on purpose: C packet).

import { api } from "./api.js";
import { Backoff } from "./backoff.js";

let counter = 0;
/** Packet ids: time + random, as seed 001 suggests; unique per sender. */
export function packetId() {
  counter = (counter + 1) % 1000000;
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${counter}`;
}

export class ChatClient extends EventTarget {
  constructor({ token, userId, pingMs = 20000, pongTimeoutMs = 8000, requestTimeoutMs = 10000 }) {
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
    this.waiting = new Map(); // id -> {resolve, reject, timer} for P, O, H requests
    this.lastTs = 0; // newest server ts seen: history catch-up starts there
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.onOnline = () => this.nudge();
    // A socket that outlived a network change cannot be trusted (and a phone's usually dies anyway):
    // drop it; reconnect and catch-up run when the browser is back online.
    this.onOffline = () => this.ws && this.ws.close(4001, "offline");
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
      this.catchUp();
    }
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
        this.catchUp();
        break;
      case "A":
        if (this.pending.delete(p.id)) this.dispatchEvent(new CustomEvent("ack", { detail: { id: p.id } }));
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
      case "s":
        if (typeof p.ts === "number") this.lastTs = Math.max(this.lastTs, p.ts);
        this.dispatchEvent(new CustomEvent("message", { detail: { packet: p } }));
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
      const timer = setTimeout(() => ws && ws.close(4000, "no pong"), this.pongTimeoutMs);
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

  /** Fetch everything newer than what we have seen, page by page; each arrives as a "message" event
   * (the page drops what it already shows, so overlap is harmless). */
  async catchUp() {
    if (this.lastTs === 0) return;
    let since = this.lastTs - 1;
    for (let page = 0; page < 20; page++) {
      let res;
      try {
        res = await this.history({ since, limit: 500 });
      } catch {
        return;
      }
      for (const p of res.messages) {
        if (typeof p.ts === "number") this.lastTs = Math.max(this.lastTs, p.ts);
        this.dispatchEvent(new CustomEvent("message", { detail: { packet: p, history: true } }));
      }
      if (!res.more || res.messages.length === 0) return;
      since = res.messages[res.messages.length - 1].ts - 1;
    }
  }

  /** Queue a text message; it is sent now if connected, else after the next login, with the same id until
   * acked. Returns the packet. */
  sendText(to, text) {
    const pkt = { id: packetId(), to, type: "t", msg: text };
    this.pending.set(pkt.id, pkt);
    if (this.ws && this.state === "online") this.ws.send(JSON.stringify(pkt));
    return pkt;
  }
}
