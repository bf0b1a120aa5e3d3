"""magpie-push's Redis client on a Redis Cluster (SPEC §7; the design is the top of push/rdsa_cluster.c).

The stack is `scripts/dev up --redis cluster` (three masters with a replica each, cluster-node-timeout
1000 ms, nothing else); `scripts/dev test` runs this file on such a stack of its own (the step "redis
cluster client", next to test_rcluster.py); on any other stack it is skipped.

What is tested is push/rdsa.c with its cluster backend, the code magpie-push runs, on a libuv loop in
tests/probes/rdsa_cluster_probe.c (built by make; the sanitizer build under `scripts/dev test`): this file
writes requests to it line by line and reads what it answers, while it flushes scripts, moves a slot and
kills a master around it with redis-cli, as an operator would. The probe runs with
redis.min_replicas_acked = 1 (every WAIT must reach a replica) and the default redis.cluster_retry_ms.
"""
import os
import subprocess
import time

import pytest

# the cluster as an operator sees it (redis-cli), shared by the cluster test files
from cluster_cli import (PORTS, RESUME_LIMIT_S, LineProbe, cli, kill_node, masters, migrate_slot, needs_cluster,
                         nodes, owner, settled, slot_of, start_node, wait_until)
from magpie_stack import BUILD, RUN, read_conf

PROBE = os.path.join(BUILD, "tests", "probes", "rdsa-cluster-probe")
# The probe's push.node_id, so its connections' names (magpie-push-<id>-...) are not the stack's push nodes'
# (which run on the same cluster and hold subscriber connections of their own).
PROBE_NODE = 1021
PROBE_NAME = f"magpie-push-{PROBE_NODE}-"

pytestmark = needs_cluster


def probe_conf():
    """The stack's magpie.conf with redis.min_replicas_acked = 1: a WAIT that reached no replica fails."""
    path = os.path.join(RUN, "rdsa-cluster-probe.conf")
    out = []
    for line in open(os.path.join(RUN, "magpie.conf")).read().splitlines():
        if line.strip().startswith("min_replicas_acked"):
            continue
        out.append(line)
        if line.strip() == "[redis]":
            out.append("min_replicas_acked = 1")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def dead_seed_conf(conf):
    """conf with a seed where nothing listens put first in redis.cluster."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    path = os.path.join(RUN, "rdsa-cluster-probe-dead-seed.conf")
    lines = [f"cluster = 127.0.0.1:{dead}, " + line.split("=", 1)[1].strip()
             if line.strip().startswith("cluster ") or line.strip().startswith("cluster=") else line
             for line in open(conf).read().splitlines()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def retry_ms(conf):
    return int(read_conf(conf).get("redis.cluster_retry_ms", 1000))


class Probe(LineProbe):
    """rdsa-cluster-probe as push node PROBE_NODE (its protocol is at the top of rdsa_cluster_probe.c)."""

    def __init__(self, conf):
        super().__init__(PROBE, conf, env=dict(os.environ, MAGPIE_PUSH_NODE_ID=str(PROBE_NODE)))

    def cmd(self, *words):
        """(port that answered or None, kind, value): (7001, 'STR', 'v'), (None, 'NULL', '1003') or
        (None, 'FAIL', 'EINVAL')."""
        out = self.ask(" ".join(str(w) for w in words))
        if out.startswith("FAIL ") or out.startswith("NULL "):
            kind, _, value = out.partition(" ")
            return None, kind, value
        node, kind, value = (out.split(" ", 2) + [""])[:3]
        return int(node.rsplit(":", 1)[1]), kind, value

    def kv(self, request, head):
        out = self.ask(request)
        assert out.startswith(head + " "), out
        return {k: v for k, v in (kv.split("=", 1) for kv in out[len(head) + 1:].split(" ") if "=" in kv)}

    def stats(self):
        return {k: int(v) for k, v in self.kv(".stats", "STATS").items()}

    def state(self):
        return {k: int(v) for k, v in self.kv(".state", "STATE").items()}

    def load_result(self, load_id):
        r = self.kv(f".stopload {load_id}", "LOAD")
        return {k: (v if k == "first_error" else int(v)) for k, v in r.items()}

    def msgs(self, channel):
        out = self.ask(f".msgs {channel}")
        assert out.startswith("MSGS "), out
        n, readies, last = out[5:].split(" ", 2)
        return int(n), int(readies.split("=")[1]), last.split("=", 1)[1]


@pytest.fixture
def conf():
    return probe_conf()


@pytest.fixture
def probe(conf):
    wait_until("a settled cluster", settled, 60)
    p = Probe(conf)
    assert p.ask(".ready 20", timeout=30) == "READY"  # every slot served through a ready connection
    yield p
    p.close()


def tag_on(port, stem):
    """A hash tag {stem-N} whose slot the master on port serves."""
    view = nodes()
    for i in range(1000):
        tag = f"{{{stem}-{i}}}"
        if owner(slot_of(tag), view)["port"] == port:
            return tag
    raise AssertionError(f"no tag on {port}")


def subscriber_node():
    """The port of the node rdsa's subscriber link is on (its CLIENT SETNAME), with its client id."""
    for p in PORTS:
        try:
            out = cli(p, "CLIENT", "LIST", check=False)
        except subprocess.TimeoutExpired:
            continue
        for line in out.splitlines():
            f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            if f.get("name", "") == PROBE_NAME + "subscriber":
                return p, f["id"]
    return None, None


def commandstats_calls(port, command):
    for line in cli(port, "INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


# ---- the tests ----

def test_commands_and_scripts_across_slots(probe):
    """Commands (argv and printf-style) and EVALSHAs over keys on every master each land on the master
    that serves their slot and answer right; a command whose keys span slots is refused before anything
    is sent (MP_EINVAL: the caller answers E)."""
    view = nodes()
    seen = set()
    s0 = probe.stats()
    for i in range(150):
        key = f"rc:{i}"
        port = owner(slot_of(key), view)["port"]
        assert probe.cmd("SET", key, f"v{i}") == (port, "STATUS", "OK")
        assert probe.cmd(".fmt", "GET", key) == (port, "STR", f"v{i}")
        assert probe.cmd(".eval", "setget", 1, f"{{rc{i}}}:s", f"s{i}") == \
            (owner(slot_of(f"{{rc{i}}}:s"), view)["port"], "STR", f"s{i}")
        seen.add(port)
    assert seen == set(masters())
    assert cli(owner(slot_of("rc:7"), view)["port"], "GET", "rc:7") == "v7"  # really stored there
    port = owner(slot_of("{pair}"), view)["port"]
    assert probe.cmd(".eval", "pair", 2, "{pair}a", "{pair}b", "x") == (port, "INT", "2")
    assert probe.cmd("MGET", "{pair}a", "{pair}b") == (port, "ARRAY", "2")
    assert probe.cmd("MGET", "a", "b") == (None, "FAIL", "EINVAL")
    assert probe.cmd(".eval", "pair", 2, "a", "b", "x") == (None, "FAIL", "EINVAL")
    assert probe.cmd("SUBSCRIBE", "x") == (None, "FAIL", "EINVAL")  # not through the command connections
    s1 = probe.stats()
    assert s1["refused"] - s0["refused"] == 3
    assert s1["commands"] - s0["commands"] == 150 * 3 + 2  # the refused ones were not sent
    assert s1["moved"] == s0["moved"] and s1["gave_up"] == s0["gave_up"]  # the map was right throughout
    assert s1["masters"] == 3 and s1["masters_ready"] == 3
    assert probe.cmd("PUBLISH", "nobody", "x")[1] == "INT"  # keyless: any master


def test_first_seed_dead(conf):
    """A seed where nothing listens (a node long gone) costs a refused connect: the map comes from the next
    seed, and every slot is served."""
    wait_until("a settled cluster", settled, 60)
    p = Probe(dead_seed_conf(conf))
    try:
        assert p.ask(".ready 20", timeout=30) == "READY"
        assert p.cmd("SET", "seed:k", "v")[1:] == ("STATUS", "OK")
        assert p.stats()["masters_ready"] == 3
    finally:
        p.close()


def test_script_flush_then_evalsha(probe):
    """A master that lost its scripts (SCRIPT FLUSH; a restart or a promoted replica is the same) answers
    NOSCRIPT: the client loads them again and the EVALSHA is answered, never an error to the caller."""
    key = "{flush}:k"
    port = owner(slot_of(key))["port"]
    assert probe.cmd(".eval", "setget", 1, key, "a") == (port, "STR", "a")
    s0 = probe.stats()
    assert cli(port, "SCRIPT", "FLUSH") == "OK"
    assert probe.cmd(".eval", "setget", 1, key, "b") == (port, "STR", "b")
    assert probe.cmd(".eval", "pair", 2, "{flush}:1", "{flush}:2", "c") == (port, "INT", "2")
    s1 = probe.stats()
    assert s1["noscript"] - s0["noscript"] == 1  # the reload came before the second script's EVALSHA
    assert s1["gave_up"] == s0["gave_up"] and s1["lost_in_flight"] == s0["lost_in_flight"]
    # the other masters were not touched
    other = next(p for p in masters() if p != port)
    tag = tag_on(other, "flush-other")
    assert probe.cmd(".eval", "setget", 1, tag, "d") == (other, "STR", "d")
    assert probe.stats()["noscript"] == s1["noscript"]


def test_wait_goes_to_the_master_that_wrote(probe):
    """rdsa_wait from a write's reply callback sends WAIT to the master that made the write (it answers 1:
    the replica holds it), and to no other master; outside a reply callback it answers 0. (A WAIT on a
    connection that wrote nothing answers at once with every replica, so where WAITs ran is what tells.)"""
    ports = masters()
    for p in ports:
        tags = [tag_on(p, f"wait{n}") for n in range(2)]
        for q in ports:
            cli(q, "CONFIG", "RESETSTAT")
        for tag in tags:
            assert probe.ask(f".setwait {tag}:k v") == f"127.0.0.1:{p} WAIT 1"
        got = {q: commandstats_calls(q, "wait") for q in ports}
        # one WAIT per write here (each was sent once the one before had answered), on p only
        assert got == {q: (2 if q == p else 0) for q in ports}, (p, got)
    assert probe.ask(".waitout") == "WAIT 0"


def test_hung_master_times_out_and_comes_back(probe, conf):
    """A master that stops answering (CLIENT PAUSE: a hung process) has its connection dropped by the
    watchdog after redis.command_timeout_ms: the command written to it gets NULL then (it may have run: it
    is not sent twice), not never; once the master answers again its connection is made ready again by
    itself (the state callbacks say 0, then 1) and it serves its slots."""
    timeout_ms = int(read_conf(conf).get("redis.command_timeout_ms", 2000))
    p = masters()[0]
    tag = tag_on(p, "hung")
    assert probe.cmd(".eval", "setget", 1, f"{tag}:k", "a") == (p, "STR", "a")
    s0, st0 = probe.stats(), probe.state()
    pause_ms = timeout_ms + 1500
    cli(p, "CLIENT", "PAUSE", pause_ms, "ALL")
    t0 = time.time()
    node, kind, took = probe.cmd(".eval", "setget", 1, f"{tag}:k", "b")
    assert (node, kind) == (None, "NULL")
    assert timeout_ms <= int(took) <= timeout_ms + 1000, took  # the watchdog looks every 100 ms
    wait_until("the master's connection ready again", lambda: probe.state()["ups"] > st0["ups"], 20)
    assert time.time() - t0 >= pause_ms / 1000 - 0.5  # not before the master answered again
    assert probe.cmd(".eval", "setget", 1, f"{tag}:k", "c") == (p, "STR", "c")
    s1, st1 = probe.stats(), probe.state()
    assert s1["lost_in_flight"] - s0["lost_in_flight"] == 1
    assert s1["node_losses"] > s0["node_losses"]
    assert st1["downs"] > st0["downs"] and st1["told"] == 1


def test_slot_migrated_under_traffic(probe):
    """A slot migrates while EVALSHAs hit its keys without pause: the client follows ASK (keys already
    moved) and then MOVED (the slot assigned), and no caller sees an error, a NULL or a wrong answer."""
    tag = "{mig-rdsa}"
    slot = slot_of(tag)
    src = owner(slot)
    dst = nodes()[next(p for p in masters() if p != src["port"])]
    s0 = probe.stats()
    assert probe.ask(f".load mig {tag} 8") == "STARTED"
    time.sleep(0.5)  # every key of the load exists on src
    moved = migrate_slot(slot, src, dst, pause=0.05)
    time.sleep(1.0)  # traffic on the new owner (and a refresh after the MOVED)
    r = probe.load_result("mig")
    s1 = probe.stats()
    print(f"\nslot migration under traffic: {moved} keys moved; {r['ok']} answers, ASK "
          f"{s1['ask'] - s0['ask']}, MOVED {s1['moved'] - s0['moved']}, max gap {r['max_gap_ms']} ms")
    assert moved >= 40  # the load's 50 keys (some may have been written on dst through ASK)
    assert (r["null"], r["errors"], r["wrong"], r["eagain"]) == (0, 0, 0, 0), r
    assert r["ok"] > 200
    assert s1["ask"] > s0["ask"]  # keys already on dst were reached through ASKING
    assert s1["moved"] > s0["moved"]  # then the slot's new owner through MOVED
    assert probe.cmd("GET", f"{tag}:0")[0] == dst["port"]  # the map knows the new owner now
    assert cli(dst["port"], "EXISTS", f"{tag}:0") == "1"


def _move_subscriber_to(probe, channel, port):
    """Drop the subscriber link (CLIENT KILL) until it lands on port: it goes to the next master each
    time. Returns the readies count then."""
    for _ in range(8):
        at, cid = subscriber_node()
        _, readies, _ = probe.msgs(channel)
        if at == port:
            return readies
        assert at is not None, "no subscriber connection found"
        cli(at, "CLIENT", "KILL", "ID", cid)
        wait_until("the subscription confirmed again", lambda: probe.msgs(channel)[1] > readies, 10)
    raise AssertionError(f"the subscriber never went to {port}")


def test_subscribe_publish_from_another_node(probe):
    """SUBSCRIBE on one node; PUBLISH from another node's connection (and through the client itself)
    reaches it: a cluster forwards PUBLISH to every node."""
    assert probe.ask(".sub chan-a") == "SUBSCRIBED"
    at, _ = subscriber_node()
    assert at is not None
    other = next(p for p in PORTS if p != at)
    assert int(cli(other, "PUBLISH", "chan-a", "from-elsewhere")) >= 0
    wait_until("the message", lambda: probe.msgs("chan-a")[0] == 1, 5)
    assert probe.msgs("chan-a")[2] == "from-elsewhere"
    assert probe.cmd("PUBLISH", "chan-a", "through-rdsa")[1] == "INT"
    wait_until("the second message", lambda: probe.msgs("chan-a")[0] == 2, 5)
    assert probe.msgs("chan-a")[2] == "through-rdsa"


def test_master_killed_under_traffic(probe, conf):
    """kill -9 of a master that holds the subscriber, under traffic on its slots and on another master's:
    its slots answer again by themselves within RESUME_LIMIT_S (through the promoted replica); meanwhile
    its callers get NULL only once redis.cluster_retry_ms is spent (or at once for the commands written to
    it before it died, which are not sent twice); the other master's callers see no error; the state
    callbacks say 0 and then 1; the subscription moves to a live node and gets what is published."""
    budget = retry_ms(conf)
    victim = nodes()[masters()[0]]
    replica = next(n for n in nodes().values() if n["of"] == victim["id"])
    other = next(p for p in masters() if p != victim["port"])
    vtag, otag = tag_on(victim["port"], "fo-v"), tag_on(other, "fo-o")
    assert probe.ask(".sub chan-fo") == "SUBSCRIBED"
    readies = _move_subscriber_to(probe, "chan-fo", victim["port"])
    s0, st0 = probe.stats(), probe.state()
    assert probe.ask(f".load v {vtag} 4") == "STARTED"
    assert probe.ask(f".load o {otag} 4") == "STARTED"
    time.sleep(0.5)
    t0 = kill_node(victim["port"])
    try:
        # fully served again: the replica promoted, the map refreshed, its connection ready
        wait_until("the state callbacks saying 1 again",
                   lambda: probe.state()["ups"] > st0["ups"], 30)
        back = time.time() - t0
        time.sleep(1.0)  # traffic on the promoted replica
        rv, ro = probe.load_result("v"), probe.load_result("o")
        s1, st1 = probe.stats(), probe.state()
        lost = s1["lost_in_flight"] - s0["lost_in_flight"]
        print(f"\ncluster failover (rdsa): fully served {back:.1f} s after kill -9 of a master; its slots: "
              f"{rv['ok']} answers, {rv['null']} NULL ({rv['null_fast']} sooner than {budget} ms, "
              f"{lost} lost in flight), longest gap {rv['max_gap_ms']} ms; the other master: {ro['ok']} "
              f"answers, {ro['null']} NULL, {ro['errors']} errors; MOVED {s1['moved'] - s0['moved']}, "
              f"CLUSTERDOWN {s1['clusterdown'] - s0['clusterdown']}, refreshes {s1['refreshes'] - s0['refreshes']}")
        assert rv["max_gap_ms"] <= RESUME_LIMIT_S * 1000, rv
        assert back <= RESUME_LIMIT_S + 2
        assert (rv["errors"], rv["wrong"], ro["errors"], ro["wrong"]) == (0, 0, 0, 0), (rv, ro)
        # NULL sooner than the budget only for what was written to the dying master (not sent twice)
        assert rv["null_fast"] + ro["null_fast"] <= lost, (rv, ro, lost)
        assert rv["null"] > 0 and rv["null_slow"] > 0  # it did ride the outage to the end of the budget
        assert ro["ok"] > rv["ok"] / 4  # the other master kept answering meanwhile
        assert st1["downs"] > st0["downs"] and st1["told"] == 1 and st1["ready"] == 1
        assert s1["node_losses"] > s0["node_losses"]
        assert probe.cmd("GET", f"{vtag}:0")[0] == replica["port"]  # the promoted replica serves it now
        # the subscription came back on a live node and gets what is published from any node
        wait_until("the subscription confirmed again", lambda: probe.msgs("chan-fo")[1] > readies, 10)
        at, _ = subscriber_node()
        assert at is not None and at != victim["port"]
        n0 = probe.msgs("chan-fo")[0]
        sender = next(p for p in PORTS if p not in (at, victim["port"]))
        cli(sender, "PUBLISH", "chan-fo", "after-failover")
        wait_until("the message after the failover", lambda: probe.msgs("chan-fo")[0] == n0 + 1, 5)
        assert probe.msgs("chan-fo")[2] == "after-failover"
    finally:
        # what a supervisor does: start the killed node again; it rejoins as the new master's replica
        start_node(victim["port"])
        wait_until("the killed master back as its replica's replica, the cluster settled",
                   lambda: settled() and nodes()[victim["port"]]["of"] == replica["id"], 60)


# ---- sharded pub/sub (SSUBSCRIBE / SPUBLISH): each channel on the master of its slot ----

def shard_subscribers():
    """{port: number of rdsa's sharded subscriber connections (magpie-push-<id>-sharded) on that node}."""
    out = {}
    for p in PORTS:
        try:
            lines = cli(p, "CLIENT", "LIST", check=False).splitlines()
        except subprocess.TimeoutExpired:
            continue
        out[p] = sum(1 for line in lines if f" name={PROBE_NAME}sharded " in line)
    return out


def shard_numsub(port, channel):
    out = cli(port, "PUBSUB", "SHARDNUMSUB", channel).split()
    return int(out[1]) if len(out) == 2 else -1


def spublish(port, channel, payload):
    """SPUBLISH from a connection of its own (another node's), on port: the number of receivers there."""
    return int(cli(port, "SPUBLISH", channel, payload))


def test_ssubscribe_on_every_master(probe):
    """Sharded channels in many slots over all three masters: each is subscribed on the master serving its
    slot (PUBSUB SHARDNUMSUB there, nowhere else), through one sharded subscriber connection per master;
    SPUBLISH from another connection on that master reaches it, and SPUBLISH through rdsa goes to that
    master (SPUBLISH's channel is its key: rcl_command_slot) and arrives too. Unsubscribing every channel of
    one master closes rdsa's connection there."""
    view = nodes()
    chans = {}
    for port in masters():
        for n in range(8):
            chans[f"ss:{tag_on(port, f'ss{n}')}"] = port
    for ch in chans:
        assert probe.ask(f".ssub {ch}") == "SUBSCRIBED"
    assert len({slot_of(ch) for ch in chans}) >= 20  # many slots
    assert shard_subscribers() == {p: (1 if p in masters() else 0) for p in PORTS}
    for ch, port in chans.items():
        assert owner(slot_of(ch), view)["port"] == port
        assert [shard_numsub(p, ch) for p in masters()] == [1 if p == port else 0 for p in masters()], ch
        assert spublish(port, ch, f"from-{port}") == 1
    wait_until("every message", lambda: all(probe.msgs(ch)[0] == 1 for ch in chans), 10)
    assert all(probe.msgs(ch)[2] == f"from-{port}" for ch, port in chans.items())
    for ch, port in chans.items():
        assert probe.cmd("SPUBLISH", ch, "through-rdsa") == (port, "INT", "1")
    wait_until("the messages sent through rdsa", lambda: all(probe.msgs(ch)[0] == 2 for ch in chans), 10)
    assert all(probe.msgs(ch)[:3] == (2, 1, "through-rdsa") for ch in chans)  # one confirmation each
    # the classic kind of publish does not reach a sharded channel
    some = next(iter(chans))
    cli(chans[some], "PUBLISH", some, "classic")
    time.sleep(0.3)
    assert probe.msgs(some)[0] == 2
    # every channel of one master unsubscribed: its sharded connection is closed
    gone = masters()[0]
    for ch, port in chans.items():
        if port == gone:
            assert probe.ask(f".unsub {ch}") == "UNSUBSCRIBED"
    wait_until("the idle sharded connection closed", lambda: shard_subscribers()[gone] == 0, 5)
    assert all(shard_numsub(gone, ch) == 0 for ch, port in chans.items() if port == gone)
    assert all(shard_subscribers()[p] == 1 for p in masters() if p != gone)


def test_ssubscribe_follows_a_migrated_slot(probe):
    """A slot with a subscribed sharded channel moves to another master (as `redis-cli --cluster reshard`
    does): the old master drops the subscription (Redis 7's sunsubscribe), rdsa subscribes it on the new
    master by itself (ready called again), and what is published there after the move arrives. A channel
    of another slot of the old master is not touched."""
    src = nodes()[masters()[0]]
    dst = nodes()[next(p for p in masters() if p != src["port"])]
    ch, stay = f"mig:{tag_on(src['port'], 'smig')}", f"stay:{tag_on(src['port'], 'sstay')}"
    assert slot_of(ch) != slot_of(stay)
    for c in (ch, stay):
        assert probe.ask(f".ssub {c}") == "SUBSCRIBED"
        assert spublish(src["port"], c, "before") == 1
    wait_until("the messages before", lambda: probe.msgs(ch)[0] == 1 and probe.msgs(stay)[0] == 1, 5)
    t0 = time.time()
    migrate_slot(slot_of(ch), src, dst, pause=0.05)
    wait_until("the subscription confirmed on the new master", lambda: probe.msgs(ch)[1] == 2, 10)
    took = time.time() - t0
    assert shard_numsub(dst["port"], ch) == 1 and shard_numsub(src["port"], ch) == 0
    assert spublish(dst["port"], ch, "after") == 1
    wait_until("the message after the move", lambda: probe.msgs(ch)[0] == 2, 5)
    assert probe.msgs(ch)[2] == "after"
    print(f"\nsharded channel followed a migrated slot in {took:.2f} s")
    # the other slot's channel stayed where it was, subscribed once
    assert probe.msgs(stay)[1] == 1 and shard_numsub(src["port"], stay) == 1
    assert spublish(src["port"], stay, "still") == 1
    wait_until("the other channel's message", lambda: probe.msgs(stay)[0] == 2, 5)
    assert probe.cmd("SPUBLISH", ch, "via-rdsa") == (dst["port"], "INT", "1")


def test_ssubscribe_follows_a_failover(probe):
    """kill -9 of a master owning subscribed sharded channels: within RESUME_LIMIT_S they are subscribed
    on the promoted replica (ready again) and get what is published there; the channels of another master
    are not touched."""
    victim = nodes()[masters()[0]]
    replica = next(n for n in nodes().values() if n["of"] == victim["id"])
    other = next(p for p in masters() if p != victim["port"])
    vch = [f"fo:{tag_on(victim['port'], f'sfo{n}')}" for n in range(5)]
    och = f"fo:{tag_on(other, 'sfo-o')}"
    for c in vch + [och]:
        assert probe.ask(f".ssub {c}") == "SUBSCRIBED"
    t0 = kill_node(victim["port"])
    try:
        wait_until("every channel confirmed again on the promoted replica",
                   lambda: all(probe.msgs(c)[1] == 2 for c in vch), RESUME_LIMIT_S + 5)
        took = time.time() - t0
        print(f"\nsharded channels on the promoted replica {took:.1f} s after kill -9 of their master")
        assert took <= RESUME_LIMIT_S
        for c in vch:
            assert shard_numsub(replica["port"], c) == 1
            assert spublish(replica["port"], c, "after-failover") == 1
        wait_until("the messages after the failover", lambda: all(probe.msgs(c)[0] == 1 for c in vch), 5)
        assert all(probe.msgs(c)[2] == "after-failover" for c in vch)
        assert probe.msgs(och)[1] == 1  # the other master's channel was not resubscribed
        assert spublish(other, och, "other") == 1
        wait_until("the other master's message", lambda: probe.msgs(och)[0] == 1, 5)
    finally:
        start_node(victim["port"])
        wait_until("the killed master back as its replica's replica, the cluster settled",
                   lambda: settled() and nodes()[victim["port"]]["of"] == replica["id"], 60)


def test_ssubscribe_moved_and_reconnect(probe):
    """An SSUBSCRIBE sent by a stale map (the slot moved while the client had no reason to look) is
    answered MOVED: the client subscribes on the master it names. A sharded connection killed (CLIENT KILL)
    reconnects to its master and subscribes its channels again (ready again)."""
    src = nodes()[masters()[0]]
    dst = nodes()[next(p for p in masters() if p != src["port"])]
    ch = f"mv:{tag_on(src['port'], 'smv')}"
    migrate_slot(slot_of(ch), src, dst, pause=0.05)  # no key, no command of the probe there: its map is stale now
    s0 = probe.stats()
    assert probe.ask(f".ssub {ch}") == "SUBSCRIBED"
    assert probe.stats()["sub_moved"] == s0["sub_moved"] + 1  # the stale map's SSUBSCRIBE was redirected
    assert shard_numsub(dst["port"], ch) == 1 and shard_numsub(src["port"], ch) == 0
    assert spublish(dst["port"], ch, "moved") == 1
    wait_until("the message", lambda: probe.msgs(ch)[0] == 1, 5)
    # kill rdsa's sharded connection on dst
    for line in cli(dst["port"], "CLIENT", "LIST").splitlines():
        if f" name={PROBE_NAME}sharded " in line:
            cli(dst["port"], "CLIENT", "KILL", "ID", line.split(" ", 1)[0].split("=")[1])
    wait_until("the subscription confirmed again", lambda: probe.msgs(ch)[1] == 2, 10)
    assert shard_numsub(dst["port"], ch) == 1
    assert spublish(dst["port"], ch, "after-kill") == 1
    wait_until("the message after the reconnect", lambda: probe.msgs(ch)[0] == 2, 5)
    assert probe.msgs(ch)[2] == "after-kill"
