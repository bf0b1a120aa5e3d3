"""Group chat end to end (SPEC §4.2, §4.1; design push/group.h): g over both push nodes to every member's
every device, one seq per member's timeline, Y the same for every member, membership changes racing sends,
and kill -9 of a push node and of magpie-persist while a group is busy. The HTTP endpoints' own answers and
codes are test_groups_http.py's."""
import asyncio
import random

from group_client import change_members, create_group, event_of, make_users, timeline
from push_client import Chat, Device, run, wait_until
import rkeys

N = 160        # messages one sender sends while a member is removed or added halfway
PACE_S = 0.02  # within push.rate (50 packets/s per connection)


async def _drain(chat, want, types="g", timeout=60):
    """The next `want` packets of these types on one connection (others are kept in its inbox)."""
    return await chat.messages(want, timeout=timeout, types=types)


def _mids_by_seq(packets, types="g"):
    ps = sorted((p for p in packets if p["type"] in types), key=lambda p: p["seq"])
    return [p["mid"] for p in ps], [p["seq"] for p in ps]


def test_50_members_on_both_nodes_two_devices_each_get_500_messages_once_in_one_order(stack):
    """A group of 50, each member with a device on each push node; 10 senders send 50 messages each, at once.
    Every device gets every message once; ordered by its user's seq, every member holds the same sequence of
    mids (at S > 1: every member of one shard; push/group.h, "Order"), without a gap, each sender's in the order
    it sent them; Y returns exactly that sequence (after the group_created event) to every member."""
    async def go():
        users = make_users(stack, 50)
        devices = {u: [await Chat.connect(stack, u, node=1), await Chat.connect(stack, u, node=2)] for u in users}
        gid = create_group(stack, users[0], users[1:], name="fifty")
        senders = users[:10]
        per_sender, total = 50, 500

        # senders send on a connection of their own: the two devices are read by the readers below
        outs = {u: await Chat.connect(stack, u, node=1 + i % 2) for i, u in enumerate(senders)}

        async def send_all(u):
            chat = outs[u]
            acks = []
            for i in range(per_sender):
                r = await chat.text(gid, f"{u}:{i}", type="g", timeout=15)
                assert r["type"] == "A", r
                acks.append(r)
            return acks

        # every connection is read while the messages flow (a reader that stops would be a slow consumer)
        readers = [asyncio.create_task(_drain(c, total, "g", 120)) for u in users for c in devices[u]]
        acks = await asyncio.gather(*(send_all(u) for u in senders))
        got = await asyncio.gather(*readers)
        acked_mids = {r["mid"] for a in acks for r in a}
        assert len(acked_mids) == total

        # One order for every member in one shard (each shard's part of a message writes all of that shard's
        # members in one script); across shards only at S = 1 (or with the whole group in one shard): at S > 1
        # the parts of two senders' messages may run in different orders in two shards (push/group.h, "Order").
        r = stack.redis()
        one_order = rkeys.shards(r) == 1 or len({rkeys.shard(r, u) for u in users}) == 1
        orders, by_shard = [], {}
        for (u, k), packets in zip([(u, k) for u in users for k in (0, 1)], got):
            mids, seqs = _mids_by_seq(packets)
            assert len(mids) == total and set(mids) == acked_mids, f"uid {u} device {k}: lost or doubled"
            assert seqs == list(range(seqs[0], seqs[0] + total)), f"uid {u}: the g entries have a gap"
            assert all(p["to"] == gid and p["type"] == "g" for p in packets)
            orders.append(mids)
            by_shard.setdefault(rkeys.shard(r, u), []).append(mids)
        for s, os_ in by_shard.items():
            assert all(o == os_[0] for o in os_), f"the members of shard {s} hold the messages in one order"
        if one_order:
            assert all(o == orders[0] for o in orders), "every member holds the messages in one order"
        # a sender's own messages in the order it sent them, in every member's timeline
        for u, a in zip(senders, acks):
            sent = [r["mid"] for r in a]
            for o in orders:
                assert [m for m in o if m in set(sent)] == sent

        synced = []
        for u in users:
            entries = await timeline(devices[u][1])
            assert event_of(entries[0])["event"] == "group_created" and entries[0]["seq"] == 1, entries[0]
            assert [e["seq"] for e in entries] == list(range(1, total + 2)), f"uid {u}: Y has a gap"
            synced.append([e["mid"] for e in entries[1:]])
            # the A of a sender carried its own seq of that mid
            if u in senders:
                by_mid = {e["mid"]: e["seq"] for e in entries}
                assert all(by_mid[r["mid"]] == r["seq"] for r in acks[senders.index(u)])
        assert all(s == o for s, o in zip(synced, orders[::2])), "Y returns each member the order it was pushed"
    run(go())


def _split_at_event(entries, event, uid):
    """(mids of g before, mids of g after) the s event `event` naming uid in this member's timeline."""
    for i, e in enumerate(entries):
        ev = event_of(e)
        if ev and ev["event"] == event and uid in ev.get("members", []):
            before = [x["mid"] for x in entries[:i] if x["type"] == "g"]
            after = [x["mid"] for x in entries[i + 1:] if x["type"] == "g"]
            return before, after
    raise AssertionError(f"no {event} event for {uid} in the timeline")


def test_a_member_removed_while_messages_flow_has_everything_before_and_nothing_after(stack):
    async def go():
        owner, sender, stays, gone = make_users(stack, 4)
        gid = create_group(stack, owner, [sender, stays, gone])
        s = await Chat.connect(stack, sender, node=1)
        m = await Chat.connect(stack, stays, node=2)
        x = await Chat.connect(stack, gone, node=1)
        x2 = await Chat.connect(stack, gone, node=2)
        loop = asyncio.get_running_loop()
        removal = None
        for i in range(N):
            r = await s.text(gid, f"m{i}", type="g")
            assert r["type"] == "A", r
            await asyncio.sleep(PACE_S)
            if i == N // 2:  # the removal races the next sends
                removal = loop.run_in_executor(None, change_members, stack, owner, gid, None, [gone])
        await removal
        before, after = _split_at_event(await timeline(m), "member_removed", gone)
        assert len(before) + len(after) == N and len(before) > N // 2 and after, (len(before), len(after))

        mine = await timeline(x)
        assert [e["mid"] for e in mine if e["type"] == "g"] == before, "the removed member got all before it"
        last = mine[-1]
        assert event_of(last)["event"] == "member_removed" and gone in event_of(last)["members"]
        # live: both of its devices got exactly `before` and the event, nothing stored after the removal
        for dev in (x, x2):
            live = await dev.collect(1.0)
            got = [p["mid"] for p in live if p["type"] == "g"]
            assert set(got) <= set(before) and not set(got) & set(after)
        r = await x.text(gid, "still here?", type="g")
        assert (r["type"], r["msg"]) == ("E", "not a member")
    run(go())


def test_a_member_added_while_messages_flow_gets_only_what_is_stored_after_its_join(stack):
    async def go():
        owner, sender, stays, new = make_users(stack, 4)
        gid = create_group(stack, owner, [sender, stays])
        s = await Chat.connect(stack, sender, node=2)
        m = await Chat.connect(stack, stays, node=1)
        n = await Chat.connect(stack, new, node=2)
        loop = asyncio.get_running_loop()
        adding = None
        for i in range(N):
            r = await s.text(gid, f"m{i}", type="g")
            assert r["type"] == "A", r
            await asyncio.sleep(PACE_S)
            if i == N // 2:
                adding = loop.run_in_executor(None, change_members, stack, owner, gid, [new], None)
        await adding
        before, after = _split_at_event(await timeline(m), "member_added", new)
        assert before and after and len(before) + len(after) == N
        mine = await timeline(n)
        assert event_of(mine[0])["event"] == "member_added" and mine[0]["seq"] == 1
        assert [e["mid"] for e in mine if e["type"] == "g"] == after, "the new member gets exactly what follows"
        live = [p["mid"] for p in await n.collect(1.0) if p["type"] == "g"]
        assert live == after[:len(live)] and not set(live) & set(before)
    run(go())


def _stored_group_rows(stack, gid):
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT from_uid, client_id FROM messages WHERE group_id = %s AND type = 'g'", (gid,))
        return [(int(f), c.decode() if isinstance(c, bytes) else c) for f, c in cur.fetchall()]


def test_acked_group_messages_survive_kill_9_of_a_push_node_and_of_persist(stack):
    """5 senders x 80 messages to a group of 12 through nginx, with retries as the README says (same id until
    A); push node 2 and magpie-persist are killed with SIGKILL mid-run and restarted. Every acked message is
    stored once in MySQL and is once in every member's timeline."""
    async def go():
        users = make_users(stack, 12)
        gid = create_group(stack, users[0], users[1:], name="chaos")
        senders = [Device(stack, u) for u in users[:5]]
        for d in senders:
            await d.connect()
        n = 80

        async def send(d):
            for i in range(n):
                await d.send(gid, f"{d.uid}:{i}", f"{d.uid}-g{i}", type="g")
                if d is senders[0] and i == 20:
                    await asyncio.get_running_loop().run_in_executor(None, stack.kill_daemon, "push2", 9)
                    stack.start_daemon("push2")
                if d is senders[0] and i == 45:
                    await asyncio.get_running_loop().run_in_executor(None, stack.kill_daemon, "persist", 9)
                    stack.start_daemon("persist")
                await asyncio.sleep(random.uniform(0, 0.01))

        await asyncio.gather(*(send(d) for d in senders))
        acked = {(d.uid, cid): mid for d in senders for cid, (mid, _) in d.acks.items()}
        assert len(acked) == 5 * n
        # MySQL: every acked message once
        want = sorted((u, cid) for u, cid in acked)
        await wait_until(lambda: sorted(_stored_group_rows(stack, gid)) == want, 60,
                         "persist to store every acked group message exactly once")
        # every member's timeline: every acked mid once, no gap
        for u in users:
            c = await Chat.connect(stack, u)
            entries = await timeline(c)
            assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
            mids = [e["mid"] for e in entries if e["type"] == "g"]
            assert sorted(mids) == sorted(acked.values()), f"uid {u}: lost or doubled"
            await c.close()
    run(go())
