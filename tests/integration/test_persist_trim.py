"""The stream stays bounded: magpie-persist trims what every group has acked, keeps what another group still
needs (up to persist.stream_maxlen), and never trims what it has not stored (SPEC §6)."""
import time

import pytest

from persist_client import (KEY_MQ, Batch, group_pending, raw_redis, restart_stack_worker, wait_for, xadd_all)


@pytest.fixture
def stack_worker(stack):
    yield
    restart_stack_worker(stack)


def test_the_stream_length_stays_bounded_while_the_worker_keeps_up(stack):
    r = raw_redis(stack)
    b = Batch()
    rate, seconds, tick = 2000, 6, 0.05
    housekeeping_s = int(stack.conf.get("persist.housekeeping_ms", "1000")) / 1000
    # Start from a trimmed stream (what earlier tests added is trimmed within a housekeeping round).
    wait_for(lambda: r.xlen(KEY_MQ) == 0, 10, "the stream to be trimmed empty before the test")
    lengths, total = [], 0
    start = time.time()
    while time.time() - start < seconds:
        due = int((time.time() - start) * rate) - total
        if due > 0:
            xadd_all(r, [b.entry() for _ in range(due)])
            total += due
        lengths.append(r.xlen(KEY_MQ))
        time.sleep(tick)
    # What arrives between two trims, plus a batch or two in flight -- not the whole run's entries.
    bound = int(rate * 2 * housekeeping_s) + 2 * 500
    assert total >= rate * seconds * 0.9
    assert max(lengths) <= bound, (max(lengths), bound, total)
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == total, 60, "every row")
    wait_for(lambda: r.xlen(KEY_MQ) == 0, 10, "the stream to be trimmed empty")
    assert group_pending(r) == 0


def test_entries_another_group_needs_are_kept_up_to_stream_maxlen(stack, stack_worker):
    restart_stack_worker(stack, {"MAGPIE_PERSIST_STREAM_MAXLEN": "1000"})
    r = raw_redis(stack)
    b = Batch()
    r.xgroup_create(KEY_MQ, "persist-test-other", id="$")
    try:
        with stack.mysql() as db:
            xadd_all(r, [b.entry() for _ in range(600)])
            wait_for(lambda: b.count(db) == 600, 30, "the rows")
            time.sleep(2.5)  # two housekeeping rounds
            assert r.xlen(KEY_MQ) >= 600  # stored, but the other group has not read them: kept

            got = r.xreadgroup("persist-test-other", "reader", {KEY_MQ: ">"}, count=10_000)
            r.xack(KEY_MQ, "persist-test-other", *[i for i, _ in got[0][1]])
            wait_for(lambda: r.xlen(KEY_MQ) == 0, 10, "what both groups acked to be trimmed")

            # The other group stops reading; past stream_maxlen, what magpie-persist stored goes anyway.
            xadd_all(r, [b.entry() for _ in range(2500)])
            wait_for(lambda: b.count(db) == 3100, 60, "the rows")
            wait_for(lambda: r.xlen(KEY_MQ) <= 1000, 10, "the stream to be cut to the cap")
    finally:
        r.xgroup_destroy(KEY_MQ, "persist-test-other")


def test_entries_not_yet_stored_are_never_trimmed(stack):
    """MariaDB down: the stream grows past what the worker could store, and nothing of it is trimmed."""
    r = raw_redis(stack)
    b = Batch()
    stack.stop_mariadb()
    try:
        ids = xadd_all(r, [b.entry() for _ in range(1500)])
        time.sleep(2.5)  # two housekeeping rounds while nothing can be stored
        have = {i.decode() for i, _ in r.xrange(KEY_MQ, ids[0], "+")}
        assert set(ids) <= have
    finally:
        stack.start_mariadb()
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == 1500, 60, "every row")
    wait_for(lambda: r.xlen(KEY_MQ) == 0, 10, "the stream to be trimmed empty")
