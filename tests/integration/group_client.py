"""Groups from a client's side (SPEC §4.2): users that exist (the endpoints check MySQL's users table),
the HTTP calls of the group endpoints, and reading a member's timeline with Y."""
import json

import pytest

from http_client import Client, test_token
from push_client import new_uid
import rkeys

_tokens = {}


def make_users(stack, n):
    """n users that exist: rows in MySQL's users table, as /login leaves them (the ids are ours)."""
    uids = [new_uid() for _ in range(n)]
    with stack.mysql() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO users (id, mobile) VALUES (%s, %s)", [(u, f"g{u}") for u in uids])
    return uids


def users_over_shards(stack, n_per_shard=1):
    """(redis, users): n_per_shard existing users in each shard, shard 0's first. Skips the test below
    redis.stream_shards = 2 (MAGPIE_STREAM_SHARDS=4)."""
    r = stack.redis()
    s = rkeys.shards(r)
    if s < 2:
        pytest.skip("needs redis.stream_shards > 1 (MAGPIE_STREAM_SHARDS=4)")
    by = {i: [] for i in range(s)}
    while any(len(v) < n_per_shard for v in by.values()):
        for u in make_users(stack, 8):
            if len(by[rkeys.shard(r, u)]) < n_per_shard:
                by[rkeys.shard(r, u)].append(u)
    return r, [u for i in range(s) for u in by[i]]


def seed_group(r, gid, users):
    """A group as POST /groups leaves it in Redis (KEY_GROUP, KEY_GROUP_MEMBERS, each member's
    KEY_USER_GROUPS; users[0] owns it), written one key per command, so that it can be made on any stack,
    the slot check's included."""
    now = 1_700_000_000_000
    r.hset(rkeys.tagged(r, "grp", gid), mapping={"name": "seeded", "owner": users[0], "created": now,
                                                 "j": len(users), "ver": 1})
    r.hset(rkeys.tagged(r, "grp", gid) + ":m",
           mapping={u: f"{'o' if i == 0 else 'm'} {i + 1} {now}" for i, u in enumerate(users)})
    for u in users:
        r.sadd(rkeys.tagged(r, "ugrp", u), gid)


def token(stack, uid):
    if uid not in _tokens:
        c = Client(stack.nginx_url)
        try:
            _tokens[uid] = test_token(c, uid)
        finally:
            c.close()
    return _tokens[uid]


def api(stack, uid, method, path, body=None):
    """One call to the group endpoints as uid; the Reply (status, code, result)."""
    c = Client(stack.nginx_url)
    try:
        return c.call(method, path, body, token=token(stack, uid))
    finally:
        c.close()


def create_group(stack, owner, members, name="group"):
    r = api(stack, owner, "POST", "/groups", {"name": name, "members": members})
    assert r.status == 200 and r.code == 0, r
    return r.result["group_id"]


def change_members(stack, by, gid, add=None, remove=None):
    body = {}
    if add is not None:
        body["add"] = add
    if remove is not None:
        body["remove"] = remove
    r = api(stack, by, "POST", f"/groups/{gid}/members", body)
    assert r.status == 200 and r.code == 0, r
    return r.result


async def timeline(chat, after=0):
    """Every entry of chat's user after `after`, by Y (paging until "more" is false), in seq order."""
    out = []
    while True:
        r = await chat.request("Y", {"after": after, "limit": 500}, timeout=15)
        assert r["type"] == "Y", r
        out += r["msg"]["messages"]
        if not r["msg"]["more"]:
            return out
        after = out[-1]["seq"]


def event_of(p):
    """The event object of an s packet (its msg), else None."""
    if p.get("type") != "s":
        return None
    return p["msg"] if isinstance(p["msg"], dict) else json.loads(p["msg"])
