import asyncio, time
from push_client import Chat, new_uid, run

def make_group(stack, gid, uids):
    r = stack.redis()
    r.hset(f"mp:grp:{gid}", mapping={"name": "g", "owner": uids[0], "created": int(time.time()*1000), "j": len(uids), "ver": 1})
    for i, u in enumerate(uids):
        r.hset(f"mp:grp:{gid}:m", u, f"{'o' if i == 0 else 'm'} {i+1} 0")

def test_smoke(stack):
    async def go():
        uids = [new_uid() for _ in range(4)]
        gid = new_uid()
        make_group(stack, gid, uids[:3])
        a = await Chat.connect(stack, uids[0], node=1)
        b = await Chat.connect(stack, uids[1], node=2)
        b2 = await Chat.connect(stack, uids[1], node=1)
        c = await Chat.connect(stack, uids[2], node=2)
        d = await Chat.connect(stack, uids[3], node=1)
        r = await a.request("g", "hello", to=gid)
        assert r["type"] == "A", r
        print(r)
        for x in (b, b2, c):
            p = await x.wait_for(lambda p: p.get("type") == "g")
            print(x.uid, p)
            assert p["mid"] == r["mid"] and p["to"] == gid and p["from"] == uids[0]
        r = await d.request("g", "hello", to=gid)
        assert r["type"] == "E" and r["msg"] == "not a member", r
        y = await b.request("Y", {"after": 0})
        print(y)
        assert [m["mid"] for m in y["msg"]["messages"]] == [r2 for r2 in [p["mid"]]]
        rr = await b.request("R", {"group": gid, "mid": p["mid"]})
        assert rr["type"] == "A", rr
        rp = await b2.wait_for(lambda p: p.get("type") == "r")
        print(rp)
        rr = await d.request("R", {"group": gid, "mid": p["mid"]})
        assert rr["type"] == "E", rr
        print(rr)
    run(go())
