"""The one-time upgrade of a Redis written before the shard tags (shared/keys.h, keys_upgrade; README "Redis
Cluster", Upgrading): magpie-persist renames the old names before its worker starts, and clients find their
messages, timelines, conversations, friends and groups as before.

The stack's Redis is turned back into an old one for this test's users: their keys (and the streams of shard
0) are renamed to the names before the tags, the markers of the upgrade and of the counters' restore are
removed, and magpie-persist is started again.
"""
import asyncio
import re
import subprocess

from group_client import api, create_group, make_users
from http_client import Client, test_token
from push_client import Chat, make_friends, run, wait_until
from persist_client import wait_for
import rkeys

TAGGED = re.compile(r"^mp:\{\d+\}:(.*)$")


async def _connect(stack, uid):
    """A chat connection, once the push nodes serve logins (an earlier test may have restarted Redis just
    before: until the nodes are back, the login answers E "temporarily unavailable")."""
    for _ in range(150):
        try:
            return await Chat.connect(stack, uid)
        except AssertionError:
            await asyncio.sleep(0.1)
    raise AssertionError("the push nodes did not accept a login within 15 s")


def _old_name(key):
    """The name before the tags of a tagged key: mp:{3}:seq:42 -> mp:seq:42."""
    return "mp:" + TAGGED.match(key).group(1)


def _downgrade(r, users, gid, mids):
    keys = []
    for u in users:
        for name in ("friends", "seq", "tl", "convs", "conv", "ugrp", "presence"):
            keys.append(rkeys.tagged(r, name, u))
        keys += list(r.scan_iter(match=f"mp:{{{rkeys.shard(r, u)}}}:dedup:{u}:*"))
    keys += [rkeys.tagged(r, "grp", gid), rkeys.tagged(r, "grp", gid) + ":m"]
    # the chat streams (magpie-persist, their only reader, is stopped); not the notification streams, which
    # the stack's magpie-notify would create again at once
    keys += [rkeys.sharded(name, 0) for name in ("mq", "mq:dead")]
    moved = {}
    for k in keys:
        if r.exists(k):
            r.rename(k, _old_name(k))
            moved[_old_name(k)] = k
    for mid in mids:  # one old key per message; the other shards' copies go
        copies = [k for k in rkeys.msg_copies(r, mid) if r.exists(k)]
        assert copies, mid
        r.rename(copies[0], f"mp:msg:{mid}")
        moved[f"mp:msg:{mid}"] = copies[0]
        if len(copies) > 1:
            r.delete(*copies[1:])
    r.delete("mp:keys:tagged", "mp:shards", *rkeys.every(r, "seq:restored"))
    r.set("mp:seq:restored", "1")
    return moved


def test_old_key_names_are_renamed_and_clients_find_everything(stack):
    r = stack.redis()
    a, b, c = make_users(stack, 3)
    make_friends(stack, a, b)
    gid = create_group(stack, a, [b, c], name="before the tags")

    async def before():
        ca = await _connect(stack, a)
        sent = [await ca.text(b, f"old {i}") for i in range(3)]
        y = await ca.request("Y", {"after": 0, "limit": 100})
        await ca.close()
        return sent, y["msg"]["messages"]
    sent, timeline = run(before())
    assert [m["msg"] for m in timeline if m["type"] == "t"] == ["old 0", "old 1", "old 2"]
    mids = [m["mid"] for m in timeline]

    stack.kill_daemon("persist")
    try:
        moved = _downgrade(r, [a, b, c], gid, mids)
        assert f"mp:seq:{a}" in moved and f"mp:tl:{a}" in moved and f"mp:grp:{gid}" in moved
        assert f"mp:friends:{a}" in moved and f"mp:conv:{a}" in moved and "mp:mq" in moved
    finally:
        stack.start_daemon("persist")
    wait_for(lambda: r.exists("mp:keys:tagged"), 20, "the key upgrade")
    wait_for(lambda: r.exists(*rkeys.every(r, "seq:restored")) == rkeys.shards(r), 20, "the counters' restore")

    # every old name is gone, every key is back under its tagged name (a message: in its readers' shards)
    for old, new in moved.items():
        assert not r.exists(old), old
        if old.startswith("mp:msg:"):
            mid = old.split(":")[2]
            assert r.exists(rkeys.msg(r, a, mid)) and r.exists(rkeys.msg(r, b, mid)), old
        else:
            assert r.exists(new), new
    assert not r.exists("mp:seq:restored")
    assert r.xinfo_groups(rkeys.sharded("mq", 0))[0]["name"] == "persist"  # the stream kept its group

    async def after():
        ca, cb = await _connect(stack, a), await _connect(stack, b)
        y = await ca.request("Y", {"after": 0, "limit": 100})
        nxt = await ca.text(b, "after the upgrade")  # the counter went on where it was
        got = await cb.wait_for(lambda p: p["type"] == "t" and p["msg"] == "after the upgrade")
        await ca.close()
        await cb.close()
        return y["msg"]["messages"], nxt, got
    again, nxt, got = run(after())
    assert again == timeline
    assert nxt["type"] == "A" and nxt["seq"] == timeline[-1]["seq"] + 1
    assert got["mid"] == nxt["mid"]

    cl = Client(stack.nginx_url)
    try:
        tk = test_token(cl, a)
        friends = cl.get("/friends", token=tk).result["friends"]
        assert [f["uid"] for f in friends] == [b]
        conv = cl.get("/conversations", token=tk).result["conversations"]
        assert {x.get("with") or x.get("group") for x in conv} == {b, gid}
    finally:
        cl.close()
    g = api(stack, c, "GET", f"/groups/{gid}")
    assert g.code == 0 and g.result["name"] == "before the tags", g
    groups = api(stack, b, "GET", "/groups")
    assert gid in [x["group_id"] for x in groups.result["groups"]], groups

    # the renamed stream's entries (and the new one) reach MySQL
    with stack.mysql() as db:
        def stored():
            db.commit()
            with db.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM messages WHERE from_uid = %s AND to_uid = %s", (a, b))
                return cur.fetchone()[0] == 4
        wait_for(stored, 20, "the messages in MySQL")


def test_a_daemon_refuses_a_shard_count_other_than_the_one_redis_was_written_with(stack, tmp_path):
    r = stack.redis()
    have = rkeys.shards(r)
    conf = open(stack.conf_path).read()
    assert re.search(r"(?m)^stream_shards = \d+$", conf), "scripts/dev writes redis.stream_shards"
    other = tmp_path / "magpie.conf"
    other.write_text(re.sub(r"(?m)^stream_shards = \d+$", f"stream_shards = {have + 1}", conf))
    for binary in ("push/magpie-persist", "http/magpie-http", "push/magpie-push"):
        out = subprocess.run([stack.bin(binary), "-c", str(other)], capture_output=True, text=True, timeout=20)
        assert out.returncode == 1, (binary, out.returncode, out.stderr[-500:])
        assert f"redis.stream_shards = {have + 1}, but the data in Redis was written with another shard count" \
            in out.stderr, (binary, out.stderr[-500:])
        assert f"written with {have} shards" in out.stderr, out.stderr[-500:]  # the log line says both
    assert rkeys.shards(r) == have


def test_the_daemons_accept_redis_cluster_at_any_shard_count(stack, tmp_path):
    # A cluster with S = 1 and with S > 1 (issue 20: the scripts keep to one shard's slot) passes every
    # daemon's configuration check (-t; scripts/dev test's cluster step runs them on one).
    conf = open(stack.conf_path).read()
    for shards in (1, 4):
        path = tmp_path / f"cluster-{shards}.conf"
        path.write_text(re.sub(r"(?m)^stream_shards = \d+$", f"stream_shards = {shards}\ncluster = 127.0.0.1:1",
                               conf))
        for binary in ("push/magpie-persist", "http/magpie-http", "notify/magpie-notify", "push/magpie-push"):
            out = subprocess.run([stack.bin(binary), "-t", "-c", str(path)], capture_output=True, text=True,
                                 timeout=20)
            assert out.returncode == 0 and "configuration ok" in out.stdout, \
                (binary, shards, out.returncode, out.stderr[-400:])
