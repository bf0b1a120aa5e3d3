"""POST /msg {room_id, msg, level} (magpie-http, SPEC §3, §5) reaching room members on every node, and the
slow-member rules: normal messages may be dropped for a member who does not read (counted), important ones
(level 1) never; a member that cannot take even those is disconnected, and nobody else waits."""
import asyncio
import json

import pytest
import requests

from push_client import ExtraNode, RawWS, metrics, wait_until
from room_client import (HEARTBEAT, IMPORTANT, NORMAL, BroadcastRoomReq, Reply, Room, Err, login_token, new_room,
                         new_uid, node_url, req, run, sign_in_req, unpack)


@pytest.fixture
def http(stack):
    if stack.daemon_pid("http") is None:
        pytest.skip("needs magpie-http (POST /msg)")
    return stack.nginx_url


def post_msg(stack, http, room, msg, level=None, session=None):
    body = {"room_id": room, "msg": msg}
    if level is not None:
        body["level"] = level
    r = (session or requests).post(f"{http}/msg", json=body, headers={"Authorization": f"Key {stack.api_key}"},
                                   timeout=10)
    assert r.status_code == 200 and r.json()["code"] == 1, r.text
    return r.json()


def test_msg_reaches_the_members_on_every_node(stack, http):
    async def go():
        room = new_room()
        members = [await Room.join(stack, node_url(stack, n), room) for n in (1, 2, 2)]
        await members[0].say("a member first")
        await members[0].wait_messages(1)
        post_msg(stack, http, room, json.dumps({"type": 1, "content": "红包"}), level=1)
        post_msg(stack, http, room, "plain", level=0)
        post_msg(stack, http, room, "no level given")
        for m in members:
            got = await m.wait_messages(4)
            assert got == [b"a member first", json.dumps({"type": 1, "content": "红包"}).encode(), b"plain",
                           b"no level given"]
            # the important message travels in an important batch; a batch of normal ones stays normal
            assert m.levels[1] == IMPORTANT and m.levels[0] == NORMAL
        assert [m.messages for m in members[1:]] == [members[0].messages] * 2
    run(go())


def test_msg_with_a_users_login_token(stack, http):
    async def go():
        room = new_room()
        m = await Room.join(stack, node_url(stack, 1), room)
        r = requests.post(f"{http}/msg", json={"room_id": room, "msg": "from a user"},
                          headers={"Authorization": f"Bearer {login_token(stack, new_uid())}"}, timeout=10)
        assert r.json()["code"] == 1, r.text
        assert await m.wait_messages(1) == [b"from a user"]
    run(go())


def test_a_room_nobody_is_in_costs_nothing(stack, http):
    """/msg to a room without members: accepted, delivered to nobody, and no node subscribes to it."""
    room = new_room()
    assert post_msg(stack, http, room, "into the void")["code"] == 1
    assert stack.redis().execute_command("PUBSUB", "NUMSUB", f"mp:room:{room}")[1] == 0


def _raw_member(stack, node, room):
    """A member on a raw socket with a tiny receive buffer, which reads only when told."""
    uid = new_uid()
    ws = RawWS("127.0.0.1", node.port, "/room", rcvbuf=4096)
    assert ws.status == 101
    ws.send_text(sign_in_req(login_token(stack, uid), room), opcode=0x2)
    opcode, payload = ws.frame()
    reply = Reply.FromString(payload)
    assert opcode == 0x2 and reply.type == 0 and Err.FromString(reply.data).code == 0
    return ws


def _read_until(ws, mark, limit=100000):
    """Every message the raw member gets until mark (inclusive), with the level of its batch."""
    got = []
    for _ in range(limit):
        opcode, payload = ws.frame()
        if opcode != 0x2:
            continue
        reply = Reply.FromString(payload)
        if reply.type != 3:
            continue
        b = BroadcastRoomReq.FromString(reply.data)
        for m in unpack(b.data):
            got.append((m, b.msgLv))
            if m == mark:
                return got
    raise AssertionError("mark never came")


def test_an_important_msg_reaches_a_slow_member_whose_normal_messages_were_dropped(stack, http):
    node = ExtraNode(stack, 971, room_normal_queue=262144, rate=100000, burst=100000)
    try:
        async def go():
            room = new_room()
            sender = await Room.join(stack, node.url, room)
            fast = await Room.join(stack, node.url, room)
            slow = _raw_member(stack, node, room)
            before = metrics(node.metrics_port)
            big = "x" * 16000
            for i in range(600):  # ~9.6 MB: more than the kernel's buffers hold for the slow member
                await sender.say(f"{i:04d}{big}")
                if i % 10 == 9:  # the fast members keep up (and are not taken for slow ones)
                    await fast.wait_messages(i + 1, timeout=30)
            post_msg(stack, http, room, "IMPORTANT: the order was paid", level=1)
            got = await fast.wait_messages(601, timeout=30)
            assert [m[:4] for m in got[:600]] == [f"{i:04d}".encode() for i in range(600)]
            assert got[600] == b"IMPORTANT: the order was paid"

            # now the slow member reads what it was left
            received = await asyncio.get_running_loop().run_in_executor(
                None, _read_until, slow, b"IMPORTANT: the order was paid")
            normal = [m for m, lv in received if m != b"IMPORTANT: the order was paid"]
            assert received[-1] == (b"IMPORTANT: the order was paid", IMPORTANT)
            assert len(normal) < 600, "the slow member's normal messages were dropped"
            seq = [int(m[:4]) for m in normal]
            assert seq == sorted(seq), "what it got is in order"
            # it is still a member: its heartbeat is answered
            slow.send_text(req(HEARTBEAT), opcode=0x2)
            while True:
                opcode, payload = slow.frame()
                if opcode == 0x2 and Reply.FromString(payload).type == HEARTBEAT:
                    break
            slow.close()
            await asyncio.sleep(1.2)
            after = metrics(node.metrics_port)
            key = 'magpie_push_room_drops_total{level="%s"}'
            assert after[key % "normal"] - before.get(key % "normal", 0) >= 600 - len(normal)
            assert after[key % "important"] == before.get(key % "important", 0)
        run(go())
    finally:
        assert node.stop() == 0


def test_a_member_that_cannot_take_even_important_messages_is_disconnected(stack, http):
    node = ExtraNode(stack, 972, room_normal_queue=16384)
    try:
        async def go():
            room = new_room()
            fast = await Room.join(stack, node.url, room)
            slow = _raw_member(stack, node, room)

            def post(first, n):
                with requests.Session() as s:
                    for i in range(first, first + n):
                        post_msg(stack, http, room, f"{i:04d}{big}", level=1, session=s)

            # ~9.6 MB of important messages, more than push.queue_cap (1 MiB) + kernel buffers, 8 at a time
            # (384 KB): the fast member takes each 8 before the next are posted, so only the slow one, which
            # reads nothing, can go over the cap -- however slowly this test process gets to read.
            big = "i" * 48000
            for first in range(0, 200, 8):
                await asyncio.get_running_loop().run_in_executor(None, post, first, 8)
                got = await fast.wait_messages(first + 8, timeout=60)
            assert [m[:4] for m in got] == [f"{i:04d}".encode() for i in range(200)]
            assert set(fast.levels) == {IMPORTANT}

            def dropped():
                return metrics(node.metrics_port).get('magpie_push_room_drops_total{level="important"}', 0) > 0

            await wait_until(dropped, 5, "the slow member's important messages to be counted")
            with open(node.log) as f:
                assert "closing slow reader" in f.read()
            with pytest.raises((ConnectionError, OSError)):
                for _ in range(100000):
                    slow.frame()
            slow.close()
            assert await fast.heartbeat() == b"pong"
        run(go())
    finally:
        assert node.stop() == 0
