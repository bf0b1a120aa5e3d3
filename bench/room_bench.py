#!/usr/bin/python3
"""room_bench.py -- the room benchmark of issue 6: one room of many members and a publisher as fast as the
room keeps up; message deliveries per second (every message inside a merged frame counts, once per member),
publish->receive latency p50/p99, drops. Once with every member on one node, once spread over two nodes.

It runs against a stack started by scripts/dev (`scripts/dev up`, or the test stack): it reads the stack's
ports and secret from $MAGPIE_RUN (default .run), and starts its own magpie-push nodes from $MAGPIE_BUILD
(default $MAGPIE_RUN/build) on free ports, registered in that stack's Redis like any node, with the packet
rate lifted (push.rate/burst) so the publisher, not the limit, is measured; they are stopped with SIGTERM
at the end. The load comes from bench/room-bench-client (C: libwebsockets + protobuf-c on the repo's
room.proto; built by `make check`, or `make -C .run/build bench/room-bench-client`): the members are spread
over --procs processes per node (a process may hold at most 20,000 fds), each connecting from its own source
address 127.0.0.x so the client ports do not run out. Every member reads the send time carried by every
message it unpacks (one host, one CLOCK_MONOTONIC) into a latency histogram.

"As fast as the room keeps up": the publisher, a member on the first node, publishes at a rate that doubles
each step (--start-rate, --steps) until the room stops keeping up -- p99 over 100 ms, a message dropped, a
member closed, or the publisher unable to reach the rate; the best step that kept up is the result, and
every step is recorded. --rate runs one rate only.

  bench/room_bench.py --smoke                      seconds, 200 members: checks the benchmark itself
  bench/room_bench.py                              10,000 members, 10 s a step, on one node then on two
  bench/room_bench.py --members 10000 --nodes 1 --rate 4000 --seconds 20 --procs 4

Drops come from the nodes' /metrics (magpie_push_room_drops_total by level). Every run but --smoke appends
its result, with the machine, the date and the commit, to bench/results/room-<date>.json. Target (issue 6):
>= 1,000,000 deliveries/s with p99 <= 100 ms. The clients, the nodes and Redis share the machine: run it on
a quiet one with several cores; on a small one the client processes, not the node, are the limit.
"""
import argparse
import datetime
import json
import os
import platform
import random
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from magpie_stack import Stack  # noqa: E402

BENCH_NODE_IDS = (1011, 1012)  # out of the way of scripts/dev's nodes, the tests' (9xx) and push_bench's (1001)
UID_BASE = 9_100_000_000
P99_TARGET_MS = 100  # issue 6: p99 publish->receive within this while the room keeps up


def free_port():
    """A free port below the kernel's ephemeral range (as scripts/lib/stack.sh picks them): a port in that
    range can become the local end of any outgoing connection -- the clients make thousands -- before the
    node binds it."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", random.randrange(10000, low) if low > 11000 else 0))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"host": platform.node(), "kernel": platform.release(), "cpu": model, "cores": os.cpu_count(),
            "mem_gib": round(mem_kib / 1048576, 1), "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


class Node:
    """A magpie-push node of the benchmark, on the stack's Redis and MySQL."""

    def __init__(self, stack, node_id, overrides):
        self.node_id = node_id
        self.log = os.path.join(stack.run, "logs", f"push-roombench{node_id}.log")
        for _ in range(5):  # a port found free may be taken before the node binds it: try others
            self.port, self.metrics_port = free_port(), free_port()
            env = dict(os.environ, MAGPIE_PUSH_NODE_ID=str(node_id), MAGPIE_PUSH_LISTEN=f"127.0.0.1:{self.port}",
                       MAGPIE_PUSH_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}", MAGPIE_LOG_FILE=self.log,
                       MAGPIE_LOG_LEVEL="warn")
            env.update({f"MAGPIE_PUSH_{k.upper()}": str(v) for k, v in overrides.items()})
            self.proc = subprocess.Popen([stack.bin("push/magpie-push"), "-c", stack.conf_path], env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.time() + 20
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1):
                        return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        raise SystemExit(f"the bench node {node_id} did not start; see {self.log}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def client(stack, node, room, uid, members=None, src=None, publish=None):
    argv = [stack.bin("bench/room-bench-client"), "-c", stack.conf_path, "-p", str(node.port), "-r", room,
            "-u", str(uid)]
    if members:
        argv += ["-n", str(members)]
    if src:
        argv += ["-s", src]
    if publish:
        argv += ["--publish", "-t", str(publish["seconds"]), "-R", str(publish["rate"]), "-w",
                 str(publish["window"]), "-z", str(publish["size"])]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                            preexec_fn=raise_fd_limit)


def read_line(proc, timeout, what):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise SystemExit(f"timed out waiting for {what}")
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a client exited before {what} (code {proc.wait()})")
    return line.strip()


def percentile(hist, p):
    """hist: [[upper bound us, count], ...] merged; the bound under which p% of the samples fall."""
    total = sum(c for _, c in hist)
    if total == 0:
        return None
    need, seen = total * p / 100, 0
    for top, c in sorted(hist):
        seen += c
        if seen >= need:
            return top
    return sorted(hist)[-1][0]


def join_members(stack, nodes, room, args):
    """Member processes: --procs per node, each from its own 127.0.0.x. Returns (processes, signed, failed)."""
    members, src, uid = [], 2, UID_BASE
    per_node = [args.members // len(nodes) + (1 if i < args.members % len(nodes) else 0) for i in range(len(nodes))]
    for node, count in zip(nodes, per_node):
        for k in range(args.procs):
            n = count // args.procs + (1 if k < count % args.procs else 0)
            if n > 0:
                members.append(client(stack, node, room, uid, members=n, src=f"127.0.0.{src}"))
                uid += n
                src += 1
    signed = failed = 0
    for p in members:
        _, ok, bad = read_line(p, 300, "members to sign in").split()
        signed, failed = signed + int(ok), failed + int(bad)
    return members, signed, failed


def measure(stack, nodes, room, members, rate, args):
    """One publishing run at rate msgs/s (0: as fast as the publisher's window allows)."""
    before = [n.metrics() for n in nodes]
    for p in members:
        p.send_signal(signal.SIGUSR1)
    publisher = client(stack, nodes[0], room, UID_BASE - 1,
                       publish={"seconds": args.seconds, "rate": rate, "window": args.window, "size": args.size})
    read_line(publisher, 30, "the publisher to sign in")
    pub = json.loads(read_line(publisher, args.seconds + 30, "the publisher's report"))
    publisher.wait()
    reports = []
    for p in members:
        p.send_signal(signal.SIGUSR2)
        reports.append(json.loads(read_line(p, 30, "a member's report")))
    time.sleep(1.2)  # the nodes fold their counters into /metrics once a second
    after = [n.metrics() for n in nodes]

    def grew(name):
        return sum(a.get(name, 0) - b.get(name, 0) for a, b in zip(after, before))

    hist = {}
    for r in reports + [pub]:
        for top, c in r["lat_us"]:
            hist[top] = hist.get(top, 0) + c
    hist = [[t, c] for t, c in hist.items()]
    delivered = sum(r["messages"] for r in reports) + pub["messages"]
    frames = sum(r["frames"] for r in reports) + pub["frames"]
    ms = lambda us: None if us is None else round(us / 1000, 2)  # noqa: E731
    step = {
        "target_rate": rate or "window", "published": pub["sent"], "published_per_s": round(pub["sent"] / args.seconds),
        "publisher_stalls": pub["stalls"],
        "deliveries": delivered, "deliveries_per_s": round(delivered / args.seconds),
        "frames": frames, "messages_per_frame": round(delivered / max(1, frames), 1),
        "latency_ms": {"p50": ms(percentile(hist, 50)), "p99": ms(percentile(hist, 99)),
                       "max": ms(percentile(hist, 100))},
        "drops": {"normal": grew('magpie_push_room_drops_total{level="normal"}'),
                  "important": grew('magpie_push_room_drops_total{level="important"}')},
        "member_closes": sum(r["closes"] for r in reports), "client_errors": sum(r["errors"] for r in reports),
        "node_batches": grew("magpie_push_room_batches_total"),
        "node_deliveries": grew("magpie_push_room_deliveries_total"),
        "node_rss_kib": [n.rss_kib() for n in nodes],
    }
    step["kept_up"] = (step["latency_ms"]["p99"] is not None and step["latency_ms"]["p99"] <= P99_TARGET_MS
                       and step["drops"]["normal"] == 0 and step["drops"]["important"] == 0
                       and step["member_closes"] == 0 and (not rate or pub["sent"] >= 0.95 * rate * args.seconds))
    return step


def scenario(stack, nodes, args):
    """Join the members, then publish at rising rates until the room stops keeping up (p99 over the target,
    a drop, a member closed, or the publisher unable to reach the rate); the best rate that kept up is the
    result. --rate runs one rate only."""
    room = f"bench-{uuid.uuid4().hex[:10]}"
    t0 = time.monotonic()
    members, signed, failed = join_members(stack, nodes, room, args)
    join_s = time.monotonic() - t0
    time.sleep(1.0)  # member counts written, subscriptions confirmed
    steps = []
    try:
        rates = [args.rate] if args.rate else [args.start_rate * 2 ** i for i in range(args.steps)]
        for rate in rates:
            step = measure(stack, nodes, room, members, rate, args)
            print(json.dumps(step), flush=True)
            steps.append(step)
            if not step["kept_up"]:
                break
            time.sleep(1.0)
    finally:
        for p in members:
            p.terminate()
            p.wait()
    kept = [s for s in steps if s["kept_up"]]
    return {"nodes": len(nodes), "members": args.members + 1, "signed_in": signed + 1, "failed": failed,
            "join_s": round(join_s, 1), "seconds_per_step": args.seconds, "window": args.window,
            "message_bytes": args.size,
            "best": max(kept, key=lambda s: s["deliveries_per_s"]) if kept else None, "steps": steps,
            "target": {"deliveries_per_s": 1_000_000, "p99_ms": P99_TARGET_MS}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long run with 200 members; records nothing")
    ap.add_argument("--members", type=int, default=10000, help="members of the room besides the publisher")
    ap.add_argument("--seconds", type=float, default=10, help="how long the publisher sends, per rate")
    ap.add_argument("--rate", type=int, default=0, help="publish at this rate only (msgs/s); default: a ramp")
    ap.add_argument("--start-rate", type=int, default=500, help="the ramp's first rate (msgs/s), doubled each step")
    ap.add_argument("--steps", type=int, default=8, help="the ramp's steps at most")
    ap.add_argument("--window", type=int, default=1024, help="the publisher's messages on the way at most")
    ap.add_argument("--size", type=int, default=64, help="bytes of each message (at least 8: its send time)")
    ap.add_argument("--procs", type=int, default=2, help="member processes per node")
    ap.add_argument("--nodes", choices=["1", "2", "both"], default="both", help="members on one node, two, or both runs")
    args = ap.parse_args()
    if args.smoke:
        args.members, args.seconds, args.procs, args.start_rate, args.steps = 200, 1, 2, 500, 2

    run_dir = os.environ.get("MAGPIE_RUN", os.path.join(REPO, ".run"))
    stack = Stack(run=run_dir, build=os.environ.get("MAGPIE_BUILD", os.path.join(run_dir, "build")))
    if not os.path.exists(stack.bin("bench/room-bench-client")):
        raise SystemExit(f"build the client first: make -C {stack.build} bench/room-bench-client")
    raise_fd_limit()
    overrides = {"rate": 100000, "burst": 100000}
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "commit": _commit(), "smoke": args.smoke, "results": {}}
    for count in ((1, 2) if args.nodes == "both" else (int(args.nodes),)):
        nodes = []
        try:
            nodes = [Node(stack, BENCH_NODE_IDS[i], overrides) for i in range(count)]
            print(f"== one room, {args.members} members on {count} node(s)", flush=True)
            out["results"][f"{count}_node"] = scenario(stack, nodes, args)
            print(json.dumps(out["results"][f"{count}_node"], indent=2), flush=True)
        finally:
            for n in nodes:
                n.stop()
    if not args.smoke:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", f"room-{out['date'][:10]}.json")
        with open(path, "a") as f:
            f.write(json.dumps(out) + "\n")
        print(f"recorded in {path}")


def _commit():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
