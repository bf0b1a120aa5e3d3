"""magpie-http, magpie-persist and magpie-notify on Redis Cluster (SPEC §7, issue 20; shared/rds.h's top
comment is the design: every struct rds is a shared/rcluster.h client, subscriptions sit on any master).

The stack is `scripts/dev up --redis cluster`: six Redis 7 nodes (three masters with a replica each,
cluster-node-timeout 1000 ms), MariaDB, nginx, magpie-http, magpie-persist and magpie-notify, with
redis.stream_shards = 1 -- and no magpie-push yet (it refuses a cluster: shared/cli.c), so the chat stream is written
here as magpie-push writes it (shared/stream.h). `scripts/dev test` runs this file on such a stack of its own
(the step "redis cluster"); on any other stack it is skipped.

What a client sees is asserted: tokens and their revocation (refused at once, also after the node holding
magpie-http's subscription is killed), QR long polls answered, SMS limits, messages stored by magpie-persist,
and a master's kill -9: the HTTP API answers 503 "unavailable" meanwhile and is back by itself within 10 s,
magpie-persist stores everything with nothing lost or doubled.
"""
import base64
import concurrent.futures
import json
import logging
import os
import random
import signal
import socket
import threading
import time

import pytest

from cluster_cli import (ENV, PORTS, RESUME_LIMIT_S, alive, cli, clients_of, kill_node, masters, needs_cluster,
                         node_dir, nodes, owner, owner_port, restart_node, settled, slot_of, wait_until)
from http_client import Client, ExtraHttp, login, new_mobile, sms_lines, test_token, unique_uid
from magpie_stack import RUN, metrics
from persist_client import GROUP, KEY_DEAD, KEY_MQ, Batch, row_matches

pytestmark = needs_cluster
pool = concurrent.futures.ThreadPoolExecutor(8)
logging.getLogger("redis.cluster").setLevel(logging.CRITICAL)  # its retries during a failover are expected


def cluster_client():
    from redis.cluster import ClusterNode, RedisCluster
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in PORTS], socket_timeout=5,
                        cluster_error_retry_attempts=10)


@pytest.fixture
def settled_cluster(stack):
    wait_until("a settled cluster", settled, 60, 0.3)
    return stack


# ---- helpers of the HTTP API ----

def unavailable(r):
    return r.status == 503 and r.code == 20 and "unavailable" in r.json.get("message", "")


def revoked(r):
    return r.status == 401 and "revoked" in r.json.get("message", "")


def copy_checks(stack):
    return metrics(stack.http_port).get('magpie_http_revocation_checks_total{source="copy"}', 0)


def copy_ready(stack):
    return metrics(stack.http_port).get("magpie_http_revoked_copy_ready") == 1


def logout(client, token, within=RESUME_LIMIT_S):
    """/logout, tried again while the cluster is failing over (503); its final answer."""
    end = time.time() + within
    while True:
        r = client.post("/logout", token=token)
        if not unavailable(r) or time.time() > end:
            return r
        time.sleep(0.1)


# ---- the tests ----

def test_the_stack_runs_on_the_cluster(settled_cluster):
    stack = settled_cluster
    assert stack.conf.get("redis.cluster"), "scripts/dev writes redis.cluster"
    assert Client(stack.http_url).get("/healthz").status == 200
    # the whole stack, magpie-push included since it runs on a cluster (one shard)
    for name in ("http", "persist", "notify", "push1", "push2"):
        assert stack.daemon_pid(name) is not None, name
    # every daemon holds connections to the masters, named after itself
    names = {c.get("name") for p in masters() for c in
             (dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
              for line in cli(p, "CLIENT", "LIST").splitlines())}
    assert {"magpie-http", "magpie-persist", "magpie-notify"} <= names, names


def test_sms_login_limits_and_logout_refused_at_once(settled_cluster):
    stack = settled_cluster
    web = Client(stack.http_url)
    mobile = new_mobile()
    uid, token = login(web, stack, mobile)
    assert web.get("/me", token=token).result["userId"] == uid
    # the resend limit (the mobile's keys share one slot: keys.h) and the wrong-code count
    r = web.post("/send_code", {"mobile": mobile})
    assert r.status == 429 and r.code == 3, r
    other = new_mobile()
    assert web.post("/send_code", {"mobile": other}).code == 0
    right = sms_lines(stack, other)[-1]
    wrong = "%06d" % ((int(right) + 1) % 1_000_000)
    for _ in range(4):
        assert web.post("/login", {"mobile": other, "code": wrong}).code == 6
    r = web.post("/login", {"mobile": other, "code": wrong})
    assert r.status == 429 and r.code == 4, r  # burnt at the fifth wrong try
    r = web.post("/login", {"mobile": other, "code": right})
    assert r.status == 429 and r.code == 4, r
    # a token from /tk and a logout: refused at once, from the copy (the subscription delivered it)
    t2 = test_token(web, unique_uid())
    assert web.get("/me", token=t2).status != 401
    wait_until("the revoked-token copy", lambda: copy_ready(stack), 15)
    before = copy_checks(stack)
    assert web.post("/logout", token=t2).code == 0
    assert revoked(web.get("/me", token=t2))
    wait_until("a refusal from the copy", lambda: revoked(web.get("/me", token=t2)) and
               copy_checks(stack) > before, 2, 0.02)
    assert web.post("/logout", token=token).code == 0
    assert revoked(web.get("/me", token=token))


def test_qr_long_polls_answered(settled_cluster):
    """Thirty browsers wait (their sessions' keys in many slots: the hub's version check is one pipeline
    grouped per master); one scan wakes exactly its own poll."""
    stack = settled_cluster
    web = Client(stack.http_url)
    tokens = [web.post("/pc_session").result["token"] for _ in range(30)]
    slots = {slot_of(f"mp:qr:{t}") for t in tokens}
    assert len({owner(s)["port"] for s in slots}) == 3, "the sessions should span the three masters"
    cookie = web.s.cookies.get("mp_pc")
    host, port = "127.0.0.1", stack.http_port
    socks = []
    for t in tokens:
        s = socket.create_connection((host, port), timeout=10, source_address=(web.ip, 0))
        s.sendall((f"POST /session_login/{t} HTTP/1.1\r\nHost: {host}\r\nCookie: mp_pc={cookie}\r\n"
                   f"Content-Length: 0\r\n\r\n").encode())
        socks.append(s)
    try:
        time.sleep(1)
        phone = Client(stack.http_url)
        _, pt = login(phone, stack)
        for i in (3, 17, 29):
            t0 = time.time()
            assert phone.post(f"/scan_pc/{tokens[i]}", token=pt).code == 0
            socks[i].settimeout(10)
            data = socks[i].recv(65536)
            assert b'"code":9' in data.replace(b" ", b""), data
            assert time.time() - t0 < 3
        import select
        readable, _, _ = select.select([s for i, s in enumerate(socks) if i not in (3, 17, 29)], [], [], 0.3)
        assert readable == [], "a scan woke polls of other sessions"
    finally:
        for s in socks:
            s.close()


def test_persist_stores_what_is_written_to_the_stream(settled_cluster):
    stack = settled_cluster
    rc = cluster_client()
    b = Batch()
    entries = [b.entry() for _ in range(50)]
    for e in entries:
        rc.xadd(KEY_MQ, e)
    db = stack.mysql()
    wait_until("magpie-persist to store the 50 messages", lambda: b.count(db) == 50, 20, 0.2)
    rows = b.rows(db)
    for e in entries:
        assert row_matches(rows[int(e["mid"])], e)
    rc.close()


def test_persist_dead_letters_a_malformed_entry_on_the_cluster(settled_cluster):
    """The dead letter and its XACK are one script over the shard's two streams (one slot; a cluster has no
    MULTI): the bad entry is in the dead-letter stream with its reason, acked, and the good one stored."""
    stack = settled_cluster
    rc = cluster_client()
    b = Batch()
    good = b.entry()
    bad = b.entry()
    bad["v"] = b"9"  # a format version magpie-persist does not know
    rc.xadd(KEY_MQ, good)
    bad_id = rc.xadd(KEY_MQ, bad).decode()
    db = stack.mysql()
    wait_until("the good row", lambda: b.count(db) == 1, 20, 0.2)

    def dead():
        return [f for _, f in rc.xrange(KEY_DEAD, "-", "+") if f.get(b"orig_id") == bad_id.encode()]

    wait_until("the dead letter", lambda: dead(), 20, 0.2)
    (f,) = dead()
    assert f[b"mid"] == bad["mid"] and f[b"reason"], f
    assert rc.xpending_range(KEY_MQ, GROUP, min=bad_id, max=bad_id, count=1) == []  # acked
    assert b.count(db) == 1
    rc.close()


def test_persist_restores_the_seq_counters_through_the_cluster(settled_cluster):
    """A Redis that lost its counters (the marker gone): magpie-persist restores every user's KEY_SEQ from
    MySQL at its start, through a pipeline (rds_appendargv, grouped per master on a cluster)."""
    stack = settled_cluster
    rc = cluster_client()
    b = Batch()
    entries = []
    for i in range(20):
        e = b.entry()
        e["fseq"] = str(10 + i).encode()
        e["tseq"] = str(100 + i).encode()
        entries.append(e)
        rc.xadd(KEY_MQ, e)
    db = stack.mysql()
    wait_until("the 20 messages stored", lambda: b.count(db) == 20, 20, 0.2)
    want = {}
    for e in entries:
        for uid, seq in ((int(e["from"]), int(e["fseq"])), (int(e["to"]), int(e["tseq"]))):
            want[uid] = max(want.get(uid, 0), seq)
    stack.kill_daemon("persist")
    try:
        rc.delete("mp:{0}:seq:restored")
        for uid in want:
            rc.delete(f"mp:{{0}}:seq:{uid}")
    finally:
        stack.start_daemon("persist")
    wait_until("the counters restored", lambda: rc.exists("mp:{0}:seq:restored") == 1, 30, 0.2)
    got = {uid: int(rc.get(f"mp:{{0}}:seq:{uid}") or -1) for uid in want}
    assert got == want
    rc.close()


def test_revocation_after_the_subscribed_node_is_killed(settled_cluster):
    stack = settled_cluster
    web = Client(stack.http_url)
    wait_until("the revoked-token copy", lambda: copy_ready(stack), 15)
    subs = [(p, c) for p in masters() for c in clients_of(p, "magpie-http") if c.get("sub") == "1"]
    assert len(subs) == 1, subs  # magpie-http's one SUBSCRIBE (http/revoked.c), on one master
    victim = subs[0][0]
    before_kill = test_token(web, unique_uid())
    assert web.post("/logout", token=before_kill).code == 0
    t_kill = kill_node(victim)
    try:
        # revoked before the kill: refused all along (from the copy, or from Redis), never served
        while time.time() - t_kill < 3:
            r = web.get("/me", token=before_kill)
            assert revoked(r) or unavailable(r), r
            time.sleep(0.1)
        # the subscription is made again on another master, by itself
        wait_until("magpie-http subscribed again on a live master",
                   lambda: any(c.get("sub") == "1" for p in PORTS if p != victim and alive(p)
                               for c in clients_of(p, "magpie-http")), RESUME_LIMIT_S)
        wait_until("the copy ready again", lambda: copy_ready(stack), RESUME_LIMIT_S)
        token = test_token(web, unique_uid())
        assert web.get("/me", token=token).status != 401
        before = copy_checks(stack)
        r = logout(web, token)
        assert r.code == 0, r
        wait_until("the new logout refused from the copy", lambda: revoked(web.get("/me", token=token)) and
                   copy_checks(stack) > before, 2, 0.02)
        assert revoked(web.get("/me", token=before_kill))
    finally:
        restart_node(victim)


def test_notify_posts_what_the_stream_holds(settled_cluster):
    """magpie-notify reads its stream through the cluster and posts the event (the entry written as POST
    /msg's script writes it for an offline user: shared/notify_event.h)."""
    from notify_client import NotifyDaemon, Receiver
    stack = settled_cluster
    stack.kill_daemon("notify")  # it posts to a port where nothing listens; this test's own posts here
    receiver = Receiver()
    d = NotifyDaemon(stack, receiver.url, name="notify-cluster")
    rc = cluster_client()
    try:
        to = unique_uid()
        rc.xadd("mp:{0}:notify", {"v": "1", "type": "system", "kind": "s", "to": str(to), "from": "0",
                                  "conv": "u0", "mid": "%016x" % random.getrandbits(64),
                                  "ts": str(int(time.time() * 1000)), "preview": "hello from the cluster"})
        wait_until("the event posted", lambda: len(receiver.events(to)) == 1, 10)
        ev = receiver.events(to)[0]
        assert ev["type"] == "system" and ev["preview"] == "hello from the cluster", ev
        time.sleep(0.5)
        assert len(receiver.events(to)) == 1  # once
    finally:
        rc.close()
        d.stop()
        receiver.close()
        stack.start_daemon("notify")


def jti_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def test_wait_covers_every_master_a_durable_answer_wrote(settled_cluster):
    """With redis.min_replicas_acked = 1, /logout (the token's key and the index, two slots) is confirmed only
    when the replicas of both masters hold the writes: the index's master having its replica is not enough."""
    stack = settled_cluster
    h = ExtraHttp(stack, "http-cluster-wait", env={"MAGPIE_REDIS_MIN_REPLICAS_ACKED": "1"}).start()
    try:
        web = Client(h.url)
        index_master = owner(slot_of("mp:revocations"))["port"]
        token = None
        for _ in range(100):  # a token whose key is on another master than the index
            t = test_token(web, unique_uid())
            if owner(slot_of(f"mp:revoked:{jti_of(t)}"))["port"] != index_master:
                token = t
                break
        assert token is not None
        assert web.post("/logout", token=test_token(web, unique_uid())).code == 0  # both replicas there
        view = nodes()
        key_master = owner(slot_of(f"mp:revoked:{jti_of(token)}"), view)
        replica = next(n for n in view.values() if n["of"] == key_master["id"])
        pid = int(open(os.path.join(node_dir(replica["port"]), "redis.pid")).read())
        os.kill(pid, signal.SIGSTOP)  # the key's replica stops acknowledging; the index's has its own
        try:
            r = web.post("/logout", token=token)
            assert unavailable(r), r
        finally:
            os.kill(pid, signal.SIGCONT)
        r = logout(web, token)  # the client retries; the replica is back
        assert r.code == 0, r
        assert revoked(web.get("/me", token=token))
    finally:
        h.stop()
    wait_until("the replica back in sync", settled, 30, 0.3)


def test_stream_slot_moved_under_traffic_nothing_lost(settled_cluster):
    """The slot of the stream ({0}: the stream, its consumer group, every per-user key) migrates to another
    master as `redis-cli --cluster reshard` moves it (IMPORTING/MIGRATING, MIGRATE of every key, SETSLOT
    NODE) while messages are written: magpie-persist follows (ASK, then MOVED) and stores every one once."""
    stack = settled_cluster
    slot = slot_of(KEY_MQ)
    src = owner(slot)
    dst = next(nodes()[p] for p in masters() if p != src["port"])
    rc = cluster_client()
    b = Batch()
    written, attempted, stop = [], [], threading.Event()

    def stream_loop():
        while not stop.is_set():
            e = b.entry()
            attempted.append(e)
            try:
                rc.xadd(KEY_MQ, e)
                written.append(e)
            except Exception:
                time.sleep(0.1)
            time.sleep(0.005)

    logs = {n: os.path.join(RUN, "logs", f"{n}.log") for n in ("persist", "notify", "http")}
    offsets = {n: os.path.getsize(p) for n, p in logs.items()}
    w = pool.submit(stream_loop)
    done = False
    try:
        time.sleep(1)
        cli(dst["port"], "CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"])
        cli(src["port"], "CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"])
        while True:
            keys = cli(src["port"], "CLUSTER", "GETKEYSINSLOT", slot, 5).split()
            if not keys:
                break
            out = cli(src["port"], "MIGRATE", "127.0.0.1", dst["port"], "", 0, 10000, "KEYS", *keys)
            assert out in ("OK", "NOKEY"), out
            time.sleep(0.1)  # traffic meanwhile, the slot on both sides: ASK
        for n in [dst, src] + [nodes()[p] for p in masters() if p not in (src["port"], dst["port"])]:
            cli(n["port"], "CLUSTER", "SETSLOT", slot, "NODE", dst["id"])
        done = True
        time.sleep(2)
    finally:
        if not done:
            for n in (src, dst):
                cli(n["port"], "CLUSTER", "SETSLOT", slot, "STABLE", check=False)
        stop.set()
        w.result(timeout=30)
        rc.close()
    assert owner(slot)["port"] == dst["port"]
    db = stack.mysql()
    assert len(written) > 50, len(written)
    wait_until("magpie-persist to store every message", lambda: b.count(db) >= len(written), 60, 0.5)
    time.sleep(1)
    rows = b.rows(db)
    for e in written:
        assert row_matches(rows[int(e["mid"])], e)
    assert set(rows) <= {int(e["mid"]) for e in attempted}
    # a move is routine: no daemon logged an error (e.g. a read blocked on a stream that moved away)
    for n, path in logs.items():
        with open(path, errors="replace") as f:
            f.seek(offsets[n])
            errors = [line for line in f if " ERROR " in line]
        assert errors == [], (n, errors[:3])
    # and magpie-persist reads on: one more message after the move
    rc = cluster_client()
    e = b.entry()
    rc.xadd(KEY_MQ, e)
    rc.close()
    wait_until("the message after the move stored", lambda: int(e["mid"]) in b.rows(db), 20, 0.2)


def _sms_on(port, n):
    """n fresh mobiles whose SMS keys are on the master at port."""
    view, out = nodes(), []
    while len(out) < n:
        m = new_mobile()
        if owner(slot_of(f"mp:sms:code:{{{m}}}"), view)["port"] == port:
            out.append(m)
    return out


def test_master_killed_http_unavailable_then_back_persist_loses_nothing(settled_cluster):
    """kill -9 of the master of the stream's slot ({0}): the SMS API answers 503 "unavailable" for the
    mobiles on it meanwhile (never another error) and answers again by itself within 10 s; magpie-persist
    stores every message the stream held (replicated before the kill) and every one written after, once."""
    stack = settled_cluster
    victim = owner(slot_of(KEY_MQ))
    mobiles = _sms_on(victim["port"], 400)
    b = Batch()
    # Entries held by the victim and its replica (WAIT) before the kill; magpie-persist still has most of
    # them to store when the master dies.
    before = [b.entry() for _ in range(3000)]
    cmds = "".join("XADD %s * %s\n" % (KEY_MQ, " ".join(f'{k} "{v.decode()}"' for k, v in e.items()))
                   for e in before)
    out = cli(victim["port"], stdin=cmds + "WAIT 1 5000\n").split("\n")
    assert out[-1].strip() == "1", out[-3:]
    answers = []
    stop = threading.Event()

    def http_loop():
        client = Client(stack.http_url)
        for m in mobiles:
            if stop.is_set():
                return
            r = client.post("/send_code", {"mobile": m}, timeout=30)
            answers.append((time.time(), r))
            time.sleep(0.05)

    after, attempted = [], []
    rcs = [cluster_client()]

    def stream_loop():
        # Written from the kill on: an XADD acked by the old master just before it died, not replicated yet,
        # would be Redis' own loss (magpie-push WAITs for that: redis.min_replicas_acked), not persist's.
        while not stop.is_set():
            e = b.entry()
            attempted.append(e)
            try:
                rcs[0].xadd(KEY_MQ, e)
                after.append(e)
            except Exception:  # the cluster failing over: the writer retries later, as magpie-push does
                time.sleep(0.2)
                try:  # with a fresh client: redis-py's may keep the dead master in its map
                    rcs[0].close()
                    rcs[0] = cluster_client()
                except Exception:
                    pass
            time.sleep(0.02)

    h = pool.submit(http_loop)
    time.sleep(0.5)
    t_kill = kill_node(victim["port"])
    w = pool.submit(stream_loop)
    try:
        wait_until("the replica promoted", lambda: owner_port(slot_of(KEY_MQ)) not in (None, victim["port"]), 30,
                   0.2)
        time.sleep(4)
        wait_until("the test's own writer through the failover", lambda: len(after) > 20, 30, 0.2)
        stop.set()
        h.result(timeout=60)
        w.result(timeout=60)
        during = [(t - t_kill, r) for t, r in answers if t >= t_kill]
        bad = [(round(t, 2), r) for t, r in during if not (r.code == 0 or unavailable(r))]
        assert bad == [], bad[:3]
        fails = [t for t, r in during if unavailable(r)]
        last_fail = max(fails) if fails else None
        print(f"\ncluster failover (http): {len(fails)} answers 503 'unavailable' after kill -9 of a master, "
              f"the last {last_fail if last_fail is None else round(last_fail, 1)} s after it; "
              f"{len(during)} requests meanwhile")
        assert fails, "no request met the dead master"
        assert last_fail <= RESUME_LIMIT_S, last_fail
        assert during[-1][1].code == 0
        db = stack.mysql()
        total = len(before) + len(after)
        wait_until("magpie-persist to store every message", lambda: b.count(db) >= total, 60, 0.5)
        time.sleep(1)
        rows = b.rows(db)
        # nothing lost; nothing twice (one row per message id); an extra row only of an XADD whose answer
        # the writer did not get (applied, then the connection failed)
        for e in before + after:
            assert row_matches(rows[int(e["mid"])], e)
        assert set(rows) <= {int(e["mid"]) for e in before + attempted}
        assert b.count(db) == len(rows)
        # magpie-notify follows too: healthy again
        port = int(ENV["NOTIFY_METRICS_PORT"])
        wait_until("magpie-notify healthy", lambda: Client(f"http://127.0.0.1:{port}").s.get(
            f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200, 30, 0.5)
    finally:
        stop.set()
        rcs[0].close()
        restart_node(victim["port"])
