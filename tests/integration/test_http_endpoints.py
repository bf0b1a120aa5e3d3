"""The rest of SPEC §3's endpoints, through nginx and the standalone front-end: /me, /friends, /route, /msg,
/tk, /admin/*, /healthz, /metrics, and the routing itself (unknown path 15/404, wrong method 17/405)."""
import json
import socket
import time

import pytest
import requests

from http_client import (BusListener, Client, ExtraHttp, broadcast_room_req, front, login,  # noqa: F401
                         new_mobile, test_token, unique_uid)
import rkeys

MASK64 = (1 << 64) - 1


def mix64(x):
    """magpie-http's rendezvous hash (http/user.c), to predict /route's choice."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def expected_node(uid, nodes):
    return max(nodes, key=lambda n: mix64((uid ^ mix64(n)) & MASK64))


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture
def fake_nodes(stack):
    """Push nodes registered the way magpie-push registers them (keys.h: KEY_NODES, KEY_NODE)."""
    r = stack.redis()
    added = []

    def add(node_id, beat_ms=None, urls=True):
        r.zadd("mp:{nodes}", {str(node_id): beat_ms if beat_ms is not None else now_ms()})
        if urls:
            r.hset(f"mp:{{nodes}}:node:{node_id}", mapping={"ws_url": f"ws://node{node_id}/ws",
                                                  "room_url": f"ws://node{node_id}/room"})
        added.append(node_id)

    yield add
    for n in added:
        r.zrem("mp:{nodes}", str(n))
        r.delete(f"mp:{{nodes}}:node:{n}")


def live_real_nodes(stack):
    """Nodes other than ours that are alive (magpie-push, once it runs in the stack)."""
    ttl_ms = 15_000
    return [int(n) for n in stack.redis().zrangebyscore("mp:{nodes}", now_ms() - ttl_ms, "+inf")]


def test_me(stack, front):
    client = Client(front.url)
    mobile = "+86" + new_mobile()
    uid, token = login(client, stack, mobile)
    r = client.get("/me", token=token)
    assert r.status == 200 and r.result == {"userId": uid, "mobile": "+" + "*" * 9 + mobile[-4:]}


def test_me_for_a_user_without_a_row(stack, front):
    client = Client(front.url)
    r = client.get("/me", token=test_token(client, unique_uid()))
    assert r.status == 404 and r.code == 15


def test_friends_with_presence(stack, front, fake_nodes):
    client = Client(front.url)
    me, a, b = unique_uid(), unique_uid(), unique_uid()
    token = test_token(client, me)
    assert client.get("/friends", token=token).result == {"friends": []}
    for other in (a, b):
        assert client.post("/admin/friends", {"a": me, "b": other}, key=stack.api_key).code == 0
    r = stack.redis()
    fake_nodes(901)                                  # alive
    fake_nodes(902, beat_ms=now_ms() - 120_000)      # dead: no heartbeat for two minutes
    r.hset(rkeys.tagged(r, "presence", a), "901", 1)
    r.hset(rkeys.tagged(r, "presence", b), "902", 2)
    try:
        got = client.get("/friends", token=token)
        assert got.status == 200
        assert got.result == {"friends": sorted([{"uid": a, "online": True}, {"uid": b, "online": False}],
                                                key=lambda f: f["uid"])}
        r.hset(rkeys.tagged(r, "presence", a), "901", 0)        # a's last connection closed
        assert all(not f["online"] for f in client.get("/friends", token=token).result["friends"])
    finally:
        rkeys.delete(r, rkeys.tagged(r, "presence", a), rkeys.tagged(r, "presence", b))


def test_route_hashes_users_onto_live_nodes(stack, front, fake_nodes):
    client = Client(front.url)
    base = live_real_nodes(stack)
    for n in (911, 912, 913):
        fake_nodes(n)
    nodes = base + [911, 912, 913]
    uids = [unique_uid() for _ in range(30)]
    tokens = {u: test_token(client, u) for u in uids}
    chosen = {}
    for u in uids:
        r = client.post("/route", token=tokens[u])
        assert r.status == 200 and r.code == 0, r
        assert r.result["node"] == expected_node(u, nodes)
        n = r.result["node"]
        if n >= 911:
            assert r.result["ws_url"] == f"ws://node{n}/ws" and r.result["room_url"] == f"ws://node{n}/room"
        chosen[u] = n
    assert len({n for n in chosen.values()}) > 1, "every user on one node: not a hash"
    # Stable: asking again gives the same node.
    for u in uids[:5]:
        assert client.post("/route", token=tokens[u]).result["node"] == chosen[u]
    # Node 912 stops heartbeating: only its users move.
    stack.redis().zadd("mp:{nodes}", {"912": now_ms() - 60_000})
    for u in uids:
        n = client.post("/route", token=tokens[u]).result["node"]
        if chosen[u] != 912:
            assert n == chosen[u]
        else:
            assert n != 912 and n == expected_node(u, [x for x in nodes if x != 912])


def test_route_skips_a_node_without_urls(stack, front, fake_nodes):
    client = Client(front.url)
    nodes = live_real_nodes(stack) + [921, 922]
    # A user that hashes onto one of the fake nodes (about 2 in 4 do with two real nodes).
    uid = next(u for u in (unique_uid() for _ in range(1000)) if expected_node(u, nodes) in (921, 922))
    token = test_token(client, uid)
    first = expected_node(uid, nodes)
    fake_nodes(921, urls=(first != 921))
    fake_nodes(922, urls=(first != 922))
    r = client.post("/route", token=token)
    assert r.code == 0 and r.result["node"] == expected_node(uid, [n for n in nodes if n != first])


def test_route_without_live_nodes_is_503(stack):
    # An empty Redis database: no node registered at all.
    with ExtraHttp(stack, "http-route-empty", {"MAGPIE_REDIS_DB": "9"}) as h:
        client = Client(h.url)
        r = client.post("/route", token=test_token(client, unique_uid()))
        assert r.status == 503 and r.code == 20, r


def test_msg_to_a_user_publishes_a_system_packet(stack, front):
    client = Client(front.url)
    to = unique_uid()
    bus = BusListener(stack, "mp:ctl")
    try:
        t0 = now_ms()
        r = client.post("/msg", {"to": to, "msg": "your order is on its way"}, key=stack.api_key)
        assert r.status == 200 and r.json["code"] == 1, r
        chan, data = bus.next()
        user = test_token(client, unique_uid())
        r2 = client.post("/msg", {"to": str(to), "msg": {"event": "x", "n": 1}}, token=user)
        assert r2.json["code"] == 1, r2
        chan2, data2 = bus.next()
    finally:
        bus.close()
    cmd = json.loads(data)
    assert chan == "mp:ctl" and cmd["cmd"] == "deliver" and cmd["uid"] == to
    p = cmd["packet"]
    assert p["type"] == "s" and p["from"] == 0 and p["to"] == to and p["msg"] == "your order is on its way"
    assert isinstance(p["id"], str) and 1 <= len(p["id"]) <= 64 and p["id"] == r.json["data"]["id"]
    assert t0 - 1000 <= p["ts"] <= now_ms() + 1000
    assert json.loads(data2)["packet"]["msg"] == {"event": "x", "n": 1}


class ShardedListener:
    """SSUBSCRIBE to one sharded channel (shared/bus.h: a room's channel is one; redis-py 4.3 has no sharded
    pub/sub, so RESP by hand) and collect what arrives as (channel, payload)."""

    def __init__(self, stack, channel):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", stack.redis_port), timeout=5)
        self.buf = b""
        self.sock.sendall(b"*2\r\n$10\r\nSSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel.encode()))
        kind, ch, n = self._read()
        assert kind == b"ssubscribe" and ch == channel.encode() and n == 1, (kind, ch, n)

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        if line[:1] == b"*":
            return [self._read() for _ in range(int(line[1:]))]
        if line[:1] == b":":
            return int(line[1:])
        if line[:1] == b"$":
            n = int(line[1:])
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        raise AssertionError(f"unexpected reply {line!r}")

    def next(self, timeout=5):
        self.sock.settimeout(timeout)
        kind, ch, data = self._read()
        assert kind == b"smessage", kind
        return ch.decode(), data

    def close(self):
        self.sock.close()


def test_msg_to_a_room_publishes_a_broadcast(stack, front):
    client = Client(front.url)
    Broadcast = broadcast_room_req()
    room = f"room-{unique_uid()}"
    bus = ShardedListener(stack, f"mp:room:{room}")
    try:
        r = client.post("/msg", {"room_id": room, "msg": "{\"k\":\"\u4f60\u597d\"}", "level": 1},
                        key=stack.api_key)
        assert r.status == 200 and r.json == {"code": 1, "msg": "ok"}, r
        chan, data = bus.next()
        r = client.post("/msg", {"room_id": room, "msg": "plain"}, token=test_token(client, unique_uid()))
        assert r.json["code"] == 1
        chan2, data2 = bus.next()
    finally:
        bus.close()
    assert chan == f"mp:room:{room}"
    b = Broadcast.FromString(data)
    assert b.roomID == room and b.msgLv == 1 and b.data.decode() == "{\"k\":\"\u4f60\u597d\"}"
    b2 = Broadcast.FromString(data2)
    assert b2.msgLv == 0 and b2.data == b"plain"


@pytest.mark.parametrize("body,why", [
    ({"msg": "x"}, "neither room nor user"),
    ({"room_id": "r", "to": 5, "msg": "x"}, "both"),
    ({"room_id": "r"}, "no msg"),
    ({"room_id": "r", "msg": ""}, "empty msg"),
    ({"room_id": "r", "msg": 5}, "msg not a string"),
    ({"room_id": "", "msg": "x"}, "empty room"),
    ({"room_id": "r" * 129, "msg": "x"}, "room id too long"),
    ({"room_id": ["r"], "msg": "x"}, "room id not a string"),
    ({"room_id": "r", "msg": "x", "level": 2}, "no such level"),
    ({"room_id": "r", "msg": "x", "level": "1"}, "level not a number"),
    ({"to": 0, "msg": "x"}, "to 0"),
    ({"to": -3, "msg": "x"}, "negative to"),
    ({"to": "abc", "msg": "x"}, "to not a uid"),
    ({"to": 5, "msg": ["x"]}, "msg an array"),
    ({"to": 5, "msg": "x", "level": 1}, "level for a user"),
])
def test_msg_bad_requests_in_seed_envelope(stack, front, body, why):
    r = Client(front.url).post("/msg", body, key=stack.api_key)
    assert r.status == 400, (why, r)
    assert r.json["code"] == 0 and r.json["msg"], (why, r)
    assert "data" not in r.json


def test_msg_not_logged_in_is_1001(stack, front):
    r = Client(front.url).post("/msg", {"to": 5, "msg": "x"})
    assert r.status == 401 and r.json["code"] == 1001


def test_tk_gives_a_login_token(stack, front):
    client = Client(front.url)
    uid = unique_uid()
    for given in (uid, str(uid)):
        r = client.post("/tk", {"uid": given})
        assert r.status == 200 and r.json["code"] == 1 and r.json["msg"] == "ok"
        assert client.post("/IM/token", token=r.json["data"]).code == 0
    for bad in ({"uid": 0}, {"uid": "x"}, {"uid": -1}, {}, {"uid": 1.5}):
        r = client.post("/tk", bad)
        assert r.status == 400 and r.json["code"] == 0, (bad, r)


def test_tk_is_404_unless_enabled(stack):
    with ExtraHttp(stack, "http-no-tk", {"MAGPIE_HTTP_ENABLE_TEST_TOKEN": "no"}) as h:
        r = Client(h.url).post("/tk", {"uid": 5})
        assert r.status == 404 and r.code == 15, r
        assert "enable_test_token is on" not in h.log_text()


def test_admin_friends(stack, front):
    client = Client(front.url)
    a, b = unique_uid(), unique_uid()
    for _ in range(2):  # idempotent
        r = client.post("/admin/friends", {"a": a, "b": b}, key=stack.api_key)
        assert r.status == 200 and r.code == 0 and r.result == {"a": a, "b": b}, r
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT uid, friend_uid FROM friends WHERE uid IN (%s, %s) ORDER BY uid", (a, b))
        assert sorted(cur.fetchall()) == sorted([(a, b), (b, a)])
    rd = stack.redis()
    assert rd.smembers(rkeys.tagged(rd, "friends", a)) == {str(b)}
    assert rd.smembers(rkeys.tagged(rd, "friends", b)) == {str(a)}
    for bad in ({"a": a, "b": a}, {"a": a}, {"a": "x", "b": b}, {"a": a, "b": 0}):
        r = client.post("/admin/friends", bad, key=stack.api_key)
        assert r.status == 400 and r.code == 2, (bad, r)


@pytest.mark.parametrize("order_id", ["o-1", "o'; DROP TABLE orders; --", "\u8ba2\u5355-\U0001F600", "a\\\"b%s"])
def test_admin_orders(stack, front, order_id):
    client = Client(front.url)
    order_id = f"{order_id}-{unique_uid()}-{front.name[0]}"
    customer = unique_uid()
    for _ in range(2):  # a retry is fine
        r = client.post("/admin/orders", {"order_id": order_id, "customer": customer}, key=stack.api_key)
        assert r.status == 200 and r.code == 0, r
        assert r.result == {"order_id": order_id, "customer": customer}
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT customer, courier FROM orders WHERE id = %s", (order_id,))
        assert cur.fetchone() == (customer, None)
        cur.execute("SHOW TABLES LIKE 'orders'")
        assert cur.fetchone() is not None
    assert stack.redis().hgetall(f"mp:order:{order_id}") == {"customer": str(customer)}
    # Another customer for the same order is a mistake.
    r = client.post("/admin/orders", {"order_id": order_id, "customer": customer + 1}, key=stack.api_key)
    assert r.status == 400 and r.code == 2, r


def test_admin_orders_bad_input(stack, front):
    client = Client(front.url)
    for bad in ({"order_id": "", "customer": 1}, {"order_id": "x" * 65, "customer": 1},
                {"order_id": "a\nb", "customer": 1}, {"order_id": 5, "customer": 1}, {"order_id": "x"},
                {"order_id": "x", "customer": 0}):
        r = client.post("/admin/orders", bad, key=stack.api_key)
        assert r.status == 400 and r.code == 2, (bad, r)


def test_admin_kick_publishes(stack, front):
    uid = unique_uid()
    bus = BusListener(stack, "mp:ctl")
    try:
        r = Client(front.url).post("/admin/kick", {"uid": uid}, key=stack.api_key)
        assert r.status == 200 and r.code == 0, r
        msg = bus.next()
    finally:
        bus.close()
    assert msg is not None and json.loads(msg[1]) == {"cmd": "kick", "uid": uid}


def test_healthz(stack, front):
    r = Client(front.url).get("/healthz")
    assert r.status == 200 and r.code == 0 and r.result == {"redis": "ok", "mysql": "ok"}


def test_metrics(stack, front):
    client = Client(front.url)
    login(client, stack)
    client.post("/pc_session")
    r = Client(front.url, ip="127.0.0.1").get("/metrics")  # nginx serves it to the host itself only
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    fe = "fcgi" if front.name == "nginx" else "standalone"
    assert f'magpie_http_requests_total{{endpoint="/login",status="200",frontend="{fe}"}}' in text
    assert 'magpie_http_request_seconds_bucket{endpoint="/login",le="+Inf"}' in text
    assert 'magpie_sms_total{outcome="sent"}' in text
    assert 'magpie_qr_sessions_total{event="created"}' in text
    assert "magpie_http_long_polls" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split()) == 2, line


def test_metrics_only_from_loopback_through_nginx(stack):
    # 127.0.0.2 is not the host's own address for nginx's allow rule (127.0.0.1, ::1).
    s = requests.Session()
    from http_client import _SourceAddress
    s.mount("http://", _SourceAddress("127.0.0.2"))
    r = s.get(stack.nginx_url + "/metrics", timeout=10)
    assert r.status_code == 403
    assert requests.get(stack.nginx_url + "/metrics", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/admin/nope", "/session_login/a/b", "/pc_session/x/y.svg", "/scan_pc/"])
def test_unknown_path_is_15(stack, front, path):
    r = Client(front.url).post(path)
    assert r.status == 404 and r.code == 15, r


def test_unknown_path_standalone(stack):
    for path in ("/", "/nope", "/login/", "/LOGIN", "/%2e%2e/etc/passwd"):
        r = Client(stack.http_url).get(path)
        assert r.status == 404 and r.code == 15, (path, r)


@pytest.mark.parametrize("method,path,allow", [("GET", "/login", "POST"), ("POST", "/me", "GET"),
                                               ("PUT", "/send_code", "POST"), ("DELETE", "/healthz", "GET"),
                                               ("GET", "/session_login/" + "0" * 32, "POST")])
def test_wrong_method_is_17(stack, front, method, path, allow):
    r = Client(front.url).call(method, path)
    assert r.status == 405 and r.code == 17, r
    assert r.headers["Allow"] == allow


def test_head_healthz(stack, front):
    r = requests.head(front.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.content == b""
