"""magpie-push, SPEC §4 handshake and §8: tickets, Origin, connections per user, handshake timeout --
each refused the documented way while a second client keeps being served."""
import asyncio
import glob
import os
import socket
import time
import uuid

import pytest
import websockets

from push_client import (Bystander, Chat, ExtraNode, new_uid, node_of, push_url, run, ticket, unsigned_ticket,
                         wait_until)

USED_TICKETS = []  # every ticket this module sends: none may show up in any log


def _refused(stack, path, reason):
    """Connect to path (after the host), expect E with reason, then close 1008."""
    async def go():
        async with Bystander(stack):
            ws = await websockets.connect(push_url(stack) + path, ping_interval=None, compression=None,
                                          close_timeout=2)
            c = Chat(ws, 0, None)
            code, why, packets = await c.closed()
            assert [p["type"] for p in packets] == ["E"], packets
            assert packets[0]["msg"] == reason and packets[0]["from"] == 0
            assert code == 1008
    run(go())


@pytest.mark.parametrize("path", ["/ws", "/ws/", "/ws?token=", "/ws?other=1"])
def test_no_ticket_is_E_then_close_1008(stack, path):
    _refused(stack, path, "no ticket")


def test_bad_tickets_are_E_then_close_1008(stack):
    uid = new_uid()
    now = int(time.time())
    long_key = "k" * 64
    cases = [
        ("garbage", "bad ticket"),
        ("a.b.c", "bad ticket"),
        (ticket(stack, uid, key="another-key-another-key-another-key!!"), "bad ticket"),
        (unsigned_ticket(uid), "bad ticket"),
        (ticket(stack, uid, alg="HS512"), "bad ticket"),
        (ticket(stack, uid, alg="HS512", key=stack.secret + long_key), "bad ticket"),
        (ticket(stack, uid, drop=("jti",)), "bad ticket"),
        (ticket(stack, uid, drop=("id",)), "bad ticket"),
        (ticket(stack, uid, iat=now - 300, exp=now - 1), "ticket expired"),
        (ticket(stack, uid, kind="login"), "not a websocket ticket"),
    ]
    for tk, reason in cases:
        USED_TICKETS.append(tk)
        _refused(stack, "/ws/" + tk, reason)


def test_a_ticket_opens_one_connection_only(stack):
    async def go():
        tk = ticket(stack, new_uid())
        USED_TICKETS.append(tk)
        first = await Chat.connect(stack, tk=tk)
        async with Bystander(stack):
            for query in (False, True):
                again = await Chat.connect(stack, uid=first.uid, tk=tk, query=query, expect_login=False)
                code, _, packets = await again.closed()
                assert [(p["type"], p["msg"]) for p in packets] == [("E", "ticket already used")]
                assert code == 1008
        assert (await first.request("P"))["type"] == "P"
    run(go())


def test_a_foreign_origin_is_refused_with_403_before_the_upgrade(stack):
    async def go():
        async with Bystander(stack):
            for origin in ("http://evil.example", "null", f"http://127.0.0.1:{stack.nginx_port}.evil.example"):
                tk = ticket(stack, new_uid())
                USED_TICKETS.append(tk)
                with pytest.raises(websockets.InvalidStatusCode) as e:
                    await websockets.connect(push_url(stack) + "/ws/" + tk, origin=origin, close_timeout=2)
                assert e.value.status_code == 403
                # refused before the upgrade: the ticket was not even used
                ok = await Chat.connect(stack, tk=tk, uid=None)
                await ok.close()
        # the site's own origins (push.allowed_origins) and clients without an Origin get in
        for origin in (f"http://127.0.0.1:{stack.nginx_port}", f"http://localhost:{stack.nginx_port}", None):
            c = await Chat.connect(stack, origin=origin)
            assert c.login["type"] == "L"
    run(go())


def test_the_11th_connection_of_a_user_across_the_cluster_is_E_and_closed(stack):
    async def go():
        uid = new_uid()
        conns = [await Chat.connect(stack, uid=uid) for _ in range(10)]
        assert sum(node_of(stack, uid).values()) == 10
        assert len(node_of(stack, uid)) == 2, "nginx spreads them over both nodes: the limit is cluster-wide"
        async with Bystander(stack):
            for node in (None, 1, 2):
                extra = await Chat.connect(stack, uid=uid, node=node, expect_login=False)
                code, _, packets = await extra.closed()
                assert [(p["type"], p["msg"]) for p in packets] == [("E", "too many connections")]
                assert code == 1008
        for c in conns:
            assert (await c.request("P"))["type"] == "P"
        await conns[0].close()
        await wait_until(lambda: sum(node_of(stack, uid).values()) == 9, 2, "presence to count the close")
        again = await Chat.connect(stack, uid=uid)
        assert again.login["type"] == "L"
    run(go())


def test_a_packet_sent_right_after_the_upgrade_is_answered_after_L(stack):
    async def go():
        tk = ticket(stack, new_uid())
        ws = await websockets.connect(push_url(stack) + "/ws/" + tk, ping_interval=None, compression=None,
                                      close_timeout=2)
        await ws.send('{"id":"early","to":0,"type":"P"}')
        c = Chat(ws, 0, None)
        first, second = await c.recv(), await c.recv()
        assert first["type"] == "L"
        assert second == {"id": "early", "from": 0, "type": "P", "msg": "pong"}
    run(go())


def _log_lines(stack, name):
    with open(os.path.join(stack.run, "logs", f"{name}.log"), errors="replace") as f:
        return f.read().splitlines()


def test_x_real_ip_from_nginx_is_the_client_address_in_the_logs(stack):
    async def go():
        # straight to a node, as nginx connects: X-Real-IP names the client
        c = await Chat.connect(stack, node=1, headers={"X-Real-IP": "203.0.113.77"})
        await wait_until(lambda: any(f"uid={c.uid} ip=203.0.113.77" in l for l in _log_lines(stack, "push1")), 3,
                         "the log line with the client's address")
        # through nginx a client cannot choose it: nginx sets X-Real-IP to the address it sees
        d = await Chat.connect(stack, headers={"X-Real-IP": "198.51.100.1"})
        lines = _log_lines(stack, "push1") + _log_lines(stack, "push2")
        await wait_until(lambda: any(f"uid={d.uid} ip=127.0.0.1" in l
                                     for l in _log_lines(stack, "push1") + _log_lines(stack, "push2")), 3,
                         "the log line with nginx's view of the address")
        assert not any("198.51.100.1" in l for l in lines)
    run(go())


def _status_of(port, request):
    """The HTTP status a node answers to a raw request (libwebsockets answers a refused upgrade in
    HTTP/1.0 form, which python-websockets will not parse; nginx and browsers do)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request.encode())
        head = s.recv(4096).decode(errors="replace")
    return int(head.split()[1]) if head else 0  # 0: closed without an answer


def _upgrade(path, origin=None):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + (f"Origin: {origin}\r\n" if origin else "") + "\r\n")


def test_plain_http_unknown_paths_and_overlong_paths_are_refused(stack):
    port = stack.push_ports[0]
    assert _status_of(port, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") == 404
    assert _status_of(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") == 404
    assert _status_of(port, _upgrade("/nothing-here")) == 404
    assert _status_of(port, _upgrade("/wsx/" + "a" * 10)) == 404
    # a path longer than any ticket: 414 before libwebsockets would look at it
    assert _status_of(port, _upgrade("/ws/" + "a" * 4200)) == 414
    # the Origin check holds on the node itself too, not only behind nginx
    assert _status_of(port, _upgrade("/ws/x", origin="http://evil.example")) == 403


def test_a_handshake_not_finished_in_time_is_closed(stack):
    node = ExtraNode(stack, 901, handshake_timeout_s=2)
    try:
        def stall():
            silent = socket.create_connection(("127.0.0.1", node.port))
            partial = socket.create_connection(("127.0.0.1", node.port))
            partial.sendall(b"GET /ws/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0 = time.monotonic()
            for s in (silent, partial):
                s.settimeout(10)
                assert s.recv(1) == b"", "the server closes the connection"
                s.close()
            return time.monotonic() - t0

        async def go():
            async with Bystander(stack, url=node.url):
                # in a thread: the raw sockets block, the bystander keeps running meanwhile
                elapsed = await asyncio.get_running_loop().run_in_executor(None, stall)
                assert elapsed < 6, elapsed
                # a client that finishes its handshake on that node is served normally
                c = await node.chat()
                assert (await c.request("P"))["type"] == "P"
        run(go())
    finally:
        assert node.stop() == 0


def test_tickets_never_reach_a_log(stack):
    """Runs last in this module: every ticket sent above, good or bad, is absent from every log."""
    assert USED_TICKETS
    logs = glob.glob(os.path.join(stack.run, "logs", "*")) + glob.glob(os.path.join(stack.run, "nginx", "*.log"))
    for path in logs:
        with open(path, errors="replace") as f:
            text = f.read()
        for tk in USED_TICKETS:
            # the signature part alone is enough to recognise a ticket
            assert tk.split(".")[-1] not in text or len(tk.split(".")[-1]) < 8, (path, tk[:20])
