/* timeline.c -- Y, the sync of a user's timeline (design: timeline.h).
 *
 * sync_lua reads what Redis has: the user's latest seq, and KEY_TL's entries from after + 1 (at most limit)
 * with each message's packet from KEY_MSG (nil when it has expired). When that is a run starting at
 * after + 1 with every packet, the answer is built here on the loop thread. Otherwise a pool thread reads
 * the seqs Redis does not have (and the packets that expired) from MySQL and builds the answer from both;
 * either way the answer is one contiguous run of seqs from after + 1, stopped at the first one neither store
 * has (timeline.h says when that can happen).
 *
 * Where MySQL has a user's seqs: a 1:1 message's row has both users' (from_seq, to_seq), a g message's row
 * its sender's (from_seq), and the other members' positions of g messages and s events are in
 * timeline_chunks (timeline_chunks.h; design: push/group.h). So the seqs in (after, Redis' first) are three
 * index range reads -- messages by (from_uid, from_seq), by (to_uid, to_seq) and timeline_chunks by
 * (uid, first_seq) -- then one read by id of the packets of the chunk entries and of the Redis entries whose
 * KEY_MSG expired (packet_from_row builds t, i, g and s packets alike); all merged by seq, a seq that
 * overlapping chunks give twice read once.
 */
#include "timeline.h"
#include "dbpool.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "timeline_chunks.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMELINE_SEQ_MAX (INT64_C(1) << 62)

/* KEYS: KEY_TL, KEY_SEQ of the user, KEY_SEQ_RESTORED of their shard. ARGV: the first seq wanted, limit,
 * KEY_MSG's prefix in the user's shard (the copies of the messages the user reads; the cluster split must
 * pass them as KEYS).
 * Returns {latest seq, seq, mid, packet or nil, seq, mid, packet or nil, ...}, or {-1} when Redis has no
 * counter for the user and may have lost it (then MySQL says what the latest seq is). Reads only. */
static struct rdsa_script sync_lua = {
    "sync",
    LUA_SHEBANG "local v = redis.call('GET', KEYS[2])\n"
                "if not v then\n"
                "  if redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end\n"
                "  v = '0'\n"
                "end\n"
                "local max = tonumber(v)\n"
                "local out = {max}\n"
                "if tonumber(ARGV[1]) > max then return out end\n"
                "local e = redis.call('XRANGE', KEYS[1], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])\n"
                "for i = 1, #e do\n"
                "  local mid = e[i][2][2]\n"
                "  out[#out + 1] = string.match(e[i][1], '^%d+')\n"
                "  out[#out + 1] = mid\n"
                "  out[#out + 1] = redis.call('HGET', ARGV[3] .. mid, '" MSG_F_PACKET "')\n"
                "end\n"
                "return out\n",
    ""};

/* One timeline entry: its seq and message, and the packet without seq once some store gave it. */
struct tl_entry {
    int64_t seq;
    int64_t mid;
    char *packet; /* malloc'd; NULL = not known yet */
    size_t len;
};

struct sync_req {
    struct chat_req r;
    int64_t uid;
    struct chat_sync y;
    int64_t max;            /* the user's latest seq */
    struct tl_entry *redis; /* what Redis had, in seq order */
    size_t nredis;
    size_t max_bytes;
    char *answer; /* the Y packet; NULL = unavailable */
    size_t answer_len;
};

void timeline_init(void)
{
    rdsa_script(&sync_lua);
}

static void entries_free(struct tl_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].packet);
    free(e);
}

static void sync_free(struct sync_req *q)
{
    entries_free(q->redis, q->nredis);
    free(q->answer);
    chat_req_done(&q->r);
    free(q);
}

/* ---- the answer ---- */

/* A growing string. */
struct buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((p = realloc(b->p, cap)) == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* Build the Y packet from the run `run` of n entries (every one with its packet). Its "messages" stop early
 * when the answer would pass max_bytes (a client must be able to receive it: half of push.queue_cap). */
static void build_answer(struct sync_req *q, const struct tl_entry *const *run, size_t n)
{
    struct buf b = {0};
    json_t *id = json_stringn(q->r.id, q->r.id_len);
    char *id_s = id ? json_dumps(id, JSON_ENCODE_ANY) : NULL, tail[96];
    size_t i, used;
    int more;

    json_decref(id);
    if (id_s == NULL)
        return;
    buf_str(&b, "{\"id\":");
    buf_str(&b, id_s);
    buf_str(&b, ",\"from\":0,\"type\":\"Y\",\"msg\":{\"messages\":[");
    free(id_s);
    used = b.len + sizeof(tail);
    for (i = 0; i < n; i++) {
        size_t len;
        char *p = packet_with_seq(run[i]->packet, run[i]->len, run[i]->seq, &len);
        if (p == NULL) {
            b.failed = 1;
            break;
        }
        if (i > 0 && used + len + 1 > q->max_bytes) {
            free(p);
            break;
        }
        if (i > 0)
            buf_add(&b, ",", 1);
        buf_add(&b, p, len);
        used += len + 1;
        free(p);
    }
    more = (i > 0 ? run[i - 1]->seq : q->y.after) < q->max;
    snprintf(tail, sizeof(tail), "],\"more\":%s,\"max\":%" PRId64 "}}", more ? "true" : "false", q->max);
    buf_str(&b, tail);
    if (b.failed) {
        free(b.p);
        return;
    }
    q->answer = b.p;
    q->answer_len = b.len;
}

/* Do the Redis entries (with MySQL's rows `db`, n of them, in seq order) make a run from after + 1?
 * Fills run[] (room for limit entries) and returns its length. A Redis entry without a packet takes it
 * from a MySQL row of the same mid. */
static size_t join(struct sync_req *q, struct tl_entry *db, size_t ndb, const struct tl_entry **run)
{
    int64_t want = q->y.after + 1;
    size_t n = 0, i, j = 0;

    for (i = 0; i < ndb && n < (size_t)q->y.limit; i++) {
        if (db[i].seq < want)
            continue;
        if (db[i].seq != want || db[i].packet == NULL)
            break;
        run[n++] = &db[i];
        want++;
    }
    for (i = 0; i < q->nredis && n < (size_t)q->y.limit; i++) {
        struct tl_entry *e = &q->redis[i];
        if (e->seq < want)
            continue;
        if (e->seq != want)
            break;
        for (j = 0; e->packet == NULL && j < ndb; j++)
            if (db[j].mid == e->mid && db[j].packet != NULL) {
                e->packet = db[j].packet;
                e->len = db[j].len;
                db[j].packet = NULL; /* moved */
            }
        if (e->packet == NULL)
            break;
        run[n++] = e;
        want++;
    }
    return n;
}

/* ---- MySQL: the seqs and packets Redis does not have ---- */

/* PACKET_COLS, then the two seqs (columns 7 and 8) */
static const char *const sync_cols = "SELECT " PACKET_COLS ", from_seq, to_seq FROM messages";

static int64_t num(const char *s)
{
    return s ? (int64_t)strtoll(s, NULL, 10) : 0;
}

/* A growing list of entries. */
struct tl_list {
    struct tl_entry *e;
    size_t n, cap;
};

static struct tl_entry *tl_list_add(struct tl_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct tl_entry *e = realloc(l->e, cap * sizeof(*e));
        if (e == NULL)
            return NULL;
        l->e = e;
        l->cap = cap;
    }
    memset(&l->e[l->n], 0, sizeof(l->e[0]));
    return &l->e[l->n++];
}

/* Read messages rows into out (at most max more); an entry's seq is the user's from_seq or to_seq, which
 * is 0 for a group entry the user did not send (its seq is in timeline_chunks). MP_OK or MP_EAGAIN. */
static int read_rows(struct db *db, MYSQL *m, const char *sql, size_t len, int64_t uid, struct tl_list *out,
                     size_t max)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    size_t got = 0;
    int rc = MP_OK;

    if (mysql_real_query(m, sql, (unsigned long)len) != 0 || (res = mysql_store_result(m)) == NULL) {
        if (db_check_error(db) != MP_EAGAIN)
            log_error("sync query failed uid=%lld error=\"%s\"", (long long)uid, mysql_error(m));
        return MP_EAGAIN;
    }
    while (got < max && (row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(res);
        struct tl_entry *e = tl_list_add(out);
        int64_t from = num(row[2]);
        if (e == NULL) {
            rc = MP_EAGAIN;
            break;
        }
        e->mid = num(row[0]);
        e->seq = from == uid ? num(row[PACKET_NCOLS]) : num(row[PACKET_NCOLS + 1]);
        e->packet = packet_from_row(row, lens, &e->len);
        if (e->packet == NULL)
            log_error("sync row not usable (not UTF-8?) uid=%lld mid=%" PRId64, (long long)uid, e->mid);
        got++;
    }
    mysql_free_result(res);
    return rc;
}

/* The group entries of uid's timeline with a seq in (after, last] from timeline_chunks, without packets
 * (timeline_chunks.h: the rows that can hold one have first_seq in (after - TL_CHUNK_SPAN, last]). Rows
 * may overlap: a seq may come twice. MP_OK or MP_EAGAIN. */
static int read_chunks(struct db *db, MYSQL *m, int64_t uid, int64_t after, int64_t last, struct tl_list *out)
{
    char sql[320];
    MYSQL_RES *res;
    MYSQL_ROW row;
    long long lo = after >= TL_CHUNK_SPAN ? after - TL_CHUNK_SPAN + 1 : 0;
    int rc = MP_OK,
        n = snprintf(sql, sizeof(sql),
                     "SELECT entries FROM " TL_CHUNKS_TABLE " WHERE uid = %lld AND first_seq >= %lld AND "
                     "first_seq <= %lld AND last_seq > %lld",
                     (long long)uid, lo, (long long)last, (long long)after);

    if (mysql_real_query(m, sql, (unsigned long)n) != 0 || (res = mysql_store_result(m)) == NULL) {
        if (db_check_error(db) != MP_EAGAIN)
            log_error("sync chunk query failed uid=%lld error=\"%s\"", (long long)uid, mysql_error(m));
        return MP_EAGAIN;
    }
    while (rc == MP_OK && (row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(res);
        size_t at = 0;
        int64_t seq, mid;
        while (row[0] != NULL && tl_chunk_next(row[0], lens[0], &at, &seq, &mid)) {
            struct tl_entry *e;
            if (seq <= after || seq > last)
                continue;
            if ((e = tl_list_add(out)) == NULL) {
                rc = MP_EAGAIN;
                break;
            }
            e->seq = seq;
            e->mid = mid;
        }
    }
    mysql_free_result(res);
    return rc;
}

/* The highest seq MySQL has stored for uid (0 when none), or -1 when MySQL failed: of its 1:1 messages
 * and its own g messages (from_seq, to_seq), and of the other group entries (timeline_chunks). */
static int64_t stored_max(struct db *db, MYSQL *m, int64_t uid)
{
    char sql[512];
    MYSQL_RES *res;
    MYSQL_ROW row;
    int64_t max = -1;
    int n = snprintf(sql, sizeof(sql),
                     "SELECT (SELECT COALESCE(MAX(from_seq), 0) FROM messages WHERE from_uid = %lld), "
                     "(SELECT COALESCE(MAX(to_seq), 0) FROM messages WHERE to_uid = %lld), "
                     "(SELECT COALESCE(MAX(last_seq), 0) FROM " TL_CHUNKS_TABLE " WHERE uid = %lld)",
                     (long long)uid, (long long)uid, (long long)uid);
    if (mysql_real_query(m, sql, (unsigned long)n) != 0 || (res = mysql_store_result(m)) == NULL) {
        if (db_check_error(db) != MP_EAGAIN)
            log_error("seq query failed uid=%lld error=\"%s\"", (long long)uid, mysql_error(m));
        return -1;
    }
    if ((row = mysql_fetch_row(res)) != NULL)
        for (int i = 0; i < 3; i++)
            if (num(row[i]) > max)
                max = num(row[i]);
    mysql_free_result(res);
    return max;
}

/* By seq; of two entries with one seq (overlapping chunks), the one with a packet first, so join takes it
 * and skips the other. */
static int cmp_seq(const void *a, const void *b)
{
    const struct tl_entry *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return (x->packet == NULL) - (y->packet == NULL);
}

/* Give each chunk entry a copy of the packet of the messages row with its mid (in rows), if any. */
static void fill_packets(struct tl_list *chunks, const struct tl_list *rows)
{
    for (size_t i = 0; i < chunks->n; i++) {
        struct tl_entry *e = &chunks->e[i];
        for (size_t j = 0; e->packet == NULL && j < rows->n; j++) {
            const struct tl_entry *r = &rows->e[j];
            if (r->mid == e->mid && r->packet != NULL && (e->packet = malloc(r->len + 1)) != NULL) {
                memcpy(e->packet, r->packet, r->len + 1);
                e->len = r->len;
            }
        }
    }
}

/* Add ", <mid>" (or the first "<mid>") of every entry without a packet to the IN list in b. */
static void add_mids(struct buf *b, const struct tl_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char id[32];
        if (e[i].packet != NULL)
            continue;
        if (b->len == 0) {
            buf_str(b, sync_cols);
            buf_str(b, " WHERE id IN (");
        } else {
            buf_add(b, ",", 1);
        }
        snprintf(id, sizeof(id), "%" PRId64, e[i].mid);
        buf_str(b, id);
    }
}

/* Read the seqs after `after` below Redis' first one -- 1:1 and own g messages by from_seq / to_seq, the
 * other group entries from timeline_chunks -- and the packets Redis and the chunks lack, by mid; then
 * join. */
static int sync_query(struct db *db, struct sync_req *q)
{
    MYSQL *m = db ? db_conn(db) : NULL;
    long long u = q->uid, a = q->y.after, lim = q->y.limit;
    int64_t below = q->nredis > 0 ? q->redis[0].seq : q->max + 1;
    struct tl_list rows = {0}, chunks = {0};
    const struct tl_entry **run = NULL;
    struct buf b = {0};
    size_t len;
    int rc = MP_OK;

    if (m == NULL)
        return MP_EAGAIN;
    if (q->max < 0) { /* Redis has no counter for the user: MySQL knows the latest seq */
        if ((q->max = stored_max(db, m, q->uid)) < 0)
            return MP_EAGAIN;
        below = q->max + 1;
    }
    if ((run = calloc((size_t)q->y.limit, sizeof(*run))) == NULL)
        return MP_EAGAIN;
    if (below > q->y.after + 1) {
        char sql[1024];
        int64_t last = below - 1 < q->y.after + lim ? below - 1 : q->y.after + lim;
        len = (size_t)snprintf(
            sql, sizeof(sql),
            "(%s WHERE from_uid = %lld AND from_seq > %lld AND from_seq < %lld ORDER BY from_seq LIMIT %lld) "
            "UNION ALL "
            "(%s WHERE to_uid = %lld AND to_seq > %lld AND to_seq < %lld ORDER BY to_seq LIMIT %lld)",
            sync_cols, u, a, (long long)below, lim, sync_cols, u, a, (long long)below, lim);
        rc = read_rows(db, m, sql, len, q->uid, &rows, (size_t)q->y.limit * 2);
        if (rc == MP_OK)
            rc = read_chunks(db, m, q->uid, q->y.after, last, &chunks);
    }
    add_mids(&b, q->redis, q->nredis);
    add_mids(&b, chunks.e, chunks.n);
    if (rc == MP_OK && b.len > 0) {
        buf_add(&b, ")", 1);
        rc = b.failed ? MP_EAGAIN : read_rows(db, m, b.p, b.len, q->uid, &rows, SIZE_MAX);
    }
    free(b.p);
    if (rc == MP_OK) {
        fill_packets(&chunks, &rows);
        for (size_t i = 0; rc == MP_OK && i < chunks.n; i++) {
            struct tl_entry *e = tl_list_add(&rows);
            if (e == NULL) {
                rc = MP_EAGAIN;
                break;
            }
            *e = chunks.e[i];
            chunks.e[i].packet = NULL; /* moved */
        }
    }
    if (rc == MP_OK) {
        qsort(rows.e, rows.n, sizeof(*rows.e), cmp_seq);
        size_t k = join(q, rows.e, rows.n, run);
        if (k > 0 || q->y.after >= q->max)
            build_answer(q, run, k);
        else
            log_warn("sync cannot go on yet uid=%lld after=%lld max=%" PRId64
                     " (the next entry is neither in Redis nor in MySQL: is magpie-persist running?)",
                     u, a, q->max);
    }
    entries_free(rows.e, rows.n);
    entries_free(chunks.e, chunks.n);
    free(run);
    return rc;
}

static int sync_query_fn(struct db *db, void *arg)
{
    return sync_query(db, arg);
}

static void sync_work(struct db *db, void *arg)
{
    dbpool_read(db, sync_query_fn, arg); /* once more on a fresh connection after a MySQL restart */
}

static void sync_done(void *arg)
{
    struct sync_req *q = arg;
    if (q->answer == NULL) {
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (conn_open(q->r.c)) {
        chat_reply_str(q->r.c, q->answer, q->answer_len);
        q->answer = NULL;
    }
    sync_free(q);
}

/* ---- Redis ---- */

static void on_sync_reply(redisReply *r, void *arg)
{
    struct sync_req *q = arg;
    const struct tl_entry **run = NULL;
    size_t n, k;
    int complete;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || (r->elements - 1) % 3 != 0) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("sync script failed reason=\"%s\"", r->str);
        goto unavailable;
    }
    q->max = r->element[0]->integer;
    if (q->max < 0) /* no counter in Redis */
        goto mysql;
    n = (r->elements - 1) / 3;
    if (n > 0 && (q->redis = calloc(n, sizeof(*q->redis))) == NULL)
        goto unavailable;
    for (size_t i = 0; i < n; i++) {
        redisReply **e = &r->element[1 + 3 * i];
        struct tl_entry *t = &q->redis[q->nredis];
        if (e[0]->type != REDIS_REPLY_STRING || e[1]->type != REDIS_REPLY_STRING)
            continue;
        t->seq = num(e[0]->str);
        t->mid = num(e[1]->str);
        if (e[2]->type == REDIS_REPLY_STRING && (t->packet = malloc(e[2]->len + 1)) != NULL) {
            memcpy(t->packet, e[2]->str, e[2]->len + 1);
            t->len = e[2]->len;
        }
        q->nredis++;
    }
    /* Everything from Redis? A run from after + 1 with every packet, as long as limit or up to max. */
    if ((run = calloc((size_t)q->y.limit, sizeof(*run))) == NULL)
        goto unavailable;
    k = join(q, NULL, 0, run);
    complete = q->y.after >= q->max || (k > 0 && (k == (size_t)q->y.limit || run[k - 1]->seq == q->max));
    if (complete) {
        build_answer(q, run, k);
        free(run);
        sync_done(q);
        return;
    }
    free(run);
    run = NULL;
mysql: /* some of the run is only in MySQL */
    if (dbpool_submit(sync_work, sync_done, q) == MP_OK)
        return;
unavailable:
    free(run);
    sync_done(q);
}

void timeline_sync(struct conn *c, const struct chatpkt *p)
{
    char tl[64], seq[64], restored[64], msg_prefix[64], first[24], limit[16];
    const char *argv[6];
    size_t argvlen[6];
    struct sync_req *q;
    const char *bad;

    if ((q = calloc(1, sizeof(*q))) == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    if ((bad = chatpkt_sync(p, &q->y)) != NULL) {
        free(q);
        chat_error(c, p->id, p->id_len, bad, STATS_E_MALFORMED);
        return;
    }
    /* No timeline comes near 2^62 entries; a larger after is the same answer (nothing after it) and
     * after + 1 cannot overflow. */
    if (q->y.after > TIMELINE_SEQ_MAX)
        q->y.after = TIMELINE_SEQ_MAX;
    q->uid = c->uid;
    q->max_bytes = (size_t)push.cfg->push.queue_cap / 2;
    chat_req_init(&q->r, c, p);
    if (!rdsa_ready()) {
        sync_done(q);
        return;
    }
    key_tagged(tl, sizeof(tl), KEY_TL, c->uid);
    key_tagged(seq, sizeof(seq), KEY_SEQ, c->uid);
    snprintf(first, sizeof(first), "%llu", (unsigned long long)q->y.after + 1);
    snprintf(limit, sizeof(limit), "%d", q->y.limit);
    argv[0] = tl;
    argv[1] = seq;
    snprintf(restored, sizeof(restored), KEY_SEQ_RESTORED, key_shard(c->uid));
    key_msg_prefix(msg_prefix, sizeof(msg_prefix), key_shard(c->uid)); /* the user's copies */
    argv[2] = restored;
    argv[3] = first;
    argv[4] = limit;
    argv[5] = msg_prefix;
    for (int i = 0; i < 6; i++)
        argvlen[i] = strlen(argv[i]);
    if (rdsa_eval(&sync_lua, on_sync_reply, q, 3, 6, argv, argvlen) != MP_OK)
        sync_done(q);
}
