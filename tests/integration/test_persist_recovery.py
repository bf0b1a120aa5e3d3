"""magpie-persist loses nothing when a worker dies or stops, and several workers share the stream without
storing anything twice (SPEC §6, §9)."""
import signal
import time

import pytest

from persist_client import (GROUP, KEY_MQ, STACK_WORKER, Batch, Worker, consumer_pending, consumers,
                            group_pending, log_since, log_size, metric, metrics, raw_redis, restart_stack_worker,
                            row_matches, stack_consumer, wait_for, xadd_all)


@pytest.fixture
def stack_worker(stack):
    """The test restarts the stack's worker; afterwards it runs again with the stack's own settings."""
    yield
    restart_stack_worker(stack)


def _sid(s):
    ms, seq = s.split("-")
    return int(ms), int(seq)


def test_kill_9_mid_batch_then_restart_stores_every_entry_once(stack, stack_worker):
    r = raw_redis(stack)
    b = Batch()
    me = stack_consumer(stack)
    n = 30_000
    entries = [b.entry() for _ in range(n)]
    xadd_all(r, entries)
    with stack.mysql() as db:
        # Seeing a batch in hand and killing are two steps: if the worker acked in between and died with
        # nothing pending, start it and try again.
        for _ in range(5):
            wait_for(lambda: b.count(db) > 0 and consumer_pending(r, me) > 0, 60, "the worker to be mid-batch")
            stack.kill_daemon(STACK_WORKER, sig=signal.SIGKILL)
            held, stored = consumer_pending(r, me), b.count(db)
            if held > 0:
                break
            stack.start_daemon(STACK_WORKER)
        assert held > 0, "no batch was in hand when the worker died"
        assert stored < n, "the worker finished before it could be killed"

        stack.start_daemon(STACK_WORKER)  # same consumer name: it re-reads what it held first
        wait_for(lambda: b.count(db) >= n, 180, f"{n} rows")
        wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
        rows = b.rows(db)
        assert len(rows) == n
        for e in entries:
            assert row_matches(rows[int(e["mid"])], e)


def test_sigterm_finishes_the_batch_in_hand_and_exits_within_5_s(stack, stack_worker):
    r = raw_redis(stack)
    b = Batch()
    me = stack_consumer(stack)
    n = 30_000
    log = f"{stack.run}/logs/{STACK_WORKER}.log"
    offset = log_size(log)
    ids = xadd_all(r, [b.entry() for _ in range(n)])
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) > 0 and consumer_pending(r, me) > 0, 60, "the worker to be mid-batch")
        t0 = time.time()
        stack.kill_daemon(STACK_WORKER, sig=signal.SIGTERM, timeout=10)
        assert time.time() - t0 < 5.0
        # The batch in hand was stored and acked, not dropped: nothing is left pending, and every entry the
        # group handed out is in MySQL.
        assert consumer_pending(r, me) == 0
        last = _sid(next(g for g in r.xinfo_groups(KEY_MQ) if g["name"] == GROUP.encode())
                    ["last-delivered-id"].decode())
        delivered = sum(1 for i in ids if _sid(i) <= last)
        assert 0 < delivered < n
        assert b.count(db) == delivered
        assert "stopped consumer=" in log_since(log, offset)

        stack.start_daemon(STACK_WORKER)
        wait_for(lambda: b.count(db) >= n, 180, f"{n} rows")
        wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
        assert b.count(db) == n


def test_entries_of_a_dead_consumer_are_claimed_and_the_consumer_forgotten(stack, stack_worker):
    restart_stack_worker(stack, {"MAGPIE_PERSIST_CLAIM_IDLE_MS": "2000"})
    r = raw_redis(stack)
    b = Batch()
    entries = [b.entry() for _ in range(50)]
    # A worker that read 50 entries and died: added and read in one transaction, so the running worker
    # cannot get them first.
    p = r.pipeline(transaction=True)
    for e in entries:
        p.xadd(KEY_MQ, e)
    p.xreadgroup(GROUP, "gone-worker", {KEY_MQ: ">"}, count=1000)
    out = p.execute()
    got = out[-1][0][1]
    assert {int(f[b"mid"]) for _, f in got} >= {int(e["mid"]) for e in entries}
    assert consumer_pending(r, "gone-worker") == len(got)

    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == 50, 30, "the claimed entries to be stored")
        rows = b.rows(db)
        for e in entries:
            assert row_matches(rows[int(e["mid"])], e)
    wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
    wait_for(lambda: "gone-worker" not in consumers(r), 30, "the dead consumer to be removed")
    m = wait_for(lambda: (lambda v: v if metric(v, "magpie_persist_entries_read_total", 'source="claimed"') >= 50
                          else None)(metrics(stack.persist_metrics_port)), 10,
                 "the claim to be counted")
    assert metric(m, "magpie_persist_entries_read_total", 'source="claimed"') >= 50


def test_two_workers_share_the_stream_and_store_each_entry_once(stack, stack_worker):
    restart_stack_worker(stack, {"MAGPIE_PERSIST_BATCH": "100"})
    other = Worker(stack, "persist-test-b", batch=100).start()
    try:
        r = raw_redis(stack)
        b = Batch()
        n = 20_000
        entries = [b.entry() for _ in range(n)]
        xadd_all(r, entries)
        with stack.mysql() as db:
            wait_for(lambda: b.count(db) >= n, 180, f"{n} rows")
            wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
            rows = b.rows(db)
            assert len(rows) == n
            for e in entries:
                assert row_matches(rows[int(e["mid"])], e)
        mine = metrics(stack.persist_metrics_port)
        theirs = other.metrics()
        a = metric(mine, "magpie_persist_rows_inserted_total")
        c = metric(theirs, "magpie_persist_rows_inserted_total")
        assert a > 0 and c > 0, (a, c)       # both did work
        assert a + c == n                     # and no row was inserted twice
        assert metric(mine, "magpie_persist_duplicates_total") + metric(theirs, "magpie_persist_duplicates_total") == 0
    finally:
        rc, took = other.stop()
    assert rc == 0 and took < 5
