"""MQTT 3.1.1 on /ws (SPEC §4.3; design push/mqtt.c): the stock clients mqtt.js (npm mqtt) and Debian's
python3-paho-mqtt over its WebSocket transport log in with a ticket, chat with a JSON client, a STOMP client
and each other, send to a group; PUBACK only once stored; refusals on me/errors; forbidden subscriptions get
0x80; malformed packets close the connection while a JSON bystander keeps chatting."""
import asyncio
import json
import random
import struct
import threading
import time

import pytest
import websockets

from push_client import Bystander, Chat, make_friends, metrics, new_uid, push_url, run, ticket, wait_until
from stomp_client import MqttJS, StompJS, redis_group, stock_clients_installed, stop_all

try:
    import paho.mqtt.client as paho
except ImportError:  # scripts/dev installs python3-paho-mqtt
    paho = None

pytestmark = pytest.mark.skipif(not stock_clients_installed(),
                                reason="tests/clients/node_modules missing: scripts/dev test runs npm ci there")


def mqtt_run(coro):
    async def wrapper():
        try:
            return await coro
        finally:
            await stop_all()
    return run(wrapper())


def pair(stack):
    a, b = new_uid(), new_uid()
    make_friends(stack, a, b)
    return a, b


# ---- raw packets ----

def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def packet(ptype, flags, body):
    rl, enc = len(body), b""
    while True:
        d, rl = rl & 0x7F, rl >> 7
        enc += bytes([d | (0x80 if rl else 0)])
        if not rl:
            break
    return bytes([ptype << 4 | flags]) + enc + body


def connect_packet(tk, client_id="", clean=True, keepalive=30, level=4):
    flags = 0x80 | 0x40 | (0x02 if clean else 0)
    return packet(1, 0, mstr("MQTT") + bytes([level, flags]) + struct.pack(">H", keepalive) + mstr(client_id)
                  + mstr("magpie") + mstr(tk))


def publish_packet(topic, payload, qos=1, pid=1):
    return packet(3, qos << 1, mstr(topic) + (struct.pack(">H", pid) if qos else b"") + payload.encode())


def subscribe_packet(pid, *filters):
    return packet(8, 2, struct.pack(">H", pid) + b"".join(mstr(f) + bytes([q]) for f, q in filters))


class RawMqtt:
    def __init__(self, ws):
        self.ws = ws
        self.buf = b""

    @classmethod
    async def open(cls, stack, node=None):
        return cls(await websockets.connect(f"{push_url(stack, node)}/ws", subprotocols=["mqtt"], max_size=None,
                                            ping_interval=None, compression=None, close_timeout=2))

    @classmethod
    async def login(cls, stack, tk, node=None):
        c = await cls.open(stack, node)
        await c.ws.send(connect_packet(tk))
        assert await c.next() == (2, 0, b"\x00\x00")
        return c

    async def next(self, timeout=5):
        """(type, flags, body) of the next packet from the server."""
        while True:
            if len(self.buf) >= 2:
                rl, mult, i = 0, 1, 1
                while i < len(self.buf):
                    rl += (self.buf[i] & 0x7F) * mult
                    mult *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + rl:
                    p = (self.buf[0] >> 4, self.buf[0] & 15, self.buf[i + 1:i + 1 + rl])
                    self.buf = self.buf[i + 1 + rl:]
                    return p
            self.buf += await asyncio.wait_for(self.ws.recv(), timeout)

    async def closed(self, timeout=5):
        """Packets seen until the server closed, and the close code."""
        seen = []
        try:
            while True:
                seen.append(await self.next(timeout))
        except websockets.ConnectionClosed:
            return seen, self.ws.close_code


# ---- stock clients ----

def test_mqttjs_chats_with_json_stomp_and_paho_clients(stack):
    """mqtt.js logs in with a ticket (mqtt named in the 101), subscribes me/inbox at QoS 1 (a foreign filter
    gets 0x80), gets a JSON client's t as PUBLISH me/inbox with the §4 packet, and its own QoS 1 PUBLISHes
    are PUBACKed once stored and reach a JSON client and a STOMP client."""
    async def go():
        a, b = pair(stack)
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
        assert stack.redis().exists(f"mp:msg:{seen['mid']}")

        s = await StompJS.login(stack, ticket(stack, c_uid))
        s.do("subscribe", destination="/user/queue/messages", id="in")
        await asyncio.sleep(0.3)
        await m.publish(f"user/{c_uid}", "hi stomp", qos=0, tag="p2")
        assert json.loads((await s.wait("message"))["body"])["msg"] == "hi stomp"
        await s.send(f"/user/{a}", "hi mqtt from stomp", receipt="r")
        got = await m.wait("message", pred=lambda e: e["topic"] == "me/inbox")
        assert json.loads(got["payload"])["msg"] == "hi mqtt from stomp"
    mqtt_run(go())


def test_refused_publish_is_pubacked_and_explained_on_me_errors(stack):
    async def go():
        a, b = pair(stack)
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
    mqtt_run(go())


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
    mqtt_run(go())


@pytest.mark.skipif(paho is None, reason="python3-paho-mqtt is not installed")
def test_paho_over_websocket_chats_with_mqttjs(stack):
    """Debian's paho (1.6) over its WebSocket transport. Paho sends Origin: https://<host> by default, which
    push.allowed_origins does not admit: the client drops the header (README)."""
    a, b = pair(stack)
    events, lock = [], threading.Lock()

    def on(kind):
        def cb(*args):
            with lock:
                events.append((kind, args))
        return cb

    client = paho.Client(client_id="", clean_session=True, transport="websockets")
    client.ws_set_options(path="/ws", headers=lambda h: {k: v for k, v in h.items() if k != "Origin"})
    client.username_pw_set("magpie", ticket(stack, a))
    client.on_connect = on("connack")
    client.on_subscribe = on("suback")
    client.on_message = lambda c, u, msg: on("message")(msg.topic, msg.payload.decode(), msg.qos)
    client.on_publish = on("puback")

    def wait(kind, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                for i, (k, args) in enumerate(events):
                    if k == kind:
                        return events.pop(i)[1]
            time.sleep(0.02)
        raise AssertionError(f"no {kind}: {events}")

    client.connect("127.0.0.1", stack.nginx_port, keepalive=30)
    client.loop_start()
    try:
        assert wait("connack")[3] == 0
        client.subscribe([("me/inbox", 2), ("user/+", 0)])
        assert tuple(wait("suback")[3]) == (1, 128)  # QoS 2 is granted as 1

        async def go():
            m = await MqttJS.login(stack, ticket(stack, b))
            await m.subscribe({"me/inbox": 1})
            info = client.publish(f"user/{b}", "from paho", qos=1)
            got = await m.wait("message")
            assert json.loads(got["payload"])["msg"] == "from paho"
            assert wait("puback")[2] == info.mid
            await m.publish(f"user/{a}", "from mqtt.js", qos=1, tag="x")
            topic, payload, qos = wait("message")
            assert topic == "me/inbox" and qos == 1 and json.loads(payload)["msg"] == "from mqtt.js"
        mqtt_run(go())
    finally:
        client.loop_stop()
        client.disconnect()


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
            a, b = pair(stack)
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
            a, b = pair(stack)
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
        a, b = pair(stack)
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
    mqtt_run(go())


def test_metrics_count_mqtt_packets(stack):
    async def go():
        a, b = pair(stack)
        before = metrics(stack.push_metrics_ports[0])
        c = await RawMqtt.login(stack, ticket(stack, a), node=1)
        await c.ws.send(publish_packet(f"user/{b}", "count me", qos=1, pid=5))
        assert await c.next() == (4, 0, b"\x00\x05")
        key = 'magpie_push_frames_total{protocol="mqtt",command="PUBLISH"}'
        await wait_until(lambda: metrics(stack.push_metrics_ports[0]).get(key, 0) > before.get(key, 0), 5,
                         "the MQTT counters")
        assert metrics(stack.push_metrics_ports[0]).get('magpie_push_connections{protocol="mqtt"}', 0) >= 1
    run(go())
