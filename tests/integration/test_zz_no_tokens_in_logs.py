"""Runs last (pytest takes files in name order): no log of the stack holds a token (SPEC §3: tokens never
appear in any log line, nginx's access log included).

Two checks over every file under the stack's logs/ and nginx/ (and Redis' and MariaDB's logs):
- every secret the API handed out during the whole suite (http_client.ISSUED: login tokens, WebSocket
  tickets, QR session tokens, browser cookies) is absent;
- nothing shaped like a token is present at all: a JWT, or a token-bearing path (/session_login/<hex>,
  /scan_pc/<hex>, /pc_session/<hex>, /ws/<ticket>, ?token=), whoever issued it.
"""
import os
import re

from http_client import ISSUED, JWT_RE

TOKEN_PATHS = re.compile(rb"/(session_login|scan_pc|pc_session)/[0-9a-f]{32}|/ws/eyJ|[?&]token=eyJ")
SKIP = {"sms.txt"}  # the SMS sink: phone numbers and codes by design, no tokens


def log_files(run):
    roots = [os.path.join(run, "logs"), os.path.join(run, "nginx")]
    files = [os.path.join(run, "redis", "redis.log"), os.path.join(run, "mariadb", "error.log")]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "tmp"]  # nginx's request body buffers, not logs
            for name in filenames:
                if name in SKIP or name.endswith((".pid", ".conf", ".sock")):
                    continue
                files.append(os.path.join(dirpath, name))
    return [f for f in files if os.path.isfile(f)]


def test_no_issued_token_in_any_log(stack):
    files = log_files(stack.run)
    assert any(f.endswith("access.log") for f in files), files
    assert any(os.path.basename(f) == "http.log" for f in files), files
    issued = sorted(ISSUED)
    found = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        for token in issued:
            if token.encode() in data:
                found.append((path, token[:12] + "..."))
        for m in JWT_RE.finditer(data):
            found.append((path, "a JWT: " + m.group(0)[:16].decode() + "..."))
        for m in TOKEN_PATHS.finditer(data):
            found.append((path, "a token path: " + m.group(0)[:24].decode() + "..."))
    assert found == [], found[:20]


def test_the_registry_saw_the_suite(stack):
    """The check above is only as good as the registry: when the HTTP tests ran, it holds their tokens."""
    import sys
    if not any(name.startswith("test_http_") for name in sys.modules):
        return
    kinds = {"jwt": 0, "hex": 0}
    for t in ISSUED:
        kinds["jwt" if t.startswith("eyJ") else "hex"] += 1
    assert kinds["jwt"] > 100 and kinds["hex"] > 100, kinds
