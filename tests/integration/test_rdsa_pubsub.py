"""magpie-push's Redis client (push/rdsa.c) doing sharded pub/sub on one Redis (SPEC §7: SSUBSCRIBE /
SPUBLISH, Redis 7, which takes them without cluster mode too).

The client is rdsa as magpie-push runs it, on a libuv loop in tests/probes/rdsa_cluster_probe.c (built by
make) with the stack's magpie.conf (one Redis); messages are published from redis-cli, another connection,
as another node would. On a Sentinel or cluster stack this file is skipped (test_rdsa_cluster.py covers
the cluster).
"""
import subprocess
import time

import pytest

from magpie_stack import RUN
from test_rdsa_cluster import PROBE_NAME, Probe
from cluster_cli import ENV, wait_until

pytestmark = pytest.mark.skipif(ENV.get("REDIS_MODE", "single") != "single",
                                reason="one Redis only (test_rdsa_cluster.py covers the cluster)")

PORT = int(ENV.get("REDIS_PORT", "0"))


def cli(*args):
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(PORT), *[str(a) for a in args]],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def probe_client():
    """CLIENT LIST's fields of the probe's subscriber connection: the one named magpie-push-<probe's node
    id>-subscriber with sharded channels (the stack's push daemons hold sharded channels too: their
    delivery channels, shared/bus.h)."""
    for line in cli("CLIENT", "LIST").splitlines():
        f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
        if f.get("name", "") == PROBE_NAME + "subscriber" and int(f.get("ssub", "0")) > 0:
            return f
    return None


@pytest.fixture
def probe():
    p = Probe(f"{RUN}/magpie.conf")
    wait_until("rdsa ready", lambda: p.state()["ready"] == 1, 20)
    yield p
    p.close()


def test_ssubscribe_next_to_subscribe_on_one_connection(probe):
    """A sharded and a classic channel on the one subscriber connection: SPUBLISH from another connection
    reaches the sharded one, PUBLISH the classic one, and neither reaches the other (they are different
    channels to Redis); SPUBLISH through rdsa's command connection arrives too."""
    assert probe.ask(".ssub sp:{a}:s") == "SUBSCRIBED"
    assert probe.ask(".sub sp:{a}:c") == "SUBSCRIBED"
    f = probe_client()
    assert f is not None and f["ssub"] == "1" and f["sub"] == "1", f  # one connection holds both
    assert cli("SPUBLISH", "sp:{a}:s", "sharded-1") == "1"
    assert cli("PUBLISH", "sp:{a}:c", "classic-1") == "1"
    wait_until("both messages", lambda: probe.msgs("sp:{a}:s")[0] == 1 and probe.msgs("sp:{a}:c")[0] == 1, 5)
    assert probe.msgs("sp:{a}:s")[2] == "sharded-1" and probe.msgs("sp:{a}:c")[2] == "classic-1"
    # the other kind of publish to each name reaches nobody
    assert cli("PUBLISH", "sp:{a}:s", "wrong") == "0"
    assert cli("SPUBLISH", "sp:{a}:c", "wrong") == "0"
    assert probe.cmd("SPUBLISH", "sp:{a}:s", "through-rdsa")[1:] == ("INT", "1")
    wait_until("the message sent through rdsa", lambda: probe.msgs("sp:{a}:s")[0] == 2, 5)
    time.sleep(0.2)
    assert probe.msgs("sp:{a}:s")[:2] == (2, 1) and probe.msgs("sp:{a}:s")[2] == "through-rdsa"
    assert probe.msgs("sp:{a}:c")[:2] == (1, 1)
    # many messages in a burst, interleaved with the classic channel's: every one, in order, to its own
    for i in range(200):
        cli("SPUBLISH", "sp:{a}:s", f"b{i}") if i % 2 else cli("PUBLISH", "sp:{a}:c", f"b{i}")
    wait_until("the burst", lambda: probe.msgs("sp:{a}:s")[0] == 102 and probe.msgs("sp:{a}:c")[0] == 101, 10)
    assert probe.msgs("sp:{a}:s")[2] == "b199" and probe.msgs("sp:{a}:c")[2] == "b198"


def test_ssubscribe_comes_back_after_a_lost_connection(probe):
    """The subscriber connection killed (CLIENT KILL, as a Redis restart or a network cut): it reconnects by
    itself, SSUBSCRIBEs again, calls ready again, and gets what is published afterwards."""
    assert probe.ask(".ssub sp:{b}:s") == "SUBSCRIBED"
    assert probe.ask(".sub sp:{b}:c") == "SUBSCRIBED"
    f = probe_client()
    cli("CLIENT", "KILL", "ID", f["id"])
    wait_until("both subscriptions confirmed again",
               lambda: probe.msgs("sp:{b}:s")[1] == 2 and probe.msgs("sp:{b}:c")[1] == 2, 10)
    g = probe_client()
    assert g is not None and g["id"] != f["id"] and g["ssub"] == "1" and g["sub"] == "1", g
    assert cli("SPUBLISH", "sp:{b}:s", "after") == "1"
    wait_until("the message after the reconnect", lambda: probe.msgs("sp:{b}:s")[0] == 1, 5)
    assert probe.msgs("sp:{b}:s")[2] == "after"


def test_sunsubscribe(probe):
    """rdsa_sunsubscribe: Redis no longer counts the subscriber, and nothing more is delivered; the
    classic channel of the same connection is not touched."""
    assert probe.ask(".ssub sp:{c}:s") == "SUBSCRIBED"
    assert probe.ask(".sub sp:{c}:c") == "SUBSCRIBED"
    assert cli("PUBSUB", "SHARDNUMSUB", "sp:{c}:s").split() == ["sp:{c}:s", "1"]
    assert probe.ask(".unsub sp:{c}:s") == "UNSUBSCRIBED"
    wait_until("Redis dropped the subscription",
               lambda: cli("PUBSUB", "SHARDNUMSUB", "sp:{c}:s").split() == ["sp:{c}:s", "0"], 5)
    assert cli("SPUBLISH", "sp:{c}:s", "late") == "0"
    assert cli("PUBLISH", "sp:{c}:c", "still") == "1"
    wait_until("the classic message", lambda: probe.msgs("sp:{c}:c")[0] == 1, 5)
    assert probe.msgs("sp:{c}:s")[0] == 0
