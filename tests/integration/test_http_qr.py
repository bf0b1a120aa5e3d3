"""Web login by QR code (SPEC §3), as a browser and a phone do it, through nginx and the standalone front-end."""
import concurrent.futures
import re
import time
import xml.etree.ElementTree as ET

import pytest

from http_client import Client, ExtraHttp, front, login, new_mobile  # noqa: F401

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) MagpieWeb/1.0 \u4e2d\u6587"
pool = concurrent.futures.ThreadPoolExecutor(max_workers=16)


def poll_async(web, token, timeout=40):
    return pool.submit(web.post, f"/session_login/{token}", timeout=timeout)


def new_session(web, **body):
    r = web.post("/pc_session", body or None)
    assert r.status == 200 and r.code == 0, r
    return r.result["token"]


def test_whole_qr_flow_as_two_clients(stack, front):
    web = Client(front.url, ua=BROWSER_UA.encode("utf-8").decode("latin-1"))
    phone = Client(front.url, ua="MagpiePhone/2.0")
    uid, phone_token = login(phone, stack)

    r = web.post("/pc_session", {"device_name": "Office PC", "platform": 5, "clientId": "web-1"})
    assert r.status == 200 and r.code == 0, r
    token = r.result["token"]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert r.result["status"] == 0
    assert 0 < r.result["expired"] <= 120_000
    assert r.result["qr_text"] == "magpie://pcsession/" + token
    assert r.result["qr_url"] == f"{stack.conf['http.public_url']}/pc_session/{token}/qr.svg"
    set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and set_cookie.startswith("mp_pc=")

    svg = web.get(f"/pc_session/{token}/qr.svg")
    assert svg.status == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    path = root.find("{http://www.w3.org/2000/svg}path").get("d")
    assert path.count("M") > 50  # a real code: many dark runs

    # The browser waits; the phone scans and sees who is asking.
    first = poll_async(web, token)
    time.sleep(0.5)
    assert not first.done(), "the long poll answered before anything happened"
    scanned_at = time.time()
    s = phone.post(f"/scan_pc/{token}", token=phone_token)
    assert s.status == 200 and s.code == 0, s
    assert s.result["status"] == 1
    assert s.result["ip"] == web.ip
    assert s.result["user_agent"] == web.ua.encode("latin-1").decode("utf-8")
    assert s.result["device_name"] == "Office PC"
    assert abs(s.result["created"] / 1000 - time.time()) < 30

    p = first.result(timeout=10)
    assert time.time() - scanned_at < 3, "the scan did not wake the long poll"
    assert p.status == 200 and p.code == 9, p
    assert p.result["device_name"] == "Office PC"

    # The browser waits again; the phone confirms.
    second = poll_async(web, token)
    time.sleep(0.5)
    assert not second.done(), "a scanned session answered 9 twice"
    c = phone.post("/confirm_pc", {"token": token}, token=phone_token)
    assert c.status == 200 and c.code == 0 and c.result == {"status": 2}, c
    p = second.result(timeout=10)
    assert p.status == 200 and p.code == 0, p
    assert p.result["userId"] == uid
    me = web.get("/me", token=p.result["token"])
    assert me.status == 200 and me.result["userId"] == uid

    # Consumed: a second redeem gets 8.
    again = web.post(f"/session_login/{token}")
    assert again.status == 410 and again.code == 8, again


def test_user_name_shown_to_the_browser_is_the_masked_mobile(stack, front):
    web, phone = Client(front.url), Client(front.url)
    mobile = new_mobile()
    _, phone_token = login(phone, stack, mobile)
    token = new_session(web, device_name="Laptop")
    assert phone.post(f"/scan_pc/{token}", token=phone_token).code == 0
    p = web.post(f"/session_login/{token}")
    assert p.code == 9
    assert p.result["userName"] == "*" * (len(mobile) - 4) + mobile[-4:]


def test_another_cookie_jar_gets_14(stack, front):
    web, other = Client(front.url), Client(front.url)
    token = new_session(web)
    r = other.post(f"/session_login/{token}")
    assert r.status == 403 and r.code == 14, r
    # A browser with a cookie of its own (from its own session) is still not the one that created this one.
    new_session(other)
    r = other.post(f"/session_login/{token}")
    assert r.status == 403 and r.code == 14, r
    # And the right browser can still use it.
    phone = Client(front.url)
    _, pt = login(phone, stack)
    assert phone.post(f"/scan_pc/{token}", token=pt).code == 0
    assert web.post(f"/session_login/{token}").code == 9


def test_confirm_by_a_user_who_did_not_scan_gets_14(stack, front):
    web, phone, intruder = Client(front.url), Client(front.url), Client(front.url)
    _, pt = login(phone, stack)
    _, it = login(intruder, stack)
    token = new_session(web)
    # Nobody scanned yet: nobody may confirm.
    r = intruder.post("/confirm_pc", {"token": token}, token=it)
    assert r.status == 403 and r.code == 14, r
    assert phone.post(f"/scan_pc/{token}", token=pt).code == 0
    for path in ("/confirm_pc", "/cancel_pc"):
        r = intruder.post(path, {"token": token}, token=it)
        assert r.status == 403 and r.code == 14, (path, r)
    # A second scan by another user is refused too.
    r = intruder.post(f"/scan_pc/{token}", token=it)
    assert r.status == 403 and r.code == 14, r
    assert web.post(f"/session_login/{token}").code == 9
    assert phone.post("/confirm_pc", {"token": token}, token=pt).code == 0
    assert web.post(f"/session_login/{token}").code == 0


def test_scan_after_expiry_gets_8(stack, front):
    web, phone = Client(front.url), Client(front.url)
    _, pt = login(phone, stack)
    token = new_session(web)
    # The session's life is its Redis TTL (qr.session_ttl_s); let it run out now instead of in 120 s.
    stack.redis().pexpire(f"mp:qr:{token}", 1)
    time.sleep(0.05)
    r = phone.post(f"/scan_pc/{token}", token=pt)
    assert r.status == 410 and r.code == 8, r
    r = web.post(f"/session_login/{token}")
    assert r.status == 410 and r.code == 8, r
    r = web.get(f"/pc_session/{token}/qr.svg")
    assert r.status == 410 and r.code == 8, r


def test_cancel_then_poll_gets_18(stack, front):
    web, phone = Client(front.url), Client(front.url)
    _, pt = login(phone, stack)
    token = new_session(web)
    assert phone.post(f"/scan_pc/{token}", token=pt).code == 0
    assert web.post(f"/session_login/{token}").code == 9
    waiting = poll_async(web, token)
    time.sleep(0.3)
    c = phone.post("/cancel_pc", {"token": token}, token=pt)
    assert c.status == 200 and c.code == 0 and c.result == {"status": 4}, c
    p = waiting.result(timeout=10)
    assert p.status == 410 and p.code == 18, p
    p = web.post(f"/session_login/{token}")
    assert p.status == 410 and p.code == 18, p
    # Cancelled is final: no confirm, no scan.
    assert phone.post("/confirm_pc", {"token": token}, token=pt).code == 18
    assert phone.post(f"/scan_pc/{token}", token=pt).code == 18


def test_unknown_and_malformed_sessions_get_8(stack, front):
    web, phone = Client(front.url), Client(front.url)
    _, pt = login(phone, stack)
    new_session(web)  # the browser has a cookie
    for t in ("0" * 32, "zz", "A" * 32, "0" * 33):
        assert web.post(f"/session_login/{t}").code == 8, t
        assert phone.post(f"/scan_pc/{t}", token=pt).code == 8, t
        assert phone.post("/confirm_pc", {"token": t}, token=pt).code == 8, t
        assert web.get(f"/pc_session/{t}/qr.svg").code == 8, t


def test_poll_without_cookie_gets_14(stack, front):
    web, bare = Client(front.url), Client(front.url)
    token = new_session(web)
    r = bare.post(f"/session_login/{token}")
    assert r.status == 403 and r.code == 14, r


def test_browser_keeps_its_cookie_across_sessions(stack, front):
    web = Client(front.url)
    new_session(web)
    first = web.s.cookies.get("mp_pc")
    r = web.post("/pc_session")
    assert r.code == 0 and "Set-Cookie" in r.headers
    assert web.s.cookies.get("mp_pc") == first


def test_x_real_ip_from_the_client_is_not_trusted(stack, front):
    web, phone = Client(front.url), Client(front.url)
    _, pt = login(phone, stack)
    r = web.post("/pc_session", headers={"X-Real-IP": "203.0.113.9"})
    token = r.result["token"]
    s = phone.post(f"/scan_pc/{token}", token=pt)
    assert s.result["ip"] == web.ip


def test_two_polls_of_one_browser_both_answer(stack, front):
    """The same browser polling twice (two tabs): both are woken; the confirmation is handed out once."""
    web, phone = Client(front.url), Client(front.url)
    uid, pt = login(phone, stack)
    token = new_session(web)
    assert phone.post(f"/scan_pc/{token}", token=pt).code == 0
    assert web.post(f"/session_login/{token}").code == 9
    a, b = poll_async(web, token), poll_async(web, token)
    time.sleep(0.5)
    assert phone.post("/confirm_pc", {"token": token}, token=pt).code == 0
    codes = sorted([a.result(timeout=10).code, b.result(timeout=10).code])
    assert codes == [0, 8]


def test_configured_ttl_and_long_poll_time(stack):
    """qr.session_ttl_s and http.long_poll_s are what the config says: a poll with nothing to say answers 10
    after long_poll_s; a poll on a session that expires sooner answers 8 at its expiry."""
    extra = ExtraHttp(stack, "http-qr-times", {"MAGPIE_QR_SESSION_TTL_S": "10", "MAGPIE_HTTP_LONG_POLL_S": "3"})
    with extra:
        web = Client(extra.url)
        r = web.post("/pc_session")
        assert r.result["expired"] == 10_000
        token = r.result["token"]
        t0 = time.time()
        p = web.post(f"/session_login/{token}")
        waited = time.time() - t0
        assert p.code == 10 and 2.8 < waited < 6, (p, waited)
        # 3 s of the 10 went by; the next poll (up to 3 s) and the one after end before the expiry.
        while time.time() - t0 < 7.5:
            assert web.post(f"/session_login/{token}").code == 10
        t1 = time.time()
        p = web.post(f"/session_login/{token}")
        assert p.code == 8, p
        assert time.time() - t0 < 11.5 and time.time() - t1 < 3.5
