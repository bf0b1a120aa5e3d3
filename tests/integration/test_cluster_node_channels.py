"""The nodes' delivery channels on a Redis Cluster (SPEC §7, issue 20; shared/bus.h and keys.h own the design).

A chat delivery for another push node travels on that node's delivery channel of the shard the delivery is
published from, "mp:{<shard>}:node:<id>:in", a SHARDED channel: published with SPUBLISH by a script of that
shard, it goes through the one master serving the shard's slot instead of being copied to every node of the
cluster, as a classic PUBLISH is. Each push node subscribes its channel of every shard, on the master of the
channel's slot, and follows the slot when it moves.

What a client sees is asserted: messages between users on two nodes arrive, also after the slot of the
channels (at redis.stream_shards = 1 the slot {0}, with every chat key) has moved to another master; and
where the subscriptions are, as an operator sees them (PUBSUB SHARDCHANNELS on each master): on the master of
each channel's slot and nowhere else, with no classic delivery channel left. The stack is `scripts/dev up
--redis cluster`; `scripts/dev test` runs this file on one (the step "redis cluster"); on any other stack it
is skipped.
"""
import asyncio
import os
import time

import pytest

from magpie_stack import RUN, read_conf
from push_client import Chat, make_friends, run
from cluster_cli import ENV, cli, masters, migrate_slot, nodes, owner, wait_until

pytestmark = pytest.mark.skipif(ENV.get("REDIS_MODE") != "cluster",
                                reason="needs a stack from 'scripts/dev up --redis cluster' "
                                       "(scripts/dev test runs this file on one)")

NODES = (1, 2)  # the stack's push nodes


def shards():
    return int(read_conf(os.path.join(RUN, "magpie.conf")).get("redis.stream_shards", 1))


def channel(shard, node):
    return f"mp:{{{shard}}}:node:{node}:in"


def slot_of(name):
    return int(cli(masters()[0], "CLUSTER", "KEYSLOT", name))


def shard_channels():
    """{master port: the sharded channels subscribed there}."""
    return {p: set(cli(p, "PUBSUB", "SHARDCHANNELS").split()) for p in masters()}


def where(ch, subs=None):
    subs = subs if subs is not None else shard_channels()
    return sorted(p for p, chans in subs.items() if ch in chans)


def test_each_delivery_channel_is_subscribed_on_its_shards_master_only(stack):
    """Every push node's channel of every shard is a sharded channel subscribed on the master serving its
    slot, on no other master; no node listens on a classic delivery channel (mp:node:<id>:in, or any)."""
    chans = [channel(s, n) for s in range(shards()) for n in NODES]
    wait_until("every delivery channel subscribed on its slot's master",
               lambda: all(where(ch) == [owner(slot_of(ch))["port"]] for ch in chans), 10)
    for p in masters():
        classic = [c for c in cli(p, "PUBSUB", "CHANNELS").split() if ":node:" in c]
        assert classic == [], f"classic delivery channels on :{p}: {classic}"


async def _exchange(a, b, text):
    """a -> b and b -> a; each recipient gets the message pushed (not fetched). E "temporarily unavailable"
    (the cluster's map moving under the send) is retried, as a client does."""
    for sender, recipient in ((a, b), (b, a)):
        deadline, id = time.monotonic() + 10, sender.next_id()
        while True:
            ack = await sender.text(recipient.uid, f"{text} from {sender.uid}", id=id)  # a retry: the same id
            if ack["type"] == "A" or time.monotonic() > deadline:
                break
            assert str(ack.get("msg")).startswith("temporarily unavailable"), ack
            await asyncio.sleep(0.2)
        assert ack["type"] == "A", ack
        got = await recipient.wait_for(lambda p: p["type"] == "t" and p.get("mid") == ack["mid"], timeout=5)
        assert (got["from"], got["to"], got["msg"]) == (sender.uid, recipient.uid, f"{text} from {sender.uid}")


def test_deliveries_between_nodes_arrive_after_the_channels_slot_moves(stack):
    """Users on node 1 and node 2 chat; the slot of shard 0's delivery channels (and keys) moves to another
    master: both nodes' subscriptions follow it there (and leave the old master), and messages between the
    two nodes are pushed to the other side again. The slot is moved back after."""
    ch = [channel(0, n) for n in NODES]
    slot = slot_of(ch[0])
    assert all(slot_of(c) == slot for c in ch)
    view = nodes()
    src = owner(slot, view)
    dst = view[next(p for p in masters() if p != src["port"])]

    async def before():
        a = await Chat.connect_on(stack, 1)
        b = await Chat.connect_on(stack, 2)
        make_friends(stack, a.uid, b.uid)
        await _exchange(a, b, "before the move")
        return a.uid, b.uid

    a_uid, b_uid = run(before())
    t0 = time.time()
    moved = migrate_slot(slot, src, dst)
    try:
        wait_until("both nodes' channels subscribed on the new master, gone from the old one",
                   lambda: all(where(c) == [dst["port"]] for c in ch), 10)
        took = time.time() - t0
        print(f"\nslot {slot} ({moved} keys) moved :{src['port']} -> :{dst['port']}; the delivery channels "
              f"followed in {took:.2f} s")

        async def after():
            a = await Chat.connect_on(stack, 1, uid=a_uid)
            b = await Chat.connect_on(stack, 2, uid=b_uid)
            await _exchange(a, b, "after the move")
        run(after())
    finally:
        migrate_slot(slot, dst, src)  # leave the stack as it was
        wait_until("the channels back on their first master", lambda: all(where(c) == [src["port"]] for c in ch),
                   10)
