"""Redis Cluster client (SPEC §7; the design is the top of shared/rcluster.h) against a real cluster.

The stack is `scripts/dev up --redis cluster`: six Redis 7 nodes on loopback, three masters with a replica
each, cluster-node-timeout 1000 ms, and nothing else yet (the Magpie daemons do not run on a cluster until
their keys carry hash tags: issue 20). `scripts/dev test` runs this file on such a stack of its own (the step
"redis cluster client"); on any other stack it is skipped.

What is tested is the real C client, shared/rcluster.c, through tests/probes/rcluster_probe.c (built by
make; the sanitizer build under `scripts/dev test`): this file writes Redis commands to it line by line and
reads what it answers, while it moves a slot and kills a master around it with redis-cli, as an operator
would. The probe's counters (.stats) say which redirects and failures the client met on the way.
"""
import concurrent.futures
import os
import threading
import time

import pytest

from cluster_cli import (PORTS, RESUME_LIMIT_S, LineProbe, cli, kill_node, masters, needs_cluster, nodes, owner,
                         settled, start_node, wait_until)
from magpie_stack import BUILD, RUN

PROBE = os.path.join(BUILD, "tests", "probes", "rcluster-probe")
pytestmark = needs_cluster


# ---- the client under test ----

class Probe(LineProbe):
    """rcluster-probe on the stack's magpie.conf (its protocol is at the top of rcluster_probe.c)."""

    def __init__(self):
        super().__init__(PROBE, os.path.join(RUN, "magpie.conf"))

    def cmd(self, *words):
        """(port that answered or None, kind, value): (7001, 'STR', 'v') or (None, 'FAIL', 'EAGAIN why')."""
        out = self.ask(" ".join(str(w) for w in words))
        if out.startswith("FAIL "):
            return None, "FAIL", out[5:]
        node, kind, value = (out.split(" ", 2) + [""])[:3]
        return int(node.rsplit(":", 1)[1]), kind, value

    def slot(self, key):
        out = self.ask(f".slot {key}")
        assert out.startswith("INT "), out
        return int(out[4:])

    def map_owner(self, slot):
        out = self.ask(f".owner {slot}")
        return None if out == "NONE" else int(out.rsplit(":", 1)[1])

    def stats(self):
        out = self.ask(".stats")
        assert out.startswith("STATS "), out
        return {k: int(v) for k, v in (kv.split("=") for kv in out[6:].split())}


@pytest.fixture
def probe():
    wait_until("a settled cluster", settled, 60)
    p = Probe()
    yield p
    p.close()


# ---- the tests ----

KEYS = ["foo", "bar", "a", "b", "123456789", "user:1000", "{user1000}.following", "{user1000}.followers",
        "a{b}c{d}", "{}", "{a", "{{x}}", "x{}{y}", "mp:msg:42", "{u:17}:tl", "é", "k" * 300]


def test_keyslot_matches_cluster_keyslot(probe):
    """The client's slot of a key is the cluster's, hash tags included."""
    for key in KEYS:
        assert probe.slot(key) == int(cli(PORTS[0], "CLUSTER", "KEYSLOT", key)), key


def test_set_get_across_all_masters(probe):
    """Keys spread over every master; each command lands on the master the cluster says serves its slot,
    and what was written is read back, there and through the client."""
    want = {}
    seen = set()
    view = nodes()
    for i in range(300):
        key, value = f"spread:{i}", f"v{i}"
        port, kind, _ = probe.cmd("SET", key, value)
        assert kind == "STATUS", (key, kind)
        assert port == owner(probe.slot(key), view)["port"], key
        want[key] = (value, port)
        seen.add(port)
    assert seen == set(masters()), f"keys landed on {sorted(seen)}, masters are {masters()}"
    for key, (value, port) in want.items():
        assert probe.cmd("GET", key) == (port, "STR", value)
    for key in ("spread:0", "spread:1", "spread:2"):
        value, port = want[key]
        assert cli(port, "GET", key) == value  # really stored on that master
    assert probe.stats()["moved"] == 0  # the map was right from the start


def test_multi_key_in_one_slot_or_refused(probe):
    """Keys sharing a hash tag go together; keys in different slots are refused before anything is sent,
    with a clear reason (Redis would say CROSSSLOT)."""
    port, kind, _ = probe.cmd("MSET", "{t1}a", "1", "{t1}b", "2")
    assert kind == "STATUS"
    assert probe.cmd("MGET", "{t1}a", "{t1}b") == (port, "ARRAY", "2")
    before = probe.stats()
    node, kind, why = probe.cmd("MGET", "a", "b")
    assert (node, kind) == (None, "FAIL")
    assert why.startswith("EINVAL keys in different slots")
    after = probe.stats()
    assert after["refused"] == before["refused"] + 1
    assert after["commands"] == before["commands"]  # nothing went to the cluster


def test_slot_migration_ask_then_moved(probe):
    """A slot migrates as `redis-cli --cluster reshard` does it: while it is MIGRATING, a moved key is
    answered through ASK (the map is not changed); once it is assigned, MOVED updates the map."""
    key, fresh = "mig:{m1}", "mig:{m1}:new"
    slot = probe.slot(key)
    src = owner(slot)
    dst = next(nodes()[p] for p in masters() if p != src["port"])
    assert probe.cmd("DEL", key, fresh)[1] == "INT"  # (a second run on the same cluster starts afresh)
    assert probe.cmd("SET", key, "v1") == (src["port"], "STATUS", "OK")
    assert probe.map_owner(slot) == src["port"]

    done = False
    try:
        cli(dst["port"], "CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"])
        cli(src["port"], "CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"])
        assert cli(src["port"], "MIGRATE", "127.0.0.1", dst["port"], key, 0, 5000) == "OK"
        s0 = probe.stats()
        assert probe.cmd("GET", key) == (dst["port"], "STR", "v1")  # src says ASK: ASKING + GET on dst
        assert probe.cmd("GET", key) == (dst["port"], "STR", "v1")  # again: the map still says src
        assert probe.map_owner(slot) == src["port"]
        assert probe.cmd("SET", fresh, "n1") == (dst["port"], "STATUS", "OK")  # a new key goes to dst too
        s1 = probe.stats()
        assert s1["ask"] - s0["ask"] == 3 and s1["moved"] == s0["moved"]

        for n in [dst, src] + [nodes()[p] for p in masters() if p not in (src["port"], dst["port"])]:
            cli(n["port"], "CLUSTER", "SETSLOT", slot, "NODE", dst["id"])
        done = True
    finally:
        if not done:  # leave no slot half-migrated: a node importing a slot ignores the cluster's word on it
            for n in (src, dst):
                cli(n["port"], "CLUSTER", "SETSLOT", slot, "STABLE", check=False)
    assert probe.cmd("GET", key) == (dst["port"], "STR", "v1")  # src says MOVED now
    s2 = probe.stats()
    assert s2["moved"] - s1["moved"] == 1 and s2["ask"] == s1["ask"]
    assert probe.map_owner(slot) == dst["port"]
    assert probe.cmd("GET", fresh) == (dst["port"], "STR", "n1")
    assert probe.stats()["moved"] == s2["moved"]  # the map was right this time
    assert cli(dst["port"], "GET", key) == "v1"  # the key really lives on dst now


def test_pipeline_grouped_per_master_through_ask_and_moved(probe):
    """rcl_pipeline (what shared/rds.h's rds_append/rds_reply use on a cluster): commands over all three
    masters in one batch come back in order; a key whose slot is migrating is answered through ASK and one
    whose slot moved through MOVED, each run again alone after the batch, with the right values."""
    keys = [f"pipe:{i}" for i in range(30)]
    assert len({owner(probe.slot(k))["port"] for k in keys}) == 3
    for k in keys:
        assert probe.cmd("SET", k, f"v-{k}")[1] == "STATUS"
    gets = " | ".join(f"GET {k}" for k in keys)
    s0 = probe.stats()
    assert probe.ask(f".pipe {gets}") == "PIPE " + " | ".join(f"STR v-{k}" for k in keys)
    s1 = probe.stats()
    assert s1["commands"] - s0["commands"] == 30 and s1["moved"] == s0["moved"] and s1["ask"] == s0["ask"]
    # a refused command in the batch fails alone
    assert probe.ask(f".pipe GET {keys[0]} | MGET {keys[0]} {keys[1]} | GET {keys[1]}") == \
        f"PIPE STR v-{keys[0]} | FAIL | STR v-{keys[1]}"

    key, stay = "pipe:{p1}", "pipe:{p1}:stays"  # one slot: one key migrates, the other not yet
    slot = probe.slot(key)
    src = owner(slot)
    dst = next(nodes()[p] for p in masters() if p != src["port"])
    assert probe.cmd("SET", key, "m")[1] == "STATUS" and probe.cmd("SET", stay, "s")[1] == "STATUS"
    done = False
    try:
        cli(dst["port"], "CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"])
        cli(src["port"], "CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"])
        assert cli(src["port"], "MIGRATE", "127.0.0.1", dst["port"], key, 0, 5000) == "OK"
        s2 = probe.stats()
        assert probe.ask(f".pipe GET {keys[0]} | GET {key} | GET {stay} | GET {keys[1]}") == \
            f"PIPE STR v-{keys[0]} | STR m | STR s | STR v-{keys[1]}"
        s3 = probe.stats()
        assert s3["ask"] - s2["ask"] == 1 and s3["moved"] == s2["moved"]
        assert cli(src["port"], "MIGRATE", "127.0.0.1", dst["port"], stay, 0, 5000) == "OK"
        for n in [dst, src] + [nodes()[p] for p in masters() if p not in (src["port"], dst["port"])]:
            cli(n["port"], "CLUSTER", "SETSLOT", slot, "NODE", dst["id"])
        done = True
    finally:
        if not done:
            for n in (src, dst):
                cli(n["port"], "CLUSTER", "SETSLOT", slot, "STABLE", check=False)
    assert probe.ask(f".pipe GET {key} | GET {keys[2]} | GET {stay}") == f"PIPE STR m | STR v-{keys[2]} | STR s"
    s4 = probe.stats()
    assert s4["moved"] - s3["moved"] >= 1  # the batch met MOVED for the moved slot, and followed it
    assert probe.map_owner(slot) == dst["port"]
    assert probe.ask(f".pipe GET {key} | GET {stay}") == "PIPE STR m | STR s"
    assert probe.stats()["moved"] == s4["moved"]  # the map was right this time


def _watch_other_shards(keys, stop, seen):
    """A second client (its own probe) reading keys of the masters that stay up, until stop is set: with
    Redis' default cluster-require-full-coverage, they answer CLUSTERDOWN from when the dead master is
    marked failed until its replica is promoted. Appends (kind, value) of every answer to seen; returns
    the probe's counters."""
    p = Probe()
    try:
        while not stop.is_set():
            for k in keys:
                _, kind, value = p.cmd("GET", k)
                seen.append((kind, value[:120]))
            time.sleep(0.02)
        return p.stats()
    finally:
        p.close()


def test_master_killed_replica_promoted(probe):
    """kill -9 of a master: the client rides out the refused connections and CLUSTERDOWN answers, finds the
    promoted replica by itself and answers right again within RESUME_LIMIT_S; meanwhile it answers a
    value that was written or "unavailable", never a wrong one."""
    key = "fo:{f1}"
    slot = probe.slot(key)
    victim = owner(slot)
    replica = next(n for n in nodes().values() if n["of"] == victim["id"])
    others = [p for p in masters() if p != victim["port"]]
    # a value its replica holds (WAIT on the connection that wrote it), read once through the client
    assert cli(victim["port"], stdin=f"SET {key} before\nWAIT 1 5000\n").split() == ["OK", "1"]
    assert probe.cmd("GET", key) == (victim["port"], "STR", "before")
    other_keys = {}
    for i in range(200):  # a key on each other master, to watch through the failover
        k = f"fo:other:{i}"
        p = owner(probe.slot(k))["port"]
        if p in others and p not in other_keys.values():
            other_keys[k] = p
            assert probe.cmd("SET", k, "o")[1] == "STATUS"
    s0 = probe.stats()
    stop, seen = threading.Event(), []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(_watch_other_shards, list(other_keys), stop, seen)
        time.sleep(0.5)  # the watcher has its map and its connections
        t0 = kill_node(victim["port"])
        try:
            answers = []
            back = None
            while time.time() - t0 < 30:
                port, kind, value = probe.cmd("GET", key)
                answers.append((round(time.time() - t0, 2), port, kind, value[:80]))
                assert kind in ("STR", "FAIL"), answers[-1]
                if kind == "STR":
                    assert value == "before", answers[-1]
                    if port != victim["port"]:
                        back = time.time() - t0
                        assert port == replica["port"]
                        break
                else:
                    assert value.startswith("EAGAIN"), answers[-1]
            time.sleep(0.5)  # the watcher reads the other shards again after the promotion
            stop.set()
            w = watcher.result(timeout=60)
            s1 = probe.stats()
            gap = f"{back:.1f} s" if back is not None else "never (30 s)"
            print(f"\ncluster failover: the client answered again {gap} after kill -9 of a master; "
                  f"{len(answers)} tries; conn_errors +{s1['conn_errors'] - s0['conn_errors']} "
                  f"refreshes +{s1['refreshes'] - s0['refreshes']}; the other shards: {len(seen)} reads, "
                  f"{sum(k == 'FAIL' for k, _ in seen)} unavailable, CLUSTERDOWN met {w['clusterdown']} times")
            assert back is not None, answers[-5:]
            assert back <= RESUME_LIMIT_S, answers
            assert s1["conn_errors"] > s0["conn_errors"]  # it did meet the dead master
            assert probe.map_owner(slot) == replica["port"]
            assert probe.cmd("SET", key, "after") == (replica["port"], "STATUS", "OK")
            assert probe.cmd("GET", key) == (replica["port"], "STR", "after")
            # the other shards: the value, or unavailable while the cluster was down, nothing else
            for kind, value in seen:
                assert (kind, value) == ("STR", "o") or (kind == "FAIL" and value.startswith("EAGAIN")), value
            assert w["clusterdown"] > 0  # they did say CLUSTERDOWN, and the client rode it out
            assert seen[-len(other_keys):] == [("STR", "o")] * len(other_keys)
            for k, p in other_keys.items():
                assert probe.cmd("GET", k) == (p, "STR", "o")
        finally:
            stop.set()
            # what a supervisor does: start the killed node again; it rejoins as the new master's replica
            start_node(victim["port"])
            wait_until("the killed master back as its replica's replica, the cluster settled",
                       lambda: settled() and nodes()[victim["port"]]["of"] == replica["id"], 60)
