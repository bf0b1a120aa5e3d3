"""The Redis Cluster of a `scripts/dev up --redis cluster` stack as an operator sees it (redis-cli), for the
cluster test files (test_rcluster.py, test_rdsa_cluster.py, test_cluster_http.py, test_cluster_failover.py):
written once here, as failover.py is for the failover cases.

The stack: 3 masters with REDIS_REPLICAS replicas each (dev.env; 1 unless it was made with
MAGPIE_REDIS_REPLICAS=2), CLUSTER_PORTS in dev.env, each node in RUN/cluster-N/. On any other stack ENV has
no REDIS_MODE=cluster, PORTS is empty and each file skips itself with `needs_cluster`.
"""
import os
import queue
import signal
import subprocess
import threading
import time

import pytest

from magpie_stack import RUN, read_env_file

RESUME_LIMIT_S = 10.0  # SPEC §7 / issue 20: after a master's kill -9, service resumes within 10 s


def _env():
    try:
        return read_env_file(os.path.join(RUN, "dev.env"))
    except OSError:
        return {}


ENV = _env()
PORTS = [int(p) for p in ENV.get("CLUSTER_PORTS", "").split()]
MASTERS = 3
needs_cluster = pytest.mark.skipif(ENV.get("REDIS_MODE") != "cluster",
                                   reason="needs a stack from 'scripts/dev up --redis cluster' "
                                          "(scripts/dev test runs this file on one)")


def cli(port, *args, stdin=None, check=True, timeout=30):
    """redis-cli against one node: its output, stripped (AssertionError on a non-zero exit with check)."""
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *[str(a) for a in args]],
                       input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"redis-cli -p {port} {' '.join(map(str, args))}: {r.stderr}")
    return r.stdout.strip()


def alive(port):
    try:
        return cli(port, "PING", check=False, timeout=5) == "PONG"
    except subprocess.TimeoutExpired:
        return False


def nodes():
    """CLUSTER NODES from a live node: {port: {"id", "port", "master" (bool), "of" (master id), "failed",
    "slots"}}."""
    for p in PORTS:
        if not alive(p):
            continue
        out = {}
        for line in cli(p, "CLUSTER", "NODES").splitlines():
            f = line.split()
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            flags = f[2].split(",")
            out[port] = {"id": f[0], "port": port, "master": "master" in flags, "of": f[3],
                         "failed": "fail" in flags or "fail?" in flags, "slots": f[8:]}
        return out
    raise AssertionError("no cluster node answers")


def slot_of(key):
    """The slot of key (CRC16 with hash tags, as CLUSTER KEYSLOT)."""
    from redis.crc import key_slot
    return key_slot(key.encode())


def serves(slot, rng):
    """Does the CLUSTER NODES slot range rng ("5", "0-5460"; not a "[...]" migration) hold slot?"""
    lo, _, hi = rng.partition("-")
    return not rng.startswith("[") and int(lo) <= slot <= int(hi or lo)


def owned(n):
    """The slots a node serves, ascending."""
    out = []
    for rng in n["slots"]:
        if rng.startswith("["):
            continue  # a migration in progress
        lo, _, hi = rng.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


def owner(slot, view=None):
    """The master that serves slot, per the cluster (or per view, an earlier nodes())."""
    for n in (view or nodes()).values():
        if n["master"] and not n["failed"] and any(serves(slot, r) for r in n["slots"]):
            return n
    raise AssertionError(f"no master serves slot {slot}")


def owner_port(slot):
    """The port of the master serving slot now, or None (none does: a failover under way)."""
    try:
        return owner(slot)["port"]
    except (AssertionError, subprocess.TimeoutExpired):
        return None


def masters():
    return sorted(p for p, n in nodes().items() if n["master"] and not n["failed"] and n["slots"])


def node_ok(port):
    """The node says cluster_state:ok and knows every node of the stack."""
    info = cli(port, "CLUSTER", "INFO", check=False).splitlines()
    return "cluster_state:ok" in info and f"cluster_known_nodes:{len(PORTS)}" in info


def settled():
    """Every node up and agreeing, three masters, each of their replicas in sync."""
    if not all(alive(p) and node_ok(p) for p in PORTS):
        return False
    synced = sum("master_link_status:up" in cli(p, "INFO", "replication", check=False) for p in PORTS)
    return synced == len(PORTS) - MASTERS and len(masters()) == MASTERS


def wait_until(what, pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout}s")


def wait_settled(timeout=60):
    wait_until("a settled cluster", settled, timeout, 0.3)


def node_dir(port):
    return os.path.join(RUN, f"cluster-{PORTS.index(port) + 1}")


def kill_node(port):
    """kill -9 of the node on port; the time of the kill (time.time())."""
    with open(os.path.join(node_dir(port), "redis.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)
    return time.time()


def start_node(port):
    """What a supervisor does: start the node again from its own redis.conf and nodes.conf (a killed master
    rejoins as its promoted replica's replica by itself)."""
    subprocess.run(["redis-server", os.path.join(node_dir(port), "redis.conf")], check=True,
                   stdout=subprocess.DEVNULL)


def restart_node(port):
    """start_node, then wait until the cluster has settled with it."""
    start_node(port)
    wait_until("the killed node back and the cluster settled", settled, 60, 0.3)


def migrate_slot(slot, src, dst, pause=None):
    """Move slot from src to dst (nodes() entries) as `redis-cli --cluster reshard` does: IMPORTING/MIGRATING,
    MIGRATE of its keys, then the slot assigned on every master. pause None: the keys in batches of 200;
    pause in seconds: one key at a time with that pause after each, so that traffic meets the slot half
    moved (ASK). Returns the number of keys moved; leaves no slot half-migrated when it fails."""
    done = False
    try:
        cli(dst["port"], "CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"])
        cli(src["port"], "CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"])
        moved = 0
        while True:
            keys = cli(src["port"], "CLUSTER", "GETKEYSINSLOT", slot, 200 if pause is None else 5).split()
            if not keys:
                break
            if pause is None:
                assert cli(src["port"], "MIGRATE", "127.0.0.1", dst["port"], "", 0, 10000, "KEYS", *keys) in (
                    "OK", "NOKEY")
                moved += len(keys)
                continue
            for k in keys:
                assert cli(src["port"], "MIGRATE", "127.0.0.1", dst["port"], k, 0, 5000) in ("OK", "NOKEY")
                moved += 1
                time.sleep(pause)
        for port in [dst["port"], src["port"]] + [p for p in masters() if p not in (src["port"], dst["port"])]:
            cli(port, "CLUSTER", "SETSLOT", slot, "NODE", dst["id"])
        done = True
        return moved
    finally:
        if not done:
            for n in (src, dst):
                cli(n["port"], "CLUSTER", "SETSLOT", slot, "STABLE", check=False)


def clients_of(port, name):
    """CLIENT LIST of a node: the connections named name (CLIENT SETNAME), as dicts."""
    out = []
    for line in cli(port, "CLIENT", "LIST", check=False).splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("name") == name:
            out.append(f)
    return out


class LineProbe:
    """A probe program of tests/probes (rcluster-probe, rdsa-cluster-probe): one request line in, one answer
    line out (each one's protocol is at the top of its .c). Its log and any sanitizer report go to
    logs/<name>-N.log; close() requires a clean exit with no sanitizer report (leaks included)."""
    count = 0

    def __init__(self, binary, conf, env=None):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is not built (make builds it with everything else)")
        LineProbe.count += 1
        self.name = os.path.basename(binary)
        os.makedirs(os.path.join(RUN, "logs"), exist_ok=True)
        self.log_path = os.path.join(RUN, "logs", f"{self.name}-{LineProbe.count}.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([binary, "-c", conf], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, text=True, bufsize=1, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def ask(self, line, timeout=30):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        try:
            out = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the probe did not answer '{line}' within {timeout}s")
        assert out is not None, f"the probe died on '{line}' (see {self.log_path})"
        return out

    def close(self):
        """End the probe; it must exit 0 with no sanitizer report (leaks included)."""
        self.p.stdin.close()
        rc = self.p.wait(timeout=30)
        self.log.close()
        with open(self.log_path) as f:
            log = f.read()
        assert "Sanitizer" not in log and "runtime error" not in log, f"sanitizer report in {self.log_path}"
        assert rc == 0, f"{self.name} exited {rc} (see {self.log_path})"
