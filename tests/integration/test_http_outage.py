"""Dependencies going away and coming back (SPEC §3 code 20, §8): Redis stopped -> /healthz 503 naming
Redis, endpoints code 20; Redis back -> working again without a restart. The same for MySQL. Through nginx
and the standalone front-end at once (one outage, both checked)."""
import concurrent.futures
import time

import pytest

from http_client import (Client, FRONTS, Front, login, new_mobile, sms_lines, start_mariadb, stop_mariadb,
                         test_token, unique_uid, wait_until)


def clients(stack):
    return [Client(Front(stack, name).url) for name in FRONTS]


def test_redis_down_and_back(stack):
    cs = clients(stack)
    tokens = [test_token(c, unique_uid()) for c in cs]
    phone = Client(stack.http_url)
    _, phone_token = login(phone, stack)
    # A browser already waiting when Redis goes away.
    web = Client(stack.nginx_url)
    waiting_session = web.post("/pc_session").result["token"]
    pool = concurrent.futures.ThreadPoolExecutor(4)
    waiting = pool.submit(web.post, f"/session_login/{waiting_session}", timeout=60)
    time.sleep(0.3)

    stack.stop_redis()
    try:
        for c, token in zip(cs, tokens):
            h = c.get("/healthz")
            assert h.status == 503 and h.code == 20, h
            assert "redis" in h.json["message"] and "mysql" not in h.json["message"]
            assert h.result == {"redis": "down", "mysql": "ok"}
            for method, path, body, auth in [
                ("POST", "/send_code", {"mobile": new_mobile()}, None),
                ("POST", "/login", {"mobile": new_mobile(), "code": "123456"}, None),
                ("POST", "/pc_session", None, None),
                ("POST", "/IM/token", None, token),
                ("GET", "/me", None, token),
                ("GET", "/friends", None, token),
                ("POST", "/route", None, token),
                ("POST", "/logout", None, token),
                ("POST", "/admin/kick", {"uid": 5}, "key"),
                ("POST", "/admin/orders", {"order_id": f"o{unique_uid()}", "customer": 5}, "key"),
            ]:
                kw = {"key": stack.api_key} if auth == "key" else {"token": auth} if auth else {}
                r = c.call(method, path, body, **kw)
                assert r.status == 503 and r.code == 20, (path, r)
            r = c.post("/msg", {"to": 5, "msg": "x"}, key=stack.api_key)
            assert r.status == 503 and r.json["code"] == 0, r
            r = c.post(f"/session_login/{'0' * 32}", headers={"Cookie": "mp_pc=" + "1" * 32})
            assert r.status == 503 and r.code == 20, r
    finally:
        stack.start_redis()

    # Back without a restart (reconnects are backed off up to 2 s).
    for c, token in zip(cs, tokens):
        wait_until(lambda: c.get("/healthz").status == 200, what="healthz 200 again")
        wait_until(lambda: c.post("/IM/token", token=token).status == 200, what="endpoints again")
    # Every handler thread has its own connection, retried no sooner than its backoff (at most 2 s, rds.h).
    time.sleep(2.5)
    for c, token in zip(cs, tokens):
        for _ in range(20):  # many requests, so every thread of each front-end is seen
            assert c.post("/IM/token", token=token).code == 0
        uid, t = login(c, stack)
        assert c.get("/me", token=t).result["userId"] == uid

    # The long poll that waited through the outage still works: the scan wakes it.
    assert phone.post(f"/scan_pc/{waiting_session}", token=phone_token).code == 0
    r = waiting.result(timeout=30)
    assert r.code == 9, r
    # And new long polls are woken by state changes (the subscription came back).
    token = web.post("/pc_session").result["token"]
    poll = pool.submit(web.post, f"/session_login/{token}", timeout=60)
    time.sleep(0.5)
    t0 = time.time()
    assert phone.post(f"/scan_pc/{token}", token=phone_token).code == 0
    assert poll.result(timeout=30).code == 9
    assert time.time() - t0 < 3


def test_mysql_down_and_back(stack):
    cs = clients(stack)
    users = []
    for c in cs:
        users.append(login(c, stack))
    mobiles = [new_mobile() for _ in cs]
    for c, m in zip(cs, mobiles):
        assert c.post("/send_code", {"mobile": m}).code == 0

    stop_mariadb(stack)
    try:
        for c, (uid, token), m in zip(cs, users, mobiles):
            h = c.get("/healthz")
            assert h.status == 503 and h.code == 20 and "mysql" in h.json["message"], h
            assert h.result == {"redis": "ok", "mysql": "down"}
            r = c.post("/login", {"mobile": m, "code": sms_lines(stack, m)[-1]})
            assert r.status == 503 and r.code == 20, r
            r = c.get("/me", token=token)
            assert r.status == 503 and r.code == 20, r
            r = c.post("/admin/friends", {"a": unique_uid(), "b": unique_uid()}, key=stack.api_key)
            assert r.status == 503 and r.code == 20, r
            # adding members checks MySQL's users table: refused, nothing created
            r = c.post("/groups", {"name": "g", "members": [unique_uid()]}, token=token)
            assert r.status == 503 and r.code == 20 and "mysql" in r.json["message"], r
            assert c.get("/groups", token=token).result == {"groups": []}
            # What needs only Redis keeps working.
            assert c.post("/IM/token", token=token).code == 0
            assert c.post("/pc_session").code == 0
            assert c.post("/groups", {"name": "only me"}, token=token).code == 0
    finally:
        start_mariadb(stack)

    for c, (uid, token), m in zip(cs, users, mobiles):
        wait_until(lambda: c.get("/healthz").status == 200, timeout=20, what="healthz 200 again")
    time.sleep(2.5)  # every thread's reconnect backoff (db.h) has run out
    for c, (uid, token), m in zip(cs, users, mobiles):
        # The code taken by the failed login was put back: it still logs in.
        r = c.post("/login", {"mobile": m, "code": sms_lines(stack, m)[-1]})
        assert r.status == 200 and r.code == 0, r
        assert c.get("/me", token=token).result["userId"] == uid
