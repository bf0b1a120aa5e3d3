"""magpie-http's FastCGI front-end with connections the web server keeps (FCGI_KEEP_CONN, nginx's
fastcgi_keep_conn): request after request on one connection, and an idle kept connection holds no handler
thread (http/fcgi_front.c). Spoken here with a small FastCGI client of our own, to a magpie-http with two
handler threads: with a thread parked on each kept connection, the third connection would never be served."""
import json
import os
import re
import socket
import struct
import time

from http_client import Client, ExtraHttp, test_token, unique_uid

BEGIN, END, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6


def record(rtype, content=b"", rid=1):
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), 0, 0) + content


def pair(name, value):
    def n(x):
        return bytes([len(x)]) if len(x) < 128 else struct.pack(">I", len(x) | 0x80000000)
    return n(name) + n(value) + name + value


def request(method, uri, body=b"", headers=None, keep=True):
    env = {"REQUEST_METHOD": method, "DOCUMENT_URI": uri, "REQUEST_URI": uri, "CONTENT_LENGTH": str(len(body)),
           "REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "127.0.0.1"}
    env.update(headers or {})
    params = b"".join(pair(k.encode(), v.encode()) for k, v in env.items())
    out = record(BEGIN, struct.pack(">HB5x", 1, 1 if keep else 0)) + record(PARAMS, params) + record(PARAMS)
    for i in range(0, len(body), 60000):
        out += record(STDIN, body[i:i + 60000])
    return out + record(STDIN)


def answer(s, timeout=5):
    """(status, JSON body) of the next answer on s; raises EOFError if s closes first."""
    s.settimeout(timeout)
    buf, stdout = b"", b""
    while True:
        while len(buf) < 8:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("closed before the answer")
            buf += chunk
        _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", buf[:8])
        while len(buf) < 8 + clen + plen:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("closed in a record")
            buf += chunk
        content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
        if rtype == STDOUT:
            stdout += content
        elif rtype == END:
            assert buf == b"", "bytes after FCGI_END_REQUEST"
            head, _, body = stdout.partition(b"\r\n\r\n")
            return int(re.search(rb"Status: (\d+)", head).group(1)), json.loads(body)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def closed(s, timeout=5):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def start(stack, name):
    sock = os.path.join(stack.run, f"{name}.sock")
    h = ExtraHttp(stack, name, fcgi_socket=sock, env={"MAGPIE_HTTP_THREADS": "2",
                                                     "MAGPIE_HTTP_MAX_BODY": "1024"}).start()
    return h, sock


def test_request_after_request_on_one_kept_connection(stack):
    h, sock = start(stack, "http-keep")
    try:
        token = test_token(Client(h.url), unique_uid())
        auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        s = connect(sock)
        for _ in range(3):
            s.sendall(request("GET", "/healthz"))
            assert answer(s) == (200, {"code": 0, "message": "ok", "result": {"redis": "ok", "mysql": "ok"}})
            s.sendall(request("POST", "/IM/token", headers=auth))
            status, body = answer(s)
            assert status == 200 and body["code"] == 0 and body["result"]["wstoken"].startswith("eyJ"), body
            # a body (read, unknown fields ignored), then a request refused before its body is looked at:
            # the next request on the connection still starts where it should
            s.sendall(request("POST", "/IM/token", b'{"unknown": "' + b"x" * 900 + b'"}', headers=auth))
            status, body = answer(s)
            assert status == 200 and body["code"] == 0, body
            s.sendall(request("POST", "/IM/token", b'{"a": 1}', headers={"HTTP_AUTHORIZATION": "Bearer nope"}))
            assert answer(s)[1]["code"] == 13
        # Over http.max_body: answered 413 (code 16), then the connection is closed rather than read further.
        s.sendall(request("POST", "/IM/token", b"x" * 3000, headers=auth))
        assert answer(s) == (413, {"code": 16, "message": "request body too large", "result": None})
        assert closed(s)
        s.close()
    finally:
        h.stop()


def test_idle_kept_connections_hold_no_thread(stack):
    h, sock = start(stack, "http-keep-idle")
    try:
        idle = []
        for _ in range(4):  # twice http.threads, each left open and idle after one request
            s = connect(sock)
            s.sendall(request("GET", "/healthz"))
            assert answer(s)[0] == 200
            idle.append(s)
        t0 = time.time()
        fresh = connect(sock)
        fresh.sendall(request("GET", "/healthz", keep=False))
        assert answer(fresh, timeout=3)[0] == 200 and time.time() - t0 < 2
        assert closed(fresh), "a connection the web server does not keep is closed after its answer"
        for s in reversed(idle):  # every idle one still serves its next request
            s.sendall(request("GET", "/healthz"))
            assert answer(s, timeout=3)[0] == 200
            s.close()
        fresh.close()
    finally:
        h.stop()
