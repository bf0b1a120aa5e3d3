/* chat_send.c -- t and i: a message to a friend (SPEC §4, §6).
 *
 * One Redis round trip does it all, atomically, in send_lua: the (from, id) dedup check, the friend check,
 * XADD to the stream (the fields of stream.h, which magpie-persist reads), and PUBLISH of the delivery to
 * every other node holding a connection of the recipient or of the sender. The client gets A only after
 * Redis answered, so an A means the message is in the stream. A retry of the same (from, id) finds the
 * dedup key (kept push.dedup_ttl_s) and is acked again with the first message id, without being stored or
 * delivered twice. This node delivers to its own connections when the reply comes; the reply order is the
 * order Redis ran the scripts in, so messages between two users keep their order.
 */
#include "chat.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: dedup, friends of the sender, KEY_MQ, presence of the recipient, presence of the sender.
 * ARGV: node, mid, from, to, cid, type, body, ts, dedup TTL, delivery payload, CHAN_NODE prefix, suffix.
 * Returns {0, mid} accepted, {1, first mid} a retry, {-1} not friends. */
static struct rdsa_script send_lua = {
    "send",
    "local first = redis.call('GET', KEYS[1])\n"
    "if first then return {1, first} end\n"
    "if redis.call('SISMEMBER', KEYS[2], ARGV[4]) == 0 then return {-1} end\n"
    "redis.call('XADD', KEYS[3], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID
    "', ARGV[2], '" MQ_F_FROM "', ARGV[3], '" MQ_F_TO "', ARGV[4], '" MQ_F_CID "', ARGV[5], '" MQ_F_TYPE
    "', ARGV[6], '" MQ_F_BODY "', ARGV[7], '" MQ_F_TS "', ARGV[8])\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[9])\n"
    "local sent = {}\n"
    "for k = 4, 5 do\n"
    "  local h = redis.call('HGETALL', KEYS[k])\n"
    "  for j = 1, #h, 2 do\n"
    "    local node = h[j]\n"
    "    if node ~= ARGV[1] and not sent[node] and tonumber(h[j + 1]) > 0 then\n"
    "      sent[node] = true\n"
    "      redis.call('PUBLISH', ARGV[11] .. node .. ARGV[12], ARGV[10])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {0, ARGV[2]}\n",
    ""};

static char chan_prefix[64], chan_suffix[64];

struct send_req {
    struct chat_req r;
    int64_t to;
    int64_t ts;
    struct frame *f; /* the packet recipients get */
};

void chat_send_init(void)
{
    char buf[64];
    const char *zero;
    rdsa_script(&send_lua);
    snprintf(buf, sizeof(buf), CHAN_NODE, 0);
    zero = strchr(buf, '0');
    snprintf(chan_prefix, sizeof(chan_prefix), "%.*s", (int)(zero - buf), buf);
    snprintf(chan_suffix, sizeof(chan_suffix), "%s", zero + 1);
}

static void on_send_reply(redisReply *r, void *arg)
{
    struct send_req *s = arg;
    struct conn *c = s->r.c;
    json_t *mid;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("send script failed reason=\"%s\"", r->str);
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (r->element[0]->integer < 0) {
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_NOT_FRIENDS, STATS_E_REJECTED);
    } else {
        mid = r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING ? json_string(r->element[1]->str)
                                                                           : NULL;
        chat_reply(c, s->r.id, s->r.id_len, 'A', json_string("success"), json_pack("{s:o*}", "mid", mid));
        stats_ack();
        if (r->element[0]->integer == 0) {
            chat_deliver(s->to, s->f, NULL, s->ts);
            chat_deliver(c->uid, s->f, c, s->ts);
        }
    }
    frame_unref(s->f);
    chat_req_done(&s->r);
    free(s);
}

/* The Redis key remembering (from, id): KEY_DEDUP with the client's id appended by length, since the id may
 * hold any bytes. Returns its length; buf holds at least 64 + CHAT_MAX_ID bytes. */
static size_t dedup_key(char *buf, size_t size, int64_t from, const char *id, size_t id_len)
{
    int n = snprintf(buf, size, KEY_DEDUP, (long long)from, "");
    if (n < 0 || (size_t)n + id_len > size)
        return 0;
    memcpy(buf + n, id, id_len);
    return (size_t)n + id_len;
}

void chat_send(struct conn *c, const struct chatpkt *p)
{
    char dedup[64 + CHAT_MAX_ID], friends[64], pto[64], pfrom[64], node[16], mid_s[24], from_s[24], to_s[24],
        ts_s[24], ttl[24], type[2] = {p->type, '\0'}, *json = NULL, *payload = NULL;
    const char *argv[17];
    size_t argvlen[17], json_len, payload_len, dedup_len;
    struct send_req *s = NULL;
    struct chat_msg m;
    const char *bad;
    int64_t mid, ts;

    if ((bad = chatpkt_message(p, c->uid, &m)) != NULL) {
        int malformed = strcmp(bad, CHAT_E_BAD_TO) == 0 || strcmp(bad, CHAT_E_BAD_MSG) == 0;
        chat_error(c, p->id, p->id_len, bad, malformed ? STATS_E_MALFORMED : STATS_E_REJECTED);
        return;
    }
    if (!rdsa_ready())
        goto failed;
    mid = id_next(&push.ids);
    ts = mp_now_ms();
    json = chatpkt_chat(p->id, p->id_len, c->uid, m.to, p->type, m.body, m.body_len, ts, mid, &json_len);
    if (json == NULL || (s = calloc(1, sizeof(*s))) == NULL ||
        (s->f = frame_new(json, json_len, 0)) == NULL ||
        (payload = chatpkt_delivery(m.to, c->uid, ts, json, json_len, &payload_len)) == NULL)
        goto failed;

    dedup_len = dedup_key(dedup, sizeof(dedup), c->uid, p->id, p->id_len);
    snprintf(friends, sizeof(friends), KEY_FRIENDS, (long long)c->uid);
    snprintf(pto, sizeof(pto), KEY_PRESENCE, (long long)m.to);
    snprintf(pfrom, sizeof(pfrom), KEY_PRESENCE, (long long)c->uid);
    snprintf(node, sizeof(node), "%d", push.node);
    snprintf(mid_s, sizeof(mid_s), "%lld", (long long)mid);
    snprintf(from_s, sizeof(from_s), "%lld", (long long)c->uid);
    snprintf(to_s, sizeof(to_s), "%lld", (long long)m.to);
    snprintf(ts_s, sizeof(ts_s), "%lld", (long long)ts);
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->push.dedup_ttl_s);
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
    ARG(0, dedup, dedup_len);
    ARG(1, friends, strlen(friends));
    ARG(2, KEY_MQ, strlen(KEY_MQ));
    ARG(3, pto, strlen(pto));
    ARG(4, pfrom, strlen(pfrom));
    ARG(5, node, strlen(node));
    ARG(6, mid_s, strlen(mid_s));
    ARG(7, from_s, strlen(from_s));
    ARG(8, to_s, strlen(to_s));
    ARG(9, p->id, p->id_len);
    ARG(10, type, 1);
    ARG(11, m.body, m.body_len);
    ARG(12, ts_s, strlen(ts_s));
    ARG(13, ttl, strlen(ttl));
    ARG(14, payload, payload_len);
    ARG(15, chan_prefix, strlen(chan_prefix));
    ARG(16, chan_suffix, strlen(chan_suffix));
#undef ARG
    chat_req_init(&s->r, c, p);
    s->to = m.to;
    s->ts = ts;
    if (rdsa_eval(&send_lua, on_send_reply, s, 5, 17, argv, argvlen) != MP_OK) {
        chat_req_done(&s->r);
        goto failed;
    }
    free(json);
    free(payload);
    return;

failed:
    chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    if (s != NULL)
        frame_unref(s->f);
    free(s);
    free(json);
    free(payload);
}
