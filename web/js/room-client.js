// The room connection (SPEC §5): seed 004's protobuf Req/Reply over binary WebSocket frames, merged batches
// unpacked, heartbeats, member counts, reconnect with backoff.
//
// Events: "state" {state}, "joined", "error" {code, msg}, "message" {bytes, level}, "members" {count}.

import { Backoff } from "./backoff.js";
import { unpackBatch } from "./batch.js";

const PackageType = { UNKNOWN: 0, SIGN_IN: 1, HEARTBEAT: 2, MESSAGE: 3, MEMBERS: 4 };

let protoRoot = null;
/** The room.proto types, loaded once with protobufjs (window.protobuf, from node_modules). */
export async function loadProto(url = "room.proto") {
  if (!protoRoot) protoRoot = await window.protobuf.load(url);
  const t = (name) => protoRoot.lookupType(`magpie.${name}`);
  return { Req: t("Req"), Reply: t("Reply"), Err: t("Err"), SignIn: t("SignIn"), Broadcast: t("BroadcastRoomReq") };
}

export class RoomClient extends EventTarget {
  constructor({ url, token, roomId, heartbeatMs = 20000, membersMs = 3000 }) {
    super();
    Object.assign(this, { url, token, roomId, heartbeatMs, membersMs });
    this.ws = null;
    this.types = null;
    this.stopped = true;
    this.joined = false;
    this.backoff = new Backoff();
    this.timers = [];
  }

  async start() {
    this.types = await loadProto();
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.ws) this.ws.close(1000);
  }

  clearTimers() {
    this.timers.forEach(clearInterval);
    this.timers = [];
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  connect() {
    if (this.stopped) return;
    this.emit("state", { state: "connecting" });
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      const signIn = this.types.SignIn.encode({ token: this.token, roomID: this.roomId }).finish();
      this.sendReq(PackageType.SIGN_IN, signIn);
    };
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.joined = false;
      this.clearTimers();
      this.emit("state", { state: "offline" });
      if (!this.stopped) setTimeout(() => this.connect(), this.backoff.next());
    };
  }

  sendReq(type, data = new Uint8Array()) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(this.types.Req.encode({ type, data }).finish());
    return true;
  }

  onFrame(data) {
    if (!(data instanceof ArrayBuffer)) return;
    let reply;
    try {
      reply = this.types.Reply.decode(new Uint8Array(data));
    } catch {
      return;
    }
    switch (reply.type) {
      case PackageType.UNKNOWN: {
        const err = this.types.Err.decode(reply.data);
        if (err.code === 0 && !this.joined) {
          this.joined = true;
          this.backoff.reset();
          this.emit("state", { state: "online" });
          this.emit("joined", {});
          this.timers.push(setInterval(() => this.sendReq(PackageType.HEARTBEAT), this.heartbeatMs));
          this.timers.push(setInterval(() => this.sendReq(PackageType.MEMBERS), this.membersMs));
          this.sendReq(PackageType.MEMBERS);
        } else if (err.code !== 0) {
          this.emit("error", { code: err.code, msg: err.msg });
          if (err.code === 100 && !this.joined) this.stop(); // a bad token will not get better
        }
        break;
      }
      case PackageType.MESSAGE: {
        const b = this.types.Broadcast.decode(reply.data);
        let messages;
        try {
          messages = unpackBatch(b.data);
        } catch (e) {
          this.emit("error", { code: -1, msg: `bad batch: ${e.message}` });
          return;
        }
        for (const bytes of messages) this.emit("message", { bytes, level: b.msgLv });
        break;
      }
      case PackageType.MEMBERS:
        this.emit("members", { count: Number(new TextDecoder().decode(reply.data)) });
        break;
      default:
        break; // HEARTBEAT's "pong"
    }
  }

  /** Send a message to the room (the server echoes it back to us too). */
  send(bytes, level = 0) {
    const b = this.types.Broadcast.encode({ roomID: this.roomId, msgLv: level, data: bytes }).finish();
    return this.sendReq(PackageType.MESSAGE, b);
  }
}
