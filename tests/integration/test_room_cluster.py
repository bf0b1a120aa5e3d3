"""Rooms across the cluster when things change (SPEC §5, §7, §9): a node stopped with SIGTERM, a node killed
with kill -9 (its members stop counting once it drops out of the cluster; its entries go when it starts
again), a Redis restart (subscriptions and counts come back by themselves), /logout and /admin/kick
closing room connections. Every test leaves the stack's nodes and Redis running."""
import asyncio
import time

import pytest
import requests
import websockets

from push_client import ExtraNode, ensure_nodes_up, wait_until
from room_client import MEMBERS, Closed, Room, login_token, members_in_redis, new_room, new_uid, node_url, req, run


@pytest.fixture(autouse=True)
def stack_up_afterwards(stack):
    yield
    if not stack._redis_up():
        stack.start_redis()
    ensure_nodes_up(stack)


async def _count_is(member, n):
    return await member.members() == n


def test_sigterm_says_goodbye_and_the_nodes_members_stop_counting(stack):
    node = ExtraNode(stack, 981)
    try:
        async def go():
            room = new_room()
            watcher = await Room.join(stack, node_url(stack, 1), room)
            leaving = [await Room.join(stack, node.url, room) for _ in range(2)]
            unsigned = await Room.connect(node.url)
            await wait_until(lambda: _count_is(watcher, 3), 2, "3 members")
            t0 = time.monotonic()
            node.proc.send_signal(15)
            for m in leaving + [unsigned]:
                code, reason, errs = await m.closed()
                assert (code, reason) == (1001, "shutdown")
                assert [(e.code, e.msg) for e in errs] == [(108, "shutdown")]
            await wait_until(lambda: _count_is(watcher, 1), 2, "the stopped node's members to stop counting")
            assert time.monotonic() - t0 < 5
            assert members_in_redis(stack, room) == {1: 1}
            assert not stack.redis().exists("mp:{nodes}:node:981:rooms")
        run(go())
        assert node.proc.wait(10) == 0
    finally:
        node.stop()


def test_a_killed_nodes_members_stop_counting_and_its_entries_go_when_it_starts_again(stack):
    fast = {"node_ttl_s": 3, "heartbeat_s": 1}
    survivor = ExtraNode(stack, 982, **fast)
    victim = ExtraNode(stack, 983, **fast)
    try:
        async def go():
            room = new_room()
            watcher = await Room.join(stack, survivor.url, room)
            doomed = [await Room.join(stack, victim.url, room) for _ in range(2)]
            await wait_until(lambda: _count_is(watcher, 3), 2, "3 members")
            victim.proc.kill()
            victim.proc.wait()
            t0 = time.monotonic()
            await wait_until(lambda: _count_is(watcher, 1), 3 + 2, "the dead node's members to stop counting")
            assert time.monotonic() - t0 >= 1, "counted until the node missed its heartbeats"
            assert members_in_redis(stack, room).get(983) == 2, "the dead node's entry is still there, ignored"
            for m in doomed:
                with pytest.raises((Closed, websockets.ConnectionClosed)):
                    await m.heartbeat()
            # the same node id starts again: it clears what its previous run left
            restarted = ExtraNode(stack, 983, **fast)
            try:
                await wait_until(lambda: 983 not in members_in_redis(stack, room), 2, "the stale entry to go")
                back = await Room.join(stack, restarted.url, room)
                await wait_until(lambda: _count_is(watcher, 2), 2, "the new member to count")
                assert await back.members() == 2
            finally:
                assert restarted.stop() == 0
        run(go())
    finally:
        assert survivor.stop() == 0
        if victim.proc.poll() is None:
            victim.stop()


def test_a_redis_restart_brings_rooms_back_by_themselves(stack):
    async def go():
        room = new_room()
        a = await Room.join(stack, node_url(stack, 1), room)
        b = await Room.join(stack, node_url(stack, 2), room)
        c = await Room.join(stack, node_url(stack, 2), room)
        await a.say("before")
        for m in (a, b, c):
            await m.wait_messages(1)
        stack.stop_redis()
        # members stay; what needs Redis is refused with "retry", what does not is served
        await a.say("during")
        err = await a.error()
        assert (err.code, err.msg) == (105, "temporarily unavailable, retry")
        await a.send(req(MEMBERS))
        err = await a.error()
        assert (err.code, err.msg) == (105, "temporarily unavailable, retry")
        assert await a.heartbeat() == b"pong"
        await c.close()  # a leave while Redis is away: its count write is lost, the resync repairs it
        await asyncio.sleep(0.5)
        stack.start_redis()

        async def message_gets_through():
            mark = f"after {time.monotonic()}".encode()
            await a.say(mark)
            try:
                await b.wait_messages(len(b.messages) + 1, timeout=0.5)
            except asyncio.TimeoutError:
                return False
            return b.messages[-1] == mark

        await wait_until(message_gets_through, 15, "a message to cross nodes again")
        assert b"during" not in b.messages
        await wait_until(lambda: members_in_redis(stack, room) == {1: 1, 2: 1}, 5, "the counts to be written again")
        await a.quiet(0.5)
        a.inbox.clear()  # the "retry" answers to the attempts made while the nodes reconnected
        assert await a.members() == 2
        assert await b.members() == 2
    run(go())


@pytest.fixture
def http(stack):
    if stack.daemon_pid("http") is None:
        pytest.skip("needs magpie-http (/tk, /logout, /admin/kick)")
    return stack.nginx_url


def _tk(http, uid):
    from http_client import remember
    r = requests.post(f"{http}/tk", json={"uid": uid}, timeout=10)
    assert r.status_code == 200 and r.json()["code"] == 1, r.text
    remember(r.json()["data"])
    return r.json()["data"]


def test_a_tk_token_signs_in_and_logout_closes_the_rooms_opened_with_it(stack, http):
    async def go():
        uid = new_uid()
        room = new_room()
        phone_token, web_token = _tk(http, uid), _tk(http, uid)
        phone = await Room.join(stack, node_url(stack, 1), room, uid=uid, token=phone_token)
        web = await Room.join(stack, node_url(stack, 2), room, uid=uid, token=web_token)
        r = requests.post(f"{http}/logout", headers={"Authorization": f"Bearer {phone_token}"}, timeout=10)
        assert r.status_code == 200 and r.json()["code"] == 0
        code, reason, errs = await phone.closed()
        assert (code, reason) == (1000, "logout") and [(e.code, e.msg) for e in errs] == [(108, "logout")]
        assert await web.heartbeat() == b"pong", "the other login's room connection stays"
        again = await Room.connect(node_url(stack, 1), uid)
        err = await again.sign_in(phone_token, room)
        assert (err.code, err.msg) == (100, "bad token: revoked")
    run(go())


def test_admin_kick_closes_a_users_room_connections(stack, http):
    async def go():
        uid = new_uid()
        room = new_room()
        members = [await Room.join(stack, node_url(stack, n), room, uid=uid) for n in (1, 2)]
        other = await Room.join(stack, node_url(stack, 1), room)
        r = requests.post(f"{http}/admin/kick", json={"uid": uid}, headers={"Authorization": f"Key {stack.api_key}"},
                          timeout=10)
        assert r.status_code == 200, r.text
        for m in members:
            code, reason, errs = await m.closed()
            assert (code, reason) == (1008, "kicked") and [(e.code, e.msg) for e in errs] == [(108, "kicked")]
        await wait_until(lambda: _count_is(other, 1), 2, "the kicked members to stop counting")
    run(go())


def test_more_connections_than_a_user_may_hold_get_106_and_a_close(stack):
    node = ExtraNode(stack, 984, max_conns_per_user=2)
    try:
        async def go():
            uid = new_uid()
            room = new_room()
            kept = [await Room.join(stack, node.url, room, uid=uid) for _ in range(2)]
            third = await Room.connect(node.url, uid)
            err = await third.sign_in(login_token(stack, uid), room)
            assert (err.code, err.msg) == (106, "too many connections")
            code, _, _ = await third.closed()
            assert code == 1008
            assert all([await k.heartbeat() == b"pong" for k in kept])
            assert await kept[0].members() == 2
        run(go())
    finally:
        assert node.stop() == 0
