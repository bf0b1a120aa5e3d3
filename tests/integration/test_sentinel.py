"""Redis Sentinel (SPEC §7; the design is shared/sentinel.h): the Redis master is killed with kill -9 while
users chat at a steady rate, and everything a client can see is checked.

The stack is `scripts/dev up --redis sentinel`: a master, one replica, three sentinels (down after 1 s,
quorum 2), magpie.conf with redis.sentinels and redis.min_replicas_acked = 1. `scripts/dev test` runs this
file on such a stack of its own (the step "sentinel failover"); on a single-Redis stack it is skipped.

The failover (the module fixture, run once; the run and its cases are tests/integration/failover.py's, shared
with test_cluster_failover.py): PAIRS pairs of devices (push_client.Device: the client the
README describes, which sends each message until it gets A with the same id, and syncs with Y) chat at RATE
messages/s in all; after WARMUP_S the master gets SIGKILL. A supervisor (what systemd's Restart= does)
starts the killed Redis again once the sentinels have promoted the replica, as a replica of the new master:
with one replica and min_replicas_acked = 1, acks need it back (README, "Redis Sentinel"). Traffic goes on
for AFTER_S; then every device syncs and the tests below look at what the clients saw, at MySQL and at the
timelines. The failover gap (the longest time without any A) is printed and written to
$MAGPIE_RUN/sentinel-failover.json (bench/results/2026-11-25-sentinel.md records it; bench/failover measures
it at 2,000 msg/s with magpie-bench). Later tests freeze the replica (nothing is confirmed, nor shown to other
devices, without it), order a failover from a sentinel (every daemon follows the +switch-master
announcement), and kill the master once more.
"""
import concurrent.futures
import os
import signal
import subprocess
import time
import uuid

import pytest
import redis

from failover import (  # noqa: F401 (the shared cases: pytest collects them here)
    UNAVAILABLE, Sender, run_failover, test_a_qr_long_poll_is_woken_after_the_failover,
    test_chat_resumes_by_itself_within_10_s_of_a_kill_9_of_the_master,
    test_clients_see_temporarily_unavailable_meanwhile_and_every_retry_is_acked,
    test_every_acked_message_is_stored_exactly_once, test_group_chat_works_after_the_failover_on_both_nodes,
    test_presence_works_after_the_failover, test_timelines_stay_gap_free_and_hold_each_acked_message_once,
    test_token_issue_and_revocation_work_after_the_failover)
from group_client import api, create_group, make_users, timeline
from http_client import Client, login, new_mobile, sms_lines
from magpie_stack import RUN, metrics, read_env_file
from push_client import Chat, make_friends, new_uid, run, wait_until
import rkeys


def _sentinel_stack():
    try:
        return read_env_file(os.path.join(RUN, "dev.env")).get("REDIS_MODE") == "sentinel"
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _sentinel_stack(),
                                reason="needs a stack from 'scripts/dev up --redis sentinel' "
                                       "(scripts/dev test runs this file on one)")


# ---- the Redis instances of the stack ----

def _instance_dir(stack, port):
    """The run folder of the Redis instance on port (scripts/lib/stack.sh)."""
    if port == stack.redis_port:
        return os.path.join(stack.run, "redis")
    if str(port) == stack.env.get("REDIS_REPLICA2_PORT"):  # MAGPIE_REDIS_REPLICAS=2
        return os.path.join(stack.run, "redis-replica2")
    return os.path.join(stack.run, "redis-replica")


def _pid(path):
    with open(path) as f:
        return int(f.read().strip())


def _kill_master(stack):
    port = stack.redis_master_port()
    d = _instance_dir(stack, port)
    os.kill(_pid(os.path.join(d, "redis.pid")), signal.SIGKILL)
    return port, d


def _restart_as_replica(d, master_port):
    """The supervisor: start the killed instance again, as a replica of the current master (the sentinels
    would convert it too, but only seconds after it comes back)."""
    subprocess.run(["redis-server", os.path.join(d, "redis.conf"), "--replicaof", "127.0.0.1",
                    str(master_port)], check=True)


def _replica_of(stack, master):
    return stack.redis_port if master != stack.redis_port else stack.redis_replica_port


def _replica_in_sync(stack, master_port):
    info = stack.redis().info("replication")
    return stack.redis_master_port() == master_port and info.get("connected_slaves", 0) >= 1 and \
        info.get("slave0", {}).get("state") == "online"


class SentinelMode:
    """failover.py's Mode for Sentinel: the master the sentinels name, and the other instance."""
    name = "sentinel"
    label = "sentinel failover"

    def __init__(self, stack):
        self.stack = stack

    def kill_master(self):
        return _kill_master(self.stack)

    def new_master(self, handle):
        p = self.stack.redis_master_port()
        return p if p != handle[0] else None

    def restart(self, handle, new_port):
        _restart_as_replica(handle[1], new_port)

    def in_sync(self, new_port):
        return _replica_in_sync(self.stack, new_port)

    def replica_client(self, key):
        return redis.Redis(port=_replica_of(self.stack, self.stack.redis_master_port()), decode_responses=True)


@pytest.fixture(scope="module")
def failover(stack):
    return run_failover(stack, SentinelMode(stack))


def test_every_daemon_found_the_new_master_through_the_sentinels(failover, stack):
    port = failover["new_master_port"]
    for name in ("push1", "push2", "http", "persist"):
        with open(os.path.join(stack.run, "logs", f"{name}.log")) as f:
            log = f.read()
        # magpie-push logs it per link ("... link=command master=..."), the others per connection
        assert "redis master found through the sentinels" in log, name
        assert f"master={stack.conf['redis.master_name']} host=127.0.0.1 port={port}" in log, name


# ---- WAIT: no acknowledgement without a replica ----

def test_nothing_is_acked_while_no_replica_takes_it_and_the_retry_is_stored_once(failover, stack):
    """min_replicas_acked = 1 with the only replica frozen (SIGSTOP): t gets E "temporarily unavailable"
    (never A), /logout and /admin/friends 503 (code 20), though the master took all three. Once the replica
    is back their retries succeed, and the retry of the same id is acked with the mid and seq the first
    attempt took, and stored once."""
    master = stack.redis_master_port()
    replica = stack.redis_port if master != stack.redis_port else stack.redis_replica_port
    replica_pid = _pid(os.path.join(_instance_dir(stack, replica), "redis.pid"))
    client = Client(stack.nginx_url)
    _, token = login(client, stack)

    sender = new_uid()
    fx, fy = make_users(stack, 2)

    async def go():
        a = await Chat.connect(stack, sender)
        b = await Chat.connect(stack)
        make_friends(stack, a.uid, b.uid)
        os.kill(replica_pid, signal.SIGSTOP)
        try:
            first = await a.text(b.uid, "while frozen", id="frozen-1")
            assert first == {"id": "frozen-1", "from": 0, "type": "E", "msg": UNAVAILABLE}
            r = client.post("/logout", token=token)
            assert r.status == 503, r
            r = client.post("/admin/friends", {"a": fx, "b": fy}, key=stack.api_key)
            assert r.status == 503 and r.code == 20, r
            assert (await b.collect(0.5)) == [], "nothing is delivered before it is acked"
        finally:
            os.kill(replica_pid, signal.SIGCONT)
        await wait_until(lambda: _replica_in_sync(stack, master), 20, "the replica to catch up")
        again = await a.text(b.uid, "while frozen", id="frozen-1")
        assert again["type"] == "A", again
        y = await a.request("Y", {"after": 0})
        assert [(p["id"], p["mid"], p["seq"]) for p in y["msg"]["messages"]] == \
            [("frozen-1", again["mid"], again["seq"])], "the first attempt's mid and seq, once"
        # the client's retry of /logout is confirmed now, and the token is refused; the app server's retry
        # of /admin/friends is acked, and the two can chat
        assert client.post("/logout", token=token).code == 0
        assert client.post("/IM/token", token=token).status == 401
        assert client.post("/admin/friends", {"a": fx, "b": fy}, key=stack.api_key).code == 0
        cx = await Chat.connect(stack, fx)
        assert (await cx.text(fy, "now friends"))["type"] == "A"
    run(go())
    with stack.mysql() as db, db.cursor() as cur:
        for _ in range(100):
            cur.execute("SELECT COUNT(*) FROM messages WHERE from_uid = %s", (sender,))
            n = cur.fetchone()[0]
            if n:
                break
            time.sleep(0.1)
    assert n == 1


def test_read_marks_positions_orders_group_changes_and_qr_steps_wait_for_a_replica_too(failover, stack):
    """min_replicas_acked = 1 with the only replica frozen: R, S and T get E "temporarily unavailable"
    (never A or T), a group rename, POST /pc_session and /send_code 503 (code 20; no SMS goes out), and no
    device is shown the read
    mark (r) or the group event (s) meanwhile: those deliveries wait for the WAIT too. With the replica
    back each retry succeeds, and the replica holds what was confirmed; the rename's event, never pushed,
    is in the member's timeline, which has no gap."""
    master = stack.redis_master_port()
    replica = _replica_of(stack, master)
    replica_pid = _pid(os.path.join(_instance_dir(stack, replica), "redis.pid"))
    owner, member = make_users(stack, 2)
    gid = create_group(stack, owner, [member], name="before freezing")
    customer = new_uid()
    order = "ord-" + uuid.uuid4().hex[:12]
    stack.redis().hset(f"mp:order:{order}", "customer", customer)
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("INSERT INTO orders (id, customer) VALUES (%s, %s)", (order, customer))
    web = Client(stack.nginx_url)
    site = {"longitude": 116.397128, "latitude": 39.916527}
    mobile = new_mobile()
    unavailable = {"from": 0, "type": "E", "msg": UNAVAILABLE}

    async def go():
        reader = await Chat.connect(stack)
        reader_phone = await Chat.connect(stack, reader.uid)
        writer = await Chat.connect(stack)
        make_friends(stack, reader.uid, writer.uid)
        sent = await writer.text(reader.uid, "read me")
        assert sent["type"] == "A", sent
        await reader.messages(1)
        await reader_phone.messages(1)
        courier = await Chat.connect(stack)
        m = await Chat.connect(stack, member)
        await m.collect(0.3)
        mark = {"with": writer.uid, "mid": sent["mid"]}
        os.kill(replica_pid, signal.SIGSTOP)
        try:
            assert await reader.request("R", mark, id="r-frozen") == dict(unavailable, id="r-frozen")
            assert await courier.request("S", site, id="s-frozen") == dict(unavailable, id="s-frozen")
            assert await courier.request("T", order, id="t-frozen") == dict(unavailable, id="t-frozen")
            r = api(stack, owner, "POST", f"/groups/{gid}", {"name": "while frozen"})
            assert r.status == 503 and r.code == 20, r
            r = web.post("/pc_session", {"device_name": "while frozen"})
            assert r.status == 503 and r.code == 20, r
            r = web.post("/send_code", {"mobile": mobile})
            assert r.status == 503 and r.code == 20, r
            assert sms_lines(stack, mobile) == [], "no code is sent that a failover could take back"
            shown = await reader_phone.collect(0.5) + await writer.collect(0) + await m.collect(0)
            assert [p for p in shown if p.get("type") in ("r", "s")] == [], shown
        finally:
            os.kill(replica_pid, signal.SIGCONT)
        await wait_until(lambda: _replica_in_sync(stack, master), 20, "the replica to catch up")
        # the retries (the master kept each write: the scripts find them, and WAIT covers them now)
        assert (await reader.request("R", mark, id="r-frozen"))["type"] == "A"
        assert (await courier.request("S", site, id="s-frozen"))["type"] == "A"
        taken = await courier.request("T", order, id="t-frozen")
        assert taken["type"] == "T" and taken["msg"] == {"order": order, "customer": customer}, taken
        r = api(stack, owner, "POST", f"/groups/{gid}", {"name": "while frozen"})
        assert r.status == 200 and r.code == 0 and r.result["name"] == "while frozen", r
        entries = await timeline(m)
        assert [p["seq"] for p in entries] == list(range(1, len(entries) + 1))
        assert [p["msg"]["event"] for p in entries if p["type"] == "s"] == ["group_created", "group_renamed"]
        login(web, stack, mobile)  # the refused /send_code was undone: asking again works at once
        return reader.uid, writer.uid, courier.uid
    reader, writer, courier = run(go())
    held = redis.Redis(port=replica, decode_responses=True)
    assert held.hget(rkeys.tagged(held, "conv", reader), f"u{writer}:r") is not None, "the read mark is on the replica"
    assert held.hget("mp:{geo}:time", str(courier)) is not None, "the position is on the replica"
    assert held.hget(f"mp:order:{order}", "courier") == str(courier)
    web.close()


def test_every_daemon_follows_the_switch_the_sentinels_announce(failover, stack):
    """A failover ordered from a sentinel (SENTINEL FAILOVER: nothing dies): every daemon logs the switch
    it heard on +switch-master and counts it, and within moments each one's standing connections --
    magpie-push's two links per node (named by CLIENT SETNAME), magpie-persist's reader, magpie-http's
    long-poll and revocation subscriptions -- are on the new master without any client having asked."""
    old = stack.redis_master_port()
    new = _replica_of(stack, old)
    run(wait_until(lambda: _replica_in_sync(stack, old), 20, "the replica to be in sync before the failover"))
    before = [metrics(p).get("magpie_redis_master_switches_total", 0) for p in stack.push_metrics_ports]
    sentinel = redis.Redis(port=stack.sentinel_ports[0], decode_responses=True)

    def ordered():
        # The sentinel judges the replica by the INFO it last read (every 10 s, every 1 s around a failover):
        # right after the earlier tests' failover it may still hold a stale view and answer NOGOODSLAVE
        # (or INPROG), while the replica itself says it is in sync. Ask again until it takes the order.
        try:
            return sentinel.execute_command("SENTINEL", "FAILOVER", stack.conf["redis.master_name"]) in (True, "OK")
        except redis.exceptions.ResponseError as e:
            if "NOGOODSLAVE" in str(e) or "INPROG" in str(e):
                return False
            raise
    run(wait_until(ordered, 30, "a sentinel to take the failover order", interval=0.5))
    run(wait_until(lambda: stack.redis_master_port() == new, 30, "the sentinels to name the replica",
                   interval=0.1))
    t0 = time.time()
    want = {f"magpie-push-{n}-{link}" for n in (1, 2) for link in ("command", "subscriber")} | \
        {"magpie-persist", "magpie-http"}

    def names():
        return {c.get("name") for c in redis.Redis(port=new, decode_responses=True).client_list()}
    run(wait_until(lambda: want <= names(), 10, "every daemon on the new master", interval=0.1))
    print(f"\nevery daemon on the new master {time.time() - t0:.2f} s after the sentinels named it")
    line = f"redis master moved from 127.0.0.1:{old} to 127.0.0.1:{new} (sentinel +switch-master)"
    for name in ("push1", "push2", "http", "persist"):
        with open(os.path.join(stack.run, "logs", f"{name}.log")) as f:
            log = f.read()
        assert log.count(line) == 1, (name, line)
    after = [metrics(p).get("magpie_redis_master_switches_total", 0) for p in stack.push_metrics_ports]
    assert [a - b for a, b in zip(after, before)] == [1, 1], (before, after)
    assert metrics(stack.persist_metrics_port).get("magpie_redis_master_switches_total", 0) >= 1
    # and chat goes on, acked (the old master is the new replica once it synced)
    run(wait_until(lambda: _replica_in_sync(stack, new), 30, "the old master to sync as a replica", 0.2))

    async def chat():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        sender = Sender(stack, a, b)
        await sender.send_one("after-switch", "after the announced switch")
        assert sender.dev.acks["after-switch"]
    run(chat())


# ---- a second failover, back to the first master ----

def test_a_qr_long_poll_parked_across_a_second_failover_is_woken_by_the_scan_after_it(failover, stack):
    """magpie-http's long-poll subscription follows a failover too: a browser waiting before the master dies
    is answered when the phone scans after the failover, and chat resumes again."""
    web, phone = Client(stack.nginx_url), Client(stack.nginx_url)
    _, phone_token = login(phone, stack)
    token = web.post("/pc_session", {"device_name": "across a failover"}).result["token"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(web.post, f"/session_login/{token}", timeout=60)
        time.sleep(0.5)
        assert not poll.done()
        old_port, old_dir = _kill_master(stack)

        async def failover_again():
            new_port = await wait_until(lambda: (p := stack.redis_master_port()) != old_port and p, 30,
                                        "the sentinels to name a new master", interval=0.1)
            _restart_as_replica(old_dir, new_port)
            await wait_until(lambda: _replica_in_sync(stack, new_port), 30, "the replica to sync", 0.2)
        run(failover_again())
        assert not poll.done(), poll.result()
        deadline = time.time() + 10
        while (s := phone.post(f"/scan_pc/{token}", token=phone_token)).code != 0 and time.time() < deadline:
            time.sleep(0.2)  # a 503 while magpie-http reconnects: the phone retries
        assert s.code == 0, s
        t0 = time.time()
        p = poll.result(timeout=10)
    assert time.time() - t0 < 3, "the scan did not wake the long poll"
    assert p.status == 200 and p.code == 9, p

    async def chat():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        sender = Sender(stack, a, b)
        await sender.send_one("after-second", "after the second failover")
        assert sender.dev.acks["after-second"]
    run(chat())


# ---- scripts/dev (last: it stops this stack) ----

def test_zz_dev_status_names_the_master_and_down_stops_every_redis_and_sentinel(failover, stack):
    dev = os.path.join(stack.repo, "scripts", "dev")
    env = dict(os.environ, MAGPIE_RUN=stack.run)
    status = subprocess.run([dev, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    master = [p for p in (stack.redis_port, stack.redis_replica_port)
              if redis.Redis(port=p, decode_responses=True).execute_command("ROLE")[0] == "master"]
    assert len(master) == 1
    assert f"master now: 127.0.0.1:{master[0]}" in status.stdout, status.stdout
    for name in ("replica", "sentinel-1", "sentinel-2", "sentinel-3"):
        assert any(line.split()[:2] == [name, "running"] for line in status.stdout.splitlines()), name
    pidfiles = [os.path.join(stack.run, d, f) for d, f in
                [("redis", "redis.pid"), ("redis-replica", "redis.pid"), ("sentinel-1", "sentinel.pid"),
                 ("sentinel-2", "sentinel.pid"), ("sentinel-3", "sentinel.pid")]]
    pids = [_pid(p) for p in pidfiles]
    down = subprocess.run([dev, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []
    for port in [stack.redis_port, stack.redis_replica_port] + stack.sentinel_ports:
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(port=port, socket_timeout=2).ping()
