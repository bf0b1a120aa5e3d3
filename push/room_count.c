/* room_count.c -- cluster-wide room member counts (SPEC §5 MEMBERS, §7), kept like presence (cluster.h):
 * each node writes in KEY_ROOM_MEMBERS of a room how many members it holds there (absolute, so a lost
 * write is repaired by the next one), and lists its rooms in KEY_NODE_ROOMS so its entries can be found
 * again. A reader adds up the entries of live nodes only (heartbeat within push.node_ttl_s): the members
 * of a node that died stop counting when it drops out of the cluster, and its entries are removed when it
 * starts again, or by the survivors' prune (cluster.c). Both keys are in the node registry's slot
 * (keys.h, KEY_NODES_TAG), so each script here, the live-node read of others_lua included, is one slot.
 */
#include "cluster.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: node rooms. ARGV: node, members key prefix, suffix, then room, count pairs (0 = none here). */
static struct rdsa_script write_lua = {"room_count",
                                       LUA_SHEBANG "for i = 4, #ARGV, 2 do\n"
                                                   "  local key = ARGV[2] .. ARGV[i] .. ARGV[3]\n"
                                                   "  if tonumber(ARGV[i + 1]) > 0 then\n"
                                                   "    redis.call('HSET', key, ARGV[1], ARGV[i + 1])\n"
                                                   "    redis.call('SADD', KEYS[1], ARGV[i])\n"
                                                   "  else\n"
                                                   "    redis.call('HDEL', key, ARGV[1])\n"
                                                   "    redis.call('SREM', KEYS[1], ARGV[i])\n"
                                                   "  end\n"
                                                   "end\n"
                                                   "return 1\n",
                                       ""};

/* KEYS: node rooms. ARGV: node, members key prefix, suffix. Forget every room entry of this node. */
static struct rdsa_script clear_lua = {"room_clear",
                                       LUA_SHEBANG
                                       "for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                                       "  redis.call('HDEL', ARGV[2] .. room .. ARGV[3], ARGV[1])\n"
                                       "end\n"
                                       "redis.call('DEL', KEYS[1])\n"
                                       "return 1\n",
                                       ""};

/* KEYS: the room's members hash, KEY_NODES. ARGV: oldest live heartbeat ms, this node.
 * Returns the members of the room on the other live nodes. */
static struct rdsa_script others_lua = {"room_members",
                                        LUA_SHEBANG
                                        "local total = 0\n"
                                        "local h = redis.call('HGETALL', KEYS[1])\n"
                                        "for j = 1, #h, 2 do\n"
                                        "  local n = tonumber(h[j + 1])\n"
                                        "  if h[j] ~= ARGV[2] and n and n > 0 then\n"
                                        "    local beat = redis.call('ZSCORE', KEYS[2], h[j])\n"
                                        "    if beat and tonumber(beat) >= tonumber(ARGV[1]) then\n"
                                        "      total = total + n\n"
                                        "    end\n"
                                        "  end\n"
                                        "end\n"
                                        "return total\n",
                                        ""};

static struct {
    char node[16];
    char node_rooms[64]; /* KEY_NODE_ROOMS of this node */
    char prefix[64];     /* KEY_ROOM_MEMBERS around the room id */
    char suffix[64];
    void (*resync)(void);
} N;

static void on_write_reply(redisReply *r, void *arg)
{
    /* a write lost with the connection is repaired by the resync after the reconnect */
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("room member count write failed node=%d reason=\"%s\"", push.node, r->str);
}

void room_count_write(const char *const *rooms, const int *counts, int n)
{
    const char *argv[4 + 2 * ROOM_COUNT_BATCH];
    char nums[ROOM_COUNT_BATCH][16];
    int done = 0;

    argv[0] = N.node_rooms;
    argv[1] = N.node;
    argv[2] = N.prefix;
    argv[3] = N.suffix;
    while (done < n) {
        int k = n - done < ROOM_COUNT_BATCH ? n - done : ROOM_COUNT_BATCH;
        for (int i = 0; i < k; i++) {
            snprintf(nums[i], sizeof(nums[i]), "%d", counts[done + i]);
            argv[4 + 2 * i] = rooms[done + i];
            argv[5 + 2 * i] = nums[i];
        }
        /* when Redis is down this is not sent: the resync after it returns writes every room */
        rdsa_eval(&write_lua, on_write_reply, NULL, 1, 4 + 2 * k, argv, NULL);
        done += k;
    }
}

struct others {
    void (*fn)(long long n, void *arg);
    void *arg;
};

static void on_others_reply(redisReply *r, void *arg)
{
    struct others *o = arg;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("room member count read failed reason=\"%s\"", r->str);
    o->fn(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 0 ? r->integer : -1, o->arg);
    free(o);
}

int room_count_others(const char *room, void (*fn)(long long n, void *arg), void *arg)
{
    char key[ROOM_MAX_ID + 64], oldest[24];
    const char *argv[4] = {key, KEY_NODES, oldest, N.node};
    struct others *o;

    snprintf(key, sizeof(key), KEY_ROOM_MEMBERS, room);
    snprintf(oldest, sizeof(oldest), "%lld", (long long)cluster_oldest_live_ms());
    if ((o = malloc(sizeof(*o))) == NULL)
        return MP_EAGAIN;
    o->fn = fn;
    o->arg = arg;
    if (rdsa_eval(&others_lua, on_others_reply, o, 2, 4, argv, NULL) != MP_OK) {
        free(o);
        return MP_EAGAIN;
    }
    return MP_OK;
}

/* After every (re)connect: what this node wrote before (a previous run, or writes lost while Redis was
 * away) is cleared, then every room is written again. */
static void on_redis_state(int ready, void *arg)
{
    const char *argv[4] = {N.node_rooms, N.node, N.prefix, N.suffix};
    if (!ready || push.stopping)
        return;
    rdsa_eval(&clear_lua, on_write_reply, NULL, 1, 4, argv, NULL);
    N.resync();
}

int room_count_start(void (*resync)(void))
{
    const char *at = strstr(KEY_ROOM_MEMBERS, "%s");

    snprintf(N.node, sizeof(N.node), "%d", push.node);
    snprintf(N.node_rooms, sizeof(N.node_rooms), KEY_NODE_ROOMS, push.node);
    snprintf(N.prefix, sizeof(N.prefix), "%.*s", (int)(at - KEY_ROOM_MEMBERS), KEY_ROOM_MEMBERS);
    snprintf(N.suffix, sizeof(N.suffix), "%s", at + 2);
    N.resync = resync;
    rdsa_script(&write_lua);
    rdsa_script(&clear_lua);
    rdsa_script(&others_lua);
    rdsa_on_state(on_redis_state, NULL);
    return MP_OK;
}
