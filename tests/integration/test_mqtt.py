"""MQTT 3.1.1 on /ws (SPEC §4.3; design push/mqtt.c): the stock clients mqtt.js (npm mqtt) and Debian's
python3-paho-mqtt over its WebSocket transport log in with a ticket, chat with a JSON client, a STOMP client
and each other, send to a group; PUBACK only once stored; refusals on me/errors; forbidden subscriptions get
0x80; malformed packets close the connection while a JSON bystander keeps chatting; clean session 0 resumes
from the timeline (what was not PUBACKed comes again, DUP set, and what arrived while away), clean session 1
starts fresh."""
import asyncio
import json
import random
import struct
import time

import pytest
import websockets

from mqtt_client import (Paho, RawMqtt, connect_packet, mstr, packet, paho, puback_packet, publish_packet,
                         subscribe_packet)
from push_client import Bystander, Chat, friend_pair, make_friends, metrics, new_uid, run, ticket, wait_until
from stomp_client import MqttJS, StompJS, redis_group, run_stock, stock_clients_installed
import rkeys

pytestmark = pytest.mark.skipif(not stock_clients_installed(),
                                reason="tests/clients/node_modules missing: scripts/dev test runs npm ci there")




# ---- stock clients ----

def test_mqttjs_chats_with_json_stomp_and_paho_clients(stack):
    """mqtt.js logs in with a ticket (mqtt named in the 101), subscribes me/inbox at QoS 1 (a foreign filter
    gets 0x80), gets a JSON client's t as PUBLISH me/inbox with the §4 packet, and its own QoS 1 PUBLISHes
    are PUBACKed once stored and reach a JSON client and a STOMP client."""
    async def go():
        a, b = friend_pair(stack)
        c_uid = new_uid()
        make_friends(stack, a, c_uid)
        m = await MqttJS.login(stack, ticket(stack, a))
        sub = await m.subscribe({"me/inbox": 1, "me/errors": 0, "#": 0, f"user/{b}": 0})
        assert sub["error"] is not None  # mqtt.js reports a 0x80 in SUBACK so (the codes: test below)
        j = await Chat.connect(stack, b)
        ack = await j.text(a, "hello mqtt")
        got = await m.wait("message")
        assert got["topic"] == "me/inbox" and got["qos"] == 1
        body = json.loads(got["payload"])
        assert body["msg"] == "hello mqtt" and body["mid"] == ack["mid"] and body["from"] == b

        r = await m.publish(f"user/{b}", "hi json", qos=1, tag="p1")
        assert r["error"] is None
        seen = await j.recv()
        assert seen["msg"] == "hi json" and seen["from"] == a and seen["type"] == "t"
        assert stack.redis().exists(rkeys.msg(stack.redis(), b, seen['mid']))

        s = await StompJS.login(stack, ticket(stack, c_uid))
        s.do("subscribe", destination="/user/queue/messages", id="in")
        await asyncio.sleep(0.3)
        await m.publish(f"user/{c_uid}", "hi stomp", qos=0, tag="p2")
        assert json.loads((await s.wait("message"))["body"])["msg"] == "hi stomp"
        await s.send(f"/user/{a}", "hi mqtt from stomp", receipt="r")
        got = await m.wait("message", pred=lambda e: e["topic"] == "me/inbox")
        assert json.loads(got["payload"])["msg"] == "hi mqtt from stomp"
    run_stock(go())


def test_refused_publish_is_pubacked_and_explained_on_me_errors(stack):
    async def go():
        a, b = friend_pair(stack)
        m = await MqttJS.login(stack, ticket(stack, a))
        await m.subscribe({"me/errors": 0})
        for i, (topic, payload, reason) in enumerate([
                (f"user/{new_uid()}", "x", "not friends"),
                (f"user/{b}", "x" * 1024, "message too long"),
                (f"user/{a}", "me", "cannot send to yourself"),
                ("room/7", "x", "not in that room"),  # rooms: test_proto_rooms.py
                ("news/today", "x", "unknown topic: user/<uid>, group/<gid> or room/<id>")]):
            r = await m.publish(topic, payload, qos=1, tag=f"t{i}")
            assert r["error"] is None  # the PUBACK came: the packet is consumed
            e = await m.wait("message", pred=lambda e: e["topic"] == "me/errors")
            err = json.loads(e["payload"])
            assert err["reason"] == reason and err["topic"] == topic and err["packet_id"] > 0
        assert (await m.publish(f"user/{b}", "still fine", qos=1, tag="ok"))["error"] is None
    run_stock(go())


def test_mqtt_group_send(stack):
    async def go():
        m_uid, j_uid, outsider = new_uid(), new_uid(), new_uid()
        gid = redis_group(stack, j_uid, [m_uid])
        m = await MqttJS.login(stack, ticket(stack, m_uid))
        await m.subscribe({"me/inbox": 1})
        j = await Chat.connect(stack, j_uid)
        assert (await m.publish(f"group/{gid}", "to the group", qos=1, tag="g"))["error"] is None
        g = await j.wait_for(lambda p: p["type"] == "g")
        assert g["msg"] == "to the group" and g["to"] == gid and g["from"] == m_uid
        await j.text(gid, "back", type="g")
        got = await m.wait("message")
        assert json.loads(got["payload"])["msg"] == "back"
        o = await MqttJS.login(stack, ticket(stack, outsider))
        await o.subscribe({"me/errors": 0})
        await o.publish(f"group/{gid}", "let me in", qos=1, tag="no")
        e = await o.wait("message", pred=lambda e: e["topic"] == "me/errors")
        assert json.loads(e["payload"])["reason"] == "not a member"
    run_stock(go())


@pytest.mark.skipif(paho is None, reason="python3-paho-mqtt is not installed")
def test_paho_over_websocket_chats_with_mqttjs(stack):
    """Debian's paho (1.6) over its WebSocket transport chats with mqtt.js."""
    a, b = friend_pair(stack)
    p = Paho(stack, ticket(stack, a))
    try:
        assert p.wait("connack")[3] == 0
        p.client.subscribe([("me/inbox", 2), ("user/+", 0)])
        assert tuple(p.wait("suback")[3]) == (1, 128)  # QoS 2 is granted as 1

        async def go():
            m = await MqttJS.login(stack, ticket(stack, b))
            await m.subscribe({"me/inbox": 1})
            info = p.client.publish(f"user/{b}", "from paho", qos=1)
            got = await m.wait("message")
            assert json.loads(got["payload"])["msg"] == "from paho"
            assert p.wait("puback")[2] == info.mid
            await m.publish(f"user/{a}", "from mqtt.js", qos=1, tag="x")
            topic, payload, qos = p.wait("message")
            assert topic == "me/inbox" and qos == 1 and json.loads(payload)["msg"] == "from mqtt.js"
        run_stock(go())
    finally:
        p.stop()


# ---- sessions: clean session 0 resumes from the timeline (3.1.1 §3.1.2.4, §4.4) ----

def test_clean_session_0_gets_all_that_arrived_while_away_once_in_order(stack):
    """mqtt.js with client id "phone" and clean session 0 subscribes me/inbox at QoS 1 and disconnects; a
    JSON client sends 100 messages; the session's next CONNECT gets session present 1 and, without subscribing
    again (the subscription is part of the session), all 100 once, in seq order, at QoS 1 and DUP 0 (never
    sent before); a SUBSCRIBE at the same QoS sends nothing twice; its own message is not sent back; after
    all was PUBACKed the next connect of the session gets nothing again."""
    async def go():
        a, b = friend_pair(stack)
        m = await MqttJS.login(stack, ticket(stack, a), client_id="phone", clean=False)
        assert m.connected["sessionPresent"] is False
        assert (await m.subscribe({"me/inbox": 1}))["granted"] == [{"topic": "me/inbox", "qos": 1}]
        m.do("end")
        await m.wait("ended")

        j = await Chat.connect(stack, b)
        for i in range(100):
            assert (await j.text(a, f"away{i}", timeout=10))["type"] == "A"
        m2 = await MqttJS.login(stack, ticket(stack, a), client_id="phone", clean=False)
        assert m2.connected["sessionPresent"] is True
        got = [await m2.wait("message", timeout=20) for _ in range(100)]
        bodies = [json.loads(e["payload"]) for e in got]
        assert [p["msg"] for p in bodies] == [f"away{i}" for i in range(100)]
        assert [p["seq"] for p in bodies] == list(range(bodies[0]["seq"], bodies[0]["seq"] + 100))
        assert {(e["topic"], e["qos"], e["dup"]) for e in got} == {("me/inbox", 1, False)}
        await m2.subscribe({"me/inbox": 1}, tag="again")
        assert await m2.quiet(1.0) == [], "nothing twice"
        j = await Chat.connect(stack, b)  # the first one used its burst of push.rate
        assert (await j.text(a, "live"))["type"] == "A"
        assert json.loads((await m2.wait("message"))["payload"])["msg"] == "live"
        assert (await m2.publish(f"user/{b}", "mine", qos=1, tag="own"))["error"] is None
        assert (await j.recv())["msg"] == "mine"
        assert await m2.quiet(0.5) == [], "its own message is not sent back"
        m2.do("end")
        await m2.wait("ended")

        m3 = await MqttJS.login(stack, ticket(stack, a), client_id="phone", clean=False)
        assert m3.connected["sessionPresent"] is True
        assert await m3.quiet(1.5) == []
        assert (await j.text(a, "still subscribed"))["type"] == "A"
        assert json.loads((await m3.wait("message"))["payload"])["msg"] == "still subscribed"
    run_stock(go())


def test_qos1_messages_not_pubacked_come_again_with_dup_after_a_dropped_connection(stack):
    """A clean-session-0 session at QoS 1 gets three messages, PUBACKs the first only, and its connection
    drops (no DISCONNECT); a fourth arrives while it is away. The session's next CONNECT (session present 1)
    gets the second and third again -- DUP 1, their original packet ids -- then the fourth (DUP 0), in order;
    once those are PUBACKed, its next connection gets nothing again."""
    async def go():
        a, b = friend_pair(stack)
        before = metrics(stack.push_metrics_ports[0]).get('magpie_push_redelivered_total{protocol="mqtt"}', 0)
        j = await Chat.connect(stack, b)
        c, present = await RawMqtt.session(stack, ticket(stack, a), "raw-phone", node=1)
        assert present == 0
        await c.ws.send(subscribe_packet(1, ("me/inbox", 1)))
        assert await c.next() == (9, 0, b"\x00\x01\x01")  # sent once the subscription's place is known
        for i in range(3):
            assert (await j.text(a, f"m{i}"))["type"] == "A"
        first = await c.publishes(3)
        assert [p["payload"]["msg"] for p in first] == ["m0", "m1", "m2"]
        assert all(p["qos"] == 1 and not p["dup"] and p["topic"] == "me/inbox" for p in first)
        await c.ws.send(puback_packet(first[0]["pid"]))
        await asyncio.sleep(0.2)
        c.ws.transport.abort()  # the connection drops
        await asyncio.sleep(0.3)
        assert (await j.text(a, "m3"))["type"] == "A"

        c2, present = await RawMqtt.session(stack, ticket(stack, a), "raw-phone", node=1)
        assert present == 1
        again = await c2.publishes(3)
        assert [p["payload"]["msg"] for p in again] == ["m1", "m2", "m3"]
        assert [(p["dup"], p["pid"]) for p in again[:2]] == [(True, first[1]["pid"]), (True, first[2]["pid"])]
        assert (again[2]["dup"], again[2]["qos"]) == (False, 1)
        seq1 = first[1]["payload"]["seq"]
        assert [p["payload"]["seq"] for p in again] == [seq1, seq1 + 1, seq1 + 2]
        for p in again:
            await c2.ws.send(puback_packet(p["pid"]))
        assert await c2.quiet(0.5) == []
        await c2.ws.send(packet(14, 0, b""))  # DISCONNECT
        assert (await c2.closed()) == ([], 1000)

        c3, present = await RawMqtt.session(stack, ticket(stack, a), "raw-phone", node=1)
        assert present == 1
        assert await c3.quiet(1.0) == [], "everything was PUBACKed"
        key = 'magpie_push_redelivered_total{protocol="mqtt"}'
        await wait_until(lambda: metrics(stack.push_metrics_ports[0]).get(key, 0) >= before + 2, 5,
                         "the redelivery counter")
    run(go())


def test_qos1_window_holds_what_is_not_pubacked_and_sends_the_rest_as_pubacks_come(stack):
    """mqtt.max_inflight (256): a client that PUBACKs nothing gets 256 of 300 messages; each PUBACK lets the
    next one out, in order, until all 300 came once."""
    async def go():
        a, b = friend_pair(stack)
        c, _ = await RawMqtt.session(stack, ticket(stack, a), "window", node=1)
        await c.ws.send(subscribe_packet(1, ("me/inbox", 1)))
        assert (await c.next())[0] == 9
        for k in range(3):  # 100 from each connection: within push.burst
            j = await Chat.connect(stack, b)
            for i in range(100 * k, 100 * k + 100):
                assert (await j.text(a, f"w{i}", timeout=10))["type"] == "A"
        got = await c.publishes(256)
        assert await c.quiet(0.5) == [], "the window is full"
        for p in got[:44]:
            await c.ws.send(puback_packet(p["pid"]))
        got += await c.publishes(44)
        assert [p["payload"]["msg"] for p in got] == [f"w{i}" for i in range(300)]
        assert len({p["pid"] for p in got}) == 300 and not any(p["dup"] for p in got)
    run(go())


def test_a_connect_with_a_connected_client_id_takes_the_session_over(stack):
    """3.1.1 §3.1.4: a second CONNECT with the client id of a connected client of the same user (same node)
    closes the first connection; the new one gets session present 1 and what the first had not PUBACKed."""
    async def go():
        a, b = friend_pair(stack)
        j = await Chat.connect(stack, b)
        first, _ = await RawMqtt.session(stack, ticket(stack, a), "twin", node=2)
        await first.ws.send(subscribe_packet(1, ("me/inbox", 1)))
        assert (await first.next())[0] == 9
        assert (await j.text(a, "t0"))["type"] == "A"
        assert [p["payload"]["msg"] for p in await first.publishes(1)] == ["t0"]
        second, present = await RawMqtt.session(stack, ticket(stack, a), "twin", node=2)
        assert present == 1
        assert (await first.closed())[1] == 1008
        again = await second.publishes(1)
        assert again[0]["payload"]["msg"] == "t0" and again[0]["dup"]
    run(go())


def test_a_qos0_session_keeps_its_subscription_but_not_the_messages(stack):
    """QoS 0 is not tracked: a clean-session-0 session subscribed at QoS 0 comes back with session present 1
    and its subscription (a live message arrives without a new SUBSCRIBE), but what came while it was away
    is not sent."""
    async def go():
        a, b = friend_pair(stack)
        j = await Chat.connect(stack, b)
        c, _ = await RawMqtt.session(stack, ticket(stack, a), "q0", node=1)
        await c.ws.send(subscribe_packet(1, ("me/inbox", 0)))
        assert await c.next() == (9, 0, b"\x00\x01\x00")
        await c.ws.send(packet(14, 0, b""))
        await c.closed()
        assert (await j.text(a, "while away"))["type"] == "A"
        c2, present = await RawMqtt.session(stack, ticket(stack, a), "q0", node=1)
        assert present == 1
        assert await c2.quiet(1.0) == []
        assert (await j.text(a, "live"))["type"] == "A"
        got = await c2.publishes(1)
        assert (got[0]["payload"]["msg"], got[0]["qos"], got[0]["pid"]) == ("live", 0, None)
    run(go())


def test_stored_sessions_expire_one_by_one_and_are_capped_per_user(stack):
    """A session written longer than mqtt.session_ttl_s (30 days) ago is gone (session present 0) even while
    the user's hash lives on; past mqtt.max_sessions_per_user (32) fields, an expired one goes first, then
    the one written longest ago."""
    async def go():
        a = new_uid()
        r, now = stack.redis(), int(time.time())
        key = rkeys.tagged(r, "mqtt", a)
        r.hset(key, mapping={"gone": "5 5 1 1", "stale": "7 7 1 1",
                             **{f"s{i}": f"0 0 -1 {now - 100 + i}" for i in range(30)}})
        c, present = await RawMqtt.session(stack, ticket(stack, a), "gone")
        assert present == 0  # expired: a new session under the same client id
        await wait_until(lambda: r.hget(key, "gone").startswith("0 0 -1 "), 5, "the new session written")
        assert r.hlen(key) == 32
        for cid in ["newest", "newer"]:
            c2, present = await RawMqtt.session(stack, ticket(stack, a), cid)
            assert present == 0
            await wait_until(lambda: r.hexists(key, cid), 5, "the new session written")
            assert r.hlen(key) == 32
            if cid == "newest":  # the expired one went, not the oldest live one
                assert not r.hexists(key, "stale") and r.hexists(key, "s0")
        assert not r.hexists(key, "s0") and r.hexists(key, "s1") and r.hexists(key, "newest")
        assert 0 < r.ttl(key) <= 2592000
    run(go())


@pytest.mark.skipif(paho is None, reason="python3-paho-mqtt is not installed")
def test_clean_session_1_after_a_session_0_starts_fresh(stack):
    """A clean-session-0 session (client id "paho-dev") leaves two messages un-PUBACKed; paho connects with
    the same client id and clean session 1: session present 0, none of the old messages, only what comes
    after its SUBSCRIBE; the stored session is gone, so the next clean-session-0 CONNECT starts a new one."""
    a, b = friend_pair(stack)

    async def leave_unacked():
        j = await Chat.connect(stack, b)
        c, present = await RawMqtt.session(stack, ticket(stack, a), "paho-dev")
        assert present == 0
        await c.ws.send(subscribe_packet(1, ("me/inbox", 1)))
        assert (await c.next())[0] == 9
        for i in range(2):
            assert (await j.text(a, f"old{i}"))["type"] == "A"
        assert [p["payload"]["msg"] for p in await c.publishes(2)] == ["old0", "old1"]
        await c.ws.close()  # no PUBACK, no DISCONNECT

        def stored():  # "<acked> <sent> <sub> <ts>": two sent, none PUBACKed, subscribed at QoS 1
            v = (stack.redis().hget(rkeys.tagged(stack.redis(), "mqtt", a), "paho-dev") or "").split()
            return len(v) == 4 and int(v[1]) == int(v[0]) + 2 and v[2] == "1"
        await wait_until(stored, 5, "the session stored when its connection ended")
    run(leave_unacked())

    p = Paho(stack, ticket(stack, a), client_id="paho-dev", clean=True)
    try:
        _, _, flags, rc = p.wait("connack")
        assert rc == 0 and flags["session present"] == 0
        p.client.subscribe("me/inbox", 1)
        assert tuple(p.wait("suback")[3]) == (1,)

        async def live():
            j = await Chat.connect(stack, b)
            assert (await j.text(a, "new"))["type"] == "A"
        run(live())
        topic, payload, qos = p.wait("message")
        assert topic == "me/inbox" and json.loads(payload)["msg"] == "new"
        assert p.quiet("message", 1.0) == [], "nothing of the old session"
        assert not stack.redis().hexists(rkeys.tagged(stack.redis(), "mqtt", a), "paho-dev")
    finally:
        p.stop()

    async def after():
        await asyncio.sleep(0.3)
        c, present = await RawMqtt.session(stack, ticket(stack, a), "paho-dev")
        assert present == 0
        assert await c.quiet(1.0) == []
    run(after())


# ---- bad input, a JSON bystander on the same node ----

def test_bad_login_gets_connack_4_and_a_close(stack):
    async def go():
        async with Bystander(stack, node=1):
            for tk in ["not-a-jwt", ticket(stack, new_uid(), ttl=-10), ticket(stack, new_uid(), kind="login"), ""]:
                c = await RawMqtt.open(stack, node=1)
                await c.ws.send(connect_packet(tk))
                seen, code = await c.closed()
                assert seen == [(2, 0, b"\x00\x04")] and code == 1008, (seen, code)
            used = ticket(stack, new_uid())
            await RawMqtt.login(stack, used, node=1)
            c = await RawMqtt.open(stack, node=1)
            await c.ws.send(connect_packet(used))
            assert (await c.closed())[0] == [(2, 0, b"\x00\x05")]
            c = await RawMqtt.open(stack, node=1)
            await c.ws.send(connect_packet(ticket(stack, new_uid()), level=3))
            assert (await c.closed())[0] == [(2, 0, b"\x00\x01")]
            c = await RawMqtt.open(stack, node=1)
            await c.ws.send(connect_packet(ticket(stack, new_uid()), clean=False, client_id=""))
            assert (await c.closed())[0] == [(2, 0, b"\x00\x02")]
    run(go())


def test_malformed_packets_close_the_connection(stack):
    async def go():
        async with Bystander(stack, node=1):
            a, b = friend_pair(stack)
            c = await RawMqtt.open(stack, node=1)
            await c.ws.send(publish_packet(f"user/{b}", "early"))
            assert (await c.closed()) == ([], 1002)
            bad = [
                bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),  # a remaining length of five bytes
                bytes([0x30, 0x80, 0x00]),  # a non-minimal remaining length
                bytes([0x30, 0xFF, 0xFF, 0x7F]) + b"x" * 10,  # over mqtt.max_packet
                publish_packet("user/\xff", "x"),  # not UTF-8: below, as bytes
                publish_packet(f"user/{b}/#", "x"),  # a wildcard in a PUBLISH topic
                publish_packet("u" * 300, "x"),  # over mqtt.max_topic
                publish_packet(f"user/{b}", "x", qos=3),
                publish_packet(f"user/{b}", "x", qos=1, pid=0),
                packet(8, 0, struct.pack(">H", 1) + mstr("me/inbox") + b"\x01"),  # SUBSCRIBE flags not 0010
                subscribe_packet(1, ("me/#/x", 0)),
                subscribe_packet(1, ("me/inbox", 3)),
                packet(8, 2, struct.pack(">H", 1)),  # no topic
                packet(2, 0, b"\x00\x00"),  # CONNACK from a client
                packet(12, 0, b"x"),  # PINGREQ with a body
                connect_packet("again"),  # a second CONNECT
            ]
            bad[3] = packet(3, 2, struct.pack(">H", 6) + b"user/\xff" + struct.pack(">H", 1) + b"x")
            for data in bad:
                c = await RawMqtt.login(stack, ticket(stack, a), node=1)
                await c.ws.send(data)
                seen, code = await c.closed()
                assert code == 1002, (data, seen, code)
            # per-topic return codes: QoS 2 granted as 1, a room as 0, what is not the client's own gets 0x80
            c = await RawMqtt.login(stack, ticket(stack, a), node=1)
            await c.ws.send(subscribe_packet(4, ("me/inbox", 2), ("me/errors", 0), ("#", 0), (f"user/{b}", 1),
                                             ("room/1", 0), ("+/inbox", 1)))
            assert await c.next() == (9, 0, b"\x00\x04\x01\x00\x80\x80\x00\x80")
            # a packet split over many WebSocket messages, and two in one, are served
            c = await RawMqtt.login(stack, ticket(stack, a), node=1)
            data = subscribe_packet(9, ("me/inbox", 1)) + packet(12, 0, b"")
            for i in range(len(data)):
                await c.ws.send(data[i:i + 1])
            assert await c.next() == (9, 0, b"\x00\x09\x01")
            assert await c.next() == (13, 0, b"")
            await c.ws.send(packet(12, 0, b"") * 2)
            assert [await c.next(), await c.next()] == [(13, 0, b""), (13, 0, b"")]
            await c.ws.send(packet(14, 0, b""))
            assert (await c.closed()) == ([], 1000)
    run(go())


def test_flood_over_push_rate_is_refused_then_closed(stack):
    async def go():
        async with Bystander(stack, node=1):
            a, b = friend_pair(stack)
            c = await RawMqtt.login(stack, ticket(stack, a), node=1)
            await c.ws.send(subscribe_packet(1, ("me/errors", 0)))
            assert (await c.next())[0] == 9
            await c.ws.send(b"".join(publish_packet(f"user/{b}", f"f{i}", qos=0) for i in range(300)))
            seen, code = await c.closed(timeout=10)
            reasons = {json.loads(p[2][2 + 9:])["reason"] for p in seen if p[0] == 3}
            assert "rate limited" in reasons and code == 1008, (reasons, code)
    run(go())


def test_keepalive_silence_closes(stack):
    async def go():
        c = await RawMqtt.open(stack)
        await c.ws.send(connect_packet(ticket(stack, new_uid()), keepalive=1))
        assert await c.next() == (2, 0, b"\x00\x00")
        t0 = time.monotonic()
        seen, code = await c.closed(timeout=6)
        assert code == 1008 and 1.4 <= time.monotonic() - t0 <= 4.5
    run(go())


def test_500_mutations_of_valid_packets_never_hurt_the_node(stack):
    rng = random.Random(1611)

    def mutate(data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            k, pos = rng.randrange(4), rng.randrange(len(data) + 1)
            if k == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif k == 1:
                del data[pos:pos + rng.randint(1, 4)]
            elif k == 2:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                data = data[:pos]
        return bytes(data)

    async def go():
        a, b = friend_pair(stack)
        valid = [publish_packet(f"user/{b}", "hello", qos=1, pid=7), publish_packet(f"group/1", "g", qos=0),
                 subscribe_packet(3, ("me/inbox", 1), ("me/errors", 0)),
                 packet(10, 2, struct.pack(">H", 4) + mstr("me/inbox")), packet(4, 0, b"\x00\x01"),
                 packet(6, 2, b"\x00\x02"), packet(12, 0, b""), packet(14, 0, b"")]
        async with Bystander(stack, node=2):
            c = None
            for i in range(500):
                if c is None or c.ws.closed:
                    c = await RawMqtt.login(stack, ticket(stack, a), node=2)
                try:
                    await c.ws.send(mutate(rng.choice(valid)))
                    while True:
                        t, _, _ = await c.next(0.05)
                        assert t in (3, 4, 5, 7, 9, 11, 13), t
                except asyncio.TimeoutError:
                    pass
                except websockets.ConnectionClosed:
                    c = None
        m = await MqttJS.login(stack, ticket(stack, a), node=2)
        assert (await m.publish(f"user/{b}", "after the storm", qos=1, tag="x"))["error"] is None
    run_stock(go())


def test_metrics_count_mqtt_packets(stack):
    async def go():
        a, b = friend_pair(stack)
        before = metrics(stack.push_metrics_ports[0])
        c = await RawMqtt.login(stack, ticket(stack, a), node=1)
        await c.ws.send(publish_packet(f"user/{b}", "count me", qos=1, pid=5))
        assert await c.next() == (4, 0, b"\x00\x05")
        key = 'magpie_push_frames_total{protocol="mqtt",command="PUBLISH"}'
        await wait_until(lambda: metrics(stack.push_metrics_ports[0]).get(key, 0) > before.get(key, 0), 5,
                         "the MQTT counters")
        assert metrics(stack.push_metrics_ports[0]).get('magpie_push_connections{protocol="mqtt"}', 0) >= 1
    run(go())
