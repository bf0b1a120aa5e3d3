"""Tokens (SPEC §3): the WebSocket ticket, forged and stale tokens on every user endpoint, logout."""
import base64
import json
import time

import jwt
import pytest

from http_client import BusListener, Client, front, login, remember, test_token, unique_uid  # noqa: F401

# Every endpoint that needs a logged-in user, with a body that would otherwise be acceptable.
USER_ENDPOINTS = [
    ("GET", "/me", None),
    ("GET", "/friends", None),
    ("POST", "/logout", None),
    ("POST", "/IM/token", None),
    ("POST", "/route", None),
    ("POST", "/scan_pc/" + "0" * 32, None),
    ("POST", "/confirm_pc", {"token": "0" * 32}),
    ("POST", "/cancel_pc", {"token": "0" * 32}),
    ("POST", "/msg", {"to": 5, "msg": "hi"}),
]


def b64(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(uid, kind="login", ttl=3600, **extra):
    now = int(time.time())
    c = {"id": uid, "type": kind, "jti": "f" * 32, "iat": now, "exp": now + ttl}
    c.update(extra)
    return c


def forged_tokens(stack, uid):
    good_claims = claims(uid)
    return {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(good_claims)}.",
        "alg none with signature": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(good_claims)}.AAAA",
        "foreign key": jwt.encode(good_claims, "another-secret-of-at-least-32-bytes!!", algorithm="HS256"),
        "HS512 with our key": jwt.encode(good_claims, stack.secret, algorithm="HS512"),
        "expired": jwt.encode(claims(uid, ttl=-10), stack.secret, algorithm="HS256"),
        "wrong kind": jwt.encode(claims(uid, kind="websocket"), stack.secret, algorithm="HS256"),
        "no kind": jwt.encode({k: v for k, v in good_claims.items() if k != "type"}, stack.secret,
                              algorithm="HS256"),
        "tampered payload": None,  # filled below
        "garbage": "not-a-token",
        "empty": "",
        "huge": "a" * 5000,
    }


def test_im_token_is_a_websocket_ticket(stack, front):
    client = Client(front.url)
    uid, token = login(client, stack)
    r = client.post("/IM/token", token=token)
    assert r.status == 200 and r.code == 0, r
    assert r.result["expires_in"] == 120
    ticket = r.result["wstoken"]
    assert jwt.get_unverified_header(ticket)["alg"] == "HS256"
    c = jwt.decode(ticket, stack.secret, algorithms=["HS256"])
    assert c["type"] == "websocket"
    assert c["id"] == uid
    assert c["exp"] == c["iat"] + 120
    assert abs(c["iat"] - time.time()) < 30
    login_claims = jwt.decode(token, stack.secret, algorithms=["HS256"])
    assert login_claims["type"] == "login"
    assert c["sid"] == login_claims["jti"]
    assert c["jti"] != login_claims["jti"]
    # Each call mints a new ticket (one ticket opens one connection).
    again = client.post("/IM/token", token=token).result["wstoken"]
    assert jwt.decode(again, stack.secret, algorithms=["HS256"])["jti"] != c["jti"]
    # A ticket is not a login token.
    r = client.get("/me", token=ticket)
    assert r.status == 401 and r.code == 13


@pytest.mark.parametrize("method,path,body", USER_ENDPOINTS, ids=[p for _, p, _ in USER_ENDPOINTS])
def test_bad_tokens_are_refused_on_every_user_endpoint(stack, front, method, path, body):
    client = Client(front.url)
    uid = unique_uid()
    good = test_token(client, uid)
    tokens = forged_tokens(stack, uid)
    head, payload, sig = good.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered["id"] = uid + 1
    tokens["tampered payload"] = f"{head}.{b64(tampered)}.{sig}"
    seed = path == "/msg"
    for name, tok in tokens.items():
        for how in ("bearer", "authToken"):
            headers = {"Authorization": f"Bearer {tok}"} if how == "bearer" else {"authToken": tok}
            r = client.call(method, path, body, headers=headers)
            assert r.status == 401, (name, how, r)
            if seed:
                assert r.json["code"] == 1001, (name, how, r)
            else:
                assert r.code == 13, (name, how, r)
    # No token at all.
    r = client.call(method, path, body)
    assert r.status == 401


def test_good_token_works_with_either_header(stack, front):
    client = Client(front.url)
    uid, token = login(client, stack)
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).result["userId"] == uid
    assert client.get("/me", headers={"authToken": token}).result["userId"] == uid
    assert client.get("/me", headers={"Authorization": token}).result["userId"] == uid  # seed 004 style


def test_logout_revokes_the_token(stack, front):
    client = Client(front.url)
    uid, token = login(client, stack)
    _, other_token = login(client, stack)  # another user, unaffected
    jti = jwt.decode(token, stack.secret, algorithms=["HS256"])["jti"]
    bus = BusListener(stack, "mp:ctl")
    try:
        r = client.post("/logout", token=token)
        assert r.status == 200 and r.code == 0, r
        msg = bus.next()
    finally:
        bus.close()
    assert msg is not None, "no logout command on the control channel"
    assert msg[0] == "mp:ctl"
    exp = jwt.decode(token, stack.secret, algorithms=["HS256"])["exp"]
    assert json.loads(msg[1]) == {"cmd": "logout", "uid": uid, "sid": jti, "exp": exp}
    ttl = stack.redis().ttl(f"mp:revoked:{jti}")
    assert 604800 - 60 <= ttl <= 604800
    assert stack.redis().zscore("mp:revocations", jti) == exp  # the index every magpie-http's copy reads
    for method, path, body in USER_ENDPOINTS:
        r = client.call(method, path, body, token=token)
        assert r.status == 401, (path, r)
    assert client.get("/me", token=other_token).status == 200


def test_a_second_session_of_the_same_user_survives_logout(stack, front):
    client = Client(front.url)
    uid = unique_uid()
    a, b = test_token(client, uid), test_token(client, uid)
    assert client.post("/logout", token=a).code == 0
    assert client.post("/IM/token", token=a).status == 401
    assert client.post("/IM/token", token=b).code == 0


def test_api_key_endpoints(stack, front):
    client = Client(front.url)
    _, token = login(client, stack)
    for path, body in (("/admin/kick", {"uid": 5}), ("/admin/friends", {"a": 1, "b": 2}),
                       ("/admin/orders", {"order_id": "x", "customer": 1})):
        assert client.post(path, body).status == 401
        assert client.post(path, body, token=token).status == 401  # a user is not a server
        assert client.post(path, body, key="wrong-key-of-enough-length").status == 401
        assert client.post(path, body, key=stack.api_key[:-1]).status == 401
        assert client.post(path, body, key=stack.api_key).status == 200
