"""A client of magpie-push's room protocol (SPEC §5, seed 004), for the test_room_* tests.

The protobuf classes come from the repo's own shared/room.proto: protoc-c (the compiler the build uses)
writes its FileDescriptorSet into a temporary folder, and python3-protobuf builds the message classes from
it -- the same classes `protoc --python_out` would generate, with nothing generated in the tree.

Deliveries are unpacked exactly as the seed's client does: Reply{type 3} -> BroadcastRoomReq -> its data
split at each 4-byte little-endian length. A Room keeps every message it has unpacked, and counts the
frames they came in, so tests can assert on merging and order.
"""
import asyncio
import os
import subprocess
import tempfile
import time
import uuid

import jwt
import websockets
from google.protobuf import descriptor_pb2, message_factory

from magpie_stack import REPO
from push_client import Closed, _opened, recv_frame, run  # run: what the room tests run their coroutines with

try:  # the tests' registry of issued tokens, which the last test looks for in every log
    from http_client import remember
except ImportError:  # the benchmark runs without pytest
    def remember(value):
        pass

DEFAULT_TIMEOUT = 5.0

# PackageType and MsgLevel of room.proto
UNKNOWN, SIGN_IN, HEARTBEAT, MESSAGE, MEMBERS = 0, 1, 2, 3, 4
NORMAL, IMPORTANT = 0, 1


def _load_messages():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "room.desc")
        subprocess.run(["protoc-c", f"--proto_path={os.path.join(REPO, 'shared')}", f"--descriptor_set_out={out}",
                        "room.proto"], check=True, capture_output=True)
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    classes = message_factory.GetMessages(list(fds.file))
    return {name.split(".")[-1]: cls for name, cls in classes.items()}


pb = _load_messages()
Req, Reply, Err, SignIn, BroadcastRoomReq = (pb[n] for n in ("Req", "Reply", "Err", "SignIn", "BroadcastRoomReq"))


def unpack(data):
    """The seed's unpacking: |len (4 bytes, little-endian)|bytes|len|bytes|... -> [bytes, ...]."""
    out, off = [], 0
    while off < len(data):
        if off + 4 > len(data):
            raise ValueError(f"cut length prefix at {off}")
        n = int.from_bytes(data[off:off + 4], "little")
        off += 4
        if off + n > len(data):
            raise ValueError(f"message of {n} bytes at {off} runs past the batch")
        out.append(bytes(data[off:off + n]))
        off += n
    return out


def login_token(stack, uid, kind="login", ttl=3600, key=None, alg="HS256", jti=None, exp=None):
    """A login token as magpie-http's /login and /tk issue it ({id, type, jti, iat, exp}, HS256)."""
    now = int(time.time())
    claims = {"id": uid, "type": kind, "jti": jti or uuid.uuid4().hex, "iat": now,
              "exp": now + ttl if exp is None else exp}
    token = jwt.encode(claims, key if key is not None else stack.secret, algorithm=alg)
    remember(token)
    return token


def req(type, data=b""):
    return Req(type=type, data=data).SerializeToString()


def sign_in_req(token, room):
    return req(SIGN_IN, SignIn(token=token, roomID=room).SerializeToString())


def message_req(msg, room="", level=NORMAL):
    data = msg.encode() if isinstance(msg, str) else msg
    return req(MESSAGE, BroadcastRoomReq(roomID=room, msgLv=level, data=data).SerializeToString())



class Room:
    """One /room connection. Replies that arrive while a test waits for something else are kept in order."""

    def __init__(self, ws, uid):
        _opened.append(ws)
        self.ws = ws
        self.uid = uid
        self.room = None
        self.inbox = []      # decoded replies not yet consumed: (type, payload) with payload an Err or bytes
        self.messages = []   # every message unpacked from deliveries, in arrival order
        self.levels = []     # the msgLv of the batch each message came in
        self.frames = 0      # delivery frames (Reply type 3) received
        self.batch_sizes = []

    @classmethod
    async def connect(cls, url, uid=None, **kw):
        """url: ws://host:port of a node or of nginx."""
        # max_queue=None: the library reads every frame as it comes (its default stops reading after 32
        # unconsumed ones, and the node would see a slow member)
        kw.setdefault("max_queue", None)
        ws = await websockets.connect(f"{url}/room", max_size=None, ping_interval=None, compression=None,
                                      open_timeout=10, close_timeout=2, **kw)
        return cls(ws, uid)

    @classmethod
    async def join(cls, stack, url, room, uid=None, token=None):
        """Connect and sign in; asserts the sign-in succeeded."""
        uid = uid or new_uid()
        r = await cls.connect(url, uid)
        err = await r.sign_in(token or login_token(stack, uid), room)
        assert err.code == 0, (err.code, err.msg)
        return r

    # ---- sending ----
    async def send(self, raw):
        await self.ws.send(raw)

    async def sign_in(self, token, room, timeout=DEFAULT_TIMEOUT):
        await self.send(sign_in_req(token, room))
        err = await self.error(timeout)
        if err.code == 0:
            self.room = room
        return err

    async def heartbeat(self, timeout=DEFAULT_TIMEOUT):
        await self.send(req(HEARTBEAT))
        return await self.reply_of(HEARTBEAT, timeout)

    async def members(self, timeout=DEFAULT_TIMEOUT):
        await self.send(req(MEMBERS))
        return int(await self.reply_of(MEMBERS, timeout))

    async def say(self, msg, room=None, level=NORMAL):
        await self.send(message_req(msg, self.room if room is None else room, level))

    # ---- receiving ----
    def _take(self, raw):
        if isinstance(raw, str):
            raise AssertionError(f"a text frame from the room protocol: {raw!r}")
        reply = Reply.FromString(raw)
        if reply.type == MESSAGE:
            b = BroadcastRoomReq.FromString(reply.data)
            got = unpack(b.data)
            self.frames += 1
            self.batch_sizes.append(len(got))
            self.messages.extend(got)
            self.levels.extend([b.msgLv] * len(got))
            return None
        if reply.type == UNKNOWN:
            return (UNKNOWN, Err.FromString(reply.data))
        return (reply.type, bytes(reply.data))

    async def _next(self, timeout):
        return self._take(await recv_frame(self.ws, timeout))

    async def reply(self, timeout=DEFAULT_TIMEOUT):
        """The next non-delivery reply (type, payload); deliveries are unpacked on the way."""
        if self.inbox:
            return self.inbox.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(f"uid {self.uid}: no reply within {timeout}s")
            got = await self._next(left)
            if got is not None:
                return got

    async def reply_of(self, type, timeout=DEFAULT_TIMEOUT):
        """The next reply of this type (others are kept); an Err instead raises with its code and msg."""
        for i, (t, p) in enumerate(self.inbox):
            if t in (type, UNKNOWN):
                self.inbox.pop(i)
                return self._check(type, t, p)
        deadline = time.monotonic() + timeout
        while True:
            t, p = await self.reply(max(0.01, deadline - time.monotonic()))
            if t in (type, UNKNOWN):
                return self._check(type, t, p)
            self.inbox.append((t, p))

    @staticmethod
    def _check(want, t, p):
        if t != want:
            raise RoomError(p.code, p.msg)
        return p

    async def error(self, timeout=DEFAULT_TIMEOUT):
        """The next Err reply (type 0)."""
        for i, (t, p) in enumerate(self.inbox):
            if t == UNKNOWN:
                return self.inbox.pop(i)[1]
        deadline = time.monotonic() + timeout
        while True:
            t, p = await self.reply(max(0.01, deadline - time.monotonic()))
            if t == UNKNOWN:
                return p
            self.inbox.append((t, p))

    async def wait_messages(self, count, timeout=DEFAULT_TIMEOUT):
        """Until at least count messages were unpacked in all; returns them all."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(f"uid {self.uid}: {len(self.messages)} of {count} messages "
                                           f"in {timeout}s")
            got = await self._next(left)
            if got is not None:
                self.inbox.append(got)
        return self.messages

    async def quiet(self, seconds):
        """Read whatever arrives for a while (deliveries are unpacked, replies kept)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                got = await self._next(left)
            except asyncio.TimeoutError:
                return
            if got is not None:
                self.inbox.append(got)

    async def closed(self, timeout=DEFAULT_TIMEOUT):
        """Wait for the server to close; returns (code, reason, [Err replies that came before])."""
        errs = [p for t, p in self.inbox if t == UNKNOWN]
        self.inbox = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
            except websockets.ConnectionClosed:
                return self.ws.close_code, self.ws.close_reason, errs
            got = self._take(raw)
            if got is not None and got[0] == UNKNOWN:
                errs.append(got[1])

    @property
    def open(self):
        return self.ws.open

    async def close(self):
        await self.ws.close()


class RoomError(Exception):
    def __init__(self, code, msg):
        super().__init__(f"Err {code}: {msg}")
        self.code, self.msg = code, msg


def new_uid():
    import random
    return random.randrange(10**9, 10**12)


def new_room(prefix="room"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def node_url(stack, node):
    """ws:// of one node of the stack (1-based)."""
    return f"ws://127.0.0.1:{stack.push_ports[node - 1]}"


def members_in_redis(stack, room):
    """{node: count} of the room's KEY_ROOM_MEMBERS hash."""
    return {int(k): int(v) for k, v in stack.redis().hgetall(f"mp:{{nodes}}:room:{room}:members").items()}


class RoomBystander:
    """A member of the same room that keeps being served while a test attacks the node: it heartbeats every
    interval and each pong must come promptly. On exit a message it sends must reach it (the room still
    delivers). Use as `async with RoomBystander(stack, url, room) as b:`."""

    def __init__(self, stack, url, room, interval=0.05, max_rtt=2.0):
        self.stack, self.url, self.room, self.interval, self.max_rtt = stack, url, room, interval, max_rtt
        self.rtts = []

    async def __aenter__(self):
        self.member = await Room.join(self.stack, self.url, self.room)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            pong = await self.member.heartbeat(timeout=self.max_rtt)
            assert pong == b"pong", pong
            self.rtts.append(time.monotonic() - t0)
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc):
        self.stop.set()
        await self.task  # re-raises a missed or late pong
        assert self.member.open, "the bystander's connection was closed"
        assert self.rtts, "the bystander never got an answer"
        mark = f"bystander-{uuid.uuid4().hex}".encode()
        await self.member.say(mark)
        deadline = time.monotonic() + 5
        while mark not in self.member.messages:
            assert time.monotonic() < deadline, "the bystander's own message never came back"
            await self.member.quiet(0.05)
        await self.member.close()
        return False
