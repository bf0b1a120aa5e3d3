"""The QR long poll must not starve the handlers (issue 3): a thousand browsers waiting cost no threads;
http.max_long_polls bounds them; on SIGTERM every waiter is answered."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import time

import pytest

from http_client import Client, ExtraHttp, Front, FRONTS, front, login, test_token, unique_uid, wait_until  # noqa: F401

WAITERS = 1000


def waiting_polls(stack):
    text = Client(stack.http_url, ip="127.0.0.1").get("/metrics").text
    m = re.search(r"^magpie_http_long_polls (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def open_polls(base_url, ip, cookie, tokens):
    """Start one raw HTTP long poll per token; returns the sockets (answers not read yet)."""
    host, port = base_url.split("//")[1].split(":")
    socks = []
    for t in tokens:
        s = socket.create_connection((host, int(port)), timeout=10, source_address=(ip, 0))
        s.sendall((f"POST /session_login/{t} HTTP/1.1\r\nHost: {host}\r\nCookie: mp_pc={cookie}\r\n"
                   f"Content-Length: 0\r\n\r\n").encode())
        socks.append(s)
    return socks


def read_answer(s, timeout=10):
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += s.recv(4096)
    return json.loads(body)


def test_a_thousand_waiting_polls_do_not_starve_logins(stack, front):
    web = Client(front.url)
    tokens = [web.post("/pc_session").result["token"] for _ in range(WAITERS)]
    cookie = web.s.cookies.get("mp_pc")
    before = waiting_polls(stack)
    socks = open_polls(front.url, web.ip, cookie, tokens)
    try:
        wait_until(lambda: waiting_polls(stack) >= before + WAITERS, timeout=60, what="all polls parked")
        # Everything else still runs at once: SMS login, tickets, /me -- far quicker than a long poll.
        app = Client(front.url)
        slowest = 0.0
        for _ in range(20):
            t0 = time.time()
            uid, token = login(app, stack)
            assert app.post("/IM/token", token=token).code == 0
            assert app.get("/me", token=token).result["userId"] == uid
            slowest = max(slowest, time.time() - t0)
        assert slowest < 5, f"a login took {slowest:.1f} s while {WAITERS} polls waited"
        # None of the waiting polls has been answered.
        readable, _, _ = select.select(socks, [], [], 0)
        assert readable == []
        # One of them gets its answer as soon as its session is scanned.
        phone = Client(front.url)
        _, pt = login(phone, stack)
        t0 = time.time()
        assert phone.post(f"/scan_pc/{tokens[WAITERS // 2]}", token=pt).code == 0
        answer = read_answer(socks[WAITERS // 2])
        assert answer["code"] == 9 and time.time() - t0 < 3
        readable, _, _ = select.select(socks, [], [], 0.2)
        assert readable == [], "a scan woke polls of other sessions"
    finally:
        for s in socks:
            s.close()


def test_max_long_polls_answers_at_once(stack):
    with ExtraHttp(stack, "http-lp-max", {"MAGPIE_HTTP_MAX_LONG_POLLS": "3"}) as h:
        web = Client(h.url)
        tokens = [web.post("/pc_session").result["token"] for _ in range(4)]
        socks = open_polls(h.url, web.ip, web.s.cookies.get("mp_pc"), tokens[:3])
        try:
            time.sleep(0.5)
            assert select.select(socks, [], [], 0)[0] == []
            t0 = time.time()
            r = web.post(f"/session_login/{tokens[3]}")
            assert r.code == 10 and time.time() - t0 < 1, r
            metrics = Client(h.url).get("/metrics").text
            assert "magpie_http_long_polls_refused_total 1" in metrics
            assert "magpie_http_long_polls 3" in metrics
        finally:
            for s in socks:
                s.close()


def cgi_fcgi(sock_path, method, uri, body=b"", extra_env=None):
    """One request over FastCGI with libfcgi's own client (cgi-fcgi); returns the Popen."""
    env = {"REQUEST_METHOD": method, "DOCUMENT_URI": uri, "REQUEST_URI": uri, "CONTENT_LENGTH": str(len(body)),
           "REMOTE_ADDR": "127.0.0.1", "PATH": os.environ["PATH"]}
    env.update(extra_env or {})
    p = subprocess.Popen(["cgi-fcgi", "-bind", "-connect", sock_path], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(body)
    p.stdin.close()
    return p


def fcgi_answer(p, timeout=15):
    """(HTTP status, JSON body) of a cgi-fcgi request; (0, None) when it got no answer (no server)."""
    out = p.stdout.read() if p.wait(timeout) is not None else b""
    head, _, body = out.partition(b"\r\n\r\n")
    m = re.search(rb"Status: (\d+)", head)
    if m is None:
        return 0, None
    return int(m.group(1)), json.loads(body) if body else None


def test_sigterm_answers_every_waiting_poll_on_both_front_ends(stack):
    sock = os.path.join(stack.run, "http-lp-term.sock")
    h = ExtraHttp(stack, "http-lp-term", fcgi_socket=sock).start()
    try:
        web = Client(h.url)
        tokens = [web.post("/pc_session").result["token"] for _ in range(10)]
        cookie = web.s.cookies.get("mp_pc")
        socks = open_polls(h.url, web.ip, cookie, tokens[:5])
        fcgi = [cgi_fcgi(sock, "POST", f"/session_login/{t}", extra_env={"HTTP_COOKIE": f"mp_pc={cookie}"})
                for t in tokens[5:]]
        wait_until(lambda: "magpie_http_long_polls 10" in Client(h.url).get("/metrics").text, timeout=20,
                   what="10 polls parked")
        rc, took = h.stop(signal.SIGTERM)
        assert rc == 0 and took < 5, (rc, took)
        for s in socks:
            assert read_answer(s, timeout=1)["code"] == 10
            s.close()
        for p in fcgi:
            status, body = fcgi_answer(p, timeout=5)
            assert status == 200 and body["code"] == 10
        log = h.log_text()
        assert "stopping signal=15 waiting_long_polls=10" in log and "INFO http stopped" in log
        assert not os.path.exists(sock), "the FastCGI socket was left behind"
    finally:
        h.stop(signal.SIGKILL)
