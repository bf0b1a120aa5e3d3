"""Helpers for the magpie-persist tests: stream entries written as magpie-push writes them (shared/stream.h),
what reached MySQL, the dead-letter stream, the worker's /metrics, and extra workers.

Every test takes its own uid and message-id range (Batch), so tests never see each other's rows, whatever
else runs on the stack.
"""
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from magpie_stack import free_port, metrics, stop_process

KEY_MQ = "mp:{0}:mq"        # shared/keys.h: shard 0's stream (magpie-persist reads every shard's)
GROUP = "persist"
KEY_DEAD = "mp:{0}:mq:dead"  # its dead letters (an entry's go to its own shard's)
STACK_WORKER = "persist"    # the daemon scripts/dev starts (pids/persist.pid)


def wait_for(cond, timeout, what, interval=0.05):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Batch:
    """Entries of one test: uids base..base+99 as senders, base+100.. as recipients, mids from mid_base."""

    def __init__(self):
        self.uid = random.randrange(10**12, 9 * 10**15, 1000)
        self.mid = random.randrange(10**15, 9 * 10**17)
        self.n = 0

    def entry(self, body=None, type_="t", cid=None, frm=None, to=None, mid=None, ts=None):
        """The fields of one well-formed entry (bytes values, as Redis returns them)."""
        i = self.n
        self.n += 1
        fields = {
            "v": "1",
            "mid": str(mid if mid is not None else self.mid + i),
            "from": str(frm if frm is not None else self.uid + i % 100),
            "to": str(to if to is not None else self.uid + 100 + i % 7),
            "cid": cid if cid is not None else f"c{i}",
            "type": type_,
            "body": body if body is not None else f"message {i}",
            "ts": str(ts if ts is not None else int(time.time() * 1000)),
        }
        return {k: v.encode() if isinstance(v, str) else v for k, v in fields.items()}

    def rows(self, db):
        """{mid: row} of this batch's senders, row = (cid bytes, from, to, type, body bytes, created_ms)."""
        with db.cursor() as cur:
            cur.execute("SELECT id, client_id, from_uid, to_uid, type, CAST(body AS BINARY), created_ms "
                        "FROM messages WHERE from_uid BETWEEN %s AND %s", (self.uid, self.uid + 99))
            return {row[0]: row[1:] for row in cur.fetchall()}

    def count(self, db):
        with db.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM messages WHERE from_uid BETWEEN %s AND %s",
                        (self.uid, self.uid + 99))
            return cur.fetchone()[0]


def row_matches(row, fields):
    """Does a row of Batch.rows hold exactly what the entry said?"""
    cid, frm, to, type_, body, ts = row
    return (bytes(cid) == fields["cid"] and str(frm).encode() == fields["from"]
            and str(to).encode() == fields["to"] and type_.encode() == fields["type"]
            and bytes(body) == fields["body"] and str(ts).encode() == fields["ts"])


def xadd_all(r, entries, chunk=500):
    """XADD every entry (a dict, or a list of (field, value) pairs to allow repeats); returns the ids."""
    ids = []
    for i in range(0, len(entries), chunk):
        p = r.pipeline(transaction=False)
        for e in entries[i:i + chunk]:
            pairs = list(e.items()) if isinstance(e, dict) else e
            p.execute_command("XADD", KEY_MQ, "*", *[x for pair in pairs for x in pair])
        ids.extend(x.decode() if isinstance(x, bytes) else x for x in p.execute())
    return ids


def raw_redis(stack):
    """A client that returns bytes, so binary field values come back as they are."""
    import redis
    if stack.cluster:
        return stack.redis_cluster(decode_responses=False)
    return redis.Redis(host="127.0.0.1", port=stack.redis_port, socket_timeout=10)


def group_pending(r):
    """Entries of the persist group delivered but not acked (all consumers)."""
    return r.xpending(KEY_MQ, GROUP)["pending"]


def consumer_pending(r, consumer):
    for c in r.xinfo_consumers(KEY_MQ, GROUP):
        name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
        if name == consumer:
            return c["pending"]
    return 0


def consumers(r):
    return {(c["name"].decode() if isinstance(c["name"], bytes) else c["name"]) for c in
            r.xinfo_consumers(KEY_MQ, GROUP)}


def dead_letter_pairs(r, orig_id):
    """The dead letter of stream entry orig_id as its exact list of (field, value), or None. Read through
    EVAL, because redis-py turns XRANGE's fields into a dict, which would hide a repeated field."""
    for _, flat in r.eval("return redis.call('XRANGE', KEYS[1], '-', '+')", 1, KEY_DEAD):
        pairs = list(zip(flat[0::2], flat[1::2]))
        if (b"orig_id", orig_id.encode()) in pairs:
            return pairs
    return None


def health(port):
    """(HTTP status, body) of the worker's /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def stack_consumer(stack):
    """The consumer name of the stack's worker: persist.consumer is empty, so the host name."""
    return stack.conf.get("persist.consumer") or socket.gethostname()


def restart_stack_worker(stack, env=None, sig=signal.SIGTERM):
    """Stop the stack's worker and start it again (with extra MAGPIE_* overrides); wait until it serves."""
    stack.kill_daemon(STACK_WORKER, sig=sig)
    stack.start_daemon(STACK_WORKER, extra_env=env)
    wait_for(lambda: _serves(stack.persist_metrics_port), 20, "the stack's persist worker to serve /healthz")


def _serves(port):
    try:
        health(port)
        return True
    except OSError:
        return False


def log_since(path, offset):
    """What a log file got after byte offset."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Worker:
    """Another magpie-persist process on the stack's config, with its own consumer name, metrics port and
    log (logs/persist-<name>.log); environment overrides as MAGPIE_PERSIST_* keys."""

    def __init__(self, stack, name, **env):
        self.stack = stack
        self.name = name
        self.port = free_port()
        self.log = os.path.join(stack.run, "logs", f"persist-{name}.log")
        self.env = dict(os.environ, MAGPIE_PERSIST_CONSUMER=name,
                        MAGPIE_PERSIST_METRICS_LISTEN=f"127.0.0.1:{self.port}", MAGPIE_LOG_FILE=self.log)
        self.env.update({f"MAGPIE_PERSIST_{k.upper()}": str(v) for k, v in env.items()})
        self.proc = None

    def start(self):
        out = open(os.path.join(self.stack.run, "logs", f"persist-{self.name}.out"), "ab")
        self.proc = subprocess.Popen([self.stack.bin("push/magpie-persist"), "-c", self.stack.conf_path],
                                     env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        out.close()
        wait_for(lambda: _serves(self.port), 20, f"worker {self.name} to serve /healthz")
        return self

    def metrics(self):
        return metrics(self.port)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal it; returns (exit status, seconds it took to exit)."""
        return stop_process(self.proc, sig, timeout)


def metric(values, name, labels=""):
    return values.get(f"{name}{{{labels}}}" if labels else name, 0.0)


def log_count(text, pattern):
    return len(re.findall(pattern, text))
