"""Rooms over STOMP 1.2 and MQTT 3.1.1 on /ws (SPEC §4.3 table, §5; design and wire format: the top of
push/room_bridge.c). Stock clients -- @stomp/stompjs and mqtt.js in Node, Debian's paho over its WebSocket
transport -- join a room next to /room members on both nodes and chat with them both ways; every member gets
every message in one order; POST /msg reaches them; leaving and disconnecting update the member count; bad
input gets each protocol's answer while the room keeps being served."""
import asyncio
import json

import pytest
import requests
import websockets

from push_client import metrics, new_uid, run, ticket, wait_until
from room_client import Room, RoomBystander, new_room, node_url
from stomp_client import MqttJS, StompJS, frame, run_stock, stock_clients_installed, unescape
from mqtt_client import Paho, RawMqtt, connect_packet, mstr, packet, paho, subscribe_packet

pytestmark = pytest.mark.skipif(not stock_clients_installed(),
                                reason="tests/clients/node_modules missing: scripts/dev test runs npm ci there")

BAD_ROOM = "bad room id: expected 1-128 bytes of text"



async def stomp_join(s, room, tag):
    """SUBSCRIBE /topic/room.<room> with a receipt; returns once the RECEIPT came (the room is ready)."""
    s.do("subscribe", destination=f"/topic/room.{room}", id=tag, receipt=tag)
    assert (await s.wait("receipt", pred=lambda e: e["receipt"] == tag))["receipt"] == tag


def test_stock_clients_chat_with_room_members_on_both_nodes_in_one_order(stack):
    """Two /room members, stompjs and mqtt.js on each node and paho through nginx are in one room; each sends;
    every member (the senders too) gets all the messages, each once, in the same order, and the stock
    clients get them as their protocol's plain message on the room's topic."""
    if paho is None:
        pytest.skip("python3-paho-mqtt is not installed")

    async def go():
        room = new_room("proto")
        dest, topic = f"/topic/room.{room}", f"room/{room}"
        r1 = await Room.join(stack, node_url(stack, 1), room)
        r2 = await Room.join(stack, node_url(stack, 2), room)
        s1 = await StompJS.login(stack, ticket(stack, new_uid()), node=1)
        s2 = await StompJS.login(stack, ticket(stack, new_uid()), node=2)
        await stomp_join(s1, room, "r1")
        await stomp_join(s2, room, "r2")
        q1 = await MqttJS.login(stack, ticket(stack, new_uid()), node=1)
        q2 = await MqttJS.login(stack, ticket(stack, new_uid()), node=2)
        for q in (q1, q2):
            ack = await q.subscribe({topic: 1})  # granted as QoS 0: room messages are live
            assert ack["error"] is None and ack["granted"] == [{"topic": topic, "qos": 0}], ack
        p = Paho(stack, ticket(stack, new_uid()))
        try:
            assert (await p.async_wait("connack"))[3] == 0
            p.client.subscribe(topic, 1)
            assert tuple((await p.async_wait("suback"))[3]) == (0,)

            expected = []
            for k in range(3):
                await r1.say(f"room1 {k}")
                await r2.say(f"room2 {k}")
                await s1.send(dest, f"stomp1 {k}", receipt=f"s1-{k}")
                await s2.send(dest, f"stomp2 {k}", receipt=f"s2-{k}")
                assert (await q1.publish(topic, f"mqtt1 {k}", qos=1, tag=f"q1-{k}"))["error"] is None
                assert (await q2.publish(topic, f"mqtt2 {k}", qos=0, tag=f"q2-{k}"))["error"] is None
                p.client.publish(topic, f"paho {k}", qos=1)
                expected += [f"{who} {k}" for who in ("room1", "room2", "stomp1", "stomp2", "mqtt1", "mqtt2",
                                                      "paho")]
            for s, name in ((s1, "s1"), (s2, "s2")):  # the RECEIPT of each SEND: Redis took it
                for k in range(3):
                    await s.wait("receipt", pred=lambda e, r=f"{name}-{k}": e["receipt"] == r)
            for _ in range(3):
                await p.async_wait("puback")
            n = len(expected)

            seen = {"room1": [m.decode() for m in await r1.wait_messages(n, timeout=20)],
                    "room2": [m.decode() for m in await r2.wait_messages(n, timeout=20)]}
            for name, s, sub in (("stomp1", s1, "r1"), ("stomp2", s2, "r2")):
                got = await s.messages(n)
                for e in got:
                    h = e["headers"]
                    assert h["destination"] == dest and h["subscription"] == sub and h["message-id"], h
                    assert int(h["content-length"]) == len(e["body"].encode())
                seen[name] = [e["body"] for e in got]
            for name, q in (("mqtt1", q1), ("mqtt2", q2)):
                got = await q.messages(n)
                assert all(e["topic"] == topic and e["qos"] == 0 for e in got), got
                seen[name] = [e["payload"] for e in got]
            got = await p.messages(n)
            assert all(t == topic and qos == 0 for t, _, qos in got)
            seen["paho"] = [payload.decode() for _, payload, _ in got]

            order = seen["room1"]
            assert sorted(order) == sorted(expected), order
            for name, msgs in seen.items():
                assert msgs == order, (name, msgs, order)
            # each sender's own messages in the order it sent them
            for who in ("room1", "stomp2", "mqtt1", "paho"):
                assert [m for m in order if m.startswith(who + " ")] == [f"{who} {k}" for k in range(3)]
            # and nothing more: each message once
            await asyncio.sleep(0.3)
            assert not await s1.quiet(0.2) and not await q2.quiet(0.2)
        finally:
            p.stop()
    run_stock(go())


def test_post_msg_reaches_stomp_and_mqtt_members(stack):
    """magpie-http's POST /msg: important (level 1) and normal messages reach STOMP and MQTT members as they
    reach /room members."""
    if stack.daemon_pid("http") is None:
        pytest.skip("needs magpie-http (POST /msg)")

    async def go():
        room = new_room("proto-msg")
        r = await Room.join(stack, node_url(stack, 1), room)
        s = await StompJS.login(stack, ticket(stack, new_uid()), node=2)
        await stomp_join(s, room, "j")
        q = await MqttJS.login(stack, ticket(stack, new_uid()), node=1)
        await q.subscribe({f"room/{room}": 0})
        for msg, level in (('{"type": 1, "content": "红包"}', 1), ("plain", 0)):
            resp = requests.post(f"{stack.nginx_url}/msg", json={"room_id": room, "msg": msg, "level": level},
                                 headers={"Authorization": f"Key {stack.api_key}"}, timeout=10)
            assert resp.status_code == 200 and resp.json()["code"] == 1, resp.text
        want = ['{"type": 1, "content": "红包"}', "plain"]
        assert [m.decode() for m in await r.wait_messages(2)] == want
        assert [e["body"] for e in await s.messages(2)] == want
        assert [e["payload"] for e in await q.messages(2)] == want
    run_stock(go())


# ---- the wire format, byte for byte (what a client without a library reads) ----

def stomp_frames(data):
    """(command, headers, body bytes) of every STOMP frame in one WebSocket message, in order."""
    if isinstance(data, str):
        data = data.encode()
    out, i = [], 0
    while i < len(data):
        if data[i:i + 1] in (b"\n", b"\r"):
            i += 1
            continue
        head_end = data.index(b"\n\n", i)
        lines = data[i:head_end].decode().split("\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(unescape(k), unescape(v))
        n = int(headers["content-length"])
        body = data[head_end + 2:head_end + 2 + n]
        assert data[head_end + 2 + n:head_end + 3 + n] == b"\0"
        out.append((lines[0], headers, body))
        i = head_end + 3 + n
    return out


def mqtt_packets(data):
    """(type, flags, body) of every MQTT packet in one WebSocket message; asserts it holds whole packets."""
    out = []
    while data:
        rl, mult, i = 0, 1, 1
        while True:
            rl += (data[i] & 0x7F) * mult
            mult *= 128
            if not data[i] & 0x80:
                break
            i += 1
        assert len(data) >= i + 1 + rl, "a packet cut at the end of a WebSocket message"
        out.append((data[0] >> 4, data[0] & 15, data[i + 1:i + 1 + rl]))
        data = data[i + 1 + rl:]
    return out


def test_a_batch_is_one_websocket_message_of_plain_frames(stack):
    """Three messages that reach a node together -- a raw MQTT member's three PUBLISHes in one WebSocket
    message, one not UTF-8 -- reach a raw STOMP client as three MESSAGE frames in one binary WebSocket message
    and the MQTT member as three QoS 0 PUBLISH room/<id> in one message, each body the bytes as sent; a /room
    member on the other node gets them too. The RECEIPT and the SUBACK of the join come once the room is ready
    (the first member here: after Redis confirmed the subscription)."""
    async def go():
        room = new_room("wire")
        here = node_url(stack, 2)
        st = await websockets.connect(f"{here}/ws", subprotocols=["v12.stomp"], max_size=None,
                                      ping_interval=None, close_timeout=2)
        await st.send(frame("CONNECT", {"accept-version": "1.2", "passcode": ticket(stack, new_uid())}))
        assert (await st.recv()).startswith("CONNECTED")
        await st.send(frame("SUBSCRIBE", {"id": "lobby", "destination": f"/topic/room.{room}",
                                          "receipt": "in"}))
        assert await asyncio.wait_for(st.recv(), 5) == "RECEIPT\nreceipt-id:in\n\n\0"
        mq = await websockets.connect(f"{here}/ws", subprotocols=["mqtt"], max_size=None,
                                      ping_interval=None, close_timeout=2)
        await mq.send(connect_packet(ticket(stack, new_uid())))
        assert await asyncio.wait_for(mq.recv(), 5) == b"\x20\x02\x00\x00"
        await mq.send(subscribe_packet(7, (f"room/{room}", 1)))
        assert await asyncio.wait_for(mq.recv(), 5) == b"\x90\x03\x00\x07\x00"  # granted QoS 0
        r = await Room.join(stack, node_url(stack, 1), room)
        msgs = [b"one", "二".encode(), b"\xff\x00bin"]
        topic = f"room/{room}".encode()
        # together: a batch leaves at once in an idle room, so only messages that arrive together share one
        await mq.send(b"".join(packet(3, 0, mstr(topic) + m) for m in msgs))

        data = await asyncio.wait_for(st.recv(), 5)
        assert isinstance(data, bytes), "a batch with a non-UTF-8 body travels as a binary message"
        frames = stomp_frames(data)
        assert [f[2] for f in frames] == msgs
        ids = set()
        for cmd, h, _ in frames:
            assert cmd == "MESSAGE" and h["destination"] == f"/topic/room.{room}" and h["subscription"] == "lobby"
            ids.add(h["message-id"])
        assert len(ids) == 3
        pkts = mqtt_packets(await asyncio.wait_for(mq.recv(), 5))
        assert pkts == [(3, 0, mstr(topic) + m) for m in msgs]
        assert await r.wait_messages(3) == msgs

        # an all-UTF-8 batch is a text message
        await r.say("text only")
        data = await asyncio.wait_for(st.recv(), 5)
        assert isinstance(data, str) and [f[2] for f in stomp_frames(data)] == [b"text only"]
    run(go())


def test_the_join_is_answered_once_the_room_is_ready_then_sends_and_messages_follow(stack):
    """A raw STOMP client's SUBSCRIBE receipt for a room nobody is in yet on its node, then a SEND with a
    receipt: the RECEIPT of the SUBSCRIBE, the RECEIPT of the SEND (Redis took it), and the message itself.
    MQTT likewise: the SUBACK, the PUBACK, the message."""
    async def go():
        room = new_room("order")
        st = await websockets.connect(f"ws://127.0.0.1:{stack.push_ports[1]}/ws", subprotocols=["v12.stomp"],
                                      max_size=None, ping_interval=None, close_timeout=2)
        await st.send(frame("CONNECT", {"accept-version": "1.2", "passcode": ticket(stack, new_uid())}))
        assert (await st.recv()).startswith("CONNECTED")
        await st.send(frame("SUBSCRIBE", {"id": "a", "destination": f"/topic/room.{room}", "receipt": "sub"}))
        assert await asyncio.wait_for(st.recv(), 5) == "RECEIPT\nreceipt-id:sub\n\n\0"
        await st.send(frame("SEND", {"destination": f"/topic/room.{room}", "receipt": "snd"}, "hello"))
        assert await asyncio.wait_for(st.recv(), 5) == "RECEIPT\nreceipt-id:snd\n\n\0"
        (cmd, h, body), = stomp_frames(await asyncio.wait_for(st.recv(), 5))
        assert (cmd, h["subscription"], body) == ("MESSAGE", "a", b"hello")
        await st.close()
        # the same for MQTT: the SUBACK, then the PUBACK of a QoS 1 PUBLISH, then the message (QoS 0)
        room = new_room("order")
        c = await RawMqtt.login(stack, ticket(stack, new_uid()), node=1)
        await c.ws.send(subscribe_packet(5, (f"room/{room}", 1)))
        assert await c.next() == (9, 0, b"\x00\x05\x00")
        await c.ws.send(packet(3, 2, mstr(f"room/{room}") + b"\x00\x06" + b"hello"))
        assert await c.next() == (4, 0, b"\x00\x06")
        assert await c.next() == (3, 0, mstr(f"room/{room}") + b"hello")
        await c.ws.close()
    run(go())


# ---- member counts ----

def test_joining_leaving_and_disconnecting_update_the_member_count(stack):
    """A /room watcher's MEMBERS counts STOMP and MQTT members on either node; UNSUBSCRIBE, DISCONNECT and a
    dropped connection take them out (within the 2 s of SPEC §5), and an unsubscribed client gets nothing
    more from the room."""
    async def go():
        room = new_room("count")
        watcher = await Room.join(stack, node_url(stack, 1), room)

        async def count_is(n):
            return await watcher.members() == n

        s = await StompJS.login(stack, ticket(stack, new_uid()), node=2)
        await stomp_join(s, room, "c")
        q = await MqttJS.login(stack, ticket(stack, new_uid()), node=1)
        await q.subscribe({f"room/{room}": 0})
        await wait_until(lambda: count_is(3), 3, "3 members")
        await wait_until(lambda: metrics(stack.push_metrics_ports[1]).get(
            'magpie_push_room_subscriptions{protocol="stomp"}', 0) >= 1, 3, "the STOMP subscription in /metrics")

        s.do("unsubscribe", id="c")
        await wait_until(lambda: count_is(2), 3, "the STOMP member to leave")
        await watcher.say("after the unsubscribe")
        assert (await q.wait("message"))["payload"] == "after the unsubscribe"
        assert not await s.quiet(0.5)

        q.do("end")
        await q.wait("ended")
        await wait_until(lambda: count_is(1), 3, "the MQTT member to leave")

        await stomp_join(s, room, "again")  # subscribing again after leaving is fine
        await wait_until(lambda: count_is(2), 3, "the STOMP member back")
        s.do("drop")  # the connection lost, no DISCONNECT
        await wait_until(lambda: count_is(1), 3, "the dropped STOMP member to leave")
    run_stock(go())


# ---- bad input ----

def test_stomp_room_refusals_get_error_and_the_connection_stays(stack):
    async def go():
        room = new_room("bad")
        async with RoomBystander(stack, node_url(stack, 1), room):
            s = await StompJS.login(stack, ticket(stack, new_uid()), node=1)
            await stomp_join(s, room, "in")
            cases = [
                ("subscribe", {"destination": "/topic/room." + "x" * 129}, BAD_ROOM),
                ("subscribe", {"destination": "/topic/room."}, BAD_ROOM),
                ("subscribe", {"destination": "/topic/room.a\u0001b"}, BAD_ROOM),
                ("subscribe", {"destination": f"/topic/room.{room}-2", "headers": {"ack": "client"}},
                 "room messages are live: subscribe to a room with ack:auto"),
                ("subscribe", {"destination": f"/topic/room.{room}"}, "already subscribed"),
                ("subscribe", {"destination": f"/topic/room.{room}-3", "id": "in"}, "already subscribed"),
                ("send", {"destination": f"/topic/room.{room}-other", "body": "x"}, "not in that room"),
                ("send", {"destination": f"/topic/room.{room}", "body": ""}, "empty message"),
                ("send", {"destination": "/topic/room." + "y" * 129, "body": "x"}, BAD_ROOM),
            ]
            for i, (op, kw, reason) in enumerate(cases):
                headers = dict(kw.pop("headers", {}), receipt=f"bad{i}")
                if op == "send":
                    await s.send(kw["destination"], kw["body"], headers=headers)
                else:
                    s.do("subscribe", headers=headers, **kw)
                e = await s.wait("error")
                assert e["headers"]["message"] == reason and e["headers"]["receipt-id"] == f"bad{i}", (op, kw, e)
            # push.rooms_per_conn (10): nine more rooms are fine, the eleventh is refused
            for k in range(9):
                await stomp_join(s, f"{room}-{k}", f"more{k}")
            s.do("subscribe", destination=f"/topic/room.{room}-10", headers={"receipt": "eleventh"})
            e = await s.wait("error")
            assert e["headers"]["message"] == "too many rooms on this connection (push.rooms_per_conn)", e
            # still in the room and chatting
            await s.send(f"/topic/room.{room}", "still here", receipt="ok")
            await s.wait("receipt", pred=lambda e: e["receipt"] == "ok")
            got = await s.wait("message", pred=lambda e: e["body"] == "still here")
            assert got["headers"]["subscription"] == "in"
    run_stock(go())


def test_mqtt_room_refusals_get_0x80_or_me_errors_and_the_connection_stays(stack):
    async def go():
        room = new_room("badmq")
        async with RoomBystander(stack, node_url(stack, 2), room):
            c = await RawMqtt.login(stack, ticket(stack, new_uid()), node=2)
            await c.ws.send(subscribe_packet(3, (f"room/{room}", 2), ("room/" + "x" * 129, 0), ("room/+", 0),
                                             ("room/#", 0), ("room/", 0), ("room/a\u0001", 0), (f"room/{room}", 1),
                                             ("me/errors", 0)))
            # the room twice in one SUBSCRIBE is one subscription, granted QoS 0 both times
            assert await c.next() == (9, 0, b"\x00\x03\x00\x80\x80\x80\x80\x80\x00\x00")
            for k in range(9):  # push.rooms_per_conn (10): the eleventh room is refused
                await c.ws.send(subscribe_packet(10 + k, (f"room/{room}-{k}", 0)))
                assert await c.next() == (9, 0, bytes([0, 10 + k, 0]))
            await c.ws.send(subscribe_packet(30, (f"room/{room}-10", 0)))
            assert await c.next() == (9, 0, b"\x00\x1e\x80")
            for pid, topic, payload, reason in ((40, f"room/{room}-other", b"x", "not in that room"),
                                                (41, f"room/{room}", b"", "empty message"),
                                                (42, "room/" + "z" * 129, b"x", BAD_ROOM)):
                await c.ws.send(packet(3, 2, mstr(topic) + bytes([0, pid]) + payload))
                # consumed (PUBACK), and explained on me/errors
                assert await c.next() == (4, 0, bytes([0, pid]))
                t, _, body = await c.next()
                assert t == 3 and body.startswith(mstr("me/errors"))
                err = json.loads(body[len(mstr("me/errors")):])
                assert err == {"packet_id": pid, "topic": topic, "reason": reason}
            # still in the room: a QoS 1 PUBLISH is PUBACKed and comes back at QoS 0
            await c.ws.send(packet(3, 2, mstr(f"room/{room}") + b"\x00\x32" + b"still here"))
            assert await c.next() == (4, 0, b"\x00\x32")
            while True:
                t, flags, body = await c.next()
                if body == mstr(f"room/{room}") + b"still here":
                    assert (t, flags) == (3, 0)
                    break
            await c.ws.close()
    run(go())


def test_a_flood_of_room_publishes_is_rate_limited_then_closed(stack):
    """130 QoS 0 PUBLISHes to a room in one WebSocket message: what passes push.burst is refused with "rate
    limited" on me/errors, and push.bad_packet_limit of those close the connection (1008); the room's other
    members are served throughout."""
    async def go():
        room = new_room("flood")
        async with RoomBystander(stack, node_url(stack, 1), room):
            watch = await Room.join(stack, node_url(stack, 2), room)
            c = await RawMqtt.login(stack, ticket(stack, new_uid()), node=1)
            await c.ws.send(subscribe_packet(1, (f"room/{room}", 0), ("me/errors", 0)))
            assert await c.next() == (9, 0, b"\x00\x01\x00\x00")
            await c.ws.send(b"".join(packet(3, 0, mstr(f"room/{room}") + f"f{i}".encode()) for i in range(130)))
            seen, code = await c.closed(timeout=10)
            assert code == 1008, (code, len(seen))
            reasons = [p[2] for p in seen if p[0] == 3 and p[2].startswith(mstr("me/errors"))]
            assert reasons and all(b'"rate limited"' in r for r in reasons)
            await watch.quiet(1.0)
            got = [m for m in watch.messages if m.startswith(b"f")]
            assert 0 < len(got) <= 101, len(got)  # the burst's worth (and one token refilled), in order
            assert got == [f"f{i}".encode() for i in range(len(got))]
    run(go())
