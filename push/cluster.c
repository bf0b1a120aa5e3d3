/* cluster.c -- see cluster.h. */
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

/* KEYS: presence:<uid>, node users, KEY_NODES[, wsused:<jti> | revoked:<jti>]
 * ARGV: node, uid, count here (with the new one), max per user, oldest live heartbeat ms, claim TTL s,
 * "claim" (KEYS[4] is a ticket to claim) or "session" (KEYS[4] is a login token that must not be revoked)
 * Returns the user's connections in the cluster with the new one, -1 ticket used, -2 over the limit,
 * -3 login token revoked. */
static struct rdsa_script login_lua = {"login",
                                       "if #KEYS == 4 then\n"
                                       "  if ARGV[7] == 'claim' then\n"
                                       "    if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[6]) then "
                                       "return -1 end\n"
                                       "  elseif redis.call('EXISTS', KEYS[4]) == 1 then return -3 end\n"
                                       "end\n"
                                       "local total = tonumber(ARGV[3])\n"
                                       "local h = redis.call('HGETALL', KEYS[1])\n"
                                       "for j = 1, #h, 2 do\n"
                                       "  local n = tonumber(h[j + 1])\n"
                                       "  if h[j] ~= ARGV[1] and n and n > 0 then\n"
                                       "    local beat = redis.call('ZSCORE', KEYS[3], h[j])\n"
                                       "    if beat and tonumber(beat) >= tonumber(ARGV[5]) then\n"
                                       "      total = total + n\n"
                                       "    end\n"
                                       "  end\n"
                                       "end\n"
                                       "if total > tonumber(ARGV[4]) then return -2 end\n"
                                       "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
                                       "redis.call('SADD', KEYS[2], ARGV[2])\n"
                                       "return total\n",
                                       ""};

/* KEYS: node users. ARGV: node, redis.stream_shards, then uid, count pairs (count 0 = none here). The
 * users' presence keys are built here, in their shards (keys.h: the cluster needs one script per shard). */
static struct rdsa_script presence_lua = {
    "presence",
    "local " KEY_LUA_SHARDS " = ARGV[2]\n" KEY_LUA_LIB "for i = 3, #ARGV, 2 do\n"
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

/* KEYS: node users. ARGV: node, redis.stream_shards. Forget every presence entry of this node. */
static struct rdsa_script clear_lua = {"clear",
                                       "local " KEY_LUA_SHARDS " = ARGV[2]\n" KEY_LUA_LIB
                                       "for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                                       "  redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', uid), ARGV[1])\n"
                                       "end\n"
                                       "redis.call('DEL', KEYS[1])\n"
                                       "return 1\n",
                                       ""};

/* KEYS: KEY_NODES, node hash. ARGV: node, now ms, ws_url, room_url, started ms, ttl s, prune before ms,
 * node users key prefix and suffix, redis.stream_shards (for the presence keys), node rooms key suffix (its
 * prefix is the node users one), room members key prefix and suffix. Renews this node; removes nodes dead
 * since before "prune before" with their presence and room member entries. */
static struct rdsa_script heartbeat_lua = {
    "heartbeat",
    "local " KEY_LUA_SHARDS " = ARGV[10]\n" KEY_LUA_LIB "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
    "redis.call('HSET', KEYS[2], 'ws_url', ARGV[3], 'room_url', ARGV[4], 'started', ARGV[5])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[6])\n"
    "for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[7])) do\n"
    "  local users = ARGV[8] .. dead .. ARGV[9]\n"
    "  for _, uid in ipairs(redis.call('SMEMBERS', users)) do\n"
    "    redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', uid), dead)\n"
    "  end\n"
    "  redis.call('DEL', users)\n"
    "  local rooms = ARGV[8] .. dead .. ARGV[11]\n"
    "  for _, room in ipairs(redis.call('SMEMBERS', rooms)) do\n"
    "    redis.call('HDEL', ARGV[12] .. room .. ARGV[13], dead)\n"
    "  end\n"
    "  redis.call('DEL', rooms)\n"
    "  redis.call('ZREM', KEYS[1], dead)\n"
    "end\n"
    "return 1\n",
    ""};

/* KEYS: KEY_NODES, node hash, node users, node rooms. ARGV: node, redis.stream_shards (for the presence
 * keys), room members key prefix and suffix. */
static struct rdsa_script leave_lua = {"leave",
                                       "local " KEY_LUA_SHARDS " = ARGV[2]\n" KEY_LUA_LIB
                                       "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                       "redis.call('DEL', KEYS[2])\n"
                                       "for _, uid in ipairs(redis.call('SMEMBERS', KEYS[3])) do\n"
                                       "  redis.call('HDEL', mp_key('" KEY_PRESENCE_NAME "', uid), ARGV[1])\n"
                                       "end\n"
                                       "redis.call('DEL', KEYS[3])\n"
                                       "for _, room in ipairs(redis.call('SMEMBERS', KEYS[4])) do\n"
                                       "  redis.call('HDEL', ARGV[3] .. room .. ARGV[4], ARGV[1])\n"
                                       "end\n"
                                       "redis.call('DEL', KEYS[4])\n"
                                       "return 1\n",
                                       ""};

static struct {
    uv_timer_t heartbeat;
    char node[16];
    char node_key[64];     /* KEY_NODE */
    char node_users[64];   /* KEY_NODE_USERS */
    char users_prefix[64]; /* KEY_NODE_USERS around the id: "mp:node:", ":users" */
    char users_suffix[64];
    char shards[16];          /* redis.stream_shards: the scripts build presence keys (keys.h) */
    char node_rooms[64];      /* KEY_NODE_ROOMS */
    char rooms_suffix[64];    /* KEY_NODE_ROOMS after the id: ":rooms" (its prefix is users_prefix) */
    char members_prefix[64];  /* KEY_ROOM_MEMBERS around the room id: "mp:room:", ":members" */
    char members_suffix[64];
    char started[24];
    int leaving;       /* deregistered: no more presence writes or heartbeats */
    int timer_started; /* the heartbeat timer exists */
    atomic_int ready;
} C;

/* Split a key formatted with id 0 ("mp:node:0:users") around the id: prefix "mp:node:", suffix ":users".
 * Scripts that build keys for ids they find in Redis use the two halves. */
static void key_split(const char *formatted, char *prefix, char *suffix, size_t len)
{
    const char *zero = strchr(formatted, '0');
    size_t n = zero ? (size_t)(zero - formatted) : strlen(formatted);
    if (prefix != NULL)
        snprintf(prefix, len, "%.*s", (int)n, formatted);
    if (suffix != NULL)
        snprintf(suffix, len, "%s", zero ? zero + 1 : "");
}

int64_t cluster_oldest_live_ms(void)
{
    return mp_now_ms() - push.cfg->push.node_ttl_s * 1000;
}

static void on_heartbeat_reply(redisReply *r, void *arg)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("heartbeat failed node=%d reason=\"%s\"", push.node, r ? r->str : "redis unavailable");
}

static void heartbeat(void)
{
    char now[24], ttl[24], prune[24];
    const char *argv[15];
    int64_t t = mp_now_ms();

    if (C.leaving)
        return;
    snprintf(now, sizeof(now), "%lld", (long long)t);
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->push.node_ttl_s);
    snprintf(prune, sizeof(prune), "%lld",
             (long long)(t - CLUSTER_PRUNE_TTLS * push.cfg->push.node_ttl_s * 1000));
    argv[0] = KEY_NODES;
    argv[1] = C.node_key;
    argv[2] = C.node;
    argv[3] = now;
    argv[4] = push.cfg->push.advertise_url;
    argv[5] = push.cfg->push.advertise_room_url;
    argv[6] = C.started;
    argv[7] = ttl;
    argv[8] = prune;
    argv[9] = C.users_prefix;
    argv[10] = C.users_suffix;
    argv[11] = C.shards;
    argv[12] = C.rooms_suffix;
    argv[13] = C.members_prefix;
    argv[14] = C.members_suffix;
    rdsa_eval(&heartbeat_lua, on_heartbeat_reply, NULL, 2, 15, argv, NULL);
}

static void on_heartbeat_timer(uv_timer_t *t)
{
    heartbeat();
}

/* A write lost with the connection is repaired by the resync after the reconnect. */
static void on_presence_reply(redisReply *r, void *arg)
{
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("presence write failed node=%d reason=\"%s\"", push.node, r->str);
}

/* Presence writes for a batch of users: argv[0..3] are set by the caller, pairs follow. */
struct batch {
    const char *argv[4 + 2 * CLUSTER_RESYNC_BATCH];
    char nums[2 * CLUSTER_RESYNC_BATCH][24];
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
    snprintf(b->nums[2 * b->n], 24, "%lld", (long long)uid);
    snprintf(b->nums[2 * b->n + 1], 24, "%d", count);
    b->argv[3 + 2 * b->n] = b->nums[2 * b->n];
    b->argv[4 + 2 * b->n] = b->nums[2 * b->n + 1];
    if (++b->n == CLUSTER_RESYNC_BATCH)
        batch_flush(b);
}

static void batch_init(struct batch *b)
{
    b->argv[0] = C.node_users;
    b->argv[1] = C.node;
    b->argv[2] = C.shards;
    b->n = 0;
}

void cluster_presence(int64_t uid, int count)
{
    char uid_s[24], count_s[24];
    const char *argv[5] = {C.node_users, C.node, C.shards, uid_s, count_s};

    if (C.leaving || push.stopping)
        return;
    snprintf(uid_s, sizeof(uid_s), "%lld", (long long)uid);
    snprintf(count_s, sizeof(count_s), "%d", count);
    /* when Redis is down this is not sent: the resync after it returns writes it */
    rdsa_eval(&presence_lua, on_presence_reply, NULL, 1, 5, argv, NULL);
}

/* Rewrite this node's presence from what it holds: clear everything, then write every user. */
static void resync(void)
{
    const char *argv[3] = {C.node_users, C.node, C.shards};
    struct batch *b = malloc(sizeof(*b));
    if (b == NULL) {
        log_error("presence resync skipped: out of memory node=%d", push.node);
        return;
    }
    rdsa_eval(&clear_lua, on_presence_reply, NULL, 1, 3, argv, NULL);
    batch_init(b);
    conn_each_user(batch_add, b);
    batch_flush(b);
    free(b);
}

static void on_redis_state(int ready, void *arg)
{
    atomic_store(&C.ready, ready);
    stats_redis_up(ready);
    if (!ready || C.leaving)
        return;
    heartbeat();
    resync();
    log_info("registered node=%d ws_url=%s", push.node, push.cfg->push.advertise_url);
}

struct login {
    void (*fn)(int result, void *arg);
    void *arg;
};

static void on_login_reply(redisReply *r, void *arg)
{
    struct login *l = arg;
    int result;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        result = CONN_LOGIN_UNAVAILABLE;
    else if (r->integer == -1)
        result = CONN_LOGIN_USED;
    else if (r->integer == -2)
        result = CONN_LOGIN_TOO_MANY;
    else if (r->integer == -3)
        result = CONN_LOGIN_REVOKED;
    else
        result = CONN_LOGIN_OK;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("login script failed reason=\"%s\"", r->str);
    l->fn(result, l->arg);
    free(l);
}

int cluster_login(int64_t uid, int count, const char *claim_jti, const char *revoked_jti,
                  void (*fn)(int result, void *arg), void *arg)
{
    char presence[64], uids[24], counts[24], max[24], oldest[24], ttl[24], claim[80];
    const char *argv[11];
    struct login *l;
    int nkeys = 3;

    if (C.leaving || push.stopping)
        return MP_EAGAIN;
    key_tagged(presence, sizeof(presence), KEY_PRESENCE, uid);
    snprintf(uids, sizeof(uids), "%lld", (long long)uid);
    snprintf(counts, sizeof(counts), "%d", count);
    snprintf(max, sizeof(max), "%lld", push.cfg->push.max_conns_per_user);
    snprintf(oldest, sizeof(oldest), "%lld", (long long)cluster_oldest_live_ms());
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->auth.ws_ticket_ttl_s + AUTH_CLOCK_SKEW_S);
    argv[0] = presence;
    argv[1] = C.node_users;
    argv[2] = KEY_NODES;
    if (claim_jti != NULL) {
        snprintf(claim, sizeof(claim), KEY_WS_TICKET_USED, claim_jti);
        argv[nkeys++] = claim;
    } else if (revoked_jti != NULL) {
        snprintf(claim, sizeof(claim), KEY_REVOKED, revoked_jti);
        argv[nkeys++] = claim;
    }
    argv[nkeys + 0] = C.node;
    argv[nkeys + 1] = uids;
    argv[nkeys + 2] = counts;
    argv[nkeys + 3] = max;
    argv[nkeys + 4] = oldest;
    argv[nkeys + 5] = ttl;
    argv[nkeys + 6] = claim_jti != NULL ? "claim" : "session";
    if ((l = malloc(sizeof(*l))) == NULL)
        return MP_EAGAIN;
    l->fn = fn;
    l->arg = arg;
    if (rdsa_eval(&login_lua, on_login_reply, l, nkeys, nkeys + 7, argv, NULL) != MP_OK) {
        free(l);
        return MP_EAGAIN;
    }
    return MP_OK;
}

struct leave {
    void (*done)(void *arg);
    void *arg;
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

void cluster_leave(void (*done)(void *arg), void *arg)
{
    const char *argv[8] = {KEY_NODES, C.node_key, C.node_users,     C.node_rooms,
                           C.node,    C.shards,   C.members_prefix, C.members_suffix};
    struct leave *l = malloc(sizeof(*l));
    C.leaving = 1;
    if (C.timer_started)
        uv_timer_stop(&C.heartbeat);
    if (l == NULL) {
        done(arg);
        return;
    }
    l->done = done;
    l->arg = arg;
    if (rdsa_eval(&leave_lua, on_leave_reply, l, 4, 8, argv, NULL) != MP_OK)
        on_leave_reply(NULL, l);
}

int cluster_health(char *why, size_t len, void *arg)
{
    if (!atomic_load(&C.ready)) {
        snprintf(why, len, "redis unavailable");
        return 1;
    }
    return 0;
}

int cluster_start(void)
{
    char buf[64];

    snprintf(C.node, sizeof(C.node), "%d", push.node);
    snprintf(C.node_key, sizeof(C.node_key), KEY_NODE, push.node);
    snprintf(C.node_users, sizeof(C.node_users), KEY_NODE_USERS, push.node);
    snprintf(buf, sizeof(buf), KEY_NODE_USERS, 0);
    key_split(buf, C.users_prefix, C.users_suffix, sizeof(C.users_prefix));
    snprintf(C.shards, sizeof(C.shards), "%d", key_shards());
    snprintf(C.node_rooms, sizeof(C.node_rooms), KEY_NODE_ROOMS, push.node);
    snprintf(buf, sizeof(buf), KEY_NODE_ROOMS, 0);
    key_split(buf, NULL, C.rooms_suffix, sizeof(C.rooms_suffix));
    snprintf(buf, sizeof(buf), KEY_ROOM_MEMBERS, "0");
    key_split(buf, C.members_prefix, C.members_suffix, sizeof(C.members_prefix));
    snprintf(C.started, sizeof(C.started), "%lld", (long long)mp_now_ms());
    rdsa_script(&login_lua);
    rdsa_script(&presence_lua);
    rdsa_script(&clear_lua);
    rdsa_script(&heartbeat_lua);
    rdsa_script(&leave_lua);
    rdsa_on_state(on_redis_state, NULL);
    uv_timer_init(push.loop, &C.heartbeat);
    C.timer_started = 1;
    uv_timer_start(&C.heartbeat, on_heartbeat_timer, (uint64_t)push.cfg->push.heartbeat_s * 1000,
                   (uint64_t)push.cfg->push.heartbeat_s * 1000);
    return MP_OK;
}

void cluster_stop(void)
{
    if (!C.timer_started)
        return;
    C.timer_started = 0;
    uv_timer_stop(&C.heartbeat);
    uv_close((uv_handle_t *)&C.heartbeat, NULL);
}
