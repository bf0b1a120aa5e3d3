"""Clients for magpie-push's chat protocol (SPEC §4), for the test_push_* tests and the push benchmark.

Tickets are minted here with PyJWT from the stack's secret, exactly as magpie-http's POST /IM/token makes
them ({id, type: "websocket", jti, iat, exp, sid}); tests that need a bad ticket build one with the knobs
of ticket(). Connections go through nginx (the way clients reach the cluster) unless a test names a node.
"""
import asyncio
import json
import os
import random
import socket
import subprocess
import time
import urllib.request
import uuid

import jwt
import websockets

from magpie_stack import Stack, _alive, free_port, metrics, stop_process
import rkeys

DEFAULT_TIMEOUT = 5.0


def new_uid():
    """A user id no other test uses (the tests share one Redis and one MySQL)."""
    return random.randrange(10**9, 10**12)


def ticket(stack, uid, kind="websocket", ttl=120, sid=None, key=None, alg="HS256", jti=None, iat=None,
           exp=None, drop=()):
    """A WebSocket ticket as /IM/token issues it; every part can be spoiled for the handshake tests."""
    now = int(time.time())
    claims = {"id": uid, "type": kind, "jti": jti or uuid.uuid4().hex, "iat": now if iat is None else iat,
              "exp": now + ttl if exp is None else exp}
    if sid is not None:
        claims["sid"] = sid
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, key if key is not None else stack.secret, algorithm=alg)


def unsigned_ticket(uid):
    """alg "none": what an attacker without the key would try."""
    now = int(time.time())
    return jwt.encode({"id": uid, "type": "websocket", "jti": uuid.uuid4().hex, "iat": now, "exp": now + 120},
                      None, algorithm="none")


def make_friends(stack, a, b):
    """What magpie-http's POST /admin/friends leaves in Redis (the friend check reads only Redis)."""
    r = stack.redis()
    r.sadd(rkeys.tagged(r, "friends", a), b)
    r.sadd(rkeys.tagged(r, "friends", b), a)


def friend_pair(stack):
    """Two new users who are friends: (a, b)."""
    a, b = new_uid(), new_uid()
    make_friends(stack, a, b)
    return a, b


def push_url(stack, node=None):
    """ws:// base of the cluster (nginx) or of one node (1-based, as scripts/dev numbers them)."""
    if node is None:
        return f"ws://127.0.0.1:{stack.nginx_port}"
    return f"ws://127.0.0.1:{stack.push_ports[node - 1]}"


def node_of(stack, uid):
    """{node id: connections} of uid's presence in Redis."""
    return {int(k): int(v) for k, v in stack.redis().hgetall(rkeys.tagged(stack.redis(), "presence", uid)).items()}


class Closed(Exception):
    pass


async def recv_frame(ws, timeout):
    """The next message on a client WebSocket; Closed (with the close code) when the server closed it."""
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        raise Closed(f"closed {e.code} {e.reason}") from e


class Chat:
    """One chat connection. Packets that arrive while a test waits for something else are kept, in order,
    so a test can assert on them later."""

    def __init__(self, ws, uid, login):
        _opened.append(ws)
        self.ws = ws
        self.uid = uid
        self.login = login
        self.inbox = []
        self.node = None
        self._seq = 0

    # ---- connecting ----
    @classmethod
    async def connect(cls, stack, uid=None, node=None, tk=None, query=False, origin=None, headers=None,
                      expect_login=True, base=None, **kw):
        uid = uid if uid is not None else new_uid()
        tk = tk if tk is not None else ticket(stack, uid)
        base = base or push_url(stack, node)
        url = f"{base}/ws?token={tk}" if query else f"{base}/ws/{tk}"
        ws = await websockets.connect(url, origin=origin, extra_headers=headers, max_size=None,
                                      ping_interval=None, compression=None, open_timeout=10, close_timeout=2,
                                      **kw)
        chat = cls(ws, uid, None)
        if expect_login:
            chat.login = await chat.recv()
            assert chat.login["type"] == "L", chat.login
        return chat

    @classmethod
    async def connect_on(cls, stack, node, uid=None, attempts=30):
        """Through nginx, until nginx's balancing puts the connection on node (found in Redis presence)."""
        uid = uid if uid is not None else new_uid()
        for _ in range(attempts):
            before = node_of(stack, uid)
            chat = await cls.connect(stack, uid)
            after = node_of(stack, uid)
            landed = [n for n in after if after[n] > before.get(n, 0)]
            if landed == [node]:
                chat.node = node
                return chat
            await chat.close()
            await wait_until(lambda: node_of(stack, uid) == before, 5, "presence to drop the extra connection")
        raise AssertionError(f"nginx never sent uid {uid} to node {node}")

    # ---- sending ----
    def next_id(self):
        self._seq += 1
        return f"{self.uid}-{self._seq}-{uuid.uuid4().hex[:6]}"

    async def send(self, packet):
        await self.ws.send(packet if isinstance(packet, (str, bytes)) else json.dumps(packet))

    async def request(self, type, msg=None, to=0, id=None, timeout=DEFAULT_TIMEOUT):
        """Send a packet and wait for the server's packet with the same id."""
        id = id or self.next_id()
        packet = {"id": id, "to": to, "type": type}
        if msg is not None:
            packet["msg"] = msg
        await self.send(packet)
        return await self.wait_for(lambda p: p.get("id") == id and p.get("type") in (type, "E", "A"), timeout)

    async def text(self, to, msg, id=None, type="t", timeout=DEFAULT_TIMEOUT):
        """Send t (or i) and return the answer (A or E)."""
        id = id or self.next_id()
        await self.send({"id": id, "to": to, "type": type, "msg": msg})
        return await self.wait_for(lambda p: p.get("id") == id and p.get("type") in ("A", "E"), timeout)

    # ---- receiving ----
    async def _next(self, timeout):
        return json.loads(await recv_frame(self.ws, timeout))

    async def recv(self, timeout=DEFAULT_TIMEOUT):
        if self.inbox:
            return self.inbox.pop(0)
        return await self._next(timeout)

    async def wait_for(self, pred, timeout=DEFAULT_TIMEOUT):
        for i, p in enumerate(self.inbox):
            if pred(p):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(f"uid {self.uid}: no matching packet in {timeout}s; "
                                           f"kept: {self.inbox[-5:]}")
            p = await self._next(left)
            if pred(p):
                return p
            self.inbox.append(p)

    async def collect(self, seconds):
        """Everything that arrives within seconds (plus what was kept)."""
        got, self.inbox = self.inbox, []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(await self._next(left))
            except asyncio.TimeoutError:
                return got

    async def messages(self, count, timeout=DEFAULT_TIMEOUT, types="ti"):
        """The next count chat messages (t/i), in arrival order; other packets are kept."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            out.append(await self.wait_for(lambda p: p.get("type") in types,
                                           max(0.01, deadline - time.monotonic())))
        return out

    async def sync_all(self, after=0, limit=500):
        """Y from after until more is false, limit a page: (the packets, the timeline's max)."""
        out, at = [], after
        while True:
            r = await self.request("Y", {"after": at, "limit": limit}, timeout=10)
            assert r["type"] == "Y", r
            out += r["msg"]["messages"]
            if not r["msg"]["more"]:
                return out, r["msg"]["max"]
            at = out[-1]["seq"]

    async def closed(self, timeout=DEFAULT_TIMEOUT):
        """Wait for the server to close; returns (code, reason) and every packet that came before."""
        got = list(self.inbox)
        self.inbox = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
                got.append(json.loads(raw))
            except websockets.ConnectionClosed:
                return self.ws.close_code, self.ws.close_reason, got

    @property
    def open(self):
        return self.ws.open

    async def close(self):
        await self.ws.close()


class Device:
    """One device of a user as the README tells app developers to write it: it keeps what it handled by seq,
    syncs with Y after (re)connecting and when a packet's seq skips ahead, and sends each message until it
    gets A (reconnecting on a lost connection), with the same id every time."""

    def __init__(self, stack, uid):
        self.stack, self.uid = stack, uid
        self.have = {}  # seq -> (mid, from, text)
        self.chat = None
        self.acks = {}  # client id -> (mid, seq)

    @property
    def last(self):
        n = 0
        while n + 1 in self.have:
            n += 1
        return n

    def keep(self, p):
        msg = p["msg"] if isinstance(p["msg"], str) else json.dumps(p["msg"], sort_keys=True)  # s: an object
        entry = (p["mid"], p["from"], msg)
        old = self.have.setdefault(p["seq"], entry)
        assert old == entry, f"seq {p['seq']} of uid {self.uid} held {old}, now {entry}"

    async def connect(self):
        while True:
            try:
                self.chat = await Chat.connect(self.stack, self.uid)
                await self.sync()
                return
            except (OSError, Closed, asyncio.TimeoutError, websockets.WebSocketException, AssertionError):
                await asyncio.sleep(0.2)

    async def sync(self):
        while True:
            r = await self.chat.request("Y", {"after": self.last, "limit": 200}, timeout=10)
            if r["type"] == "E":   # temporarily unavailable: try again a little later
                await asyncio.sleep(0.2)
                continue
            for p in r["msg"]["messages"]:
                self.keep(p)
            if not r["msg"]["more"]:
                return

    def take(self, packets):
        gap = False
        for p in packets:
            if p.get("type") in ("t", "i", "g", "s") and "seq" in p:
                if p["seq"] > self.last + 1:
                    gap = True
                self.keep(p)
        return gap

    async def send(self, to, text, id, type="t"):
        while True:
            try:
                if self.chat is None or not self.chat.open:
                    await self.connect()
                r = await self.chat.text(to, text, id=id, type=type, timeout=3)
                if r["type"] == "A":
                    self.acks[id] = (r["mid"], r["seq"])
                    self.have.setdefault(r["seq"], (r["mid"], self.uid, text))
                    return
                await asyncio.sleep(0.1)   # E: temporarily unavailable -- the same packet again
            except (Closed, asyncio.TimeoutError, websockets.WebSocketException, OSError):
                await asyncio.sleep(0.1)
                self.chat = None

    async def listen(self, seconds):
        """Take what arrives for a while; Y when a seq skipped ahead; reconnect when the connection drops."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.chat is None or not self.chat.open:
                    await self.connect()
                got = await self.chat.collect(min(0.3, max(0.01, deadline - time.monotonic())))
                if self.take(got):
                    await self.sync()
            except (Closed, asyncio.TimeoutError, websockets.WebSocketException, OSError):
                self.chat = None



async def wait_until(cond, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


_opened = []  # every connection a test opened, closed when its run() ends


def run(coro):
    """Run one test's coroutine (python3-websockets 10 is asyncio-only; pytest-asyncio is not in Debian's
    list of what the tests use), then close whatever connections it left open."""
    async def wrapper():
        try:
            return await coro
        finally:
            left = [ws for ws in _opened if not ws.closed]
            _opened.clear()
            await asyncio.gather(*(ws.close() for ws in left), return_exceptions=True)
    return asyncio.run(wrapper())


class Bystander:
    """A second client that keeps being served while a test attacks the node: it pings every interval and
    every ping must be answered promptly. Use as `async with Bystander(stack) as b:` (node: 1-based node of
    the stack, url: another node's ws:// base, neither: through nginx)."""

    def __init__(self, stack, node=None, interval=0.05, max_rtt=2.0, url=None):
        self.stack, self.node, self.interval, self.max_rtt, self.url = stack, node, interval, max_rtt, url
        self.rtts = []

    async def __aenter__(self):
        self.chat = await Chat.connect(self.stack, node=self.node, base=self.url)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            reply = await self.chat.request("P", "ping", timeout=self.max_rtt)
            assert reply["type"] == "P" and reply["msg"] == "pong", reply
            self.rtts.append(time.monotonic() - t0)
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc):
        self.stop.set()
        await self.task  # re-raises a missed or late pong
        assert self.chat.open, "the bystander's connection was closed"
        assert self.rtts, "the bystander never got an answer"
        await self.chat.close()
        return False


# ---- the stack's Redis stream and MySQL, as the tests check them ----

def stream_entries(stack, from_uid):
    """Entries of the chat streams (every shard's) sent by from_uid, as dicts."""
    out = []
    for _id, fields in rkeys.xrange_all(stack.redis(), "mq"):
        if fields.get("from") == str(from_uid):
            out.append(fields)
    return out


def stored(stack, from_uid):
    """{client id: count} of from_uid's messages that are durably queued or stored: still in the stream,
    or already moved to MySQL by magpie-persist."""
    counts = {}
    # A message between users of two shards is two entries with one mid (push/chat_send.c's split: the
    # sender's half and the recipient's): count messages, i.e. distinct mids.
    for cid, _mid in {(f["cid"], f["mid"]) for f in stream_entries(stack, from_uid)}:
        counts[cid] = counts.get(cid, 0) + 1
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT client_id FROM messages WHERE from_uid = %s", (from_uid,))
        # client_id is compared byte for byte (sql/002): the column is binary, the driver gives bytes
        in_db = [row[0].decode() if isinstance(row[0], bytes) else row[0] for row in cur.fetchall()]
    # An entry already inserted but not yet acked by magpie-persist is in both places: count it once.
    for cid in set(in_db):
        counts[cid] = max(counts.get(cid, 0), in_db.count(cid))
    return counts


def persist_running(stack):
    return stack.daemon_pid("persist") is not None


# ---- an extra node with its own settings (limits that would take minutes with the defaults) ----

class ExtraNode:
    """A magpie-push node started by the test, with config overrides, on its own ports, registered in the
    same cluster. Stopped with SIGTERM (so the sanitizer build checks it for leaks too)."""

    def __init__(self, stack, node_id, env=None, **overrides):
        """overrides: push.* keys (MAGPIE_PUSH_<KEY>); env: other MAGPIE_* variables as they are."""
        self.stack = stack
        self.node_id = node_id
        self.extra_env = env or {}
        self.log = os.path.join(stack.run, "logs", f"push-extra{node_id}.log")
        # A port found free can be taken by someone else before the node binds it (any outgoing connection
        # may get it as its local port): try again on other ports, as an operator would.
        for _ in range(5):
            self.port, self.metrics_port = free_port(), free_port()
            if self.port != self.metrics_port and self._start(overrides):
                return
        raise RuntimeError(f"extra node {node_id} did not start; see {self.log}")

    def _start(self, overrides):
        env = dict(os.environ)
        env.update({"MAGPIE_PUSH_NODE_ID": str(self.node_id), "MAGPIE_PUSH_LISTEN": f"127.0.0.1:{self.port}",
                    "MAGPIE_PUSH_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}", "MAGPIE_LOG_FILE": self.log})
        for k, v in overrides.items():
            env[f"MAGPIE_PUSH_{k.upper()}"] = str(v)
        env.update({k: str(v) for k, v in self.extra_env.items()})
        out = open(os.path.join(self.stack.run, "logs", f"push-extra{self.node_id}.out"), "ab")
        log_start = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        self.proc = subprocess.Popen([self.stack.bin("push/magpie-push"), "-c", self.stack.conf_path], env=env,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                with open(self.log, errors="replace") as f:
                    f.seek(log_start)
                    if "cannot listen" in f.read():
                        return False
                raise RuntimeError(f"extra node {self.node_id} exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"extra node {self.node_id} did not become healthy; see {self.log}")

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    async def chat(self, uid=None, **kw):
        uid = uid if uid is not None else new_uid()
        tk = kw.pop("tk", None) or ticket(self.stack, uid)
        ws = await websockets.connect(f"{self.url}/ws/{tk}", max_size=None, ping_interval=None,
                                      compression=None, close_timeout=2, **kw)
        chat = Chat(ws, uid, None)
        chat.login = await chat.recv()
        assert chat.login["type"] == "L", chat.login
        return chat

    def stop(self):
        return stop_process(self.proc, timeout=15)[0]


def restart_node(stack, name):
    """Start a push node again exactly as scripts/dev did and wait for its /healthz."""
    i = int(name.replace("push", "")) - 1
    stack.start_daemon(name)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{stack.push_metrics_ports[i]}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not come back")


def ensure_nodes_up(stack):
    """Both nodes of the stack running and healthy (after tests that kill them)."""
    for i in range(len(stack.push_ports)):
        name = f"push{i + 1}"
        if stack.daemon_pid(name) is None:
            restart_node(stack, name)


class RawWS:
    """A WebSocket client with no library behind it: it answers nothing by itself (no pong), reads only
    when told, and can shrink its receive buffer -- what the idle and slow-reader tests need."""

    def __init__(self, host, port, path, rcvbuf=None, timeout=10):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def frame(self):
        """The next frame as (opcode, payload); ConnectionError when the server closed the socket."""
        self._fill(2)
        opcode, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        off = 2
        if n == 126:
            self._fill(4)
            n, off = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            self._fill(10)
            n, off = int.from_bytes(self.buf[2:10], "big"), 10
        self._fill(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return opcode, payload

    def send_text(self, text, opcode=0x1, fin=True):
        data = text.encode() if isinstance(text, str) else text
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(data)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self):
        self.sock.close()
