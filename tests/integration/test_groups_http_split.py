"""Group changes over HTTP split per shard (http/groups.c's top comment, "The split"; issue 20): with
redis.stream_shards = S > 1, a change of a group whose members are in several shards runs as the group's part in
the group's shard, one member part per shard, then the s events' stream entries, each script in one slot (so it
runs on a Redis Cluster). Checked as a client sees it: every member's device gets each s event once, with
gap-free seqs in its timeline; GET /groups lists groups of every shard; a member part that fails leaves the
change pending (the request answers code 20) and the next request about the group completes it, once, in
order. Skips at S = 1 (scripts/dev's MAGPIE_STREAM_SHARDS=4 runs it)."""

from group_client import api, change_members, create_group, event_of, timeline, users_over_shards
from push_client import Chat, run
import rkeys


async def _events(chat, n, gid=None):
    """The next n s events' (event name, seq, mid) (of group gid: others are passed over)."""
    out = []
    while len(out) < n:
        for p in await chat.messages(1, types=("s",)):
            if gid is None or event_of(p)["group"] == gid:
                out.append((event_of(p)["event"], p["seq"], p["mid"]))
    return out


async def _gap_free(chat):
    seqs = [e["seq"] for e in await timeline(chat)]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    return seqs


def test_changes_of_a_group_in_every_shard_reach_each_member_once_with_gap_free_seqs(stack):
    r, users = users_over_shards(stack)
    owner, rest = users[0], users[1:]
    extra = users_over_shards(stack)[1]  # one more user per shard, added later

    async def go():
        chats = {u: await Chat.connect(stack, u) for u in users + extra}
        gid = create_group(stack, owner, rest, name="split")
        for u in users:
            assert [e[0] for e in await _events(chats[u], 1)] == ["group_created"], u
        added = [u for u in extra if rkeys.shard(r, u) != rkeys.shard(r, gid)][:2]
        change_members(stack, owner, gid, add=added)
        for u in users + added:
            assert [e[0] for e in await _events(chats[u], 1)] == ["member_added"], u
        gone = rest[0]
        change_members(stack, owner, gid, remove=[gone])
        for u in users + added:
            assert [e[0] for e in await _events(chats[u], 1)] == ["member_removed"], u
        assert api(stack, added[0], "POST", f"/groups/{gid}/leave").code == 0
        left = [u for u in users + added if u != gone]
        for u in left:
            assert [e[0] for e in await _events(chats[u], 1)] == ["member_removed"], u
        # GET /groups of a member of groups in several shards (gids are consecutive: one per shard)
        others = [create_group(stack, added[1], [owner], name=f"g{i}") for i in range(rkeys.shards(r))]
        for _ in others:
            await _events(chats[owner], 1)
        listed = api(stack, owner, "GET", "/groups").result["groups"]
        assert [g["group_id"] for g in listed] == sorted([gid] + others), listed
        assert {rkeys.shard(r, g["group_id"]) for g in listed} == set(range(rkeys.shards(r)))
        assert next(g for g in listed if g["group_id"] == gid)["role"] == "owner"
        assert api(stack, gone, "GET", "/groups").result["groups"] == []
        assert api(stack, owner, "DELETE", f"/groups/{gid}").code == 0
        stay = [u for u in left if u != added[0]]
        for u in stay:
            assert [e[0] for e in await _events(chats[u], 1, gid)] == ["group_deleted"], u
        for u in users + added:
            assert [p for p in await chats[u].collect(0.3) if p.get("type") == "s"
                    and event_of(p)["group"] == gid] == [], "each event once"
            await _gap_free(chats[u])
        assert gid not in [g["group_id"] for g in api(stack, added[1], "GET", "/groups").result["groups"]]
        assert not r.exists(rkeys.tagged(r, "gchg", gid)), "nothing left pending"
    run(go())


def test_a_failed_member_part_is_completed_by_the_next_request_about_the_group(stack):
    """One member's timeline key is made a string: its shard's part of a member_added fails (the script undoes
    itself), the request answers code 20, the members of the other shards have the event. The retry of the
    add (code 2: already a member) completes the victim's shard: it gets member_added once, nobody twice;
    the next change then reaches everyone in order."""
    r, users = users_over_shards(stack)
    owner = users[0]
    newcomer = users_over_shards(stack)[1][0]

    async def go():
        chats = {u: await Chat.connect(stack, u) for u in users + [newcomer]}
        gid = create_group(stack, owner, users[1:], name="crash")
        for u in users:
            await _events(chats[u], 1)
        victim = next(u for u in users[1:] if rkeys.shard(r, u) not in (rkeys.shard(r, gid),
                                                                           rkeys.shard(r, newcomer)))
        tl = rkeys.tagged(r, "tl", victim)
        r.rename(tl, tl + ":saved")
        r.set(tl, "not a stream")
        first = api(stack, owner, "POST", f"/groups/{gid}/members", {"add": [newcomer]})
        assert first.code == 20, first
        for u in users + [newcomer]:
            if u != victim:
                assert [e[0] for e in await _events(chats[u], 1)] == ["member_added"], u
        assert [p for p in await chats[victim].collect(0.5) if p.get("type") == "s"] == [], "victim: nothing yet"
        assert r.hlen(rkeys.tagged(r, "gchg", gid)) == 1, "the change is pending"
        r.delete(tl)
        r.rename(tl + ":saved", tl)
        again = api(stack, owner, "POST", f"/groups/{gid}/members", {"add": [newcomer]})
        assert again.code == 2, again  # already a member: the first made the change
        assert [e[0] for e in await _events(chats[victim], 1)] == ["member_added"]
        assert not r.exists(rkeys.tagged(r, "gchg", gid)), "completed"
        assert api(stack, owner, "POST", f"/groups/{gid}", {"name": "renamed"}).code == 0
        for u in users + [newcomer]:
            assert [e[0] for e in await _events(chats[u], 1)] == ["group_renamed"], u
            assert [p for p in await chats[u].collect(0.3) if p.get("type") == "s"] == [], "once"
            tl_events = [event_of(e)["event"] for e in await timeline(chats[u]) if e.get("type") == "s"]
            assert tl_events[-2:] == ["member_added", "group_renamed"], (u, tl_events)
            await _gap_free(chats[u])
    run(go())
