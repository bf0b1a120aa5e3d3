// Seed 004's merged delivery: BroadcastRoomReq.data holds one or more messages, each a 4-byte little-endian
// length followed by that many bytes.

/** Split a merged batch into its messages (Uint8Array views). Throws on a truncated or malformed batch
 * rather than returning part of it. */
export function unpackBatch(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let off = 0;
  while (off < bytes.length) {
    if (off + 4 > bytes.length) throw new Error(`truncated length at byte ${off}`);
    const len = view.getUint32(off, true);
    off += 4;
    if (len > bytes.length - off) throw new Error(`message of ${len} bytes overruns the batch at byte ${off}`);
    out.push(bytes.subarray(off, off + len));
    off += len;
  }
  return out;
}

/** The inverse, for tests and for clients that want to build a batch. */
export function packBatch(messages) {
  const parts = messages.map((m) => (typeof m === "string" ? new TextEncoder().encode(m) : m));
  const total = parts.reduce((n, p) => n + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let off = 0;
  for (const p of parts) {
    view.setUint32(off, p.length, true);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}
