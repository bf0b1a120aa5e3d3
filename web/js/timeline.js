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

/** The chat list: most recent conversation first (by the user's seq of its latest message), then friends
 * never talked to, by uid. */
export function compareChats(a, b) {
  const sa = a.lastSeq ?? 0;
  const sb = b.lastSeq ?? 0;
  if (sa !== sb) return sb - sa;
  return a.uid - b.uid;
}

/** A conversation as the page keeps it. */
export function newChat(uid) {
  return { uid, lastSeq: 0, last: null, unread: 0, readMid: null, peerReadSeq: 0, messages: new Map() };
}

/** A stored message (packet with seq) of conversation `c` reached this client live or by Y. Updates the
 * latest message and, when `me` did not send it and the count does not include it yet, unread. Returns
 * whether it is the conversation's newest. */
export function applyMessage(c, p, me) {
  if (!Number.isSafeInteger(p.seq) || p.seq <= c.lastSeq) return false;
  c.lastSeq = p.seq;
  c.last = p;
  if (p.from !== me) c.unread += 1;
  return true;
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
    return;
  }
  let newer = 0;
  for (const m of c.messages.values()) if (m.seq > seq && m.from !== me) newer += 1;
  c.unread = entry.unread + newer;
}

/** A read mark for conversation `c` (R from this page, or r from the user's other device). Returns false
 * when the count cannot be known here: the mark is not the latest message, and which of the messages after
 * it this client holds is not knowable (a conversation's seqs are not contiguous); the server knows. */
export function applyReadMark(c, mid) {
  c.readMid = mid;
  if (!c.last || c.last.mid !== mid) return false;
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
