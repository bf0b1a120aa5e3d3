"""Clients of the standard protocols for the tests of SPEC §4.3: the stock npm clients @stomp/stompjs and mqtt
(tests/clients/*_driver.mjs, driven line by line from here), and raw STOMP frames over a plain WebSocket for
what no stock client sends."""
import asyncio
import json
import os
import shutil

import websockets

from push_client import _opened, push_url, recv_frame, run
import rkeys

REPO = os.environ.get("MAGPIE_REPO", os.path.join(os.path.dirname(__file__), "..", ".."))
CLIENTS = os.path.join(REPO, "tests", "clients")
DRIVER = os.path.join(CLIENTS, "stomp_driver.mjs")
SUBPROTOCOLS = ["v12.stomp", "v11.stomp", "v10.stomp"]


def stock_clients_installed():
    return shutil.which("node") is not None and os.path.isdir(os.path.join(CLIENTS, "node_modules", "@stomp"))


class StompJS:
    """One @stomp/stompjs client in a Node process. Events that arrive while a test waits for another kind
    are kept, in order."""

    DRIVER = DRIVER

    def __init__(self, proc):
        self.proc = proc
        self.events = []
        self.connected = None

    @classmethod
    async def start(cls, stack, node=None):
        proc = await asyncio.create_subprocess_exec(
            "node", cls.DRIVER, f"{push_url(stack, node)}/ws", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=CLIENTS)
        _running.append(proc)
        return cls(proc)

    @classmethod
    async def login(cls, stack, tk, node=None, headers=None, heartbeat=(0, 0)):
        """Started and CONNECTed with the ticket as passcode; asserts CONNECTED."""
        c = await cls.start(stack, node)
        c.do("connect", headers={"passcode": tk, **(headers or {})}, heartbeat=list(heartbeat))
        c.connected = await c.wait("connected")
        return c

    def do(self, op, **kw):
        self.proc.stdin.write((json.dumps({"op": op, **kw}) + "\n").encode())

    async def _read(self, timeout):
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise EOFError("the stompjs process ended")
        return json.loads(line)

    async def wait(self, ev, timeout=10, pred=None):
        """The first kept or new event of kind ev (for which pred holds)."""
        for i, e in enumerate(self.events):
            if e["ev"] == ev and (pred is None or pred(e)):
                return self.events.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            e = await self._read(max(0.01, deadline - loop.time()))
            if e["ev"] == ev and (pred is None or pred(e)):
                return e
            self.events.append(e)

    async def messages(self, n, timeout=20):
        return [await self.wait("message", timeout) for _ in range(n)]

    async def quiet(self, seconds, ev="message"):
        """Events of kind ev within seconds (asserting nothing)."""
        got = [e for e in self.events if e["ev"] == ev]
        self.events = [e for e in self.events if e["ev"] != ev]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            try:
                e = await self._read(deadline - loop.time())
            except asyncio.TimeoutError:
                break
            (got if e["ev"] == ev else self.events).append(e)
        return got

    async def send(self, destination, body, receipt=None, headers=None):
        self.do("send", destination=destination, body=body, receipt=receipt, headers=headers or {})

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class MqttJS(StompJS):
    """One mqtt.js client in a Node process (tests/clients/mqtt_driver.mjs)."""
    DRIVER = os.path.join(CLIENTS, "mqtt_driver.mjs")

    @classmethod
    async def login(cls, stack, tk, node=None, client_id="", clean=True, keepalive=30):
        c = await cls.start(stack, node)
        c.do("connect", password=tk, clientId=client_id, clean=clean, keepalive=keepalive)
        c.connected = await c.wait("connack")
        assert c.connected["returnCode"] == 0, c.connected
        return c

    async def publish(self, topic, payload, qos=1, tag=None):
        self.do("publish", topic=topic, payload=payload, qos=qos, tag=tag)
        return await self.wait("published", pred=lambda e: e["tag"] == tag)

    async def subscribe(self, topics, tag="s"):
        self.do("subscribe", topics=topics, tag=tag)
        return await self.wait("suback", pred=lambda e: e["tag"] == tag)


_running = []


def redis_group(stack, owner, members):
    """A group as magpie-http's create script leaves it in Redis (shared/keys.h), which is all g reads; like
    make_friends, so this test does not depend on the HTTP group endpoints."""
    r = stack.redis()
    gid = r.incr("mp:grp:next")
    r.hset(rkeys.tagged(r, "grp", gid), mapping={"name": "stomp", "owner": owner, "created": 1, "j": 0, "ver": 1, "n": 0})
    for i, u in enumerate([owner] + members):
        r.hset(rkeys.tagged(r, "grp", gid) + ":m", u, f"{'o' if i == 0 else 'm'} {i + 1} 1")
        r.sadd(rkeys.tagged(r, "ugrp", u), gid)
    return gid


async def stop_all():
    for p in _running:
        if p.returncode is None:
            p.kill()
            await p.wait()
    _running.clear()


def run_stock(coro):
    """push_client.run for a test that starts stock clients: their Node processes are stopped afterwards."""
    async def wrapper():
        try:
            return await coro
        finally:
            await stop_all()
    return run(wrapper())


# ---- raw frames ----

def frame(command, headers=None, body=""):
    """A STOMP frame as text: command, headers (escaped by the caller when needed), blank line, body, NUL."""
    lines = [command] + [f"{k}:{v}" for k, v in (headers or {}).items()]
    return "\n".join(lines) + "\n\n" + body + "\0"


def parse(text):
    """(command, headers, body) of one frame as the server sends it (unescaped headers, content-length)."""
    if isinstance(text, bytes):
        text = text.decode()
    head, _, rest = text.partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if lines[0] != "CONNECTED":
            k, v = unescape(k), unescape(v)
        headers.setdefault(k, v)
    if "content-length" in headers:
        body = rest.encode()[:int(headers["content-length"])].decode()
    else:
        body = rest.split("\0", 1)[0]
    return lines[0], headers, body


def unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            out.append({"r": "\r", "n": "\n", "c": ":", "\\": "\\"}[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


class RawStomp:
    """A WebSocket speaking v12.stomp with frames the test writes itself."""

    def __init__(self, ws):
        _opened.append(ws)
        self.ws = ws

    @classmethod
    async def open(cls, stack, node=None, subprotocols=None):
        ws = await websockets.connect(f"{push_url(stack, node)}/ws", subprotocols=subprotocols or SUBPROTOCOLS,
                                      max_size=None, ping_interval=None, compression=None, open_timeout=10,
                                      close_timeout=2)
        return cls(ws)

    @classmethod
    async def login(cls, stack, tk, node=None, **headers):
        c = await cls.open(stack, node)
        await c.send(frame("CONNECT", {"accept-version": "1.2", "host": "magpie", "passcode": tk, **headers}))
        cmd, h, _ = await c.recv()
        assert cmd == "CONNECTED", (cmd, h)
        c.connected = h
        return c

    async def send(self, text):
        await self.ws.send(text)

    async def recv(self, timeout=5):
        """The next frame that is not a heart-beat, parsed."""
        while True:
            m = await recv_frame(self.ws, timeout)
            if m.strip("\r\n") if isinstance(m, str) else m.strip(b"\r\n"):
                return parse(m)

    async def closed(self, timeout=5):
        """Reads until the server closes; returns (frames seen, close code)."""
        seen = []
        try:
            while True:
                seen.append(await self.recv(timeout))
        except Exception as e:  # recv_frame raises Closed with the code
            return seen, getattr(self.ws, "close_code", None), e
