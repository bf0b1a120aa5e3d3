"""Hostile and sloppy input on every endpoint (SPEC §3, §8): no body, invalid JSON, wrong types, a 65 KiB
body, unknown fields, unicode, SQL quote characters -- each gets the documented answer, never a 5xx (Redis
and MySQL are up here, so not even 503). Through nginx and the standalone front-end."""
import json
import random
import socket

import pytest

from http_client import Client, front, new_mobile, test_token, unique_uid  # noqa: F401

T32 = "0" * 32
NO_GROUP = 999999999999  # a group id no test reaches


class EP:
    """An endpoint: how to call it acceptably, and what its fields are."""

    def __init__(self, method, path, who, body=None, odd_string=None, seed=False):
        self.method, self.path, self.who, self.seed = method, path, who, seed
        self._body = body            # () -> a valid body, or None when the endpoint takes none
        self.odd_string = odd_string or {}  # string field -> the code an odd but well-typed value gets

    def body(self):
        return self._body() if self._body else None

    @property
    def required(self):
        return self._body is not None and self.path not in ("/pc_session",)

    def __repr__(self):
        return f"{self.method} {self.path}"


def _order():
    return {"order_id": f"bad-input-{unique_uid()}", "customer": unique_uid()}


ENDPOINTS = [
    EP("POST", "/send_code", None, lambda: {"mobile": new_mobile()}, {"mobile": 1}),
    EP("POST", "/login", None, lambda: {"mobile": new_mobile(), "code": "123456"},
       # a code is compared only when it could be one (up to 16 bytes); longer is invalid input
       {"mobile": 1, "code": lambda v: 5 if len(v.encode()) <= 16 else 2, "clientId": 5}),
    EP("POST", "/logout", "user"),
    EP("GET", "/me", "user"),
    EP("GET", "/friends", "user"),
    EP("POST", "/pc_session", None, lambda: {"device_name": "PC", "clientId": "c"},
       {"device_name": 0, "clientId": 0}),
    EP("GET", f"/pc_session/{T32}/qr.svg", None),
    EP("POST", f"/session_login/{T32}", None),
    EP("POST", f"/scan_pc/{T32}", "user"),
    EP("POST", "/confirm_pc", "user", lambda: {"token": T32}, {"token": 8}),
    EP("POST", "/cancel_pc", "user", lambda: {"token": T32}, {"token": 8}),
    EP("POST", "/IM/token", "user"),
    EP("POST", "/route", "user"),
    EP("POST", "/msg", "key", lambda: {"room_id": f"r{unique_uid()}", "msg": "x"}, {"room_id": 0, "msg": 0},
       seed=True),
    EP("POST", "/tk", None, lambda: {"uid": unique_uid()}, seed=True),
    EP("POST", "/admin/friends", "key", lambda: {"a": unique_uid(), "b": unique_uid()}),
    EP("POST", "/admin/orders", "key", _order, {"order_id": 0}),
    EP("POST", "/admin/kick", "key", lambda: {"uid": unique_uid()}),
    EP("GET", "/healthz", None),
    EP("POST", "/groups", "user", lambda: {"name": "bad input"}, {"name": 0}),
    EP("GET", "/groups", "user"),
    EP("GET", f"/groups/{NO_GROUP}", "user"),
    EP("POST", f"/groups/{NO_GROUP}", "user", lambda: {"name": "renamed"}, {"name": 15}),
    EP("POST", f"/groups/{NO_GROUP}/leave", "user"),
]
POST_WITH_FIELDS = [e for e in ENDPOINTS if e.method == "POST" and e._body]
POSTS = [e for e in ENDPOINTS if e.method == "POST"]

# Values of the wrong JSON type for a field, by the type the field wants.
WRONG = {
    str: [5, 1.5, True, ["x"], {"x": 1}],
    int: ["x", 1.5, True, [1], {"x": 1}, 0, -1, 2**70],
}


def field_types(body):
    return {k: (str if isinstance(v, str) else int) for k, v in body.items()}


def call(front, ep, stack, body=None, raw=None, headers=None):
    client = Client(front.url)
    auth = {}
    if ep.who == "user":
        auth["token"] = test_token(client, unique_uid())
    elif ep.who == "key":
        auth["key"] = stack.api_key
    return client.call(ep.method, ep.path, body, raw=raw, headers=headers, **auth)


def code_of(ep, r):
    return r.json["code"] if r.json else None


def assert_invalid(ep, r, why):
    assert r.status == 400, (ep, why, r)
    if ep.seed:
        assert r.json["code"] == 0 and r.json["msg"], (ep, why, r)
    else:
        assert r.code == 2, (ep, why, r)


ids = [repr(e) for e in ENDPOINTS]


@pytest.fixture(autouse=True)
def a_live_push_node(stack):
    """/route needs a live node to give a normal answer (without one it is 503 by design)."""
    import time
    r = stack.redis()
    r.zadd("mp:{nodes}", {"999": int(time.time() * 1000) + 600_000})
    r.hset("mp:{nodes}:node:999", mapping={"ws_url": "ws://node999/ws", "room_url": "ws://node999/room"})
    yield
    r.zrem("mp:{nodes}", "999")
    r.delete("mp:{nodes}:node:999")


@pytest.mark.parametrize("ep", ENDPOINTS, ids=ids)
def test_no_body(stack, front, ep):
    r = call(front, ep, stack)
    assert r.status < 500, (ep, r)
    if ep.required:
        assert_invalid(ep, r, "no body")


@pytest.mark.parametrize("raw", ["{", "[]", '"x"', "5", "null", '{"a":1,"a":2}', '{"mobile":"1\\u0000"}',
                                 b'{"mobile":"\xff\xfe"}', "[" * 60_000, '{"x":1e999}', "{'a':1}",
                                 '{"a":1} {"b":2}', "\x00"],
                         ids=["open", "array", "string", "number", "null", "duplicate keys", "NUL escape",
                              "invalid UTF-8", "deep nesting", "huge number", "single quotes", "two objects",
                              "NUL byte"])
@pytest.mark.parametrize("ep", POSTS, ids=[repr(e) for e in POSTS])
def test_invalid_json(stack, front, ep, raw):
    r = call(front, ep, stack, raw=raw)
    assert_invalid(ep, r, raw[:20])


@pytest.mark.parametrize("ep", POST_WITH_FIELDS, ids=[repr(e) for e in POST_WITH_FIELDS])
def test_wrong_types(stack, front, ep):
    base = ep.body()
    for field, kind in field_types(base).items():
        for wrong in WRONG[kind]:
            body = ep.body()
            body[field] = wrong
            r = call(front, ep, stack, body)
            if ep.path == "/msg" and field == "room_id" and isinstance(wrong, int) and wrong >= 0 \
                    and wrong < 2**63 and not isinstance(wrong, bool):
                # seed 004 room ids are strings; a non-negative integer is taken as its decimal string
                assert r.status == 200, (ep, field, wrong, r)
                continue
            assert_invalid(ep, r, f"{field}={wrong!r}")
        body = ep.body()
        del body[field]
        if ep.path != "/pc_session":
            assert_invalid(ep, call(front, ep, stack, body), f"{field} missing")


@pytest.mark.parametrize("ep", ENDPOINTS, ids=ids)
def test_65k_body_is_413(stack, front, ep):
    body = ep.body() or {}
    body["padding"] = "p" * (65 * 1024)
    r = call(front, ep, stack, raw=json.dumps(body))
    assert r.status == 413, (ep, r)
    if ep.seed:
        assert r.json == {"code": 0, "msg": "request body too large"}
    else:
        assert r.code == 16, (ep, r)


# (not /session_login: with an acceptable body it waits its 25 s)
READS_BODY = [e for e in POSTS if not e.path.startswith("/session_login")]


@pytest.mark.parametrize("ep", READS_BODY, ids=[repr(e) for e in READS_BODY])
def test_body_at_the_limit_is_read(stack, front, ep):
    body = ep.body() or {}
    body["padding"] = ""
    body["padding"] = "p" * (64 * 1024 - len(json.dumps(body)))
    raw = json.dumps(body)
    assert len(raw) == 64 * 1024
    r = call(front, ep, stack, raw=raw)
    assert r.status < 500 and r.status != 413, (ep, r)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=ids)
def test_unknown_fields_are_ignored(stack, front, ep):
    plain = call(front, ep, stack, ep.body())
    extra = ep.body() or {}
    extra.update({"zzz": 1, "nested": {"deep": [1, 2, {"x": None}]}, "\u00fcnicode": "\u4f60\u597d"})
    r = call(front, ep, stack, extra)
    assert r.status < 500, (ep, r)
    assert r.status == plain.status and code_of(ep, r) == code_of(ep, plain), (ep, plain, r)


ODD = ["\u4f60\u597d\u4e16\u754c", "o'; DROP TABLE users; --", "\" OR 1=1 --", "\\x27", "\U0001F600",
       "\u202e\u0000"[0]]


@pytest.mark.parametrize("ep", [e for e in POST_WITH_FIELDS if e.odd_string],
                         ids=[repr(e) for e in POST_WITH_FIELDS if e.odd_string])
def test_unicode_and_sql_quotes(stack, front, ep):
    for field, expected in ep.odd_string.items():
        for odd in ODD:
            body = ep.body()
            body[field] = odd + (f"-{unique_uid()}" if field in ("order_id", "room_id") else "")
            r = call(front, ep, stack, body)
            assert r.status < 500, (ep, field, odd, r)
            want = expected(odd) if callable(expected) else expected
            if ep.seed:
                assert r.json["code"] == (1 if want == 0 else 0), (ep, field, odd, r)
            else:
                assert r.code == want, (ep, field, odd, r)
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert {"users", "friends", "orders", "messages"} <= {row[0] for row in cur.fetchall()}


def test_odd_strings_are_stored_as_given(stack, front):
    """What a quote-laden or unicode device name becomes: exactly itself, shown to the phone."""
    web, phone = Client(front.url), Client(front.url)
    token = test_token(phone, unique_uid())
    for odd in ODD:
        r = web.post("/pc_session", {"device_name": odd})
        s = phone.post(f"/scan_pc/{r.result['token']}", token=token)
        assert s.result["device_name"] == odd


def test_garbage_headers(stack, front):
    client = Client(front.url)
    for headers in ({"Authorization": "Bearer"}, {"Authorization": "Bearer " + "x" * 6000},
                    {"Authorization": "Key"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Cookie": "mp_pc=" + "a" * 3000}, {"Cookie": ";;;=;mp_pc"}, {"authToken": "\u00ff".encode().decode("latin-1")}):
        r = client.get("/me", headers=headers)
        assert r.status == 401 and r.code == 13, (headers, r)
        r = client.post("/session_login/" + T32, headers=headers)
        assert r.status in (403, 410), (headers, r)


def test_raw_garbage_requests_do_not_hurt_the_server(stack):
    """Broken HTTP on the standalone front-end: each gets an error or a closed connection, and the server
    still answers afterwards."""
    for raw in (b"GARBAGE\r\n\r\n", b"POST /login HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                b"POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"POST /login HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"",
                b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                b"POST /send_code HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"4000\r\n" + b"a" * 0x4000 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", stack.http_port), timeout=5)
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            data = b""
        finally:
            s.close()
        if data:
            status = int(data.split(b" ", 2)[1])
            assert 400 <= status < 500, (raw[:40], data[:200])
    assert Client(stack.http_url).get("/healthz").status == 200
