"""Shared pieces of bench/run, bench/compare and bench/smoke (standard library only; run with /usr/bin/python3).

- Peers: nats-server (WebSocket listener) and nginx with nchan, started from the configs in bench/peers/ in a
  run directory of their own, on free loopback ports, and stopped by their pid files (nothing else).
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
    """nats-server and nginx+nchan in run_dir, each on free ports."""

    def __init__(self, run_dir):
        self.dir = run_dir
        self.nats = None
        self.nchan = None
        os.makedirs(run_dir, exist_ok=True)

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
        "versions": {p: _deb_version(p) for p in ("nats-server", "nginx", "libnginx-mod-nchan", "libwebsockets17",
                                                  "libuv1", "redis-server", "libhiredis0.14")},
    }
