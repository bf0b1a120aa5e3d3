/* group_send.c -- g: a message to a group (SPEC §4.2; the design is push/group.h).
 *
 * One Redis script, like t (chat_send.c): the (from, id) dedup check, the membership check against
 * KEY_GROUP_MEMBERS, a seq in every member's timeline (mp_fanout, shared/group_lua.h), the group's count and
 * latest mid, KEY_MSG, the sender's read mark, one stream entry, and the delivery sent to every other
 * live node (the live node ids in ARGV, this node's view: push/cluster.h says how fresh). The client gets A
 * (mid, the sender's seq) only after Redis answered. The reply carries every member's seq, from which this
 * node delivers to its own connections, in the order Redis ran the scripts. A non-member, or a group that
 * does not exist, gets E "not a member" (one answer for both, so ids cannot be probed), and the message takes
 * no seq.
 *
 * With redis.min_replicas_acked the A, the deliveries to other nodes and this node's own deliveries wait
 * for rdsa_wait, as in chat_send.c (which says why): the script then returns the nodes' channels instead
 * of publishing, and a retry refreshes the dedup key's TTL so the WAIT covers the first attempt too.
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

/* KEYS: dedup, KEY_GROUP_MEMBERS, KEY_GROUP, KEY_MQ, KEY_MSG of mid, KEY_CONV of the sender, KEY_NOTIFY,
 * KEY_SEQ_RESTORED; KEY_MQ, KEY_MSG, KEY_NOTIFY and KEY_SEQ_RESTORED of the group's shard (keys.h). The
 * members' keys (counters, timelines, presence, conversations, their KEY_MSG copies) are built here from
 * their uids (group_lua.h): with redis.stream_shards > 1 that spans shards, which the cluster split must
 * replace by a script per shard.
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
    LUA_SHEBANG
    "local " KEY_LUA_SHARDS " = ARGV[18]\n" GROUP_LUA_LIB "local first = redis.call('GET', KEYS[1])\n"
    "if first then\n"
    "  if ARGV[17] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[8]) end\n"
    "  return {1, first}\n"
    "end\n"
    "if not redis.call('HGET', KEYS[2], ARGV[3]) then return {-1} end\n"
    "local uids = redis.call('HKEYS', KEYS[2])\n"
    "if not mp_counters_ok(uids, KEYS[8]) then return {-3} end\n"
    "local pr, err = mp_fanout(uids, ARGV[2], ARGV[13], ARGV[10], ARGV[11])\n"
    "if not pr then return {-2, err} end\n"
    "local gn = redis.call('HINCRBY', KEYS[3], '" GROUP_F_COUNT "', 1)\n"
    "redis.call('HSET', KEYS[3], '" GROUP_F_LAST "', ARGV[2])\n"
    "local fs, flat = 0, {}\n"
    "for j = 1, #pr, 2 do\n"
    "  if pr[j] == ARGV[3] then fs = pr[j + 1] end\n"
    "  flat[#flat + 1] = pr[j] .. ' ' .. pr[j + 1]\n"
    "end\n"
    "flat = table.concat(flat, ' ')\n"
    "redis.call('HSET', KEYS[5], '" MSG_F_PACKET "', ARGV[9], '" MSG_F_GROUP "', ARGV[4], '" MSG_F_GROUP_N
    "', gn)\n"
    "redis.call('EXPIRE', KEYS[5], ARGV[10])\n"
    "mp_msg_copies(KEYS[5], ARGV[2], uids, ARGV[10])\n"
    "redis.call('HSET', KEYS[6], ARGV[13] .. '" CONV_F_READ "', ARGV[2], ARGV[13] .. '" CONV_F_READ_IN
    "', gn)\n"
    "redis.call('XADD', KEYS[4], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID
    "', ARGV[2], '" MQ_F_FROM "', ARGV[3], '" MQ_F_TO "', ARGV[4], '" MQ_F_CID "', ARGV[5], '" MQ_F_TYPE
    "', 'g', '" MQ_F_BODY "', ARGV[6], '" MQ_F_TS "', ARGV[7], '" MQ_F_FROM_SEQ "', fs, '" MQ_F_GROUP
    "', ARGV[4], '" MQ_F_GROUP_N "', gn, '" MQ_F_SEQS "', mp_seqs(pr, ARGV[3]))\n"
    "redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. fs, 'EX', ARGV[8])\n"
    "local payload = '" GROUP_DELIVERY_HEAD "' .. ARGV[7] .. '\\n' .. flat .. '\\n' .. ARGV[9]\n"
    "local out = {0, ARGV[2], fs, flat}\n"
    "if ARGV[17] == '1' then\n"
    "  for n in string.gmatch(ARGV[12], '[^,]+') do\n"
    "    if n ~= ARGV[1] then\n"
    "      out[5] = payload\n"
    "      out[#out + 1] = mp_node_chan(n, mp_shard(ARGV[4]))\n"
    "    end\n"
    "  end\n"
    "else\n"
    "  mp_publish(payload, ARGV[1], ARGV[12], mp_shard(ARGV[4]))\n"
    "end\n"
    /* Offline notifications (notify/notify_worker.h): one event per member but the sender with no connection
     * on a live node, in the same script as the message. */
    "if ARGV[14] == '1' then\n"
    /* The live nodes once per message, not a ZSCORE per member's node: a 500-member group's online
     * members cost a command each less (bench/README.md, Groups). */
    "  local live = {}\n"
    "  for n in string.gmatch(ARGV[12], '[^,]+') do live[n] = true end\n"
    "  for j = 1, #pr, 2 do\n"
    "    local u, online = pr[j], false\n"
    "    if u ~= ARGV[3] then\n"
    "      local h = redis.call('HGETALL', mp_key('" KEY_PRESENCE_NAME "', u))\n"
    "      for k = 1, #h, 2 do\n"
    "        if tonumber(h[k + 1]) > 0 and live[h[k]] then online = true break end\n"
    "      end\n"
    "      if not online then\n"
    "        local rn = tonumber(redis.call('HGET', mp_key('" KEY_CONV_NAME
    "', u), ARGV[13] .. '" CONV_F_READ_IN "') or '0')\n"
    "        redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[16], '*', '" NT_F_VERSION
    "', '" NOTIFY_FORMAT_VERSION "', '" NT_F_TYPE "', 'message', '" NT_F_KIND "', 'g', '" NT_F_TO
    "', u, '" NT_F_FROM "', ARGV[3], '" NT_F_CONV "', ARGV[13], '" NT_F_MID "', ARGV[2], '" NT_F_SEQ
    "', pr[j + 1], '" NT_F_TS "', ARGV[7], '" NT_F_PREVIEW "', ARGV[15], '" NT_F_UNREAD "', gn - rn)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n",
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
};

static void gsend_free(struct gsend_req *s)
{
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

void group_send(struct conn *c, const struct chatpkt *p)
{
    char dedup[64 + CHAT_MAX_ID], members[64], group[64], msgkey[64], mq[32], notify[32], restored[48],
        shards[16], conv[64], node[16], mid_s[24], from_s[24], gid_s[24], ts_s[24], ttl[24], keep[24],
        maxlen[24], conv_id[32], qmax[24], *json = NULL;
    const char *argv[GSEND_ARGC];
    size_t argvlen[GSEND_ARGC], json_len = 0, dedup_len;
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
#undef ARGS
#undef ARG
    chat_req_init(&s->r, c, p);
    s->gid = m.to;
    s->ts = ts;
    s->json = json;
    s->json_len = json_len;
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
