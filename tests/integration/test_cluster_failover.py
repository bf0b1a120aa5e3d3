"""Redis Cluster under chat traffic (SPEC §7, issue 20): the failover cases of test_sentinel.py against a
cluster master, and a slot migration under traffic.

The stack is `scripts/dev up --redis cluster`: six Redis 7 nodes (three masters with a replica each,
cluster-node-timeout 1000 ms), the whole stack on them at redis.stream_shards = 1. At S = 1 every chat key
is in slot {0} (shared/keys.h), so "the master" is the one serving that slot. `scripts/dev test` runs this file on such a stack of its own (the step "redis
cluster"); on any other stack it is skipped. The file sets redis.min_replicas_acked = 1 (the fixture
min_replicas_acked restarts the daemons with it).

The failover (failover.py, shared with test_sentinel.py: the run and the cases are written once): the master
of slot {0} gets kill -9 under chat; the cluster promotes its replica (cluster-node-timeout 1 s); the killed
node is started again (a supervisor), rejoins as the new master's replica, and acks resume once it is in
sync. Then the slot migration: `redis-cli --cluster reshard` moves slot {0} -- every chat key at once -- to
another master while chat goes on: clients may see E "temporarily unavailable" (and retry), nothing else;
every acked message is stored once and the timelines have no gap.
"""
import asyncio
import logging
import subprocess
import time

import pytest
import redis

from cluster_cli import (cli, kill_node, needs_cluster, nodes, owned, owner, owner_port, slot_of,
                         start_node, wait_settled)
from failover import (  # noqa: F401 (the shared cases: pytest collects them here)
    RESUME_LIMIT_S, assert_only_retryable_errors, assert_stored_exactly_once, assert_timelines_gap_free,
    chat_under, finish_chat, gap_figures, run_failover, test_a_qr_long_poll_is_woken_after_the_failover,
    test_chat_resumes_by_itself_within_10_s_of_a_kill_9_of_the_master,
    test_clients_see_temporarily_unavailable_meanwhile_and_every_retry_is_acked,
    test_every_acked_message_is_stored_exactly_once, test_group_chat_works_after_the_failover_on_both_nodes,
    test_presence_works_after_the_failover, test_timelines_stay_gap_free_and_hold_each_acked_message_once,
    test_token_issue_and_revocation_work_after_the_failover)
from push_client import run

pytestmark = needs_cluster
CHAT_KEY = "mp:{0}:mq"  # any key of slot {0}: every chat key at redis.stream_shards = 1
logging.getLogger("redis.cluster").setLevel(logging.CRITICAL)


class ClusterMode:
    """failover.py's Mode for the cluster: the master of slot {0}, and its replica."""
    name = "cluster"
    label = "cluster chat failover"

    def __init__(self, stack):
        self.stack = stack

    def kill_master(self):
        port = owner(slot_of(CHAT_KEY))["port"]
        kill_node(port)
        return port

    def new_master(self, killed):
        port = owner_port(slot_of(CHAT_KEY))
        return port if port != killed else None

    def restart(self, killed, new_port):
        """What a supervisor does: start the killed node again; its nodes.conf names it a master of an older
        epoch, so it rejoins as the new master's replica by itself."""
        start_node(killed)

    def in_sync(self, new_port):
        info = cli(new_port, "INFO", "replication", check=False)
        return "state=online" in info  # a replica in sync (the killed node back, or a second replica)

    def replica_client(self, key):
        view = nodes()
        master = owner(slot_of(key), view)
        replica = [n for n in view.values() if n["of"] == master["id"] and not n["failed"]][0]
        r = redis.Redis(port=replica["port"], decode_responses=True, single_connection_client=True)
        r.execute_command("READONLY")  # a replica serves reads of its master's slots only after READONLY
        return r


DAEMONS = ("persist", "notify", "http", "push1", "push2")


def _restart_daemons(stack):
    from magpie_stack import _healthz_ok
    for name in DAEMONS:
        if stack.daemon_pid(name) is not None:
            stack.kill_daemon(name)
            stack.start_daemon(name)
    for port in stack.push_metrics_ports + [stack.http_port]:
        stack._wait(lambda port=port: _healthz_ok(port), f"the daemon on {port} to be ready", 30)


@pytest.fixture(scope="module")
def min_replicas_acked(stack):
    """redis.min_replicas_acked = 1 for this file (every acked message on a replica too: what makes "stored
    exactly once" hold through a master's kill -9); the cluster stack runs without it otherwise (the
    other cluster files kill masters without bringing them back). The daemons are restarted with it, and
    again without it at the end."""
    with open(stack.conf_path) as f:
        original = f.read()
    assert "min_replicas_acked" not in original
    with open(stack.conf_path, "w") as f:
        f.write(original.replace("\n[redis]\n", "\n[redis]\nmin_replicas_acked = 1\n", 1))
    try:
        wait_settled()
        _restart_daemons(stack)
        yield
    finally:
        with open(stack.conf_path, "w") as f:
            f.write(original)
        _restart_daemons(stack)


@pytest.fixture(scope="module")
def failover(stack, min_replicas_acked):
    wait_settled()
    return run_failover(stack, ClusterMode(stack))


# ---- a slot migration under traffic ----

def test_zz_reshard_of_the_chat_slot_under_traffic_loses_nothing(failover, stack):
    """redis-cli --cluster reshard moves slot {0} (every chat key at S = 1, the stream and all users' keys:
    a big MIGRATE) to another master while chat goes on. Clients see no error but E "temporarily
    unavailable" (retried), every acked message is stored once, the timelines have no gap, chat resumes
    within 10 s of the move's end at the latest."""
    wait_settled()
    slot = slot_of(CHAT_KEY)
    view = nodes()
    src = owner(slot, view)
    dst = [n for n in view.values() if n["master"] and not n["failed"] and n["slots"] and n["id"] != src["id"]][0]
    # reshard takes a source's slots from its lowest up: as many as reach slot {0}. That may be all of them
    # (slot {0} the source's highest): Redis 7 would then turn the emptied master into a replica (replica
    # migration), leaving two masters for the tests after this one; it stays a master, rebalanced below.
    count = owned(src).index(slot) + 1
    cli(src["port"], "CONFIG", "SET", "cluster-allow-replica-migration", "no")
    keys = int(cli(src["port"], "CLUSTER", "COUNTKEYSINSLOT", slot))
    out = {}

    async def go():
        loop = asyncio.get_running_loop()
        start = time.time()
        senders, receivers, tasks = await chat_under(stack, start + 60, pairs=3, rate=50)
        await asyncio.sleep(2)
        out["began"] = time.time()
        r = await loop.run_in_executor(None, lambda: subprocess.run(
            ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{src['port']}", "--cluster-from", src["id"],
             "--cluster-to", dst["id"], "--cluster-slots", str(count), "--cluster-yes"],
            capture_output=True, text=True, timeout=300))
        out["took"] = time.time() - out["began"]
        out["reshard"] = r
        await asyncio.sleep(3)  # traffic goes on for 3 s after the move; then each sender's last is acked
        for s in senders:
            s.stop = True
        await asyncio.gather(*tasks[:len(senders)])
        for t in tasks[len(senders):]:
            t.cancel()  # the receivers' listening (Y below gives them everything)
        await asyncio.gather(*tasks[len(senders):], return_exceptions=True)
        out["senders"], out["receivers"] = senders, receivers
        await finish_chat(senders, receivers, [])
    try:
        run(go())
    finally:
        if not owned(nodes()[src["port"]]):
            subprocess.run(["redis-cli", "--cluster", "rebalance", f"127.0.0.1:{src['port']}",
                            "--cluster-use-empty-masters"], capture_output=True, text=True, timeout=300)
        cli(src["port"], "CONFIG", "SET", "cluster-allow-replica-migration", "yes")
    r = out["reshard"]
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert owner(slot)["id"] == dst["id"], "slot {0} moved"
    senders, receivers = out["senders"], out["receivers"]
    figures = gap_figures(senders)
    print(f"\ncluster reshard: {count} slots with slot {slot}'s {keys} keys from :{src['port']} to "
          f":{dst['port']} in {out['took']:.1f} s under chat; acked {figures['acked']}, longest gap without acks "
          f"{figures['gap_s']:.2f} s, E {sum(len(s.errors) for s in senders)}, "
          f"timeouts {sum(s.timeouts for s in senders)}")
    assert_only_retryable_errors(senders, out["began"], out["took"] + RESUME_LIMIT_S)
    assert figures["gap_s"] < RESUME_LIMIT_S, figures
    assert_stored_exactly_once(stack, senders)
    assert_timelines_gap_free(senders, receivers)
    wait_settled()
