#!/usr/bin/python3
"""make-corpus.py -- writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/seed-*).

The seeds are the valid (and a few typical invalid) inputs the unit and integration tests use, in each
target's input format (see the comment at the top of each fuzz_<target>.c). Run it after changing a format;
it rewrites only the seed-* files, never the crash-* inputs kept as regression tests.

    /usr/bin/python3 tests/fuzz/make-corpus.py
"""
import base64
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"fuzz-secret-0123456789abcdef0123456789abcdef"  # fuzz_jwt.c, fuzz_http.c
NOW = 1700000000  # fuzz_jwt.c's FUZZ_NOW
JTI = "0123456789abcdef0123456789abcdef"


def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb(*fields):
    """fields: (number, value): int -> varint, bytes/str -> length-delimited; 0 and empty are omitted."""
    out = b""
    for num, v in fields:
        if isinstance(v, int):
            if v:
                out += varint(num << 3) + varint(v)
        else:
            v = v.encode() if isinstance(v, str) else v
            if v:
                out += varint(num << 3 | 2) + varint(len(v)) + v
    return out


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, header=None, key=SECRET):
    h = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def claims(kind="login", uid=42, **extra):
    c = {"id": uid, "type": kind, "jti": JTI, "iat": NOW - 10, "exp": NOW + 3600}
    c.update(extra)
    return c


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as fp:
            fp.write(data.encode() if isinstance(data, str) else data)


def chatpkt():
    return {
        "ping": '{"id":"1","type":"P"}',
        "text": '{"id":"m1","to":2,"type":"t","msg":"hello"}',
        "text-utf8": '{"id":"u1","to":3,"type":"t","msg":"h\\u00e9llo \u4f60\u597d \U0001f600"}',
        "image": '{"id":"m2","to":2,"type":"i","msg":"img-123"}',
        "online": '{"id":"o1","type":"O","msg":2}',
        "online-str": '{"id":"o2","type":"O","msg":"2"}',
        "history": '{"id":"h1","type":"H","msg":{"since":0,"with":2,"limit":10}}',
        "history-ms": '{"id":"h2","type":"H","msg":1700000000000}',
        "order": '{"id":"T1","type":"T","msg":"order-1"}',
        "order-num": '{"id":"T2","type":"T","msg":42}',
        "site": '{"id":"s1","type":"S","msg":{"longitude":116.397,"latitude":39.908}}',
        "site-seed": '{"id":"s2","type":"S","msg":{"longtitude":-0.1276,"latitude":51.5072}}',
        "no-msg": '{"id":"x","type":"t","to":2}',
        "extra-fields": '{"id":"e","type":"P","from":9,"ts":1,"x":[null,true,false,1.5e3]}',
    }


def roompkt():
    sign_in = pb((1, jwt(claims())), (2, "room-1"))
    msg = pb((1, "room-1"), (2, 0), (3, b"hello room"))
    return {
        "sign-in": pb((1, 1), (2, sign_in)),
        "heartbeat": pb((1, 2)),
        "message": pb((1, 3), (2, msg)),
        "message-important": pb((1, 3), (2, pb((1, "r\u00e9"), (2, 1), (3, b"\x00\x01binary")))),
        "message-no-room": pb((1, 3), (2, pb((3, b"x")))),
        "members": pb((1, 4)),
        "unknown-type": pb((1, 9)),
        "empty": b"",
    }


def bus():
    ctl = lambda o: b"\x00" + json.dumps(o, separators=(",", ":")).encode()
    return {
        "control-kick": ctl({"cmd": "kick", "uid": 42}),
        "control-logout": ctl({"cmd": "logout", "uid": 42, "sid": JTI}),
        "control-deliver": ctl({"cmd": "deliver", "uid": 42, "packet": {"id": JTI, "from": 0, "to": 42,
                                                                         "type": "s", "msg": {"a": 1},
                                                                         "ts": NOW * 1000}}),
        "node-delivery": b"\x01" + b'12 34 1700000000123\n{"id":"m1","from":34,"to":12,"type":"t","msg":"hi",'
                                   b'"ts":1700000000123,"mid":"99"}',
        # a split send's halves (push/chatpkt.h): the sender's with to seq 0, the recipient's with from seq 0
        "node-delivery-sender-half": b"\x01" + b'5 0 12 34 1700000000123\n{"id":"m1","from":34,"to":12,"type":"t",'
                                               b'"msg":"hi","ts":1700000000123,"mid":"99"}',
        "node-delivery-recipient-half": b"\x01" + b'0 7 12 34 1700000000123\n{"id":"m1","from":34,"to":12,'
                                                  b'"type":"t","msg":"hi","ts":1700000000123,"mid":"99"}',
        "node-group": b"\x01" + b'g 1795633148697\n557434457021 1 834094345560 7\n{"id":"x","from":1,"to":5,'
                      b'"type":"g","msg":"hi","ts":1,"mid":"9"}',
        "node-group-empty": b"\x01" + b"g 17\n\n{}",
        "room": b"\x02" + pb((1, "room-1"), (2, 0), (3, b"hello")),
        "room-important": b"\x02" + pb((1, "42"), (2, 1), (3, b"notice")),
    }


def persist_entry():
    def enc(sid, *kv):
        out = b""
        for s in (sid,) + kv:
            s = s.encode() if isinstance(s, str) else s
            out += struct.pack("<H", len(s)) + s
        return out

    good = ("v", "1", "mid", "7000000000000000001", "from", "12", "to", "34", "cid", "c-1", "type", "t",
            "body", "hello", "ts", "1700000000123")
    return {
        "text": enc("1700000000123-0", *good),
        "image": enc("1700000000123-5", "v", "1", "mid", "9", "from", "1", "to", "2", "cid", "x", "type", "i",
                     "body", "img-1", "ts", "1"),
        "empty-body-utf8": enc("18446744073709551615-18446744073709551615", "v", "1", "mid", "9", "from", "1",
                               "to", "2", "cid", "\u00e9\u4f60", "type", "t", "body", "", "ts", "1",
                               "extra", "ignored"),
        "long-body": enc("1-1", *good[:13], "\u4f60" * 1365, "ts", "1"),
        "twice": enc("0-0", *good, "to", "35"),
        "dead-letter": enc("5-0", "reason", "missing field 'v'", "orig_id", "1-0", *good[2:]),
        # group entries (push/group.h): a g message, an s event, a group state and a deletion
        "group-message": enc("1700000000124-0", "v", "1", "mid", "7000000000000000002", "from", "12", "to", "5",
                             "cid", "g-1", "type", "g", "body", "hello group", "ts", "1700000000124",
                             "fseq", "8", "group", "5", "gn", "3", "seqs", "34:2 35:17 36:1"),
        "group-message-alone": enc("1-0", "v", "1", "mid", "9", "from", "5", "to", "5", "cid", "x", "type", "g",
                                   "body", "", "ts", "1", "fseq", "1", "group", "5", "gn", "1", "seqs", ""),
        "group-event": enc("1700000000125-0", "v", "1", "mid", "7000000000000000003", "from", "0", "to", "5",
                           "cid", "7000000000000000003", "type", "s",
                           "body", '{"event":"member_added","group":5,"by":12,"members":[36]}',
                           "ts", "1700000000125", "group", "5", "seqs", "12:9 34:3 35:18 36:2"),
        "group-state": enc("1700000000126-0", "v", "1", "type", "G", "group", "5", "ts", "1700000000126",
                           "ver", "4", "name", "\u4f60\u597d friends", "owner", "12", "created", "1700000000000",
                           "members", "12:o:1:1700000000000 34:a:2:1700000000000 36:m:4:1700000000125"),
        "group-deleted": enc("1700000000127-0", "v", "1", "type", "G", "group", "5", "ts", "1700000000127",
                             "ver", "5", "deleted", "1"),
    }


def jwt_seeds():
    signed = lambda h, c: b"\x01" + json.dumps(h, separators=(",", ":")).encode() + b"\n" + \
        json.dumps(c, separators=(",", ":")).encode()
    hs = {"alg": "HS256", "typ": "JWT"}
    return {
        "raw-login": b"\x00" + jwt(claims()).encode(),
        "raw-websocket": b"\x00" + jwt(claims("websocket", sid=JTI)).encode(),
        "raw-expired": b"\x00" + jwt(claims(exp=NOW - 1)).encode(),
        "raw-other-key": b"\x00" + jwt(claims(), key=b"another-secret-0123456789abcdef0123456789").encode(),
        "raw-alg-none": b"\x00" + (b64url(b'{"alg":"none"}') + "." + b64url(json.dumps(claims()).encode()) +
                                   ".").encode(),
        "signed-login": signed(hs, claims()),
        "signed-websocket": signed(hs, claims("websocket", sid=JTI)),
        "signed-nbf": signed(hs, claims(nbf=NOW + 100)),
        "signed-future-iat": signed(hs, claims(iat=NOW + 3600, exp=NOW + 7200)),
        "signed-bad-types": signed(hs, {"id": "42", "type": 1, "jti": "", "iat": 1.5, "exp": None}),
        "signed-hs512": signed({"alg": "HS512"}, claims()),
    }


def config():
    example = open(os.path.join(HERE, "..", "..", "magpie.conf.example")).read()
    return {
        "example": example,
        "dev": "[log]\nlevel = debug\nfile =\n\n[auth]\nsecret = " + "s" * 48 + "\napi_keys = k1, k2\n\n"
               "[redis]\nhost = 127.0.0.1\nport = 6390\n\n[mysql]\nport = 3316\nsocket =\n\n"
               "[http]\nlisten = 127.0.0.1:8081\nfcgi_socket_mode = 0660\nenable_test_token = yes\n\n"
               "[push]\nlisten = [::1]:9001\nallowed_origins = http://127.0.0.1:8080, https://example.com\n"
               "node_id = 1\n\n[persist]\nbatch = 100\n",
        "comments": "# a comment\n; another\n\n  [ sms ]  \n\tsink_file = /tmp/sms.txt\r\ncode_ttl_s=300\n",
        "bad-key": "[redis]\nnope = 1\n",
        "bad-range": "[redis]\nport = 70000\n",
        "twice": "[redis]\nport = 1\nport = 2\n",
        "no-section": "port = 1\n",
    }


def http():
    def req(line, headers=(), body=None):
        s = line + "\n" + "".join(h + "\n" for h in headers)
        if body is not None:
            s += "\n" + (body if isinstance(body, str) else json.dumps(body, separators=(",", ":")))
        return s

    key = "Authorization: Key fuzz-key"
    bearer = "Authorization: Bearer " + jwt(claims())
    cookie = "Cookie: mp_pc=" + JTI
    tok = JTI
    return {
        "send-code": req("POST /send_code", ["X-Real-IP: 127.0.0.1"], {"mobile": "+8613800138000"}),
        "login": req("POST /login", [], {"mobile": "13800138000", "code": "123456", "clientId": "c1",
                                         "platform": 2}),
        "logout": req("POST /logout", [bearer], {}),
        "me": req("GET /me", [bearer]),
        "friends": req("GET /friends", ["authToken: " + jwt(claims())]),
        "pc-session": req("POST /pc_session", ["User-Agent: Mozilla/5.0 (X11; Linux) \u00e9", cookie],
                          {"device_name": "laptop", "clientId": "web", "platform": "web"}),
        "qr-svg": req("GET /pc_session/" + tok + "/qr.svg"),
        "session-login": req("POST /session_login/" + tok, [cookie]),
        "scan": req("POST /scan_pc/" + tok, [bearer]),
        "confirm": req("POST /confirm_pc", [bearer], {"token": tok}),
        "cancel": req("POST /cancel_pc", [bearer], {"token": tok}),
        "im-token": req("POST /IM/token", [bearer]),
        "route": req("POST /route", [bearer], ""),
        "msg-room": req("POST /msg", [key], {"room_id": "room-1", "msg": "hello", "level": 1}),
        "msg-room-int": req("POST /msg", [key], {"room_id": 7, "msg": "hi"}),
        "msg-user": req("POST /msg", [key], {"to": "42", "msg": {"text": "system"}}),
        "tk": req("POST /tk", [], {"uid": 42}),
        "admin-friends": req("POST /admin/friends", [key], {"a": 1, "b": "2"}),
        "admin-orders": req("POST /admin/orders", [key], {"order_id": "o-1", "customer": 42}),
        "admin-kick": req("POST /admin/kick", ["Authorization: key   fuzz-key"], {"uid": 42}),
        "healthz": req("GET /healthz"),
        "metrics": req("HEAD /metrics"),
        "not-found": req("GET /nope"),
        "wrong-method": req("GET /login"),
        "bad-json": req("POST /login", [], '{"mobile":'),
        "not-object": req("POST /send_code", [], "[1,2]"),
        "conversations": req("GET /conversations?limit=5&cursor=17", [bearer]),
        "group-create": req("POST /groups", [bearer], {"name": "\u7fa4 friends", "members": [43, "44"]}),
        "group-create-dup": req("POST /groups", [bearer], {"name": "g", "members": [43, 43]}),
        "group-create-long": req("POST /groups", [bearer], {"name": "\u7fa4" * 65, "members": []}),
        "group-list": req("GET /groups", [bearer]),
        "group-get": req("GET /groups/7", [bearer]),
        "group-get-bad-id": req("GET /groups/x7", [bearer]),
        "group-update": req("POST /groups/7", [bearer], {"name": "renamed", "admins_add": [43],
                                                         "admins_remove": ["44"]}),
        "group-members": req("POST /groups/7/members", [bearer], {"add": [45, 46], "remove": [44]}),
        "group-members-overlap": req("POST /groups/7/members", [bearer], {"add": [45], "remove": [45]}),
        "group-leave": req("POST /groups/7/leave", [bearer]),
        "group-delete": req("DELETE /groups/7", [bearer]),
        "group-wrong-method": req("PUT /groups/7", [bearer]),
    }


def qr_token():
    return {
        "cookie": "mp_pc=" + JTI + "\n" + JTI,
        "cookies": "a=1; mp_pc=" + JTI + " ; b=2\nMozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36",
        "ua-utf8": "mp_pc=x\n\u00e9\u4f60\U0001f600\x01\x7f".encode() + b"\xff\xc0\xaf",
        "upper-hex": "mp_pc=" + JTI.upper() + "\n" + JTI.upper(),
        "empty": "\n",
        "log-line": "\nError parsing request GET /session_login/" + JTI + " HTTP/1.1 from /scan_pc/" + JTI,
        "log-jwt": "\nGET /ws/" + jwt(claims("websocket")) + "?x=1&token=" + jwt(claims()) + " /pc_session/" + JTI +
                   "/qr.svg",
    }


def bench_stream():
    up = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi")
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    return {
        "upgrade": b"\x00\x07" + up,
        "upgrade-refused": b"\x00\xff" + b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        "publishes": b"\x01\x10" + ok + ok + b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        "frames": b"\x02\x03" + b"\x81\x05hello" + b"\x01\x03hel\x89\x00\x80\x02lo" + b"\x82\x7e\x00\x80" +
                  b"x" * 128 + b"\x88\x02\x03\xe8",
        "nats": b"\x03\x05" + b'INFO {"server_id":"x","max_payload":1048576}\r\nMSG room.1 1 5\r\nhello\r\n'
                                b"PING\r\nPONG\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n",
    }


def stompframe():
    return {
        "connect": b"CONNECT\naccept-version:1.2\nhost:magpie\npasscode:" + jwt(claims("websocket")).encode()
        + b"\nheart-beat:10000,10000\n\n\0",
        "stomp-bearer": b"STOMP\naccept-version:1.1,1.2\nAuthorization:Bearer x.y.z\nclient-id:phone\n\n\0",
        "send": b"SEND\ndestination:/user/42\nreceipt:r-1\ncontent-type:text/plain\n\nhello\0\n",
        "send-length": b"SEND\r\ndestination:/group/7\r\ncontent-length:5\r\n\r\nhe\0lo\0",
        "subscribe": b"SUBSCRIBE\nid:sub-0\ndestination:/user/queue/messages\nack:client\n\n\0",
        "ack-escaped": b"ACK\nid:17\nreceipt:a\\cb\\\\c\\n\n\n\0",
        "nack": b"NACK\nid:n3\n\n\0",
        "unsubscribe": b"UNSUBSCRIBE\nid:sub-0\n\n\0",
        "begin": b"BEGIN\ntransaction:tx\n\n\0",
        "disconnect": b"DISCONNECT\nreceipt:77\n\n\0\n\n",
        "heartbeat": b"\n\r\n\n",
        "no-nul": b"SEND\ndestination:/user/1\n\nno nul",
        "bad-escape": b"SEND\ndestination:/us\\ter/1\n\nx\0",
    }


def mqttpkt():
    def s(x):
        b = x.encode() if isinstance(x, str) else x
        return struct.pack(">H", len(b)) + b

    def pkt(t, flags, body):
        rl, enc = len(body), b""
        while True:
            d, rl = rl & 0x7F, rl >> 7
            enc += bytes([d | (0x80 if rl else 0)])
            if not rl:
                return bytes([t << 4 | flags]) + enc + body

    connect = pkt(1, 0, s("MQTT") + bytes([4, 0xC2]) + struct.pack(">H", 30) + s("") + s("magpie")
                  + s(jwt(claims("websocket"))))
    return {
        "connect": connect,
        "connect-will": pkt(1, 0, s("MQTT") + bytes([4, 0x2E]) + struct.pack(">H", 60) + s("phone") + s("w/t")
                            + s(b"bye")),
        "publish-qos1": pkt(3, 2, s("user/42") + struct.pack(">H", 7) + b"hello"),
        "publish-qos0": pkt(3, 0, s("group/7") + b"hi"),
        "publish-long": pkt(3, 2, s("user/42") + struct.pack(">H", 8) + b"x" * 300),
        "subscribe": pkt(8, 2, struct.pack(">H", 3) + s("me/inbox") + b"\x01" + s("#") + b"\x00"),
        "unsubscribe": pkt(10, 2, struct.pack(">H", 4) + s("me/inbox")),
        "acks": pkt(4, 0, b"\x00\x01") + pkt(6, 2, b"\x00\x02") + pkt(5, 0, b"\x00\x03"),
        "ping-disconnect": pkt(12, 0, b"") + pkt(14, 0, b""),
        "stream": connect + pkt(8, 2, struct.pack(">H", 1) + s("me/inbox") + b"\x01") + pkt(12, 0, b""),
        "bad-length": b"\x30\xff\xff\xff\xff\x01",
    }


def rcluster():
    # byte 0 even: RESP replies (recorded from Redis 7.0.15's cluster, and a few broken ones);
    # odd: a command, its arguments separated by newlines
    node = lambda port: f"*4\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{'a' * 40}\r\n*0\r\n"
    slots = (f"*3\r\n*4\r\n:0\r\n:5460\r\n{node(7000)}{node(7004)}*4\r\n:5461\r\n:10922\r\n"
             f"{node(7001)}{node(7005)}*4\r\n:10923\r\n:16383\r\n{node(7002)}{node(7003)}")
    return {
        "slots": "\0" + slots,
        "slots-null-host": "\0*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$-1\r\n:7000\r\n",
        "moved": "\0-MOVED 3999 127.0.0.1:7001\r\n",
        "ask": "\0-ASK 3999 127.0.0.1:7001\r\n",
        "moved-no-host": "\0-MOVED 3999 :7001\r\n",
        "moved-bad": "\0-MOVED 99999 127.0.0.1:0\r\n",
        "down": "\0-CLUSTERDOWN The cluster is down\r\n-TRYAGAIN Multiple keys request\r\n",
        "cmd-get": "\1GET\n{u:1}:a",
        "cmd-evalsha": "\1EVALSHA\nabc\n2\n{u:1}:a\n{u:1}:b\nx",
        "cmd-xreadgroup": "\1XREADGROUP\nGROUP\ng\nc\nCOUNT\n10\nSTREAMS\n{s}1\n{s}2\n>\n>",
        "cmd-cross": "\1MGET\na\nb",
    }


def main():
    write("chatpkt", chatpkt())
    write("roompkt", roompkt())
    write("bus", bus())
    write("persist_entry", persist_entry())
    write("jwt", jwt_seeds())
    write("config", config())
    write("http", http())
    write("qr_token", qr_token())
    write("bench_stream", bench_stream())
    write("stompframe", stompframe())
    write("mqttpkt", mqttpkt())
    write("rcluster", rcluster())


if __name__ == "__main__":
    main()
