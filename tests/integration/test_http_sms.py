"""Login by SMS code (SPEC §3): codes, limits, attempts; through nginx and the standalone front-end."""
import os
import stat
import time

import pytest

from http_client import Client, ExtraHttp, front, login, new_mobile, parallel, sms_lines  # noqa: F401


def test_burst_of_50_sends_exactly_one_code(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    replies = parallel(lambda _: client.post("/send_code", {"mobile": mobile}), range(50))
    ok = [r for r in replies if r.code == 0]
    limited = [r for r in replies if r.code == 3]
    assert len(ok) == 1, replies
    assert ok[0].status == 200
    assert len(limited) == 49 and all(r.status == 429 for r in limited)
    assert len(sms_lines(stack, mobile)) == 1


def test_five_wrong_codes_burn_the_code(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    assert client.post("/send_code", {"mobile": mobile}).code == 0
    right = sms_lines(stack, mobile)[-1]
    wrong = "%06d" % ((int(right) + 1) % 1_000_000)
    for _ in range(4):
        r = client.post("/login", {"mobile": mobile, "code": wrong})
        assert r.status == 400 and r.code == 6, r
    r = client.post("/login", {"mobile": mobile, "code": wrong})
    assert r.status == 429 and r.code == 4, r
    r = client.post("/login", {"mobile": mobile, "code": right})
    assert r.status == 429 and r.code == 4, r


def test_a_used_code_cannot_log_in_twice(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    assert client.post("/send_code", {"mobile": mobile}).code == 0
    code = sms_lines(stack, mobile)[-1]
    first = client.post("/login", {"mobile": mobile, "code": code, "clientId": "app-1", "platform": 2})
    assert first.status == 200 and first.code == 0, first
    assert first.result["register"] is True
    assert first.result["expires_in"] == 604800
    assert first.headers["authToken"] == first.result["token"]
    again = client.post("/login", {"mobile": mobile, "code": code})
    assert again.status == 400 and again.code == 5, again
    # The same number later is the same user, no longer new.
    other = Client(front.url)
    stack.redis().delete(f"mp:sms:resend:{{{mobile}}}")  # skip the 60 s resend wait
    assert other.post("/send_code", {"mobile": mobile}).code == 0
    r = other.post("/login", {"mobile": mobile, "code": sms_lines(stack, mobile)[-1]})
    assert r.code == 0 and r.result["register"] is False
    assert r.result["userId"] == first.result["userId"]


def test_first_login_creates_the_user(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    uid, token = login(client, stack, mobile)
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT id FROM users WHERE mobile = %s", (mobile,))
        assert cur.fetchone()[0] == uid
    me = client.get("/me", token=token)
    assert me.result == {"userId": uid, "mobile": "*******" + mobile[-4:]}


def test_code_without_request_or_for_another_number(stack, front):
    client = Client(front.url)
    r = client.post("/login", {"mobile": new_mobile(), "code": "123456"})
    assert r.status == 400 and r.code == 5, r
    a, b = new_mobile(), new_mobile()
    assert client.post("/send_code", {"mobile": a}).code == 0
    r = client.post("/login", {"mobile": b, "code": sms_lines(stack, a)[-1]})
    assert r.code == 5, r


def test_code_is_six_digits_with_the_configured_ttl(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    assert client.post("/send_code", {"mobile": mobile}).code == 0
    code = sms_lines(stack, mobile)[-1]
    assert len(code) == 6 and code.isdigit()
    ttl = stack.redis().ttl(f"mp:sms:code:{{{mobile}}}")
    assert 290 <= ttl <= 300


def test_resend_interval_per_number(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    assert client.post("/send_code", {"mobile": mobile}).code == 0
    r = client.post("/send_code", {"mobile": mobile})
    assert r.status == 429 and r.code == 3
    # Another number from the same client is not affected.
    assert client.post("/send_code", {"mobile": new_mobile()}).code == 0


def test_per_ip_limit(stack, front):
    """200 /send_code per 60 s per client address (X-Real-IP from nginx, the peer for the standalone)."""
    client = Client(front.url)
    replies = parallel(lambda _: client.post("/send_code", {"mobile": new_mobile()}), range(200), workers=20)
    assert all(r.code == 0 for r in replies), [r for r in replies if r.code != 0][:3]
    mobile = new_mobile()
    r = client.post("/send_code", {"mobile": mobile})
    assert r.status == 429 and r.code == 3, r
    assert sms_lines(stack, mobile) == []
    # Another address is not limited.
    assert Client(front.url).post("/send_code", {"mobile": mobile}).code == 0


@pytest.mark.parametrize("mobile", ["", "abc", "1234", "1380013800012345", "138-0013-8000", "13800138000'--",
                                    "\uff11\uff13\uff18\uff10\uff10\uff11\uff13\uff18", "+", " 13800138000"])
def test_invalid_mobile_gets_1(stack, front, mobile):
    r = Client(front.url).post("/send_code", {"mobile": mobile})
    assert r.status == 400 and r.code == 1, r
    r = Client(front.url).post("/login", {"mobile": mobile, "code": "123456"})
    assert r.status == 400 and r.code == 1, r


def test_daily_limit_per_number(stack):
    with ExtraHttp(stack, "http-sms-daily", {"MAGPIE_SMS_RESEND_INTERVAL_S": "1", "MAGPIE_SMS_DAILY_LIMIT": "3"}) as h:
        client = Client(h.url)
        mobile = new_mobile()
        for _ in range(3):
            assert client.post("/send_code", {"mobile": mobile}).code == 0
            time.sleep(1.1)
        r = client.post("/send_code", {"mobile": mobile})
        assert r.status == 429 and r.code == 3, r
        assert len(sms_lines(stack, mobile)) == 3


def _script(stack, name, body):
    path = os.path.join(stack.run, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, stat.S_IRWXU)
    return path


def test_delivery_by_command(stack):
    out = os.path.join(stack.run, "sms-command.out")
    cmd = _script(stack, "sms-ok.sh", f'echo "$MAGPIE_SMS_MOBILE $MAGPIE_SMS_CODE" >> {out}\n')
    with ExtraHttp(stack, "http-sms-cmd", {"MAGPIE_SMS_COMMAND": cmd}) as h:
        client = Client(h.url)
        mobile = new_mobile()
        assert client.post("/send_code", {"mobile": mobile}).code == 0
        lines = [l.split() for l in open(out)]
        code = [c for m, c in lines if m == mobile][-1]
        r = client.post("/login", {"mobile": mobile, "code": code})
        assert r.code == 0, r
        assert sms_lines(stack, mobile) == []  # the command, not the sink
        assert code not in h.log_text()


def test_failed_delivery_is_code_20_and_undone(stack):
    cmd = _script(stack, "sms-fail.sh", "exit 3\n")
    with ExtraHttp(stack, "http-sms-fail", {"MAGPIE_SMS_COMMAND": cmd}) as h:
        client = Client(h.url)
        mobile = new_mobile()
        r = client.post("/send_code", {"mobile": mobile})
        assert r.status == 503 and r.code == 20, r
        # Nothing was left behind: no code to guess, no resend lock.
        assert not stack.redis().exists(f"mp:sms:code:{{{mobile}}}", f"mp:sms:resend:{{{mobile}}}")
        r = client.post("/send_code", {"mobile": mobile})
        assert r.code == 20, r  # still failing, but not "too frequent"
    slow = _script(stack, "sms-slow.sh", "sleep 30\n")
    with ExtraHttp(stack, "http-sms-slow", {"MAGPIE_SMS_COMMAND": slow, "MAGPIE_SMS_COMMAND_TIMEOUT_S": "1"}) as h:
        t0 = time.time()
        r = Client(h.url).post("/send_code", {"mobile": new_mobile()})
        assert r.code == 20 and time.time() - t0 < 5, r


def test_fixed_test_code_only_when_configured(stack, front):
    mobile = new_mobile()
    r = Client(front.url).post("/login", {"mobile": mobile, "code": "000000"})
    assert r.code == 5, r
    with ExtraHttp(stack, "http-sms-testcode", {"MAGPIE_SMS_TEST_CODE": "000000"}) as h:
        r = Client(h.url).post("/login", {"mobile": mobile, "code": "000000"})
        assert r.code == 0 and r.result["register"] is True, r
        assert "sms.test_code is set" in h.log_text()


def test_codes_are_never_logged(stack, front):
    client = Client(front.url)
    mobile = new_mobile()
    assert client.post("/send_code", {"mobile": mobile}).code == 0
    code = sms_lines(stack, mobile)[-1]
    client.post("/login", {"mobile": mobile, "code": code})
    logs = os.path.join(stack.run, "logs")
    for name in os.listdir(logs):
        if name == os.path.basename(stack.conf["sms.sink_file"]):
            continue
        with open(os.path.join(logs, name), "rb") as f:
            data = f.read()
        assert f"{mobile} {code}".encode() not in data, name
        assert mobile.encode() not in data, f"{name} holds an unmasked mobile number"
