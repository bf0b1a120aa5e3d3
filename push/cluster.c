/* cluster.c -- see cluster.h (the slots of each script, the order of the split steps, the live-node view). */
#include "cluster.h"
#include "conn.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "stats.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The user's shard. KEYS: presence:<uid>, this node's KEY_NODE_USERS of the user's shard.
 * ARGV: node, uid, count here (with the new one), max per user, the live node ids (KEY_LUA_LIVE).
 * Returns the user's connections in the cluster with the new one, or -2 over the limit. */
static struct rdsa_script login_lua = {
    "login",
    LUA_SHEBANG KEY_LUA_LIVE "local total = tonumber(ARGV[3])\n"
                             "local h = redis.call('HGETALL', KEYS[1])\n"
                             "for j = 1, #h, 2 do\n"
                             "  local n = tonumber(h[j + 1])\n"
                             "  if h[j] ~= ARGV[1] and n and n > 0 and mp_live(ARGV[5], h[j]) then\n"
                             "    total = total + n\n"
                             "  end\n"
                             "end\n"
                             "if total > tonumber(ARGV[4]) then return -2 end\n"
                             "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
                             "redis.call('SADD', KEYS[2], ARGV[2])\n"
                             "return total\n",
    ""};

/* One shard. KEYS: this node's KEY_NODE_USERS of the shard. ARGV: node, redis.stream_shards, then uid,
 * count pairs of users of that shard (count 0 = none here). */
static struct rdsa_script presence_lua = {
    "presence",
    LUA_SHEBANG "local " KEY_LUA_SHARDS " = ARGV[2]\n" KEY_LUA_LIB "for i = 3, #ARGV, 2 do\n"
                "  if tonumber(ARGV[i + 1]) > 0 then\n"
                "    redis.call('HSET', mp_key('" KEY_PRESENCE_NAME "', ARGV[i]), ARGV[1], ARGV[i + 1])\n"
                "    redis.call('SADD', KEYS[1], ARGV[i])\n"
                "  else\n"
                "    redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', ARGV[i]), ARGV[1])\n"
                "    redis.call('SREM', KEYS[1], ARGV[i])\n"
                "  end\n"
                "end\n"
                "return 1\n",
    ""};

/* One shard. KEYS: a node's KEY_NODE_USERS of the shard, the shard's KEY_NODE_CLEARED. ARGV: node,
 * redis.stream_shards, then the clear's time (ms) for this node's own clear at a (re)connect -- which it
 * stamps in KEY_NODE_CLEARED -- or "" when the node leaves (its stamp goes too), then uids of the shard
 * whose entry of this node goes too (LEGACY_NODE_USERS below). Forget every presence entry of the node in
 * the shard. */
static struct rdsa_script clear_lua = {
    "clear",
    LUA_SHEBANG "local " KEY_LUA_SHARDS " = ARGV[2]\n" KEY_LUA_LIB
                "for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                "  redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', uid), ARGV[1])\n"
                "end\n"
                "for i = 4, #ARGV do\n"
                "  redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', ARGV[i]), ARGV[1])\n"
                "end\n"
                "redis.call('DEL', KEYS[1])\n"
                "if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[1])\n"
                "else redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end\n"
                "return 1\n",
    ""};

/* One shard, a survivor's prune of a dead node. KEYS: the dead node's KEY_NODE_USERS of the shard, the
 * shard's KEY_NODE_CLEARED. ARGV: the dead node, redis.stream_shards, the prune bound (ms). Returns 0 and
 * leaves everything when a run of that node id cleared this shard at or after the bound (it came back);
 * else 1 once its presence entries here are gone. */
static struct rdsa_script prune_shard_lua = {
    "prune_shard",
    LUA_SHEBANG "local " KEY_LUA_SHARDS " = ARGV[2]\n" KEY_LUA_LIB
                "local t = redis.call('HGET', KEYS[2], ARGV[1])\n"
                "if t and tonumber(t) >= tonumber(ARGV[3]) then return 0 end\n"
                "for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                "  redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', uid), ARGV[1])\n"
                "end\n"
                "redis.call('DEL', KEYS[1])\n"
                "redis.call('HDEL', KEYS[2], ARGV[1])\n"
                "return 1\n",
    ""};

/* The registry. KEYS: KEY_NODES, node hash. ARGV: node, now ms, ws_url, room_url, started ms, ttl s, prune
 * bound ms. Renews this node; returns the ids of the nodes whose last heartbeat is older than the bound
 * (dead for CLUSTER_PRUNE_TTLS node TTLs: the caller prunes them, shards first). */
static struct rdsa_script heartbeat_lua = {"heartbeat",
                                           LUA_SHEBANG
                                           "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
                                           "redis.call('HSET', KEYS[2], 'ws_url', ARGV[3], 'room_url', "
                                           "ARGV[4], 'started', ARGV[5])\n"
                                           "redis.call('EXPIRE', KEYS[2], ARGV[6])\n"
                                           "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. "
                                           "ARGV[7])\n",
                                           ""};

/* The registry, the last step of a prune. KEYS: KEY_NODES, the dead node's KEY_NODE_ROOMS. ARGV: the dead
 * node, the prune bound ms, room members key prefix and suffix. Only while the node's heartbeat is still
 * older than the bound (it did not come back): its room member entries and its registration go. */
static struct rdsa_script prune_lua = {
    "prune",
    LUA_SHEBANG "local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
                "if not beat or tonumber(beat) >= tonumber(ARGV[2]) then return 0 end\n"
                "for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
                "  redis.call('HDEL', ARGV[3] .. room .. ARGV[4], ARGV[1])\n"
                "end\n"
                "redis.call('DEL', KEYS[2])\n"
                "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                "return 1\n",
    ""};

/* The registry, the last step of this node's leave. KEYS: KEY_NODES, node hash, node rooms. ARGV: node,
 * room members key prefix and suffix. */
static struct rdsa_script leave_lua = {"leave",
                                       LUA_SHEBANG
                                       "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                       "redis.call('DEL', KEYS[2])\n"
                                       "for _, room in ipairs(redis.call('SMEMBERS', KEYS[3])) do\n"
                                       "  redis.call('HDEL', ARGV[2] .. room .. ARGV[3], ARGV[1])\n"
                                       "end\n"
                                       "redis.call('DEL', KEYS[3])\n"
                                       "return 1\n",
                                       ""};

#define PRUNES_MAX 16 /* prunes of dead nodes in flight at once; the next heartbeat starts the rest */

/* The set of a node's users under the names before the registry's slot (one set for every shard, in a slot
 * of its own). A run of this node id killed under that layout left its presence entries listed there; at
 * its first connect this node reads it and its clear of each shard removes those entries too, before any
 * presence of its own is written; then the set goes. (Its other keys of then -- "mp:nodes", "mp:node:<id>",
 * the room counts "mp:room:<room>:members" -- are read by nobody now; the node hash expires.) */
#define LEGACY_NODE_USERS "mp:node:%d:users"
#define LEGACY_BATCH      500 /* legacy uids per clear script */

static struct {
    uv_timer_t heartbeat;
    uv_timer_t view;
    char node[16];
    char node_key[64];        /* KEY_NODE */
    char node_rooms[64];      /* KEY_NODE_ROOMS */
    char shards[16];          /* redis.stream_shards: the scripts build presence keys (keys.h) */
    char members_prefix[64];  /* KEY_ROOM_MEMBERS around the room id */
    char members_suffix[64];
    char started[24];
    int leaving;       /* deregistered: no more presence writes or heartbeats */
    int timer_started; /* the timers exist */
    atomic_int ready;
    /* The live-node view (cluster_live_nodes). */
    char live[KEY_LIVE_MAX];
    char live_next[KEY_LIVE_MAX];
    atomic_llong live_ms; /* when the view in live was read; 0 = never */
    int64_t view_sent_ms; /* when the read in flight was sent */
    int view_inflight;
    int prunes;      /* prune chains in flight */
    int legacy_done; /* LEGACY_NODE_USERS was read and cleared (this process) */
} C;

/* Split a key formatted with id 0 ("mp:{nodes}:room:0:members") around the id. */
static void key_split(const char *formatted, char *prefix, char *suffix, size_t len)
{
    const char *zero = strrchr(formatted, '0');
    size_t n = zero ? (size_t)(zero - formatted) : strlen(formatted);
    if (prefix != NULL)
        snprintf(prefix, len, "%.*s", (int)n, formatted);
    if (suffix != NULL)
        snprintf(suffix, len, "%s", zero ? zero + 1 : "");
}

static void users_key(char *buf, size_t len, int shard, int node)
{
    snprintf(buf, len, KEY_NODE_USERS, shard, node);
}

static void cleared_key(char *buf, size_t len, int shard)
{
    snprintf(buf, len, KEY_NODE_CLEARED, shard);
}

/* ---- the live-node view ---- */

int64_t cluster_oldest_live_ms(void)
{
    return mp_now_ms() - push.cfg->push.node_ttl_s * 1000;
}

const char *cluster_live_nodes(void)
{
    long long at = atomic_load(&C.live_ms);
    if (at == 0 || mp_now_ms() - at > push.cfg->push.node_ttl_s * 1000)
        return NULL;
    return C.live;
}

static void on_view_reply(redisReply *r, void *arg)
{
    C.view_inflight = 0;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("live-node read failed node=%d reason=\"%s\"", push.node, r->str);
        return;
    }
    if (keys_live_list(r, C.live_next, sizeof(C.live_next)) != MP_OK) {
        log_error(
            "live-node read: %s holds what is not a node id, or more ids than a script takes (%d bytes)",
            KEY_NODES, KEY_LIVE_MAX);
        return;
    }
    memcpy(C.live, C.live_next, strlen(C.live_next) + 1);
    atomic_store(&C.live_ms, C.view_sent_ms);
}

static void view_refresh(void)
{
    int64_t now = mp_now_ms();
    if (C.view_inflight || C.leaving)
        return;
    if (rdsa_cmd(on_view_reply, NULL, "ZRANGEBYSCORE %s %lld +inf", KEY_NODES,
                 (long long)(now - push.cfg->push.node_ttl_s * 1000)) == MP_OK) {
        C.view_inflight = 1;
        C.view_sent_ms = now;
    }
}

static void on_view_timer(uv_timer_t *t)
{
    view_refresh();
}

/* ---- the prune of dead nodes: every shard, then the registry ---- */

struct prune {
    int node;
    int left; /* shard answers still to come, + 1 while they are being sent */
    int ok;   /* every shard answered 1 */
    char node_s[16];
    char bound[24];
};

static void on_prune_reply(redisReply *r, void *arg)
{
    struct prune *p = arg;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
        log_info("pruned dead node=%d (no heartbeat for %d node TTLs) by node=%d", p->node,
                 CLUSTER_PRUNE_TTLS, push.node);
    else if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("prune of dead node=%d failed reason=\"%s\" (the next heartbeat tries again)", p->node,
                 r ? r->str : "redis unavailable");
    C.prunes--;
    free(p);
}

static void prune_shard_done(struct prune *p)
{
    char rooms[64];
    const char *argv[6];

    if (--p->left > 0)
        return;
    if (!p->ok) {
        C.prunes--;
        free(p);
        return;
    }
    snprintf(rooms, sizeof(rooms), KEY_NODE_ROOMS, p->node);
    argv[0] = KEY_NODES;
    argv[1] = rooms;
    argv[2] = p->node_s;
    argv[3] = p->bound;
    argv[4] = C.members_prefix;
    argv[5] = C.members_suffix;
    if (rdsa_eval(&prune_lua, on_prune_reply, p, 2, 6, argv, NULL) != MP_OK) {
        C.prunes--;
        free(p);
    }
}

static void on_prune_shard_reply(redisReply *r, void *arg)
{
    struct prune *p = arg;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("prune of dead node=%d failed reason=\"%s\" (the next heartbeat tries again)", p->node,
                     r->str);
        p->ok = 0; /* 0: that node id came back and cleared the shard itself; its registration stays */
    }
    prune_shard_done(p);
}

static void prune_start(int node, const char *bound)
{
    struct prune *p;

    if (node == push.node || C.prunes >= PRUNES_MAX || (p = calloc(1, sizeof(*p))) == NULL)
        return;
    C.prunes++;
    p->node = node;
    p->ok = 1;
    p->left = 1;
    snprintf(p->node_s, sizeof(p->node_s), "%d", node);
    snprintf(p->bound, sizeof(p->bound), "%s", bound);
    for (int s = 0; s < key_shards(); s++) {
        char users[64], cleared[64];
        const char *argv[5] = {users, cleared, p->node_s, C.shards, p->bound};
        users_key(users, sizeof(users), s, node);
        cleared_key(cleared, sizeof(cleared), s);
        p->left++;
        if (rdsa_eval(&prune_shard_lua, on_prune_shard_reply, p, 2, 5, argv, NULL) != MP_OK) {
            p->left--;
            p->ok = 0;
        }
    }
    prune_shard_done(p); /* the hold of the loop */
}

/* ---- heartbeat ---- */

static void on_heartbeat_reply(redisReply *r, void *arg)
{
    char *bound = arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("heartbeat failed node=%d reason=\"%s\"", push.node, r ? r->str : "redis unavailable");
    else if (r->type == REDIS_REPLY_ARRAY && !C.leaving)
        for (size_t i = 0; i < r->elements; i++) {
            char *end;
            long v;
            if (r->element[i]->type != REDIS_REPLY_STRING)
                continue;
            v = strtol(r->element[i]->str, &end, 10);
            if (*end == '\0' && end != r->element[i]->str && v >= 0 && v <= 1000000)
                prune_start((int)v, bound);
        }
    free(bound);
}

static void heartbeat(void)
{
    char now[24], ttl[24], *prune;
    const char *argv[9];
    int64_t t = mp_now_ms();

    if (C.leaving || (prune = malloc(24)) == NULL)
        return;
    snprintf(now, sizeof(now), "%lld", (long long)t);
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->push.node_ttl_s);
    snprintf(prune, 24, "%lld", (long long)(t - CLUSTER_PRUNE_TTLS * push.cfg->push.node_ttl_s * 1000));
    argv[0] = KEY_NODES;
    argv[1] = C.node_key;
    argv[2] = C.node;
    argv[3] = now;
    argv[4] = push.cfg->push.advertise_url;
    argv[5] = push.cfg->push.advertise_room_url;
    argv[6] = C.started;
    argv[7] = ttl;
    argv[8] = prune;
    if (rdsa_eval(&heartbeat_lua, on_heartbeat_reply, prune, 2, 9, argv, NULL) != MP_OK)
        free(prune);
}

static void on_heartbeat_timer(uv_timer_t *t)
{
    heartbeat();
}

/* ---- presence ---- */

/* A write lost with the connection is repaired by the resync after the reconnect. */
static void on_presence_reply(redisReply *r, void *arg)
{
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("presence write failed node=%d reason=\"%s\"", push.node, r->str);
}

/* Presence writes for a batch of users of one shard: argv[0..2] are set by batch_init, pairs follow. */
struct batch {
    const char *argv[3 + 2 * CLUSTER_RESYNC_BATCH];
    char nums[2 * CLUSTER_RESYNC_BATCH][24];
    char users[64];
    int shard;
    int n;
};

static void batch_flush(struct batch *b)
{
    if (b->n == 0)
        return;
    rdsa_eval(&presence_lua, on_presence_reply, NULL, 1, 3 + 2 * b->n, b->argv, NULL);
    b->n = 0;
}

static void batch_add(int64_t uid, int count, void *arg)
{
    struct batch *b = arg;
    if (key_shard(uid) != b->shard)
        return;
    snprintf(b->nums[2 * b->n], 24, "%lld", (long long)uid);
    snprintf(b->nums[2 * b->n + 1], 24, "%d", count);
    b->argv[3 + 2 * b->n] = b->nums[2 * b->n];
    b->argv[4 + 2 * b->n] = b->nums[2 * b->n + 1];
    if (++b->n == CLUSTER_RESYNC_BATCH)
        batch_flush(b);
}

static void batch_init(struct batch *b, int shard)
{
    users_key(b->users, sizeof(b->users), shard, push.node);
    b->argv[0] = b->users;
    b->argv[1] = C.node;
    b->argv[2] = C.shards;
    b->shard = shard;
    b->n = 0;
}

void cluster_presence(int64_t uid, int count)
{
    char users[64], uid_s[24], count_s[24];
    const char *argv[5] = {users, C.node, C.shards, uid_s, count_s};

    if (C.leaving || push.stopping)
        return;
    users_key(users, sizeof(users), key_shard(uid), push.node);
    snprintf(uid_s, sizeof(uid_s), "%lld", (long long)uid);
    snprintf(count_s, sizeof(count_s), "%d", count);
    /* when Redis is down this is not sent: the resync after it returns writes it */
    rdsa_eval(&presence_lua, on_presence_reply, NULL, 1, 5, argv, NULL);
}

/* The clear of shard s (ARGV[3] = now ms, or "" for a leave), with the uids of legacy (a SMEMBERS reply of
 * LEGACY_NODE_USERS, or NULL) in that shard, LEGACY_BATCH a script. */
static void clear_shard(int s, const char *now, const redisReply *legacy, rdsa_reply_fn fn, void *arg,
                        int *sent)
{
    char users[64], cleared[64];
    const char *argv[5 + LEGACY_BATCH] = {users, cleared, C.node, C.shards, now};
    size_t i = 0, n = legacy != NULL && legacy->type == REDIS_REPLY_ARRAY ? legacy->elements : 0;
    users_key(users, sizeof(users), s, push.node);
    cleared_key(cleared, sizeof(cleared), s);
    do {
        int k = 0;
        for (; i < n && k < LEGACY_BATCH; i++) {
            const redisReply *e = legacy->element[i];
            if (e->type == REDIS_REPLY_STRING && strspn(e->str, "0123456789") == e->len && e->len > 0 &&
                e->len < 19 && key_shard(strtoll(e->str, NULL, 10)) == s)
                argv[5 + k++] = e->str;
        }
        if (rdsa_eval(&clear_lua, fn, arg, 2, 5 + k, argv, NULL) == MP_OK && sent != NULL)
            (*sent)++;
    } while (i < n);
}

/* Rewrite this node's presence from what it holds: in every shard, clear everything (stamping the
 * clear's time: cluster.h, the prune; and the entries listed under the legacy name, when given), then
 * write every user of the shard. */
static void resync(const redisReply *legacy)
{
    char now[24];
    struct batch *b = malloc(sizeof(*b));
    if (b == NULL) {
        log_error("presence resync skipped: out of memory node=%d", push.node);
        return;
    }
    snprintf(now, sizeof(now), "%lld", (long long)mp_now_ms());
    for (int s = 0; s < key_shards(); s++) {
        clear_shard(s, now, legacy, on_presence_reply, NULL, NULL);
        batch_init(b, s);
        conn_each_user(batch_add, b);
        batch_flush(b);
    }
    free(b);
}

static void on_legacy_users(redisReply *r, void *arg)
{
    if (r == NULL || C.leaving)
        return; /* the connection dropped: the next one does it all again */
    if (r->type != REDIS_REPLY_ARRAY) {
        log_warn("presence resync: reading the old users set failed node=%d reason=\"%s\"", push.node,
                 r->type == REDIS_REPLY_ERROR ? r->str : "not a set");
        resync(NULL);
        return;
    }
    resync(r);
    if (r->elements > 0) {
        log_info("presence: cleared what this node id left under the old layout node=%d users=%zu", push.node,
                 r->elements);
        rdsa_cmd(NULL, NULL, "DEL " LEGACY_NODE_USERS, push.node);
    }
    C.legacy_done = 1;
}

static void on_redis_state(int ready, void *arg)
{
    atomic_store(&C.ready, ready);
    stats_redis_up(ready);
    if (!ready) {
        C.view_inflight = 0; /* its callback got NULL */
        return;
    }
    if (C.leaving)
        return;
    heartbeat();
    view_refresh();
    /* The first time: the resync waits for the old users set (on_legacy_users), so its clear removes those
     * entries before this node writes any presence of its own. */
    if (C.legacy_done || rdsa_cmd(on_legacy_users, NULL, "SMEMBERS " LEGACY_NODE_USERS, push.node) != MP_OK)
        resync(NULL);
    log_info("registered node=%d ws_url=%s", push.node, push.cfg->push.advertise_url);
}

/* ---- login ---- */

enum login_check { LOGIN_PLAIN, LOGIN_CLAIM, LOGIN_SESSION };

struct login {
    void (*fn)(int result, void *arg);
    void *arg;
    int64_t uid;
    enum login_check check;
};

static void on_login_reply(redisReply *r, void *arg)
{
    struct login *l = arg;
    int result;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        result = CONN_LOGIN_UNAVAILABLE;
    else if (r->integer == -2)
        result = CONN_LOGIN_TOO_MANY;
    else
        result = CONN_LOGIN_OK;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("login script failed reason=\"%s\"", r->str);
    l->fn(result, l->arg);
    free(l);
}

/* The login script, with this node's count of the user's connections as it is now. */
static int login_script(struct login *l)
{
    char presence[64], users[64], uids[24], counts[24], max[24];
    const char *argv[7], *live = cluster_live_nodes();

    if (live == NULL || C.leaving || push.stopping)
        return MP_EAGAIN;
    key_tagged(presence, sizeof(presence), KEY_PRESENCE, l->uid);
    users_key(users, sizeof(users), key_shard(l->uid), push.node);
    snprintf(uids, sizeof(uids), "%lld", (long long)l->uid);
    snprintf(counts, sizeof(counts), "%d", conn_user_count(l->uid));
    snprintf(max, sizeof(max), "%lld", push.cfg->push.max_conns_per_user);
    argv[0] = presence;
    argv[1] = users;
    argv[2] = C.node;
    argv[3] = uids;
    argv[4] = counts;
    argv[5] = max;
    argv[6] = live;
    return rdsa_eval(&login_lua, on_login_reply, l, 2, 7, argv, NULL);
}

/* The answer to the ticket claim (SET NX) or the revocation check (EXISTS). */
static void on_login_check(redisReply *r, void *arg)
{
    struct login *l = arg;
    int result = CONN_LOGIN_UNAVAILABLE;

    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("login %s failed reason=\"%s\"",
                 l->check == LOGIN_CLAIM ? "ticket claim" : "revocation check", r->str);
    else if (r != NULL && l->check == LOGIN_CLAIM && r->type == REDIS_REPLY_NIL)
        result = CONN_LOGIN_USED;
    else if (r != NULL && l->check == LOGIN_SESSION && r->type == REDIS_REPLY_INTEGER && r->integer != 0)
        result = CONN_LOGIN_REVOKED;
    else if (r != NULL &&
             (l->check == LOGIN_CLAIM ? r->type == REDIS_REPLY_STATUS : r->type == REDIS_REPLY_INTEGER) &&
             login_script(l) == MP_OK)
        return;
    l->fn(result, l->arg);
    free(l);
}

int cluster_login(int64_t uid, const char *claim_jti, const char *revoked_jti,
                  void (*fn)(int result, void *arg), void *arg)
{
    char key[80];
    struct login *l;
    int rc;

    if (C.leaving || push.stopping || cluster_live_nodes() == NULL)
        return MP_EAGAIN;
    if ((l = malloc(sizeof(*l))) == NULL)
        return MP_EAGAIN;
    l->fn = fn;
    l->arg = arg;
    l->uid = uid;
    l->check = claim_jti != NULL ? LOGIN_CLAIM : revoked_jti != NULL ? LOGIN_SESSION : LOGIN_PLAIN;
    if (l->check == LOGIN_CLAIM) {
        snprintf(key, sizeof(key), KEY_WS_TICKET_USED, claim_jti);
        rc = rdsa_cmd(on_login_check, l, "SET %s 1 NX EX %lld", key,
                      push.cfg->auth.ws_ticket_ttl_s + AUTH_CLOCK_SKEW_S);
    } else if (l->check == LOGIN_SESSION) {
        snprintf(key, sizeof(key), KEY_REVOKED, revoked_jti);
        rc = rdsa_cmd(on_login_check, l, "EXISTS %s", key);
    } else {
        rc = login_script(l);
    }
    if (rc != MP_OK) {
        free(l);
        return MP_EAGAIN;
    }
    return MP_OK;
}

/* ---- leave: every shard, then the registry ---- */

struct leave {
    void (*done)(void *arg);
    void *arg;
    int left; /* shard answers still to come, + 1 while they are being sent */
    int ok;
};

static void on_leave_reply(redisReply *r, void *arg)
{
    struct leave *l = arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("deregistration failed node=%d reason=\"%s\" (the node drops out after push.node_ttl_s)",
                 push.node, r ? r->str : "redis unavailable");
    else
        log_info("deregistered node=%d", push.node);
    l->done(l->arg);
    free(l);
}

static void leave_shard_done(struct leave *l)
{
    const char *argv[6] = {KEY_NODES, C.node_key, C.node_rooms, C.node, C.members_prefix, C.members_suffix};
    if (--l->left > 0)
        return;
    if (!l->ok || rdsa_eval(&leave_lua, on_leave_reply, l, 3, 6, argv, NULL) != MP_OK)
        on_leave_reply(NULL, l);
}

static void on_leave_shard_reply(redisReply *r, void *arg)
{
    struct leave *l = arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        l->ok = 0;
    leave_shard_done(l);
}

void cluster_leave(void (*done)(void *arg), void *arg)
{
    struct leave *l = calloc(1, sizeof(*l));
    C.leaving = 1;
    if (C.timer_started) {
        uv_timer_stop(&C.heartbeat);
        uv_timer_stop(&C.view);
    }
    if (l == NULL) {
        done(arg);
        return;
    }
    l->done = done;
    l->arg = arg;
    l->ok = 1;
    l->left = 1;
    for (int s = 0; s < key_shards() && l->ok; s++) {
        char users[64], cleared[64];
        const char *argv[5] = {users, cleared, C.node, C.shards, ""};
        users_key(users, sizeof(users), s, push.node);
        cleared_key(cleared, sizeof(cleared), s);
        l->left++;
        if (rdsa_eval(&clear_lua, on_leave_shard_reply, l, 2, 5, argv, NULL) != MP_OK) {
            l->left--;
            l->ok = 0;
        }
    }
    leave_shard_done(l);
}

int cluster_health(char *why, size_t len, void *arg)
{
    if (!atomic_load(&C.ready)) {
        snprintf(why, len, "redis unavailable");
        return 1;
    }
    if (atomic_load(&C.live_ms) == 0) {
        snprintf(why, len, "no live-node view yet");
        return 1;
    }
    return 0;
}

int cluster_start(void)
{
    char buf[64];

    snprintf(C.node, sizeof(C.node), "%d", push.node);
    snprintf(C.node_key, sizeof(C.node_key), KEY_NODE, push.node);
    snprintf(C.shards, sizeof(C.shards), "%d", key_shards());
    snprintf(C.node_rooms, sizeof(C.node_rooms), KEY_NODE_ROOMS, push.node);
    snprintf(buf, sizeof(buf), KEY_ROOM_MEMBERS, "0");
    key_split(buf, C.members_prefix, C.members_suffix, sizeof(C.members_prefix));
    snprintf(C.started, sizeof(C.started), "%lld", (long long)mp_now_ms());
    rdsa_script(&login_lua);
    rdsa_script(&presence_lua);
    rdsa_script(&clear_lua);
    rdsa_script(&prune_shard_lua);
    rdsa_script(&heartbeat_lua);
    rdsa_script(&prune_lua);
    rdsa_script(&leave_lua);
    rdsa_on_state(on_redis_state, NULL);
    uv_timer_init(push.loop, &C.heartbeat);
    uv_timer_init(push.loop, &C.view);
    C.timer_started = 1;
    uv_timer_start(&C.heartbeat, on_heartbeat_timer, (uint64_t)push.cfg->push.heartbeat_s * 1000,
                   (uint64_t)push.cfg->push.heartbeat_s * 1000);
    uv_timer_start(&C.view, on_view_timer, CLUSTER_VIEW_MS, CLUSTER_VIEW_MS);
    return MP_OK;
}

void cluster_stop(void)
{
    if (!C.timer_started)
        return;
    C.timer_started = 0;
    uv_timer_stop(&C.heartbeat);
    uv_timer_stop(&C.view);
    uv_close((uv_handle_t *)&C.heartbeat, NULL);
    uv_close((uv_handle_t *)&C.view, NULL);
}
