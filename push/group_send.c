/* group_send.c -- g: a message to a group (SPEC §4.2; the design is push/group.h).
 *
 * One Redis script, like t (chat_send.c): the (from, id) dedup check, the membership check against
 * KEY_GROUP_MEMBERS, a seq in every member's timeline (mp_fanout, shared/group_lua.h), the group's count and
 * latest mid, KEY_MSG, the sender's read mark, one stream entry, and the delivery PUBLISHed to every other
 * live node (the live node ids in ARGV, this node's view: push/cluster.h says how fresh). The client gets A
 * (mid, the sender's seq) only after Redis answered. The reply carries every member's seq, from which this
 * node delivers to its own connections, in the order Redis ran the scripts. A non-member, or a group that
 * does not exist, gets E "not a member" (one answer for both, so ids cannot be probed), and the message takes
 * no seq.
 *
 * With redis.min_replicas_acked the A, the deliveries to other nodes and this node's own deliveries wait
 * for rdsa_wait, as in chat_send.c (which says why): the script then returns the nodes' channels instead
 * of publishing, and a retry refreshes the dedup key's TTL so the WAIT covers the first attempt too.
 *
 * At redis.stream_shards > 1 the g starts with gsend_g_lua in the group's shard, which does it whole when
 * everything is in that shard and otherwise splits it: the group's part, one part per shard of the members,
 * the stream entry (push/group.h, "The split", has the design and what each failure leaves).
 */
#include "group.h"
#include "cluster.h"
#include "group_lua.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "notify_event.h"
#include "push.h"
#include "rdsa.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lua shared by the g scripts (after GROUP_LUA_LIB). mp_deliver(out, payload, self, live, waits, shard): the
 * delivery to every live node but self on its delivery channel of shard (the script's own: CHAN_NODE is
 * sharded, shared/bus.h), SPUBLISHed through mp_publish, or with waits == '1' (the caller WAITs first) put
 * into out as the payload then the channels, from out's first free slot on (nothing when no other
 * node is live). mp_notify(pr, from, conv, gn, live, stream, qmax, mid, ts, preview): one offline
 * notification (notify/notify_worker.h) into stream for every member of pr (mp_fanout's pairs) but from with
 * no connection on a live node, with its unread count in conv (gn - its read mark's :rn). */
#define GSEND_LIB                                                                                            \
    "local function mp_deliver(out, payload, self, live, waits, shard)\n"                                    \
    "  if waits ~= '1' then mp_publish(payload, self, live, shard) return end\n"                             \
    "  local at = #out + 1\n"                                                                                \
    "  for n in string.gmatch(live, '[^,]+') do\n"                                                           \
    "    if n ~= self then\n"                                                                                \
    "      out[at] = payload\n"                                                                              \
    "      out[#out + 1] = mp_node_chan(n, shard)\n"                                                         \
    "    end\n"                                                                                              \
    "  end\n"                                                                                                \
    "end\n" /* The live nodes once per message, not a ZSCORE per member's node: a 500-member group's online  \
             * members cost a command each less (bench/README.md, Groups). */                                \
    "local function mp_notify(pr, from, conv, gn, live, stream, qmax, mid, ts, preview)\n"                   \
    "  local ln = {}\n"                                                                                      \
    "  for n in string.gmatch(live, '[^,]+') do ln[n] = true end\n"                                          \
    "  for j = 1, #pr, 2 do\n"                                                                               \
    "    local u, online = pr[j], false\n"                                                                   \
    "    if tostring(u) ~= from then\n"                                                                      \
    "      local h = redis.call('HGETALL', mp_key('" KEY_PRESENCE_NAME "', u))\n"                            \
    "      for k = 1, #h, 2 do\n"                                                                            \
    "        if tonumber(h[k + 1]) > 0 and ln[h[k]] then online = true break end\n"                          \
    "      end\n"                                                                                            \
    "      if not online then\n"                                                                             \
    "        local rn = tonumber(redis.call('HGET', mp_key('" KEY_CONV_NAME                                  \
    "', u), conv .. '" CONV_F_READ_IN "') or '0')\n"                                                         \
    "        redis.call('XADD', stream, 'MAXLEN', '~', qmax, '*', '" NT_F_VERSION                            \
    "', '" NOTIFY_FORMAT_VERSION "', '" NT_F_TYPE "', 'message', '" NT_F_KIND "', 'g', '" NT_F_TO            \
    "', u, '" NT_F_FROM "', from, '" NT_F_CONV "', conv, '" NT_F_MID "', mid, '" NT_F_SEQ                    \
    "', pr[j + 1], '" NT_F_TS "', ts, '" NT_F_PREVIEW "', preview, '" NT_F_UNREAD "', gn - rn)\n"            \
    "      end\n"                                                                                            \
    "    end\n"                                                                                              \
    "  end\n"                                                                                                \
    "end\n"

/* The dedup check of the one-script g (KEYS[1] = the sender's dedup key). */
#define GSEND_DEDUP                                                                                          \
    "local first = redis.call('GET', KEYS[1])\n"                                                             \
    "if first then\n"                                                                                        \
    "  if ARGV[17] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[8]) end\n"                                 \
    "  return {1, first}\n"                                                                                  \
    "end\n"

/* The one-script g after the membership check (uids = the members), keys and ARGV as gsend_lua's. */
#define GSEND_BODY                                                                                           \
    "if not mp_counters_ok(uids, KEYS[8]) then return {-3} end\n"                                            \
    "local pr, err = mp_fanout(uids, ARGV[2], ARGV[13], ARGV[10], ARGV[11])\n"                               \
    "if not pr then return {-2, err} end\n"                                                                  \
    "local gn = redis.call('HINCRBY', KEYS[3], '" GROUP_F_COUNT "', 1)\n"                                    \
    "redis.call('HSET', KEYS[3], '" GROUP_F_LAST "', ARGV[2])\n"                                             \
    "local fs, flat = 0, {}\n"                                                                               \
    "for j = 1, #pr, 2 do\n"                                                                                 \
    "  if pr[j] == ARGV[3] then fs = pr[j + 1] end\n"                                                        \
    "  flat[#flat + 1] = pr[j] .. ' ' .. pr[j + 1]\n"                                                        \
    "end\n"                                                                                                  \
    "flat = table.concat(flat, ' ')\n"                                                                       \
    "redis.call('HSET', KEYS[5], '" MSG_F_PACKET "', ARGV[9], '" MSG_F_GROUP "', ARGV[4], '" MSG_F_GROUP_N   \
    "', gn)\n"                                                                                               \
    "redis.call('EXPIRE', KEYS[5], ARGV[10])\n"                                                              \
    "mp_msg_copies(KEYS[5], ARGV[2], uids, ARGV[10])\n"                                                      \
    "redis.call('HSET', KEYS[6], ARGV[13] .. '" CONV_F_READ "', ARGV[2], ARGV[13] .. '" CONV_F_READ_IN       \
    "', gn)\n"                                                                                               \
    "redis.call('XADD', KEYS[4], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID               \
    "', ARGV[2], '" MQ_F_FROM "', ARGV[3], '" MQ_F_TO "', ARGV[4], '" MQ_F_CID "', ARGV[5], '" MQ_F_TYPE     \
    "', 'g', '" MQ_F_BODY "', ARGV[6], '" MQ_F_TS "', ARGV[7], '" MQ_F_FROM_SEQ "', fs, '" MQ_F_GROUP        \
    "', ARGV[4], '" MQ_F_GROUP_N "', gn, '" MQ_F_SEQS "', mp_seqs(pr, ARGV[3]))\n"                           \
    "redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. fs, 'EX', ARGV[8])\n"                                      \
    "local out = {0, ARGV[2], fs, flat}\n"                                                                   \
    "mp_deliver(out, '" GROUP_DELIVERY_HEAD "' .. ARGV[7] .. '\\n' .. flat .. '\\n' .. ARGV[9], ARGV[1], "   \
    "ARGV[12], ARGV[17], mp_shard(ARGV[4]))\n" /* the group's shard */                                       \
    "if ARGV[14] == '1' then\n"                                                                              \
    "  mp_notify(pr, ARGV[3], ARGV[13], gn, ARGV[12], KEYS[7], ARGV[16], ARGV[2], ARGV[7], ARGV[15])\n"      \
    "end\n"                                                                                                  \
    "return out\n"

/* KEYS: dedup, KEY_GROUP_MEMBERS, KEY_GROUP, KEY_MQ, KEY_MSG of mid, KEY_CONV of the sender, KEY_NOTIFY,
 * KEY_SEQ_RESTORED; KEY_MQ, KEY_MSG, KEY_NOTIFY and KEY_SEQ_RESTORED of the group's shard (keys.h). The
 * members' keys (counters, timelines, presence, conversations, their KEY_MSG copies) are built here from
 * their uids (group_lua.h): run at redis.stream_shards = 1 only (one shard), and its body in gsend_g_lua when
 * everything is in the group's shard.
 * ARGV: node, mid, from, gid, cid, body, ts, dedup TTL, packet (without seq), timeline.keep_s,
 * timeline.max_entries, the live node ids (KEY_LUA_LIVE: this node's view, push/cluster.h), the conversation
 * id "g<gid>", "1" when offline notifications are on, the notification's preview, notify.queue_maxlen, "1"
 * when the caller WAITs (then the deliveries are returned, not published), redis.stream_shards. Returns {0,
 * mid, the sender's seq, "<uid> <seq> ..." of every member} (with "1": then the delivery payload and the
 * channels of the live nodes but this one, when there are any), {1, "<first mid> <its seq>"} a retry, {-1}
 * not a member (or no such group), {-2, why} a timeline ahead of its counter, {-3} a member without a counter
 * while Redis has not got them all back from MySQL. Nothing stays written when refused. */
static struct rdsa_script gsend_lua = {
    "gsend",
    LUA_SHEBANG "local " KEY_LUA_SHARDS " = ARGV[18]\n" GROUP_LUA_LIB GSEND_LIB GSEND_DEDUP
                "if not redis.call('HGET', KEYS[2], ARGV[3]) then return {-1} end\n"
                "local uids = redis.call('HKEYS', KEYS[2])\n" GSEND_BODY,
    ""};

/* The g at redis.stream_shards > 1 (the split: push/group.h). gsend_g_lua, in the group's shard.
 * KEYS: as gsend_lua's, then KEY_GSND of (from, cid) (the group's shard); when the sender is not in the
 * group's shard, KEYS[1] and KEYS[6] (the sender's keys) are KEY_GSND too, and ARGV[19] is not "1".
 * ARGV: gsend_lua's, then "1" when the sender is in the group's shard, and the absolute expiry in unix ms
 * of KEY_GSND and of a split send's dedup key (ts + the dedup TTL). A new message whose members and sender
 * are all in the group's shard is done whole, as gsend_lua (same replies); so is a retry of one (its dedup
 * key). Otherwise the group's part only: the count and latest mid, KEY_MSG in the group's shard, KEY_GSND
 * = {m: mid, n: its number, u: the members' uids, t: ts, b: body, p: packet}; returns {2, mid, number,
 * "<uid> <uid> ...", packet, ts, body}; a retry that finds KEY_GSND returns {3, the same of the first}
 * (with "1" in ARGV[17]: KEY_GSND's expiry is written again, so the WAIT after it covers the first). */
static struct rdsa_script gsend_g_lua = {
    "gsend_g",
    LUA_SHEBANG
    "local " KEY_LUA_SHARDS " = ARGV[18]\n" GROUP_LUA_LIB GSEND_LIB
    "local g = redis.call('HMGET', KEYS[9], 'm', 'n', 'u', 'p', 't', 'b')\n"
    "if g[1] then\n"
    "  if ARGV[17] == '1' then redis.call('PEXPIREAT', KEYS[9], ARGV[20]) end\n"
    "  return {3, g[1], g[2], g[3], g[4], g[5], g[6]}\n"
    "end\n"
    "if ARGV[19] == '1' then\n" GSEND_DEDUP "end\n"
    "if not redis.call('HGET', KEYS[2], ARGV[3]) then return {-1} end\n"
    "local uids = redis.call('HKEYS', KEYS[2])\n"
    "local one = ARGV[19] == '1'\n"
    "local gs = mp_shard(ARGV[4])\n"
    "for i = 1, #uids do if one and mp_shard(uids[i]) ~= gs then one = false end end\n"
    "if one then\n" GSEND_BODY "end\n"
    "local gn = redis.call('HINCRBY', KEYS[3], '" GROUP_F_COUNT "', 1)\n"
    "redis.call('HSET', KEYS[3], '" GROUP_F_LAST "', ARGV[2])\n"
    "redis.call('HSET', KEYS[5], '" MSG_F_PACKET "', ARGV[9], '" MSG_F_GROUP "', ARGV[4], '" MSG_F_GROUP_N
    "', gn)\n"
    "redis.call('EXPIRE', KEYS[5], ARGV[10])\n"
    "local u = table.concat(uids, ' ')\n"
    "redis.call('HSET', KEYS[9], 'm', ARGV[2], 'n', gn, 'u', u, 'p', ARGV[9], 't', ARGV[7], 'b', ARGV[6])\n"
    "redis.call('PEXPIREAT', KEYS[9], ARGV[20])\n"
    "return {2, ARGV[2], gn, u, ARGV[9], ARGV[7], ARGV[6]}\n",
    ""};

/* gsend_p_lua: one member shard's part of a split g, run for each shard of the members after gsend_g_lua
 * answered, idempotent through KEY_GRCV. KEYS: KEY_GRCV of mid, KEY_MSG of mid, KEY_SEQ_RESTORED,
 * KEY_NOTIFY (all of this shard), and when the sender is in this shard its dedup key and KEY_CONV.
 * ARGV: node, mid, from, gid, the shard's members' uids ("<uid> <uid> ..."), packet (without seq), ts,
 * dedup TTL, timeline.keep_s, timeline.max_entries, the live node ids (KEY_LUA_LIVE), the conversation id
 * "g<gid>", "1" when offline notifications are on, the preview, notify.queue_maxlen, "1" when the caller
 * WAITs, redis.stream_shards, the message's number in the group, the dedup key's absolute expiry (unix ms).
 * The members' seqs (mp_fanout), the shard's KEY_MSG copy, with the sender its read mark and dedup key
 * ("<mid> <its seq>"), KEY_GRCV = "<uid> <seq> ..." of the shard's members (TTL the dedup TTL), the
 * deliveries of those members to every live node but this one (mp_deliver) and their offline
 * notifications. Returns {0, "<uid> <seq> ..."} (with "1": then the payload and the channels), {1, "<uid>
 * <seq> ..."} it ran before for this mid (nothing written but, with "1", KEY_GRCV's TTL), {-2, why}, {-3}
 * as gsend_lua (nothing written). */
static struct rdsa_script gsend_p_lua = {
    "gsend_p",
    LUA_SHEBANG
    "local " KEY_LUA_SHARDS " = ARGV[17]\n" GROUP_LUA_LIB GSEND_LIB
    "local done = redis.call('GET', KEYS[1])\n"
    "if done then\n"
    "  if ARGV[16] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[8]) end\n"
    "  return {1, done}\n"
    "end\n"
    "local uids = {}\n"
    "for u in string.gmatch(ARGV[5], '%d+') do uids[#uids + 1] = u end\n"
    "if not mp_counters_ok(uids, KEYS[3]) then return {-3} end\n"
    "local pr, err = mp_fanout(uids, ARGV[2], ARGV[12], ARGV[9], ARGV[10])\n"
    "if not pr then return {-2, err} end\n"
    "local gn = tonumber(ARGV[18])\n"
    "redis.call('HSET', KEYS[2], '" MSG_F_PACKET "', ARGV[6], '" MSG_F_GROUP "', ARGV[4], '" MSG_F_GROUP_N
    "', gn)\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[9])\n"
    "local fs, flat = 0, {}\n"
    "for j = 1, #pr, 2 do\n"
    "  if pr[j] == ARGV[3] then fs = pr[j + 1] end\n"
    "  flat[#flat + 1] = pr[j] .. ' ' .. pr[j + 1]\n"
    "end\n"
    "flat = table.concat(flat, ' ')\n"
    "if #KEYS == 6 then\n"
    "  redis.call('HSET', KEYS[6], ARGV[12] .. '" CONV_F_READ "', ARGV[2], ARGV[12] .. '" CONV_F_READ_IN
    "', gn)\n"
    "  redis.call('SET', KEYS[5], ARGV[2] .. ' ' .. fs, 'PXAT', ARGV[19])\n"
    "end\n"
    "redis.call('SET', KEYS[1], flat, 'EX', ARGV[8])\n"
    "local out = {0, flat}\n"
    "mp_deliver(out, '" GROUP_DELIVERY_HEAD "' .. ARGV[7] .. '\\n' .. flat .. '\\n' .. ARGV[6], ARGV[1], "
    "ARGV[11], ARGV[16], string.match(KEYS[1], '^mp:{(%d+)}'))\n" /* this part's shard: KEY_GRCV's */
    "if ARGV[13] == '1' then\n"
    "  mp_notify(pr, ARGV[3], ARGV[12], gn, ARGV[11], KEYS[4], ARGV[15], ARGV[2], ARGV[7], ARGV[14])\n"
    "end\n"
    "return out\n",
    ""};

/* gsend_f_lua: the stream entry of a split g, in the group's shard, once every part answered (so it has
 * every member's seq: magpie-persist stores it as a one-script g's). KEYS: KEY_GSND, KEY_MQ. ARGV: mid, from,
 * gid, cid, body, ts, the sender's seq, the number in the group, every member's "<uid> <seq> ...", "1" when
 * the caller WAITs. Idempotent through KEY_GSND's field x: {0} written now, {1} before (with "1", x is
 * written again, so the WAIT covers the first). */
static struct rdsa_script gsend_f_lua = {
    "gsend_f",
    LUA_SHEBANG "if redis.call('HGET', KEYS[1], 'x') then\n"
                "  if ARGV[10] == '1' then redis.call('HSET', KEYS[1], 'x', '1') end\n"
                "  return {1}\n"
                "end\n"
                "local s = {}\n"
                "for u, q in string.gmatch(ARGV[9], '(%d+) (%d+)') do\n"
                "  if u ~= ARGV[2] then s[#s + 1] = u .. ':' .. q end\n"
                "end\n"
                "redis.call('XADD', KEYS[2], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID
                "', ARGV[1], '" MQ_F_FROM "', ARGV[2], '" MQ_F_TO "', ARGV[3], '" MQ_F_CID
                "', ARGV[4], '" MQ_F_TYPE "', 'g', '" MQ_F_BODY "', ARGV[5], '" MQ_F_TS
                "', ARGV[6], '" MQ_F_FROM_SEQ "', ARGV[7], '" MQ_F_GROUP "', ARGV[3], '" MQ_F_GROUP_N
                "', ARGV[8], '" MQ_F_SEQS "', table.concat(s, ' '))\n"
                "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'x', '1') end\n"
                "return {0}\n",
    ""};

#define GSEND_NKEYS         8
#define GSEND_ARGC          26
#define GSEND_WARN_EVERY_MS 10000

struct gsend_req {
    struct chat_req r;
    int64_t gid;
    int64_t ts;
    char *json; /* the packet members get, without seq */
    size_t json_len;
    /* What the script answered, kept until rdsa_wait answers. */
    char *retry;  /* a retry: "<first mid> <its seq>"; NULL = a new message */
    char mid[24]; /* a new message: its mid, the sender's seq, every member's "<uid> <seq>" */
    int64_t fseq;
    char *pairs;
    size_t pairs_len;
    struct chat_pubs pubs; /* with WAIT: the deliveries to other nodes */
    /* The split (redis.stream_shards > 1, members in several shards): what the parts need. */
    int64_t gn;      /* the message's number in the group */
    int64_t expires; /* KEY_GSND's and the dedup key's absolute expiry, unix ms */
    char *uids;      /* the members' uids, "<uid> <uid> ..." */
    char *body;
    size_t body_len;
    int again;   /* gsend_g_lua found KEY_GSND: a retry completing (or re-acking) the first */
    int pending; /* parts not answered yet */
    int failed;  /* a part failed: E once all answered */
    char *all;   /* every part's "<uid> <seq> ..." so far, for the stream entry */
    size_t all_len;
};

static void gsend_free(struct gsend_req *s)
{
    free(s->uids);
    free(s->body);
    free(s->all);
    free(s->json);
    free(s->retry);
    free(s->pairs);
    chat_pubs_free(&s->pubs);
    chat_req_done(&s->r);
    free(s);
}

void group_send_init(void)
{
    rdsa_script(&gsend_lua);
    rdsa_script(&gsend_g_lua);
    rdsa_script(&gsend_p_lua);
    rdsa_script(&gsend_f_lua);
}

/* Give this node's connections of every "<uid> <seq>" pair in pairs (len bytes) the packet with that seq;
 * except (the connection that sent it) gets nothing. Returns 0, or -1 when pairs is malformed (the pairs
 * before the bad one were delivered). */
static int deliver_pairs(const char *pairs, size_t len, const char *packet, size_t packet_len,
                         const struct conn *except, int64_t ts)
{
    const char *p = pairs;
    int64_t uid, seq;
    int rc;

    while ((rc = chatpkt_group_pair_next(&p, pairs + len, &uid, &seq)) == 1)
        chat_deliver_seq(uid, packet, packet_len, seq, except, ts);
    return rc;
}

int group_deliver_payload(const char *payload, size_t len)
{
    struct group_delivery d;
    /* checked whole before anything is delivered: a bad payload delivers nothing */
    if (chatpkt_group_delivery_parse(payload, len, &d) != 0)
        return -1;
    return deliver_pairs(d.pairs, d.pairs_len, d.packet, d.packet_len, NULL, d.ts);
}

/* rdsa_wait answered (at once when no WAIT is configured): the A, then the deliveries. */
static void on_gsend_durable(int ok, void *arg)
{
    struct gsend_req *s = arg;
    struct conn *c = s->r.c;

    if (chat_durable_ack(&s->r, ok, s->retry, s->mid, s->fseq)) {
        chat_pubs_send(&s->pubs);
        if (deliver_pairs(s->pairs, s->pairs_len, s->json, s->json_len, c, s->ts) != 0)
            log_error("group send: a malformed member list in the script's reply group=%lld",
                      (long long)s->gid);
    }
    gsend_free(s);
}

static void on_gsend_reply(redisReply *r, void *arg)
{
    struct gsend_req *s = arg;
    struct conn *c = s->r.c;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e == NULL || r->elements < 1 || e[0]->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("group send script failed reason=\"%s\"", r->str);
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (e[0]->integer == -1) {
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_NOT_MEMBER, STATS_E_REJECTED);
    } else if (e[0]->integer == -3) {
        static int64_t warned_ms;
        if (mp_now_ms() - warned_ms >= GSEND_WARN_EVERY_MS) {
            warned_ms = mp_now_ms();
            log_warn("group sends refused until magpie-persist has restored the seq counters from MySQL "
                     "(" KEY_SEQ_RESTORED " is missing) uid=%lld group=%lld",
                     key_shard(s->gid), (long long)c->uid, (long long)s->gid);
        }
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (e[0]->integer == 1 && r->elements == 2 && e[1]->type == REDIS_REPLY_STRING) {
        if ((s->retry = strdup(e[1]->str)) == NULL)
            goto unavailable;
        rdsa_wait(on_gsend_durable, s);
        return;
    } else if (e[0]->integer == 0 && r->elements >= 4 && e[1]->type == REDIS_REPLY_STRING &&
               e[2]->type == REDIS_REPLY_INTEGER && e[3]->type == REDIS_REPLY_STRING) {
        snprintf(s->mid, sizeof(s->mid), "%s", e[1]->str);
        s->fseq = e[2]->integer;
        if ((s->pairs = malloc(e[3]->len + 1)) == NULL || chat_pubs_keep(&s->pubs, r, 4) != MP_OK)
            goto unavailable;
        memcpy(s->pairs, e[3]->str, e[3]->len + 1);
        s->pairs_len = e[3]->len;
        rdsa_wait(on_gsend_durable, s);
        return;
    } else {
        if (e[0]->integer == -2 && r->elements == 2 && e[1]->type == REDIS_REPLY_STRING)
            log_error(
                "group send refused: a timeline is ahead of its counter uid=%lld group=%lld reason=\"%s\"",
                (long long)c->uid, (long long)s->gid, e[1]->str);
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    }
    gsend_free(s);
    return;
unavailable:
    chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    gsend_free(s);
}

/* ---- the split (redis.stream_shards > 1; push/group.h) ---- */

#define GSEND_G_NKEYS 9
#define GSEND_G_ARGC  (GSEND_NKEYS + 1 + GSEND_ARGC - GSEND_NKEYS + 2)
#define GSEND_P_ARGC  25 /* 4 or 6 keys, 19 ARGV */
#define GSEND_F_ARGC  12 /* 2 keys, 10 ARGV */

struct gsend_part {
    struct gsend_req *s;
    int shard;
    int fresh; /* the part wrote now (not a KEY_GRCV hit): deliver it */
    char *pairs;
    size_t pairs_len;
    struct chat_pubs pubs;
};

static void gsplit_end(struct gsend_req *s, int ok, const char *what);

static void on_gfin_durable(int ok, void *arg)
{
    struct gsend_req *s = arg;
    char retry[64];

    if (s->again)
        snprintf(retry, sizeof(retry), "%s %lld", s->mid, (long long)s->fseq);
    chat_durable_ack(&s->r, ok, s->again ? retry : NULL, s->mid, s->fseq);
    gsend_free(s);
}

static void on_gfin_reply(redisReply *r, void *arg)
{
    struct gsend_req *s = arg;

    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        rdsa_wait(on_gfin_durable, s);
        return;
    }
    gsplit_end(s, 0, r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "no answer");
}

/* Every part answered: the stream entry (gsend_f_lua), then the A. */
static void gsplit_finish(struct gsend_req *s)
{
    char gsnd[96 + CHAT_MAX_ID], mq[32], from_s[24], gid_s[24], ts_s[24], fs_s[24], gn_s[24];
    const char *argv[GSEND_F_ARGC], *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "";
    size_t argvlen[GSEND_F_ARGC];
    int gs = key_shard(s->gid);

    snprintf(gsnd, sizeof(gsnd), KEY_GSND, gs, (long long)s->gid, (long long)s->r.c->uid, s->r.id);
    snprintf(mq, sizeof(mq), KEY_MQ, gs);
    snprintf(from_s, sizeof(from_s), "%lld", (long long)s->r.c->uid);
    snprintf(gid_s, sizeof(gid_s), "%lld", (long long)s->gid);
    snprintf(ts_s, sizeof(ts_s), "%lld", (long long)s->ts);
    snprintf(fs_s, sizeof(fs_s), "%lld", (long long)s->fseq);
    snprintf(gn_s, sizeof(gn_s), "%lld", (long long)s->gn);
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
#define ARGS(i, v)   ARG(i, v, strlen(v))
    ARGS(0, gsnd);
    ARGS(1, mq);
    ARGS(2, s->mid);
    ARGS(3, from_s);
    ARGS(4, gid_s);
    ARG(5, s->r.id, s->r.id_len);
    ARG(6, s->body, s->body_len);
    ARGS(7, ts_s);
    ARGS(8, fs_s);
    ARGS(9, gn_s);
    ARG(10, s->all != NULL ? s->all : "", s->all_len);
    ARGS(11, waits);
#undef ARGS
#undef ARG
    if (rdsa_eval(&gsend_f_lua, on_gfin_reply, s, 2, GSEND_F_ARGC, argv, argvlen) != MP_OK)
        gsplit_end(s, 0, "not sent");
}

/* The end of a split send that did not reach its A: E (the client retries; push/group.h says what the
 * retry completes). */
static void gsplit_end(struct gsend_req *s, int ok, const char *what)
{
    if (!ok) {
        log_warn("group send: a part of a split message failed group=%lld mid=%s reason=\"%s\"",
                 (long long)s->gid, s->mid, what);
        chat_error(s->r.c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    }
    gsend_free(s);
}

/* One part answered (and was WAITed for): keep its pairs; the last one moves on. */
static void gpart_done(struct gsend_part *pt, int ok)
{
    struct gsend_req *s = pt->s;

    if (ok && pt->pairs != NULL) {
        const char *p = pt->pairs;
        int64_t uid, seq;
        char *all = realloc(s->all, s->all_len + pt->pairs_len + 2);
        if (all == NULL)
            ok = 0;
        else {
            s->all = all;
            s->all_len += (size_t)sprintf(all + s->all_len, "%s%s", s->all_len ? " " : "", pt->pairs);
            while (chatpkt_group_pair_next(&p, pt->pairs + pt->pairs_len, &uid, &seq) == 1)
                if (uid == s->r.c->uid)
                    s->fseq = seq;
        }
    }
    if (!ok)
        s->failed = 1;
    free(pt->pairs);
    chat_pubs_free(&pt->pubs);
    free(pt);
    if (--s->pending > 0)
        return;
    if (s->failed || s->fseq <= 0)
        gsplit_end(s, 0, s->failed ? "a member shard's part" : "no seq of the sender");
    else
        gsplit_finish(s);
}

static void on_gpart_durable(int ok, void *arg)
{
    struct gsend_part *pt = arg;

    if (ok && pt->fresh) {
        chat_pubs_send(&pt->pubs);
        if (deliver_pairs(pt->pairs, pt->pairs_len, pt->s->json, pt->s->json_len, pt->s->r.c, pt->s->ts) != 0)
            log_error("group send: a malformed member list in a part's reply group=%lld",
                      (long long)pt->s->gid);
    }
    gpart_done(pt, ok);
}

static void on_gpart_reply(redisReply *r, void *arg)
{
    struct gsend_part *pt = arg;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e != NULL && r->elements >= 2 && e[0]->type == REDIS_REPLY_INTEGER &&
        (e[0]->integer == 0 || e[0]->integer == 1) && e[1]->type == REDIS_REPLY_STRING) {
        pt->fresh = e[0]->integer == 0;
        if ((pt->pairs = strdup(e[1]->str)) == NULL || chat_pubs_keep(&pt->pubs, r, 2) != MP_OK) {
            gpart_done(pt, 0);
            return;
        }
        pt->pairs_len = e[1]->len;
        rdsa_wait(on_gpart_durable, pt);
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("group send part failed group=%lld shard=%d mid=%s reason=\"%s\"", (long long)pt->s->gid,
                 pt->shard, pt->s->mid, r->str);
    else if (e != NULL && r->elements == 2 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == -2 &&
             e[1]->type == REDIS_REPLY_STRING)
        log_error("group send refused: a timeline is ahead of its counter group=%lld shard=%d mid=%s "
                  "reason=\"%s\"",
                  (long long)pt->s->gid, pt->shard, pt->s->mid, e[1]->str);
    else if (e != NULL && r->elements >= 1 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == -3)
        log_warn(
            "group send part refused until magpie-persist has restored the seq counters (" KEY_SEQ_RESTORED
            " is missing) group=%lld mid=%s",
            pt->shard, (long long)pt->s->gid, pt->s->mid);
    gpart_done(pt, 0);
}

/* Start one shard's part with its members' uids (uids, len bytes). MP_OK, or MP_ERR (pt freed). */
static int gpart_start(struct gsend_req *s, int shard, const char *uids, size_t len, const char *live)
{
    char grcv[64], msgkey[64], restored[48], notify[32], dedup[64 + CHAT_MAX_ID], conv[64], node[16],
        from_s[24], gid_s[24], ts_s[24], ttl[24], keep[24], maxlen[24], conv_id[32], qmax[24], shards[16],
        gn_s[24], exp_s[24];
    const char *argv[GSEND_P_ARGC], *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "";
    size_t argvlen[GSEND_P_ARGC];
    int64_t from = s->r.c->uid, mid = strtoll(s->mid, NULL, 10);
    int nkeys = key_shard(from) == shard ? 6 : 4, k = 0;
    struct gsend_part *pt = calloc(1, sizeof(*pt));

    if (pt == NULL)
        return MP_ERR;
    pt->s = s;
    pt->shard = shard;
    snprintf(grcv, sizeof(grcv), KEY_GRCV, shard, (long long)mid);
    snprintf(msgkey, sizeof(msgkey), KEY_MSG, shard, (long long)mid);
    snprintf(restored, sizeof(restored), KEY_SEQ_RESTORED, shard);
    snprintf(notify, sizeof(notify), KEY_NOTIFY, shard);
    key_tagged(conv, sizeof(conv), KEY_CONV, from);
    snprintf(node, sizeof(node), "%d", push.node);
    snprintf(from_s, sizeof(from_s), "%lld", (long long)from);
    snprintf(gid_s, sizeof(gid_s), "%lld", (long long)s->gid);
    snprintf(ts_s, sizeof(ts_s), "%lld", (long long)s->ts);
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->push.dedup_ttl_s);
    snprintf(keep, sizeof(keep), "%lld", push.cfg->timeline.keep_s);
    snprintf(maxlen, sizeof(maxlen), "%lld", push.cfg->timeline.max_entries);
    snprintf(conv_id, sizeof(conv_id), "g%lld", (long long)s->gid);
    snprintf(qmax, sizeof(qmax), "%lld", push.cfg->notify.queue_maxlen);
    snprintf(shards, sizeof(shards), "%d", key_shards());
    snprintf(gn_s, sizeof(gn_s), "%lld", (long long)s->gn);
    snprintf(exp_s, sizeof(exp_s), "%lld", (long long)s->expires);
#define ARG(v, l) (argv[k] = (v), argvlen[k++] = (l))
#define ARGS(v)   ARG(v, strlen(v))
    ARGS(grcv);
    ARGS(msgkey);
    ARGS(restored);
    ARGS(notify);
    if (nkeys == 6) {
        size_t dl = chat_dedup_key(dedup, sizeof(dedup), from, s->r.id, s->r.id_len);
        ARG(dedup, dl);
        ARGS(conv);
    }
    ARGS(node);
    ARGS(s->mid);
    ARGS(from_s);
    ARGS(gid_s);
    ARG(uids, len);
    ARG(s->json, s->json_len);
    ARGS(ts_s);
    ARGS(ttl);
    ARGS(keep);
    ARGS(maxlen);
    ARGS(live);
    ARGS(conv_id);
    ARGS(push.cfg->notify.webhook_url[0] != '\0' ? "1" : "");
    ARG(s->body, chat_preview_len(s->body, s->body_len));
    ARGS(qmax);
    ARGS(waits);
    ARGS(shards);
    ARGS(gn_s);
    ARGS(exp_s);
#undef ARGS
#undef ARG
    if (rdsa_eval(&gsend_p_lua, on_gpart_reply, pt, nkeys, k, argv, argvlen) != MP_OK) {
        free(pt);
        return MP_ERR;
    }
    return MP_OK;
}

struct shard_uid {
    int shard;
    int64_t uid;
};

static int cmp_shard_uid(const void *a, const void *b)
{
    const struct shard_uid *x = a, *y = b;
    return x->shard != y->shard ? (x->shard < y->shard ? -1 : 1) : (x->uid > y->uid) - (x->uid < y->uid);
}

/* The group's part is durable: one part per shard of the members, all at once. */
static void on_ggroup_durable(int ok, void *arg)
{
    struct gsend_req *s = arg;
    struct shard_uid *su = NULL;
    size_t n = 0, cap = 0, i, j;
    const char *p = s->uids, *live;
    char *buf = NULL;

    if (!ok) {
        gsplit_end(s, 0, "WAIT on the group's master");
        return;
    }
    if ((live = cluster_live_nodes()) == NULL) {
        gsplit_end(s, 0, "no live-node view");
        return;
    }
    while (*p != '\0') {
        char *end;
        long long uid = strtoll(p, &end, 10);
        if (end == p || uid <= 0)
            break;
        if (n == cap) {
            struct shard_uid *t = realloc(su, (cap = cap ? 2 * cap : 64) * sizeof(*su));
            if (t == NULL)
                goto fail;
            su = t;
        }
        su[n++] = (struct shard_uid){key_shard(uid), uid};
        p = end;
        while (*p == ' ')
            p++;
    }
    if (n == 0 || (buf = malloc(n * 21 + 1)) == NULL)
        goto fail;
    qsort(su, n, sizeof(*su), cmp_shard_uid);
    /* count the parts first, so that a part answering at once cannot end the send early */
    for (i = 0; i < n; i = j) {
        for (j = i; j < n && su[j].shard == su[i].shard; j++)
            ;
        s->pending++;
    }
    s->pending++; /* held by this loop */
    for (i = 0; i < n; i = j) {
        size_t len = 0;
        for (j = i; j < n && su[j].shard == su[i].shard; j++)
            len += (size_t)sprintf(buf + len, "%s%lld", len ? " " : "", (long long)su[j].uid);
        if (gpart_start(s, su[i].shard, buf, len, live) != MP_OK) {
            s->failed = 1;
            s->pending--;
        }
    }
    free(buf);
    free(su);
    if (--s->pending == 0) /* every part answered already, or none started */
        s->failed || s->fseq <= 0 ? gsplit_end(s, 0, "a part not sent") : gsplit_finish(s);
    return;
fail:
    free(su);
    gsplit_end(s, 0, "out of memory or no members");
}

/* gsend_g_lua answered: a one-script answer (as gsend_lua's), or the group's part of a split. */
static void on_gsend_g_reply(redisReply *r, void *arg)
{
    struct gsend_req *s = arg;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e == NULL || r->elements != 7 || e[0]->type != REDIS_REPLY_INTEGER ||
        (e[0]->integer != 2 && e[0]->integer != 3)) {
        on_gsend_reply(r, arg);
        return;
    }
    for (size_t i = 1; i < 7; i++)
        if (e[i]->type != REDIS_REPLY_STRING && e[i]->type != REDIS_REPLY_INTEGER)
            goto bad;
    if (e[1]->type != REDIS_REPLY_STRING || e[3]->type != REDIS_REPLY_STRING ||
        e[4]->type != REDIS_REPLY_STRING || e[6]->type != REDIS_REPLY_STRING)
        goto bad;
    s->again = e[0]->integer == 3;
    snprintf(s->mid, sizeof(s->mid), "%s", e[1]->str);
    s->gn = e[2]->type == REDIS_REPLY_INTEGER ? e[2]->integer : strtoll(e[2]->str, NULL, 10);
    s->ts = e[5]->type == REDIS_REPLY_INTEGER ? e[5]->integer : strtoll(e[5]->str, NULL, 10);
    s->expires = s->ts + push.cfg->push.dedup_ttl_s * 1000;
    free(s->uids);
    free(s->body);
    free(s->json);
    s->body = s->json = NULL;
    if ((s->uids = strdup(e[3]->str)) == NULL || (s->json = malloc(e[4]->len + 1)) == NULL ||
        (s->body = malloc(e[6]->len + 1)) == NULL) {
        gsplit_end(s, 0, "out of memory");
        return;
    }
    memcpy(s->json, e[4]->str, e[4]->len + 1);
    s->json_len = e[4]->len;
    memcpy(s->body, e[6]->str, e[6]->len + 1);
    s->body_len = e[6]->len;
    rdsa_wait(on_ggroup_durable, s);
    return;
bad:
    gsplit_end(s, 0, "a malformed reply of the group's part");
}

void group_send(struct conn *c, const struct chatpkt *p)
{
    char dedup[64 + CHAT_MAX_ID], members[64], group[64], msgkey[64], mq[32], notify[32], restored[48],
        shards[16], conv[64], node[16], mid_s[24], from_s[24], gid_s[24], ts_s[24], ttl[24], keep[24],
        maxlen[24], conv_id[32], qmax[24], gsnd[96 + CHAT_MAX_ID], exp_s[24], *json = NULL;
    const char *argv[GSEND_G_ARGC];
    size_t argvlen[GSEND_G_ARGC], json_len = 0, dedup_len;
    struct gsend_req *s = NULL;
    struct chat_msg m;
    const char *bad, *live;
    int64_t mid, ts;

    /* self = 0: a group id may equal the sender's uid */
    if ((bad = chatpkt_message(p, 0, &m)) != NULL) {
        int malformed = strcmp(bad, CHAT_E_BAD_TO) == 0 || strcmp(bad, CHAT_E_BAD_MSG) == 0;
        chat_error(c, p->id, p->id_len, bad, malformed ? STATS_E_MALFORMED : STATS_E_REJECTED);
        return;
    }
    if (!rdsa_ready() || (live = cluster_live_nodes()) == NULL)
        goto failed;
    mid = id_next(&push.ids);
    ts = mp_now_ms();
    json = packet_chat(p->id, p->id_len, c->uid, m.to, 'g', m.body, m.body_len, ts, mid, &json_len);
    if (json == NULL || (s = calloc(1, sizeof(*s))) == NULL)
        goto failed;

    dedup_len = chat_dedup_key(dedup, sizeof(dedup), c->uid, p->id, p->id_len);
    key_tagged(members, sizeof(members), KEY_GROUP_MEMBERS, m.to);
    key_tagged(group, sizeof(group), KEY_GROUP, m.to);
    snprintf(msgkey, sizeof(msgkey), KEY_MSG, key_shard(m.to), (long long)mid);
    snprintf(mq, sizeof(mq), KEY_MQ, key_shard(m.to));
    snprintf(notify, sizeof(notify), KEY_NOTIFY, key_shard(m.to));
    snprintf(restored, sizeof(restored), KEY_SEQ_RESTORED, key_shard(m.to));
    snprintf(shards, sizeof(shards), "%d", key_shards());
    key_tagged(conv, sizeof(conv), KEY_CONV, c->uid);
    snprintf(node, sizeof(node), "%d", push.node);
    snprintf(mid_s, sizeof(mid_s), "%lld", (long long)mid);
    snprintf(from_s, sizeof(from_s), "%lld", (long long)c->uid);
    snprintf(gid_s, sizeof(gid_s), "%lld", (long long)m.to);
    snprintf(ts_s, sizeof(ts_s), "%lld", (long long)ts);
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->push.dedup_ttl_s);
    snprintf(keep, sizeof(keep), "%lld", push.cfg->timeline.keep_s);
    snprintf(maxlen, sizeof(maxlen), "%lld", push.cfg->timeline.max_entries);
    snprintf(conv_id, sizeof(conv_id), "g%lld", (long long)m.to);
    snprintf(qmax, sizeof(qmax), "%lld", push.cfg->notify.queue_maxlen);
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
#define ARGS(i, v)   ARG(i, v, strlen(v))
    ARG(0, dedup, dedup_len);
    ARGS(1, members);
    ARGS(2, group);
    ARGS(3, mq);
    ARGS(4, msgkey);
    ARGS(5, conv);
    ARGS(6, notify);
    ARGS(7, restored);
    ARGS(8, node);
    ARGS(9, mid_s);
    ARGS(10, from_s);
    ARGS(11, gid_s);
    ARG(12, p->id, p->id_len);
    ARG(13, m.body, m.body_len);
    ARGS(14, ts_s);
    ARGS(15, ttl);
    ARG(16, json, json_len);
    ARGS(17, keep);
    ARGS(18, maxlen);
    ARGS(19, live);
    ARGS(20, conv_id);
    ARGS(21, push.cfg->notify.webhook_url[0] != '\0' ? "1" : "");
    ARG(22, m.body, chat_preview_len(m.body, m.body_len));
    ARGS(23, qmax);
    ARGS(24, push.cfg->redis.min_replicas_acked > 0 ? "1" : "");
    ARGS(25, shards);
    chat_req_init(&s->r, c, p);
    s->gid = m.to;
    s->ts = ts;
    s->json = json;
    s->json_len = json_len;
    if (key_shards() > 1) {
        /* the split: KEY_GSND as the last key; the sender's keys only when they are in the group's shard */
        snprintf(gsnd, sizeof(gsnd), KEY_GSND, key_shard(m.to), (long long)m.to, (long long)c->uid, s->r.id);
        snprintf(exp_s, sizeof(exp_s), "%lld", (long long)(ts + push.cfg->push.dedup_ttl_s * 1000));
        memmove(argv + GSEND_NKEYS + 1, argv + GSEND_NKEYS, (GSEND_ARGC - GSEND_NKEYS) * sizeof(*argv));
        memmove(argvlen + GSEND_NKEYS + 1, argvlen + GSEND_NKEYS,
                (GSEND_ARGC - GSEND_NKEYS) * sizeof(*argvlen));
        ARGS(GSEND_NKEYS, gsnd);
        if (key_shard(c->uid) != key_shard(m.to)) {
            ARGS(0, gsnd);
            ARGS(5, gsnd);
        }
        ARGS(GSEND_ARGC + 1, key_shard(c->uid) == key_shard(m.to) ? "1" : "");
        ARGS(GSEND_ARGC + 2, exp_s);
        if (rdsa_eval(&gsend_g_lua, on_gsend_g_reply, s, GSEND_G_NKEYS, GSEND_G_ARGC, argv, argvlen) !=
            MP_OK) {
            chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
            gsend_free(s);
        }
        return;
    }
#undef ARGS
#undef ARG
    if (rdsa_eval(&gsend_lua, on_gsend_reply, s, GSEND_NKEYS, GSEND_ARGC, argv, argvlen) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        gsend_free(s);
    }
    return;

failed:
    chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    free(s);
    free(json);
}
