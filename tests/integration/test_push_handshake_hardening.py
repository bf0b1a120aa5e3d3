"""magpie-push and the site's nginx against bad WebSocket handshakes (SPEC §8, issue 13): every handshake a
node refuses gets an HTTP status and a log line naming the reason, never a silent close, and no client can
make nginx take a node out of the upstream -- after every single bad handshake, new /ws and /room clients
connect through nginx at once and chat. A node that is really down costs new clients nothing either.

The bad clients are raw sockets, so each header is exactly what the test says (a WebSocket library would
fix them up)."""
import asyncio
import os
import time

import pytest
import websockets

from push_client import (Bystander, Chat, ExtraNode, ensure_nodes_up, make_friends, new_uid, push_url,
                         restart_node, run, ticket, wait_until)
from room_client import Room, login_token, new_room
import rkeys

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key: 16 bytes in base64
REPEAT = 20  # each bad handshake, in a row (issue 13's acceptance)


def _request(path, host=True, connection="Upgrade", key=KEY, version="13", extra=()):
    lines = [f"GET {path} HTTP/1.1"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines.append("Upgrade: websocket")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Answer:
    def __init__(self, head, body):
        first, *rest = head.split("\r\n") if head else ["", ""]
        self.status = int(first.split()[1]) if first else 0  # 0: closed without an answer
        self.headers = {}
        for line in rest:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.body = body

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body!r}>"


async def _ask(port, request, timeout=5):
    """Send a raw request; the answer's status, headers and (Content-Length) body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                return Answer("", b"")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        answer = Answer(head.decode(errors="replace"), body)
        want = int(answer.headers.get("content-length", "0"))
        while len(answer.body) < want:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            answer.body += chunk
        return answer
    finally:
        writer.close()


def _logs(stack):
    text = ""
    for name in ("push1", "push2"):
        with open(os.path.join(stack.run, "logs", f"{name}.log"), errors="replace") as f:
            text += f.read()
    return text


def _refusals(stack, status, reason):
    return _logs(stack).count(f'handshake refused status={status} reason="{reason}"')


class Newcomers:
    """What must keep working after each bad handshake: a new /ws client (a new user, friend of a
    long-lived receiver) that logs in and gets a message acknowledged and delivered, and a new /room client
    that signs in and gets its own message back -- both through nginx."""

    def __init__(self, stack):
        self.stack = stack

    async def __aenter__(self):
        self.receiver = await Chat.connect(self.stack)
        self.room = new_room("hardening")
        return self

    async def __aexit__(self, *exc):
        await self.receiver.close()
        return False

    async def check(self):
        sender = new_uid()
        make_friends(self.stack, sender, self.receiver.uid)
        ws_part, room_part = await asyncio.gather(self._chat(sender), self._room(), return_exceptions=True)
        for part in (ws_part, room_part):
            if isinstance(part, BaseException):
                raise part

    async def _chat(self, sender):
        c = await Chat.connect(self.stack, uid=sender)  # asserts L: a 502/503 would raise InvalidStatusCode
        try:
            ack = await c.text(self.receiver.uid, "still here")
            assert ack["type"] == "A", ack
            got = await self.receiver.messages(1)
            assert got[0]["from"] == sender and got[0]["msg"] == "still here"
        finally:
            await c.close()

    async def _room(self):
        uid = new_uid()
        r = await Room.connect(push_url(self.stack), uid)
        try:
            err = await r.sign_in(login_token(self.stack, uid), self.room)
            assert err.code == 0, (err.code, err.msg)
            mark = f"hello-{uid}".encode()
            await r.say(mark)
            await r.wait_messages(1)
            assert mark in r.messages
        finally:
            await r.ws.close()


# (name, path, request options, expected status, reason in the node's log line)
BAD = [
    ("unknown subprotocol", {"extra": ["Sec-WebSocket-Protocol: bogus"]}, 400, "unsupported subprotocol"),
    ("malformed subprotocol list", {"extra": ["Sec-WebSocket-Protocol: a,,b"]}, 400, "malformed subprotocol list"),
    ("subprotocol list too long", {"extra": ["Sec-WebSocket-Protocol: " + ", ".join(["chat.v1"] * 20)]}, 431,
     "subprotocol list too long"),
    ("missing Sec-WebSocket-Key", {"key": None}, 400, "missing Sec-WebSocket-Key"),
    ("bad Sec-WebSocket-Key", {"key": "short"}, 400, "bad Sec-WebSocket-Key"),
    ("bad Sec-WebSocket-Version", {"version": "8"}, 426, "bad Sec-WebSocket-Version"),
    ("missing Sec-WebSocket-Version", {"version": None}, 426, "bad Sec-WebSocket-Version"),
]


@pytest.mark.parametrize("path", ["/ws/x", "/room"])
@pytest.mark.parametrize("name,opts,status,reason", BAD, ids=[b[0] for b in BAD])
def test_a_bad_handshake_through_nginx_gets_its_status_and_log_line_and_others_connect_at_once(
        stack, path, name, opts, status, reason):
    async def go():
        before = _refusals(stack, status, reason)
        async with Bystander(stack), Newcomers(stack) as newcomers:
            for i in range(REPEAT):
                answer = await _ask(stack.nginx_port, _request(path, **opts))
                assert answer.status == status, (i, answer)
                assert answer.body.decode().strip() == reason
                if status == 426:
                    assert answer.headers.get("sec-websocket-version") == "13"
                await newcomers.check()
        # one line per refusal, on whichever node nginx chose (a 4xx is not retried on another node)
        assert _refusals(stack, status, reason) - before == REPEAT
    run(go())


def test_a_bad_path_through_nginx_gets_404_and_others_connect_at_once(stack):
    async def go():
        before = _refusals(stack, 404, "bad path")
        async with Bystander(stack), Newcomers(stack) as newcomers:
            for i in range(REPEAT):
                # /ws... is proxied to the nodes (location /ws); a path no protocol serves is the node's 404
                answer = await _ask(stack.nginx_port, _request(f"/ws-nothing-{i}"))
                assert answer.status == 404, (i, answer)
                assert answer.body == b"bad path\n"
                await newcomers.check()
        assert _refusals(stack, 404, "bad path") - before == REPEAT
    run(go())


@pytest.mark.parametrize("name", ["magpie.v1", "v12.stomp"])
def test_a_subprotocol_only_chat_speaks_is_refused_on_room(stack, name):
    async def go():
        answer = await _ask(stack.nginx_port, _request("/room", extra=[f"Sec-WebSocket-Protocol: {name}"]))
        assert (answer.status, answer.body) == (400, b"unsupported subprotocol\n")
    run(go())


@pytest.mark.parametrize("offered", [["magpie.v1"], ["bogus", "magpie.v1"]])
def test_magpie_v1_is_the_json_chat_protocol_and_is_named_in_the_answer(stack, offered):
    async def go():
        c = await Chat.connect(stack, subprotocols=offered)
        assert c.ws.subprotocol == "magpie.v1"
        assert (await c.request("P"))["msg"] == "pong"
        plain = await Chat.connect(stack)
        assert plain.ws.subprotocol is None
    run(go())


@pytest.mark.parametrize("path", ["/ws/x", "/room"])
def test_connection_without_upgrade_is_refused_by_the_node_and_repaired_by_nginx(stack, path):
    async def go():
        before = _refusals(stack, 400, "Connection header without upgrade")
        for connection in ("keep-alive", None, "close"):
            answer = await _ask(stack.push_ports[0], _request(path, connection=connection))
            assert (answer.status, answer.body) == (400, b"Connection header without upgrade\n"), answer
        assert _refusals(stack, 400, "Connection header without upgrade") - before == 3
        # Connection is hop-by-hop: nginx sends its own "Connection: upgrade" to the node, so through nginx
        # the client's header does not matter and the handshake goes on
        async with Bystander(stack), Newcomers(stack) as newcomers:
            for i in range(REPEAT):
                answer = await _ask(stack.nginx_port, _request(path, connection="keep-alive"))
                assert answer.status == 101, (i, answer)
                await newcomers.check()
    run(go())


@pytest.mark.parametrize("path", ["/ws/x", "/room"])
def test_a_missing_host_is_refused_by_the_node(stack, path):
    async def go():
        answer = await _ask(stack.push_ports[0], _request(path, host=False))
        assert (answer.status, answer.body) == (400, b"missing Host\n")
    run(go())


def test_large_headers_are_served_up_to_what_nginx_passes_on(stack):
    """A 7,000-byte header (which nginx passes on) fits push.max_header_bytes: the handshake goes on; a
    header line over nginx's 8k, or headers over its 4 x 8k, get nginx's own 400 and reach no node."""
    async def go():
        async with Bystander(stack), Newcomers(stack) as newcomers:
            for i in range(REPEAT):
                uid = new_uid()
                tk = ticket(stack, uid)
                c = await Chat.connect(stack, uid=uid, tk=tk, headers={"X-Padding": "p" * 7000})
                assert (await c.request("P"))["msg"] == "pong"
                await c.close()
                room_ok = await _ask(stack.nginx_port, _request("/room", extra=["X-Padding: " + "p" * 7000]))
                assert room_ok.status == 101
                await newcomers.check()
            for extra in (["X-Padding: " + "p" * 9000], ["X-Padding%d: %s" % (n, "p" * 7000) for n in range(6)]):
                for path in ("/ws/x", "/room"):
                    answer = await _ask(stack.nginx_port, _request(path, extra=extra))
                    assert answer.status == 400, answer
                    assert "nginx" in answer.headers.get("server", ""), answer
                await newcomers.check()
    run(go())


def test_headers_over_the_nodes_table_are_dropped_and_logged(stack):
    """Straight to a node (no nginx in front), headers over push.max_header_bytes are more than
    libwebsockets 4.1.6 can read or answer: it closes the connection, and the node logs it."""
    async def go():
        limit = int(stack.conf.get("push.max_header_bytes", "36864"))
        dropped = 'handshake dropped reason="closed before an answer"'
        before = _logs(stack).count(dropped)
        async with Bystander(stack, node=1):
            extra = ["X-Padding%d: %s" % (n, "p" * 7000) for n in range(limit // 7000 + 1)]
            answer = await _ask(stack.push_ports[0], _request("/ws/x", extra=extra))
            assert answer.status == 0
            await wait_until(lambda: _logs(stack).count(dropped) == before + 1, 3, "the node's log line")
    run(go())


def test_a_handshake_that_never_finishes_is_logged(stack):
    node = ExtraNode(stack, 902, handshake_timeout_s=2)
    try:
        async def go():
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(b"GET /ws/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0 = time.monotonic()
            assert await asyncio.wait_for(reader.read(1), 10) == b""
            assert time.monotonic() - t0 < 6
            writer.close()
            await asyncio.sleep(0.2)
            with open(node.log, errors="replace") as f:
                assert 'handshake dropped reason="not finished within push.handshake_timeout_s"' in f.read()
        run(go())
    finally:
        assert node.stop() == 0


def test_a_full_node_answers_503(stack):
    node = ExtraNode(stack, 903, max_conns=2)
    try:
        async def go():
            first = await node.chat()
            second = await node.chat()
            answer = await _ask(node.port, _request("/ws/x"))
            assert (answer.status, answer.body) == (503, b"node full\n")
            await first.close()
            await asyncio.sleep(0.3)
            third = await node.chat()  # room again once one has gone
            assert (await third.request("P"))["msg"] == "pong"
            await second.close()
            with open(node.log, errors="replace") as f:
                assert 'handshake refused status=503 reason="node full"' in f.read()
        run(go())
    finally:
        assert node.stop() == 0


def test_a_node_killed_with_sigkill_costs_new_clients_nothing(stack):
    ensure_nodes_up(stack)

    async def go():
        await asyncio.get_running_loop().run_in_executor(None, stack.kill_daemon, "push2", 9)
        async with Newcomers(stack) as newcomers:
            for i in range(REPEAT):
                t0 = time.monotonic()
                await newcomers.check()
                assert time.monotonic() - t0 < 2, f"connection {i} took {time.monotonic() - t0:.2f}s"
    try:
        run(go())
    finally:
        restart_node(stack, "push2")
    # and the node is back in service: nginx spreads new clients over both again
    async def both():
        seen = set()
        for _ in range(40):
            uid = new_uid()
            c = await Chat.connect(stack, uid=uid)
            seen.update(int(n) for n in stack.redis().hgetall(rkeys.tagged(stack.redis(), "presence", uid)))
            await c.close()
            if seen == {1, 2}:
                return
        raise AssertionError(f"only nodes {seen} served new clients after the restart")
    run(both())


@pytest.mark.parametrize("what", ["URL arguments", "header lines"])
def test_a_request_libwebsockets_cannot_read_marks_no_node_down(stack, what):
    """libwebsockets 4.1.6 holds at most ~100 header fragments (URL arguments, repeated header lines) and
    closes a request with more before any callback can answer it. nginx gets no answer from any node and
    answers 502 itself (as 503, in the API's envelope); the nodes log the drop; and because no request can
    mark a node down (max_fails=0), everyone else is served as before."""
    async def go():
        dropped = 'handshake dropped reason="closed before an answer"'
        before = _logs(stack).count(dropped)
        if what == "URL arguments":
            request = _request("/ws/x?" + "&".join(["a"] * 200))
        else:
            request = _request("/ws/x", extra=["Accept: a"] * 200)
        async with Bystander(stack), Newcomers(stack) as newcomers:
            for i in range(REPEAT):
                answer = await _ask(stack.nginx_port, request)
                assert answer.status == 503, (i, answer)
                assert "nginx" in answer.headers.get("server", "")
                await newcomers.check()
        # nginx tried each node (proxy_next_upstream error): every attempt is logged by the node it reached
        await wait_until(lambda: _logs(stack).count(dropped) - before >= REPEAT, 3, "the nodes' log lines")
    run(go())
