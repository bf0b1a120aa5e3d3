#!/usr/bin/python3
"""push_bench.py -- the magpie-push benchmark of issue 5: memory per idle connection, connections one node
holds, acked 1:1 messages per second and their latency.

It runs against a stack started by scripts/dev (`scripts/dev up`, or the test stack): it reads the stack's
ports and secret from $MAGPIE_RUN (default .run) and starts its own magpie-push node from $MAGPIE_BUILD
(default $MAGPIE_RUN/build) on free ports, registered in that stack's Redis like any node, with the
per-connection packet rate lifted (push.rate/burst) so the load generator, not the limit, is measured.
The node is stopped with SIGTERM at the end. Clients connect straight to the node (not through nginx,
whose worker_connections would cap the connection count) and are spread over --procs processes.

  bench/push_bench.py --smoke all              a few seconds, small numbers: checks the benchmark itself
  bench/push_bench.py idle --conns 10000       RSS growth of the node per idle connection
  bench/push_bench.py conns --max 19000        connections until --max or the first refusal
  bench/push_bench.py rate --pairs 1000 --seconds 20              as fast as acks come (window per sender)
  bench/push_bench.py rate --pairs 1000 --seconds 20 --rate 20000  fixed total rate: p99 latencies

Every run but --smoke appends its result, with the machine and the date, to
bench/results/push-<mode>-<date>.json. Targets (issue 5): <= 4 KiB per idle connection; up to the 20k fd
limit per node; >= 50,000 acked msgs/s on one node; at 20,000 msgs/s p99 send->ack <= 10 ms and
send->deliver <= 20 ms. Run it on a quiet machine: numbers from a shared one mean little.
"""
import argparse
import asyncio
import datetime
import json
import multiprocessing as mp
import os
import platform
import random
import resource
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

import jwt  # noqa: E402  (python3-jwt)
import websockets  # noqa: E402  (python3-websockets)

from magpie_stack import Stack  # noqa: E402

BENCH_NODE_ID = 1001  # out of the way of scripts/dev's nodes (1, 2) and the tests' extra nodes (9xx)


def free_port():
    """A free port below the kernel's ephemeral range, as scripts/lib/stack.sh picks them: a port in that
    range can become the local end of any outgoing connection before the node binds it."""
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


def mint(secret, uid):
    now = int(time.time())
    return jwt.encode({"id": uid, "type": "websocket", "jti": uuid.uuid4().hex, "iat": now, "exp": now + 3600},
                      secret, algorithm="HS256")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Node:
    """A magpie-push node of its own, on the stack's Redis and MySQL."""

    def __init__(self, stack, overrides):
        self.log = os.path.join(stack.run, "logs", "push-bench.log")
        for _ in range(5):  # a port found free may be taken before the node binds it: try others
            self.port, self.metrics_port = free_port(), free_port()
            env = dict(os.environ, MAGPIE_PUSH_NODE_ID=str(BENCH_NODE_ID),
                       MAGPIE_PUSH_LISTEN=f"127.0.0.1:{self.port}",
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
        raise SystemExit(f"the bench node did not start; see {self.log}")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- client processes ----

def _bump(counter):
    with counter.get_lock():  # += on a shared Value is not atomic by itself
        counter.value += 1


async def _open(url, tickets, opened, failed):
    conns = []
    for tk in tickets:
        try:
            ws = await websockets.connect(f"{url}/ws/{tk}", ping_interval=None, compression=None,
                                          open_timeout=30, close_timeout=1, max_queue=None)
            login = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if login.get("type") != "L":
                _bump(failed)
                await ws.close()
                break
            conns.append(ws)
            _bump(opened)
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
            _bump(failed)
            break
    return conns


def hold_worker(url, tickets, opened, failed, release):
    """Open connections one after another and keep them open until release is set."""
    raise_fd_limit()

    async def run():
        conns = await _open(url, tickets, opened, failed)
        while not release.is_set():
            await asyncio.sleep(0.2)
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    asyncio.run(run())


def rate_worker(url, pairs, seconds, per_sender_rate, window, results):
    """pairs: [(sender ticket, sender uid, recipient ticket, recipient uid)]. Sends t packets carrying the
    send time; measures send->A and send->delivery (both ends are in this process: one clock)."""
    raise_fd_limit()

    async def run():
        ack_lat, dlv_lat = [], []
        acked = errors = 0
        senders, recipients = [], []
        for s_tk, s_uid, r_tk, r_uid in pairs:
            s = await websockets.connect(f"{url}/ws/{s_tk}", ping_interval=None, compression=None, max_queue=None)
            r = await websockets.connect(f"{url}/ws/{r_tk}", ping_interval=None, compression=None, max_queue=None)
            await s.recv()
            await r.recv()
            senders.append((s, r_uid))
            recipients.append(r)
        start = time.monotonic() + 0.5
        stop_at = start + seconds

        async def send_loop(ws, to, sent_at, credit):
            i = 0
            while True:
                now = time.monotonic()
                if now >= stop_at:
                    return i
                if per_sender_rate:
                    due = start + i / per_sender_rate
                    if due > now:
                        await asyncio.sleep(due - now)
                else:
                    await credit.acquire()
                id = str(i)
                sent_at[id] = time.monotonic()
                await ws.send(json.dumps({"id": id, "to": to, "type": "t", "msg": f"{sent_at[id]:.9f}"}))
                i += 1

        async def ack_loop(ws, sent_at, credit, done):
            nonlocal acked, errors
            while not (done.is_set() and not sent_at):
                try:
                    p = json.loads(await asyncio.wait_for(ws.recv(), 2))
                except asyncio.TimeoutError:
                    if done.is_set():
                        return
                    continue
                t = sent_at.pop(p.get("id"), None)
                if t is None:
                    continue
                if p["type"] == "A":
                    acked += 1
                    ack_lat.append(time.monotonic() - t)
                else:
                    errors += 1
                credit.release()

        async def deliver_loop(ws, done):
            while not done.is_set():
                try:
                    p = json.loads(await asyncio.wait_for(ws.recv(), 2))
                except asyncio.TimeoutError:
                    continue
                if p.get("type") == "t":
                    dlv_lat.append(time.monotonic() - float(p["msg"]))

        done = asyncio.Event()
        tasks, senders_t = [], []
        for (s, to), r in zip(senders, recipients):
            sent_at, credit = {}, asyncio.Semaphore(window)
            tasks.append(asyncio.create_task(ack_loop(s, sent_at, credit, done)))
            tasks.append(asyncio.create_task(deliver_loop(r, done)))
            senders_t.append(asyncio.create_task(send_loop(s, to, sent_at, credit)))
        sent = sum(await asyncio.gather(*senders_t))
        await asyncio.sleep(1.0)
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ws in [s for s, _ in senders] + recipients:
            await ws.close()
        results.put({"sent": sent, "acked": acked, "errors": errors, "ack_lat": ack_lat, "dlv_lat": dlv_lat})
    asyncio.run(run())


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"host": platform.node(), "kernel": platform.release(), "cpu": model, "cores": os.cpu_count(),
            "mem_gib": round(mem_kib / 1048576, 1), "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


def split(items, n):
    return [items[i::n] for i in range(n) if items[i::n]]


# ---- modes ----

def hold(stack, node, n, procs):
    """Open n connections over procs processes; returns (opened, failed, release event, processes)."""
    tickets = [mint(stack.secret, 7_000_000_000 + i) for i in range(n)]
    opened, failed, release = mp.Value("i", 0), mp.Value("i", 0), mp.Event()
    ps = [mp.Process(target=hold_worker, args=(f"ws://127.0.0.1:{node.port}", part, opened, failed, release))
          for part in split(tickets, procs)]
    for p in ps:
        p.start()
    return opened, failed, release, ps


def mode_idle(stack, node, args):
    time.sleep(0.5)
    base = node.rss_kib()
    opened, failed, release, ps = hold(stack, node, args.conns, args.procs)
    while opened.value + failed.value < args.conns and any(p.is_alive() for p in ps) and not failed.value:
        time.sleep(0.2)
    time.sleep(2.0)  # let the node settle (no traffic: these are idle)
    rss = node.rss_kib()
    result = {"connections": opened.value, "failed": failed.value, "rss_before_kib": base, "rss_after_kib": rss,
              "per_connection_bytes": round((rss - base) * 1024 / max(1, opened.value)), "target_bytes": 4096}
    release.set()
    for p in ps:
        p.join()
    return result


def mode_conns(stack, node, args):
    opened, failed, release, ps = hold(stack, node, args.max, args.procs)
    last, still = -1, time.monotonic()
    while any(p.is_alive() for p in ps) and opened.value + failed.value < args.max:
        if opened.value != last:
            last, still = opened.value, time.monotonic()
        elif time.monotonic() - still > 30:
            break  # stuck
        time.sleep(0.5)
    time.sleep(1.0)
    result = {"requested": args.max, "held": opened.value, "failed": failed.value, "node_fds": node.fds(),
              "node_rss_kib": node.rss_kib()}
    release.set()
    for p in ps:
        p.join()
    return result


def mode_rate(stack, node, args):
    r = stack.redis()
    pairs = []
    with r.pipeline(transaction=False) as pipe:
        for i in range(args.pairs):
            s_uid, r_uid = 8_000_000_000 + 2 * i, 8_000_000_001 + 2 * i
            pipe.sadd(f"mp:friends:{s_uid}", r_uid)
            pairs.append((mint(stack.secret, s_uid), s_uid, mint(stack.secret, r_uid), r_uid))
        pipe.execute()
    per_sender = args.rate / args.pairs if args.rate else 0
    results = mp.Queue()
    ps = [mp.Process(target=rate_worker, args=(f"ws://127.0.0.1:{node.port}", part, args.seconds, per_sender,
                                               args.window, results))
          for part in split(pairs, args.procs)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    parts = [results.get(timeout=args.seconds + 120) for _ in ps]
    for p in ps:
        p.join()
    acked = sum(p["acked"] for p in parts)
    ack_lat = [x for p in parts for x in p["ack_lat"]]
    dlv_lat = [x for p in parts for x in p["dlv_lat"]]
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {"pairs": args.pairs, "seconds": args.seconds, "target_rate": args.rate or "max", "window": args.window,
            "sent": sum(p["sent"] for p in parts), "acked": acked, "errors": sum(p["errors"] for p in parts),
            "acked_per_s": round(acked / args.seconds), "delivered": len(dlv_lat),
            "ack_ms": {"p50": ms(pct(ack_lat, 50)), "p99": ms(pct(ack_lat, 99)), "max": ms(pct(ack_lat, 100))},
            "deliver_ms": {"p50": ms(pct(dlv_lat, 50)), "p99": ms(pct(dlv_lat, 99)), "max": ms(pct(dlv_lat, 100))},
            "wall_s": round(time.monotonic() - t0, 1)}


MODES = {"idle": mode_idle, "conns": mode_conns, "rate": mode_rate}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=list(MODES) + ["all"])
    ap.add_argument("--smoke", action="store_true", help="seconds-long run with tiny numbers; records nothing")
    ap.add_argument("--conns", type=int, default=10000, help="idle: connections to open")
    ap.add_argument("--max", type=int, default=19000, help="conns: stop at this many")
    ap.add_argument("--pairs", type=int, default=500, help="rate: sender/recipient pairs")
    ap.add_argument("--seconds", type=float, default=20, help="rate: how long to send")
    ap.add_argument("--rate", type=int, default=0, help="rate: total msgs/s (0 = as fast as acks come)")
    ap.add_argument("--window", type=int, default=32, help="rate: unacked messages per sender at most")
    ap.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="client processes")
    args = ap.parse_args()
    if args.smoke:
        args.conns, args.max, args.pairs, args.seconds, args.procs = 50, 200, 10, 2, 2
        args.rate = args.rate and min(args.rate, 500)

    run_dir = os.environ.get("MAGPIE_RUN", os.path.join(REPO, ".run"))
    stack = Stack(run=run_dir, build=os.environ.get("MAGPIE_BUILD", os.path.join(run_dir, "build")))
    raise_fd_limit()
    node = Node(stack, {"rate": 100000, "burst": 100000})
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "smoke": args.smoke, "results": {}}
    try:
        for mode in (MODES if args.mode == "all" else [args.mode]):
            print(f"== {mode}", flush=True)
            out["results"][mode] = MODES[mode](stack, node, args)
            print(json.dumps(out["results"][mode], indent=2), flush=True)
    finally:
        node.stop()
    if not args.smoke:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", f"push-{args.mode}-{out['date'][:10]}.json")
        with open(path, "a") as f:
            f.write(json.dumps(out) + "\n")
        print(f"recorded in {path}")


if __name__ == "__main__":
    main()
