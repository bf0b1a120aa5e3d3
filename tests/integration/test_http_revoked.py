"""Each magpie-http's copy of the revoked login tokens (http/revoked.h, issue 19): a token logged out through
one magpie-http is refused by another without either asking Redis per request; the copy is read whole at
start (and once from the old per-token keys after an upgrade); when its subscription is lost, silent or the
copy is full, requests ask Redis, so a revoked token is never served because the copy did not know."""
import os
import signal
import time

import pytest

from http_client import Client, ExtraHttp, test_token, unique_uid
from magpie_stack import metrics


def ready(h):
    return metrics(h.port).get("magpie_http_revoked_copy_ready") == 1


def checks(h, source):
    return metrics(h.port).get(f'magpie_http_revocation_checks_total{{source="{source}"}}', 0)


def wait_for(cond, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def im_token(url, token):
    return Client(url).post("/IM/token", token=token)


def refused(r):
    return r.status == 401 and "revoked" in r.json.get("message", "")


@pytest.fixture
def other(stack):
    """A second magpie-http on the same Redis, as a site with two of them behind nginx has."""
    h = ExtraHttp(stack, "http-revoked").start()
    wait_for(lambda: ready(h), "the second magpie-http's copy")
    yield h
    h.stop()


def test_a_logout_through_one_is_refused_by_the_other_from_its_copy(stack, other):
    a = Client(stack.http_url)
    token = test_token(a, unique_uid())
    r = im_token(other.url, token)
    assert r.status == 200 and r.code == 0 and r.result["wstoken"], r
    before = checks(other, "copy")
    redis_before = checks(other, "redis")
    assert a.post("/logout", token=token).code == 0
    t0 = time.time()
    # Redis delivers the logout to the other process's subscription well under a millisecond later on
    # loopback; a loaded test machine may take longer, so the bound here is generous.
    wait_for(lambda: refused(im_token(other.url, token)), "the other magpie-http to refuse the token", 2)
    print("refused by the other magpie-http %.1f ms after the logout answered" % ((time.time() - t0) * 1000))
    assert checks(other, "copy") > before
    assert checks(other, "redis") == redis_before, "the copy was ready: no request should have asked Redis"
    # the process that served the logout refused it at once (it adds the token before answering)
    assert refused(im_token(stack.http_url, token))


def test_tokens_revoked_before_a_start_are_in_the_copy(stack):
    a = Client(stack.http_url)
    token = test_token(a, unique_uid())
    assert a.post("/logout", token=token).code == 0
    with ExtraHttp(stack, "http-revoked-start") as h:
        wait_for(lambda: ready(h), "the copy")
        before = checks(h, "redis")
        assert refused(im_token(h.url, token))
        assert checks(h, "redis") == before
        assert metrics(h.port)["magpie_http_revoked_tokens"] >= 1


def test_an_upgrade_indexes_the_old_per_token_keys_once(stack):
    """A Redis written by a magpie-http without the index: revoked tokens exist only as mp:revoked:<jti>."""
    import jwt
    a = Client(stack.http_url)
    token = test_token(a, unique_uid())
    jti = jwt.decode(token, stack.secret, algorithms=["HS256"])["jti"]
    r = stack.redis()
    r.delete("mp:revocations:complete")
    r.set(f"mp:revoked:{jti}", "1", ex=3600)  # what /logout wrote before, with no index and no publish
    with ExtraHttp(stack, "http-revoked-upgrade") as h:
        wait_for(lambda: ready(h), "the copy")
        assert refused(im_token(h.url, token))
        assert r.zscore("mp:revocations", jti) is not None
        assert r.get("mp:revocations:complete") == "1"


def test_a_lost_subscription_falls_back_to_redis_and_reads_the_index_again(stack, other):
    a = Client(stack.http_url)
    token = test_token(a, unique_uid())
    assert im_token(other.url, token).code == 0
    import jwt
    claims = jwt.decode(token, stack.secret, algorithms=["HS256"])
    r = stack.redis()
    # A logout whose PUBLISH the copy never hears (as if it had happened while the subscription was down):
    r.set(f"mp:revoked:{claims['jti']}", "1", ex=3600)
    r.zadd("mp:revocations", {claims["jti"]: claims["exp"]})
    assert im_token(other.url, token).code == 0  # the copy cannot know yet: this is the window we close
    r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # every subscription drops (push nodes reconnect)
    # from the moment the subscription is gone the token is refused: from Redis, then from the new copy
    wait_for(lambda: refused(im_token(other.url, token)), "the token to be refused", 5)
    wait_for(lambda: ready(other), "the copy to be read again")
    before = checks(other, "redis")
    assert refused(im_token(other.url, token))
    assert checks(other, "redis") == before


def test_a_silent_redis_makes_the_copy_unused_until_it_answers(stack, other):
    if stack.cluster:
        pytest.skip("freezes the one Redis (redis/redis.pid); on a cluster test_cluster_http kills the master "
                    "holding the subscription instead")
    pid = int(open(os.path.join(stack.run, "redis", "redis.pid")).read())
    os.kill(pid, signal.SIGSTOP)
    try:
        # http.revoked_silence_ms (3 s by default) without an answer to its PINGs
        wait_for(lambda: not ready(other), "the copy to be dropped", 8)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: ready(other), "the copy to come back", 15)
    token = test_token(Client(stack.http_url), unique_uid())
    assert im_token(other.url, token).code == 0


def test_a_full_copy_is_not_used(stack):
    a = Client(stack.http_url)
    tokens = [test_token(a, unique_uid()) for _ in range(3)]
    with ExtraHttp(stack, "http-revoked-full", {"MAGPIE_HTTP_REVOKED_CACHE_MAX": "2"}) as h:
        wait_for(lambda: metrics(h.port).get("magpie_http_revoked_copy_ready") is not None, "metrics")
        for t in tokens:
            assert a.post("/logout", token=t).code == 0
        wait_for(lambda: not ready(h), "the copy to be given up")
        before = checks(h, "redis")
        for t in tokens:
            assert refused(im_token(h.url, t))
        assert checks(h, "redis") == before + 3
        assert "revoked-token copy is full" in h.log_text()
