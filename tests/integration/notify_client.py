"""Helpers of the offline-notification tests: a real webhook receiver (http.server in a thread) that can be
told to misbehave, and a magpie-notify started by the test with short timings (the stack's own keeps the
defaults and posts to NOTIFY_PORT, where nothing listens)."""
import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from magpie_stack import _alive, free_port, metrics, stop_process
import rkeys

KEY_NOTIFY = "notify"            # per shard: rkeys.every(r, KEY_NOTIFY), rkeys.xrange_all
KEY_NOTIFY_DEAD = "notify:dead"


def notify_secret(stack):
    return stack.secrets["NOTIFY_SECRET"]


def signature(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Receiver:
    """A webhook receiver on a free loopback port. mode: "ok" (200), "500", "slow" (answers after
    `delay` s), "redirect" (302 to itself), "big" (status `big_status` with a 10 MiB body), "loris" (status
    line, then one header byte every 0.2 s, forever), "down" (the listening socket is closed)."""

    def __init__(self, port=None, mode="ok", delay=0.0, tls=None):
        self.tls = tls  # (certificate file, key file): an https receiver
        self.port = port or free_port()
        self.mode = mode
        self.delay = delay
        self.big_status = 500
        self.batches = []  # (signature header, raw body, parsed events, monotonic time)
        self.requests = 0
        self.lock = threading.Lock()
        self.server = None
        self.up()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def up(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = receiver.mode
                with receiver.lock:
                    receiver.requests += 1
                if mode == "ok" or mode == "slow":
                    if mode == "slow":
                        time.sleep(receiver.delay)
                    with receiver.lock:
                        receiver.batches.append((self.headers.get("X-Magpie-Signature"), body,
                                                 json.loads(body), time.monotonic()))
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                elif mode == "500":
                    self.send_response(500)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"oops")
                elif mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", receiver.url)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif mode == "big":
                    self.send_response(receiver.big_status)
                    self.send_header("Content-Length", str(10 << 20))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        for _ in range(160):
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                elif mode == "loris":
                    try:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for _ in range(600):
                            self.wfile.write(b"X")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self, to=None):
        """Every event received, in arrival order (to: only those of these recipients)."""
        with self.lock:
            out = [e for _, _, evs, _ in self.batches for e in evs]
        if to is not None:
            to = set(to) if isinstance(to, (set, list, tuple)) else {to}
            out = [e for e in out if e["to"] in to]
        return out

    def close(self):
        self.down()


class NotifyDaemon:
    """A magpie-notify started by the test on the stack's Redis, posting to url, with short timings. Its own
    consumer name, so the stack's magpie-notify (stopped meanwhile by the fixture) keeps its pending list."""

    def __init__(self, stack, url, name="notify-test", **overrides):
        self.stack = stack
        self.name = name
        self.log = os.path.join(stack.run, "logs", f"{name}.log")
        self.metrics_port = free_port()
        self.env = dict(os.environ)
        settings = {"webhook_url": url, "consumer": name, "metrics_listen": f"127.0.0.1:{self.metrics_port}",
                    "timeout_ms": 1000, "retry_base_ms": 100, "retry_max_ms": 1000, "claim_idle_ms": 3000,
                    "block_ms": 200}
        settings.update(overrides)
        for k, v in settings.items():
            self.env[f"MAGPIE_NOTIFY_{k.upper()}"] = str(v)
        self.env["MAGPIE_LOG_FILE"] = self.log
        self.start()

    def start(self):
        out = open(os.path.join(self.stack.run, "logs", f"{self.name}.out"), "ab")
        self.proc = subprocess.Popen([self.stack.bin("notify/magpie-notify"), "-c", self.stack.conf_path],
                                     env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, f"magpie-notify exited with {self.proc.returncode}; see {self.log}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"magpie-notify did not become healthy; see {self.log}")

    def metric(self, name):
        return metrics(self.metrics_port).get(name, 0.0)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        return stop_process(self.proc, timeout=15)


def closed_port():
    """A loopback port nobody listens on (connections are refused at once)."""
    s = socket.socket()
    s.bind(("127.0.0.1", free_port()))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout, what, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def queued(stack, to):
    """Entries of the notification streams (not yet delivered) for recipient to."""
    r = stack.redis()
    return [f for _, f in rkeys.xrange_all(r, KEY_NOTIFY) if f.get("to") == str(to)]


def stack_notify_running(stack):
    return stack.daemon_pid("notify") is not None and _alive(stack.daemon_pid("notify"))


def self_signed_cert(directory):
    """A certificate for 127.0.0.1 (IP SAN) and its key, made with openssl: (cert file, key file)."""
    cert, key = os.path.join(directory, "hook.crt"), os.path.join(directory, "hook.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key
