"""MQTT 3.1.1 clients for the tests of SPEC §4.3 that are not npm's mqtt.js (stomp_client.MqttJS): raw packets
over a plain WebSocket for what no stock client sends, and Debian's python3-paho-mqtt over its WebSocket
transport."""
import asyncio
import json
import struct
import threading
import time

import websockets

from push_client import push_url

try:
    import paho.mqtt.client as paho
except ImportError:  # scripts/dev installs python3-paho-mqtt
    paho = None


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


def puback_packet(pid):
    return packet(4, 0, struct.pack(">H", pid))


def parse_publish(flags, body):
    """A server PUBLISH: topic, qos, dup, packet id (None at QoS 0) and the payload's JSON."""
    tl = struct.unpack(">H", body[:2])[0]
    qos, off = (flags >> 1) & 3, 2 + tl
    pid = struct.unpack(">H", body[off:off + 2])[0] if qos else None
    off += 2 if qos else 0
    return {"topic": body[2:2 + tl].decode(), "qos": qos, "dup": bool(flags & 8), "pid": pid,
            "payload": json.loads(body[off:])}


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

    @classmethod
    async def session(cls, stack, tk, client_id, clean=False, node=None):
        """CONNECTed with this client id and clean flag: (client, session present)."""
        c = await cls.open(stack, node)
        await c.ws.send(connect_packet(tk, client_id=client_id, clean=clean))
        t, flags, body = await c.next()
        assert (t, flags, body[1]) == (2, 0, 0), (t, flags, body)
        return c, body[0] & 1

    async def publishes(self, n, timeout=10):
        """The next n packets, each a PUBLISH from the server, parsed."""
        out = []
        for _ in range(n):
            t, flags, body = await self.next(timeout)
            assert t == 3, (t, flags, body)
            out.append(parse_publish(flags, body))
        return out

    async def quiet(self, seconds):
        """Packets that come within seconds."""
        seen = []
        try:
            while True:
                seen.append(await self.next(seconds))
        except asyncio.TimeoutError:
            return seen

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


class Paho:
    """Debian's paho (1.6) over its WebSocket transport through nginx, its callbacks kept in order as events
    (kind, args): connack (client, userdata, flags, rc), suback (client, userdata, mid, granted), puback
    (client, userdata, mid), message (topic, payload bytes, qos). Paho sends Origin: https://<host> by
    default, which push.allowed_origins does not admit: the client drops the header (README). Its callbacks
    run on paho's thread: wait() blocks the caller, async_wait() and messages() await without blocking the
    event loop."""

    def __init__(self, stack, tk, client_id="", clean=True):
        self.events, self.lock = [], threading.Lock()
        self.client = paho.Client(client_id=client_id, clean_session=clean, transport="websockets")
        self.client.ws_set_options(path="/ws", headers=lambda h: {k: v for k, v in h.items() if k != "Origin"})
        self.client.username_pw_set("magpie", tk)
        self.client.on_connect = self.on("connack")
        self.client.on_subscribe = self.on("suback")
        self.client.on_message = lambda c, u, msg: self.on("message")(msg.topic, bytes(msg.payload), msg.qos)
        self.client.on_publish = self.on("puback")
        self.client.connect("127.0.0.1", stack.nginx_port, keepalive=30)
        self.client.loop_start()

    def on(self, kind):
        def cb(*args):
            with self.lock:
                self.events.append((kind, args))
        return cb

    def _take(self, kind):
        with self.lock:
            for i, (k, args) in enumerate(self.events):
                if k == kind:
                    return self.events.pop(i)[1]
        return None

    def wait(self, kind, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._take(kind)
            if got is not None:
                return got
            time.sleep(0.02)
        raise AssertionError(f"paho: no {kind} in {timeout}s: {self.events}")

    async def async_wait(self, kind, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._take(kind)
            if got is not None:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"paho: no {kind} in {timeout}s: {self.events}")

    async def messages(self, n, timeout=20):
        return [await self.async_wait("message", timeout) for _ in range(n)]

    def quiet(self, kind, seconds):
        """The events of this kind within seconds."""
        time.sleep(seconds)
        with self.lock:
            got = [args for k, args in self.events if k == kind]
            self.events = [(k, args) for k, args in self.events if k != kind]
        return got

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()
