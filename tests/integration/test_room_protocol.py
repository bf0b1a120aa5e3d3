"""The room protocol on /room (SPEC §5, seed 004), on the stack's two push nodes: sign-in, heartbeat, member
counts, messages both ways decoded from merged batches with the seed's unpacking, the same order on every
node, merging of a burst and no wait in an idle room, one room per connection, and the metrics."""
import asyncio
import time

import websockets

from push_client import ExtraNode, metrics, ticket, wait_until
from room_client import (IMPORTANT, NORMAL, Room, login_token, members_in_redis, new_room, new_uid, node_url,
                         run)
from mqtt_client import connect_packet, mstr, packet, subscribe_packet


def test_sign_in_heartbeat_and_members(stack):
    async def go():
        room = new_room()
        uid = new_uid()
        a = await Room.connect(node_url(stack, 1), uid)
        err = await a.sign_in(login_token(stack, uid), room)
        assert (err.code, err.msg) == (0, "ok")
        assert await a.heartbeat() == b"pong"
        assert await a.members() == 1
        b = await Room.join(stack, node_url(stack, 1), room)
        assert await a.members() == 2 and await b.members() == 2
        assert await b.heartbeat() == b"pong"
    run(go())


def test_the_nginx_location_serves_rooms(stack):
    async def go():
        room = new_room()
        a = await Room.join(stack, f"ws://127.0.0.1:{stack.nginx_port}", room)
        await a.say("through nginx")
        assert await a.wait_messages(1) == [b"through nginx"]
    run(go())


def test_messages_go_both_ways_between_nodes_and_reach_the_sender(stack):
    async def go():
        room = new_room()
        a = await Room.join(stack, node_url(stack, 1), room)
        b = await Room.join(stack, node_url(stack, 2), room)
        await a.say('{"type":1,"content":"from node 1"}')
        for m in (a, b):
            assert await m.wait_messages(1) == [b'{"type":1,"content":"from node 1"}']
        await b.say("从二号节点")
        for m in (a, b):
            assert (await m.wait_messages(2))[1] == "从二号节点".encode()
            assert m.levels == [NORMAL, NORMAL]
        # binary messages pass untouched, NUL bytes included
        await a.say(b"\x00\x01\xff binary")
        for m in (a, b):
            assert (await m.wait_messages(3))[2] == b"\x00\x01\xff binary"
    run(go())


def test_members_on_two_nodes_see_the_same_messages_in_the_same_order(stack):
    async def go():
        room = new_room()
        members = [await Room.join(stack, node_url(stack, n), room) for n in (1, 1, 2, 2)]
        s1, s2 = members[0], members[2]
        await asyncio.sleep(1.0)  # a full packet-rate bucket for each sender

        async def send(sender, tag):
            for i in range(60):
                await sender.say(f"{tag}-{i:02d}")
                if i % 7 == 0:
                    await asyncio.sleep(0.003)

        await asyncio.gather(send(s1, "n1"), send(s2, "n2"))
        seen = [await m.wait_messages(120, timeout=10) for m in members]
        for got in seen[1:]:
            assert got == seen[0], "every member sees one order"
        for tag in ("n1", "n2"):
            mine = [m for m in seen[0] if m.startswith(tag.encode())]
            assert mine == [f"{tag}-{i:02d}".encode() for i in range(60)], "each sender's messages in its order"
        for m in members:
            await m.quiet(0.3)
            assert len(m.messages) == 120, "each message once"
    run(go())


def test_a_burst_of_100_messages_arrives_merged_all_present_in_order(stack):
    async def go():
        room = new_room()
        sender = await Room.join(stack, node_url(stack, 1), room)
        near = await Room.join(stack, node_url(stack, 1), room)
        far = await Room.join(stack, node_url(stack, 2), room)
        await asyncio.sleep(1.0)  # the sign-in took a packet from the burst allowance of 100; refill it
        want = [f"burst {i}".encode() for i in range(100)]
        for w in want:
            await sender.say(w)
        for m in (sender, near, far):
            assert await m.wait_messages(100) == want
            assert m.frames < 100, f"{m.frames} frames for 100 messages: not merged"
            assert max(m.batch_sizes) > 1
            assert max(m.batch_sizes) <= 32, "push.room_batch (32) bounds a batch"
        errs = [p for t, p in sender.inbox if t == 0]
        assert not errs, [(e.code, e.msg) for e in errs]
    run(go())


def test_a_lone_message_is_not_held_for_a_full_batch(stack):
    async def go():
        room = new_room()
        a = await Room.join(stack, node_url(stack, 1), room)
        b = await Room.join(stack, node_url(stack, 2), room)
        t0 = time.monotonic()
        await a.say("alone")
        await b.wait_messages(1)
        assert time.monotonic() - t0 < 0.5, "push.room_flush_ms (20 ms) sends a batch that is not full"
        assert b.batch_sizes == [1]
    run(go())


def test_an_idle_room_sends_at_once_and_a_burst_still_arrives_merged(stack):
    """On a node whose batches may wait 1 s (push.room_flush_ms 1000): in an idle room (its last batch more
    than push.room_flush_ms ago) a lone message waits for nothing -- three times over, each alone in its frame,
    long before the bound. A message soon after a batch waits for more, as every batch did before. Then 40
    messages that reach the node together (an MQTT member's PUBLISHes in one WebSocket message) arrive merged,
    in order, at most push.room_batch (32) to a frame (the first 32 at once, being full; the rest, in a room
    that has just sent, waits for more)."""
    node = ExtraNode(stack, 962, room_flush_ms=1000)
    try:
        async def go():
            room = new_room()
            a = await Room.join(stack, node.url, room)
            b = await Room.join(stack, node.url, room)
            for i in range(3):
                t0 = time.monotonic()
                await a.say(f"alone {i}")
                got = await b.wait_messages(i + 1)
                took = time.monotonic() - t0
                assert got[i] == f"alone {i}".encode()
                assert took < 0.5, f"a lone message took {took:.3f} s: it waited for push.room_flush_ms (1 s)"
                await asyncio.sleep(1.2)
            assert b.batch_sizes == [1, 1, 1]

            # A message 0.3 s after a batch (well past that batch's fan-out, within push.room_flush_ms) waits
            # for the bound and takes the one that follows it along, so a room sends no more frames than it
            # did before adaptive flushing.
            await a.say("first")
            await b.wait_messages(4)
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            await a.say("second")
            await asyncio.sleep(0.1)
            await a.say("third")
            got = await b.wait_messages(6)
            took = time.monotonic() - t0
            assert got[4:6] == [b"second", b"third"]
            assert b.batch_sizes[3:] == [1, 2], f"batches {b.batch_sizes[3:]}: the second did not wait to merge"
            assert 0.5 < took < 3.0, f"the merged batch took {took:.3f} s, not about push.room_flush_ms (1 s)"
            await asyncio.sleep(1.2)

            mq = await websockets.connect(f"{node.url}/ws", subprotocols=["mqtt"], max_size=None, max_queue=None,
                                          ping_interval=None, compression=None, close_timeout=2)
            await mq.send(connect_packet(ticket(stack, new_uid())))
            assert await asyncio.wait_for(mq.recv(), 5) == b"\x20\x02\x00\x00"
            await mq.send(subscribe_packet(1, (f"room/{room}", 0)))  # MQTT members send to rooms they are in
            assert await asyncio.wait_for(mq.recv(), 5) == b"\x90\x03\x00\x01\x00"
            burst = [f"burst {i:02d}".encode() for i in range(40)]
            await mq.send(b"".join(packet(3, 0, mstr(f"room/{room}") + m) for m in burst))
            for m in (a, b):
                assert (await m.wait_messages(46))[6:] == burst
                sizes = m.batch_sizes[5:]
                assert max(sizes) > 1, f"a burst was not merged: batches of {sizes}"
                assert max(sizes) <= 32, "push.room_batch (32) bounds a batch"
            await mq.close()
        run(go())
    finally:
        assert node.stop() == 0


def test_a_client_cannot_make_its_messages_important(stack):
    async def go():
        room = new_room()
        a = await Room.join(stack, node_url(stack, 1), room)
        await a.say("I am very important", level=IMPORTANT)
        await a.wait_messages(1)
        assert a.levels == [NORMAL]
    run(go())


def test_a_connection_is_in_one_room(stack):
    async def go():
        room, other = new_room(), new_room()
        a = await Room.join(stack, node_url(stack, 1), room)
        o = await Room.join(stack, node_url(stack, 1), other)
        err = await a.sign_in(login_token(stack, a.uid), other)
        assert (err.code, err.msg) == (107, "already signed in")
        await o.say("for the other room")
        await o.wait_messages(1)
        await a.say("mine", room=room)
        await a.say("not mine", room=other)
        err = await a.error()
        assert (err.code, err.msg) == (103, "not in that room")
        await a.say("no room named goes to mine", room="")
        await a.wait_messages(2)
        await a.quiet(0.3)
        assert a.messages == [b"mine", b"no room named goes to mine"]
        assert o.messages == [b"for the other room"]
    run(go())


def test_member_counts_are_cluster_wide_within_2_seconds(stack):
    async def go():
        room = new_room()

        async def counts_are(n):
            return all([await m.members() == n for m in members])

        members = [await Room.join(stack, node_url(stack, 1), room)]
        for node in (2, 2, 1):
            members.append(await Room.join(stack, node_url(stack, node), room))
            await wait_until(lambda: counts_are(len(members)), 2.0, f"{len(members)} members everywhere")
        assert members_in_redis(stack, room) == {1: 2, 2: 2}  # scripts/dev's nodes have node_id 1 and 2
        while len(members) > 1:
            await members.pop().close()
            await wait_until(lambda: counts_are(len(members)), 2.0, f"{len(members)} members everywhere")
        assert members_in_redis(stack, room) == {1: 1}
        await members.pop().close()
        await wait_until(lambda: not stack.redis().exists(f"mp:{{nodes}}:room:{room}:members"), 2.0,
                         "the room's count to go from Redis")
    run(go())


def test_room_metrics(stack):
    async def go():
        port = stack.push_metrics_ports[0]
        before = metrics(port)
        room = new_room()
        a = await Room.join(stack, node_url(stack, 1), room)
        b = await Room.join(stack, node_url(stack, 1), room)
        c = await Room.join(stack, node_url(stack, 2), room)
        for i in range(5):
            await a.say(f"metric {i}")
        for m in (a, b, c):
            await m.wait_messages(5)
        await asyncio.sleep(1.2)  # the loop folds its counters into /metrics once a second
        after = metrics(port)

        def grew(name, labels=""):
            key = f"{name}{{{labels}}}" if labels else name
            return after.get(key, 0) - before.get(key, 0)

        assert after["magpie_push_rooms"] >= 1 and after["magpie_push_room_members"] >= 2
        assert grew("magpie_push_room_published_total") == 5
        assert grew("magpie_push_room_messages_in_total") >= 5
        assert grew("magpie_push_room_deliveries_total") >= 10, "5 messages x 2 members here"
        assert 1 <= grew("magpie_push_room_batches_total")
        assert grew("magpie_push_room_requests_total", 'type="message"') == 5
        assert grew("magpie_push_room_requests_total", 'type="sign_in"') == 2
        assert 'magpie_push_room_drops_total{level="normal"}' in after
        assert 'magpie_push_room_drops_total{level="important"}' in after
        assert after['magpie_push_connections{protocol="room"}'] >= 2
    run(go())


def test_a_member_that_answers_pings_gets_no_error_and_is_served(stack):
    """The node pings a connection silent for push.ping_interval_s (its own sweep, not libwebsockets'
    timers); a member's pong is not a request: it gets no error, and it is served as before."""
    from push_client import ExtraNode
    node = ExtraNode(stack, 905, ping_interval_s=1, idle_timeout_s=30)
    try:
        async def go():
            room = new_room()
            url = f"ws://127.0.0.1:{node.port}"
            a = await Room.join(stack, url, room)
            await a.quiet(2.5)  # python-websockets answers the node's pings by itself
            assert a.inbox == [], a.inbox
            assert await a.heartbeat() == b"pong"
            await a.say("after the pings")
            assert await a.wait_messages(1) == [b"after the pings"]
        run(go())
    finally:
        assert node.stop() == 0
