"""The room protocol against bad input (SPEC §5, §8): each gets its documented answer -- an Err reply
(Reply{type 0, Err{code, msg}}) and the connection stays, or a close with the documented code -- while a
member of the same room on the same node keeps being served (RoomBystander: heartbeats answered, its own
message delivered)."""
import asyncio
import time

import jwt
import pytest
import websockets

from push_client import ExtraNode, RawWS, metrics
from room_client import (HEARTBEAT, MEMBERS, MESSAGE, SIGN_IN, Reply, Room, RoomBystander, SignIn, login_token,
                         message_req, new_room, new_uid, node_url, req, run)


async def _expect_err(member, code, msg):
    err = await member.error()
    assert (err.code, err.msg) == (code, msg)


def test_garbage_bytes_get_101_and_the_connection_stays(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 1)
        async with RoomBystander(stack, url, room):
            a = await Room.join(stack, url, room)
            for garbage in (b"\x0f\x00garbage", b"\xff\xff\xff\xff", b'{"type":1}', b"\x12\x7fshort"):
                await a.send(garbage)
                await _expect_err(a, 101, "malformed request: expected a Req")
            # a Req whose data is not what its type needs
            await a.send(req(MESSAGE, b"\xff\xff"))
            await _expect_err(a, 101, "malformed BroadcastRoomReq")
            await a.send(message_req(b""))
            await _expect_err(a, 101, "empty message")
            assert await a.heartbeat() == b"pong", "a few bad requests do not close the connection"
            await a.say("still a member")
            assert b"still a member" in await a.wait_messages(1)
    run(go())


def test_a_text_frame_gets_101(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 2)
        async with RoomBystander(stack, url, room):
            a = await Room.join(stack, url, room)
            await a.send('{"type":2}')
            await _expect_err(a, 101, "malformed request: binary frames only")
            # even a text frame holding a valid Req: the protocol is binary
            await a.send(req(HEARTBEAT).decode("latin-1"))
            await _expect_err(a, 101, "malformed request: binary frames only")
            assert await a.heartbeat() == b"pong"
    run(go())


def test_an_unknown_type_gets_102(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 1)
        async with RoomBystander(stack, url, room):
            a = await Room.join(stack, url, room)
            for t in (0, 5, 99, -1):
                await a.send(req(t))
                await _expect_err(a, 102, "unknown type")
            await a.send(b"")  # an empty frame is a Req of type UNKNOWN
            await _expect_err(a, 102, "unknown type")
            assert await a.heartbeat() == b"pong"
    run(go())


def test_requests_before_sign_in_get_100(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 1)
        async with RoomBystander(stack, url, room):
            watcher = await Room.join(stack, url, room)
            a = await Room.connect(url)
            for raw in (message_req("sneaky", room=room), req(HEARTBEAT), req(MEMBERS)):
                await a.send(raw)
                await _expect_err(a, 100, "sign in first")
            err = await a.sign_in(login_token(stack, new_uid()), room)
            assert err.code == 0, "the connection stays and can sign in"
            await watcher.quiet(0.3)
            assert b"sneaky" not in watcher.messages
    run(go())


def test_bad_tokens_get_100_and_the_connection_stays(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 2)
        uid = new_uid()
        now = int(time.time())
        cases = [
            ("not a token", "bad token"),
            ("x" * 5000, "bad token"),
            (login_token(stack, uid, key="another key of at least thirty-two bytes"), "bad token"),
            (login_token(stack, uid, exp=now - 10), "bad token: expired"),
            (login_token(stack, uid, kind="websocket", ttl=120), "bad token: not a login token"),
            (jwt.encode({"id": uid, "type": "login", "jti": "a" * 32, "iat": now, "exp": now + 60}, None,
                        algorithm="none"), "bad token"),
            ("", "bad token: missing"),
        ]
        async with RoomBystander(stack, url, room):
            a = await Room.connect(url, uid)
            for token, reason in cases:
                err = await a.sign_in(token, room)
                assert (err.code, err.msg) == (100, reason), token[:40]
            assert (await a.sign_in(login_token(stack, uid), room)).code == 0
            # a and the bystander (asked on a's connection: the bystander's own is read by its ping loop)
            assert await a.members() == 2
    run(go())


@pytest.mark.parametrize("room_id", ["", "r" * 129, "r" * 256, "tab\tin it", "\udcff".encode("utf-8", "surrogatepass")])
def test_a_bad_room_id_gets_103(stack, room_id):
    async def go():
        url = node_url(stack, 1)
        room = new_room()
        async with RoomBystander(stack, url, room):
            uid = new_uid()
            a = await Room.connect(url, uid)
            if isinstance(room_id, bytes):  # not UTF-8: python-protobuf refuses to encode it, so append it
                sign_in = SignIn(token=login_token(stack, uid)).SerializeToString()
                sign_in += b"\x12" + bytes([len(room_id)]) + room_id  # field 2 (roomID), length-delimited
                await a.send(req(SIGN_IN, sign_in))
                err = await a.error()
            else:
                err = await a.sign_in(login_token(stack, uid), room_id)
            assert (err.code, err.msg) == (103, "bad room id: expected 1-128 bytes of text")
            # 128 bytes is the longest (as POST /msg allows)
            assert (await a.sign_in(login_token(stack, uid), "r" * 128)).code == 0
    run(go())


def test_a_frame_over_the_limit_is_closed_with_1009(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 2)
        async with RoomBystander(stack, url, room):
            a = await Room.join(stack, url, room)
            await a.say(b"x" * 60000)  # a large message that fits push.max_frame (64 KiB) is delivered
            assert len((await a.wait_messages(1))[0]) == 60000
            try:
                await a.say(b"y" * (65 * 1024))
            except websockets.ConnectionClosed:
                pass
            code, _, _ = await a.closed()
            assert code == 1009
    run(go())


def test_a_client_that_keeps_sending_garbage_is_closed_1008(stack):
    async def go():
        room = new_room()
        url = node_url(stack, 1)
        async with RoomBystander(stack, url, room):
            a = await Room.connect(url)
            try:
                for _ in range(40):  # push.bad_packet_limit is 20
                    await a.send(b"\x0f garbage")
            except websockets.ConnectionClosed:
                pass
            code, _, errs = await a.closed()
            assert code == 1008
            assert 18 <= len([e for e in errs if e.code == 101]) <= 21
    run(go())


def test_a_burst_over_the_rate_gets_104(stack):
    async def go():
        room = new_room()
        a = await Room.join(stack, node_url(stack, 2), room)
        for _ in range(110):  # push.burst is 100, and the sign-in took one
            await a.send(req(HEARTBEAT))
        replies = [await a.reply() for _ in range(110)]
        pongs = [p for t, p in replies if t == HEARTBEAT]
        limited = [(p.code, p.msg) for t, p in replies if t == 0]
        assert len(pongs) >= 95 and limited and set(limited) == {(104, "rate limited")}
        await asyncio.sleep(1.0)
        assert await a.heartbeat() == b"pong", "the bucket refills; the connection stays"
    run(go())


def test_no_heartbeat_for_the_timeout_closes_the_connection(stack):
    node = ExtraNode(stack, 961, room_idle_s=2)
    try:
        async def go():
            room = new_room()
            silent = await Room.join(stack, node.url, room)
            never_signed_in = await Room.connect(node.url)
            t0 = time.monotonic()
            async with RoomBystander(stack, node.url, room, interval=0.5):
                code, reason, errs = await silent.closed(timeout=6)
                elapsed = time.monotonic() - t0
                assert code == 1008 and reason == "no heartbeat"
                assert [(e.code, e.msg) for e in errs] == [(108, "no heartbeat")]
                assert 1.5 <= elapsed <= 4, elapsed
                code, _, errs = await never_signed_in.closed(timeout=3)
                assert code == 1008 and [(e.code, e.msg) for e in errs] == [(108, "no heartbeat")]
                await asyncio.sleep(2.5)  # longer than the timeout: the heartbeating member stays
            assert metrics(node.metrics_port)['magpie_push_errors_total{reason="idle"}'] >= 2
        run(go())
    finally:
        assert node.stop() == 0


def test_broken_frames_on_a_raw_socket_are_dropped_while_others_are_served(stack):
    def attack():
        port = stack.push_ports[0]
        for bad in (b"\x82\x05hello",                             # unmasked binary frame
                    b"\x83\x80abcd",                              # reserved opcode
                    b"\x02\x83mask" + b"abc" + b"\x81\x80mask"):  # a text frame inside a binary message
            ws = RawWS("127.0.0.1", port, "/room")
            assert ws.status == 101
            ws.sock.sendall(bad)
            try:
                opcode, payload = ws.frame()
                if opcode == 0x2:
                    assert Reply.FromString(payload).type == 0, (bad, payload)
                else:
                    assert opcode == 0x8, (bad, opcode)
            except (ConnectionError, OSError):
                pass
            ws.close()

    async def go():
        room = new_room()
        async with RoomBystander(stack, node_url(stack, 1), room):
            await asyncio.get_running_loop().run_in_executor(None, attack)
            await asyncio.sleep(0.2)
    run(go())
