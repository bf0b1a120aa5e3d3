"""The g send split (push/group.h, "The split"; issue 20): with redis.stream_shards = S > 1, a g whose group,
sender and members are not all in one shard runs as the group's part in the group's shard, then one part per
shard of the members, then the stream entry in the group's shard, each script in one slot. Checked as a client
and an operator see it: every member gets the message once, with its own seq, and has it in its timeline; the
A comes once every part answered; a failure of one shard's part is completed by the client's retry (A with the
first mid and seq, the missing members get it once, the others not again); magpie-persist stores one row with
the sender's seq and every other member's position. Skips at S = 1 (scripts/dev's MAGPIE_STREAM_SHARDS=4 runs
it)."""

from group_client import create_group, seed_group, timeline, users_over_shards
from push_client import Chat, run, wait_until
import rkeys


def _row(stack, sender, cid):
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT id, from_seq, group_id, group_seq FROM messages WHERE from_uid = %s AND client_id = %s",
                    (sender, cid))
        return [tuple(int(x) if x is not None else None for x in row) for row in cur.fetchall()]


def _chunk_has(stack, uid, seq, mid):
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT entries FROM timeline_chunks WHERE uid = %s AND first_seq <= %s AND last_seq >= %s",
                    (uid, seq, seq))
        return any(f"{seq}:{mid}" in (e.decode() if isinstance(e, bytes) else e).split()
                   for (e,) in cur.fetchall())


def _entries(tl):
    return [(p["seq"], p["mid"], p["msg"]) for p in tl if p.get("type") == "g"]


def test_a_g_to_members_in_every_shard_reaches_each_once_with_its_seq_and_is_stored_once(stack):
    r, users = users_over_shards(stack, n_per_shard=2)
    sender = users[-1]  # not the owner: any member sends

    async def go():
        chats = {u: await Chat.connect(stack, u) for u in users}
        gid = create_group(stack, users[0], users[1:], name="spread")
        assert len({rkeys.shard(r, u) for u in users}) == rkeys.shards(r)
        for u in users:  # the creation event
            await chats[u].messages(1, types=("s",))
        acks = [await chats[sender].text(gid, f"hello {i}", id=f"gs-{i}", type="g")
                for i in range(3)]
        assert [a["type"] for a in acks] == ["A"] * 3, acks
        mids = [a["mid"] for a in acks]
        for u in users:
            if u == sender:
                continue
            got = await chats[u].messages(3, types=("g",))
            assert [(p["mid"], p["msg"]) for p in got] == [(mids[i], f"hello {i}") for i in range(3)], u
            seqs = [p["seq"] for p in got]
            assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2], (u, seqs)
            assert _entries(await timeline(chats[u]))[-3:] == [(seqs[i], mids[i], f"hello {i}") for i in range(3)]
        assert [p for p in await chats[sender].collect(0.3) if p.get("type") == "g"] == [], \
            "the sender's own connection gets the A only"
        mine = _entries(await timeline(chats[sender]))
        assert [(s, m) for s, m, _ in mine] == [(a["seq"], a["mid"]) for a in acks]
        # one part ran in every shard of the members (KEY_GRCV), and the group's part in the group's shard
        for s in range(rkeys.shards(r)):
            assert r.exists(f"mp:{{{s}}}:grcv:{mids[0]}") == 1, s
        # magpie-persist: one row each, with the sender's seq and number, every other member's position
        for i in range(3):
            await wait_until(lambda: _row(stack, sender, f"gs-{i}") == [(int(mids[i]), acks[i]["seq"], gid, i + 1)],
                             15, f"one row of gs-{i}")
        other = users[1] if users[1] != sender else users[2]
        seq_other = [s for s, m, _ in _entries(await timeline(chats[other])) if m == mids[0]]
        await wait_until(lambda: _chunk_has(stack, other, seq_other[0], mids[0]), 15, "the member's position")
    run(go())


def test_a_failed_shard_part_is_completed_by_the_retry_acked_once_delivered_once_stored_once(stack):
    """One member's timeline key is made a string: that shard's part fails (its script undoes itself) and the
    g gets E; the members of the other shards have it. The retry (same id) completes that shard only: A with
    the first mid and seq, the member gets it once, nobody else twice, one row."""
    r, users = users_over_shards(stack)
    sender = users[0]

    async def go():
        chats = {u: await Chat.connect(stack, u) for u in users}
        gid = create_group(stack, sender, users[1:], name="retry")
        for u in users:
            await chats[u].messages(1, types=("s",))
        victim = next(u for u in users if rkeys.shard(r, u) != rkeys.shard(r, sender))
        tl = rkeys.tagged(r, "tl", victim)
        r.rename(tl, tl + ":saved")
        r.set(tl, "not a stream")
        first = await chats[sender].text(gid, "between", id="gcrash-1", type="g")
        assert first["type"] == "E", first
        assert [p for p in await chats[victim].collect(0.5) if p.get("type") == "g"] == [], \
            "the failed shard's member got nothing"
        others = [u for u in users if u not in (sender, victim) and rkeys.shard(r, u) != rkeys.shard(r, victim)]
        firsts = {}
        for u in others:
            got = await chats[u].messages(1, types=("g",))
            firsts[u] = (got[0]["seq"], got[0]["mid"])
        r.delete(tl)
        r.rename(tl + ":saved", tl)
        again = await chats[sender].text(gid, "between (the retry's copy)", id="gcrash-1", type="g")
        assert again["type"] == "A", again
        mid = again["mid"]
        assert all(m == mid for _s, m in firsts.values()), "the retry keeps the first mid"
        got = await chats[victim].messages(1, types=("g",))
        assert (got[0]["mid"], got[0]["msg"]) == (mid, "between"), "the first's content"
        for u in others:
            assert [p for p in await chats[u].collect(0.3) if p.get("type") == "g"] == [], "not delivered twice"
        third = await chats[sender].text(gid, "once more", id="gcrash-1", type="g")
        assert (third["type"], third["mid"], third["seq"]) == ("A", mid, again["seq"])
        for u in users:
            entries = [e for e in _entries(await timeline(chats[u])) if e[1] == mid]
            assert len(entries) == 1 and entries[0][2] == "between", (u, entries)
        await wait_until(lambda: _row(stack, sender, "gcrash-1") == [(int(mid), again["seq"], gid, 1)], 15,
                         "one row")
    run(go())


def test_a_g_on_a_cluster_touches_one_slot_per_script(stack):
    """The same send on a group seeded in Redis (so it runs on the slot check too, where every script that
    touches two slots is refused): members in every shard get it once, the A carries the sender's seq, one
    row is stored with the sender's seq."""
    r, users = users_over_shards(stack)
    gid = users[-1] + 1_000_000_000_000  # a group id of its own, in some shard
    seed_group(r, gid, users)
    sender = users[1]

    async def go():
        chats = {u: await Chat.connect(stack, u) for u in users}
        acks = [await chats[sender].text(gid, f"seeded {i}", id=f"gseed-{i}", type="g") for i in range(2)]
        assert [a["type"] for a in acks] == ["A", "A"], acks
        for u in users:
            if u != sender:
                got = await chats[u].messages(2, types=("g",))
                assert [(p["mid"], p["msg"]) for p in got] == [(acks[i]["mid"], f"seeded {i}") for i in range(2)]
        assert acks[1]["seq"] == acks[0]["seq"] + 1
        for i in range(2):
            await wait_until(lambda: _row(stack, sender, f"gseed-{i}") == [(int(acks[i]["mid"]), acks[i]["seq"],
                                                                             gid, i + 1)], 15, "one row")
    run(go())
