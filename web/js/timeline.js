// The pure parts of the web client's timeline (SPEC §4.1): which seqs it has handled, how a conversation's
// unread count follows messages and read marks, and the orders things are shown in. No DOM, no network:
// tests/web/unit.test.mjs runs them under node.
//
// A user's seqs are 1, 2, 3... with no gaps, one per stored message the user sent or received, the same on
// every device. So "handled everything up to `last`" is one number, kept across reloads, and a delivered
// seq more than one past it means something was missed: Y {after: last} fetches it. Seqs also settle
// "is this new?" exactly: a message is new to a conversation's unread count when its seq is above the
// conversation's latest seq that count already includes.

/** Which of the user's seqs this client has handled: every seq <= `last`, and `ahead` (delivered past a gap,
 * waiting for Y to fill it). `last` null: a fresh browser that has no place in the timeline yet. */
export class SeqTracker {
  constructor(last = null) {
    this.last = Number.isSafeInteger(last) && last >= 0 ? last : null;
    this.ahead = new Set();
    // A fresh start skips the timeline up to its max at that moment (history is H's and /conversations'
    // job). A live delivery in that range can still come (stored just before the baseline, delivered just
    // after): it is new. The server delivers a packet once per connection, so this needs no bookkeeping.
    this.skip = null; // {from, to}: live seqs in (from, to] are new
  }

  /** Whether a Y is needed: no place yet, or a gap below something delivered. */
  get behind() {
    return this.last === null || this.ahead.size > 0;
  }

  /** A seq that arrived: `live` on a delivery or an A, else in a Y answer. Returns whether it is new. */
  handle(seq, live) {
    if (!Number.isSafeInteger(seq) || seq < 1) return true; // not a timeline entry: not ours to judge
    if (this.ahead.has(seq)) return false;
    if (this.last !== null && seq <= this.last) {
      return live && this.skip !== null && seq > this.skip.from && seq <= this.skip.to;
    }
    this.ahead.add(seq);
    this.advance();
    return true;
  }

  /** A fresh start's place: everything up to `max` counts as handled. */
  baseline(max) {
    if (this.last !== null) return;
    this.last = Math.max(0, max);
    this.skip = { from: 0, to: this.last };
    this.advance();
  }

  /** The server's timeline ends below our place (a dev stack was reset, or Redis lost its last second under
   * appendfsync everysec and gave those seqs again): continue from its end instead of waiting forever. */
  rebase(max) {
    if (this.last === null || max >= this.last) return false;
    this.last = Math.max(0, max);
    this.ahead.clear();
    this.skip = null;
    return true;
  }

  advance() {
    if (this.last === null) return;
    for (const s of this.ahead) if (s <= this.last) this.ahead.delete(s);
    while (this.ahead.delete(this.last + 1)) this.last += 1;
  }
}

/** The seq stored for a user in this browser (null: none or unreadable). */
export function loadSeq(storage, key) {
  const v = storage.getItem(key);
  const n = v === null ? NaN : Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** Store a user's seq; several tabs of one user share the key, so it only moves forward (a rebase stores
 * the lower value on purpose: `force`). */
export function saveSeq(storage, key, seq, force = false) {
  if (seq === null) return;
  const old = loadSeq(storage, key);
  if (force || old === null || seq > old) storage.setItem(key, String(seq));
}

/** Messages in a conversation: timeline entries by seq; before them history that predates seqs (by time);
 * after them what is still being sent (by time). */
export function compareMessages(a, b) {
  const rank = (m) => (Number.isSafeInteger(m.seq) ? 1 : m.state === "pending" || m.state === "failed" ? 2 : 0);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  return ra === 1 ? a.seq - b.seq : (a.ts ?? 0) - (b.ts ?? 0);
}

/** The chat list: most recent conversation first (by the user's seq of its latest entry), then groups and
 * friends never talked to, groups first, each by id. */
export function compareChats(a, b) {
  const sa = a.lastSeq ?? 0;
  const sb = b.lastSeq ?? 0;
  if (sa !== sb) return sb - sa;
  if (Boolean(a.gid) !== Boolean(b.gid)) return a.gid ? -1 : 1;
  return (a.gid ?? a.uid) - (b.gid ?? b.uid);
}

/** A 1:1 conversation as the page keeps it. `last` is its latest timeline entry; `lastMsg` {mid, seq} its
 * latest message (what R can mark: in a group the latest entry may be an s event, which R refuses). */
export function newChat(uid) {
  return { key: `u${uid}`, uid, lastSeq: 0, last: null, lastMsg: null, unread: 0, readMid: null, peerReadSeq: 0, messages: new Map() };
}

/** A group conversation (SPEC §4.2): the same, keyed apart from users (group ids and uids may be equal). */
export function newGroupChat(gid) {
  return { ...newChat(0), key: `g${gid}`, uid: undefined, gid };
}

/** Whether a packet (or a stored message) is a message: counted as unread and markable with R. A group's s
 * events are timeline entries, but the server counts only its g messages. */
export function isMessage(p) {
  return p.type === "t" || p.type === "i" || p.type === "g";
}

/** A stored entry (packet with seq) of conversation `c` reached this client live or by Y. Updates the
 * latest entry and, for a message `me` did not send that the count does not include yet, unread; `me`'s own
 * g moves the read mark to it (the server does the same, push/group.h). Returns whether it is the
 * conversation's newest. */
export function applyMessage(c, p, me) {
  if (!Number.isSafeInteger(p.seq) || p.seq <= c.lastSeq) return false;
  c.lastSeq = p.seq;
  c.last = p;
  if (isMessage(p)) {
    c.lastMsg = { mid: p.mid, seq: p.seq };
    if (p.from !== me) {
      c.unread += 1;
    } else if (p.type === "g") {
      c.unread = 0;
      c.readMid = p.mid;
    }
  }
  return true;
}

/** A message of `c` that came as history (H, or the timeline paged back for a group), not counted: it is
 * the latest message when it is newer than the one known and not past the latest entry (a group's latest
 * entry may be an s event after it; the history of a group is a contiguous part of the timeline, so the
 * newest message held is the newest there is). */
export function noteHistory(c, p) {
  if (!isMessage(p) || !Number.isSafeInteger(p.seq) || p.seq > c.lastSeq) return;
  if (!c.lastMsg || p.seq > c.lastMsg.seq) c.lastMsg = { mid: p.mid, seq: p.seq };
}

/** Merge one entry of GET /conversations into conversation `c`. The server's count is exact for what it
 * had; what this client got after that (seq above the entry's) is added from the messages it holds. */
export function mergeConversation(c, entry, me) {
  const seq = entry.last && Number.isSafeInteger(entry.last.seq) ? entry.last.seq : 0;
  c.readMid = entry.read_mid ?? null;
  if (seq >= c.lastSeq) {
    c.lastSeq = seq;
    c.last = entry.last;
    c.unread = entry.unread;
    if (entry.last && isMessage(entry.last) && (!c.lastMsg || seq >= c.lastMsg.seq)) {
      c.lastMsg = { mid: entry.last.mid, seq };
    }
    return;
  }
  let unread = entry.unread;
  const newer = [...c.messages.values()].filter((m) => m.seq > seq && isMessage(m)).sort((a, b) => a.seq - b.seq);
  for (const m of newer) {
    if (m.from !== me) unread += 1;
    else if (m.type === "g") unread = 0;
  }
  c.unread = unread;
}

/** A read mark for conversation `c` (R from this page, or r from the user's other device). Returns false
 * when the count cannot be known here: the mark is not the latest message, and which of the messages after
 * it this client holds is not knowable (a conversation's seqs are not contiguous); the server knows. */
export function applyReadMark(c, mid) {
  c.readMid = mid;
  if (!c.lastMsg || c.lastMsg.mid !== mid) return false;
  c.unread = 0;
  return true;
}

/** A read receipt from the peer for `mid`: the peer has read our messages up to that one. */
export function applyReceipt(c, mid) {
  const m = [...c.messages.values()].find((x) => x.mid === mid);
  if (!m || !Number.isSafeInteger(m.seq) || m.seq <= c.peerReadSeq) return false;
  c.peerReadSeq = m.seq;
  return true;
}
