"""magpie-http as a process (SPEC §2, §9): its FastCGI socket (created with the configured mode, or inherited
on fd 0 from spawn-fcgi), config errors at start, SIGHUP, and nginx's answer while it is down."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest
import requests

from http_client import Client, ExtraHttp, free_port, login, test_token, unique_uid, wait_until
from test_http_longpoll import cgi_fcgi, fcgi_answer


def http_up(url):
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_the_stack_socket_has_the_configured_mode(stack):
    st = os.stat(os.path.join(stack.run, "http.sock"))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666  # http.fcgi_socket_mode in the dev stack


def test_own_socket_mode_and_fastcgi_requests(stack):
    sock = os.path.join(stack.run, "http-mode.sock")
    with ExtraHttp(stack, "http-mode", {"MAGPIE_HTTP_FCGI_SOCKET_MODE": "0600"}, fcgi_socket=sock, listen=False):
        wait_until(lambda: os.path.exists(sock), what="the socket")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        status, body = fcgi_answer(cgi_fcgi(sock, "GET", "/healthz"))
        assert status == 200 and body["code"] == 0
        payload = json.dumps({"uid": unique_uid()}).encode()
        status, body = fcgi_answer(cgi_fcgi(sock, "POST", "/tk", payload))
        assert status == 200 and body["code"] == 1


def test_a_stale_socket_is_replaced_but_a_live_one_is_not_stolen(stack):
    sock = os.path.join(stack.run, "http-stale.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)
    stale.close()  # the file stays, nobody listens: what a crash leaves
    first = ExtraHttp(stack, "http-stale", fcgi_socket=sock, listen=False).start(wait=False)
    try:
        wait_until(lambda: fcgi_answer(cgi_fcgi(sock, "GET", "/healthz"))[0] == 200, what="the first instance")
        second = ExtraHttp(stack, "http-stale-2", fcgi_socket=sock, listen=False).start(wait=False)
        assert second.proc.wait(10) != 0
        assert "another process is serving http.fcgi_socket" in second.log_text()
        assert fcgi_answer(cgi_fcgi(sock, "GET", "/healthz"))[0] == 200
    finally:
        first.stop()


def test_inherited_socket_from_spawn_fcgi(stack):
    sock = os.path.join(stack.run, "http-spawned.sock")
    h = ExtraHttp(stack, "http-spawned", listen=False,
                  argv_prefix=["spawn-fcgi", "-n", "-s", sock, "-M", "0600", "--"])
    h.start(wait=False)
    try:
        wait_until(lambda: os.path.exists(sock), what="spawn-fcgi's socket")
        status, body = fcgi_answer(cgi_fcgi(sock, "GET", "/healthz"))
        assert status == 200 and body["result"] == {"redis": "ok", "mysql": "ok"}
        assert "fastcgi listening on the inherited socket fd=0" in h.log_text()
        rc, took = h.stop()
        assert rc == 0 and took < 5
    finally:
        h.stop(signal.SIGKILL)
        if os.path.exists(sock):
            os.unlink(sock)


@pytest.mark.parametrize("allowed,served", [("127.0.0.1", True), ("10.0.0.1, 127.0.0.2", False)])
def test_fcgi_web_server_addrs_limits_who_may_connect_on_tcp(stack, allowed, served):
    """spawn-fcgi on a TCP port with libfcgi's FCGI_WEB_SERVER_ADDRS: only the listed addresses are served
    (magpie-http accepts connections itself, so it applies the list itself)."""
    port = free_port()
    h = ExtraHttp(stack, "http-tcp-addrs", {"FCGI_WEB_SERVER_ADDRS": allowed}, listen=False,
                  argv_prefix=["spawn-fcgi", "-n", "-a", "127.0.0.1", "-p", str(port), "--"])
    h.start(wait=False)
    try:
        wait_until(lambda: "fastcgi listening on the inherited socket fd=0" in h.log_text(), what="the listener")
        status, body = fcgi_answer(cgi_fcgi(f"127.0.0.1:{port}", "GET", "/healthz"))
        if served:
            assert status == 200 and body["code"] == 0
        else:
            assert status == 0
            wait_until(lambda: "not from FCGI_WEB_SERVER_ADDRS" in h.log_text(), what="the refusal logged")
        rc, _ = h.stop()
        assert rc == 0
    finally:
        h.stop(signal.SIGKILL)


@pytest.mark.parametrize("env,message", [
    ({"MAGPIE_AUTH_SECRET": "short"}, "MAGPIE_AUTH_SECRET"),
    ({"MAGPIE_HTTP_LISTEN": "nonsense"}, "MAGPIE_HTTP_LISTEN"),
    ({"MAGPIE_HTTP_CLIENT_TIMEOUT_S": "20"}, "must exceed http.long_poll_s"),
    ({"MAGPIE_HTTP_LISTEN": "", "MAGPIE_HTTP_FCGI_SOCKET": ""}, "nothing to serve"),
])
def test_bad_config_stops_it_at_start(stack, env, message):
    h = ExtraHttp(stack, "http-badconf", env)
    h.start(wait=False)
    rc = h.proc.wait(10)
    out = open(os.path.join(stack.run, "logs", "http-badconf.out")).read() + h.log_text()
    assert rc != 0
    assert message in out


def test_port_in_use(stack):
    h = ExtraHttp(stack, "http-port-used", {"MAGPIE_HTTP_LISTEN": f"127.0.0.1:{stack.http_port}"})
    h.start(wait=False)
    assert h.proc.wait(10) != 0
    assert "cannot listen" in h.log_text()


def test_check_config_flag(stack):
    out = subprocess.run([stack.bin("http/magpie-http"), "-c", stack.conf_path, "-t"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0 and "configuration ok" in out.stdout


def test_sighup_reopens_the_log(stack):
    with ExtraHttp(stack, "http-hup") as h:
        rotated = h.log + ".1"
        os.rename(h.log, rotated)
        h.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: os.path.exists(h.log) and "log reopened" in h.log_text(), what="a new log file")
        Client(h.url).get("/healthz")
        wait_until(lambda: "endpoint=/healthz" in h.log_text(), what="request lines in the new file")
        os.unlink(rotated)


def test_nginx_answers_503_while_magpie_http_is_down(stack):
    web = Client(stack.nginx_url)
    token = web.post("/pc_session").result["token"]
    stack.kill_daemon("http")
    try:
        r = web.post(f"/session_login/{token}")
        assert r.status == 503 and r.code == 20, r
        r = web.post("/msg", {"to": 1, "msg": "x"}, key=stack.api_key)
        assert r.status == 503 and r.json == {"code": 0, "msg": "service unavailable, retry later"}, r
    finally:
        stack.start_daemon("http")
        wait_until(lambda: http_up(stack.http_url), timeout=30, what="magpie-http back")
    wait_until(lambda: web.get("/healthz").status == 200, what="nginx reaching it again")
    assert web.get(f"/pc_session/{token}/qr.svg").status == 200  # the session lived through it
