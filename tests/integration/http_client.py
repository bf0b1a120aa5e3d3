"""Clients of magpie-http for the integration tests, and the registry of every token the API issued.

- FRONTS / the `front` fixture: the two front-ends every acceptance test runs through: "nginx" (nginx ->
  FastCGI, the production path) and "standalone" (magpie-http's libmicrohttpd listener).
- Client: one HTTP client -- a browser or a phone -- with its own cookie jar and its own loopback source
  address (127.x.y.z), so per-IP limits and "the IP the phone sees" belong to one client.
- ISSUED: every login token, WebSocket ticket, QR session token and browser cookie that came back from the
  API during the run. test_zz_no_tokens_in_logs.py greps every log file for them at the end of the suite.
  Tests of other components that get tokens some other way should call remember(token).
- ExtraHttp: a second magpie-http with its own settings (a short long poll, a tiny max_long_polls, an SMS
  command...), standalone on a free port, logging into the stack's logs/ (so the log check covers it).
"""
import concurrent.futures
import itertools
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

from magpie_stack import free_port, stop_process

ISSUED = set()
_issued_lock = threading.Lock()


def remember(value):
    """Record a secret the API handed out (token, ticket, session token, cookie)."""
    if isinstance(value, str) and len(value) >= 16:
        with _issued_lock:
            ISSUED.add(value)


FRONTS = ["nginx", "standalone"]


class Front:
    def __init__(self, stack, name):
        self.name = name
        self.url = stack.nginx_url if name == "nginx" else stack.http_url

    def __repr__(self):
        return self.name


@pytest.fixture(params=FRONTS)
def front(request, stack):
    return Front(stack, request.param)


# ---- clients -------------------------------------------------------------------------------------------

_ip_counter = itertools.count(random.randrange(1, 40) * 1000)


def new_ip():
    """A loopback address no other client of this run uses (127.100.0.0/16 .. 127.199.0.0/16)."""
    n = next(_ip_counter)
    # The last octet runs 1..254 (never .0 or .255), so consecutive numbers never share an address.
    return f"127.{100 + (n // (254 * 256)) % 100}.{(n // 254) % 256}.{n % 254 + 1}"


class _SourceAddress(HTTPAdapter):
    def __init__(self, ip, **kw):
        self._ip = ip
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self._ip, 0)
        super().init_poolmanager(*args, **kw)


class Reply:
    def __init__(self, resp):
        self.status = resp.status_code
        self.headers = resp.headers
        self.content = resp.content
        self.text = resp.text
        try:
            self.json = resp.json()
        except ValueError:
            self.json = None

    @property
    def code(self):
        return self.json.get("code") if isinstance(self.json, dict) else None

    @property
    def result(self):
        return self.json.get("result") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.text[:200]!r}>"


def _harvest(reply, cookies):
    """Remember every secret in a reply."""
    remember(reply.headers.get("authToken"))
    body = reply.json if isinstance(reply.json, dict) else {}
    for part in (body, body.get("result"), body.get("data")):
        if isinstance(part, dict):
            for key in ("token", "wstoken"):
                remember(part.get(key))
        elif isinstance(part, str):
            remember(part)
    for c in cookies:
        remember(c.value)


class Client:
    """One browser or phone talking to one front-end."""

    def __init__(self, base_url, ua="MagpieTest/1.0", ip=None):
        self.base = base_url
        self.ip = ip or new_ip()
        self.ua = ua
        self.s = requests.Session()
        self.s.mount("http://", _SourceAddress(self.ip))
        self.s.headers["User-Agent"] = ua

    def call(self, method, path, body=None, *, token=None, key=None, headers=None, raw=None, timeout=30):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if key is not None:
            h["Authorization"] = f"Key {key}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        resp = self.s.request(method, self.base + path, data=data, headers=h, timeout=timeout)
        reply = Reply(resp)
        _harvest(reply, self.s.cookies)
        return reply

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def close(self):
        self.s.close()


# ---- logging in ----------------------------------------------------------------------------------------

_mobiles = set()


def new_mobile():
    while True:
        m = "139" + "".join(random.choice("0123456789") for _ in range(8))
        if m not in _mobiles:
            _mobiles.add(m)
            return m


def sms_lines(stack, mobile):
    """The codes the SMS sink received for a mobile, oldest first."""
    try:
        with open(stack.conf["sms.sink_file"]) as f:
            return [line.split()[1] for line in f if line.split() and line.split()[0] == mobile]
    except FileNotFoundError:
        return []


def login(client, stack, mobile=None):
    """Log in by SMS like an app: /send_code, read the code from the sink, /login. Returns (uid, token)."""
    mobile = mobile or new_mobile()
    r = client.post("/send_code", {"mobile": mobile})
    assert r.status == 200 and r.code == 0, r
    code = sms_lines(stack, mobile)[-1]
    r = client.post("/login", {"mobile": mobile, "code": code})
    assert r.status == 200 and r.code == 0, r
    return r.result["userId"], r.result["token"]


def test_token(client, uid):
    """A login token for any uid from /tk (the test stack enables it)."""
    r = client.post("/tk", {"uid": uid})
    assert r.status == 200 and r.json["code"] == 1, r
    return r.json["data"]


test_token.__test__ = False  # a helper, not a test


def unique_uid():
    """A user id no other test uses (tokens from /tk need no users row)."""
    return random.randrange(10**9, 2 * 10**9)


def parallel(fn, args, workers=50):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, args))


# ---- the Redis bus, as magpie-push sees it ---------------------------------------------------------------

class BusListener:
    """Subscribe to channels (patterns allowed) before an action; collect what arrives."""

    def __init__(self, stack, *patterns):
        import redis
        self.r = redis.Redis(host="127.0.0.1", port=stack.redis_any_port(), socket_timeout=5)
        self.p = self.r.pubsub(ignore_subscribe_messages=True)
        self.p.psubscribe(*patterns)
        # Wait for the subscription to be active (the confirmation arrives as a message we skip).
        deadline = time.time() + 5
        while time.time() < deadline and not self.p.subscribed:
            self.p.get_message(timeout=0.1)
        self.p.get_message(timeout=0.1)

    def next(self, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.p.get_message(timeout=0.2)
            if m is not None and m["type"] in ("message", "pmessage"):
                return m["channel"].decode(), m["data"]
        return None

    def close(self):
        self.p.close()
        self.r.close()


def broadcast_room_req():
    """The BroadcastRoomReq message class of shared/room.proto, built without protoc (not in Debian's test
    packages): field numbers exactly as the .proto file has them."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    fdp = descriptor_pb2.FileDescriptorProto(name="magpie_room_test.proto", package="magpietest", syntax="proto3")
    m = fdp.message_type.add(name="BroadcastRoomReq")
    F = descriptor_pb2.FieldDescriptorProto
    m.field.add(name="roomID", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="msgLv", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    m.field.add(name="data", number=3, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("magpietest.BroadcastRoomReq")
    return message_factory.MessageFactory(pool).GetPrototype(desc)


# ---- a second magpie-http with its own settings ----------------------------------------------------------

class ExtraHttp:
    """magpie-http started by a test with config overrides (MAGPIE_<SECTION>_<KEY>), standalone only unless
    fcgi_socket is given. Its log is logs/<name>.log in the stack, so the end-of-suite log check sees it."""

    def __init__(self, stack, name, env=None, fcgi_socket="", argv_prefix=None, listen=True):
        self.stack = stack
        self.name = name
        self.port = free_port() if listen else None
        self.url = f"http://127.0.0.1:{self.port}" if listen else None
        self.log = os.path.join(stack.run, "logs", f"{name}.log")
        e = dict(os.environ)
        e.update({
            "MAGPIE_HTTP_LISTEN": f"127.0.0.1:{self.port}" if listen else "",
            "MAGPIE_HTTP_FCGI_SOCKET": fcgi_socket,
            "MAGPIE_LOG_FILE": self.log,
            "MAGPIE_LOG_LEVEL": "debug",
        })
        e.update(env or {})
        self.env = e
        self.argv = (argv_prefix or []) + [stack.bin("http/magpie-http"), "-c", stack.conf_path]
        self.proc = None

    def start(self, wait=True):
        out = open(os.path.join(self.stack.run, "logs", f"{self.name}.out"), "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        out.close()
        if wait and self.url:
            deadline = time.time() + 20
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
                try:
                    requests.get(self.url + "/healthz", timeout=1)
                    return self
                except requests.RequestException:
                    time.sleep(0.1)
            raise TimeoutError(f"{self.name} did not answer on {self.url}")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal it and wait; returns (exit status, seconds it took)."""
        return stop_process(self.proc, sig, timeout)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- MariaDB outages (the stack helper has Redis only) ----------------------------------------------------

def stop_mariadb(stack):
    sock = os.path.join(stack.run, "mariadb", "mysqld.sock")
    subprocess.run(["mariadb-admin", "--no-defaults", "-S", sock, "-u", "root", "shutdown"], capture_output=True,
                   timeout=60)
    stack._wait(lambda: not _mysql_up(stack), "mariadb to stop", timeout=60)


def start_mariadb(stack):
    """Start MariaDB exactly as scripts/dev does (scripts/lib/stack.sh: start_mariadb)."""
    script = ('set -e; . "$REPO/scripts/lib/stack.sh"; load_dev_env; ensure_secrets; start_mariadb')
    env = dict(os.environ, REPO=stack.repo, RUN=stack.run)
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True, timeout=120)
    stack._wait(lambda: _mysql_up(stack), "mariadb to start", timeout=60)


def _mysql_up(stack):
    try:
        stack.mysql(connect_timeout=1).close()
        return True
    except Exception:
        return False


def wait_until(cond, timeout=15, step=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"timed out waiting for {what}")


JWT_RE = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
