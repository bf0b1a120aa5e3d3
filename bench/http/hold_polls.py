#!/usr/bin/python3
"""Hold N QR long polls open against a magpie-http front-end, the way N browsers showing a QR code do:
create N sessions (one browser cookie), POST /session_login/<token> on N keep-alive connections, and poll
again whenever one answers (code 10 after http.long_poll_s). Prints "READY n" once all N requests are sent,
then runs until SIGTERM/SIGINT.

usage: hold_polls.py BASE_URL N
"""
import http.client
import json
import selectors
import signal
import socket
import sys


def create_sessions(host, port, n):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    cookie, tokens = None, []
    for _ in range(n):
        headers = {"Content-Length": "0"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request("POST", "/pc_session", headers=headers)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        if body.get("code") != 0:
            sys.exit(f"hold_polls: /pc_session answered {body}")
        set_cookie = resp.getheader("Set-Cookie")
        if set_cookie and not cookie:
            cookie = set_cookie.split(";", 1)[0]
        tokens.append(body["result"]["token"])
    conn.close()
    return cookie, tokens


class Poll:
    def __init__(self, host, port, cookie, token):
        self.host, self.port, self.cookie, self.token = host, port, cookie, token
        self.sock = None
        self.buf = b""
        self.closed = False

    def send(self):
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=30)
            self.sock.setblocking(False)
        req = (f"POST /session_login/{self.token} HTTP/1.1\r\nHost: {self.host}\r\nCookie: {self.cookie}\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        self.sock.setblocking(True)
        self.sock.sendall(req)
        self.sock.setblocking(False)

    def on_readable(self):
        """Read what arrived; True when a whole answer came (then poll again)."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:  # the server closed the connection: the caller reconnects
            self.closed = True
            self.buf = b""
            return True
        self.buf += data
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(body) < length:
            return False
        self.buf = body[length:]
        return True


def main():
    base, n = sys.argv[1], int(sys.argv[2])
    host, port = base.split("//", 1)[1].rstrip("/").split(":")
    port = int(port)
    cookie, tokens = create_sessions(host, port, n)
    sel = selectors.DefaultSelector()
    polls = [Poll(host, port, cookie, t) for t in tokens]
    for p in polls:
        p.send()
        sel.register(p.sock, selectors.EVENT_READ, p)
    print(f"READY {n}", flush=True)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    while running[0]:
        for key, _ in sel.select(timeout=0.5):
            p = key.data
            if p.on_readable():
                if p.closed:
                    sel.unregister(p.sock)
                    p.sock.close()
                    p.sock, p.closed = None, False
                    p.send()
                    sel.register(p.sock, selectors.EVENT_READ, p)
                else:
                    p.send()
    for p in polls:
        if p.sock is not None:
            p.sock.close()


if __name__ == "__main__":
    main()
