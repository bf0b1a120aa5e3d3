"""magpie-push obeys magpie-http's commands on the control channel (shared/bus.h: kick, logout, deliver),
on every node, and reports what it does on /metrics and /healthz (SPEC §9)."""
import json
import urllib.request
import uuid

from push_client import Bystander, Chat, make_friends, metrics, new_uid, run, ticket, wait_until


def _publish(stack, cmd):
    """What magpie-http does for /admin/kick, /logout and /msg to a user."""
    return stack.redis().publish("mp:ctl", json.dumps(cmd))


def test_kick_sends_C_then_closes_every_connection_of_the_user_on_every_node(stack):
    async def go():
        k1 = await Chat.connect_on(stack, 1)
        k2 = await Chat.connect_on(stack, 2, uid=k1.uid)
        other = await Chat.connect(stack)
        _publish(stack, {"cmd": "kick", "uid": k1.uid})
        for k in (k1, k2):
            code, reason, packets = await k.closed()
            assert [(p["type"], p["from"], p["msg"]) for p in packets] == [("C", 0, "kicked")]
            assert code == 1008
        assert (await other.request("P"))["type"] == "P"
    run(go())


def test_logout_closes_only_the_connections_opened_from_that_login(stack):
    async def go():
        uid = new_uid()
        phone_sid, web_sid = uuid.uuid4().hex, uuid.uuid4().hex
        # straight to each node (each has its own connections to close)
        phone = await Chat.connect(stack, uid=uid, tk=ticket(stack, uid, sid=phone_sid), node=1)
        phone2 = await Chat.connect(stack, uid=uid, tk=ticket(stack, uid, sid=phone_sid), node=2)
        web = await Chat.connect(stack, uid=uid, tk=ticket(stack, uid, sid=web_sid), node=2)
        _publish(stack, {"cmd": "logout", "uid": uid, "sid": phone_sid})
        for c in (phone, phone2):
            code, _, packets = await c.closed()
            assert [(p["type"], p["msg"]) for p in packets] == [("C", "logout")]
            assert code == 1000
        assert (await web.request("P"))["type"] == "P"
        assert web.open
    run(go())


def test_deliver_puts_a_server_packet_on_every_connection_of_the_user(stack):
    async def go():
        d1 = await Chat.connect_on(stack, 1)
        d2 = await Chat.connect_on(stack, 2, uid=d1.uid)
        packet = {"id": "sys-1", "from": 0, "type": "s", "msg": {"event": "promo", "text": "¡hola!"}}
        _publish(stack, {"cmd": "deliver", "uid": d1.uid, "packet": packet})
        for d in (d1, d2):
            assert await d.wait_for(lambda p: p["type"] == "s") == packet
    run(go())


def test_bad_control_payloads_are_ignored(stack):
    async def go():
        async with Bystander(stack, node=1):
            c = await Chat.connect_on(stack, 1)
            for payload in ("", "not json", "[]", '{"cmd":"kick"}', '{"cmd":"kick","uid":"x"}',
                            '{"cmd":"explode","uid":%d}' % c.uid, '{"cmd":"logout","uid":%d}' % c.uid,
                            '{"cmd":"deliver","uid":%d,"packet":"text"}' % c.uid):
                stack.redis().publish("mp:ctl", payload)
            assert (await c.request("P"))["type"] == "P"
            assert c.open and not await c.collect(0.3)
    run(go())


def test_metrics_count_connections_packets_acks_errors_and_delivery_latency(stack):
    async def go():
        port = stack.push_metrics_ports[0]
        before = metrics(port)
        a = await Chat.connect_on(stack, 1)
        b = await Chat.connect_on(stack, 1)
        make_friends(stack, a.uid, b.uid)
        assert (await a.text(b.uid, "measured"))["type"] == "A"
        await b.wait_for(lambda p: p["type"] == "t")
        await a.request("P")
        await a.send("junk")
        await a.recv()

        def grown():
            now = metrics(port)

            def delta(name):
                return now.get(name, 0) - before.get(name, 0)
            return (delta('magpie_push_packets_total{protocol="chat",type="t"}') >= 1 and
                    delta('magpie_push_packets_total{protocol="chat",type="P"}') >= 1 and
                    delta("magpie_push_acks_total") >= 1 and
                    delta('magpie_push_errors_total{reason="malformed"}') >= 1 and
                    delta("magpie_push_delivery_seconds_count") >= 1 and
                    now.get('magpie_push_connections{protocol="chat"}', 0) >= 2 and
                    now.get("magpie_push_redis_up") == 1)
        await wait_until(grown, 3, "the metrics to count what happened")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            text = r.read().decode()
        assert "# TYPE magpie_push_delivery_seconds histogram" in text
        assert "# TYPE magpie_push_queue_drops_total counter" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200 and json.loads(r.read()) == {"ok": True, "reason": ""}
    run(go())


def test_sighup_reopens_the_log_file(stack):
    """logrotate moves the file away and sends SIGHUP; the node writes to a fresh file of the same name."""
    import os
    import signal
    log = os.path.join(stack.run, "logs", "push1.log")
    os.rename(log, log + ".1")
    os.kill(stack.daemon_pid("push1"), signal.SIGHUP)

    async def go():
        c = await Chat.connect(stack, node=1)
        await wait_until(lambda: os.path.exists(log) and f"uid={c.uid}" in open(log).read(), 3,
                         "the new log file to get the next line")
    run(go())
    with open(log + ".1") as old, open(log) as new:
        assert old.read() and "chat open" in new.read()
