#!/usr/bin/python3
"""lp_race.py -- chaos for magpie-http's QR long poll (issue 21): many POST /session_login/<token> long polls
whose browsers disconnect at random moments -- before the poll is parked, while it is parked, while its
answer is being delivered (a phone scans, confirms or cancels the session at that moment) and after it --
mixed with POST /IM/token load and sessions that are confirmed, cancelled and expire meanwhile.

The race it hunts: a parked poll on the standalone front-end is a suspended libmicrohttpd connection; the
long poll's answer thread resumes it, and libmicrohttpd may complete the request (and magpie-http free its
per-request state) at once, on another thread -- fastest when the client has already gone. On the FastCGI
front-end (through nginx) the answer thread writes to and closes a connection nginx may have dropped.

usage: lp_race.py [--run DIR] [--url URL]... [--seconds N | --minutes N] [--browsers N] [--load N]
                  [--seed N] [--pid PID]...

  --run DIR     a Magpie stack (scripts/dev up; default .run): its nginx (FastCGI front-end) and standalone
                URLs are the targets, and /tk must be enabled (http.enable_test_token, as dev stacks have)
  --url URL     (repeatable) a magpie-http front-end to hit as well (or instead: --run none)
  --browsers N  concurrent browsers per target (default 200); each keeps one poll going at a time
  --load N      concurrent keep-alive /IM/token clients per target (default 4)
  --pid PID     (repeatable) a daemon that must still be alive at the end (magpie-http)

Exit status 0 when every target still answers /healthz (and every --pid is alive) at the end and no answer
was malformed; 1 otherwise. Prints one summary line per target ("lp-race: ...") and "lp-race: OK" or
"lp-race: FAILED <why>". The scripts/dev test suite runs it briefly (tests/integration/
test_http_longpoll_race.py); a soak (bench/soak) runs it with --minutes.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import struct
import sys
import time

# Answers a /session_login may legitimately give (SPEC: QR login codes).
POLL_CODES = {0, 8, 9, 10, 14, 18}
# How browsers leave (see browser()), weighted towards the moments around a delivery; the slow fates
# (deadline, linger: up to 4 long polls) are rare so that most browsers keep racing.
FATES = ["early", "parked", "race", "after", "full", "deadline", "linger"]
FATE_WEIGHTS = [2, 2, 8, 3, 2, 1, 0.5]


class Target:
    def __init__(self, url):
        self.url = url.rstrip("/")
        hostport = self.url.split("//", 1)[1]
        host, port = hostport.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.stats = {}
        self.bad = []
        self.refused = 0

    def count(self, key, n=1):
        self.stats[key] = self.stats.get(key, 0) + n


class Gone(Exception):
    """The server closed the connection (or the reply was cut)."""


class Conn:
    """One keep-alive HTTP/1.1 connection, one request at a time, Content-Length framed replies."""

    def __init__(self, target):
        self.t = target
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.t.host, self.t.port)
        return self

    def send(self, method, path, body=b"", headers=None):
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.t.host}\r\nContent-Length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        self.w.write(head.encode() + b"\r\n" + body)

    async def reply(self):
        try:
            head = await self.r.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as e:
            raise Gone(str(e)) from None
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        try:
            body = await self.r.readexactly(int(hdrs.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise Gone(str(e)) from None
        return status, hdrs, body

    async def call(self, method, path, body=b"", headers=None):
        self.send(method, path, body, headers)
        return await self.reply()

    def abort(self, rst):
        """Drop the connection: with a reset (SO_LINGER 0: the server's next write fails at once) or a FIN."""
        if self.w is None:
            return
        sock = self.w.get_extra_info("socket")
        if rst and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.w.transport.abort() if rst else self.w.close()
        self.w = None


def jcode(body):
    try:
        return json.loads(body).get("code")
    except (ValueError, AttributeError):
        return "unparsable"


async def get_token(target, uid):
    c = await Conn(target).open()
    status, _, body = await c.call("POST", "/tk", json.dumps({"uid": uid}).encode(),
                                   {"Content-Type": "application/json"})
    c.abort(False)
    d = json.loads(body)
    if status != 200 or d.get("code") != 1:
        raise SystemExit(f"lp-race: /tk on {target.url} answered {status} {body[:200]!r} (needs "
                         "http.enable_test_token)")
    return d["data"]


async def new_session(c, cookie):
    hdrs = {"Cookie": cookie} if cookie else {}
    status, h, body = await c.call("POST", "/pc_session", b"", hdrs)
    d = json.loads(body)
    if status != 200 or d.get("code") != 0:
        raise Gone(f"/pc_session answered {status} {body[:100]!r}")
    if not cookie:
        cookie = h.get("set-cookie", "").split(";", 1)[0]
    return d["result"]["token"], cookie


async def phone_act(target, phone_token, token, what):
    """The phone scans, then maybe confirms or cancels the session (each a state change the waiters see)."""
    auth = {"Authorization": f"Bearer {phone_token}", "Content-Type": "application/json"}
    c = await Conn(target).open()
    try:
        await c.call("POST", f"/scan_pc/{token}", b"", auth)
        if what in ("confirm", "cancel"):
            await c.call("POST", f"/{what}_pc", json.dumps({"token": token}).encode(), auth)
    finally:
        c.abort(False)


async def browser(target, phone_token, stop, long_poll_s):
    """One browser after another: create a session, poll it, and leave at a random moment."""
    rnd = random.Random()
    cookie = None
    ctl = None
    while time.time() < stop:
        try:
            if ctl is None:
                ctl = await Conn(target).open()
            try:
                token, cookie = await new_session(ctl, cookie)
            except Gone:  # the keep-alive connection idled out while this browser lingered: a new one
                ctl.abort(False)
                ctl = await Conn(target).open()
                token, cookie = await new_session(ctl, cookie)
            poll = await Conn(target).open()
            poll.send("POST", f"/session_login/{token}", b"", {"Cookie": cookie})
            fate = rnd.choices(FATES, FATE_WEIGHTS)[0]
            rst = rnd.random() < 0.8
            target.count(fate)
            if fate == "early":  # gone before or while the handler parks the poll
                await asyncio.sleep(rnd.uniform(0, 0.01))
                poll.abort(rst)
            elif fate == "parked":  # parked polls dropped by their clients (what run.sh's phase change does)
                await asyncio.sleep(rnd.uniform(0.01, 0.5))
                poll.abort(rst)
            elif fate == "race":  # gone just before, while or just after the answer is delivered
                await asyncio.sleep(rnd.uniform(0.005, 0.05))
                act = asyncio.ensure_future(phone_act(target, phone_token, token,
                                                      rnd.choice(["scan", "confirm", "cancel"])))
                await asyncio.sleep(rnd.choice([0, 0, rnd.uniform(0, 0.002), rnd.uniform(0, 0.02)]))
                poll.abort(rst)
                await act
            elif fate == "after":  # the answer arrives; the client leaves before/while reading it
                await asyncio.sleep(rnd.uniform(0.005, 0.05))
                await phone_act(target, phone_token, token, "scan")
                await asyncio.sleep(rnd.uniform(0, 0.005))
                poll.abort(rst)
            elif fate == "full":  # a well-behaved browser: scanned (9), polls again, confirmed (0)
                await asyncio.sleep(rnd.uniform(0.005, 0.05))
                await phone_act(target, phone_token, token, "scan")
                status, _, body = await asyncio.wait_for(poll.reply(), long_poll_s + 10)
                code = jcode(body)
                target.count(f"code{code}")
                if code not in POLL_CODES:
                    target.bad.append(f"/session_login answered {status} {body[:120]!r}")
                poll.send("POST", f"/session_login/{token}", b"", {"Cookie": cookie})
                await phone_act(target, phone_token, token, rnd.choice(["confirm", "cancel"]))
                status, _, body = await asyncio.wait_for(poll.reply(), long_poll_s + 10)
                code = jcode(body)
                target.count(f"code{code}")
                if code not in POLL_CODES:
                    target.bad.append(f"/session_login answered {status} {body[:120]!r}")
                poll.abort(False)
            elif fate == "linger":  # poll again after every code 10 until the session expires (8)
                leave = time.time() + rnd.uniform(0, 4 * long_poll_s)
                while time.time() < min(leave, stop):
                    try:
                        status, _, body = await asyncio.wait_for(poll.reply(), max(0.01, leave - time.time()))
                    except asyncio.TimeoutError:
                        break
                    code = jcode(body)
                    target.count(f"code{code}")
                    if code not in POLL_CODES:
                        target.bad.append(f"/session_login answered {status} {body[:120]!r}")
                    if code != 10:
                        break
                    poll.send("POST", f"/session_login/{token}", b"", {"Cookie": cookie})
                poll.abort(rst)
            else:  # "deadline": wait for the code 10 (or 8 once the session expired), leave near it
                leave = rnd.uniform(0, long_poll_s + 0.5)
                try:
                    status, _, body = await asyncio.wait_for(poll.reply(), leave)
                    target.count(f"code{jcode(body)}")
                except asyncio.TimeoutError:
                    pass
                poll.abort(rst)
        except Gone:
            target.count("server-closed")
            if ctl is not None:
                ctl.abort(False)
            ctl = None
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, OSError):
            target.refused += 1
            if ctl is not None:
                ctl.abort(False)
            ctl = None
            await asyncio.sleep(0.05)
        except asyncio.TimeoutError:
            target.bad.append("a long poll was not answered within long_poll_s + 10 s")
            ctl = None
    if ctl is not None:
        ctl.abort(False)


async def loader(target, token, stop):
    """Keep-alive POST /IM/token, the hot path, as fast as it goes."""
    c = None
    while time.time() < stop:
        try:
            if c is None:
                c = await Conn(target).open()
            status, _, _ = await c.call("POST", "/IM/token", b"", {"Authorization": f"Bearer {token}"})
            target.count("imtoken" if status == 200 else f"imtoken-{status}")
        except Gone:  # nginx ends a keep-alive connection after keepalive_requests
            target.count("imtoken-closed")
            c = None
        except OSError:
            target.refused += 1
            c = None
            await asyncio.sleep(0.05)
    if c is not None:
        c.abort(False)


async def healthy(target):
    try:
        c = await asyncio.wait_for(Conn(target).open(), 5)
        status, _, _ = await asyncio.wait_for(c.call("GET", "/healthz"), 10)
        c.abort(False)
        return status == 200
    except (OSError, Gone, asyncio.TimeoutError):
        return False


def alive(pid):
    """Is pid running (a zombie is not)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stack_urls(run):
    env = {}
    with open(os.path.join(run, "dev.env")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v.strip('"')
    return [f"http://127.0.0.1:{env['NGINX_PORT']}", f"http://127.0.0.1:{env['HTTP_PORT']}"]


def long_poll_s(run):
    """http.long_poll_s of the stack (default 25)."""
    try:
        section = None
        with open(os.path.join(run, "magpie.conf")) as f:
            for line in f:
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]")
                elif section == "http" and line.startswith("long_poll_s"):
                    return int(line.split("=", 1)[1])
    except (OSError, ValueError):
        pass
    return 25


async def main_async(args):
    urls = list(args.url)
    lp = args.long_poll_s
    if args.run != "none":
        urls = stack_urls(args.run) + urls
        lp = lp or long_poll_s(args.run)
    lp = lp or 25
    targets = [Target(u) for u in urls]
    stop = time.time() + args.seconds
    tasks = []
    for t in targets:
        phone = await get_token(t, random.randrange(10**9, 2 * 10**9))
        user = await get_token(t, random.randrange(10**9, 2 * 10**9))
        tasks += [browser(t, phone, stop, lp) for _ in range(args.browsers)]
        tasks += [loader(t, user, stop) for _ in range(args.load)]
    print(f"lp-race: {len(targets)} target(s) {' '.join(urls)}, {args.browsers} browsers and {args.load} "
          f"/IM/token clients each, {args.seconds:.0f} s", flush=True)
    # Progress every minute on long runs, so a soak log shows when things went wrong; a watched daemon
    # that died ends the run at once.
    async def progress():
        last = time.time()
        while time.time() < stop:
            await asyncio.sleep(min(1, max(0.1, stop - time.time())))
            gone = [p for p in args.pid if not alive(p)]
            if gone:
                print(f"lp-race: pid {gone[0]} died after {time.time() - started:.0f} s", flush=True)
                for t in asyncio.all_tasks():
                    if t is not asyncio.current_task() and t is not main_task:
                        t.cancel()
                return
            if time.time() - last >= 60:
                last = time.time()
                for t in targets:
                    print(f"lp-race: {t.url} {sum(t.stats.values())} events, refused={t.refused}", flush=True)
    started = time.time()
    main_task = asyncio.current_task()
    await asyncio.gather(progress(), *tasks, return_exceptions=True)
    failed = []
    for t in targets:
        ok = await healthy(t)
        keys = " ".join(f"{k}={v}" for k, v in sorted(t.stats.items()))
        print(f"lp-race: {t.url} healthy={'yes' if ok else 'NO'} refused={t.refused} bad={len(t.bad)} {keys}")
        for b in t.bad[:5]:
            print(f"lp-race:   bad answer: {b}")
        if not ok:
            failed.append(f"{t.url} does not answer /healthz")
        if t.bad:
            failed.append(f"{t.url} gave {len(t.bad)} bad answer(s)")
        # Refused connections mean the server went away mid-run (it restarts nowhere by itself).
        if t.refused > args.browsers * 5:
            failed.append(f"{t.url} refused {t.refused} connections")
    for pid in args.pid:
        if not alive(pid):
            failed.append(f"pid {pid} is gone")
    print("lp-race: OK" if not failed else "lp-race: FAILED " + "; ".join(failed), flush=True)
    return 0 if not failed else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".run"))
    ap.add_argument("--url", action="append", default=[])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--browsers", type=int, default=200)
    ap.add_argument("--load", type=int, default=4)
    ap.add_argument("--long-poll-s", type=int, default=0, help="the targets' http.long_poll_s (--run reads it)")
    ap.add_argument("--pid", type=int, action="append", default=[])
    ap.add_argument("--seed", type=int)
    args = ap.parse_args()
    if args.minutes:
        args.seconds = args.minutes * 60
    if args.seed is not None:
        random.seed(args.seed)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
