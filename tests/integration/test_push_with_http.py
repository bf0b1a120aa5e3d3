"""magpie-push with the real magpie-http in front (SPEC §3, §4): tickets from POST /IM/token, /logout and
/admin/kick closing connections, /admin/friends and /admin/orders feeding t and T, /msg to a user, /route
naming a live node. Skipped while magpie-http is not built in this tree."""
import pytest
import requests

from push_client import Chat, new_uid, run


@pytest.fixture
def http(stack):
    if stack.daemon_pid("http") is None:
        pytest.skip("needs magpie-http (POST /IM/token, /logout, /admin/*), built on its own branch")
    return stack.nginx_url


def _login_token(http, uid):
    """A login token for uid from the test-only POST /tk (seed 004 envelope)."""
    r = requests.post(f"{http}/tk", json={"uid": uid}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["code"] == 1
    return r.json()["data"]


def _wstoken(http, login):
    r = requests.post(f"{http}/IM/token", headers={"Authorization": f"Bearer {login}"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0 and body["result"]["expires_in"] == 120
    return body["result"]["wstoken"]


def _admin(stack, http, path, body):
    r = requests.post(f"{http}{path}", json=body, headers={"Authorization": f"Key {stack.api_key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_ticket_from_IM_token_opens_one_chat_connection(stack, http):
    async def go():
        uid = new_uid()
        tk = _wstoken(http, _login_token(http, uid))
        c = await Chat.connect(stack, uid=uid, tk=tk)
        assert c.login["type"] == "L"
        again = await Chat.connect(stack, uid=uid, tk=tk, expect_login=False)
        code, _, packets = await again.closed()
        assert [(p["type"], p["msg"]) for p in packets] == [("E", "ticket already used")] and code == 1008
    run(go())


def test_logout_closes_the_connections_opened_with_that_login_only(stack, http):
    async def go():
        uid = new_uid()
        phone_login, web_login = _login_token(http, uid), _login_token(http, uid)
        phone = await Chat.connect(stack, uid=uid, tk=_wstoken(http, phone_login))
        phone2 = await Chat.connect(stack, uid=uid, tk=_wstoken(http, phone_login))
        web = await Chat.connect(stack, uid=uid, tk=_wstoken(http, web_login))
        r = requests.post(f"{http}/logout", headers={"Authorization": f"Bearer {phone_login}"}, timeout=10)
        assert r.status_code == 200 and r.json()["code"] == 0
        for c in (phone, phone2):
            code, _, packets = await c.closed()
            assert [(p["type"], p["msg"]) for p in packets] == [("C", "logout")]
        assert (await web.request("P"))["type"] == "P"
    run(go())


def test_admin_kick_closes_every_connection_of_the_user(stack, http):
    async def go():
        uid = new_uid()
        conns = [await Chat.connect_on(stack, node, uid=uid) for node in (1, 2)]
        _admin(stack, http, "/admin/kick", {"uid": uid})
        for c in conns:
            code, _, packets = await c.closed()
            assert [(p["type"], p["msg"]) for p in packets] == [("C", "kicked")]
    run(go())


def test_admin_friends_and_orders_feed_t_and_T(stack, http):
    async def go():
        a, b, customer = await Chat.connect(stack), await Chat.connect(stack), await Chat.connect(stack)
        assert (await a.text(b.uid, "before"))["msg"] == "not friends"
        _admin(stack, http, "/admin/friends", {"a": a.uid, "b": b.uid})
        assert (await a.text(b.uid, "after"))["type"] == "A"
        order = f"http-{new_uid()}"
        _admin(stack, http, "/admin/orders", {"order_id": order, "customer": customer.uid})
        reply = await a.request("T", order)
        assert reply["msg"] == {"order": order, "customer": customer.uid}
        s = await customer.wait_for(lambda p: p["type"] == "s")
        assert s["msg"] == {"event": "order_taken", "order": order, "courier": a.uid}
        with stack.mysql() as db, db.cursor() as cur:
            cur.execute("SELECT customer, courier FROM orders WHERE id = %s", (order,))
            assert cur.fetchone() == (customer.uid, a.uid)
    run(go())


def test_msg_to_a_user_reaches_every_connection_as_s(stack, http):
    async def go():
        uid = new_uid()
        conns = [await Chat.connect_on(stack, node, uid=uid) for node in (1, 2)]
        r = requests.post(f"{http}/msg", json={"to": uid, "msg": "your parcel is here"},
                          headers={"Authorization": f"Key {stack.api_key}"}, timeout=10)
        assert r.status_code == 200 and r.json()["code"] == 1, r.text
        for c in conns:
            s = await c.wait_for(lambda p: p["type"] == "s")
            assert s["from"] == 0 and "your parcel is here" in str(s["msg"])
    run(go())


def test_route_names_a_live_push_node(stack, http):
    login = _login_token(http, new_uid())
    r = requests.post(f"{http}/route", headers={"Authorization": f"Bearer {login}"}, timeout=10)
    assert r.status_code == 200 and r.json()["code"] == 0, r.text
    result = r.json()["result"]
    assert str(result["node"]) in {"1", "2"}
    assert result["ws_url"] == stack.conf["push.advertise_url"]
