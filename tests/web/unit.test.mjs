// Unit tests of the web client's pure parts (no browser needed).
import { test } from "node:test";
import assert from "node:assert/strict";

import { packBatch, unpackBatch } from "../../web/js/batch.js";
import { Backoff } from "../../web/js/backoff.js";

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
