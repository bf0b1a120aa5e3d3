"""The foundation: the stack scripts/dev starts is real and complete, and 'down' leaves nothing behind."""
import os
import subprocess
import tempfile
import time
import urllib.request

import pytest

from magpie_stack import Stack, REPO


def test_redis_answers_with_aof_on(stack):
    r = stack.redis()
    assert r.ping()
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert r.config_get("appendfsync") == {"appendfsync": "everysec"}


def test_schema_exists(stack):
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SHOW TABLES")
        tables = {row[0] for row in cur.fetchall()}
        assert {"users", "friends", "orders", "messages", "schema_migrations"} <= tables
        cur.execute("SHOW INDEX FROM messages")
        keys = {}
        for row in cur.fetchall():
            keys.setdefault(row[2], []).append(row[4])
        assert keys["uk_messages_client"] == ["from_uid", "client_id"]
        assert keys["idx_messages_from"] == ["from_uid", "created_ms"]
        assert keys["idx_messages_to"] == ["to_uid", "created_ms"]
        cur.execute("SHOW INDEX FROM users WHERE Key_name = 'uk_users_mobile'")
        assert cur.fetchone() is not None


def test_history_queries_are_index_range_scans(stack):
    """The history H reads: a user's messages after T, optionally with one peer. With enough rows for the
    optimizer to care (uids no other test uses, removed afterwards), each half is an index range scan."""
    base = 9_000_000_000
    rows = [(base + i, f"c{i}", base + i % 50, base + 100 + i % 7, "t", "x", 1_000 + i) for i in range(5000)]
    with stack.mysql() as db, db.cursor() as cur:
        try:
            cur.executemany("INSERT INTO messages (id, client_id, from_uid, to_uid, type, body, created_ms) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
            cur.execute("ANALYZE TABLE messages")
            cur.fetchall()
            queries = [
                f"SELECT id FROM messages WHERE from_uid = {base + 1} AND created_ms > 5000",
                f"SELECT id FROM messages WHERE to_uid = {base + 101} AND created_ms > 5000",
                f"SELECT id FROM messages WHERE from_uid = {base + 1} AND to_uid = {base + 101} "
                f"AND created_ms > 5000",
            ]
            for q in queries:
                cur.execute("EXPLAIN " + q)
                row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
                assert row["type"] == "range", (q, row)
                assert row["key"].startswith("idx_messages_"), (q, row)
        finally:
            cur.execute("DELETE FROM messages WHERE id >= %s AND id < %s", (base, base + 5000))


def test_migrate_twice_is_harmless(stack):
    for _ in range(2):
        out = subprocess.run([stack.bin("sql/magpie-migrate"), "-c", stack.conf_path, "-d",
                              os.path.join(REPO, "sql")], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    status = subprocess.run([stack.bin("sql/magpie-migrate"), "-c", stack.conf_path, "-d",
                             os.path.join(REPO, "sql"), "-s"], capture_output=True, text=True)
    assert status.returncode == 0
    assert "001 001_init.sql" in status.stdout and "applied" in status.stdout
    with stack.mysql() as db, db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM schema_migrations WHERE version = 1")
        assert cur.fetchone()[0] == 1


def test_nginx_serves_the_web_client(stack):
    with urllib.request.urlopen(stack.nginx_url + "/") as resp:
        assert resp.status == 200
        assert b"<title>Magpie" in resp.read()


def test_config_tool_reads_what_the_daemons_read(stack):
    out = subprocess.run([stack.bin("shared/magpie-config"), "-c", stack.conf_path, "get", "redis.port",
                          "mysql.port"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.split() == [str(stack.redis_port), str(stack.mysql_port)]


def test_bad_config_stops_a_binary_with_file_and_line(stack, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[redis]\nport = 6390\nport_typo = 1\n")
    out = subprocess.run([stack.bin("sql/magpie-migrate"), "-c", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{bad}:3: unknown key 'port_typo' in section [redis]" in out.stderr


def _pids_of(run):
    pids = {}
    for path in [f"{run}/redis/redis.pid", f"{run}/mariadb/mysqld.pid", f"{run}/nginx/nginx.pid"] + \
            [os.path.join(run, "pids", f) for f in (os.listdir(os.path.join(run, "pids"))
                                                     if os.path.isdir(os.path.join(run, "pids")) else [])
             if f.endswith(".pid")]:  # pids/ also holds each daemon's start command (NAME.cmd)
        if os.path.exists(path):
            pids[path] = int(open(path).read().strip())
    return pids


def _alive(pid):
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pids):
    """pids plus all their descendants (nginx workers, for instance, whose cmdline names no run dir)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = set(pids), list(pids)
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(pid), cmd))
    return found


def test_dev_up_twice_then_down_leaves_no_process(stack):
    """A second stack in its own run dir: up, up again (harmless), status, down -> nothing left running."""
    run = tempfile.mkdtemp(prefix="magpie-devtest-")
    env = dict(os.environ, MAGPIE_RUN=run, MAGPIE_DEV_PORTS="free", MAGPIE_BUILD=stack.build,
               MAGPIE_SKIP_BUILD="1")
    dev = os.path.join(REPO, "scripts", "dev")
    try:
        first = subprocess.run([dev, "up"], env=env, capture_output=True, text=True, timeout=240)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Magpie is up" in first.stdout
        pids = _pids_of(run)
        assert len(pids) >= 3, pids
        for pid in pids.values():
            assert _alive(pid)
        everything = _children(pids.values())

        again = subprocess.run([dev, "up"], env=env, capture_output=True, text=True, timeout=240)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        assert _pids_of(run) == pids  # nothing restarted, nothing duplicated

        status = subprocess.run([dev, "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0
        assert status.stdout.count("running") >= 3

        inner = Stack(run=run, build=stack.build)
        assert inner.redis().ping()
        with urllib.request.urlopen(inner.nginx_url + "/") as resp:
            assert resp.status == 200
    finally:
        down = subprocess.run([dev, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.time() + 10
    while time.time() < deadline and (_processes_mentioning(run) or any(_alive(p) for p in everything)):
        time.sleep(0.2)
    assert _processes_mentioning(run) == []
    assert [pid for pid in everything if _alive(pid)] == []
