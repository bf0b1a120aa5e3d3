"""An entry magpie-persist cannot store goes to the dead-letter stream with the reason, its original fields and
its id; every other entry is stored and the worker goes on (SPEC §6)."""
import random

import pytest

from persist_client import (Batch, dead_letter_pairs, group_pending, metric, metrics, raw_redis, row_matches,
                            wait_for, xadd_all)


def _malformed(b):
    """(what is wrong, fields as a list of pairs, the reason the worker must give)."""
    def without(field):
        return [(k, v) for k, v in b.entry().items() if k != field]

    def with_(field, value):
        return [(k, value if k == field else v) for k, v in b.entry().items()]

    def to_self():
        e = b.entry()
        return [(k, e["from"] if k == "to" else v) for k, v in e.items()]

    return [
        ("missing field", without("to"), "malformed: missing field 'to'"),
        ("not a number", with_("mid", b"12ab"), "malformed: field 'mid': not a decimal number"),
        ("negative", with_("from", b"-5"), "malformed: field 'from': not a decimal number"),
        ("too large", with_("ts", b"9223372036854775808"), "malformed: field 'ts': not a decimal number"),
        ("bad UTF-8", with_("body", b"caf\xe9 \xff"), "malformed: field 'body': not UTF-8 text"),
        ("NUL inside", with_("cid", b"a\x00b"), "malformed: field 'cid': not UTF-8 text"),
        ("client id too long", with_("cid", b"x" * 65), "malformed: field 'cid': length 65 not in 1..64 bytes"),
        ("body too long", with_("body", b"x" * 4097), "malformed: field 'body': length 4097 not in 0..4096 bytes"),
        ("unknown type", with_("type", b"x"), "malformed: field 'type': must be t, i, g, s or G"),
        ("other version", with_("v", b"2"), "malformed: field 'v': unsupported format version"),
        ("to self", to_self(), "malformed: field 'to' equals field 'from'"),
        ("field twice", list(b.entry().items()) + [("body", b"again")], "malformed: field 'body' given twice"),
        ("no fields we know", [("hello", b"world")], "malformed: missing field 'v'"),
    ]


def test_malformed_entries_between_good_ones_go_to_the_dead_letter_stream(stack):
    r = raw_redis(stack)
    b = Batch()
    bad = _malformed(b)
    sequence, good = [], []
    for _, fields, _ in bad:
        g = b.entry()
        good.append(g)
        sequence += [g, fields]
    tail = [b.entry() for _ in range(20)]
    good += tail
    before = metrics(stack.persist_metrics_port)
    ids = xadd_all(r, sequence + tail)
    bad_ids = ids[1:2 * len(bad):2]

    with stack.mysql() as db:
        wait_for(lambda: b.count(db) >= len(good), 30, "the good rows")
        rows = b.rows(db)
    assert len(rows) == len(good)
    for g in good:
        assert row_matches(rows[int(g["mid"])], g)
    wait_for(lambda: all(dead_letter_pairs(r, i) for i in bad_ids), 30, "the dead letters")
    for (what, fields, reason), orig_id in zip(bad, bad_ids):
        pairs = dead_letter_pairs(r, orig_id)
        assert pairs[0][0] == b"reason" and pairs[0][1].decode().startswith(reason), (what, pairs[0])
        assert pairs[1] == (b"orig_id", orig_id.encode())
        assert pairs[2:] == [(k.encode(), v) for k, v in fields], what  # the original, byte for byte
    wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
    after = metrics(stack.persist_metrics_port)
    assert metric(after, "magpie_persist_dead_letters_total", 'reason="malformed"') - \
        metric(before, "magpie_persist_dead_letters_total", 'reason="malformed"') == len(bad)


@pytest.fixture
def reject_body(stack):
    """A rule in MySQL that refuses rows with one body (as a DBA's CHECK constraint would)."""
    body = f"refuse me {random.randrange(10**9)}"
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute(f"ALTER TABLE messages ADD CONSTRAINT persist_test_reject CHECK (body <> '{body}')")
    yield body.encode()
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("ALTER TABLE messages DROP CONSTRAINT persist_test_reject")


def test_a_row_mysql_refuses_is_retried_then_dead_lettered_and_the_rest_stored(stack, reject_body):
    r = raw_redis(stack)
    b = Batch()
    max_failures = int(stack.conf.get("persist.max_failures", "5"))
    before = metrics(stack.persist_metrics_port)
    entries = [b.entry() for _ in range(10)]
    refused = b.entry(body=reject_body)
    entries_after = [b.entry() for _ in range(10)]
    ids = xadd_all(r, entries + [refused] + entries_after)
    refused_id = ids[10]

    with stack.mysql() as db:
        wait_for(lambda: b.count(db) >= 20, 30, "the good rows")
        rows = b.rows(db)
    assert len(rows) == 20 and int(refused["mid"]) not in rows
    pairs = wait_for(lambda: dead_letter_pairs(r, refused_id), 30, "the dead letter")
    reason = dict(pairs)[b"reason"].decode()
    assert reason.startswith(f"refused {max_failures} times: mysql refused the row: error 4025"), reason
    assert "persist_test_reject" in reason
    assert pairs[2:] == [(k.encode(), v) for k, v in refused.items()]
    wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
    after = metrics(stack.persist_metrics_port)
    assert metric(after, "magpie_persist_dead_letters_total", 'reason="refused"') - \
        metric(before, "magpie_persist_dead_letters_total", 'reason="refused"') == 1


def test_a_message_id_taken_by_another_message_is_not_lost_silently(stack):
    """Two different messages with one mid (two push nodes with the same node_id): the second cannot be
    stored, and it goes to the dead-letter stream instead of being counted as a duplicate."""
    r = raw_redis(stack)
    b = Batch()
    first = b.entry(cid=b"one")
    clash = b.entry(cid=b"two", mid=int(first["mid"]))
    ids = xadd_all(r, [first])
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == 1, 30, "the first row")
        ids = xadd_all(r, [clash])
        pairs = wait_for(lambda: dead_letter_pairs(r, ids[0]), 30, "the dead letter")
        assert f"message id {int(first['mid'])} is already used by another message" in dict(pairs)[b"reason"].decode()
        rows = b.rows(db)
    assert list(rows) == [int(first["mid"])] and row_matches(rows[int(first["mid"])], first)
    wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
