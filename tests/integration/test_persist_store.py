"""magpie-persist stores what the stream holds: every entry exactly once, byte for byte (SPEC §6)."""
import os
import subprocess

from persist_client import (Batch, group_pending, metric, metrics, raw_redis, row_matches, wait_for, xadd_all,
                            health)


def varied_body(i):
    """Bodies that test the escaping: quotes, backslashes, SQL, multi-byte characters."""
    kinds = [f"plain {i}", f"it's \"{i}\" \\ back\\slash", f"'); DROP TABLE messages; -- {i}",
             f"\u4f60\u597d {i} \U0001F600", "", f"tab\tnew\nline {i}", "\\'" * 20]
    return kinds[i % len(kinds)].encode()


def test_10000_entries_become_10000_matching_rows_and_adding_them_again_changes_nothing(stack):
    r = raw_redis(stack)
    b = Batch()
    entries = [b.entry(body=varied_body(i), type_="t" if i % 5 else "i") for i in range(10_000)]
    xadd_all(r, entries)
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) >= 10_000, 180, "10,000 rows")
        rows = b.rows(db)
        assert len(rows) == 10_000
        for e in entries:
            assert row_matches(rows[int(e["mid"])], e), (e, rows[int(e["mid"])])
        wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")

        before = metrics(stack.persist_metrics_port)
        xadd_all(r, entries)  # a second delivery of every message, as after a lost ack
        wait_for(lambda: metric(metrics(stack.persist_metrics_port), "magpie_persist_duplicates_total") -
                 metric(before, "magpie_persist_duplicates_total") >= 10_000, 180,
                 "the worker to see the 10,000 again")
        wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
        assert b.count(db) == 10_000
        assert b.rows(db) == rows
        after = metrics(stack.persist_metrics_port)
        assert metric(after, "magpie_persist_rows_inserted_total") == metric(before,
                                                                            "magpie_persist_rows_inserted_total")


def test_edge_values_are_stored_byte_for_byte(stack):
    r = raw_redis(stack)
    b = Batch()
    entries = [
        b.entry(body=b"x" * 4096),                              # the longest body
        b.entry(cid=b"k" * 64),                                 # the longest client id
        b.entry(cid="\U0001F680".encode() * 16),                # 64 bytes of 4-byte characters
        b.entry(cid=b"same", frm=b.uid + 1),
        b.entry(cid=b"same ", frm=b.uid + 1),                   # differs only by a trailing space
        b.entry(cid=b"SAME", frm=b.uid + 1),                    # ... and by case
        b.entry(body="\u00e9\u20ac\U0010FFFF".encode()),        # 2-, 3- and 4-byte UTF-8
        b.entry(type_="i", body=b"img-7f3a"),
        b.entry(mid=9223372036854775807 - b.mid % 1000, ts=9223372036854775807),  # the largest numbers
    ]
    xadd_all(r, entries)
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) >= len(entries), 30, "the rows")
        rows = b.rows(db)
        assert len(rows) == len(entries)
        for e in entries:
            assert row_matches(rows[int(e["mid"])], e), e


def test_a_retry_with_a_new_message_id_is_stored_once(stack):
    """The same (from, cid) again under another mid (a client retry the push dedup no longer remembers):
    the first one stays, the second is a duplicate, nothing goes to the dead-letter stream."""
    r = raw_redis(stack)
    b = Batch()
    first = b.entry(cid=b"retry-1", body=b"first", frm=b.uid)
    again = b.entry(cid=b"retry-1", body=b"second", frm=b.uid)
    before = metrics(stack.persist_metrics_port)
    xadd_all(r, [first])
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == 1, 30, "the first row")
        xadd_all(r, [again])
        wait_for(lambda: group_pending(r) == 0 and metric(metrics(stack.persist_metrics_port),
                                                          "magpie_persist_duplicates_total") >
                 metric(before, "magpie_persist_duplicates_total"), 30, "the retry to be skipped")
        rows = b.rows(db)
        assert list(rows) == [int(first["mid"])]
        assert bytes(rows[int(first["mid"])][4]) == b"first"
    after = metrics(stack.persist_metrics_port)
    assert sum(v for k, v in after.items() if k.startswith("magpie_persist_dead_letters_total")) == \
        sum(v for k, v in before.items() if k.startswith("magpie_persist_dead_letters_total"))


def test_metrics_and_health(stack):
    r = raw_redis(stack)
    b = Batch()
    xadd_all(r, [b.entry() for _ in range(50)])
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == 50, 30, "the rows")
    status, body = health(stack.persist_metrics_port)
    assert status == 200 and '"ok":true' in body
    m = wait_for(lambda: (lambda v: v if "magpie_persist_batch_seconds_count" in v else None)(
        metrics(stack.persist_metrics_port)), 10, "a batch to be measured")
    assert metric(m, "magpie_persist_entries_read_total", 'source="new"') >= 50
    assert metric(m, "magpie_persist_rows_inserted_total") >= 50
    assert m["magpie_persist_batch_seconds_count"] >= 1
    for name in ("magpie_persist_duplicates_total", "magpie_persist_lag_seconds", "magpie_persist_stream_length",
                 "magpie_persist_pending_entries", "magpie_persist_trimmed_total"):
        assert name in m, name
    assert 'magpie_persist_batch_seconds_bucket{le="+Inf"}' in m


def test_settings_that_conflict_stop_the_worker_at_start(stack):
    out = subprocess.run([stack.bin("push/magpie-persist"), "-c", stack.conf_path], capture_output=True, text=True,
                         timeout=20, env=dict(os.environ, MAGPIE_PERSIST_CLAIM_IDLE_MS="3000",
                                             MAGPIE_PERSIST_BLOCK_MS="2000", MAGPIE_PERSIST_METRICS_LISTEN=""))
    assert out.returncode == 1
    assert "persist.claim_idle_ms (3000) must be at least twice persist.block_ms (2000)" in out.stderr
