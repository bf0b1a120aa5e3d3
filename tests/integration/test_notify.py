"""Offline notifications (SPEC §6; design in notify/notify_worker.h): a message stored for a user with no open
connection becomes one signed webhook event; nothing is lost or doubled across receiver failures and a kill -9
of magpie-notify; a hostile receiver costs bounded time and memory and never stalls chat.

Each test starts its own magpie-notify with short timings and its own receiver; the stack's magpie-notify is
stopped for the module (it posts to NOTIFY_PORT, where nothing listens, with the default backoff).
Set MAGPIE_TEST_NOTIFY_DOWN_S=30 for the issue's full "receiver down for 30 s" (default 5 s)."""
import asyncio
import os
import signal
import time

import pytest

from http_client import Client
from notify_client import (KEY_NOTIFY, KEY_NOTIFY_DEAD, NotifyDaemon, Receiver, closed_port, notify_secret, queued,
                           signature, wait_for)
from push_client import Chat, ExtraNode, make_friends, new_uid, node_of, run, wait_until
import rkeys

DOWN_S = float(os.environ.get("MAGPIE_TEST_NOTIFY_DOWN_S", "5"))


@pytest.fixture(scope="module", autouse=True)
def quiet_stack_notify(stack):
    stack.kill_daemon("notify")
    yield
    stack.start_daemon("notify")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


async def send_all(chat, to, texts):
    acks = []
    for t in texts:
        a = await chat.text(to, t)
        assert a["type"] == "A", a
        acks.append(a)
    return acks


def by_id(events):
    """event_id -> event, checking that a repeated event_id is the same event (at-least-once)."""
    out = {}
    for e in events:
        if e["event_id"] in out:
            assert out[e["event_id"]] == e, "an event_id came twice with different contents"
        out[e["event_id"]] = e
    return out


def assert_in_order_per_recipient(events):
    """Per recipient, the first arrival of each event is in seq order (a later event never overtakes)."""
    seen, last = set(), {}
    for e in events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        assert e["seq"] > last.get(e["to"], 0), f"event out of order for {e['to']}: {e['seq']} after {last[e['to']]}"
        last[e["to"]] = e["seq"]


def test_offline_recipient_gets_one_signed_event_with_the_spec_fields(stack, receiver):
    d = NotifyDaemon(stack, receiver.url, name="notify-fields")
    try:
        async def go():
            a, b = new_uid(), new_uid()
            make_friends(stack, a, b)
            ca = await Chat.connect(stack, a)
            text = "héllo " + "ü" * 200  # longer than notify.preview_chars (100), multi-byte characters
            acks = await send_all(ca, b, [text, "second"])
            wait_for(lambda: len(receiver.events(b)) >= 2, 10, "two events")
            await asyncio.sleep(0.5)
            evs = receiver.events(b)
            assert len(evs) == 2
            first, second = evs
            assert first["type"] == "message" and first["kind"] == "t"
            assert (first["to"], first["from"], first["conversation"]) == (b, a, {"with": a})
            assert first["mid"] == acks[0]["mid"] and second["mid"] == acks[1]["mid"]
            assert (first["seq"], second["seq"]) == (1, 2)  # b's own timeline
            assert (first["unread"], second["unread"]) == (1, 2)
            assert first["preview"] == text[:100] and second["preview"] == "second"
            assert abs(first["ts"] - time.time() * 1000) < 60_000
            assert first["event_id"] != second["event_id"]
            for sig, body, _, _ in receiver.batches:
                assert sig == signature(notify_secret(stack), body)
            # b reads up to the second message, goes away; the third counts 1 unread
            cb = await Chat.connect(stack, b)
            r = await cb.request("R", {"with": a, "mid": acks[1]["mid"]})
            assert r["type"] == "A"
            await cb.close()
            await wait_until(lambda: sum(node_of(stack, b).values()) == 0, 5, "b offline")
            await send_all(ca, b, ["third"])
            wait_for(lambda: len(receiver.events(b)) >= 3, 10, "the third event")
            third = receiver.events(b)[2]
            assert (third["seq"], third["unread"]) == (3, 1)
            wait_for(lambda: queued(stack, b) == [], 5, "delivered events to leave the stream")  # XDEL follows the 2xx
        run(go())
        assert d.metric("magpie_notify_events_sent_total") >= 3
        assert d.metric("magpie_notify_webhook_seconds_count") >= 1
    finally:
        d.stop()


def test_online_recipient_gets_none_and_post_msg_to_an_offline_user_gets_one(stack, receiver):
    d = NotifyDaemon(stack, receiver.url, name="notify-online")
    try:
        async def go():
            a, online, offline = new_uid(), new_uid(), new_uid()
            make_friends(stack, a, online)
            make_friends(stack, a, offline)
            ca, co = await Chat.connect(stack, a), await Chat.connect(stack, online)
            await send_all(ca, online, ["you are here"])
            await co.messages(1)
            await send_all(ca, offline, ["marker"])  # sent after: its event proves the first was judged
            wait_for(lambda: receiver.events(offline), 10, "the offline user's event")
            assert receiver.events(online) == [] and queued(stack, online) == []
            # POST /msg {to}: a system packet, an event of type "system" when the user is offline
            c = Client(stack.nginx_url)
            try:
                rep = c.post("/msg", {"to": offline, "msg": "your order shipped"}, key=stack.api_key)
                assert rep.status == 200, rep
                rep = c.post("/msg", {"to": online, "msg": "not for the webhook"}, key=stack.api_key)
                assert rep.status == 200, rep
            finally:
                c.close()
            wait_for(lambda: len(receiver.events(offline)) >= 2, 10, "the system event")
            sys_ev = receiver.events(offline)[1]
            assert (sys_ev["type"], sys_ev["kind"], sys_ev["from"]) == ("system", "s", 0)
            assert sys_ev["preview"] == "your order shipped" and "seq" not in sys_ev
            await asyncio.sleep(0.5)
            assert receiver.events(online) == []
        run(go())
    finally:
        d.stop()


def test_webhook_url_unset_queues_nothing(stack, monkeypatch):
    monkeypatch.setenv("MAGPIE_NOTIFY_WEBHOOK_URL", "")
    node = ExtraNode(stack, 60)  # a push node whose config has no webhook
    a, b = new_uid(), new_uid()
    make_friends(stack, a, b)
    try:
        async def go():
            ca = await node.chat(a)
            await send_all(ca, b, ["nobody is told"])
        run(go())
    finally:
        node.stop()
    r = stack.redis()
    assert [f for _, f in rkeys.xrange_all(r, KEY_NOTIFY) if f.get("to") == str(b)] == []
    assert [f for _, f in rkeys.xrange_all(r, KEY_NOTIFY_DEAD) if f.get("to") == str(b)] == []


def test_receiver_500_then_timeouts_then_down_every_event_arrives_once_in_order(stack, receiver):
    receiver.mode = "500"
    d = NotifyDaemon(stack, receiver.url, name="notify-recover", max_batch=7)
    try:
        async def go():
            a = new_uid()
            users = [new_uid() for _ in range(4)]
            for u in users:
                make_friends(stack, a, u)
            ca = await Chat.connect(stack, a)
            sent = {u: [] for u in users}

            async def burst(tag):
                for i in range(5):
                    for u in users:
                        sent[u].append((await ca.text(u, f"{tag}{i}"))["mid"])

            await burst("500-")
            wait_for(lambda: d.metric("magpie_notify_events_retried_total") > 0, 10, "a retry after 500")
            receiver.mode, receiver.delay = "slow", 3.0  # longer than notify.timeout_ms (1 s)
            await burst("slow-")
            wait_for(lambda: 'reason="timeout:' in d.log_text(), 10, "a timeout")
            receiver.down()
            await burst("down-")
            await asyncio.sleep(DOWN_S)
            await burst("late-")
            receiver.mode = "ok"
            receiver.up()
            total = sum(len(v) for v in sent.values())
            wait_for(lambda: len(by_id(receiver.events(users))) >= total, 30 + DOWN_S, f"{total} events")
            await asyncio.sleep(1)
            evs = receiver.events(users)
            got = by_id(evs)
            assert len(got) == total
            for u in users:
                firsts = []
                for e in evs:
                    if e["to"] == u and e["mid"] not in firsts:
                        firsts.append(e["mid"])
                assert firsts == sent[u], "a recipient's events arrived out of order"
            assert_in_order_per_recipient(evs)
            # nothing was dead-lettered and nothing is left
            assert all(queued(stack, u) == [] for u in users)
        run(go())
        log = d.log_text()
        assert "webhook POST failed" in log and "http 500" in log and "Couldn't connect" in log
    finally:
        d.stop()


def test_receiver_never_recovering_dead_letters_after_max_age(stack, receiver):
    receiver.mode = "500"
    d = NotifyDaemon(stack, receiver.url, name="notify-dead", max_age_s=2)
    try:
        async def go():
            a, b = new_uid(), new_uid()
            make_friends(stack, a, b)
            ca = await Chat.connect(stack, a)
            return [x["mid"] for x in await send_all(ca, b, ["lost 1", "lost 2"])]
        mids = run(go())
        r = stack.redis()
        wait_for(lambda: len([f for _, f in rkeys.xrange_all(r, KEY_NOTIFY_DEAD) if f.get("mid") in mids]) == 2, 15,
                 "two dead letters")
        letters = [f for _, f in rkeys.xrange_all(r, KEY_NOTIFY_DEAD) if f.get("mid") in mids]
        assert all("max_age_s" in f["reason"] and "http 500" in f["reason"] for f in letters)
        assert [f["mid"] for f in letters] == mids
        assert all(f["orig_id"] for f in letters)
        assert d.metric("magpie_notify_events_dead_total") >= 2
        assert receiver.events() == []
        assert "event dead-lettered" in d.log_text()
    finally:
        d.stop()


def test_kill_9_mid_batch_then_restart_loses_nothing_and_repeats_only_same_event_ids(stack, receiver):
    receiver.mode, receiver.delay = "slow", 0.3  # each POST takes 0.3 s: batches are in flight for a while
    d = NotifyDaemon(stack, receiver.url, name="notify-kill", max_batch=10, max_inflight=2)
    try:
        async def go():
            users = [new_uid() for _ in range(5)]
            senders = []
            for u in users:  # one sender per recipient: 40 packets each stay under the rate limit
                a = new_uid()
                make_friends(stack, a, u)
                senders.append(await Chat.connect(stack, a))
            mids = []
            for i in range(40):
                for u, ca in zip(users, senders):
                    mids.append((await ca.text(u, f"k{i}"))["mid"])
            return users, mids
        users, mids = run(go())
        wait_for(lambda: len(receiver.events(users)) > 0, 10, "the first batch")
        d.kill9()
        assert len(by_id(receiver.events(users))) < len(mids), "everything arrived before the kill"
        time.sleep(0.5)  # a POST in flight when the process died is answered to nobody
        d.start()        # same consumer name: it first sends what it held
        wait_for(lambda: len(by_id(receiver.events(users))) >= len(mids), 60, "every event")
        evs = receiver.events(users)
        got = by_id(evs)
        assert sorted(e["mid"] for e in got.values()) == sorted(mids)
        assert_in_order_per_recipient(evs)
    finally:
        d.stop()


def chat_round_trip_ok(stack):
    """A message between two online users is acked and delivered within 1 s."""
    async def go():
        a, b = new_uid(), new_uid()
        make_friends(stack, a, b)
        ca, cb = await Chat.connect(stack, a), await Chat.connect(stack, b)
        t0 = time.monotonic()
        ack = await ca.text(b, "still chatting")
        assert ack["type"] == "A"
        await cb.messages(1)
        return time.monotonic() - t0
    return run(go())


@pytest.mark.parametrize("case", ["bad_url", "closed_port", "redirect_loop", "10_MiB_body", "slow_loris"])
def test_hostile_or_broken_receiver_costs_bounded_time_and_memory(stack, receiver, case):
    url = {"bad_url": "http://bad host name/hook", "closed_port": f"http://127.0.0.1:{closed_port()}/hook"}.get(
        case, receiver.url)
    receiver.mode = {"redirect_loop": "redirect", "10_MiB_body": "big", "slow_loris": "loris"}.get(case, "ok")
    reason = {"bad_url": "URL", "closed_port": "Couldn't connect", "redirect_loop": "http 302",
              "10_MiB_body": "over notify.max_response_bytes", "slow_loris": 'reason="timeout:'}[case]
    d = NotifyDaemon(stack, url, name=f"notify-{case}")
    try:
        async def go():
            a, b = new_uid(), new_uid()
            make_friends(stack, a, b)
            ca = await Chat.connect(stack, a)
            await send_all(ca, b, [f"to a {case} receiver {i}" for i in range(3)])
        run(go())
        t0 = time.monotonic()
        wait_for(lambda: reason in d.log_text(), 10, f"a log line saying {reason!r}")
        assert time.monotonic() - t0 < 5  # each try ends within notify.timeout_ms (1 s)
        wait_for(lambda: d.metric("magpie_notify_events_retried_total") >= 6, 10, "retries")
        assert d.rss_kib() < 64 * 1024, "magpie-notify's memory grew with the receiver's answer"
        assert chat_round_trip_ok(stack) < 1.0
        assert "webhook POST failed" in d.log_text()
        status, seconds = d.stop()
        assert status == 0 and seconds < 5
    finally:
        d.stop()


def test_events_in_hand_stay_within_max_pending_while_the_receiver_is_down(stack, receiver):
    receiver.mode = "500"
    d = NotifyDaemon(stack, receiver.url, name="notify-bounded", max_pending=10, max_batch=4)
    try:
        async def go():
            users = [new_uid() for _ in range(3)]
            mids = []
            for u in users:
                a = new_uid()
                make_friends(stack, a, u)
                ca = await Chat.connect(stack, a)
                mids += [x["mid"] for x in await send_all(ca, u, [f"b{i}" for i in range(12)])]
            return users, mids
        users, mids = run(go())
        held = []
        for _ in range(20):
            held.append(d.metric("magpie_notify_events_held"))
            time.sleep(0.1)
        assert max(held) <= 10 and max(held) > 0
        assert len([1 for u in users for _ in queued(stack, u)]) == len(mids)  # the rest waits in Redis
        receiver.mode = "ok"
        wait_for(lambda: len(by_id(receiver.events(users))) >= len(mids), 30, "every event")
        evs = receiver.events(users)
        assert sorted(e["mid"] for e in by_id(evs).values()) == sorted(mids)
        assert_in_order_per_recipient(evs)
    finally:
        d.stop()


def test_group_message_to_20_members_of_whom_5_are_offline_gives_5_events(stack, receiver):
    from group_client import create_group, make_users
    d = NotifyDaemon(stack, receiver.url, name="notify-group")
    try:
        async def go():
            users = make_users(stack, 20)
            gid = create_group(stack, users[0], users[1:], name="notify")
            online, offline = users[:15], users[15:]
            chats = [await Chat.connect(stack, u) for u in online]
            a = await chats[0].text(gid, "to the group", type="g")
            assert a["type"] == "A", a
            wait_for(lambda: sum(len(receiver.events(u)) for u in offline) >= 5, 10, "five events")
            await asyncio.sleep(0.5)
            for u in offline:
                evs = receiver.events(u)
                assert len(evs) == 1, (u, evs)
                e = evs[0]
                assert (e["type"], e["kind"], e["from"], e["conversation"]) == ("message", "g", users[0],
                                                                                {"group": gid})
                assert e["mid"] == a["mid"] and e["preview"] == "to the group"
                assert (e["seq"], e["unread"]) == (2, 1)  # after group_created; one unread message
            assert all(receiver.events(u) == [] for u in online)
        run(go())
    finally:
        d.stop()


def test_https_receiver_with_a_private_ca_gets_the_events_and_an_untrusted_one_gets_none(stack, tmp_path):
    """notify.ca_file: an https webhook whose certificate chains to that file gets the events; the same
    receiver without it (the system's CAs do not know it) gets nothing, and magpie-notify logs why and
    retries."""
    from notify_client import self_signed_cert
    cert, key = self_signed_cert(str(tmp_path))
    for trusted in (True, False):
        rec = Receiver(tls=(cert, key))
        over = {"ca_file": cert} if trusted else {}
        d = NotifyDaemon(stack, rec.url, name=f"notify-https-{trusted}", **over)
        try:
            async def go():
                a, b = new_uid(), new_uid()
                make_friends(stack, a, b)
                ca = await Chat.connect(stack, a)
                await send_all(ca, b, ["over tls"])
                if trusted:
                    wait_for(lambda: rec.events(b), 10, "the event over https")
                    ev = rec.events(b)[0]
                    assert ev["preview"] == "over tls" and ev["to"] == b
                    for sig, body, _, _ in rec.batches:
                        assert sig == signature(notify_secret(stack), body)
                else:
                    wait_for(lambda: d.metric("magpie_notify_events_retried_total") >= 1, 10, "a retry")
                    assert rec.events(b) == []
                    assert "certificate" in open(d.log).read().lower()
                    # what it could not deliver must not reach the next test's receiver
                    r = stack.redis()
                    for key in rkeys.every(r, KEY_NOTIFY):
                        gone = [i for i, f in r.xrange(key) if f.get("to") == str(b)]
                        if gone:
                            r.xdel(key, *gone)
            run(go())
        finally:
            d.stop()
            rec.close()
