"""The t/i send split (push/chat_send.c's top comment; issue 20): with redis.stream_shards = S > 1, a message
between users of two shards runs as the sender's script in the sender's shard, then the recipient's in the
recipient's, each keeping to one slot. Checked here as a client and an operator see it: the A comes once the
message is in both timelines; a failure between the two scripts is completed by the client's retry, acked with
the first mid and seq, delivered and stored once; magpie-persist stores the two stream halves as one row with
both seqs, whichever comes first. The tests that need two shards skip at S = 1 (scripts/dev's
MAGPIE_STREAM_SHARDS=4 runs them); the persist ones run at any S."""
import asyncio
import time

import pytest

from persist_client import Batch, raw_redis, wait_for, xadd_all
from push_client import Chat, make_friends, new_uid, run, wait_until
import rkeys


def _two_shards(stack):
    r = stack.redis()
    if rkeys.shards(r) < 2:
        pytest.skip("needs redis.stream_shards > 1 (MAGPIE_STREAM_SHARDS=4)")
    a = new_uid()
    b = new_uid()
    while rkeys.shard(r, b) == rkeys.shard(r, a):
        b = new_uid()
    make_friends(stack, a, b)
    return r, a, b


def _rows(stack, a, cid):
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT id, from_seq, to_seq, body FROM messages WHERE from_uid = %s AND client_id = %s",
                    (a, cid))
        return [(int(i), fs, ts, body.decode() if isinstance(body, bytes) else body)
                for i, fs, ts, body in cur.fetchall()]


async def _y(c):
    r = await c.request("Y", {"after": 0})
    assert r["type"] == "Y", r
    return [(m["seq"], m["mid"], m["msg"]) for m in r["msg"]["messages"]]


def test_a_message_between_two_shards_is_in_both_timelines_both_halves_and_one_row(stack):
    r, a, b = _two_shards(stack)

    async def go():
        ca, ca2, cb = await Chat.connect(stack, a), await Chat.connect(stack, a), await Chat.connect(stack, b)
        acks = [await ca.text(b, f"m{i}", id=f"split-{i}") for i in range(5)]
        assert [x["type"] for x in acks] == ["A"] * 5 and [x["seq"] for x in acks] == [1, 2, 3, 4, 5]
        got_b = await cb.messages(5)
        assert [(p["seq"], p["mid"], p["msg"]) for p in got_b] == \
            [(i + 1, acks[i]["mid"], f"m{i}") for i in range(5)], "the recipient's seqs, in the sender's order"
        assert [p["seq"] for p in await ca2.messages(5)] == [1, 2, 3, 4, 5]
        assert await _y(ca) == await _y(cb) == [(i + 1, acks[i]["mid"], f"m{i}") for i in range(5)]
        # the stream halves: the sender's shard has fseq only, the recipient's tseq only
        mid = acks[0]["mid"]
        halves = [(k, f) for k in rkeys.every(r, "mq") for _id, f in r.xrange(k) if f.get("mid") == mid]
        if halves:  # magpie-persist may have trimmed them already
            for k, f in halves:
                if k == rkeys.sharded("mq", rkeys.shard(r, a)):
                    assert "fseq" in f and "tseq" not in f, f
                else:
                    assert k == rkeys.sharded("mq", rkeys.shard(r, b)) and "tseq" in f and "fseq" not in f, f
        # KEY_MSG: one copy in each shard, each with its reader's fields (R reads them)
        assert r.hget(rkeys.msg(r, a, mid), "fs") == "1" and r.hget(rkeys.msg(r, b, mid), "ts") == "1"
        for i in range(5):
            await wait_until(lambda: _rows(stack, a, f"split-{i}") == [(int(acks[i]["mid"]), i + 1, i + 1, f"m{i}")],
                             15, f"one row of split-{i} with both seqs")
    run(go())


def test_a_failure_between_the_two_scripts_is_completed_by_the_retry_acked_once_stored_once(stack):
    """The recipient's script fails after the sender's ran (here: the recipient's timeline key is made a
    string, so its XADD fails and the script undoes itself: E). The sender's timeline has the message; the
    retry (same id) finds the sender's dedup key and runs only the recipient's part: A with the first mid and
    seq, one delivery to the recipient, one entry in each timeline, one row with both seqs."""
    r, a, b = _two_shards(stack)

    async def go():
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        tl_b = rkeys.tagged(r, "tl", b)
        r.set(tl_b, "not a stream")
        first = await ca.text(b, "between", id="crash-1")
        assert first["type"] == "E", first
        mine = await _y(ca)
        assert [(s, m) for s, _mid, m in mine] == [(1, "between")], "the sender's part is written"
        assert await cb.collect(0.5) == [], "the recipient got nothing yet"
        assert r.get(rkeys.tagged(r, "seq", b)) in (None, "0"), "the failed part took no seq"
        r.delete(tl_b)
        again = await ca.text(b, "between (the retry's copy)", id="crash-1")
        assert again["type"] == "A" and again["seq"] == 1 and again["mid"] == mine[0][1], again
        got = await cb.messages(1)
        assert (got[0]["seq"], got[0]["mid"], got[0]["msg"]) == (1, again["mid"], "between"), \
            "the first's stored content, not the retry's"
        third = await ca.text(b, "between (once more)", id="crash-1")
        assert (third["type"], third["seq"], third["mid"]) == ("A", 1, again["mid"])
        assert [p for p in await cb.collect(0.5) if p.get("type") in "ti"] == [], "delivered once"
        assert await _y(cb) == [(1, again["mid"], "between")]
        assert await _y(ca) == [(1, again["mid"], "between")]
        nxt = await ca.text(b, "next")
        assert nxt["seq"] == 2 and (await cb.messages(1))[0]["seq"] == 2
        await wait_until(lambda: _rows(stack, a, "crash-1") == [(int(again["mid"]), 1, 1, "between")], 15,
                         "one row with both seqs")
    run(go())


def test_a_message_within_one_shard_still_runs_as_one_script(stack):
    """Same shard (always at S = 1): one stream entry with both seqs, as before the split."""
    r = stack.redis()
    a = new_uid()
    b = new_uid()
    while rkeys.shard(r, b) != rkeys.shard(r, a):
        b = new_uid()
    make_friends(stack, a, b)

    async def go():
        ca = await Chat.connect(stack, a)
        ack = await ca.text(b, "same shard", id="same-1")
        assert ack["type"] == "A"
        await wait_until(lambda: _rows(stack, a, "same-1") == [(int(ack["mid"]), 1, 1, "same shard")], 15,
                         "the row")
        assert r.get(rkeys.tagged(r, "rcv", ack["mid"])) is None, "no recipient's part ran"
    run(go())


def _half(b, e, seq_field, seq):
    h = dict(e)
    h[seq_field] = str(seq).encode()
    return h


def test_persist_stores_the_two_halves_as_one_row_whichever_comes_first(stack):
    """Entries written as the split writes them (push/chat_send.c): the same mid and fields, fseq in one,
    tseq in the other. In either order, in one batch or two, again after both: one row, both seqs."""
    r = raw_redis(stack)
    bt = Batch()
    e1, e2, e3 = bt.entry(), bt.entry(), bt.entry()
    # e1: the recipient's half first, the sender's later (two batches)
    xadd_all(r, [_half(bt, e1, "tseq", 7)])
    # e2: both in one XADD run, the sender's first; e3: the recipient's first
    xadd_all(r, [_half(bt, e2, "fseq", 11), _half(bt, e2, "tseq", 12),
                 _half(bt, e3, "tseq", 22), _half(bt, e3, "fseq", 21)])

    def row(e):
        with stack.mysql() as db, db.cursor() as cur:
            cur.execute("SELECT from_seq, to_seq FROM messages WHERE id = %s", (int(e["mid"]),))
            return cur.fetchall()

    wait_for(lambda: row(e1) == ((None, 7),), 15, "the recipient's half alone: a row with to_seq")
    xadd_all(r, [_half(bt, e1, "fseq", 6)])
    wait_for(lambda: row(e1) == ((6, 7),), 15, "the sender's half fills from_seq")
    wait_for(lambda: row(e2) == ((11, 12),) and row(e3) == ((21, 22),), 15, "both halves in one batch")
    # a half stored again changes nothing (and a wrong seq in a replay does not overwrite the first)
    xadd_all(r, [_half(bt, e1, "fseq", 99), _half(bt, e1, "tseq", 98)])
    marker = bt.entry()
    xadd_all(r, [_half(bt, marker, "fseq", 1)])
    wait_for(lambda: row(marker) == ((1, None),), 15, "a later entry (the replays went before it)")
    assert row(e1) == ((6, 7),)
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM messages WHERE id IN (%s, %s, %s)",
                    (int(e1["mid"]), int(e2["mid"]), int(e3["mid"])))
        assert cur.fetchone()[0] == 3
