"""The wrk benchmark's scripts (bench/http) still work: a seconds-long smoke run against the test stack.
It measures nothing (sanitizer build, shared machine); the lead runs the real one on a quiet machine."""
import os
import re
import subprocess
import tempfile



def test_bench_smoke_run(stack):
    out = os.path.join(tempfile.mkdtemp(prefix="magpie-bench-"), "report.md")
    env = dict(os.environ, WRK_DURATION="1s")
    run = subprocess.run([os.path.join(stack.repo, "bench", "http", "run.sh"), "--smoke", "--run", stack.run,
                          "--out", out], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    report = open(out).read()
    rows = re.findall(r"^\| (\S+) \| (\d+) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| (\d+) \| (\d+) \| ([^|]*) \| ([^|]*) \| [\d.]+ \|$",
                      report, re.M)
    assert [r[0] for r in rows] == ["nginx-fcgi", "floor:nginx-fcgi-empty-handler", "standalone",
                                    "nginx-fcgi+20polls", "standalone+20polls"]
    for name, rps, errors, non200, cpu, cs in rows:
        assert int(rps) > 0 and errors == "0" and non200 == "0", (name, rps, errors, non200)
        # CPU and context switches per request of the processes measured: magpie-http (or the floor's
        # responder) in every run
        assert re.search(r"\b(http|floor) \d+\b", cpu), (name, cpu)
        assert re.search(r"\b(http|floor) \d+\.\d\d\b", cs), (name, cs)
    assert re.search(r"^nginx -> magpie-http / floor, per round [^:]*: \d+\.\d\d( \d+\.\d\d)*$", report, re.M), report
    assert "eyJ" not in report and "eyJ" not in run.stdout
