"""magpie-push when things fail (SPEC §4 guarantees, §7, §8, §9): a Redis restart in the middle of a
conversation, a node killed with kill -9 and started again, SIGTERM. Nothing that was acked may be lost,
nothing may be stored or delivered twice, and every test leaves both nodes running."""
import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
import websockets

import rkeys
from push_client import (Chat, Closed, ensure_nodes_up, make_friends, metrics, new_uid, node_of, restart_node,
                         run, stored, wait_until)


@pytest.fixture(autouse=True)
def nodes_up_afterwards(stack):
    yield
    if not stack._redis_up():
        stack.start_redis()
    ensure_nodes_up(stack)


def _healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def _retry_until_acked(chat, to, text, id, timeout=20):
    """What a client does after an E: send the same packet again until it is acked."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await chat.text(to, text, id=id)
        if reply["type"] == "A":
            return reply
        assert reply["msg"] in ("temporarily unavailable, retry", "rate limited"), reply
        assert time.monotonic() < deadline, "never acked after Redis came back"
        await asyncio.sleep(0.2)


def test_redis_restart_mid_conversation_loses_nothing_acked_and_duplicates_nothing(stack):
    async def go():
        a = await Chat.connect_on(stack, 1)
        b = await Chat.connect_on(stack, 2)
        make_friends(stack, a.uid, b.uid)
        before = [await a.text(b.uid, f"before {i}", id=f"pre-{i}") for i in range(5)]
        assert all(p["type"] == "A" for p in before)
        assert len(await b.messages(5)) == 5

        stack.stop_redis()
        # Redis is down: messages get E (never A), everything else that needs no Redis still works
        reply = await a.text(b.uid, "during", id="during-1")
        assert reply == {"id": "during-1", "from": 0, "type": "E", "msg": "temporarily unavailable, retry"}
        reply = await b.text(a.uid, "during too", id="during-2")
        assert reply["type"] == "E"
        assert (await a.request("P"))["type"] == "P"
        assert (await a.request("O", b.uid))["type"] == "E"
        assert a.open and b.open, "connections stay up"
        for port in stack.push_metrics_ports:
            status, body = _healthz(port)
            assert status == 503 and body["reason"] == "redis unavailable"

        stack.start_redis()
        # The client retries the same ids; the nodes reconnect by themselves.
        first = await _retry_until_acked(a, b.uid, "during", "during-1")
        second = await _retry_until_acked(b, a.uid, "during too", "during-2")
        again = await a.text(b.uid, "during", id="during-1")
        assert again["type"] == "A" and again["mid"] == first["mid"]
        got_b = [p for p in await b.collect(1.5) if p["type"] == "t"]
        got_a = [p for p in await a.collect(0.5) if p["type"] == "t"]
        assert [p["id"] for p in got_b] == ["during-1"], "delivered exactly once, across nodes"
        assert [p["id"] for p in got_a] == ["during-2"]
        assert stored(stack, a.uid) == {**{f"pre-{i}": 1 for i in range(5)}, "during-1": 1}
        assert stored(stack, b.uid) == {"during-2": 1}
        # registration and presence are back
        await wait_until(lambda: {1, 2} <= {int(n) for n in stack.redis().zrange("mp:{nodes}", 0, -1)}, 10,
                         "both nodes registered again")
        assert (await a.request("O", b.uid))["msg"]["online"] is True
        for port in stack.push_metrics_ports:
            assert _healthz(port)[0] == 200
    run(go())


def test_kill_9_a_node_then_restart_it_loses_nothing_acked(stack):
    """A sender on node 2 keeps sending; node 2 dies with SIGKILL. Every message that got A is stored, the
    sender reconnects (nginx sends it to node 1) and retries what got no answer, which is then stored
    once. Its presence on node 2 is gone within 30 s; node 2 comes back and registers again."""
    async def go():
        receiver = await Chat.connect_on(stack, 1)
        sender = await Chat.connect_on(stack, 2)
        lonely = await Chat.connect_on(stack, 2)  # online only on node 2
        make_friends(stack, receiver.uid, sender.uid)
        assert (await receiver.request("O", lonely.uid))["msg"]["online"] is True

        acked, n = set(), 200
        killed_at = None
        for i in range(n):
            try:
                await sender.send({"id": f"k{i}", "to": receiver.uid, "type": "t", "msg": f"k {i}"})
                if i == 60:
                    stack.kill_daemon("push2", sig=9)
                    killed_at = time.monotonic()
                await asyncio.sleep(0.02)
            except websockets.ConnectionClosed:
                break
        try:
            while True:
                p = await sender._next(3)
                if p["type"] == "A":
                    acked.add(p["id"])
        except (Closed, asyncio.TimeoutError):
            pass
        assert killed_at is not None and acked, "some messages were acked before the kill"

        # everything acked is stored, once
        counts = stored(stack, sender.uid)
        assert {id for id in acked} <= set(counts), sorted(acked - set(counts))[:5]
        assert all(v == 1 for v in counts.values())

        # the client comes back through nginx (node 1 now) and retries what got no A
        again = await Chat.connect(stack, uid=sender.uid)
        for i in range(n):
            if f"k{i}" not in acked:
                await _retry_until_acked(again, receiver.uid, f"k {i}", f"k{i}")
        counts = stored(stack, sender.uid)
        assert counts == {f"k{i}": 1 for i in range(n)}, "all stored, none twice"
        got = [p["id"] for p in await receiver.collect(2.0) if p["type"] == "t"]
        assert sorted(got) == sorted(counts), "the receiver got every stored message once"

        # presence: node 2's users read offline within 30 s of the kill
        while (await receiver.request("O", lonely.uid))["msg"]["online"]:
            assert time.monotonic() - killed_at < 30
            await asyncio.sleep(0.5)

        restart_node(stack, "push2")
        await wait_until(lambda: 2 not in node_of(stack, lonely.uid), 10, "node 2 to clear its stale presence")
        beat = stack.redis().zscore("mp:{nodes}", "2")
        assert beat and beat > (time.time() - 10) * 1000
        back = await Chat.connect_on(stack, 2)
        assert (await back.request("P"))["type"] == "P"
    run(go())


def test_sigterm_says_C_deregisters_and_exits_within_5_seconds(stack):
    async def go():
        c = await Chat.connect_on(stack, 1)
        other = await Chat.connect_on(stack, 2, uid=c.uid)
        watcher = await Chat.connect_on(stack, 2)
        pid = stack.daemon_pid("push1")
        t0 = time.monotonic()
        # in a thread, so this test's clients keep answering (the close handshake) meanwhile
        await asyncio.get_running_loop().run_in_executor(None, stack.kill_daemon, "push1", 15, 5)
        assert time.monotonic() - t0 < 5
        code, reason, packets = await c.closed()
        assert [(p["type"], p["msg"]) for p in packets] == [("C", "shutdown")]
        assert code == 1001
        r = stack.redis()
        assert r.zscore("mp:{nodes}", "1") is None
        assert not r.exists("mp:{nodes}:node:1")
        assert node_of(stack, c.uid) == {2: 1}
        assert (await watcher.request("O", c.uid))["msg"]["online"] is True, "still online on node 2"
        assert other.open
        with open(f"{stack.run}/logs/push1.log") as f:
            log = f.read()
        assert "deregistered node=1" in log and "magpie-push stopped node=1" in log
        assert "stopping node=1 connections_left=0" in log, "every client closed cleanly before the exit"
        restart_node(stack, "push1")
        assert stack.daemon_pid("push1") != pid
    run(go())


def test_a_node_started_again_clears_what_it_left_under_the_old_layout(stack):
    """A node killed under the layout before the registry's slot (its users listed in mp:node:<id>:users, one
    set for every shard) left presence entries that no per-shard set lists. Started again, it must clear them
    (push/cluster.c, LEGACY_NODE_USERS): else a user it no longer holds would read online, on a live node."""
    async def go():
        ghost = new_uid()
        watcher = await Chat.connect_on(stack, 2)
        r = stack.redis()
        presence = rkeys.tagged(r, "presence", ghost)
        r.hset(presence, "1", "1")  # what a node 1 killed with kill -9 under the old layout left
        r.sadd("mp:node:1:users", ghost)
        assert (await watcher.request("O", ghost))["msg"]["online"] is True, "node 1 is live: the entry counts"
        await asyncio.get_running_loop().run_in_executor(None, stack.kill_daemon, "push1", 9)
        await asyncio.get_running_loop().run_in_executor(None, restart_node, stack, "push1")
        await wait_until(lambda: not r.exists("mp:node:1:users"), 10, "node 1 to clear the old set")
        assert r.hget(presence, "1") is None
        assert (await watcher.request("O", ghost))["msg"]["online"] is False
        await watcher.close()
    run(go())
