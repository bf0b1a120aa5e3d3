"""Timelines and Y sync (SPEC §4.1, design in push/timeline.h): every stored message a user sends or receives
gets the user's next seq; A and every delivered packet carry it; Y serves the timeline from Redis and, for what
Redis no longer has, from MySQL -- contiguous, never skipping an entry."""
import asyncio
import os
import random
import signal
import pytest

from push_client import Chat, Device, make_friends, new_uid, run, wait_until
import rkeys


def test_A_and_every_delivery_carry_their_users_seq(stack):
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        a1, a2 = await Chat.connect(stack, a), await Chat.connect(stack, a)
        b1 = await Chat.connect(stack, b)
        first = await a1.text(b, "one")
        assert first["type"] == "A" and first["seq"] == 1
        assert (await b1.messages(1))[0]["seq"] == 1          # b's first entry
        assert (await a2.messages(1))[0]["seq"] == 1          # a's other device: a's seq
        back = await b1.text(a, "two")
        assert back["seq"] == 2
        got_a1, got_a2 = (await a1.messages(1))[0], (await a2.messages(1))[0]
        assert got_a1["seq"] == got_a2["seq"] == 2 and got_a1["mid"] == back["mid"]
        third = await a2.text(b, "three")
        assert third["seq"] == 3
        assert (await b1.messages(1))[0]["seq"] == 3
        assert (await a1.messages(1))[0]["seq"] == 3
    run(go())


def test_a_retry_gets_the_first_seq_and_a_refused_message_takes_none(stack):
    async def go():
        a, b, stranger = new_uid(), new_uid(), new_uid()
        make_friends(stack, a, b)
        c = await Chat.connect(stack, a)
        first = await c.text(b, "hello", id="same-id")
        again = await c.text(b, "hello", id="same-id")
        assert (again["mid"], again["seq"]) == (first["mid"], first["seq"]) == (again["mid"], 1)
        for bad in ({"to": stranger, "msg": "x"}, {"to": b, "msg": ""}, {"to": a, "msg": "self"},
                    {"to": b, "msg": "y" * 1024}):
            r = await c.text(bad["to"], bad["msg"])
            assert r["type"] == "E", r
        nxt = await c.text(b, "next")
        assert nxt["seq"] == 2, "refused messages took no seq"
        y = (await c.request("Y", {"after": 0}))["msg"]
        assert [m["seq"] for m in y["messages"]] == [1, 2] and y["max"] == 2 and y["more"] is False
    run(go())


def test_Y_bad_input_gets_E_or_the_documented_answer(stack):
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        c = await Chat.connect(stack, a)
        await c.text(b, "x")
        reason = "bad msg: expected {after: seq >= 0, limit?: 1-500}"
        for msg in ({"after": -1}, {"after": "1"}, {"after": 1.5}, {}, 5, None, "after",
                    {"after": 0, "limit": 0}, {"after": 0, "limit": 501}, {"after": 0, "limit": 10**15},
                    {"after": 0, "limit": "9"}):
            r = await c.request("Y", msg)
            assert (r["type"], r["msg"]) == ("E", reason), (msg, r)
        for after in (1, 2, 10**6, 2**63 - 1):   # at or beyond the end: nothing, not more
            r = (await c.request("Y", {"after": after}))["msg"]
            assert r == {"messages": [], "more": False, "max": 1}, (after, r)
        assert c.open
    run(go())


def test_Y_pages_with_limit_and_more(stack):
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        c = await Chat.connect(stack, a)
        for i in range(25):
            await c.text(b, f"m{i}")
        r = (await c.request("Y", {"after": 3, "limit": 10}))["msg"]
        assert [m["seq"] for m in r["messages"]] == list(range(4, 14)) and r["more"] is True and r["max"] == 25
        msgs, top = await c.sync_all(after=13, limit=7)
        assert [m["seq"] for m in msgs] == list(range(14, 26)) and top == 25
        assert [m["msg"] for m in msgs] == [f"m{i}" for i in range(13, 25)]
    run(go())


def _stored_seqs(stack, uid):
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT from_seq FROM messages WHERE from_uid = %s UNION ALL "
                    "SELECT to_seq FROM messages WHERE to_uid = %s", (uid, uid))
        # a seq still NULL: a split message (two shards) whose other half is not stored yet -- not there yet
        return sorted(r[0] for r in cur.fetchall() if r[0] is not None)


def test_Y_serves_from_mysql_what_redis_no_longer_has(stack):
    """Redis keeps the recent part only (timeline.keep_s, timeline.max_entries): with the user's timeline and
    message copies gone from Redis, Y answers the same from MySQL, and joins MySQL's part to Redis' part."""
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        for i in range(30):
            await (ca if i % 3 else cb).text(b if i % 3 else a, f"m{i}")
        before, top = await ca.sync_all()
        assert [m["seq"] for m in before] == list(range(1, 31)) and top == 30
        await wait_until(lambda: _stored_seqs(stack, a) == list(range(1, 31)), 10, "persist to store all 30")
        r = stack.redis()
        # Redis forgets the first 20 entries and every stored packet
        r.xtrim(rkeys.tagged(r, "tl", a), maxlen=10)
        for m in before:
            rkeys.delete(r, *rkeys.msg_copies(r, m['mid']))
        after, top = await ca.sync_all()
        assert after == before and top == 30
        # and everything
        r.delete(rkeys.tagged(r, "tl", a))
        again, top = await ca.sync_all(limit=7)
        assert again == before and top == 30
        # new messages join on: Redis has 31.., MySQL 1..30
        await cb.text(a, "new")
        msgs, top = await ca.sync_all(after=25)
        assert [m["seq"] for m in msgs] == [26, 27, 28, 29, 30, 31] and msgs[-1]["msg"] == "new" and top == 31
    run(go())


def _chaos_run(stack, n, event=None):
    """Two users on different nodes send n messages each way; each user's second device disconnects and
    reconnects at random; `event(step)` may break a server in the middle. Then every device syncs once more
    and must hold exactly its user's timeline: seqs 1..2n, no gap, no duplicate, the same messages."""
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        a1, b1 = Device(stack, a), Device(stack, b)
        a2, b2 = Device(stack, a), Device(stack, b)
        for d in (a1, b1, a2, b2):
            await d.connect()
        done = asyncio.Event()

        async def sender(d, to, tag):
            for i in range(n):
                await d.send(to, f"{tag}{i}", f"{tag}-{i}")
                if event is not None and tag == "a":
                    await event(i)
                d.take(d.chat.inbox if d.chat else [])
                if d.chat:
                    d.chat.inbox = []

        async def flapper(d):
            while not done.is_set():
                await d.listen(random.uniform(0.1, 0.6))
                if d.chat is not None and random.random() < 0.5:
                    await d.chat.close()
                    d.chat = None

        flaps = [asyncio.create_task(flapper(d)) for d in (a2, b2)]
        await asyncio.gather(sender(a1, b, "a"), sender(b1, a, "b"))
        done.set()
        await asyncio.gather(*flaps)
        for d in (a1, b1, a2, b2):
            if d.chat is None or not d.chat.open:
                await d.connect()
            d.take(await d.chat.collect(0.5))
            await d.sync()

        want = 2 * n
        for d in (a1, a2, b1, b2):
            assert sorted(d.have) == list(range(1, want + 1)), \
                f"uid {d.uid}: missing {sorted(set(range(1, want + 1)) - set(d.have))[:10]}"
        for x, y in ((a1, a2), (b1, b2)):
            assert x.have == y.have, "both devices of a user hold the same timeline"
        # one stored message per acked one, each in both timelines; each sender's messages in sending order
        mids_a = {v[0] for v in a1.have.values()}
        assert mids_a == {v[0] for v in b1.have.values()} and len(mids_a) == want
        for d, (mine, other) in ((a1, ("a", "b")), (b1, ("b", "a"))):
            for tag in (mine, other):
                texts = [d.have[s][2] for s in sorted(d.have) if d.have[s][2].startswith(tag)]
                assert texts == [f"{tag}{i}" for i in range(n)]
        acked = {**{m: s for m, s in a1.acks.values()}}
        assert all(a1.have[s][0] == m for m, s in acked.items()), "A carried the sender's seq of that mid"
        # MySQL ends up with both users' seqs 1..2n, each once
        await wait_until(lambda: _stored_seqs(stack, a) == list(range(1, want + 1)) and
                         _stored_seqs(stack, b) == list(range(1, want + 1)), 30,
                         "persist to store every message with both seqs")
    run(go())


def test_1000_messages_both_ways_while_second_devices_come_and_go(stack):
    _chaos_run(stack, 500)


def test_timelines_survive_kill_9_of_a_push_node_of_persist_and_a_redis_restart(stack):
    """The same 1,000 messages while push node 2 and magpie-persist are killed with SIGKILL and restarted, and
    Redis is restarted (a clean restart: its AOF holds everything acked)."""
    if stack.cluster:
        # Checked before the run: the restart below happens inside it, where the skip of stop_redis on a
        # cluster would end the run half way (a cluster has no one Redis: test_cluster_failover kills a master).
        pytest.skip("restarts the one Redis: a cluster has none (test_cluster_failover kills one master)")
    async def event(i):
        loop = asyncio.get_running_loop()
        if i == 100:
            await loop.run_in_executor(None, stack.kill_daemon, "push2", 9)
            stack.start_daemon("push2")
        elif i == 220:
            await loop.run_in_executor(None, stack.kill_daemon, "persist", 9)
            stack.start_daemon("persist")
        elif i == 340:
            await loop.run_in_executor(None, stack.stop_redis)
            await asyncio.sleep(0.5)
            await loop.run_in_executor(None, stack.start_redis)
    _chaos_run(stack, 500, event)


def test_a_redis_that_lost_its_counters_gets_them_back_from_mysql_and_reuses_no_seq(stack):
    """Redis replaced or flushed: the counters and every shard's mp:{<shard>}:seq:restored are gone, MySQL has the messages. Y serves
    from MySQL meanwhile; a message of a user without a counter is refused (E, no seq taken) until
    magpie-persist has raised every counter to MySQL's highest seq, then it continues after it."""
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        for i in range(6):
            await (ca if i % 2 else cb).text(b if i % 2 else a, f"m{i}")
        before, top = await ca.sync_all()
        assert top == 6
        await wait_until(lambda: _stored_seqs(stack, a) == list(range(1, 7)), 10, "persist to store all 6")
        r = stack.redis()
        os.kill(stack.daemon_pid("persist"), signal.SIGSTOP)  # hold the restore until the test has looked
        try:
            rkeys.delete(r, *rkeys.every(r, "seq:restored"), rkeys.tagged(r, "seq", a), rkeys.tagged(r, "tl", a),
                         *[k for m in before for k in rkeys.msg_copies(r, m['mid'])])
            again, top = await ca.sync_all()
            assert again == before and top == 6, "Y without a counter in Redis: MySQL's"
            refused = await ca.text(b, "while counters are missing")
            assert (refused["type"], refused["msg"]) == ("E", "temporarily unavailable, retry")
        finally:
            os.kill(stack.daemon_pid("persist"), signal.SIGCONT)
        await wait_until(lambda: rkeys.restored(r) == rkeys.shards(r), 10,
                         "persist to restore the counters")
        assert int(r.get(rkeys.tagged(r, "seq", a))) == 6
        nxt = await ca.text(b, "after the loss")
        assert nxt["type"] == "A" and nxt["seq"] == 7
        got = await cb.wait_for(lambda p: p.get("type") == "t" and p["msg"] == "after the loss")
        assert got["seq"] == 7   # b's counter was still there
        msgs, top = await ca.sync_all(after=5)
        assert [m["seq"] for m in msgs] == [6, 7] and top == 7
    run(go())
