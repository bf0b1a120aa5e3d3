"""The room benchmark (bench/room_bench.py and its C client) still works: a seconds-long smoke run against
the test stack, whose numbers mean nothing (sanitizer build, shared machine); the lead runs the real one on
a quiet machine. What it must get right is the counting: every message of every merged frame, once per
member, as the nodes count them too."""
import json
import os
import re
import subprocess


def test_room_bench_smoke_run(stack):
    env = dict(os.environ, MAGPIE_RUN=stack.run, MAGPIE_BUILD=stack.build)
    run = subprocess.run(["/usr/bin/python3", os.path.join(stack.repo, "bench", "room_bench.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = [json.loads(m) for m in re.findall(r"^(\{\n.*?^\})$", run.stdout, re.M | re.S)]
    assert [r["nodes"] for r in results] == [1, 2]
    for r in results:
        assert r["signed_in"] == r["members"] == 201 and r["failed"] == 0
        for step in r["steps"]:
            assert step["published"] > 0 and step["member_closes"] == 0 and step["client_errors"] == 0
            # the clients counted what the nodes queued, and that is every message published to each of the
            # 201 members but what the nodes dropped for a member too slow (this build is slow)
            drops = step["drops"]["normal"] + step["drops"]["important"]
            assert step["deliveries"] == step["node_deliveries"], step
            assert step["deliveries"] + drops == 201 * step["published"], step
            assert step["messages_per_frame"] >= 1
            assert step["latency_ms"]["p99"] is not None
    assert "eyJ" not in run.stdout
