/* conv.c -- GET /conversations (SPEC §4.1): the caller's conversations, most recent first, each with its
 * latest message (with the caller's seq), the number of messages after the read mark that the caller did not
 * send, and the read mark; "next" is the cursor of the following page (null on the last).
 *
 * The keys are the design of push/chat_read.c (KEY_CONVS, KEY_CONV, written by magpie-push's send and read
 * scripts): one script reads a page of them with the latest packets Redis still has (KEY_MSG); the packets
 * Redis no longer has come from MySQL's messages table. Per shard (issue 20: on a Redis Cluster a script or
 * command keeps to one slot, and a group's keys are in its own shard, keys.h): the script reads only the
 * caller's shard (its KEY_CONVS, KEY_CONV and KEY_MSG copies); then, when the page has groups, one pipeline
 * of single-key reads of the groups' keys (grouped per master on a cluster: shared/rds.h) and one of the
 * packets of their latest mids in the caller's shard, merged here. These are reads in three round trips,
 * not one snapshot: a message or member change between them shows as it would in the next call. Query: limit
 * (1..CONV_MAX_LIMIT, default CONV_DEFAULT_LIMIT) and cursor (a "next": conversations whose latest entry's
 * seq is below it). A user's seqs are unique, so a page boundary never splits or repeats a conversation.
 *
 * A group conversation "g<gid>" (push/group.h, keys.h's note on group conversations): while the caller is a
 * member (in KEY_GROUP_MEMBERS), its latest mid and message count are the group's (KEY_GROUP's GROUP_F_LAST,
 * GROUP_F_COUNT); once it is not, the CONV_F_LAST / CONV_F_IN frozen when it left. Its read mark's
 * CONV_F_READ_IN is the group number of the message read up to, so unread = count - that, as for 1:1.
 */
#include "call.h"
#include "handlers.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "packet.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_DEFAULT_LIMIT 20
#define CONV_MAX_LIMIT     100
#define CONV_FIELDS        7 /* per conversation in the script's answer */

/* KEYS: KEY_CONVS, KEY_CONV of the caller. ARGV: the highest score ("+inf" or "(<cursor>"), how many,
 * KEY_MSG's prefix in the caller's shard (its copies). Every key is the caller's shard's: a group's own keys
 * are read after it, per shard (conv_groups). Returns per conversation: id, seq of its latest entry, latest
 * mid, received, read mid, received at the read mark (for a group: the frozen ones, or none), the latest
 * packet (nil when Redis no longer has it). */
static const char conv_lua[] = LUA_SHEBANG
    "local z = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])\n"
    "local out = {}\n"
    "for i = 1, #z, 2 do\n"
    "  local c = z[i]\n"
    "  local f = redis.call('HMGET', KEYS[2], c .. '" CONV_F_LAST "', c .. '" CONV_F_IN
    "', c .. '" CONV_F_READ "', c .. '" CONV_F_READ_IN "')\n"
    "  local p = false\n"
    "  if f[1] then p = redis.call('HGET', ARGV[3] .. f[1], '" MSG_F_PACKET "') end\n"
    "  out[#out + 1] = c\n"
    "  out[#out + 1] = z[i + 1]\n"
    "  out[#out + 1] = f[1] or ''\n"
    "  out[#out + 1] = f[2] or '0'\n"
    "  out[#out + 1] = f[3] or ''\n"
    "  out[#out + 1] = f[4] or '0'\n"
    "  out[#out + 1] = p\n"
    "end\n"
    "return out\n";

static long long num(const char *s);

/* One conversation of the page, as merged from the caller's shard and its group's. */
struct conv_item {
    char last[24];      /* latest mid ("" none) */
    long long in;       /* received (a group: its message count while the caller is a member) */
    const char *packet; /* the latest packet (in a reply below), NULL = not in Redis */
    size_t packet_len;
    redisReply *own; /* the reply holding packet when it is not the page's */
};

/* The groups of the page (it[i] for the "g<gid>" ids of r), in their own shards: while the caller is a
 * member (KEY_GROUP_MEMBERS), the group's GROUP_F_LAST and GROUP_F_COUNT replace the frozen ones, and the
 * packet of that latest mid is read from the caller's shard's copy (prefix). One pipeline of reads for all
 * the groups (grouped per master on a cluster: rds.h), then one of the packets. MP_OK or MP_EAGAIN (Redis
 * did not answer). */
static int conv_groups(struct call *c, const redisReply *r, size_t m, struct conv_item *it,
                       const char *prefix)
{
    char key[64], uid[24];
    size_t i, asked = 0;
    redisReply *h, *g;

    snprintf(uid, sizeof(uid), "%lld", (long long)c->uid);
    for (i = 0; i < m; i++) {
        const char *id = r->element[i * CONV_FIELDS]->str;
        if (id == NULL || id[0] != 'g')
            continue;
        key_tagged(key, sizeof(key), KEY_GROUP_MEMBERS, (int64_t)num(id + 1));
        if (rds_append(&c->w->rds, "HEXISTS %s %s", key, uid) != MP_OK)
            goto unavailable;
        key_tagged(key, sizeof(key), KEY_GROUP, (int64_t)num(id + 1));
        if (rds_append(&c->w->rds, "HMGET %s " GROUP_F_LAST " " GROUP_F_COUNT, key) != MP_OK)
            goto unavailable;
        asked++;
    }
    for (i = 0; i < m && asked > 0; i++) {
        const char *id = r->element[i * CONV_FIELDS]->str;
        if (id == NULL || id[0] != 'g')
            continue;
        asked--;
        h = rds_reply(&c->w->rds);
        g = h ? rds_reply(&c->w->rds) : NULL;
        if (h == NULL || g == NULL || h->type != REDIS_REPLY_INTEGER || g->type != REDIS_REPLY_ARRAY ||
            g->elements != 2) {
            if (h != NULL && h->type == REDIS_REPLY_ERROR)
                log_error("conversations: a group's keys failed reason=\"%s\"", h->str);
            freeReplyObject(h);
            freeReplyObject(g);
            if (asked > 0 || h == NULL || g == NULL)
                rds_discard(&c->w->rds);
            return MP_EAGAIN;
        }
        if (h->integer == 1) {
            const char *last = g->element[0]->type == REDIS_REPLY_STRING ? g->element[0]->str : "";
            if (strcmp(last, it[i].last) != 0) {
                snprintf(it[i].last, sizeof(it[i].last), "%s", last);
                it[i].packet = NULL; /* the frozen one's is not this */
                it[i].packet_len = 0;
            }
            it[i].in = g->element[1]->type == REDIS_REPLY_STRING ? num(g->element[1]->str) : 0;
        }
        freeReplyObject(h);
        freeReplyObject(g);
    }
    /* the packets of the groups' latest mids, from the caller's shard's copies */
    for (i = 0; i < m; i++)
        if (it[i].packet == NULL && it[i].last[0] != '\0') {
            if (rds_append(&c->w->rds, "HGET %s%s " MSG_F_PACKET, prefix, it[i].last) != MP_OK)
                goto unavailable;
            asked++;
        }
    for (i = 0; i < m && asked > 0; i++)
        if (it[i].packet == NULL && it[i].last[0] != '\0') {
            asked--;
            if ((h = rds_reply(&c->w->rds)) == NULL) {
                if (asked > 0)
                    rds_discard(&c->w->rds);
                return MP_EAGAIN;
            }
            if (h->type == REDIS_REPLY_STRING) {
                it[i].own = h;
                it[i].packet = h->str;
                it[i].packet_len = h->len;
            } else {
                freeReplyObject(h);
            }
        }
    return MP_OK;
unavailable:
    rds_discard(&c->w->rds);
    return MP_EAGAIN;
}

static long long num(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

/* The packets of the given mids from MySQL, as an object mid -> packet string. NULL when MySQL is down. */
static json_t *packets_from_mysql(struct call *c, const long long *mids, size_t n)
{
    MYSQL *m = db_conn(&c->w->db);
    MYSQL_RES *res;
    MYSQL_ROW row;
    json_t *out;
    char *sql, *p;
    size_t cap = 64 + strlen(PACKET_COLS) + n * 24;

    if (m == NULL || (sql = malloc(cap)) == NULL)
        return NULL;
    p = sql + sprintf(sql, "SELECT " PACKET_COLS " FROM messages WHERE id IN (");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%lld", i ? "," : "", mids[i]);
    strcpy(p, ")");
    if (mysql_real_query(m, sql, (unsigned long)strlen(sql)) != 0 || (res = mysql_store_result(m)) == NULL) {
        if (db_check_error(&c->w->db) != MP_EAGAIN)
            log_error("conversations query failed uid=%lld error=\"%s\"", (long long)c->uid, mysql_error(m));
        free(sql);
        return NULL;
    }
    free(sql);
    out = json_object();
    while (out != NULL && (row = mysql_fetch_row(res)) != NULL) {
        size_t len;
        char *pk = packet_from_row(row, mysql_fetch_lengths(res), &len);
        if (pk != NULL && row[0] != NULL)
            json_object_set_new(out, row[0], json_stringn(pk, len));
        free(pk);
    }
    mysql_free_result(res);
    return out;
}

/* The latest packet of one conversation with the caller's seq, as a JSON object; NULL when there is none. */
static json_t *last_packet(const char *packet, size_t len, long long seq)
{
    size_t n;
    char *s = packet ? packet_with_seq(packet, len, seq, &n) : NULL;
    json_t *v = s ? json_loadb(s, n, 0, NULL) : NULL;
    free(s);
    return v;
}

void conv_list(struct call *c)
{
    long long limit = CONV_DEFAULT_LIMIT, cursor = 0, *missing = NULL;
    char convs[64], conv[64], prefix[48], max[32], count[24];
    const char *argv[8];
    redisReply *r = NULL;
    json_t *list = NULL, *fromdb = NULL;
    struct conv_item *it = NULL;
    size_t n = 0, m = 0, nmissing = 0, i;
    int rc;

    if (query_int(c, "limit", 1, CONV_MAX_LIMIT, &limit) < 0 ||
        (rc = query_int(c, "cursor", 1, INT64_MAX / 2, &cursor)) < 0)
        return;
    key_tagged(convs, sizeof(convs), KEY_CONVS, c->uid);
    key_tagged(conv, sizeof(conv), KEY_CONV, c->uid);
    key_msg_prefix(prefix, sizeof(prefix), key_shard(c->uid));
    if (rc == 0)
        snprintf(max, sizeof(max), "(%lld", cursor);
    else
        snprintf(max, sizeof(max), "+inf");
    snprintf(count, sizeof(count), "%lld", limit + 1); /* one more tells whether there is a next page */
    argv[0] = "EVAL";
    argv[1] = conv_lua;
    argv[2] = "2";
    argv[3] = convs;
    argv[4] = conv;
    argv[5] = max;
    argv[6] = count;
    argv[7] = prefix;
    r = rds_cmdargv(&c->w->rds, 8, argv, NULL);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % CONV_FIELDS != 0) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_error("conversations script failed reason=\"%s\"", r->str);
        reply_unavailable(c, "redis");
        goto done;
    }
    n = r->elements / CONV_FIELDS;
    m = n < (size_t)limit ? n : (size_t)limit;
    if ((missing = calloc(n + 1, sizeof(*missing))) == NULL || (it = calloc(n + 1, sizeof(*it))) == NULL ||
        (list = json_array()) == NULL) {
        reply_unavailable(c, "redis");
        goto done;
    }
    for (i = 0; i < m; i++) {
        redisReply **e = &r->element[i * CONV_FIELDS];
        snprintf(it[i].last, sizeof(it[i].last), "%s", e[2]->str ? e[2]->str : "");
        it[i].in = num(e[3]->str);
        if (e[6]->type == REDIS_REPLY_STRING) {
            it[i].packet = e[6]->str;
            it[i].packet_len = e[6]->len;
        }
    }
    if (conv_groups(c, r, m, it, prefix) != MP_OK) {
        reply_unavailable(c, "redis");
        goto done;
    }
    for (i = 0; i < m; i++)
        if (it[i].packet == NULL && it[i].last[0] != '\0')
            missing[nmissing++] = num(it[i].last);
    if (nmissing > 0 && (fromdb = packets_from_mysql(c, missing, nmissing)) == NULL) {
        reply_unavailable(c, "mysql");
        goto done;
    }
    for (i = 0; i < m; i++) {
        redisReply **e = &r->element[i * CONV_FIELDS];
        const char *id = e[0]->str ? e[0]->str : "", *packet = it[i].packet;
        size_t packet_len = it[i].packet_len;
        json_t *item, *last;
        long long seq = num(e[1]->str), unread = it[i].in - num(e[5]->str);

        if (packet == NULL && fromdb != NULL && it[i].last[0] != '\0') {
            json_t *s = json_object_get(fromdb, it[i].last);
            packet = json_string_value(s);
            packet_len = json_string_length(s);
        }
        last = last_packet(packet, packet_len, seq);
        if (id[0] == 'u')
            item = json_pack("{s:I}", "with", (json_int_t)num(id + 1));
        else
            item = json_pack("{s:I}", "group", (json_int_t)num(id + 1));
        if (item == NULL) {
            json_decref(last);
            continue;
        }
        json_object_set_new(item, "last", last ? last : json_null());
        json_object_set_new(item, "unread", json_integer(unread > 0 ? unread : 0));
        json_object_set_new(item, "read_mid",
                            e[4]->str && e[4]->str[0] ? json_string(e[4]->str) : json_null());
        json_array_append_new(list, item);
    }
    {
        json_t *next = json_null();
        if (n > (size_t)limit)
            next = json_string(r->element[((size_t)limit - 1) * CONV_FIELDS + 1]->str);
        reply(c, API_OK, json_pack("{s:o,s:o}", "conversations", list, "next", next));
        list = NULL;
    }
done:
    json_decref(list);
    json_decref(fromdb);
    free(missing);
    if (it != NULL)
        for (i = 0; i < m; i++)
            freeReplyObject(it[i].own);
    free(it);
    if (r != NULL)
        freeReplyObject(r);
}
