"""magpie-persist rides out MariaDB and Redis outages: it holds what it has, loses nothing, says so once, and
catches up by itself (SPEC §6, §8)."""
import os
import signal
import time

from persist_client import (STACK_WORKER, Batch, consumer_pending, group_pending, health, log_count, log_since,
                            log_size, raw_redis, restart_stack_worker, row_matches, stack_consumer, wait_for,
                            xadd_all)


def _keep_adding(r, b, seconds, port, every=0.25, per=100):
    """Add `per` entries every `every` s for `seconds`; returns (entries, health answers seen)."""
    entries, answers = [], []
    end = time.time() + seconds
    while time.time() < end:
        chunk = [b.entry() for _ in range(per)]
        xadd_all(r, chunk)
        entries += chunk
        answers.append(health(port))
        time.sleep(every)
    return entries, answers


def _all_stored(stack, r, b, entries, timeout=90):
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) >= len(entries), timeout, f"{len(entries)} rows")
        wait_for(lambda: group_pending(r) == 0, 30, "the pending list to empty")
        rows = b.rows(db)
    assert len(rows) == len(entries)
    for e in entries:
        assert row_matches(rows[int(e["mid"])], e)


def _stored_first(stack, n):
    """n entries added and stored before the outage; returns what the test checks against afterwards:
    (redis, batch, worker pid, worker log, log offset, entries)."""
    r = raw_redis(stack)
    b = Batch()
    pid = stack.daemon_pid(STACK_WORKER)
    log = f"{stack.run}/logs/{STACK_WORKER}.log"
    offset = log_size(log)
    entries = [b.entry() for _ in range(n)]
    xadd_all(r, entries)
    with stack.mysql() as db:
        wait_for(lambda: b.count(db) == n, 60, "the first rows")
    return r, b, pid, log, offset, entries


def test_mariadb_stopped_10_s_while_entries_arrive_then_all_are_stored_once_without_restart(stack):
    r, b, pid, log, offset, entries = _stored_first(stack, 1000)

    stack.stop_mariadb()
    try:
        during, answers = _keep_adding(r, b, 10, stack.persist_metrics_port)
    finally:
        stack.start_mariadb()
    entries += during
    later = [b.entry() for _ in range(500)]
    xadd_all(r, later)
    entries += later

    _all_stored(stack, r, b, entries)
    assert stack.daemon_pid(STACK_WORKER) == pid, "the worker was restarted"
    assert any(status == 503 and "mysql" in body for status, body in answers), answers
    wait_for(lambda: health(stack.persist_metrics_port)[0] == 200, 10, "healthz to be 200 again")
    text = log_since(log, offset)
    assert log_count(text, r"WARN persist mysql down ") == 1, text
    assert log_count(text, r"INFO persist mysql back ") == 1, text
    assert "refuses" not in text


def test_mariadb_hung_then_all_entries_are_stored_once_without_restart(stack):
    """A MariaDB that stops answering (SIGSTOP) but keeps its connections open: mysql.rw_timeout_s turns
    that into an outage instead of a worker stuck forever."""
    r, b, pid, log, offset, entries = _stored_first(stack, 500)

    db_pid = stack.mariadb_pid()
    os.kill(db_pid, signal.SIGSTOP)
    try:
        during, _ = _keep_adding(r, b, 8, stack.persist_metrics_port)
    finally:
        os.kill(db_pid, signal.SIGCONT)
    entries += during

    _all_stored(stack, r, b, entries)
    assert stack.daemon_pid(STACK_WORKER) == pid
    text = log_since(log, offset)
    assert log_count(text, r"WARN persist mysql down ") == 1, text
    assert log_count(text, r"INFO persist mysql back ") == 1, text


def test_redis_restarted_then_all_entries_are_stored_once_without_restart(stack):
    r, b, pid, log, offset, entries = _stored_first(stack, 500)

    stack.stop_redis()
    try:
        time.sleep(2)
        status, body = health(stack.persist_metrics_port)
    finally:
        stack.start_redis()
    assert status == 503 and "redis" in body

    r = raw_redis(stack)
    later = [b.entry() for _ in range(500)]
    xadd_all(r, later)
    entries += later
    _all_stored(stack, r, b, entries)
    assert stack.daemon_pid(STACK_WORKER) == pid
    text = log_since(log, offset)
    assert log_count(text, r"WARN persist redis down ") == 1, text
    assert log_count(text, r"INFO persist redis back ") == 1, text


def test_sigterm_while_mariadb_hangs_exits_within_5_s_and_loses_nothing(stack):
    """The batch in hand cannot be committed: the worker still exits in time, and the batch stays pending
    in Redis for the next start."""
    r = raw_redis(stack)
    b = Batch()
    me = stack_consumer(stack)
    db_pid = stack.mariadb_pid()
    os.kill(db_pid, signal.SIGSTOP)
    try:
        entries = [b.entry() for _ in range(300)]
        xadd_all(r, entries)
        wait_for(lambda: consumer_pending(r, me) > 0, 30, "the worker to hold a batch")
        t0 = time.time()
        stack.kill_daemon(STACK_WORKER, sig=signal.SIGTERM, timeout=10)
        took = time.time() - t0
        assert consumer_pending(r, me) > 0  # not acked: it was never stored
    finally:
        os.kill(db_pid, signal.SIGCONT)
    assert took < 5.0, took
    restart_stack_worker(stack)
    _all_stored(stack, r, b, entries)
