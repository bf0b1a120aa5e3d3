"""Shared pieces of bench/run, bench/compare and bench/smoke (standard library only; run with /usr/bin/python3).

- Peers: nats-server (WebSocket listener), nginx with nchan and mosquitto (plain MQTT over TCP), started from
  the configs in bench/peers/ in a run directory of their own, on free loopback ports, and stopped by their pid
  files (nothing else).
- MagpieStack: what a Magpie stack started by scripts/dev offers (ports from dev.env, pid files, config).
- run_bench: call magpie-bench and return its result as a dict.
- machine(): the facts a result is recorded with.
"""

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_DIR = os.path.join(REPO, "bench", "peers")
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_port(port, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not listen on 127.0.0.1:%d within %ss" % (what, port, secs))


def render(template, out, **values):
    with open(template) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError("%s: no value for %s" % (template, ", ".join(sorted(set(left)))))
    with open(out, "w") as f:
        f.write(text)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_is(pid, name):
    """Is pid alive and running a program whose command line contains name?"""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


def stop_pid(path, name, secs=10):
    pid = read_pid(path)
    if pid is None or not pid_is(pid, name):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + secs
    while time.time() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.05)
    if os.path.exists("/proc/%d" % pid):
        os.kill(pid, signal.SIGKILL)


class Peers:
    """nats-server, nginx+nchan and mosquitto in run_dir, each on free ports."""

    def __init__(self, run_dir):
        self.dir = run_dir
        self.nats = None
        self.nchan = None
        self.mosquitto = None
        os.makedirs(run_dir, exist_ok=True)

    @staticmethod
    def missing_mosquitto():
        """Why mosquitto cannot run here, or None."""
        if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
            return "mosquitto is not installed (Debian package mosquitto)"
        return None

    def start_mosquitto(self):
        """mosquitto in the foreground (it writes a pid file only when it daemonizes: the pid is recorded
        here), plain MQTT over TCP on a free port."""
        d = os.path.join(self.dir, "mosquitto")
        os.makedirs(d, exist_ok=True)
        pidfile = os.path.join(d, "mosquitto.pid")
        stop_pid(pidfile, "mosquitto")
        port = free_port()
        conf = os.path.join(d, "mosquitto.conf")
        # As root, mosquitto would switch to the user mosquitto, who cannot write this checkout's directories.
        render(os.path.join(PEERS_DIR, "mosquitto.conf.in"), conf, PORT=port, RUN_DIR=d,
               USER_LINE="user root" if os.getuid() == 0 else "")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(d, "mosquitto.out"), "ab"), start_new_session=True)
        with open(pidfile, "w") as f:
            f.write("%d\n" % proc.pid)
        try:
            wait_port(port, 10, "mosquitto")
        except RuntimeError:
            proc.kill()
            raise
        self.mosquitto = {"dir": d, "port": port, "url": "tcp://127.0.0.1:%d" % port, "pidfile": pidfile,
                          "proc": proc}
        return self.mosquitto

    def missing(self):
        """Why the peers cannot run here (a missing package), or None."""
        if shutil.which("nats-server") is None:
            return "nats-server is not installed (Debian package nats-server)"
        if shutil.which("nginx") is None or not os.path.exists(NCHAN_MODULE):
            return "nginx with nchan is not installed (Debian package libnginx-mod-nchan)"
        return None

    def start_nats(self):
        d = os.path.join(self.dir, "nats")
        os.makedirs(d, exist_ok=True)
        stop_pid(os.path.join(d, "nats.pid"), "nats-server")
        ws, client, monitor = free_port(), free_port(), free_port()
        conf = os.path.join(d, "nats.conf")
        render(os.path.join(PEERS_DIR, "nats.conf.in"), conf, CLIENT_PORT=client, MONITOR_PORT=monitor,
               WS_PORT=ws, RUN_DIR=d)
        subprocess.Popen(["nats-server", "-c", conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "nats.out"), "ab"), start_new_session=True)
        wait_port(ws, 10, "nats-server")
        self.nats = {"dir": d, "ws_port": ws, "url": "ws://127.0.0.1:%d/" % ws,
                     "pidfile": os.path.join(d, "nats.pid")}
        return self.nats

    def start_nchan(self):
        d = os.path.join(self.dir, "nchan")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        stop_pid(os.path.join(d, "nginx.pid"), "nginx")
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        # As root, nginx's workers would switch to nobody, who cannot write this checkout's directories.
        user_line = "user root;" if os.getuid() == 0 else ""
        render(os.path.join(PEERS_DIR, "nchan.conf.in"), conf, PORT=port, RUN_DIR=d, USER_LINE=user_line)
        r = subprocess.run(["nginx", "-p", d, "-c", conf], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nginx (nchan) did not start: " + r.stderr.strip())
        wait_port(port, 10, "nginx (nchan)")
        self.nchan = {"dir": d, "port": port, "sub_url": "ws://127.0.0.1:%d/sub/" % port,
                      "pub_url": "http://127.0.0.1:%d/pub/" % port, "pidfile": os.path.join(d, "nginx.pid")}
        return self.nchan

    def stop(self):
        if self.nats:
            stop_pid(self.nats["pidfile"], "nats-server")
            self.nats = None
        if self.nchan:
            stop_pid(self.nchan["pidfile"], "nginx")
            self.nchan = None
        if self.mosquitto:
            stop_pid(self.mosquitto["pidfile"], "mosquitto")
            self.mosquitto["proc"].wait(timeout=10)  # reap it: no zombie left behind
            self.mosquitto = None


def read_env_file(path):
    """KEY=value lines of a shell file like dev.env (quotes and trailing comments removed)."""
    env = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'\s*([A-Z_][A-Z0-9_]*)=("([^"]*)"|(\S*))', line)
            if m:
                env[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(4)
    return env


class MagpieStack:
    """A stack started by scripts/dev in run_dir."""

    def __init__(self, run_dir):
        self.dir = os.path.abspath(run_dir)
        env = read_env_file(os.path.join(self.dir, "dev.env"))
        self.nginx_port = int(env["NGINX_PORT"])
        self.redis_port = int(env["REDIS_PORT"])
        self.http_port = int(env["HTTP_PORT"])
        self.push_ports = [int(p) for p in env["PUSH_PORTS"].split()]
        self.conf = os.path.join(self.dir, "magpie.conf")
        # On a cluster ('up --redis cluster') redis_port is the master that serves shard 0's slot ({0}: at
        # redis.stream_shards = 1 every per-user key and the chat stream), found when the stack is read; the
        # other nodes are in cluster_ports.
        self.cluster_ports = cluster_ports(self.dir)
        if self.cluster_ports:
            self.redis_port = cluster_slot_owner(self.cluster_ports) or self.redis_port

    def push_pidfiles(self):
        files = []
        for i in range(1, len(self.push_ports) + 1):
            f = os.path.join(self.dir, "pids", "push%d.pid" % i)
            pid = read_pid(f)
            if pid and pid_is(pid, "magpie-push"):
                files.append(f)
        return files

    def push_running(self):
        return len(self.push_pidfiles()) == len(self.push_ports) and len(self.push_ports) > 0

    def http_running(self):
        pid = read_pid(os.path.join(self.dir, "pids", "http.pid"))
        return bool(pid and pid_is(pid, "magpie-http"))

    def urls(self, path, via_nginx=False):
        if via_nginx:
            return ["ws://127.0.0.1:%d%s" % (self.nginx_port, path)]
        return ["ws://127.0.0.1:%d%s" % (p, path) for p in self.push_ports]

    def mem_args(self):
        args = []
        files = self.push_pidfiles()
        if files:
            args += ["--mem", "magpie-push=" + ",".join("@" + f for f in files)]
        redis_pid = os.path.join(self.dir, "redis", "redis.pid")
        if read_pid(redis_pid):
            args += ["--mem", "redis=@" + redis_pid]
        return args


def restart_push(run_dir, node, env=()):
    """Restart push node `node` of a scripts/dev stack as scripts/dev started it (pids/pushN.cmd), with env
    ("NAME=value" strings) added; its pid goes to pids/pushN.pid, so `scripts/dev down` stops it. Returns once
    its /healthz answers. A fresh process is what a memory-per-connection figure needs: a node that held
    connections before keeps their freed memory (malloc's arenas), and the next run's connections reuse it."""
    import urllib.request
    pidfile = os.path.join(run_dir, "pids", "push%d.pid" % node)
    with open(os.path.join(run_dir, "pids", "push%d.cmd" % node)) as f:
        cmd = [line.rstrip("\n") for line in f if line.strip()]
    if cmd[0] != "env":
        raise RuntimeError("%s: not a command recorded by scripts/dev" % f.name)
    metrics = int(read_env_file(os.path.join(run_dir, "dev.env"))["PUSH_METRICS_PORTS"].split()[node - 1])
    pid = read_pid(pidfile)
    if pid and pid_is(pid, "magpie-push"):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not pid_is(pid, "magpie-push"):
                break
            time.sleep(0.1)
    cmd[1:1] = list(env)
    out = open(os.path.join(run_dir, "logs", "push%d.out" % node), "a")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         cwd=os.path.join(run_dir, "cores", "push%d" % node), start_new_session=True)
    with open(pidfile, "w") as f:
        f.write("%d\n" % p.pid)
    url = "http://127.0.0.1:%d/healthz" % metrics
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return p
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("push node %d did not come back (%s)" % (node, url))


def quiesce(stack, limit_s=120):
    """Wait (at most limit_s) until what an earlier run left is done: every consumer group of every shard's
    message stream (mp:{s}:mq, magpie-persist) has been delivered its last entry and holds nothing pending,
    twice in a row a second apart (stream_caught_up). A chat run leaves MySQL writes behind; the next run
    must not share the machine with them. Returns the seconds waited."""
    t0 = time.time()
    calm = 0
    keys = shard_keys(stack.redis_port, "mq")
    while time.time() - t0 < limit_s and calm < 2:
        calm = calm + 1 if stream_caught_up(stack.redis_port, keys) else 0
        time.sleep(1)
    return round(time.time() - t0, 1)


def redis_info_fields(stack, section, names):
    """{name: value} of INFO <section> fields (numbers as int when they are)."""
    text = resp_call(stack.redis_port, "INFO", section)
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(":")
        if k in names:
            out[k] = int(v) if v.strip().lstrip("-").isdigit() else v.strip()
    return out


def fresh_aof(stack, limit_s=300):
    """Rewrite Redis's AOF now and wait until it is done, so that no automatic rewrite (a fork and a rewrite
    of every key, which stalls acks for up to a second on this 2-core box once the stack holds a few hundred
    MB) falls into the next run: the rewrite is triggered when the AOF has grown auto-aof-rewrite-percentage
    over its size after the last one, and a run of a few hundred thousand messages can do that. A cost every
    protocol pays alike; a comparison between them must not depend on which run it fell into. Returns the
    seconds waited (0 when AOF is off)."""
    t0 = time.time()
    if redis_info_fields(stack, "persistence", ("aof_enabled",)).get("aof_enabled") != 1:
        return 0.0
    resp_call(stack.redis_port, "BGREWRITEAOF")
    while time.time() - t0 < limit_s:
        f = redis_info_fields(stack, "persistence", ("aof_rewrite_in_progress", "aof_rewrite_scheduled"))
        if not f.get("aof_rewrite_in_progress") and not f.get("aof_rewrite_scheduled"):
            break
        time.sleep(0.5)
    return round(time.time() - t0, 1)


class AofRewriteHeld:
    """Within the block Redis makes no automatic AOF rewrite (auto-aof-rewrite-percentage 0), and afterwards
    the setting it had comes back. For a comparison in which the rewrite is noise: its cost is Redis's, paid
    alike whatever the clients speak, but a fork and a rewrite of a GB on 2 cores stall everything for a
    second or more, in whichever run they happen to fall. Pair with fresh_aof between runs so the AOF does
    not grow without bound."""

    def __init__(self, stack):
        self.stack, self.saved = stack, None

    def __enter__(self):
        reply = resp_call(self.stack.redis_port, "CONFIG", "GET", "auto-aof-rewrite-percentage")
        self.saved = reply[1] if isinstance(reply, list) and len(reply) == 2 else None
        resp_call(self.stack.redis_port, "CONFIG", "SET", "auto-aof-rewrite-percentage", "0")
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            resp_call(self.stack.redis_port, "CONFIG", "SET", "auto-aof-rewrite-percentage", self.saved)
        return False


def redis_forks(stack):
    """Redis's total_forks (INFO stats): a run whose count moved had an AOF rewrite or a save in it."""
    return redis_info_fields(stack, "stats", ("total_forks",)).get("total_forks")


def run_bench(binary, args, timeout=900):
    """Run magpie-bench with args; returns (result dict or None, its summary text on stderr)."""
    cmd = [binary] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    result = None
    if r.returncode == 0 and r.stdout.strip():
        try:
            result = json.loads(r.stdout)
        except ValueError:
            result = None
    if result is None:
        return None, (r.stderr.strip() or "magpie-bench exited with %d" % r.returncode)
    return result, r.stderr.strip()


def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _deb_version(pkg):
    return _first_line(["dpkg-query", "-W", "-f=${Version}", pkg])


def machine():
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    try:
        nofile = int(subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, text=True).stdout.strip())
    except ValueError:
        nofile = None
    git = _first_line(["git", "-C", REPO, "describe", "--always", "--dirty"])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1048576.0, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "fd_limit": nofile,
        # 1, 5 and 15 minutes, when this was called: on a shared machine, how busy it was.
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "magpie": git,
        # Debian package versions: what a reader installs to reproduce the run.
        "versions": {p: _deb_version(p) for p in ("nats-server", "nginx", "libnginx-mod-nchan", "mosquitto", "libwebsockets17",
                                                  "libuv1", "redis-server", "libhiredis0.14")},
    }


# ---- groups (the group scenario): real groups made over the HTTP API, and the stack's cost per message ----

def _conf_section(path, section):
    """key = value lines of one [section] of a magpie.conf."""
    out, cur = {}, None
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("[") and line.endswith("]"):
                cur = line[1:-1].strip()
            elif cur == section and "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def stack_mysql(stack):
    """A pymysql connection to the stack's MariaDB, with magpie.conf's credentials (pymysql: Debian's
    python3-pymysql, which the integration tests use too)."""
    import pymysql
    m = _conf_section(stack.conf, "mysql")
    return pymysql.connect(host=m.get("host", "127.0.0.1"), port=int(m["port"]), user=m["user"],
                           password=m["password"], database=m["database"], autocommit=True, charset="utf8mb4")


def http_json(port, method, path, body=None, token=None, timeout=30):
    """One JSON call through the stack's nginx; (HTTP status, parsed body)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        c.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = c.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, {"raw": data.decode("utf-8", "replace")}
    finally:
        c.close()


class BenchGroups:
    """ngroups groups of `members` users each, made through the real HTTP API (SPEC §4.2) the way a client
    makes them: the users exist in MySQL's users table (the endpoints check it; rows inserted as the
    integration tests' group_client.make_users does, with ids of our own), the owner -- member 0 of each
    group -- logs in with a token from /tk (http.enable_test_token, on in every scripts/dev stack) and
    POSTs /groups with the other members. Member m of group g is uid_base + g * members + m, which is what
    magpie-bench's --uid-base, --members and --group-ids mean. drop() deletes the groups (DELETE /groups/<id>)
    and the users rows again; their timelines in Redis expire with timeline.keep_s."""

    def __init__(self, stack, ngroups, members, uid_base=None):
        import random
        self.stack = stack
        self.ngroups = ngroups
        self.members = members
        # Out of the tests' range (1e9..1e12) and away from other runs: a fresh block of users per run, so
        # group.max_per_user never fills up and every timeline starts empty.
        self.uid_base = uid_base or random.randrange(2 * 10**12, 3 * 10**12, 10**6)
        self.ids = []
        self.tokens = {}

    def uids(self):
        return range(self.uid_base, self.uid_base + self.ngroups * self.members)

    def owner(self, g):
        return self.uid_base + g * self.members

    def token(self, uid):
        if uid not in self.tokens:
            st, j = http_json(self.stack.nginx_port, "POST", "/tk", {"uid": uid})
            if st != 200 or j.get("code") != 1:
                raise RuntimeError("POST /tk answered %s %s (is http.enable_test_token on?)" % (st, j))
            self.tokens[uid] = j["data"]
        return self.tokens[uid]

    def make(self):
        with stack_mysql(self.stack) as db, db.cursor() as cur:
            cur.executemany("INSERT INTO users (id, mobile) VALUES (%s, %s)", [(u, "b%d" % u) for u in self.uids()])
        for g in range(self.ngroups):
            o = self.owner(g)
            st, j = http_json(self.stack.nginx_port, "POST", "/groups",
                              {"name": "bench %d" % g, "members": list(range(o + 1, o + self.members))},
                              token=self.token(o))
            if st != 200 or j.get("code") != 0:
                raise RuntimeError("POST /groups answered %s %s" % (st, j))
            self.ids.append(j["result"]["group_id"])
        return self.ids

    def drop(self):
        for g, gid in enumerate(self.ids):
            http_json(self.stack.nginx_port, "DELETE", "/groups/%d" % gid, token=self.token(self.owner(g)))
        self.ids = []
        try:
            with stack_mysql(self.stack) as db, db.cursor() as cur:
                cur.execute("DELETE FROM users WHERE id BETWEEN %s AND %s",
                            (self.uid_base, self.uid_base + self.ngroups * self.members - 1))
        except Exception as e:  # noqa: BLE001 -- cleanup: say so, do not hide the result
            print("bench: could not delete the bench users: %s" % e, file=sys.stderr)

    def mysql_rows(self):
        """(g rows in messages for these groups, timeline_chunks rows of these members)."""
        with stack_mysql(self.stack) as db, db.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM messages WHERE group_id IN (%s) AND type = 'g'" %
                        ",".join("%d" % int(i) for i in self.ids))
            g = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM timeline_chunks WHERE uid BETWEEN %s AND %s",
                        (self.uid_base, self.uid_base + self.ngroups * self.members - 1))
            return g, cur.fetchone()[0]


def resp_pipeline(port, cmds, timeout=10):
    """Redis commands sent in one write over a plain socket (no redis-cli fork per sample), so Redis runs
    them one after the other with nothing between; their replies, simply decoded."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        req = b""
        for args in cmds:
            req += b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in
                                                       (str(x).encode() for x in args))
        s.sendall(req)
        f = s.makefile("rb")
        return [_resp_read(f) for _ in cmds]
    finally:
        s.close()


def resp_call(port, *args, timeout=5):
    """One Redis command; its reply."""
    return resp_pipeline(port, [args], timeout)[0]


# Redis key names as shared/keys.h spells them (tests/integration/rkeys.py has the same for redis-py): users
# are split into S = redis.stream_shards shards (uid mod S), every per-user key carries its shard's hash tag
# ("mp:{3}:seq:42"), and the chat and notification streams are one per shard ("mp:{0}:mq").
def cluster_ports(run_dir):
    """The nodes of the stack's Redis Cluster (CLUSTER_PORTS of 'scripts/dev up --redis cluster'), or []
    when the stack runs another Redis mode."""
    env = read_env_file(os.path.join(run_dir, "dev.env"))
    if env.get("REDIS_MODE") != "cluster":
        return []
    return [int(p) for p in env.get("CLUSTER_PORTS", "").split()]


def cluster_node_dirs(run_dir):
    """{port: the node's folder (cluster-N/, with redis.conf and redis.pid)} of the stack's cluster."""
    return {p: os.path.join(run_dir, "cluster-%d" % (i + 1)) for i, p in enumerate(cluster_ports(run_dir))}


def cluster_roles(ports):
    """{port: "master" | "slave" | None (no answer)} as each node says (INFO replication)."""
    out = {}
    for p in ports:
        try:
            text = resp_call(p, "INFO", "replication", timeout=2)
        except (OSError, RuntimeError):
            out[p] = None
            continue
        role = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("role:")]
        out[p] = role[0] if role else None
    return out


def cluster_slot_owner(ports, tag="{0}"):
    """The port of the master serving the slot of hash tag `tag` ("{0}": shard 0's keys, all of them at
    redis.stream_shards = 1), as the first node that answers CLUSTER SLOTS says; None when none answers."""
    for p in ports:
        try:
            slot, slots = resp_pipeline(p, [("CLUSTER", "KEYSLOT", tag), ("CLUSTER", "SLOTS")], timeout=2)
        except (OSError, RuntimeError):
            continue
        if not isinstance(slots, list) or not isinstance(slot, int):
            continue
        for r in slots:
            if r[0] <= slot <= r[1]:
                return int(r[2][1])
    return None


def redis_shards(port):
    """S as the stack's Redis recorded it (mp:shards; 1 before any daemon started or when Redis is down)."""
    try:
        v = resp_call(port, "GET", "mp:shards")
        if isinstance(v, str) and v.startswith("MOVED "):  # a cluster node: ask the one that holds it
            v = resp_call(int(v.rsplit(":", 1)[1]), "GET", "mp:shards")
    except (OSError, RuntimeError, ValueError):
        return 1
    return int(v) if v and str(v).isdigit() else 1


def key_sharded(name, shard):
    """A per-shard key: key_sharded("mq", 0) == "mp:{0}:mq"."""
    return "mp:{%d}:%s" % (shard, name)


def key_tagged(name, ident, shards):
    """A per-user key: key_tagged("tl", 42, 4) == "mp:{2}:tl:42"."""
    return "mp:{%d}:%s:%s" % (int(ident) % shards, name, ident)


def shard_keys(port, name):
    """The per-shard key name of every shard ("mq", "notify")."""
    return [key_sharded(name, s) for s in range(redis_shards(port))]


def stream_caught_up(port, keys):
    """Every consumer group of every stream in keys has been delivered its stream's last entry and holds
    nothing pending. (Not XINFO's lag: it stays non-zero once entries were deleted from the stream.)"""
    for key in keys:
        try:
            groups, stream = resp_pipeline(port, [("XINFO", "GROUPS", key), ("XINFO", "STREAM", key)])
        except (OSError, RuntimeError):
            return False
        last = dict(zip(stream[::2], stream[1::2])).get("last-generated-id") if isinstance(stream, list) else None
        for g in groups if isinstance(groups, list) else []:
            d = dict(zip(g[::2], g[1::2]))
            if d.get("pending") or (last is not None and d.get("last-delivered-id") != last):
                return False
    return True


def added_sum(xinfo_replies):
    """entries-added of XINFO STREAM replies, summed; None when none of them is a stream's answer."""
    total = None
    for x in xinfo_replies:
        n = dict(zip(x[::2], x[1::2])).get("entries-added") if isinstance(x, list) else None
        if n is not None:
            total = (total or 0) + int(n)
    return total


def entries_added(port, name="mq"):
    """Entries ever added to the shards' streams name, summed (XINFO STREAM's entries-added: for "mq" one
    per stored message); None when no stream answered."""
    try:
        return added_sum(resp_pipeline(port, [("XINFO", "STREAM", k) for k in shard_keys(port, name)]))
    except (OSError, RuntimeError):
        return None


def _resp_read(f):
    line = f.readline()
    if not line:
        raise RuntimeError("Redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t in (b"+", b"-"):
        return rest.decode()
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("unexpected Redis reply %r" % line)


def proc_cpu_ticks(pid):
    """utime + stime of pid in clock ticks, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (TypeError, OSError, IndexError, ValueError):
        return None


def proc_children(pid):
    """The pids whose parent is pid (nginx's workers)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


class CpuSampler:
    """The CPU each named server process used, its children included (nginx's workers; taken when the
    sampler starts), sampled every `every` s while a run goes on and stamped with CLOCK_MONOTONIC -- the clock
    of magpie-bench's steps (t0_ns, t_end_ns) -- so each step's cores can be cut out afterwards (cores())."""

    def __init__(self, pids, every=0.25):
        import threading
        self.pids = {name: [p] + proc_children(p) for name, p in pids.items() if p}
        self.every = every
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self):
        ticks = {}
        for name, pids in self.pids.items():
            got = [proc_cpu_ticks(p) for p in pids]
            ticks[name] = None if got[0] is None else sum(t for t in got if t is not None)
        self.samples.append((time.monotonic_ns(), ticks))

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.sample()

    def cores(self, t0, t1):
        """Cores each process used between CLOCK_MONOTONIC t0 and t1 (ns), from the first sample at or after
        t0 to the last at or before t1; None when fewer than two samples fall inside."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return None
        (ta, a), (tb, b) = inside[0], inside[-1]
        secs = (tb - ta) / 1e9
        hz = os.sysconf("SC_CLK_TCK")
        return {k: round((b[k] - a[k]) / hz / secs, 3) for k in a
                if a[k] is not None and b.get(k) is not None and secs > 0}


class CostSampler:
    """Samples, every `every` s while a run goes on, the CPU each of the stack's server processes used
    (/proc/<pid>/stat: CPU used, not time waited -- the figure a busy machine distorts least), Redis's INFO
    commandstats (calls per command, a script's own commands counted too), used_memory, and the message
    streams' entries-added (mp:{s}:mq summed over the shards: one per stored message), each stamped with CLOCK_MONOTONIC -- the clock magpie-bench's
    steps are timed with (t0_ns, report_ns in each step of its JSON) -- so each step's work per stored
    message can be cut out of the series afterwards (window()), without the connecting and the idle time."""

    def __init__(self, stack, every=0.25):
        import threading
        self.stack = stack
        self.every = every
        self.samples = []
        self.procs = [("redis", os.path.join(stack.dir, "redis", "redis.pid"))]
        for i in range(1, len(stack.push_ports) + 1):
            self.procs.append(("push%d" % i, os.path.join(stack.dir, "pids", "push%d.pid" % i)))
        self.procs += [("mariadb", os.path.join(stack.dir, "mariadb", "mysqld.pid")),
                       ("persist", os.path.join(stack.dir, "pids", "persist.pid")),
                       ("notify", os.path.join(stack.dir, "pids", "notify.pid"))]
        self.pids = {name: read_pid(path) for name, path in self.procs}
        self.pids = {k: v for k, v in self.pids.items() if v}
        self.errors = 0
        self.last_error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self):
        # One snapshot: Redis's counters and the stream's count from one pipelined pair of commands (a busy
        # Redis may answer a second late; both figures are from the same moment), then at once the CPU
        # times, stamped when they were read.
        if not hasattr(self, "mq_keys"):
            self.mq_keys = shard_keys(self.stack.redis_port, "mq")
        replies = resp_pipeline(self.stack.redis_port, [("INFO", "commandstats", "memory")] +
                                [("XINFO", "STREAM", k) for k in self.mq_keys])
        info, xs = replies[0], replies[1:]
        cpu = {k: proc_cpu_ticks(p) for k, p in self.pids.items()}
        t = time.monotonic_ns()
        cmds, mem, added = {}, 0, None
        for line in info.splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[8:].split(":", 1)
                kv = dict(x.split("=", 1) for x in rest.split(","))
                cmds[name] = int(kv["calls"])
            elif line.startswith("used_memory:"):
                mem = int(line.split(":")[1])
        added = added_sum(xs)
        self.samples.append({"t": t, "cpu": cpu, "cmds": cmds, "mem": mem, "mq_added": added})

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.sample()
            except (OSError, RuntimeError, ValueError) as e:
                self.errors += 1
                self.last_error = repr(e)
            self._stop.wait(self.every)

    def start(self):
        self.sample()
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.sample()

    def window(self, t0, t1):
        """Work between CLOCK_MONOTONIC t0 and t1 (ns), from the first sample at or after t0 to the last at or
        before t1 (inside the window, so a neighbouring step's work never counts): messages stored, and per
        stored message the CPU of each process (µs), Redis commands by name, and Redis memory (bytes). The
        same stretch of time for the work and the messages: a steady state's cost per message."""
        inside = [s for s in self.samples if t0 <= s["t"] <= t1]
        if len(inside) < 2:
            return None
        a, b = inside[0], inside[-1]
        if a["mq_added"] is None or b["mq_added"] is None:
            return None
        n = b["mq_added"] - a["mq_added"]
        hz = os.sysconf("SC_CLK_TCK")
        secs = (b["t"] - a["t"]) / 1e9
        out = {"seconds": round(secs, 2), "stored": n,
               "cores": {k: round((b["cpu"][k] - a["cpu"][k]) / hz / secs, 3) for k in a["cpu"]
                         if a["cpu"][k] is not None and b["cpu"].get(k) is not None and secs > 0}}
        if n > 0:
            out["cpu_us_per_message"] = {k: round((b["cpu"][k] - a["cpu"][k]) / hz * 1e6 / n, 1) for k in a["cpu"]
                                         if a["cpu"][k] is not None and b["cpu"].get(k) is not None}
            out["cpu_us_per_message"]["total"] = round(sum(out["cpu_us_per_message"].values()), 1)
            calls = {k: (b["cmds"].get(k, 0) - a["cmds"].get(k, 0)) / n for k in b["cmds"]}
            out["redis_calls_per_message"] = {k: round(v, 2) for k, v in sorted(calls.items()) if v >= 0.05}
            out["redis_commands_per_message"] = round(sum(v for k, v in calls.items()
                                                          if k not in ("evalsha", "eval", "info", "xinfo|stream",
                                                                       "xinfo")), 1)
            out["redis_memory_bytes_per_message"] = round((b["mem"] - a["mem"]) / n)
        return out
