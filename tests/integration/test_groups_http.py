"""The group endpoints of magpie-http (SPEC §4.2, codes of §3; design in http/groups.c and push/group.h):
each endpoint's answer and documented codes, the limits, nothing half-applied by a refused change, and the
s events every change leaves in the members' timelines (read with Y) and delivers live. Group chat itself
(g over the nodes) is test_groups.py's."""
import asyncio
import os
import signal

from group_client import api, change_members, create_group, make_users, timeline, token
from http_client import Client, ExtraHttp, front  # noqa: F401 (the fixture)
from push_client import Chat, run, wait_until
import rkeys

NAME64 = "群" * 63 + "é"  # 64 characters, 191 bytes


def group(stack, uid, gid):
    return api(stack, uid, "GET", f"/groups/{gid}")


def members_of(stack, uid, gid):
    r = group(stack, uid, gid)
    assert r.status == 200 and r.code == 0, r
    return [(m["uid"], m["role"]) for m in r.result["members"]]


async def entries(stack, uid):
    """uid's whole timeline by Y, on a connection of its own."""
    c = await Chat.connect(stack, uid)
    try:
        return await timeline(c)
    finally:
        await c.close()


def events(stack, uid):
    """The s events of uid's timeline (packets with seq), in seq order."""
    return [e for e in run(entries(stack, uid)) if e["type"] == "s"]


def seqs_now(stack, uids):
    r = stack.redis()
    return {u: int(r.get(rkeys.tagged(r, "seq", u)) or 0) for u in uids}


# ---- create, read, list -------------------------------------------------------------------------------

def test_create_makes_the_caller_owner_and_members_see_it(stack, front):
    owner, a, b, outsider = make_users(stack, 4)
    c = Client(front.url)
    try:
        r = c.post("/groups", {"name": NAME64, "members": [a, str(b)]}, token=token(stack, owner))
        assert (r.status, r.code) == (200, 0), r
        gid = r.result["group_id"]
        assert isinstance(gid, int) and gid > 0
        for u in (owner, a, b):
            r = c.get(f"/groups/{gid}", token=token(stack, u))
            assert (r.status, r.code) == (200, 0), r
            assert r.result == {"group_id": gid, "name": NAME64, "owner": owner,
                                "members": [{"uid": owner, "role": "owner"}, {"uid": a, "role": "member"},
                                            {"uid": b, "role": "member"}]}
        r = c.get("/groups", token=token(stack, a))
        assert r.code == 0 and {"group_id": gid, "name": NAME64, "role": "member", "members": 3} in r.result["groups"]
        r = c.get("/groups", token=token(stack, owner))
        assert [g["role"] for g in r.result["groups"] if g["group_id"] == gid] == ["owner"]
        # a non-member: 14; no such group: 15; a path that is no group id: 15
        r = c.get(f"/groups/{gid}", token=token(stack, outsider))
        assert (r.status, r.code) == (403, 14), r
        assert c.get("/groups", token=token(stack, outsider)).result == {"groups": []}
        for path in (f"/groups/{gid + 1000000}", "/groups/abc", "/groups/0", "/groups/-1", "/groups/" + "9" * 20):
            r = c.get(path, token=token(stack, owner))
            assert (r.status, r.code) == (404, 15), (path, r)
        # no token: 13
        r = c.get(f"/groups/{gid}")
        assert (r.status, r.code) == (401, 13), r
    finally:
        c.close()


def test_the_owner_may_list_itself_and_a_group_of_one_is_fine(stack):
    owner, = make_users(stack, 1)
    gid = create_group(stack, owner, [owner], name="me")
    assert members_of(stack, owner, gid) == [(owner, "owner")]
    gid2 = create_group(stack, owner, [], name="alone")
    assert members_of(stack, owner, gid2) == [(owner, "owner")]


def test_names_count_characters_and_bad_names_are_code_2(stack):
    owner, a = make_users(stack, 2)
    before = seqs_now(stack, [owner, a])
    for body in ({"name": "", "members": [a]}, {"name": NAME64 + "x", "members": [a]},
                 {"name": "a" * 65, "members": [a]}, {"members": [a]}, {"name": 5, "members": [a]},
                 {"name": "tab\there", "members": [a]}, {"name": None, "members": [a]}):
        r = api(stack, owner, "POST", "/groups", body)
        assert (r.status, r.code) == (400, 2), (body, r)
    r = api(stack, owner, "POST", "/groups", {"name": "x" * 64, "members": [a]})
    assert r.code == 0, r
    gid = r.result["group_id"]
    # rename: the same limits
    for name in ("", NAME64 + "群", 7):
        r = api(stack, owner, "POST", f"/groups/{gid}", {"name": name})
        assert (r.status, r.code) == (400, 2), (name, r)
    assert group(stack, a, gid).result["name"] == "x" * 64
    assert seqs_now(stack, [owner, a]) == {u: s + 1 for u, s in before.items()}  # only group_created


def test_bad_member_lists_are_code_2_and_unknown_users_code_15_and_nothing_is_created(stack):
    owner, a, b = make_users(stack, 3)
    for members in ([a, b, a], [a, str(a)], "1,2", [a, "x"], [a, 0], [a, -3], [a, 1.5], [a, None], [a, 2**53],
                    {"a": 1}):
        r = api(stack, owner, "POST", "/groups", {"name": "g", "members": members})
        assert (r.status, r.code) == (400, 2), (members, r)
    r = api(stack, owner, "POST", "/groups", {"name": "g", "members": [a, 999999999999999]})
    assert (r.status, r.code) == (404, 15) and "999999999999999" in r.json["message"], r
    assert api(stack, owner, "GET", "/groups").result == {"groups": []}
    assert seqs_now(stack, [owner, a, b]) == {owner: 0, a: 0, b: 0}


def test_wrong_method_is_17_with_every_allowed_method(stack):
    owner, = make_users(stack, 1)
    gid = create_group(stack, owner, [])
    r = api(stack, owner, "PUT", f"/groups/{gid}")
    assert (r.status, r.code) == (405, 17), r
    assert set(r.headers["Allow"].split(", ")) == {"GET", "POST", "DELETE"}
    r = api(stack, owner, "GET", f"/groups/{gid}/leave")
    assert (r.status, r.code) == (405, 17) and r.headers["Allow"] == "POST", r


# ---- members ------------------------------------------------------------------------------------------

def test_add_and_remove_members(stack):
    owner, a, b, c = make_users(stack, 4)
    gid = create_group(stack, owner, [a])
    r = api(stack, owner, "POST", f"/groups/{gid}/members", {"add": [b, c]})
    assert r.code == 0 and r.result == {"group_id": gid, "members": [
        {"uid": owner, "role": "owner"}, {"uid": a, "role": "member"}, {"uid": b, "role": "member"},
        {"uid": c, "role": "member"}]}, r
    r = api(stack, owner, "POST", f"/groups/{gid}/members", {"remove": [a], "add": []})
    assert r.code == 0 and [m["uid"] for m in r.result["members"]] == [owner, b, c], r
    assert (group(stack, a, gid).code) == 14
    assert all(g["group_id"] != gid for g in api(stack, a, "GET", "/groups").result["groups"])
    # added again: a new join, at the end
    r = change_members(stack, owner, gid, add=[a], remove=[c])
    assert [m["uid"] for m in r["members"]] == [owner, b, a]


def test_a_refused_member_change_applies_nothing(stack):
    """Duplicates in add, a uid in add and remove, an unknown user, a member added twice, a non-member removed:
    the documented code, the same members afterwards, and no s event in anyone's timeline."""
    owner, a, b, x, y = make_users(stack, 5)
    gid = create_group(stack, owner, [a, b])
    before_members = members_of(stack, owner, gid)
    everyone = [owner, a, b, x, y]
    before = {u: run(entries(stack, u)) for u in everyone}
    for body, code in (({"add": [x, y, x]}, 2), ({"add": [x], "remove": [x]}, 2),
                       ({"add": [x, y], "remove": [b, b]}, 2), ({"add": [x, 888888888888888]}, 15),
                       ({"add": [x, a]}, 2), ({"remove": [b, x]}, 15), ({"add": [x], "remove": [y]}, 15), ({}, 2),
                       ({"add": "x"}, 2), ({"remove": [owner]}, 14)):
        r = api(stack, owner, "POST", f"/groups/{gid}/members", body)
        assert r.code == code, (body, r)
    assert members_of(stack, owner, gid) == before_members
    for u in everyone:
        assert run(entries(stack, u)) == before[u], f"uid {u}: a refused change left an entry"


def test_the_member_limit_counts_the_owner_501st_is_refused(stack):
    """group.max_members (500 by default) members, the owner included: a group of 500 is fine, the 501st
    member is code 14, in a create and in an add, and nothing is applied."""
    users = make_users(stack, 502)
    owner, rest = users[0], users[1:]
    r = api(stack, owner, "POST", "/groups", {"name": "big", "members": rest[:500]})
    assert (r.status, r.code) == (403, 14) and "500" in r.json["message"], r
    gid = create_group(stack, owner, rest[:499], name="big")
    assert len(members_of(stack, owner, gid)) == 500
    r = api(stack, owner, "POST", f"/groups/{gid}/members", {"add": [rest[499]]})
    assert (r.status, r.code) == (403, 14), r
    assert len(members_of(stack, owner, gid)) == 500
    assert seqs_now(stack, [rest[499], rest[500]]) == {rest[499]: 0, rest[500]: 0}
    # one out, one in: still 500
    r = api(stack, owner, "POST", f"/groups/{gid}/members", {"add": [rest[499]], "remove": [rest[0]]})
    assert r.code == 0 and len(r.result["members"]) == 500, r


def test_the_limits_come_from_the_config(stack):
    """A magpie-http with group.max_members = 3 and group.max_per_user = 2."""
    owner, a, b, c = make_users(stack, 4)
    env = {"MAGPIE_GROUP_MAX_MEMBERS": "3", "MAGPIE_GROUP_MAX_PER_USER": "2"}
    with ExtraHttp(stack, "http-group-limits", env=env) as h:
        cl = Client(h.url)
        try:
            call = lambda uid, method, path, body=None: cl.call(method, path, body, token=token(stack, uid))  # noqa
            r = call(owner, "POST", "/groups", {"name": "g", "members": [a, b, c]})
            assert (r.status, r.code) == (403, 14), r
            g1 = call(owner, "POST", "/groups", {"name": "g1", "members": [a, b]}).result["group_id"]
            r = call(owner, "POST", f"/groups/{g1}/members", {"add": [c]})
            assert (r.status, r.code) == (403, 14) and "group.max_members" in r.json["message"], r
            g2 = call(owner, "POST", "/groups", {"name": "g2", "members": [a]}).result["group_id"]
            # a is in 2 groups: a third is refused, whether a creates it or is added to it
            r = call(a, "POST", "/groups", {"name": "g3", "members": []})
            assert (r.status, r.code) == (403, 14) and "group.max_per_user" in r.json["message"], r
            g3 = call(b, "POST", "/groups", {"name": "g3", "members": [c]}).result["group_id"]
            r = call(b, "POST", f"/groups/{g3}/members", {"add": [a]})
            assert (r.status, r.code) == (403, 14) and str(a) in r.json["message"], r
            assert [m["uid"] for m in call(b, "GET", f"/groups/{g3}").result["members"]] == [b, c]
            # leaving one makes room
            assert call(a, "POST", f"/groups/{g2}/leave").code == 0
            assert call(b, "POST", f"/groups/{g3}/members", {"add": [a]}).code == 0
        finally:
            cl.close()


# ---- roles ----------------------------------------------------------------------------------------------

def test_roles_who_may_do_what(stack):
    owner, adm, m1, m2, outsider = make_users(stack, 5)
    gid = create_group(stack, owner, [adm, m1, m2])
    # a member may not rename, add, remove or change admins; an outsider may do nothing
    for uid, code in ((m1, 14), (outsider, 14)):
        assert api(stack, uid, "POST", f"/groups/{gid}", {"name": "mine"}).code == code
        assert api(stack, uid, "POST", f"/groups/{gid}/members", {"add": [outsider]}).code == code
        assert api(stack, uid, "POST", f"/groups/{gid}/members", {"remove": [m2]}).code == code
        assert api(stack, uid, "POST", f"/groups/{gid}", {"admins_add": [uid]}).code == code
        assert api(stack, uid, "DELETE", f"/groups/{gid}").code == code
    assert api(stack, outsider, "POST", f"/groups/{gid}/leave").code == 14
    # only the owner makes admins
    r = api(stack, owner, "POST", f"/groups/{gid}", {"admins_add": [adm]})
    assert r.code == 0 and {"uid": adm, "role": "admin"} in r.result["members"], r
    r = api(stack, adm, "POST", f"/groups/{gid}", {"admins_add": [m2]})
    assert (r.status, r.code) == (403, 14), r
    r = api(stack, adm, "POST", f"/groups/{gid}", {"admins_remove": [adm]})
    assert (r.status, r.code) == (403, 14), r
    # bad admin lists
    for body, code in (({"admins_add": [outsider]}, 15), ({"admins_add": [owner]}, 2),
                       ({"admins_add": [m2], "admins_remove": [m2]}, 2), ({"admins_add": [m2, m2]}, 2), ({}, 2)):
        r = api(stack, owner, "POST", f"/groups/{gid}", body)
        assert r.code == code, (body, r)
    # an admin renames and removes a member, but not another admin or the owner
    r = api(stack, adm, "POST", f"/groups/{gid}", {"name": "by admin"})
    assert r.code == 0 and r.result["name"] == "by admin", r
    assert api(stack, owner, "POST", f"/groups/{gid}", {"admins_add": [m2]}).code == 0
    assert api(stack, adm, "POST", f"/groups/{gid}/members", {"remove": [m2]}).code == 14
    assert api(stack, adm, "POST", f"/groups/{gid}/members", {"remove": [owner]}).code == 14
    r = api(stack, owner, "POST", f"/groups/{gid}", {"admins_remove": [m2]})
    assert r.code == 0 and {"uid": m2, "role": "member"} in r.result["members"], r
    assert api(stack, adm, "POST", f"/groups/{gid}/members", {"remove": [m2]}).code == 0
    # the owner removes an admin
    assert api(stack, owner, "POST", f"/groups/{gid}/members", {"remove": [adm]}).code == 0
    assert members_of(stack, owner, gid) == [(owner, "owner"), (m1, "member")]


# ---- leave and delete ---------------------------------------------------------------------------------------

def test_the_owner_leaving_hands_the_group_to_the_oldest_admin_else_the_oldest_member(stack):
    owner, m1, a1, m2, a2 = make_users(stack, 5)
    gid = create_group(stack, owner, [m1, a1, m2, a2])
    assert api(stack, owner, "POST", f"/groups/{gid}", {"admins_add": [a2, a1]}).code == 0
    r = api(stack, owner, "POST", f"/groups/{gid}/leave")
    assert (r.status, r.code, r.result) == (200, 0, None), r
    g = group(stack, m1, gid).result
    assert g["owner"] == a1 and (a1, "owner") in [(m["uid"], m["role"]) for m in g["members"]]
    assert owner not in [m["uid"] for m in g["members"]]
    assert api(stack, owner, "POST", f"/groups/{gid}/leave").code == 14  # not a member any more
    # no admin left after a1 and a2 go: the oldest member
    assert api(stack, a1, "POST", f"/groups/{gid}/members", {"remove": [a2]}).code == 0
    assert api(stack, a1, "POST", f"/groups/{gid}/leave").code == 0
    assert group(stack, m2, gid).result["owner"] == m1
    # a member leaving keeps the owner; the last one leaving deletes the group
    assert api(stack, m2, "POST", f"/groups/{gid}/leave").code == 0
    assert members_of(stack, m1, gid) == [(m1, "owner")]
    assert api(stack, m1, "POST", f"/groups/{gid}/leave").code == 0
    assert group(stack, m1, gid).code == 15
    assert api(stack, m1, "GET", "/groups").result == {"groups": []}
    ev = events(stack, m1)
    assert [e["msg"]["event"] for e in ev][-1] == "member_removed" and ev[-1]["msg"]["members"] == [m1]


def test_delete_by_the_owner_only(stack):
    owner, a, b = make_users(stack, 3)
    gid = create_group(stack, owner, [a, b])
    assert api(stack, owner, "POST", f"/groups/{gid}", {"admins_add": [a]}).code == 0
    for u in (a, b):
        r = api(stack, u, "DELETE", f"/groups/{gid}")
        assert (r.status, r.code) == (403, 14), r
    r = api(stack, owner, "DELETE", f"/groups/{gid}")
    assert (r.status, r.code, r.result) == (200, 0, None), r
    for u in (owner, a, b):
        assert group(stack, u, gid).code == 15
        assert all(g["group_id"] != gid for g in api(stack, u, "GET", "/groups").result["groups"])
        last = events(stack, u)[-1]
        assert last["msg"] == {"event": "group_deleted", "group": gid, "by": owner}, last
    for method, path in (("DELETE", ""), ("POST", "/leave"), ("POST", "")):
        r = api(stack, owner, method, f"/groups/{gid}{path}", {"name": "x"} if method == "POST" and not path else None)
        assert (r.status, r.code) == (404, 15), (method, path, r)
    r = api(stack, owner, "POST", f"/groups/{gid}/members", {"add": [a]})
    assert (r.status, r.code) == (404, 15), r


# ---- the s events -------------------------------------------------------------------------------------------

def test_every_change_is_an_s_event_in_every_members_timeline_in_order(stack):
    owner, a, b, c = make_users(stack, 4)
    gid = create_group(stack, owner, [a, b], name="first")
    change_members(stack, owner, gid, add=[c])
    assert api(stack, owner, "POST", f"/groups/{gid}", {"name": "second"}).code == 0
    assert api(stack, owner, "POST", f"/groups/{gid}", {"name": "second"}).code == 0  # unchanged: no event
    assert api(stack, owner, "POST", f"/groups/{gid}", {"admins_add": [a]}).code == 0  # no event of its own
    change_members(stack, a, gid, remove=[b])
    assert api(stack, c, "POST", f"/groups/{gid}/leave").code == 0
    assert api(stack, owner, "POST", f"/groups/{gid}", {"name": "third"}).code == 0  # b and c are gone

    want = [
        {"event": "group_created", "group": gid, "by": owner, "members": [owner, a, b], "name": "first"},
        {"event": "member_added", "group": gid, "by": owner, "members": [c]},
        {"event": "group_renamed", "group": gid, "by": owner, "name": "second"},
        {"event": "member_removed", "group": gid, "by": a, "members": [b]},
        {"event": "member_removed", "group": gid, "by": c, "members": [c]},
        {"event": "group_renamed", "group": gid, "by": owner, "name": "third"},
    ]
    got = {u: run(entries(stack, u)) for u in (owner, a, b, c)}
    for u in (owner, a):
        assert [e["msg"] for e in got[u]] == want, u
    assert [e["msg"] for e in got[b]] == want[:4], "b gets its removal and nothing after"
    assert [e["msg"] for e in got[c]] == want[1:5], "c gets what happened from its join to its leaving"
    mids = {}
    for u, es in got.items():
        assert [e["seq"] for e in es] == list(range(1, len(es) + 1)), u
        for e in es:
            assert e["type"] == "s" and e["from"] == 0 and e["to"] == gid and e["id"] == e["mid"], e
            assert mids.setdefault(e["mid"], (e["msg"], e["ts"])) == (e["msg"], e["ts"]), "one event, one mid"
    order = [e["mid"] for e in got[owner]]
    assert order == sorted(order, key=int), "event mids increase"


def _event(name):
    return lambda p: p.get("type") == "s" and isinstance(p.get("msg"), dict) and p["msg"].get("event") == name


def test_s_events_reach_members_connections_live(stack):
    async def go():
        owner, a, b, c = make_users(stack, 4)
        gid = create_group(stack, owner, [a, b])
        conns = {u: [await Chat.connect(stack, u, node=1), await Chat.connect(stack, u, node=2)]
                 for u in (owner, a, b, c)}
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: change_members(stack, owner, gid, add=[c], remove=[b]))
        for u in (owner, a, b):
            for ch in conns[u]:
                p = await ch.wait_for(_event("member_removed"))
                assert p["msg"] == {"event": "member_removed", "group": gid, "by": owner, "members": [b]}, p
                assert p["to"] == gid and p["from"] == 0 and p["seq"] >= 2, p
        for u in (owner, a, c):
            for ch in conns[u]:
                p = await ch.wait_for(_event("member_added"))
                assert p["msg"]["members"] == [c] and p["to"] == gid, p
        # b: nothing after its removal
        for ch in conns[b]:
            assert [p for p in await ch.collect(0.5) if p.get("type") == "s"] == []
        # the live seq is the one Y returns
        y = {e["mid"]: e["seq"] for e in await timeline(conns[a][0])}
        await loop.run_in_executor(None, lambda: api(stack, owner, "POST", f"/groups/{gid}", {"name": "live"}))
        for u in (owner, a, c):
            for ch in conns[u]:
                p = await ch.wait_for(_event("group_renamed"))
                assert p["msg"]["name"] == "live"
        p_a = [e for e in await timeline(conns[a][1]) if e["mid"] not in y]
        assert [e["msg"]["event"] for e in p_a] == ["group_renamed"]
        for ch in conns[b]:
            assert [p for p in await ch.collect(0.5) if p.get("type") == "s"] == []
        for cs in conns.values():
            for ch in cs:
                await ch.close()
    run(go())


# ---- GET /conversations ------------------------------------------------------------------------------------

def test_conversations_list_groups_with_the_latest_entry_and_freeze_for_those_who_left(stack):
    owner, a, b = make_users(stack, 3)
    gid = create_group(stack, owner, [a, b])

    def convs(u):
        r = api(stack, u, "GET", "/conversations")
        assert r.code == 0, r
        return [x for x in r.result["conversations"] if x.get("group") == gid]

    for u in (owner, a, b):
        [x] = convs(u)
        assert x["unread"] == 0 and x["read_mid"] is None, x
        assert x["last"]["msg"]["event"] == "group_created" and x["last"]["seq"] == 1, x
    change_members(stack, owner, gid, remove=[b])
    [xb] = convs(b)
    assert xb["last"]["msg"] == {"event": "member_removed", "group": gid, "by": owner, "members": [b]}
    assert xb["last"]["seq"] == 2
    assert api(stack, owner, "POST", f"/groups/{gid}", {"name": "later"}).code == 0
    [xa] = convs(a)
    assert xa["last"]["msg"]["event"] == "group_renamed" and xa["last"]["seq"] == 3, xa
    assert convs(b) == [xb], "a removed member's conversation stays as it was when it left"
    # g messages count as unread for the others, not for the sender
    async def send():
        ch = await Chat.connect(stack, owner)
        try:
            for i in range(3):
                r = await ch.text(gid, f"hello {i}", type="g")
                assert r["type"] == "A", r
            return r
        finally:
            await ch.close()
    last = run(send())
    [xa] = convs(a)
    assert xa["unread"] == 3 and xa["last"]["mid"] == last["mid"] and xa["last"]["type"] == "g", xa
    [xo] = convs(owner)
    assert xo["unread"] == 0 and xo["last"]["mid"] == last["mid"], xo
    assert convs(b) == [xb]
    # one who joins later: nothing before its join is unread
    c, = make_users(stack, 1)
    change_members(stack, owner, gid, add=[c])
    [xc] = convs(c)
    assert xc["unread"] == 0 and xc["last"]["msg"]["event"] == "member_added", xc


def test_changes_wait_while_redis_has_not_got_the_seq_counters_back(stack):
    """Redis lost its counters (every shard's mp:{<shard>}:seq:restored gone) and magpie-persist has not restored them yet: a change
    that would give an entry to a user without a counter is code 20 and writes nothing; afterwards it works."""
    owner, a, fresh = make_users(stack, 3)
    gid = create_group(stack, owner, [a])
    before = members_of(stack, owner, gid)
    r = stack.redis()
    os.kill(stack.daemon_pid("persist"), signal.SIGSTOP)  # hold the restore until the test has looked
    try:
        for k in rkeys.every(r, "seq:restored"):  # one key a command: a cluster refuses keys of several slots
            r.delete(k)
        for method, path, body in (("POST", "/groups", {"name": "new", "members": [fresh]}),
                                   ("POST", f"/groups/{gid}/members", {"add": [fresh]})):
            resp = api(stack, owner, method, path, body)
            assert (resp.status, resp.code) == (503, 20), (path, resp)
        assert members_of(stack, owner, gid) == before
        assert [g["group_id"] for g in api(stack, owner, "GET", "/groups").result["groups"]] == [gid]
        assert not r.exists(rkeys.tagged(r, "seq", fresh)) and not r.exists(rkeys.tagged(r, "ugrp", fresh))
        # everyone involved has a counter: fine
        assert api(stack, owner, "POST", f"/groups/{gid}", {"name": "still works"}).code == 0
    finally:
        os.kill(stack.daemon_pid("persist"), signal.SIGCONT)
    run(wait_until(lambda: rkeys.restored(r) == rkeys.shards(r), 15, "persist to restore the counters"))
    assert change_members(stack, owner, gid, add=[fresh])["members"][-1] == {"uid": fresh, "role": "member"}


def test_redis_down_is_code_20_and_back_without_a_restart(stack):
    owner, a = make_users(stack, 2)
    gid = create_group(stack, owner, [a])
    stack.stop_redis()
    try:
        for method, path, body in (("POST", "/groups", {"name": "g", "members": [a]}), ("GET", "/groups", None),
                                   ("GET", f"/groups/{gid}", None), ("POST", f"/groups/{gid}/leave", None),
                                   ("POST", f"/groups/{gid}/members", {"remove": [a]})):
            r = api(stack, owner, method, path, body)
            assert (r.status, r.code) == (503, 20), (path, r)
    finally:
        stack.start_redis()
    run(wait_until(lambda: api(stack, owner, "GET", f"/groups/{gid}").code == 0, 15, "the group endpoints again"))
    assert members_of(stack, a, gid) == [(owner, "owner"), (a, "member")]
    assert create_group(stack, a, [owner], name="after the outage") > gid
