"""Read marks, read receipts and the conversation list (SPEC §4.1; design in push/chat_read.c): R moves a
read mark forward, the reader's other devices and the other user hear of it, and GET /conversations lists a
user's conversations newest first with unread counts that match a recount and a cursor that pages exactly."""
import asyncio

from http_client import Client, test_token
from push_client import Chat, make_friends, new_uid, run, wait_until
import rkeys

READ_REASON = "bad msg: expected {with: uid, mid} or {group: gid, mid}"


def conversations(stack, uid, front=None, **query):
    c = Client(front or stack.nginx_url)
    try:
        tk = test_token(c, uid)
        path = "/conversations" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        return c.get(path, token=tk)
    finally:
        c.close()


def test_R_moves_the_read_mark_and_both_sides_hear_of_it(stack):
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        a1, a2, b1 = await Chat.connect(stack, a), await Chat.connect(stack, a), await Chat.connect(stack, b)
        sent = [await b1.text(a, f"m{i}") for i in range(3)]
        await a1.messages(3)
        await a2.messages(3)
        r = await a1.request("R", {"with": b, "mid": sent[1]["mid"]})
        assert (r["type"], r["msg"]) == ("A", "success")
        mine = await a2.wait_for(lambda p: p["type"] == "r")
        assert mine["msg"] == {"with": b, "mid": sent[1]["mid"]} and mine["from"] == a
        receipt = await b1.wait_for(lambda p: p["type"] == "r")
        assert receipt["msg"] == {"with": a, "mid": sent[1]["mid"]} and receipt["from"] == a
        conv = conversations(stack, a).result["conversations"]
        assert [(x["with"], x["unread"], x["read_mid"]) for x in conv] == [(b, 1, sent[1]["mid"])]
        # an older mark changes nothing: acked, nobody is told, unread unchanged
        r = await a1.request("R", {"with": b, "mid": sent[0]["mid"]})
        assert r["type"] == "A"
        assert [p for p in await a2.collect(0.5) if p["type"] == "r"] == []
        assert conversations(stack, a).result["conversations"][0]["unread"] == 1
        # reading one's own message: the mark moves past everything received before it
        own = await a1.text(b, "mine")
        await a1.request("R", {"with": b, "mid": own["mid"]})
        assert conversations(stack, a).result["conversations"][0]["unread"] == 0
    run(go())


def test_R_for_a_conversation_the_user_is_not_in_or_a_foreign_mid_is_E(stack):
    async def go():
        a, b, c = new_uid(), new_uid(), new_uid()
        make_friends(stack, a, b)
        make_friends(stack, b, c)
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        ab = await ca.text(b, "a to b")
        bc = await cb.text(c, "b to c")
        for msg in ({"with": c, "mid": ab["mid"]},           # a and c never talked
                    {"with": b, "mid": bc["mid"]},           # a message of another conversation
                    {"with": b, "mid": "999999999999999"},   # no such message
                    {"with": b, "mid": str(2**63 - 1)}):
            r = await ca.request("R", msg)
            assert (r["type"], r["msg"]) == ("E", "no such message in that conversation"), (msg, r)
        for msg in ({"with": a, "mid": ab["mid"]}, {"mid": ab["mid"]}, {"with": b}, {"with": b, "mid": -1},
                    {"with": b, "mid": "12a"}, {"with": b, "mid": str(2**63)}, {"with": "x", "mid": ab["mid"]},
                    {"with": b, "group": 5, "mid": ab["mid"]}, 5, None):
            r = await ca.request("R", msg)
            assert (r["type"], r["msg"]) == ("E", READ_REASON), (msg, r)
        r = await ca.request("R", {"group": 12345, "mid": ab["mid"]})
        assert (r["type"], r["msg"]) == ("E", "not a member")
        assert ca.open
    run(go())


def test_unread_counts_match_a_recount(stack):
    """Messages both ways, read marks at arbitrary places; unread = messages after the mark not sent by the
    reader, recounted from the reader's own timeline (Y)."""
    async def go():
        me = new_uid()
        peers = [new_uid() for _ in range(4)]
        c = await Chat.connect(stack, me)
        others = {}
        for p in peers:
            make_friends(stack, me, p)
            others[p] = await Chat.connect(stack, p)
        marks = {}
        for rnd in range(3):
            for k, p in enumerate(peers):
                for i in range(k + 2):
                    await others[p].text(me, f"{rnd}-{i}")
                await c.text(p, f"reply {rnd}")
            for k, p in enumerate(peers[: rnd + 1]):
                y = (await c.request("Y", {"after": 0, "limit": 500}))["msg"]["messages"]
                conv = [m for m in y if p in (m["from"], m["to"])]
                pick = conv[(k * 7 + rnd * 3) % len(conv)]
                await c.request("R", {"with": p, "mid": pick["mid"]})
                marks[p] = max(marks.get(p, 0), pick["seq"])
        y = (await c.request("Y", {"after": 0, "limit": 500}))["msg"]["messages"]
        got = {x["with"]: x for x in conversations(stack, me).result["conversations"]}
        for p in peers:
            conv = [m for m in y if p in (m["from"], m["to"])]
            want = sum(1 for m in conv if m["seq"] > marks.get(p, 0) and m["from"] != me)
            assert got[p]["unread"] == want, (p, got[p], want)
            assert got[p]["last"] == conv[-1]
    run(go())


def _forget(stack, mid):
    """Redis no longer has message mid: every shard's copy deleted, one by one (each copy is its shard's
    slot: a cluster refuses one DEL of keys in two)."""
    r = stack.redis()
    rkeys.delete(r, *rkeys.msg_copies(r, mid))


def test_R_of_a_message_redis_no_longer_has_reads_it_from_mysql(stack):
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        sent = [await cb.text(a, f"m{i}") for i in range(4)]
        with_db = lambda: stack.mysql()  # noqa: E731

        def stored():
            with with_db() as db, db.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM messages WHERE from_uid = %s", (b,))
                return cur.fetchone()[0] == 4
        await wait_until(stored, 10, "persist to store the 4 messages")
        _forget(stack, sent[1]['mid'])
        r = await ca.request("R", {"with": b, "mid": sent[1]["mid"]})
        assert r["type"] == "A", r
        conv = conversations(stack, a).result["conversations"]
        assert conv[0]["unread"] == 2 and conv[0]["read_mid"] == sent[1]["mid"]
        # and the last packet comes from MySQL when Redis no longer has it
        _forget(stack, sent[3]['mid'])
        conv = conversations(stack, a).result["conversations"]
        assert conv[0]["last"]["mid"] == sent[3]["mid"] and conv[0]["last"]["msg"] == "m3"
        assert conv[0]["last"]["seq"] == 4
    run(go())


def test_R_and_H_from_mysql_right_after_mysql_restarted_are_answered(stack):
    """The node's pooled MySQL connections go stale when MariaDB restarts: the first statement on each fails.
    A read (R of a message Redis no longer has, H) is then tried once more on a fresh connection, so the
    client gets its answer, not E "temporarily unavailable"."""
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        sent = [await cb.text(a, f"m{i}") for i in range(4)]

        def stored():
            with stack.mysql() as db, db.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM messages WHERE from_uid = %s", (b,))
                return cur.fetchone()[0] == 4
        await wait_until(stored, 10, "persist to store the 4 messages")
        for m in sent:
            _forget(stack, m["mid"])
        for _ in range(2):  # every pool thread gets a connection to the MariaDB about to restart
            for m in sent:
                assert (await ca.request("R", {"with": b, "mid": m["mid"]}))["type"] == "A"
        stack.stop_mariadb()
        stack.start_mariadb()
        for i in range(8):
            r = await ca.request("R", {"with": b, "mid": sent[i % 4]["mid"]})
            assert r["type"] == "A", (i, r)
        h = await ca.request("H", {"since": 0, "with": b})
        assert h["type"] != "E", h
    run(go())


def test_conversations_page_through_250_each_once_newest_first(stack):
    async def go():
        me = new_uid()
        # four connections, so that 250 sends stay within each one's burst (push.burst)
        conns = [await Chat.connect(stack, me) for _ in range(4)]
        c = conns[0]
        peers = [new_uid() for _ in range(250)]
        for p in peers:
            make_friends(stack, me, p)
        for i, p in enumerate(peers):
            r = await conns[i % 4].text(p, "hi")
            assert r["type"] == "A"
        # the first one gets a new message: it is the newest now
        await c.text(peers[0], "again")
        seen, cursor, pages = [], None, 0
        while True:
            q = {"limit": 40} if cursor is None else {"limit": 40, "cursor": cursor}
            r = conversations(stack, me, **q)
            assert r.status == 200 and r.code == 0, r
            seen += [x["with"] for x in r.result["conversations"]]
            pages += 1
            cursor = r.result["next"]
            if cursor is None:
                break
        assert pages == 7 and len(seen) == 250 and len(set(seen)) == 250
        assert seen == [peers[0]] + peers[1:][::-1]
    run(go())


def test_conversations_bad_query_and_no_token(stack):
    for front in (stack.nginx_url, stack.http_url):
        for q in ("limit=0", "limit=101", "limit=abc", "cursor=-1", "cursor=0", "limit=", "cursor=1e5"):
            c = Client(front)
            tk = test_token(c, new_uid())
            r = c.get("/conversations?" + q, token=tk)
            assert (r.status, r.code) == (400, 2), (front, q, r)
            c.close()
        c = Client(front)
        assert c.get("/conversations").code == 13
        r = c.get("/conversations", token=test_token(c, new_uid()))
        assert r.code == 0 and r.result == {"conversations": [], "next": None}
        c.close()
