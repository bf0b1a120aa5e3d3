"""The stack the integration tests run against: what scripts/dev started in $MAGPIE_RUN.

Tests read ports, secrets and paths from here instead of hard-coding them, and use the helpers to talk
to the real servers (Redis, MariaDB, nginx, the magpie daemons) or to stop and start them.
"""
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request

import pymysql
import redis

REPO = os.environ.get("MAGPIE_REPO") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = os.environ.get("MAGPIE_RUN", os.path.join(REPO, ".run", "test"))
BUILD = os.environ.get("MAGPIE_BUILD", os.path.join(REPO, ".run", "build-asan"))


def read_env_file(path):
    """KEY=VALUE lines as scripts/dev writes them (shell quoting, # comments)."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = shlex.split(line, comments=True)
            if parts and "=" in parts[0]:
                key, value = parts[0].split("=", 1)
                values[key] = value
    return values


def read_conf(path):
    """magpie.conf as a {"section.key": value} dict (the tests' view; the daemons use libmagpie)."""
    values, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            m = re.match(r"^\[(\w+)\]$", line)
            if m:
                section = m.group(1)
                continue
            key, _, value = line.partition("=")
            values[f"{section}.{key.strip()}"] = value.strip()
    return values


def _healthz_ok(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Stack:
    def __init__(self, run=RUN, build=BUILD):
        self.run = run
        self.build = build
        self.repo = REPO
        self.env = read_env_file(os.path.join(run, "dev.env"))
        self.secrets = read_env_file(os.path.join(run, "secret"))
        self.conf_path = os.path.join(run, "magpie.conf")
        self.conf = read_conf(self.conf_path)
        self.nginx_port = int(self.env["NGINX_PORT"])
        self.redis_port = int(self.env["REDIS_PORT"])
        self.mysql_port = int(self.env["MYSQL_PORT"])
        self.http_port = int(self.env["HTTP_PORT"])
        self.push_ports = [int(p) for p in self.env["PUSH_PORTS"].split()]
        self.push_metrics_ports = [int(p) for p in self.env["PUSH_METRICS_PORTS"].split()]
        self.persist_metrics_port = int(self.env["PERSIST_METRICS_PORT"])
        self.secret = self.secrets["SECRET"]
        self.api_key = self.secrets["API_KEY"]
        # 'scripts/dev up --redis sentinel': a master and a replica that may swap, and three sentinels.
        self.sentinel = self.env.get("REDIS_MODE") == "sentinel"
        self.sentinel_ports = [int(p) for p in self.env.get("SENTINEL_PORTS", "").split()] if self.sentinel else []
        self.redis_replica_port = int(self.env["REDIS_REPLICA_PORT"]) if self.sentinel else None
        # 'scripts/dev up --redis slotcheck': one Redis that is a one-node cluster (README, "The slot check").
        self.slotcheck = self.env.get("REDIS_MODE") == "slotcheck"
        # 'scripts/dev up --redis cluster': six nodes (CLUSTER_PORTS), three masters and a replica each; which is
        # master is the cluster's business. REDIS_PORT names no server then: redis() is a cluster client.
        self.cluster = self.env.get("REDIS_MODE") == "cluster"
        self.cluster_ports = [int(p) for p in self.env.get("CLUSTER_PORTS", "").split()] if self.cluster else []
        self._cluster_client = None

    # ---- URLs ----
    @property
    def nginx_url(self):
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def http_url(self):
        """magpie-http's standalone (libmicrohttpd) front-end."""
        return f"http://127.0.0.1:{self.http_port}"

    # ---- clients ----
    def redis(self):
        """A client of the Redis master (with Sentinel: the one the sentinels name now; on a cluster, a
        redis.cluster.RedisCluster that follows the slot map: one-key commands go to the slot's master, what
        the tests do with more than one key keeps to one slot as the daemons' scripts do)."""
        if self.cluster:
            if self._cluster_client is None:
                self._cluster_client = self.redis_cluster()
            return self._cluster_client
        return redis.Redis(host="127.0.0.1", port=self.redis_master_port(), decode_responses=True,
                           socket_timeout=5)

    def redis_cluster(self, decode_responses=True):
        """A new cluster client seeded with every node (only on a cluster stack)."""
        from redis.cluster import ClusterNode, RedisCluster
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.cluster_ports],
                            decode_responses=decode_responses, socket_timeout=5, cluster_error_retry_attempts=10)

    def redis_any_port(self):
        """A port where some Redis of the stack answers (PUBLISH reaches every node of a cluster, so a
        subscriber may sit on any): REDIS_PORT, or on a cluster the first node that answers PING."""
        for port in self.cluster_ports:
            try:
                if redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping():
                    return port
            except redis.exceptions.RedisError:
                continue
        return self.redis_master_port()

    def redis_master_port(self):
        """REDIS_PORT, or with Sentinel the master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                addr = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True) \
                    .execute_command("SENTINEL", "get-master-addr-by-name", self.conf["redis.master_name"])
            except redis.exceptions.RedisError:
                continue
            if addr:
                return int(addr[1])
        return self.redis_port

    def mysql(self, **kw):
        return pymysql.connect(host="127.0.0.1", port=self.mysql_port, user="magpie",
                               password=self.secrets["DB_PASSWORD"], database="magpie",
                               autocommit=True, charset="utf8mb4", **kw)

    def bin(self, relpath):
        return os.path.join(self.build, relpath)

    # ---- stopping and starting the servers (outage tests) ----
    def _no_whole_redis_outage(self):
        """On a cluster there is no one Redis to stop: a test of a whole-Redis outage is skipped there (the
        cluster's own failure is one master at a time: test_cluster_failover.py, test_cluster_http.py)."""
        if self.cluster:
            import pytest
            pytest.skip("stops 'the Redis': a cluster has no single Redis (its master failures have tests of "
                        "their own)")

    def stop_redis(self):
        self._no_whole_redis_outage()
        subprocess.run(["redis-cli", "-p", str(self.redis_port), "shutdown"], capture_output=True)
        self._wait(lambda: not self._redis_up(), "redis to stop")

    def start_redis(self):
        self._no_whole_redis_outage()
        subprocess.run(["redis-server", os.path.join(self.run, "redis", "redis.conf")], check=True)
        if self.slotcheck:
            self._slotcheck_open()
        self._wait(self._redis_up, "redis to start")

    def _slotcheck_open(self):
        """The slot check's Redis starts on its unix socket only; it opens REDIS_PORT once its cluster state is
        ok, as scripts/lib/stack.sh's start_redis_slotcheck does (a restarted cluster master answers
        CLUSTERDOWN for 2 s, which the daemons' one-Redis client would take for answers)."""
        sock = os.path.join(self.run, "redis", "redis.sock")

        def cluster_ok():
            out = subprocess.run(["redis-cli", "-s", sock, "cluster", "info"], capture_output=True, text=True)
            return "cluster_state:ok" in out.stdout

        self._wait(cluster_ok, "the slot check's redis cluster_state:ok")
        subprocess.run(["redis-cli", "-s", sock, "config", "set", "port", str(self.redis_port)], check=True,
                       capture_output=True)
        # Those 2 s closed took the push nodes' reconnect backoff (100 ms doubling to 2 s) further than a plain
        # Redis restart does: wait until each running node is back (its /healthz says 200 once it is), as the
        # tests written for a plain Redis expect right after start_redis.
        for name, port in zip([f"push{i + 1}" for i in range(len(self.push_metrics_ports))], self.push_metrics_ports):
            if self.daemon_pid(name) is not None:
                self._wait(lambda port=port: _healthz_ok(port), f"{name} to reach the restarted redis", 15)

    def _redis_up(self):
        try:
            return self.redis().ping()
        except redis.exceptions.ConnectionError:
            return False

    def mariadb_pid(self):
        try:
            pid = int(open(os.path.join(self.run, "mariadb", "mysqld.pid")).read().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop_mariadb(self, timeout=60):
        """SIGTERM MariaDB (a clean shutdown) and wait until it is gone."""
        pid = self.mariadb_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        self._wait(lambda: not _alive(pid), "mariadb to stop", timeout)

    def start_mariadb(self, timeout=60):
        """Start MariaDB again exactly as scripts/dev did (mariadb/mariadbd.cmd); wait until it answers."""
        with open(os.path.join(self.run, "mariadb", "mariadbd.cmd")) as f:
            argv = f.read().splitlines()
        self._mariadb_proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True)
        self._wait(self._mariadb_up, "mariadb to start", timeout)

    def _mariadb_up(self):
        try:
            self.mysql(connect_timeout=2).close()
            return True
        except pymysql.err.Error:
            return False

    @staticmethod
    def _wait(cond, what, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")

    # ---- the magpie daemons, as scripts/dev started them (logs/NAME.log, pids/NAME.pid, pids/NAME.cmd) ----
    def daemon_pid(self, name):
        path = os.path.join(self.run, "pids", f"{name}.pid")
        try:
            pid = int(open(path).read().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def kill_daemon(self, name, sig=15, timeout=10):
        """Signal a daemon (default SIGTERM) and wait until it is gone."""
        pid = self.daemon_pid(name)
        if pid is None:
            return
        os.kill(pid, sig)
        self._wait(lambda: not _alive(pid), f"{name} to exit", timeout)

    def start_daemon(self, name, extra_env=None):
        """Start a daemon again exactly as scripts/dev did; wait until its pid is alive."""
        with open(os.path.join(self.run, "pids", f"{name}.cmd")) as f:
            argv = f.read().splitlines()
        env = dict(os.environ)
        env.update(extra_env or {})
        log = open(os.path.join(self.run, "logs", f"{name}.out"), "ab")
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        with open(os.path.join(self.run, "pids", f"{name}.pid"), "w") as f:
            f.write(f"{proc.pid}\n")
        return proc


def _alive(pid):
    """Running (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- helpers every component's tests use ----

def free_port():
    """A free loopback port below the kernel's ephemeral range, as scripts/lib/stack.sh picks them: a port in
    that range can become the local end of any outgoing connection before a daemon binds it."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", random.randrange(10000, low) if low > 11000 else 0))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def metrics(port):
    """A daemon's Prometheus /metrics on a loopback port as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Signal a daemon the test started and wait (SIGKILL after timeout); returns (exit status, seconds)."""
    if proc is None or proc.poll() is not None:
        return (proc.returncode if proc else None), 0.0
    t0 = time.time()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return rc, time.time() - t0
