"""magpie-push, SPEC §8: limits and bad input. Each abuse gets the documented answer while a second client
on the same node keeps being served (Bystander). Limits that take minutes with the defaults (queue cap,
idle timeout) run on an extra node started with smaller settings."""
import asyncio
import json
import time

import pytest
import websockets

from push_client import (Bystander, Chat, Closed, ExtraNode, RawWS, make_friends, metrics, new_uid, run,
                         ticket, wait_until)


def test_bad_packets_of_every_kind_get_E_while_others_are_served(stack):
    async def go():
        attacker = await Chat.connect(stack, node=1)
        friend = await Chat.connect(stack, node=1)
        make_friends(stack, attacker.uid, friend.uid)
        cases = [
            ("{not json", "malformed packet: expected one JSON object"),
            ('{"id":"k1","to":0,"type":"Q"}', "unknown type"),
            ('{"id":"k2","to":0}', "missing or bad type: expected one letter"),
            ('{"to":0,"type":"P"}', "missing or bad id: expected a string of 1-64 bytes"),
            ('{"id":"k3","type":"t","msg":"no to"}', "missing or bad to: expected a user id"),
            (json.dumps({"id": "k4", "to": friend.uid, "type": "t", "msg": "y" * 1024}), "message too long"),
        ]
        async with Bystander(stack, node=1):
            for raw, reason in cases:
                await attacker.send(raw)
                reply = await attacker.recv()
                assert reply["type"] == "E" and reply["msg"] == reason, raw
            assert (await attacker.request("P"))["type"] == "P", "a few bad packets do not close the connection"
        assert not [p for p in await friend.collect(0.3) if p["type"] == "t"]
    run(go())


def test_a_message_over_64KiB_is_closed_with_1009(stack):
    async def go():
        async with Bystander(stack, node=1):
            c = await Chat.connect(stack, node=1)
            # exactly push.max_frame is accepted (and refused as a packet: too long for a t)
            await c.send(json.dumps({"id": "max", "to": 0, "type": "P", "pad": "x" * (65536 - 40)})[:65536]
                         .ljust(65536))
            assert (await c.recv())["type"] == "E"
            assert c.open
            await c.send("x" * (65 * 1024))
            code, _, packets = await c.closed()
            assert code == 1009, code
    run(go())


def test_endless_fragments_are_closed_with_1009(stack):
    async def go():
        async with Bystander(stack, node=2):
            c = await Chat.connect(stack, node=2)

            async def fragments():
                for _ in range(1000):  # 1,000 x 1 KiB, never final: more than push.max_frame
                    yield "f" * 1024

            try:
                await c.ws.send(fragments())
            except websockets.ConnectionClosed:
                pass
            code, _, _ = await c.closed()
            assert code == 1009, code
    run(go())


def test_a_burst_over_the_limit_gets_E_rate_limited_and_the_connection_stays(stack):
    async def go():
        c = await Chat.connect(stack, node=1)
        ids = [f"b{i}" for i in range(110)]
        for id in ids:  # push.burst is 100
            await c.send({"id": id, "to": 0, "type": "P"})
        replies = [await c.recv() for _ in ids]
        assert [r["id"] for r in replies] == ids
        kinds = [(r["type"], r["msg"]) for r in replies]
        assert kinds.count(("P", "pong")) >= 100
        limited = [r for r in replies if r["type"] == "E"]
        assert limited and all(r["msg"] == "rate limited" for r in limited)
        await asyncio.sleep(1.0)
        assert (await c.request("P"))["type"] == "P", "the bucket refills; the connection stays"
    run(go())


def test_a_flood_of_200_packets_per_second_is_refused_then_closed_1008(stack):
    async def go():
        async with Bystander(stack, node=2):
            c = await Chat.connect(stack, node=2)
            sent, received = 0, []

            async def reader():
                try:
                    while True:
                        received.append(await c._next(10))
                except Closed:
                    pass

            task = asyncio.create_task(reader())
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < 5 and not task.done():
                    await c.send({"id": f"f{sent}", "to": 0, "type": "P"})
                    sent += 1
                    await asyncio.sleep(1 / 200)
            except websockets.ConnectionClosed:
                pass
            await asyncio.wait_for(task, 10)
            assert c.ws.close_code == 1008
            assert time.monotonic() - t0 < 5, "a client that keeps flooding is closed"
            types = [p["type"] for p in received]
            assert types.count("P") >= 100
            assert [p["msg"] for p in received if p["type"] == "E"].count("rate limited") >= 10
    run(go())


def test_a_client_that_keeps_sending_garbage_is_closed_1008(stack):
    async def go():
        async with Bystander(stack, node=1):
            c = await Chat.connect(stack, node=1)
            try:
                for _ in range(40):  # push.bad_packet_limit is 20
                    await c.send("garbage")
            except websockets.ConnectionClosed:
                pass
            code, _, packets = await c.closed()
            assert code == 1008
            assert 18 <= len([p for p in packets if p["type"] == "E"]) <= 21
    run(go())


def test_a_slow_reader_is_closed_and_nobody_else_waits(stack):
    """A reader that stops reading while messages pour in: once its outgoing queue passes push.queue_cap
    the node closes it. The sender, another recipient and a bystander keep being served."""
    node = ExtraNode(stack, 902, queue_cap=65536, rate=100000, burst=100000)
    try:
        async def go():
            sender = await node.chat()
            fast = await node.chat()
            slow_uid = new_uid()
            make_friends(stack, sender.uid, slow_uid)
            make_friends(stack, sender.uid, fast.uid)
            slow = RawWS("127.0.0.1", node.port, "/ws/" + ticket(stack, slow_uid), rcvbuf=4096)
            assert slow.status == 101 and json.loads(slow.frame()[1])["type"] == "L"
            big = "数" * 1000  # ~3 KB per message
            drops0 = metrics(node.metrics_port).get('magpie_push_queue_drops_total{action="closed"}', 0)
            async with Bystander(stack, url=node.url):
                for i in range(3000):  # ~9 MB for the slow reader: more than the kernel's buffers hold
                    await sender.send({"id": f"s{i}", "to": slow_uid, "type": "t", "msg": big})
                    if i % 100 == 99:
                        await sender.send({"id": f"f{i}", "to": fast.uid, "type": "t", "msg": "still here"})
                acks = [await sender.wait_for(lambda p, i=i: p.get("id") == f"s{i}", timeout=30) for i in range(3000)]
                assert all(a["type"] == "A" for a in acks)
                got = await fast.messages(30, timeout=30)
                assert [p["msg"] for p in got] == ["still here"] * 30

            def dropped():
                return metrics(node.metrics_port).get('magpie_push_queue_drops_total{action="closed"}', 0) > drops0

            await wait_until(dropped, 10, "the slow reader to be closed")
            with open(node.log) as f:
                assert f"closing slow reader" in f.read()
            # the slow reader finds its connection gone once it reads again
            with pytest.raises((ConnectionError, OSError)):
                for _ in range(100000):
                    slow.frame()
            slow.close()
        run(go())
    finally:
        assert node.stop() == 0


def test_a_silent_peer_is_pinged_and_closed_after_the_idle_timeout(stack):
    node = ExtraNode(stack, 903, ping_interval_s=1, idle_timeout_s=5)
    try:
        async def go():
            silent = RawWS("127.0.0.1", node.port, "/ws/" + ticket(stack, new_uid()))
            assert silent.status == 101
            assert json.loads(silent.frame()[1])["type"] == "L"
            alive = await node.chat()  # python-websockets answers pings by itself
            t0 = time.monotonic()
            pings = 0
            with pytest.raises(ConnectionError):
                while True:
                    opcode, _ = await asyncio.get_running_loop().run_in_executor(None, silent.frame)
                    pings += opcode == 0x9
            elapsed = time.monotonic() - t0
            assert pings >= 1, "the server pings a silent client"
            assert 3.5 <= elapsed <= 9, elapsed
            assert (await alive.request("P"))["type"] == "P", "a client that answers pings stays"
            await asyncio.sleep(1.0)
            assert (await alive.request("P"))["type"] == "P"
            silent.close()
        run(go())
    finally:
        assert node.stop() == 0


def test_the_default_ping_interval_is_under_nginxs_proxy_timeout(stack):
    """nginx closes a proxied WebSocket after 60 s without a byte from the node (proxy_read_timeout in
    the site conf); the node pings every push.ping_interval_s, which must stay under it."""
    import re
    import subprocess
    out = subprocess.run([stack.bin("shared/magpie-config"), "-c", stack.conf_path, "get", "push.ping_interval_s",
                          "push.idle_timeout_s"], capture_output=True, text=True, check=True)
    ping, idle = map(int, out.stdout.split())
    with open(f"{stack.run}/nginx/magpie-site.conf") as f:
        site = f.read()
    ws_block = site[site.index("location /ws"):]
    timeout = int(re.search(r"proxy_read_timeout (\d+)s;", ws_block).group(1))
    assert ping < timeout and ping < idle


def test_broken_websocket_framing_and_garbage_http_are_dropped_while_others_are_served(stack):
    import os
    import socket

    def attack():
        port = stack.push_ports[0]
        # not HTTP at all
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(os.urandom(2048) + b"\r\n\r\n")
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        # Frames RFC 6455 forbids: an unmasked one (libwebsockets tolerates it: the packet is then just
        # bad JSON), a reserved opcode, a control frame over 125 bytes. Each ends in an E or a close.
        for bad in (b"\x81\x05hello", b"\x83\x80abcd", b"\x89\xfe\x00\x80" + b"m" * 4 + b"p" * 128):
            ws = RawWS("127.0.0.1", port, "/ws/" + ticket(stack, new_uid()))
            assert json.loads(ws.frame()[1])["type"] == "L"
            ws.sock.sendall(bad)
            try:
                opcode, payload = ws.frame()
                assert opcode == 0x8 or (opcode == 0x1 and json.loads(payload)["type"] == "E"), (bad, opcode)
            except (ConnectionError, OSError):
                pass
            ws.close()

    async def go():
        async with Bystander(stack, node=1):
            # in a thread: the raw sockets block, the bystander must keep running meanwhile
            await asyncio.get_running_loop().run_in_executor(None, attack)
            await asyncio.sleep(0.2)
    run(go())
