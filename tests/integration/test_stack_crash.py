"""The evidence of a crash (issue 21): a daemon of the stack that dies of SIGSEGV leaves a core in cores/, a
fatal-signal line with a backtrace in its log, and 'scripts/dev status' / 'scripts/dev logs' say it crashed.

The daemon killed is magpie-persist (nothing else in the suite needs it at this moment); the test starts it
again the way scripts/dev does (with the waiter that records how it ends) and removes the core it checked.
"""
import glob
import os
import re
import signal
import subprocess
import time

from magpie_stack import REPO


def dev(stack, *args):
    env = dict(os.environ, MAGPIE_RUN=stack.run, MAGPIE_BUILD=stack.build)
    return subprocess.run([os.path.join(REPO, "scripts", "dev"), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def restart_daemons(stack):
    """scripts/dev's own start (scripts/lib/stack.sh: start_daemons), which skips what still runs."""
    script = 'set -e; . "$REPO/scripts/lib/stack.sh"; load_dev_env; start_daemons'
    env = dict(os.environ, REPO=REPO, RUN=stack.run, BUILD=stack.build)
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True, timeout=120)


def under_waiter(pid):
    """Was pid started by scripts/lib/stack.sh's start_daemon (its parent is the waiter)?"""
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        return b"\0waiter\0" in f.read()


def core_pattern_is_local():
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    return not pattern.startswith(("|", "/"))


def test_a_segfault_leaves_a_core_a_log_line_and_a_crashed_status(stack):
    name = "persist"
    pid = stack.daemon_pid(name)
    if pid is None or not under_waiter(pid):
        # Not started by scripts/dev (a test restarted it by hand): start it the dev way first.
        if pid is not None:
            stack.kill_daemon(name)
        restart_daemons(stack)
        pid = stack.daemon_pid(name)
    assert pid is not None
    log = os.path.join(stack.run, "logs", f"{name}.log")
    os.kill(pid, signal.SIGSEGV)
    exit_file = os.path.join(stack.run, "pids", f"{name}.exit")
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.exists(exit_file):
        time.sleep(0.1)
    try:
        record = open(exit_file).read()
        assert f"pid={pid} " in record and "signal=SIGSEGV" in record, record

        # 1. The fatal-signal line, then the backtrace (frames name the binary), in the daemon's own log.
        text = open(log, errors="replace").read()
        m = re.search(rf"^\S+ ERROR persist fatal signal sig=SIGSEGV signo=11 .*pid={pid} .*$", text, re.M)
        assert m, text[-2000:]
        after = text[m.end():].lstrip("\n").splitlines()
        assert after and "magpie-persist" in "\n".join(after[:64]), after[:10]

        # 2. The core, moved to cores/NAME.PID.core (where kernel.core_pattern writes into the cwd).
        core = os.path.join(stack.run, "cores", f"{name}.{pid}.core")
        if core_pattern_is_local():
            assert f"core={core}" in record, record
            assert os.path.getsize(core) > 0

        # 3. status and logs say it crashed, how and where the core is -- not just "stopped".
        st = dev(stack, "status")
        line = next(ln for ln in st.stdout.splitlines() if ln.split()[:1] == [name])
        assert "CRASHED" in line and "SIGSEGV" in line, st.stdout
        if core_pattern_is_local():
            assert core in line, line
        logs = dev(stack, "logs", name)
        assert re.search(rf"==> {name}: CRASHED\s+signal SIGSEGV", logs.stdout), logs.stdout[-1500:]
        assert "fatal signal sig=SIGSEGV" in logs.stdout
    finally:
        for f in glob.glob(os.path.join(stack.run, "cores", f"{name}.*.core")):
            os.unlink(f)
        restart_daemons(stack)
    assert stack.daemon_pid(name) is not None
    assert "running" in next(ln for ln in dev(stack, "status").stdout.splitlines() if ln.split()[:1] == [name])
