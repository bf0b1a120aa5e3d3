/* chat_read.c -- R: read marks and read receipts (SPEC §4.1). This comment is the design of conversations
 * and read marks; the keys are in shared/keys.h.
 *
 * The send script (chat_send.c) keeps, for both users of every stored message, the conversation's place in
 * KEY_CONVS (by the user's seq of its latest entry) and in KEY_CONV its latest mid and how many messages the
 * user has received in it; the message's KEY_MSG records how many each of the two had received when it was
 * stored. So unread = received - received at the read mark, exact and O(1), and GET /conversations
 * (magpie-http, http/conv.c) reads both keys and nothing else but the latest packets.
 *
 * R {with, mid}: read_lua checks that mid is a message between the reader and `with` (from KEY_MSG; when
 * Redis no longer has it, a pool thread reads the message from MySQL and counts what the reader had
 * received up to it, then runs read_lua again with that), moves the read mark forward only (an R for an
 * older message changes nothing but is acked), and when it moved, r goes to the reader's other connections
 * and, with chat.read_receipts, a receipt r {with: reader, mid} to the other user, on every node (the
 * CHAN_NODE packet "u <uid>\n<packet>" to the nodes in their presence; this node delivers its own). The
 * scripts' "CHAN_NODE prefix" is that of the script's shard (SPUBLISH in its own slot, shared/bus.h): the
 * reader's for the reader's r, the other user's for the receipt step.
 *
 * R {group, mid}: gread_lua, the same steps for a group conversation (push/group.h): the reader a member, or
 * a former one (frozen counts) reading what it got while it was; the mark is the message's number in the
 * group (MSG_F_GROUP_N, or messages.group_seq from MySQL); no receipts in groups.
 *
 * With redis.min_replicas_acked (shared/sentinel.h: what WAIT guarantees) the A and the r packets wait for
 * rdsa_wait, as t does (chat_send.c): the scripts return the channels instead of publishing, and this node
 * publishes and delivers only once enough replicas hold the mark, so no device is shown a read position
 * that a failover takes back. Fewer: E "temporarily unavailable", the mark stays on the master, and the
 * retry either finds it there (no move: A, but the r packets of the refused attempt are never sent; the
 * other devices see the mark in GET /conversations) or, after a failover that lost it, moves it afresh.
 * An R whose mark does not move writes it again, so that its WAIT covers an earlier attempt that moved it
 * on another connection.
 *
 * The split (issue 20, SPEC §7: on a Redis Cluster a script touches the keys of one slot, and with
 * redis.stream_shards = S > 1 each user's and group's keys are in its shard's slot: shared/keys.h). When the
 * reader and the other user (or the group) are in one shard -- always at S = 1 -- one script does it all, as
 * above. Otherwise:
 *   1:1, two shards. (1) read_lua in the reader's shard, given only the reader's keys (KEY_CONV, its KEY_MSG
 *   copy, its presence) and no receipt payload: the check, the mark, the r to the reader's other
 *   connections; it answers the mark as it now stands (its seq and mid: this R's message when it moved, the
 *   earlier mark when it did not). (2) With chat.read_receipts, once (1) answered (and its WAIT on the
 *   reader's master), receipt_lua in the other user's shard, with that mark: the receipt to the other
 *   user's connections, at most once per mark, since it records the reader's seq of the last mark it sent
 *   in the other user's KEY_CONV ("u<reader>" CONV_F_RECEIPT) and sends nothing for a mark at or below it.
 *   The A goes after (2) answered (and its WAIT on the other user's master); this node delivers the
 *   reader's r to its own connections after (1) (when the mark moved), the receipt after (2) (when sent
 *   now). Each delivery is published by the script (or, with WAIT, the code) of its user's shard.
 *   Failures: (1) refused or unanswered: E, nothing written. (2) refused or unanswered (Redis down, the node
 *   killed between the two): E; the reader's part stays: the mark has moved, the reader's devices got r
 *   (and see it in GET /conversations), the other user got no receipt yet. The client retries an unacked R
 *   (SPEC §4): (1) finds the mark in place (no move: no second r to the reader's devices) and answers it,
 *   and (2) runs again for it -- it sends the receipt once, or, when the first attempt's (2) had run,
 *   finds it recorded and sends nothing. Either way A. A receipt step that runs for an R whose mark did not
 *   move (an older message) finds the mark's receipt recorded and costs one round trip, nothing else.
 *   With redis.min_replicas_acked, a receipt whose WAIT fell short is recorded but not sent, and its retry
 *   finds it recorded: like the r packets of a refused attempt above, it is never sent (the other user
 *   sees the next mark's).
 *   Known gap: an R whose (2) failed and that the client never retries leaves the other user without that
 *   receipt (the next R that moves the mark sends its own, for the later mark).
 *   Group, two shards. First HEXISTS of the reader in KEY_GROUP_MEMBERS, a command in the group's shard;
 *   then gread_lua in the reader's shard with the answer in ARGV (KEYS all the reader's). Nothing is written
 *   in the group's shard, so there is no half-done state: a failure of either step is E with nothing
 *   written, and the retry starts over. The two steps are not atomic: a member removed between them may
 *   still move its own mark once past its frozen count, which shows as 0 unread (GET /conversations never
 *   shows a negative count); nobody else sees it.
 */
#include "chat.h"
#include "dbpool.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: KEY_CONV of the reader, KEY_MSG of mid, presence of the reader, of the other user (the reader's
 * again when the two are in two shards: the split, at the top; then ARGV[9] is "").
 * ARGV: reader, other user, mid, "" or "<reader's seq of mid> <received up to it>" (known from MySQL), node,
 * CHAN_NODE prefix, suffix, the reader's r payload, the other user's ("" = no receipt here), "1" when the
 * caller WAITs (then the r deliveries are returned, not published, and a mark that does not move is written
 * again so that the WAIT covers it: an earlier attempt may have moved it and been refused).
 * Returns {0} mid unknown to Redis, {-1} mid not between the two, {1, 1, k, seq, mid, channel...} the mark
 * moved to (mid, the reader's seq of it) (with "1": the first k channels are for the reader's payload, the
 * rest for the other user's; without, none), {1, 0, 0, seq, mid} it did not: the mark stays at (mid, seq)
 * (both "" when there is none). */
static struct rdsa_script read_lua = {
    "read",
    LUA_SHEBANG "local seq, n\n"
                "if ARGV[4] == '' then\n"
                "  local m = redis.call('HMGET', KEYS[2], '" MSG_F_PACKET "', '" MSG_F_FROM_SEQ
                "', '" MSG_F_TO_SEQ "', '" MSG_F_FROM_IN "', '" MSG_F_TO_IN "')\n"
                "  if not m[1] then return {0} end\n"
                "  local pk = cjson.decode(m[1])\n"
                "  local f, t = string.format('%.0f', pk['from']), string.format('%.0f', pk['to'])\n"
                "  if f == ARGV[1] and t == ARGV[2] then seq, n = m[2], m[4]\n"
                "  elseif f == ARGV[2] and t == ARGV[1] then seq, n = m[3], m[5]\n"
                "  else return {-1} end\n"
                "else\n"
                "  seq, n = string.match(ARGV[4], '^(%d+) (%d+)$')\n"
                "end\n"
                "local conv = 'u' .. ARGV[2]\n"
                "local cur = redis.call('HGET', KEYS[1], conv .. '" CONV_F_READ_SEQ "')\n"
                "if tonumber(seq) <= tonumber(cur or '0') then\n"
                "  if ARGV[10] == '1' and cur then redis.call('HSET', KEYS[1], conv .. '" CONV_F_READ_SEQ
                "', cur) end\n"
                "  local at = redis.call('HGET', KEYS[1], conv .. '" CONV_F_READ "')\n"
                "  return {1, 0, 0, cur or '', at or ''}\n"
                "end\n"
                "redis.call('HSET', KEYS[1], conv .. '" CONV_F_READ "', ARGV[3], conv .. '" CONV_F_READ_SEQ
                "', seq, conv .. '" CONV_F_READ_IN "', n)\n"
                "local out = {1, 1, 0, seq, ARGV[3]}\n"
                "for k = 3, 4 do\n"
                "  local payload = ARGV[5 + k]\n"
                "  if payload ~= '' then\n"
                "    local h = redis.call('HGETALL', KEYS[k])\n"
                "    for j = 1, #h, 2 do\n"
                "      if h[j] ~= ARGV[5] and tonumber(h[j + 1]) > 0 then\n"
                "        local ch = ARGV[6] .. h[j] .. ARGV[7]\n"
                "        if ARGV[10] == '1' then\n"
                "          out[#out + 1] = ch\n"
                "          if k == 3 then out[3] = out[3] + 1 end\n"
                "        else\n"
                "          redis.call('SPUBLISH', ch, payload)\n"
                "        end\n"
                "      end\n"
                "    end\n"
                "  end\n"
                "end\n"
                "return out\n",
    ""};

/* R {group, mid} (push/group.h). KEYS: KEY_CONV of the reader, KEY_MSG of mid, KEY_GROUP_MEMBERS (the
 * reader's KEY_CONV again when the group is in another shard: the split, at the top; then ARGV[11] says),
 * presence of the reader. ARGV: reader, conversation id "g<gid>", mid, "" or the message's number in the
 * group (known from MySQL), node, CHAN_NODE prefix, suffix, the reader's r payload, gid, "1" when the caller
 * WAITs (as in read_lua), "" (KEYS[3] says whether the reader is a member) or "1" / "0" (it is / is not:
 * asked in the group's shard just before). Returns {0} mid unknown to Redis, {-5} the reader is not and never
 * was a member, {-1} mid is not a g of this group (or one sent after the reader left), {1, 1, k, n, mid,
 * channel...} the mark moved (as read_lua's, n the group number; no receipts, so every channel is for the
 * reader's payload), {1, 0, 0, n, mid} it did not. */
static struct rdsa_script gread_lua = {
    "gread",
    LUA_SHEBANG
    "local member = ARGV[11] == '1'\n"
    "if ARGV[11] == '' then member = redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 end\n"
    "local frozen = redis.call('HGET', KEYS[1], ARGV[2] .. '" CONV_F_IN "')\n"
    "if not member and not frozen then return {-5} end\n"
    "local gn = ARGV[4]\n"
    "if gn == '' then\n"
    "  local m = redis.call('HMGET', KEYS[2], '" MSG_F_PACKET "', '" MSG_F_GROUP "', '" MSG_F_GROUP_N "')\n"
    "  if not m[1] then return {0} end\n"
    "  if m[2] ~= ARGV[9] or not m[3] then return {-1} end\n"
    "  gn = m[3]\n"
    "end\n"
    "if not member and tonumber(gn) > tonumber(frozen) then return {-1} end\n"
    "local cur = redis.call('HGET', KEYS[1], ARGV[2] .. '" CONV_F_READ_IN "')\n"
    "if tonumber(gn) <= tonumber(cur or '0') then\n"
    "  if ARGV[10] == '1' and cur then redis.call('HSET', KEYS[1], ARGV[2] .. '" CONV_F_READ_IN
    "', cur) end\n"
    "  return {1, 0, 0, cur or '', redis.call('HGET', KEYS[1], ARGV[2] .. '" CONV_F_READ "') or ''}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[2] .. '" CONV_F_READ "', ARGV[3], ARGV[2] .. '" CONV_F_READ_IN
    "', gn)\n"
    "local out = {1, 1, 0, gn, ARGV[3]}\n"
    "local h = redis.call('HGETALL', KEYS[4])\n"
    "for j = 1, #h, 2 do\n"
    "  if h[j] ~= ARGV[5] and tonumber(h[j + 1]) > 0 then\n"
    "    if ARGV[10] == '1' then\n"
    "      out[#out + 1] = ARGV[6] .. h[j] .. ARGV[7]\n"
    "      out[3] = out[3] + 1\n"
    "    else\n"
    "      redis.call('SPUBLISH', ARGV[6] .. h[j] .. ARGV[7], ARGV[8])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

/* The other user's part of a split 1:1 R (the top comment), in the other user's shard, after the reader's
 * part answered: the receipt, once per read mark. KEYS: KEY_CONV of the other user, presence of the other
 * user. ARGV: reader, the reader's seq of its read mark, node, CHAN_NODE prefix, suffix, the receipt's
 * payload, "1" when the caller WAITs (then the deliveries are returned, and a receipt already sent is
 * written again so that the WAIT covers the attempt that sent it).
 * Returns {1, channel...} the receipt goes out now (with "1": the channels; without, published), {0} this
 * mark's receipt went out before (or a later one's): nothing written, nothing sent. */
static struct rdsa_script receipt_lua = {
    "receipt",
    LUA_SHEBANG "local f = 'u' .. ARGV[1] .. '" CONV_F_RECEIPT "'\n"
                "local cur = redis.call('HGET', KEYS[1], f)\n"
                "if tonumber(ARGV[2]) <= tonumber(cur or '0') then\n"
                "  if ARGV[7] == '1' and cur then redis.call('HSET', KEYS[1], f, cur) end\n"
                "  return {0}\n"
                "end\n"
                "redis.call('HSET', KEYS[1], f, ARGV[2])\n"
                "local out, h = {1}, redis.call('HGETALL', KEYS[2])\n"
                "for j = 1, #h, 2 do\n"
                "  if h[j] ~= ARGV[3] and tonumber(h[j + 1]) > 0 then\n"
                "    if ARGV[7] == '1' then\n"
                "      out[#out + 1] = ARGV[4] .. h[j] .. ARGV[5]\n"
                "    else\n"
                "      redis.call('SPUBLISH', ARGV[4] .. h[j] .. ARGV[5], ARGV[6])\n"
                "    end\n"
                "  end\n"
                "end\n"
                "return out\n",
    ""};

struct read_req {
    struct chat_req r;
    int64_t reader, with, group, mid; /* with or group is 0 */
    char known[48];                   /* ARGV[4] */
    char *mine, *theirs;              /* the r packets (theirs NULL without receipts) */
    size_t mine_len, theirs_len;
    int unknown; /* MySQL has no such message between the two */
    /* What the script answered, kept until rdsa_wait answers. */
    int moved;                 /* the mark moved: the r packets go out */
    struct chat_pubs pubs[2];  /* with WAIT: the reader's r, the other user's, to other nodes */
    char *pl_mine, *pl_theirs; /* the CHAN_NODE payloads (user_payload), until pubs take them */
    size_t pl_mine_len, pl_theirs_len;
    /* The split (the top comment). */
    int split;          /* 1:1 with receipts, the two users in two shards: the receipt is its own step */
    int member;         /* a group in another shard than the reader: -1 not asked yet, else HEXISTS's 0/1 */
    long long mark_seq; /* what the reader's part answered: the read mark (its seq, 0 = none) */
    char mark_mid[24];  /* and its mid */
    int receipt_new;    /* the receipt step sent the receipt now: deliver it */
};

void chat_read_init(void)
{
    rdsa_script(&read_lua);
    rdsa_script(&gread_lua);
    rdsa_script(&receipt_lua);
}

static void read_free(struct read_req *q)
{
    free(q->mine);
    free(q->theirs);
    free(q->pl_mine);
    free(q->pl_theirs);
    chat_pubs_free(&q->pubs[0]);
    chat_pubs_free(&q->pubs[1]);
    chat_req_done(&q->r);
    free(q);
}

/* "u <uid>\n<packet>": the CHAN_NODE payload for every connection of uid. */
static char *user_payload(int64_t uid, const char *packet, size_t len, size_t *out_len)
{
    char head[40];
    int n = snprintf(head, sizeof(head), CHAT_USER_PACKET_HEAD, (long long)uid);
    char *p = malloc((size_t)n + len + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, head, (size_t)n);
    memcpy(p + n, packet, len);
    p[n + len] = '\0';
    *out_len = (size_t)n + len;
    return p;
}

static void deliver_local(int64_t uid, const char *packet, size_t len, const struct conn *except)
{
    struct frame *f;
    struct conn *c = conn_user(uid);
    if (c == NULL || (c == except && c->user_next == NULL) || (f = frame_new(packet, len, 0)) == NULL)
        return;
    chat_deliver(uid, f, except, mp_now_ms());
    frame_unref(f);
}

static int read_eval(struct read_req *q);

/* A group message Redis no longer has: its number in the group, when it is a g of q->group. */
static int read_query_group(struct db *db, MYSQL *m, struct read_req *q)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    char sql[160];
    int n =
        snprintf(sql, sizeof(sql), "SELECT group_id, group_seq FROM messages WHERE id = %" PRId64, q->mid);

    if (mysql_real_query(m, sql, (unsigned long)n) != 0 || (res = mysql_store_result(m)) == NULL)
        return db_check_error(db);
    row = mysql_fetch_row(res);
    if (row == NULL || row[0] == NULL || row[1] == NULL || strtoll(row[0], NULL, 10) != q->group)
        q->unknown = 1;
    else
        snprintf(q->known, sizeof(q->known), "%s", row[1]);
    mysql_free_result(res);
    return MP_OK;
}

/* What MySQL knows of q's message: MP_OK (q->unknown or q->known set), MP_EAGAIN or MP_ERR (neither). */
static int read_query(struct db *db, void *arg)
{
    struct read_req *q = arg;
    MYSQL *m = db ? db_conn(db) : NULL;
    MYSQL_RES *res;
    MYSQL_ROW row;
    char sql[512];
    int64_t from, to, seq;
    int n;

    if (m == NULL)
        return MP_EAGAIN;
    if (q->group != 0)
        return read_query_group(db, m, q);
    n = snprintf(sql, sizeof(sql),
                 "SELECT from_uid, to_uid, from_seq, to_seq FROM messages WHERE id = %" PRId64, q->mid);
    if (mysql_real_query(m, sql, (unsigned long)n) != 0 || (res = mysql_store_result(m)) == NULL)
        return db_check_error(db);
    row = mysql_fetch_row(res);
    from = row && row[0] ? strtoll(row[0], NULL, 10) : 0;
    to = row && row[1] ? strtoll(row[1], NULL, 10) : 0;
    seq = row == NULL         ? 0
          : from == q->reader ? (row[2] ? strtoll(row[2], NULL, 10) : 0)
                              : (row[3] ? strtoll(row[3], NULL, 10) : 0);
    mysql_free_result(res);
    if (!((from == q->reader && to == q->with) || (from == q->with && to == q->reader)) || seq <= 0) {
        q->unknown = 1;
        return MP_OK;
    }
    /* what the reader had received in this conversation up to it: every earlier one is long stored */
    n = snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM messages WHERE from_uid = %" PRId64 " AND to_uid = %" PRId64
                 " AND to_seq <= %" PRId64,
                 q->with, q->reader, seq);
    if (mysql_real_query(m, sql, (unsigned long)n) != 0 || (res = mysql_store_result(m)) == NULL)
        return db_check_error(db);
    row = mysql_fetch_row(res);
    if (row != NULL && row[0] != NULL)
        snprintf(q->known, sizeof(q->known), "%" PRId64 " %s", seq, row[0]);
    mysql_free_result(res);
    return MP_OK;
}

static void read_work(struct db *db, void *arg)
{
    dbpool_read(db, read_query, arg); /* once more on a fresh connection after a MySQL restart */
}

static void read_done(void *arg)
{
    struct read_req *q = arg;
    if (q->unknown)
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_NOT_IN_CONV, STATS_E_REJECTED);
    else if (q->known[0] == '\0' || read_eval(q) != MP_OK)
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    else
        return; /* read_eval owns q now */
    read_free(q);
}

/* The channels of a script's {1, 1, k, channel...} from element `from` on (n of them) for payload *pl, which
 * p takes over. MP_OK or MP_ENOMEM. */
static int keep_pubs(struct chat_pubs *p, const redisReply *r, size_t from, size_t n, char **pl, size_t len)
{
    if (n == 0)
        return MP_OK;
    if ((p->chans = calloc(n, sizeof(*p->chans))) == NULL)
        return MP_ENOMEM;
    p->payload = *pl;
    p->len = len;
    *pl = NULL;
    for (size_t i = from; i < from + n; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            (p->chans[p->n] = strdup(r->element[i]->str)) == NULL)
            return MP_ENOMEM;
        p->n++;
    }
    return MP_OK;
}

static char *read_packet(const struct read_req *q, int64_t with, const char *mid, size_t *len);
static int receipt_eval(struct read_req *q);

/* rdsa_wait answered (at once when no WAIT is configured): the A, then the r packets. A split R (q->split)
 * delivers the reader's r now and runs the receipt step; its A comes after that step. */
static void on_read_durable(int ok, void *arg)
{
    struct read_req *q = arg;
    struct conn *c = q->r.c;

    if (!ok) {
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (q->split) {
        if (q->moved) {
            chat_pubs_send(&q->pubs[0]);
            deliver_local(q->reader, q->mine, q->mine_len, c);
        }
        if (q->mark_seq <= 0) {
            chat_reply(c, q->r.id, q->r.id_len, 'A', json_string("success"), NULL);
        } else if (receipt_eval(q) != MP_OK) {
            chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        } else {
            return; /* the receipt step owns q now */
        }
    } else {
        chat_reply(c, q->r.id, q->r.id_len, 'A', json_string("success"), NULL);
        if (q->moved) {
            chat_pubs_send(&q->pubs[0]);
            chat_pubs_send(&q->pubs[1]);
            deliver_local(q->reader, q->mine, q->mine_len, c);
            if (q->theirs != NULL)
                deliver_local(q->with, q->theirs, q->theirs_len, NULL);
        }
    }
    read_free(q);
}

/* An integer or a decimal string of a script's answer (0 for anything else). */
static long long reply_ll(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

static void on_read_reply(redisReply *r, void *arg)
{
    struct read_req *q = arg;
    struct conn *c = q->r.c;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e == NULL || r->elements < 1 || e[0]->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("read script failed reason=\"%s\"", r->str);
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (e[0]->integer == 0 && q->known[0] == '\0') {
        /* Redis no longer has the message: MySQL says whose it is */
        if (dbpool_submit(read_work, read_done, q) == MP_OK)
            return;
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (e[0]->integer == -5) {
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_NOT_MEMBER, STATS_E_REJECTED);
    } else if (e[0]->integer != 1) {
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_NOT_IN_CONV, STATS_E_REJECTED);
    } else if (r->elements < 5 || e[1]->type != REDIS_REPLY_INTEGER || e[2]->type != REDIS_REPLY_INTEGER ||
               e[2]->integer < 0 || (size_t)e[2]->integer > r->elements - 5) {
        log_warn("read script answered an unexpected reply elements=%zu", r->elements);
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else {
        size_t k = (size_t)e[2]->integer;
        q->moved = e[1]->integer == 1;
        q->mark_seq = reply_ll(e[3]);
        snprintf(q->mark_mid, sizeof(q->mark_mid), "%s", e[4]->type == REDIS_REPLY_STRING ? e[4]->str : "");
        if (q->moved && (keep_pubs(&q->pubs[0], r, 5, k, &q->pl_mine, q->pl_mine_len) != MP_OK ||
                         keep_pubs(&q->pubs[1], r, 5 + k, r->elements - 5 - k, &q->pl_theirs,
                                   q->pl_theirs_len) != MP_OK)) {
            chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
            read_free(q);
            return;
        }
        rdsa_wait(on_read_durable, q);
        return;
    }
    read_free(q);
}

/* rdsa_wait answered for the receipt step: the A, then the receipt when it went out now. */
static void on_receipt_durable(int ok, void *arg)
{
    struct read_req *q = arg;
    struct conn *c = q->r.c;

    if (!ok) {
        chat_error(c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else {
        chat_reply(c, q->r.id, q->r.id_len, 'A', json_string("success"), NULL);
        if (q->receipt_new) {
            chat_pubs_send(&q->pubs[1]);
            deliver_local(q->with, q->theirs, q->theirs_len, NULL);
        }
    }
    read_free(q);
}

static void on_receipt_reply(redisReply *r, void *arg)
{
    struct read_req *q = arg;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e != NULL && r->elements >= 1 && e[0]->type == REDIS_REPLY_INTEGER &&
        (e[0]->integer == 0 || e[0]->integer == 1)) {
        q->receipt_new = e[0]->integer == 1;
        if (q->receipt_new &&
            keep_pubs(&q->pubs[1], r, 1, r->elements - 1, &q->pl_theirs, q->pl_theirs_len) != MP_OK)
            goto unavailable;
        rdsa_wait(on_receipt_durable, q);
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("receipt script failed reader=%lld with=%lld reason=\"%s\"", (long long)q->reader,
                 (long long)q->with, r->str);
    /* The reader's part stays (the mark moved, the reader's devices know); the client's retry of the R
     * finds the mark in place and runs this step again, which sends the receipt once. */
unavailable:
    chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    read_free(q);
}

/* The receipt step of a split R, for the read mark the reader's part answered (q->mark_seq, q->mark_mid:
 * this R's message, or an earlier one when the mark did not move). MP_OK (q owned by the reply) or MP_ERR. */
static int receipt_eval(struct read_req *q)
{
    char conv[64], pthem[64], reader[24], seq[24], node[16], chan[32];
    const char *argv[9], *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "";
    size_t argvlen[9];
    char *pk;
    size_t len;

    if (!rdsa_ready() || q->mark_mid[0] == '\0' ||
        (pk = read_packet(q, q->reader, q->mark_mid, &len)) == NULL)
        return MP_ERR;
    free(q->theirs);
    q->theirs = pk;
    q->theirs_len = len;
    free(q->pl_theirs);
    chat_pubs_free(&q->pubs[1]);
    if ((q->pl_theirs = user_payload(q->with, q->theirs, q->theirs_len, &q->pl_theirs_len)) == NULL)
        return MP_ERR;
    key_tagged(conv, sizeof(conv), KEY_CONV, q->with);
    key_tagged(pthem, sizeof(pthem), KEY_PRESENCE, q->with);
    snprintf(reader, sizeof(reader), "%lld", (long long)q->reader);
    snprintf(seq, sizeof(seq), "%lld", q->mark_seq);
    snprintf(node, sizeof(node), "%d", push.node);
    argv[0] = conv;
    argv[1] = pthem;
    argv[2] = reader;
    argv[3] = seq;
    argv[4] = node;
    snprintf(chan, sizeof(chan), CHAN_NODE_SHARD_PREFIX, key_shard(q->with)); /* the script's shard */
    argv[5] = chan;
    argv[6] = CHAN_NODE_SUFFIX;
    argv[7] = q->pl_theirs;
    argv[8] = waits;
    for (int i = 0; i < 9; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[7] = q->pl_theirs_len;
    return rdsa_eval(&receipt_lua, on_receipt_reply, q, 2, 9, argv, argvlen) == MP_OK ? MP_OK : MP_ERR;
}

static int read_eval_group(struct read_req *q);

/* The group's shard answered whether the reader is a member: the reader's part, in the reader's shard. */
static void on_member_reply(redisReply *r, void *arg)
{
    struct read_req *q = arg;

    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        q->member = r->integer == 1;
        if (read_eval_group(q) == MP_OK)
            return;
    } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        log_warn("read: the group's member check failed group=%lld reason=\"%s\"", (long long)q->group,
                 r->str);
    }
    chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    read_free(q);
}

static int read_eval_group(struct read_req *q)
{
    char conv[64], msg[64], members[64], pme[64], reader[24], conv_id[32], mid[24], node[16], gid[24],
        chan[32];
    const char *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "", *member = "";
    size_t argvlen[15];
    int split = key_shard(q->group) != key_shard(q->reader);

    if (!rdsa_ready())
        return MP_ERR;
    key_tagged(members, sizeof(members), KEY_GROUP_MEMBERS, q->group);
    snprintf(reader, sizeof(reader), "%lld", (long long)q->reader);
    if (split && q->member < 0) /* first the group's shard: is the reader a member? */
        return rdsa_cmd(on_member_reply, q, "HEXISTS %s %s", members, reader) == MP_OK ? MP_OK : MP_ERR;
    if (q->pl_mine == NULL &&
        (q->pl_mine = user_payload(q->reader, q->mine, q->mine_len, &q->pl_mine_len)) == NULL)
        return MP_ERR;
    key_tagged(conv, sizeof(conv), KEY_CONV, q->reader);
    snprintf(msg, sizeof(msg), KEY_MSG, key_shard(q->reader), (long long)q->mid); /* the reader's copy */
    key_tagged(pme, sizeof(pme), KEY_PRESENCE, q->reader);
    snprintf(conv_id, sizeof(conv_id), "g%lld", (long long)q->group);
    snprintf(mid, sizeof(mid), "%lld", (long long)q->mid);
    snprintf(node, sizeof(node), "%d", push.node);
    snprintf(gid, sizeof(gid), "%lld", (long long)q->group);
    if (split)
        member = q->member ? "1" : "0";
    snprintf(chan, sizeof(chan), CHAN_NODE_SHARD_PREFIX, key_shard(q->reader)); /* the script's shard */
    const char *argv[15] = {conv, msg,  split ? conv : members, pme,        reader, conv_id, mid,   q->known,
                            node, chan, CHAN_NODE_SUFFIX,       q->pl_mine, gid,    waits,   member};
    for (int i = 0; i < 15; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[11] = q->pl_mine_len;
    return rdsa_eval(&gread_lua, on_read_reply, q, 4, 15, argv, argvlen);
}

static int read_eval(struct read_req *q)
{
    if (q->group != 0)
        return read_eval_group(q);
    char conv[64], msg[64], pme[64], pthem[64], reader[24], with[24], mid[24], node[16], chan[32];
    const char *argv[14];
    size_t argvlen[14];
    int two = key_shard(q->reader) != key_shard(q->with);

    if (!rdsa_ready())
        return MP_ERR;
    if (q->pl_mine == NULL &&
        (q->pl_mine = user_payload(q->reader, q->mine, q->mine_len, &q->pl_mine_len)) == NULL)
        return MP_ERR;
    if (!two && q->theirs != NULL && q->pl_theirs == NULL &&
        (q->pl_theirs = user_payload(q->with, q->theirs, q->theirs_len, &q->pl_theirs_len)) == NULL)
        return MP_ERR;
    q->split = two && q->theirs != NULL;
    key_tagged(conv, sizeof(conv), KEY_CONV, q->reader);
    snprintf(msg, sizeof(msg), KEY_MSG, key_shard(q->reader), (long long)q->mid); /* the reader's copy */
    key_tagged(pme, sizeof(pme), KEY_PRESENCE, q->reader);
    if (two) /* the other user's presence is another slot: the receipt step reads it */
        snprintf(pthem, sizeof(pthem), "%s", pme);
    else
        key_tagged(pthem, sizeof(pthem), KEY_PRESENCE, q->with);
    snprintf(reader, sizeof(reader), "%lld", (long long)q->reader);
    snprintf(with, sizeof(with), "%lld", (long long)q->with);
    snprintf(mid, sizeof(mid), "%lld", (long long)q->mid);
    snprintf(node, sizeof(node), "%d", push.node);
    argv[0] = conv;
    argv[1] = msg;
    argv[2] = pme;
    argv[3] = pthem;
    argv[4] = reader;
    argv[5] = with;
    argv[6] = mid;
    argv[7] = q->known;
    argv[8] = node;
    snprintf(chan, sizeof(chan), CHAN_NODE_SHARD_PREFIX, key_shard(q->reader)); /* the script's shard */
    argv[9] = chan;
    argv[10] = CHAN_NODE_SUFFIX;
    argv[11] = q->pl_mine;
    argv[12] = q->pl_theirs && !two ? q->pl_theirs : "";
    argv[13] = push.cfg->redis.min_replicas_acked > 0 ? "1" : "";
    for (int i = 0; i < 14; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[11] = q->pl_mine_len;
    argvlen[12] = q->pl_theirs && !two ? q->pl_theirs_len : 0;
    return rdsa_eval(&read_lua, on_read_reply, q, 4, 14, argv, argvlen);
}

/* An r packet from the reader: {"id", "from": reader, "type": "r", "msg": {"with": with, "mid": "<mid>"}}, or
 * with {"group": gid, "mid"} for a group. */
static char *read_packet(const struct read_req *q, int64_t with, const char *mid, size_t *len)
{
    char *s;
    json_t *p;
    if (q->group != 0)
        p = json_pack("{s:s%,s:I,s:s,s:{s:I,s:s}}", "id", q->r.id, q->r.id_len, "from", (json_int_t)q->reader,
                      "type", "r", "msg", "group", (json_int_t)q->group, "mid", mid);
    else
        p = json_pack("{s:s%,s:I,s:s,s:{s:I,s:s}}", "id", q->r.id, q->r.id_len, "from", (json_int_t)q->reader,
                      "type", "r", "msg", "with", (json_int_t)with, "mid", mid);
    s = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (s != NULL)
        *len = strlen(s);
    return s;
}

void chat_read(struct conn *c, const struct chatpkt *p)
{
    struct chat_read m;
    struct read_req *q;
    const char *bad;
    char mid[24];

    if ((bad = chatpkt_read(p, c->uid, &m)) != NULL) {
        chat_error(c, p->id, p->id_len, bad, STATS_E_MALFORMED);
        return;
    }
    if ((q = calloc(1, sizeof(*q))) == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    chat_req_init(&q->r, c, p);
    q->reader = c->uid;
    q->with = m.with;
    q->group = m.group;
    q->mid = m.mid;
    q->member = -1;
    snprintf(mid, sizeof(mid), "%lld", (long long)m.mid);
    q->mine = read_packet(q, m.with, mid, &q->mine_len);
    if (push.cfg->chat.read_receipts && m.group == 0)
        q->theirs = read_packet(q, c->uid, mid, &q->theirs_len);
    if (q->mine == NULL || (push.cfg->chat.read_receipts && m.group == 0 && q->theirs == NULL) ||
        read_eval(q) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        read_free(q);
    }
}
