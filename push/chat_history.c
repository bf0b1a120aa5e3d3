/* chat_history.c -- H: the messages a user sent or received after a time (SPEC §4), from MySQL's messages
 * table (written by magpie-persist from the stream). 1:1 messages only: a group's rows (group_id set; their
 * to_uid is a group id, which may equal a uid) are skipped, a group conversation is read with Y.
 *
 * The query runs on a pool thread (dbpool.h) as two index range scans -- idx_messages_from and
 * idx_messages_to, or both halves of idx_messages_pair with one peer -- merged oldest first, fetching one
 * row more than the limit to tell whether there is more. The pool thread also builds the whole answer, so
 * the loop thread only queues it. An answer is kept under half of push.queue_cap bytes (a client must be
 * able to receive its own history): when the rows would not fit, it ends early with "more": true.
 */
#include "chat.h"
#include "dbpool.h"
#include "log.h"
#include "magpie.h"
#include "push.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct history_req {
    struct chat_req r;
    int64_t uid;
    struct chat_history h;
    size_t max_bytes;
    char *answer; /* built on the pool thread; NULL = MySQL unavailable */
    size_t answer_len;
};

/* PACKET_COLS (created_ms is column 7, which the queries order by), then the two seqs */
static const char *const history_cols = "SELECT " PACKET_COLS ", from_seq, to_seq FROM messages";

/* The query text for uid with h; returns its length (buf must hold 1024 bytes). */
static int history_sql(char *buf, size_t len, int64_t uid, const struct chat_history *h)
{
    long long u = uid, s = h->since, w = h->with, n = h->limit + 1;
    if (w != 0)
        return snprintf(
            buf, len,
            "(%s WHERE from_uid = %lld AND to_uid = %lld AND created_ms > %lld AND group_id IS NULL "
            "ORDER BY created_ms, id LIMIT %lld) UNION ALL "
            "(%s WHERE from_uid = %lld AND to_uid = %lld AND created_ms > %lld AND group_id IS NULL "
            "ORDER BY created_ms, id LIMIT %lld) ORDER BY 7, 1 LIMIT %lld",
            history_cols, u, w, s, n, history_cols, w, u, s, n, n);
    return snprintf(
        buf, len,
        "(%s WHERE from_uid = %lld AND created_ms > %lld AND group_id IS NULL ORDER BY created_ms, id "
        "LIMIT %lld) UNION ALL "
        "(%s WHERE to_uid = %lld AND created_ms > %lld AND group_id IS NULL ORDER BY created_ms, id "
        "LIMIT %lld) ORDER BY 7, 1 LIMIT %lld",
        history_cols, u, s, n, history_cols, u, s, n, n);
}

static json_int_t num(const char *s)
{
    return s ? (json_int_t)strtoll(s, NULL, 10) : 0;
}

/* Run the query and build the answer. MP_OK, or MP_EAGAIN when MySQL is unavailable. */
static int history_query(struct db *db, struct history_req *q)
{
    char sql[1024];
    int n = history_sql(sql, sizeof(sql), q->uid, &q->h);
    MYSQL *m = db ? db_conn(db) : NULL;
    MYSQL_RES *res;
    MYSQL_ROW row;
    json_t *msgs;
    size_t used = 128, rows = 0;
    int more = 0;

    if (m == NULL)
        return MP_EAGAIN;
    if (mysql_real_query(m, sql, (unsigned long)n) != 0 || (res = mysql_store_result(m)) == NULL) {
        if (db_check_error(db) != MP_EAGAIN)
            log_error("history query failed uid=%lld error=\"%s\"", (long long)q->uid, mysql_error(m));
        return MP_EAGAIN;
    }
    msgs = json_array();
    while (msgs != NULL && (row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(res);
        char type = row[4] && row[4][0] ? row[4][0] : 't';
        size_t len;
        json_t *pkt;
        json_int_t seq;

        if (rows == (size_t)q->h.limit) {
            more = 1;
            break;
        }
        pkt =
            packet_chat_json(row[1] ? row[1] : "", lens[1], (int64_t)num(row[2]), (int64_t)num(row[3]), type,
                             row[5] ? row[5] : "", lens[5], (int64_t)num(row[6]), (int64_t)num(row[0]));
        if (pkt == NULL) {
            log_error("history row skipped: not UTF-8 mid=%s", row[0] ? row[0] : "?");
            continue;
        }
        /* the user's seq, for a message stored since timelines (push/timeline.h) */
        seq = num(row[num(row[2]) == q->uid ? PACKET_NCOLS : PACKET_NCOLS + 1]);
        if (seq > 0)
            json_object_set_new(pkt, "seq", json_integer(seq));
        len = json_dumpb(pkt, NULL, 0, JSON_COMPACT);
        if (used + len + 1 > q->max_bytes) {
            json_decref(pkt);
            more = 1;
            break;
        }
        used += len + 1;
        json_array_append_new(msgs, pkt);
        rows++;
    }
    mysql_free_result(res);
    if (msgs == NULL)
        return MP_EAGAIN;
    q->answer = chatpkt_reply(q->r.id, q->r.id_len, 'H',
                              json_pack("{s:o,s:b}", "messages", msgs, "more", more), &q->answer_len);
    return MP_OK;
}

static int history_query_fn(struct db *db, void *arg)
{
    return history_query(db, arg);
}

static void history_work(struct db *db, void *arg)
{
    dbpool_read(db, history_query_fn, arg); /* once more on a fresh connection after a MySQL restart */
}

static void history_done(void *arg)
{
    struct history_req *q = arg;
    if (q->answer == NULL)
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    else if (conn_open(q->r.c))
        chat_reply_str(q->r.c, q->answer, q->answer_len);
    else
        free(q->answer);
    chat_req_done(&q->r);
    free(q);
}

void chat_history(struct conn *c, const struct chatpkt *p)
{
    struct history_req *q;
    const char *bad;

    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    if ((bad = chatpkt_history(p, &q->h)) != NULL) {
        free(q);
        chat_error(c, p->id, p->id_len, bad, STATS_E_MALFORMED);
        return;
    }
    q->uid = c->uid;
    q->max_bytes = (size_t)push.cfg->push.queue_cap / 2;
    chat_req_init(&q->r, c, p);
    if (dbpool_submit(history_work, history_done, q) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        chat_req_done(&q->r);
        free(q);
    }
}
