"""magpie-push, SPEC §4: every packet of the chat protocol and its answer, as a client sees it, through
nginx to the two nodes, including every error case the table names."""
import json
import time
import uuid

import pytest

from push_client import Chat, make_friends, new_uid, run, stream_entries, ticket
import rkeys


def test_good_ticket_gets_L_login_in(stack):
    async def go():
        for query in (False, True):  # /ws/<ticket> and /ws?token=<ticket>
            c = await Chat.connect(stack, query=query)
            assert c.login["type"] == "L"
            assert c.login["from"] == 0
            assert c.login["msg"] == "login in"
            assert isinstance(c.login["id"], str) and c.login["id"]
            await c.close()
    run(go())


def test_P_is_answered_with_pong_and_the_same_id(stack):
    async def go():
        c = await Chat.connect(stack)
        for id in ("p1", "ping-" + "x" * 59, "日本"):
            reply = await c.request("P", "ping", id=id)
            assert reply == {"id": id, "from": 0, "type": "P", "msg": "pong"}
        reply = await c.request("P")  # "msg can be empty" (seed 001)
        assert reply["type"] == "P" and reply["msg"] == "pong"
    run(go())


def test_t_to_a_friend_is_acked_then_delivered_with_from_to_ts_mid(stack):
    async def go():
        a, b = await Chat.connect(stack), await Chat.connect(stack)
        make_friends(stack, a.uid, b.uid)
        before = int(time.time() * 1000)
        ack = await a.text(b.uid, "hello 你好 👋", id="m-1")
        assert ack["type"] == "A" and ack["id"] == "m-1" and ack["msg"] == "success" and ack["from"] == 0
        got = await b.wait_for(lambda p: p["type"] == "t")
        assert got["id"] == "m-1"
        assert got["from"] == a.uid and got["to"] == b.uid
        assert got["msg"] == "hello 你好 👋"
        assert before - 1000 <= got["ts"] <= int(time.time() * 1000) + 1000
        assert isinstance(got["mid"], str) and int(got["mid"]) > 0
        assert got["mid"] == ack["mid"]
        # The A means it is durably queued: the stream entry is there with exactly stream.h's fields.
        entries = [e for e in stream_entries(stack, a.uid) if e["cid"] == "m-1"]
        if entries:  # magpie-persist may already have moved and trimmed it
            fields = {"v", "mid", "from", "to", "cid", "type", "body", "ts"}
            r = stack.redis()
            if rkeys.shard(r, a.uid) == rkeys.shard(r, b.uid):
                assert set(entries[0]) == fields | {"fseq", "tseq"}
            else:  # two shards: a half each (push/chat_send.c's split), the sender's or the recipient's
                assert all(set(e) in (fields | {"fseq"}, fields | {"tseq"}) for e in entries), entries
            assert entries[0]["body"] == "hello 你好 👋" and entries[0]["mid"] == got["mid"]
    run(go())


def test_i_image_id_to_a_friend_is_delivered_like_t(stack):
    async def go():
        a, b = await Chat.connect(stack), await Chat.connect(stack)
        make_friends(stack, a.uid, b.uid)
        ack = await a.text(b.uid, "img:8f3a2c", type="i")
        assert ack["type"] == "A"
        got = await b.wait_for(lambda p: p["type"] == "i")
        assert got["msg"] == "img:8f3a2c" and got["from"] == a.uid and got["to"] == b.uid
    run(go())


def test_t_of_1023_characters_passes_and_1024_is_too_long(stack):
    async def go():
        a, b = await Chat.connect(stack), await Chat.connect(stack)
        make_friends(stack, a.uid, b.uid)
        ok = "字" * 1023
        assert (await a.text(b.uid, ok))["type"] == "A"
        assert (await b.wait_for(lambda p: p["type"] == "t"))["msg"] == ok
        bad = await a.text(b.uid, "字" * 1024, id="long")
        assert bad == {"id": "long", "from": 0, "type": "E", "msg": "message too long"}
        bad = await a.text(b.uid, "x" * 1024, id="long2")
        assert bad["type"] == "E" and bad["msg"] == "message too long"
        assert not await b.collect(0.3), "a refused message must not be delivered"
    run(go())


def test_t_errors_name_the_reason_with_the_same_id(stack):
    async def go():
        a, b, stranger = await Chat.connect(stack), await Chat.connect(stack), await Chat.connect(stack)
        make_friends(stack, a.uid, b.uid)
        cases = [
            ({"to": stranger.uid, "msg": "hi"}, "not friends"),
            ({"to": b.uid, "msg": ""}, "empty message"),
            ({"to": a.uid, "msg": "me"}, "cannot send to yourself"),
            ({"to": 0, "msg": "system?"}, "missing or bad to: expected a user id"),
            ({"msg": "nobody"}, "missing or bad to: expected a user id"),
            ({"to": str(b.uid), "msg": "string to"}, "missing or bad to: expected a user id"),
            ({"to": b.uid}, "missing or bad msg"),
            ({"to": b.uid, "msg": {"text": "object"}}, "missing or bad msg"),
        ]
        for i, (fields, reason) in enumerate(cases):
            for type in "ti":
                id = f"e{i}{type}"
                await a.send(dict(fields, id=id, type=type))
                reply = await a.wait_for(lambda p: p["id"] == id)
                assert reply == {"id": id, "from": 0, "type": "E", "msg": reason}, fields
        assert not await stranger.collect(0.3)
        assert not [p for p in await b.collect(0.3) if p["type"] in "ti"]
        assert (await a.request("P"))["type"] == "P", "errors keep the connection open"
        assert not [e for e in stream_entries(stack, a.uid)], "nothing refused is queued"
    run(go())


def test_O_online_anywhere_in_the_cluster_and_offline(stack):
    async def go():
        a = await Chat.connect_on(stack, 1)
        b = await Chat.connect_on(stack, 2)
        for asker, other in ((a, b), (b, a)):
            reply = await asker.request("O", other.uid)
            assert reply["type"] == "O" and reply["msg"] == {"uid": other.uid, "online": True}
            reply = await asker.request("O", str(other.uid))  # seed 001 sends ids as strings too
            assert reply["msg"] == {"uid": other.uid, "online": True}
        nobody = new_uid()
        reply = await a.request("O", nobody)
        assert reply["msg"] == {"uid": nobody, "online": False}
        # Within 1 s of leaving, O says offline from the other node.
        await b.close()
        t0 = time.monotonic()
        while (await a.request("O", b.uid))["msg"]["online"]:
            assert time.monotonic() - t0 < 1.0
        # ...and online again within 1 s of coming back.
        b2 = await Chat.connect_on(stack, 2, uid=b.uid)
        t0 = time.monotonic()
        while not (await a.request("O", b.uid))["msg"]["online"]:
            assert time.monotonic() - t0 < 1.0
        await b2.close()
    run(go())


def test_O_with_a_bad_uid_is_E(stack):
    async def go():
        c = await Chat.connect(stack)
        for msg in (None, "abc", 0, -5, [1], {"uid": 1}):
            reply = await c.request("O", msg)
            assert reply["type"] == "E" and reply["msg"] == "bad msg: expected a user id", msg
    run(go())


def _insert_history(stack, rows):
    with stack.mysql() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO messages (id, client_id, from_uid, to_uid, type, body, created_ms) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def test_H_returns_what_the_user_sent_and_received_after_since_oldest_first(stack):
    """Rows written the way magpie-persist writes them (messages table, sql/001_init.sql)."""
    async def go():
        me, peer, other = new_uid(), new_uid(), new_uid()
        base_id = new_uid() * 1000
        t0 = 1_700_000_000_000
        rows = [
            (base_id + 1, "c1", me, peer, "t", "first", t0 + 1),
            (base_id + 2, "c2", peer, me, "t", "second", t0 + 2),
            (base_id + 3, "c3", other, me, "i", "img-3", t0 + 3),
            (base_id + 4, "c4", me, other, "t", "fourth \"quoted\"\n", t0 + 4),
            (base_id + 5, "c5", peer, other, "t", "not mine", t0 + 5),
        ]
        _insert_history(stack, rows)
        c = await Chat.connect(stack, uid=me)
        reply = await c.request("H", {"since": t0})
        assert reply["type"] == "H"
        msgs = reply["msg"]["messages"]
        assert [m["id"] for m in msgs] == ["c1", "c2", "c3", "c4"]
        assert reply["msg"]["more"] is False
        assert msgs[1] == {"id": "c2", "from": peer, "to": me, "type": "t", "msg": "second", "ts": t0 + 2,
                           "mid": str(base_id + 2)}
        assert msgs[2]["type"] == "i" and msgs[3]["msg"] == "fourth \"quoted\"\n"
        # since is exclusive; a bare number is the same as {"since": n}
        reply = await c.request("H", t0 + 2)
        assert [m["id"] for m in reply["msg"]["messages"]] == ["c3", "c4"]
        # with one peer
        reply = await c.request("H", {"since": 0, "with": peer})
        assert [m["id"] for m in reply["msg"]["messages"]] == ["c1", "c2"]
        # limit and more
        reply = await c.request("H", {"since": 0, "limit": 3})
        assert [m["id"] for m in reply["msg"]["messages"]] == ["c1", "c2", "c3"]
        assert reply["msg"]["more"] is True
        reply = await c.request("H", {"since": t0 + 3, "limit": 3})
        assert [m["id"] for m in reply["msg"]["messages"]] == ["c4"] and reply["msg"]["more"] is False
    run(go())


def test_H_limit_defaults_to_100_and_stops_at_500(stack):
    async def go():
        me, peer = new_uid(), new_uid()
        base_id = new_uid() * 1000
        rows = [(base_id + i, f"c{i}", me, peer, "t", f"m{i}", 1_600_000_000_000 + i) for i in range(600)]
        _insert_history(stack, rows)
        c = await Chat.connect(stack, uid=me)
        reply = await c.request("H", 0)
        assert len(reply["msg"]["messages"]) == 100 and reply["msg"]["more"] is True
        reply = await c.request("H", {"since": 0, "limit": 500})
        assert len(reply["msg"]["messages"]) == 500 and reply["msg"]["more"] is True
        assert reply["msg"]["messages"][-1]["id"] == "c499"
        for bad in ({"since": 0, "limit": 501}, {"since": 0, "limit": 0}, {"since": -1}, {"limit": 5}, "yesterday",
                    None, {"since": 0, "with": "nobody"}):
            reply = await c.request("H", bad)
            assert reply["type"] == "E" and reply["msg"].startswith("bad msg"), bad
    run(go())


def _register_order(stack, customer):
    """What magpie-http's POST /admin/orders leaves behind: the Redis hash and the MySQL row."""
    order = "ord-" + uuid.uuid4().hex[:12]
    stack.redis().hset(f"mp:order:{order}", "customer", customer)
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("INSERT INTO orders (id, customer) VALUES (%s, %s)", (order, customer))
    return order


def test_T_takes_an_order_makes_friends_and_tells_the_customer_wherever_they_are(stack):
    async def go():
        courier = await Chat.connect_on(stack, 1)
        customer = await Chat.connect_on(stack, 2)
        customer_phone = await Chat.connect_on(stack, 1, uid=customer.uid)
        order = _register_order(stack, customer.uid)
        reply = await courier.request("T", order)
        assert reply["type"] == "T" and reply["from"] == 0
        assert reply["msg"] == {"order": order, "customer": customer.uid}
        for c in (customer, customer_phone):
            s = await c.wait_for(lambda p: p["type"] == "s")
            assert s["from"] == 0
            assert s["msg"] == {"event": "order_taken", "order": order, "courier": courier.uid}
        # friends in Redis (what t/i checks) and in MySQL; the order is the courier's
        r = stack.redis()
        assert r.sismember(rkeys.tagged(r, "friends", courier.uid), customer.uid)
        assert r.sismember(rkeys.tagged(r, "friends", customer.uid), courier.uid)
        assert r.hget(f"mp:order:{order}", "courier") == str(courier.uid)
        with stack.mysql() as db, db.cursor() as cur:
            cur.execute("SELECT uid, friend_uid FROM friends WHERE uid IN (%s, %s)", (courier.uid, customer.uid))
            assert set(cur.fetchall()) == {(courier.uid, customer.uid), (customer.uid, courier.uid)}
            cur.execute("SELECT courier, taken_at IS NOT NULL FROM orders WHERE id = %s", (order,))
            assert cur.fetchone() == (courier.uid, 1)
        # now they can chat
        assert (await courier.text(customer.uid, "on my way"))["type"] == "A"
        assert (await customer.wait_for(lambda p: p["type"] == "t"))["msg"] == "on my way"
    run(go())


def test_T_unknown_already_taken_or_own_order_is_E(stack):
    async def go():
        courier, rival, customer = (await Chat.connect(stack), await Chat.connect(stack),
                                    await Chat.connect(stack))
        reply = await courier.request("T", "no-such-order-" + uuid.uuid4().hex)
        assert reply["type"] == "E" and reply["msg"] == "unknown order"
        order = _register_order(stack, customer.uid)
        assert (await courier.request("T", order))["type"] == "T"
        reply = await rival.request("T", order)
        assert reply["type"] == "E" and reply["msg"] == "order already taken"
        assert not stack.redis().sismember(rkeys.tagged(stack.redis(), "friends", rival.uid), customer.uid)
        # the same courier asking again (a lost answer) is answered again, and the customer told only once
        assert (await courier.request("T", order))["msg"]["customer"] == customer.uid
        told = [p for p in await customer.collect(0.5) if p["type"] == "s"]
        assert len(told) == 1
        own = _register_order(stack, customer.uid)
        reply = await customer.request("T", own)
        assert reply["type"] == "E" and reply["msg"] == "cannot take your own order"
        for bad in (None, "", {"order": 1}, "x" * 65, "bad\nid"):
            reply = await courier.request("T", bad)
            assert reply["type"] == "E" and reply["msg"] == "bad msg: expected an order id", bad
    run(go())


def test_S_stores_the_position_with_its_time_and_acks(stack):
    async def go():
        c = await Chat.connect(stack)
        before = int(time.time() * 1000)
        reply = await c.request("S", {"longitude": 116.397128, "latitude": 39.916527})
        assert reply == {"id": reply["id"], "from": 0, "type": "A", "msg": "success"}
        r = stack.redis()
        lon, lat = r.geopos("mp:{geo}", c.uid)[0]
        assert abs(lon - 116.397128) < 1e-4 and abs(lat - 39.916527) < 1e-4
        assert int(r.hget("mp:{geo}:time", c.uid)) >= before
        # seed 001's spelling
        assert (await c.request("S", {"longtitude": -0.1276, "latitude": 51.5072}))["type"] == "A"
        lon, lat = r.geopos("mp:{geo}", c.uid)[0]
        assert abs(lon + 0.1276) < 1e-4
        for bad in ({"longitude": 200, "latitude": 0}, {"longitude": 0, "latitude": 89}, {"latitude": 1},
                    {"longitude": "116", "latitude": "39"}, [116, 39], None):
            reply = await c.request("S", bad)
            assert reply["type"] == "E" and reply["msg"] == "bad msg: expected {longitude, latitude} in range"
    run(go())


def test_unknown_type_malformed_json_and_missing_fields_get_E_and_keep_the_connection(stack):
    async def go():
        c = await Chat.connect(stack)
        cases = [
            ('{"id":"u1","to":0,"type":"X","msg":""}', "u1", "unknown type"),
            ('{"id":"u2","to":0,"type":"A","msg":"success"}', "u2", "unknown type"),  # server-only types
            ('{"id":"u3","to":0,"type":"L"}', "u3", "unknown type"),
            ('{"id":"u4","to":0,"type":"s"}', "u4", "unknown type"),
            ('{"id":"u5","to":0,"type":"PP"}', "u5", "missing or bad type: expected one letter"),
            ('{"id":"u6","to":0}', "u6", "missing or bad type: expected one letter"),
            ('{"to":0,"type":"P"}', "", "missing or bad id: expected a string of 1-64 bytes"),
            ('{"id":' + json.dumps("x" * 65) + ',"type":"P"}', "", "missing or bad id: expected a string of 1-64 bytes"),
            ('{"id":12,"type":"P"}', "", "missing or bad id: expected a string of 1-64 bytes"),
            ("not json", "", "malformed packet: expected one JSON object"),
            ('["P"]', "", "malformed packet: expected one JSON object"),
            ('{"id":"u7","type":"P"', "", "malformed packet: expected one JSON object"),
        ]
        for raw, id, reason in cases:
            await c.send(raw)
            reply = await c.recv()
            assert reply == {"id": id, "from": 0, "type": "E", "msg": reason}, raw
        # unknown fields are ignored
        await c.send('{"id":"ok","to":0,"type":"P","msg":"ping","extra":[1,{"a":null}]}')
        assert (await c.recv())["type"] == "P"
        assert c.open
    run(go())


def test_binary_frame_is_treated_as_its_text(stack):
    async def go():
        c = await Chat.connect(stack)
        await c.send(b'{"id":"bin","to":0,"type":"P"}')
        assert (await c.recv()) == {"id": "bin", "from": 0, "type": "P", "msg": "pong"}
        await c.send(b"\xff\xfe\x00")
        assert (await c.recv())["type"] == "E"
    run(go())
