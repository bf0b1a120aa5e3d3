"""Redis key names as shared/keys.h spells them, for tests that read or write Redis directly.

Users are split into S = redis.stream_shards shards (uid mod S, a group's gid mod S); every per-user and
per-group key carries its shard's hash tag right after "mp:" ("mp:{3}:seq:42"), and the chat and
notification streams are one per shard. S is what the stack's Redis recorded at its first start (mp:shards).
"""


def shards(r):
    """S of the stack whose Redis r is (1 before any daemon started)."""
    return int(r.get("mp:shards") or 1)


def shard(r, ident):
    return int(ident) % shards(r)


def tagged(r, name, ident):
    """A per-user or per-group key: tagged(r, "seq", uid) == "mp:{<shard of uid>}:seq:<uid>"."""
    return f"mp:{{{shard(r, ident)}}}:{name}:{ident}"


def sharded(name, s):
    """A per-shard key: sharded("mq", 0) == "mp:{0}:mq"."""
    return f"mp:{{{s}}}:{name}"


def every(r, name):
    """The per-shard key name of every shard (the streams, KEY_SEQ_RESTORED)."""
    return [sharded(name, s) for s in range(shards(r))]


def msg(r, reader, mid):
    """The copy of message mid that reader reads (KEY_MSG lives in the reader's shard)."""
    return f"mp:{{{shard(r, reader)}}}:msg:{mid}"


def msg_copies(r, mid):
    """Every shard's copy of message mid (those that exist and those that do not)."""
    return [f"mp:{{{s}}}:msg:{mid}" for s in range(shards(r))]


def xrange_all(r, name):
    """The entries of every shard's stream name ("mq", "notify"), shard after shard."""
    out = []
    for key in every(r, name):
        out.extend(r.xrange(key))
    return out


def delete(r, *keys):
    """DEL of keys one by one: keys of several shards are several slots, which a cluster (and the slot
    check's Redis) refuses in one command."""
    for k in keys:
        r.delete(k)


def restored(r):
    """How many shards' KEY_SEQ_RESTORED markers exist, one EXISTS each (the shards' keys are in different
    slots: one EXISTS over them is CROSSSLOT on a cluster)."""
    return sum(r.exists(k) for k in every(r, "seq:restored"))
