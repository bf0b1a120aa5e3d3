"""STOMP 1.2 on /ws (SPEC §4.3; design push/stomp.c): the stock npm client @stomp/stompjs logs in with a
ticket, chats with JSON clients and with another STOMP client, sends to a group, and catches up from the
timeline with ack:client; bad frames from a raw WebSocket get ERROR (and a close where the standard asks
for one) while a JSON bystander on the same node keeps chatting."""
import asyncio
import json
import random

import pytest
import websockets

from push_client import (Bystander, Chat, ExtraNode, friend_pair, metrics, new_uid, run, ticket, unsigned_ticket,
                         wait_until)
from stomp_client import RawStomp, StompJS, frame, parse, redis_group, run_stock, stock_clients_installed
import rkeys

pytestmark = pytest.mark.skipif(not stock_clients_installed(),
                                reason="tests/clients/node_modules missing: scripts/dev test runs npm ci there")

INBOX = "/user/queue/messages"




# ---- the stock client ----

def test_stompjs_logs_in_with_a_ticket_and_chats_with_a_json_client(stack):
    """v12.stomp is named in the 101; CONNECTED says 1.2. A JSON client's t reaches the STOMP subscriber as
    MESSAGE (the §4 packet as JSON body, mid/seq/from/ts headers); the STOMP SEND gets its RECEIPT (mid, seq)
    only once stored, and the JSON client gets the t."""
    async def go():
        a, b = friend_pair(stack)
        s = await StompJS.login(stack, ticket(stack, a))
        assert (await s.wait("upgrade"))["protocol"] == "v12.stomp"
        assert s.connected["headers"]["version"] == "1.2"
        assert s.connected["headers"]["user-name"] == str(a)
        s.do("subscribe", destination=INBOX, id="inbox")
        await s.wait("subscribed")
        j = await Chat.connect(stack, b)
        await asyncio.sleep(0.2)  # SUBSCRIBE is not confirmed without a receipt: let it arrive

        ack = await j.text(a, "hello from json")
        assert ack["type"] == "A"
        m = await s.wait("message")
        body = json.loads(m["body"])
        assert body["msg"] == "hello from json" and body["from"] == b and body["to"] == a and body["type"] == "t"
        h = m["headers"]
        assert h["mid"] == body["mid"] == ack["mid"] and h["from"] == str(b) and h["ts"] == str(body["ts"])
        assert h["seq"] == str(body["seq"]) and h["subscription"] == "inbox" and h["destination"] == INBOX

        await s.send(f"/user/{b}", "hello from stomp", receipt="r-1")
        r = await s.wait("receipt")
        # stored when the RECEIPT came: in the stream (or already in MySQL) and in the recipient's timeline
        assert stack.redis().exists(rkeys.msg(stack.redis(), b, r['headers']['mid']))
        assert int(r["headers"]["seq"]) == body["seq"] + 1
        got = await j.recv()
        assert got["type"] == "t" and got["msg"] == "hello from stomp" and got["from"] == a
        assert got["mid"] == r["headers"]["mid"]
        # the STOMP client's own message is not sent back to it
        assert await s.quiet(0.5) == []
    run_stock(go())


@pytest.mark.parametrize("offered", [["v10.stomp"], ["v11.stomp"], ["bogus", "v12.stomp", "magpie.v1"]])
def test_each_stomp_subprotocol_name_is_answered_and_speaks_stomp_1_2(stack, offered):
    async def go():
        c = await RawStomp.open(stack, subprotocols=offered)
        assert c.ws.subprotocol == [n for n in offered if n != "bogus"][0]
        await c.send(frame("CONNECT", {"accept-version": "1.0,1.1,1.2", "passcode": ticket(stack, new_uid())}))
        cmd, h, _ = await c.recv()
        assert cmd == "CONNECTED" and h["version"] == "1.2"
    run(go())


def test_two_stompjs_clients_chat_on_different_nodes(stack):
    async def go():
        a, b = friend_pair(stack)
        sa = await StompJS.login(stack, ticket(stack, a), node=1)
        sb = await StompJS.login(stack, ticket(stack, b), node=2)
        for s in (sa, sb):
            s.do("subscribe", destination=INBOX, headers={"receipt": "sub"})
        await asyncio.sleep(0.3)
        for i in range(5):
            await sa.send(f"/user/{b}", f"a{i}", receipt=f"ra{i}")
            await sb.send(f"/user/{a}", f"b{i}", receipt=f"rb{i}")
        got_b = [json.loads(m["body"])["msg"] for m in await sb.messages(5)]
        got_a = [json.loads(m["body"])["msg"] for m in await sa.messages(5)]
        assert got_b == [f"a{i}" for i in range(5)] and got_a == [f"b{i}" for i in range(5)]
        for i in range(5):
            await sa.wait("receipt", pred=lambda e, i=i: e["receipt"] == f"ra{i}")
    run_stock(go())


def test_stompjs_sends_to_a_group_and_receives_its_messages(stack):
    """SEND /group/<gid> is the JSON g: every member gets it; a member's g reaches the STOMP member; a
    non-member gets ERROR "not a member" with the receipt-id."""
    async def go():
        s_uid, j_uid, outsider = new_uid(), new_uid(), new_uid()
        gid = redis_group(stack, j_uid, [s_uid])
        s = await StompJS.login(stack, ticket(stack, s_uid))
        s.do("subscribe", destination=INBOX, id="inbox")
        j = await Chat.connect(stack, j_uid)
        await asyncio.sleep(0.3)
        await s.send(f"/group/{gid}", "to the group", receipt="g1")
        r = await s.wait("receipt")
        g = await j.wait_for(lambda p: p["type"] == "g")
        assert g["msg"] == "to the group" and g["to"] == gid and g["from"] == s_uid and g["mid"] == r["headers"]["mid"]
        ack = await j.text(gid, "back to you", type="g")
        assert ack["type"] == "A"
        m = await s.wait("message", pred=lambda e: json.loads(e["body"])["type"] == "g")
        assert json.loads(m["body"])["msg"] == "back to you" and m["headers"]["type"] == "g"

        o = await StompJS.login(stack, ticket(stack, outsider))
        await o.send(f"/group/{gid}", "let me in", receipt="no")
        e = await o.wait("error")
        assert e["headers"]["message"] == "not a member" and e["headers"]["receipt-id"] == "no"
    run_stock(go())


def test_refusals_get_error_with_the_reason_and_the_connection_stays(stack):
    """The reasons of §4 as ERROR frames (receipt-id set); the connection stays open and still sends."""
    async def go():
        a, b = friend_pair(stack)
        s = await StompJS.login(stack, ticket(stack, a))
        cases = [
            (f"/user/{new_uid()}", "x", "not friends"),
            (f"/user/{b}", "x" * 1024, "message too long"),
            (f"/user/{b}", "", "empty message"),
            (f"/user/{a}", "me", "cannot send to yourself"),
            ("/queue/anything", "x", "unknown destination: /user/<uid>, /group/<gid> or /topic/room.<id>"),
            ("/topic/room.7", "x", "not in that room"),  # rooms: test_proto_rooms.py
        ]
        for i, (dest, body, reason) in enumerate(cases):
            await s.send(dest, body, receipt=f"bad{i}")
            e = await s.wait("error")
            assert e["headers"]["message"] == reason and e["headers"]["receipt-id"] == f"bad{i}", e
        for i, dest in enumerate([f"/user/{b}/queue/messages", "/topic/everything", "/user/queue/other"]):
            s.do("subscribe", destination=dest, headers={"receipt": f"sub{i}"})
            e = await s.wait("error")
            assert e["headers"]["message"].startswith("forbidden destination"), e
        await s.send(f"/user/{b}", "still here", receipt="ok")
        assert (await s.wait("receipt"))["receipt"] == "ok"
    run_stock(go())


def _sender_of(stack, a):
    async def send(chat, n, prefix):
        for i in range(n):
            r = await chat.text(a, f"{prefix}{i}", timeout=10)
            assert r["type"] == "A", r
    return send


def test_ack_client_session_gets_what_it_did_not_ack_and_what_came_while_away_in_order(stack):
    """client-id "phone", ack:client: 3 messages, ACK of the second (cumulative), the connection drops;
    100 messages arrive while it is away; a new connection of the same session gets the third and the 100,
    in order, once each; a later reconnect after ACKing everything gets nothing again."""
    async def go():
        a, b = friend_pair(stack)
        j = await Chat.connect(stack, b)
        send = _sender_of(stack, a)
        s = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "phone"})
        s.do("subscribe", destination=INBOX, id="in", headers={"ack": "client", "receipt": "s"})
        await asyncio.sleep(0.3)
        await send(j, 3, "first")
        ms = await s.messages(3)
        assert [json.loads(m["body"])["msg"] for m in ms] == ["first0", "first1", "first2"]
        s.do("ack", ack=ms[1]["headers"]["ack"])
        await asyncio.sleep(0.3)
        s.do("drop")
        await s.wait("close")

        await send(j, 100, "away")
        s2 = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "phone"})
        s2.do("subscribe", destination=INBOX, id="in", headers={"ack": "client"})
        got = await s2.messages(101, timeout=30)
        texts = [json.loads(m["body"])["msg"] for m in got]
        assert texts == ["first2"] + [f"away{i}" for i in range(100)]
        seqs = [int(m["headers"]["seq"]) for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + 101))
        assert await s2.quiet(0.5) == [], "nothing twice"
        s2.do("ack", ack=got[-1]["headers"]["ack"])
        await asyncio.sleep(0.3)
        s2.do("disconnect")
        await s2.wait("close")

        s3 = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "phone"})
        s3.do("subscribe", destination=INBOX, id="in", headers={"ack": "client"})
        assert await s3.quiet(1.0) == []
        await send(j, 1, "live")
        m = await s3.wait("message")
        assert json.loads(m["body"])["msg"] == "live0"
        # another device of the same user (its own client-id) starts at the timeline's end
        other = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "tablet"})
        other.do("subscribe", destination=INBOX, id="in", headers={"ack": "client"})
        assert await other.quiet(1.0) == []
    run_stock(go())


def test_ack_client_new_session_gets_what_it_never_acked_again(stack):
    """A session's first connection (nothing stored for client-id "fresh" yet) with ack:client gets two
    messages and ACKs neither before the connection drops: the next connect of the session gets both again,
    in order, and nothing else."""
    async def go():
        a, b = friend_pair(stack)
        j = await Chat.connect(stack, b)
        s = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "fresh"})
        s.do("subscribe", destination=INBOX, id="in", headers={"ack": "client"})
        await asyncio.sleep(0.3)
        await _sender_of(stack, a)(j, 2, "n")
        assert [json.loads(m["body"])["msg"] for m in await s.messages(2)] == ["n0", "n1"]
        s.do("drop")
        await s.wait("close")
        await asyncio.sleep(0.3)
        s2 = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "fresh"})
        s2.do("subscribe", destination=INBOX, id="in", headers={"ack": "client"})
        got = [json.loads(m["body"])["msg"] for m in await s2.quiet(1.5)]
        assert got == ["n0", "n1"], got
    run_stock(go())


def test_acks_of_delivered_messages_do_not_count_against_push_rate(stack):
    """A client-individual subscriber ACKs 150 messages one by one, at once (more than push.burst frames):
    an ACK of a message it was sent is an answer, not counted against push.rate, so the connection stays,
    and the session's next connect gets nothing again."""
    async def go():
        a, b = friend_pair(stack)
        s = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "busy"})
        s.do("subscribe", destination=INBOX, id="in", headers={"ack": "client-individual"})
        await asyncio.sleep(0.3)
        for k in range(2):  # 75 from each connection: within push.burst
            await _sender_of(stack, a)(await Chat.connect(stack, b), 75, f"b{k}-")
        ms = await s.messages(150)
        for m in ms:
            s.do("ack", ack=m["headers"]["ack"])
        await s.send(f"/user/{b}", "still here", receipt="r")
        assert (await s.wait("receipt"))["receipt"] == "r"
        s.do("disconnect")
        await s.wait("close")
        s2 = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "busy"})
        s2.do("subscribe", destination=INBOX, id="in", headers={"ack": "client-individual"})
        assert await s2.quiet(1.0) == []
    run_stock(go())


def test_client_individual_nack_and_own_messages(stack):
    """client-individual: ACK of 1 and 3 but not 2, NACK of 4: the next connect gets 2 again (and what
    follows it), never 1; the session's own sends are not sent back to it on catch-up."""
    async def go():
        a, b = friend_pair(stack)
        j = await Chat.connect(stack, b)
        s = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "ind"})
        s.do("subscribe", destination=INBOX, id="in", headers={"ack": "client-individual"})
        await asyncio.sleep(0.3)
        await _sender_of(stack, a)(j, 4, "m")
        ms = await s.messages(4)
        s.do("ack", ack=ms[0]["headers"]["ack"])
        s.do("ack", ack=ms[2]["headers"]["ack"])
        s.do("nack", ack=ms[3]["headers"]["ack"])
        await s.send(f"/user/{b}", "mine", receipt="own")
        await s.wait("receipt")
        await asyncio.sleep(0.3)
        s.do("drop")
        await s.wait("close")
        s2 = await StompJS.login(stack, ticket(stack, a), headers={"client-id": "ind"})
        s2.do("subscribe", destination=INBOX, id="in", headers={"ack": "client-individual"})
        got = [json.loads(m["body"])["msg"] for m in await s2.quiet(1.5)]
        assert got[0] == "m1" and "m0" not in got and "m3" in got and "mine" not in got, got
    run_stock(go())


def test_disconnect_is_answered_with_its_receipt_then_a_normal_close(stack):
    async def go():
        a, _ = friend_pair(stack)
        c = await RawStomp.login(stack, ticket(stack, a))
        await c.send(frame("DISCONNECT", {"receipt": "bye-77"}))
        cmd, h, _ = await c.recv()
        assert cmd == "RECEIPT" and h["receipt-id"] == "bye-77"
        seen, code, _ = await c.closed()
        assert seen == [] and code == 1000
        # stompjs' deactivate does the same
        s = await StompJS.login(stack, ticket(stack, a))
        s.do("disconnect")
        await s.wait("disconnected")
        assert (await s.wait("close"))["code"] == 1000
    run_stock(go())


def test_heart_beats_are_sent_and_a_silent_client_is_closed(stack):
    """stomp.heartbeat_ms 200 on an extra node: a client asking for server beats every 200 ms gets EOLs; a
    client that promised beats every 300 ms and sends nothing gets ERROR and a close."""
    node = ExtraNode(stack, 58, env={"MAGPIE_STOMP_HEARTBEAT_MS": "200"})
    try:
        async def go():
            ws = await websockets.connect(f"{node.url}/ws", subprotocols=["v12.stomp"], ping_interval=None)
            await ws.send(frame("CONNECT", {"accept-version": "1.2", "passcode": ticket(stack, new_uid()),
                                             "heart-beat": "0,200"}))
            cmd, h, _ = parse(await ws.recv())
            assert cmd == "CONNECTED" and h["heart-beat"] == "200,200"
            beats = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.5
            while loop.time() < end:
                m = await asyncio.wait_for(ws.recv(), 2)
                beats += m == "\n"
            assert beats >= 4, beats
            await ws.close()

            ws = await websockets.connect(f"{node.url}/ws", subprotocols=["v12.stomp"], ping_interval=None)
            await ws.send(frame("CONNECT", {"accept-version": "1.2", "passcode": ticket(stack, new_uid()),
                                             "heart-beat": "300,0"}))
            assert parse(await ws.recv())[0] == "CONNECTED"
            cmd, h, _ = parse(await asyncio.wait_for(ws.recv(), 3))
            assert cmd == "ERROR" and h["message"] == "heart-beat timeout"
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1008
        run(go())
    finally:
        node.stop()


# ---- bad input on a raw connection, a JSON bystander chatting on the same node ----

async def _expect_error_and_close(c, message, code=1002):
    seen, close_code, _ = await c.closed()
    errors = [f for f in seen if f[0] == "ERROR"]
    assert errors and errors[0][1]["message"] == message, seen
    assert close_code == code, (close_code, seen)


def test_bad_frames_get_error_and_close_while_a_json_client_keeps_chatting(stack):
    async def go():
        async with Bystander(stack, node=1):
            a, _ = friend_pair(stack)
            c = await RawStomp.open(stack, node=1)
            await c.send(frame("SEND", {"destination": "/user/1"}, "early"))
            await _expect_error_and_close(c, "not connected: send CONNECT first")

            for tk, why in [(unsigned_ticket(a), "bad ticket"), ("not-a-jwt", "bad ticket"),
                            (ticket(stack, a, ttl=-10), "ticket expired"),
                            (ticket(stack, a, kind="login"), "not a websocket ticket"), ("", "no ticket")]:
                c = await RawStomp.open(stack, node=1)
                await c.send(frame("CONNECT", {"accept-version": "1.2", "passcode": tk}))
                await _expect_error_and_close(c, why, 1008)
            used = ticket(stack, a)
            (await RawStomp.login(stack, used, node=1))
            c = await RawStomp.open(stack, node=1)
            await c.send(frame("CONNECT", {"accept-version": "1.2", "passcode": used}))
            await _expect_error_and_close(c, "ticket already used", 1008)

            bad = [
                ("x" * 17000, "frame too large"),
                (frame("SEND", {"destination": "/user/1", "x": "y" * 2000}), "header line too long"),
                (frame("SEND", {f"h{i}": "v" for i in range(40)}), "too many headers"),
                (frame("FLY", {"to": "moon"}), "unknown command"),
                ("SEND\ndestination:/user/1\n\nno nul here", "frame without NUL terminator"),
                ("SEND\ndestination:/user/1\ncontent-length:50\n\nshort\0", "frame without NUL terminator"),
                ("SEND\ndestination:/user/1\ncontent-length:2\n\nshort\0", "bad content-length"),
                ("SEND\ndestination:/user/1\ncontent-length:-1\n\nx\0", "bad content-length"),
                ("SEND\ndestination:/user\\t1\n\nx\0", "undefined escape sequence in a header"),
                ("SEND\nno colon\n\nx\0", "malformed header line: expected name:value"),
                ("SEND\ndestination:/user/1\n\nx\0SEND\n\n\0", "one frame per WebSocket message: bytes after the NUL"),
                ("SEND\ndestination:/user/1", "frame ends inside its headers"),
                (frame("CONNECT", {"accept-version": "1.2", "passcode": "again"}), "already connected"),
            ]
            for text, why in bad:
                c = await RawStomp.login(stack, ticket(stack, a), node=1)
                await c.send(text)
                await _expect_error_and_close(c, why)
            # a body that is not UTF-8 (binary frame) is refused by the core like a bad JSON msg
            c = await RawStomp.login(stack, ticket(stack, a), node=1)
            await c.send(b"SEND\ndestination:/user/1\nreceipt:u\n\n\xff\xfe\0")
            cmd, h, _ = await c.recv()
            assert cmd == "ERROR" and h["message"] == "missing or bad msg" and h["receipt-id"] == "u"
            for cmd_name in ("BEGIN", "COMMIT", "ABORT"):
                await c.send(frame(cmd_name, {"transaction": "tx1", "receipt": cmd_name}))
                cmd, h, _ = await c.recv()
                assert cmd == "ERROR" and h["message"] == "transactions are not supported" and h["receipt-id"] == cmd_name
            await c.send(frame("ACK", {"id": "12345"}))
            assert (await c.recv())[1]["message"] == "unknown ack id"
    run(go())


def test_flood_over_push_rate_gets_rate_limited_then_closed(stack):
    async def go():
        async with Bystander(stack, node=1):
            a, b = friend_pair(stack)
            c = await RawStomp.login(stack, ticket(stack, a), node=1)
            for i in range(400):
                await c.send(frame("SEND", {"destination": f"/user/{b}"}, f"flood {i}"))
            seen, code, _ = await c.closed(timeout=10)
            assert any(f[0] == "ERROR" and f[1]["message"] == "rate limited" for f in seen)
            assert code == 1008
    run(go())


def test_500_mutations_of_valid_frames_never_hurt_the_node(stack):
    """Random byte flips, cuts, duplications and insertions into valid frames: every answer is a STOMP frame
    (or a close), and the bystander is served all along; a clean client still chats afterwards."""
    rng = random.Random(16)

    def mutate(data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(6)
            pos = rng.randrange(len(data) + 1)
            if k == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif k == 1:
                del data[pos:pos + rng.randint(1, 8)]
            elif k == 2:
                data[pos:pos] = rng.choice([b"\n", b"\0", b":", b"\\", b"\r\n", b"\\c", b"content-length:3\n"])
            elif k == 3:
                data[pos:pos] = data[pos:pos + rng.randint(1, 30)]
            elif k == 4:
                data = data[:pos]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
        return bytes(data)

    async def go():
        a, b = friend_pair(stack)
        valid = [
            frame("SEND", {"destination": f"/user/{b}", "receipt": "r", "content-type": "text/plain"}, "hello"),
            frame("SEND", {"destination": f"/group/1", "content-length": "2"}, "hi"),
            frame("SUBSCRIBE", {"id": "0", "destination": INBOX, "ack": "client"}),
            frame("UNSUBSCRIBE", {"id": "0"}),
            frame("ACK", {"id": "1"}),
            frame("NACK", {"id": "n1"}),
            frame("DISCONNECT", {"receipt": "77"}),
            "\n",
        ]
        connect = frame("CONNECT", {"accept-version": "1.1,1.2", "heart-beat": "0,0", "passcode": "{tk}"})
        async with Bystander(stack, node=2):
            c = None
            answers = 0
            for i in range(500):
                if c is None or c.ws.closed:
                    c = await RawStomp.login(stack, ticket(stack, a), node=2)
                text = mutate((connect.replace("{tk}", ticket(stack, a)) if i % 50 == 0 else rng.choice(valid)).encode())
                try:
                    await c.ws.send(text)
                    while True:
                        m = await asyncio.wait_for(c.ws.recv(), 0.05)
                        if m.strip("\r\n"):
                            cmd, _, _ = parse(m)
                            assert cmd in ("ERROR", "RECEIPT", "MESSAGE", "CONNECTED"), m
                            answers += 1
                except asyncio.TimeoutError:
                    pass
                except websockets.ConnectionClosed:  # the server closed it: the next one opens another
                    c = None
            assert answers > 50
        s = await StompJS.login(stack, ticket(stack, a), node=2)
        await s.send(f"/user/{b}", "after the storm", receipt="fine")
        assert (await s.wait("receipt"))["receipt"] == "fine"
    run_stock(go())


def test_metrics_count_stomp_frames_and_connections(stack):
    async def go():
        a, b = friend_pair(stack)
        before = metrics(stack.push_metrics_ports[0])
        c = await RawStomp.login(stack, ticket(stack, a), node=1)
        await c.send(frame("SEND", {"destination": f"/user/{b}", "receipt": "m"}, "count me"))
        assert (await c.recv())[0] == "RECEIPT"

        def grown():
            m = metrics(stack.push_metrics_ports[0])
            key = 'magpie_push_frames_total{protocol="stomp",command="SEND"}'
            return m.get(key, 0) > before.get(key, 0) and m.get('magpie_push_connections{protocol="stomp"}', 0) >= 1
        await wait_until(grown, 5, "the STOMP counters")
    run(go())
