/* persist_store.c -- see persist_store.h. */
#include "persist_store.h"
#include "magpie.h"
#include "stream.h"
#include "timeline_chunks.h"

#include <inttypes.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MySQL 8's "Check constraint is violated" (MariaDB says ER_CONSTRAINT_FAILED); not in MariaDB's headers. */
#define PERSIST_ER_CHECK_CONSTRAINT_VIOLATED 3819

/* The SELECT that checks skipped rows asks about this many rows at a time. */
#define PERSIST_CHECK_ROWS 500

/* A growing SQL text. */
struct sql {
    char *p;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
};

static int sql_reserve(struct sql *s, size_t more)
{
    char *p;
    size_t cap;
    if (s->failed)
        return -1;
    if (s->len + more + 1 <= s->cap)
        return 0;
    cap = s->cap ? s->cap : 4096;
    while (cap < s->len + more + 1)
        cap *= 2;
    p = realloc(s->p, cap);
    if (p == NULL) {
        s->failed = 1;
        return -1;
    }
    s->p = p;
    s->cap = cap;
    return 0;
}

static void sql_add(struct sql *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sql_add(struct sql *s, const char *fmt, ...)
{
    va_list ap;
    int n;
    char tmp[256];
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) { /* only short fragments go through here */
        s->failed = 1;
        return;
    }
    if (sql_reserve(s, (size_t)n) != 0)
        return;
    memcpy(s->p + s->len, tmp, (size_t)n + 1);
    s->len += (size_t)n;
}

/* 'value' as a quoted, escaped string literal for connection m. */
static void sql_add_string(struct sql *s, MYSQL *m, const char *v, size_t len)
{
    unsigned long n;
    if (sql_reserve(s, 2 * len + 2) != 0)
        return;
    s->p[s->len++] = '\'';
    n = mysql_real_escape_string(m, s->p + s->len, v, (unsigned long)len);
    if (n == (unsigned long)-1) {
        s->failed = 1;
        return;
    }
    s->len += n;
    s->p[s->len++] = '\'';
    s->p[s->len] = '\0';
}

static void sql_add_row(struct sql *s, MYSQL *m, const struct persist_msg *msg)
{
    sql_add(s, "(%" PRId64 ",", msg->mid);
    sql_add_string(s, m, msg->cid, msg->cid_len);
    sql_add(s, ",%" PRId64 ",%" PRId64 ",'%c',", msg->from, msg->to, msg->type);
    sql_add_string(s, m, msg->body, msg->body_len);
    sql_add(s, ",%" PRId64 ",", msg->ts);
    /* seqs: NULL for an entry written before timelines (0 = none, see persist_entry.h) */
    if (msg->from_seq > 0)
        sql_add(s, "%" PRId64 ",", msg->from_seq);
    else
        sql_add(s, "NULL,");
    if (msg->to_seq > 0)
        sql_add(s, "%" PRId64 ",", msg->to_seq);
    else
        sql_add(s, "NULL,");
    /* a group entry: its group, and a g's number in it */
    if (msg->group > 0)
        sql_add(s, "%" PRId64 ",", msg->group);
    else
        sql_add(s, "NULL,");
    if (msg->group_n > 0)
        sql_add(s, "%" PRId64 ")", msg->group_n);
    else
        sql_add(s, "NULL)");
}

static void sql_insert_head(struct sql *s, const char *table)
{
    s->len = 0;
    s->failed = 0;
    sql_add(s,
            "INSERT INTO `%s` (id, client_id, from_uid, to_uid, type, body, created_ms, from_seq, to_seq, "
            "group_id, group_seq) VALUES ",
            table);
}

static void sql_insert_tail(struct sql *s)
{
    sql_add(s, " ON DUPLICATE KEY UPDATE id = id");
}

void persist_store_prepare(struct db *d)
{
    snprintf(d->init_command, sizeof(d->init_command), "SET SESSION sql_mode = '%s'", PERSIST_SQL_MODE);
}

int persist_store_is_conflict(unsigned err)
{
    return err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT;
}

int persist_store_is_row_error(unsigned err)
{
    switch (err) {
    case ER_BAD_NULL_ERROR:
    case ER_DUP_ENTRY:
    case ER_WARN_NULL_TO_NOTNULL:
    case ER_WARN_DATA_OUT_OF_RANGE:
    case WARN_DATA_TRUNCATED:
    case ER_TRUNCATED_WRONG_VALUE:
    case ER_INVALID_CHARACTER_STRING:
    case ER_NO_DEFAULT_FOR_FIELD:
    case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
    case ER_DATA_TOO_LONG:
    case ER_WRONG_VALUE_FOR_TYPE:
    case ER_NO_REFERENCED_ROW:
    case ER_NO_REFERENCED_ROW_2:
    case ER_SIGNAL_EXCEPTION: /* a trigger refused the row */
    case ER_CONSTRAINT_FAILED:
    case PERSIST_ER_CHECK_CONSTRAINT_VIOLATED:
        return 1;
    default:
        return 0;
    }
}

static void set_why(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_why(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, PERSIST_WHY_MAX, fmt, ap);
    va_end(ap);
}

static void reject(struct persist_row *row, unsigned err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reject(struct persist_row *row, unsigned err, const char *fmt, ...)
{
    va_list ap;
    row->rejected = 1;
    row->err = err;
    va_start(ap, fmt);
    vsnprintf(row->why, sizeof(row->why), fmt, ap);
    va_end(ap);
}

/* Run one statement whose result (if any) is not needed. 0, or -1 with mysql_errno(m) set. */
static int run(MYSQL *m, const char *q, size_t len)
{
    if (mysql_real_query(m, q, (unsigned long)len) != 0)
        return -1;
    if (mysql_field_count(m) != 0) {
        MYSQL_RES *r = mysql_store_result(m);
        if (r == NULL)
            return -1;
        mysql_free_result(r);
    }
    return 0;
}

/* Insert rows[from..to) with one statement; on success add the rows inserted to *inserted. */
static int insert_rows(MYSQL *m, struct sql *s, const char *table, struct persist_row **rows, size_t from,
                       size_t to, size_t *inserted)
{
    sql_insert_head(s, table);
    for (size_t i = from; i < to; i++) {
        if (i > from)
            sql_add(s, ",");
        sql_add_row(s, m, &rows[i]->msg);
    }
    sql_insert_tail(s);
    if (s->failed)
        return MP_ENOMEM;
    if (run(m, s->p, s->len) != 0)
        return MP_ERR;
    *inserted += (size_t)mysql_affected_rows(m);
    return MP_OK;
}

/* After a statement of rows[from..to) failed because of some row: insert them one at a time, marking the
 * rows MySQL refuses. MP_OK, or MP_ERR/MP_ENOMEM when an error is not about a row (mysql_errno(m) says). */
static int insert_one_by_one(MYSQL *m, struct sql *s, const char *table, struct persist_row **rows,
                             size_t from, size_t to, struct persist_store_result *res)
{
    for (size_t i = from; i < to; i++) {
        int rc = insert_rows(m, s, table, rows, i, i + 1, &res->inserted);
        if (rc == MP_ENOMEM)
            return rc;
        if (rc != MP_OK) {
            unsigned err = mysql_errno(m);
            if (!persist_store_is_row_error(err))
                return MP_ERR;
            reject(rows[i], err, "mysql refused the row: error %u: %s", err, mysql_error(m));
            res->rejected++;
        }
    }
    return MP_OK;
}

/* Rows that were not inserted must be stored already under their (from_uid, client_id); a row skipped
 * because its id belongs to a different message is marked rejected. A row found sets its stored_mid to the
 * stored row's id (another mid when a client's retry came back under a new one). Checks rows[from..to). */
static int check_stored(MYSQL *m, struct sql *s, const char *table, struct persist_row **rows, size_t from,
                        size_t to, struct persist_store_result *res)
{
    unsigned char *found;
    MYSQL_RES *r;
    MYSQL_ROW dbrow;
    size_t asked = 0;

    found = calloc(to - from, 1);
    if (found == NULL)
        return MP_ENOMEM;
    s->len = 0;
    s->failed = 0;
    sql_add(s, "SELECT from_uid, client_id, id FROM `%s` WHERE ", table);
    for (size_t i = from; i < to; i++) {
        if (rows[i]->rejected)
            continue;
        sql_add(s, "%s(from_uid = %" PRId64 " AND client_id = ", asked ? " OR " : "", rows[i]->msg.from);
        sql_add_string(s, m, rows[i]->msg.cid, rows[i]->msg.cid_len);
        sql_add(s, ")");
        asked++;
    }
    if (asked == 0) {
        free(found);
        return MP_OK;
    }
    if (s->failed) {
        free(found);
        return MP_ENOMEM;
    }
    if (mysql_real_query(m, s->p, (unsigned long)s->len) != 0 || (r = mysql_store_result(m)) == NULL) {
        free(found);
        return MP_ERR;
    }
    while ((dbrow = mysql_fetch_row(r)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(r);
        int64_t uid = dbrow[0] ? strtoll(dbrow[0], NULL, 10) : 0;
        for (size_t i = from; i < to; i++) {
            const struct persist_msg *msg = &rows[i]->msg;
            if (!found[i - from] && msg->from == uid && dbrow[1] != NULL && lens[1] == msg->cid_len &&
                memcmp(dbrow[1], msg->cid, msg->cid_len) == 0) {
                found[i - from] = 1;
                rows[i]->stored_mid = dbrow[2] ? strtoll(dbrow[2], NULL, 10) : msg->mid;
            }
        }
    }
    mysql_free_result(r);
    for (size_t i = from; i < to; i++) {
        if (rows[i]->rejected || found[i - from])
            continue;
        reject(rows[i], 0, "message id %" PRId64 " is already used by another message", rows[i]->msg.mid);
        res->rejected++;
    }
    free(found);
    return MP_OK;
}

/* Undo and report a failure that is not about one row. */
static int fail_batch(struct db *d, MYSQL *m, int rc, struct persist_store_result *res)
{
    if (rc == MP_ENOMEM) {
        set_why(res->why, "out of memory");
        run(m, "ROLLBACK", 8);
        return MP_ENOMEM;
    }
    res->err = mysql_errno(m);
    set_why(res->why, "error %u: %s", res->err, mysql_error(m));
    if (db_check_error(d) == MP_EAGAIN)
        return MP_EAGAIN; /* the connection is gone, and the transaction with it */
    if (run(m, "ROLLBACK", 8) != 0 && db_check_error(d) == MP_EAGAIN)
        return MP_EAGAIN;
    return MP_ERR;
}

/* ---- timeline_chunks: where the group entries sit in the members' timelines ---- */

/* One position of a group entry: its seq in uid's timeline. */
struct tl_pos {
    int64_t uid, seq, mid;
};

static int cmp_pos(const void *a, const void *b)
{
    const struct tl_pos *x = a, *y = b;
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Items in a seqs list: its spaces plus one. */
static size_t seqs_count(const struct persist_msg *msg)
{
    size_t n = 1;
    if (msg->seqs == NULL || msg->seqs_len == 0)
        return 0;
    for (const char *p = msg->seqs, *end = msg->seqs + msg->seqs_len;
         (p = memchr(p, ' ', (size_t)(end - p))) != NULL; p++)
        n++;
    return n;
}

/* Every position the stored group entries of rows[0..n) took besides the sender's (messages.from_seq): the
 * members' seqs lists, and the sender's own seq of a g stored earlier under another mid (a retry the dedup
 * no longer knew: the stored row holds the first copy's from_seq). Malloc'd into *out (NULL when none). */
static int collect_positions(struct persist_row **rows, size_t n, struct tl_pos **out, size_t *nout)
{
    size_t total = 0, k = 0;
    struct tl_pos *p;

    *out = NULL;
    *nout = 0;
    for (size_t i = 0; i < n; i++)
        if (!rows[i]->rejected && rows[i]->msg.group > 0)
            total += seqs_count(&rows[i]->msg) + 1;
    if (total == 0)
        return MP_OK;
    if ((p = malloc(total * sizeof(*p))) == NULL)
        return MP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct persist_msg *msg = &rows[i]->msg;
        int64_t mid = rows[i]->stored_mid, uid, seq;
        size_t at = 0;
        if (rows[i]->rejected || msg->group == 0)
            continue;
        while (k < total && persist_seqs_next(msg->seqs, msg->seqs_len, &at, &uid, &seq))
            p[k++] = (struct tl_pos){uid, seq, mid};
        if (k < total && msg->type == 'g' && mid != msg->mid)
            p[k++] = (struct tl_pos){msg->from, msg->from_seq, mid};
    }
    *out = p;
    *nout = k;
    return MP_OK;
}

static void chunk_insert_head(struct sql *s)
{
    s->len = 0;
    s->failed = 0;
    sql_add(s, "INSERT INTO `" TL_CHUNKS_TABLE "` (uid, first_seq, last_seq, entries) VALUES ");
}

/* A row with the same (uid, first_seq) is the same batch stored again (timeline_chunks.h): keep what it
 * has, and append the new entries unless they are in it already. */
static void chunk_insert_tail(struct sql *s)
{
    sql_add(s, " ON DUPLICATE KEY UPDATE entries = IF(LOCATE(CONCAT(' ', VALUES(entries), ' '), "
               "CONCAT(' ', entries, ' ')) > 0, entries, CONCAT(entries, ' ', VALUES(entries))), ");
    sql_add(s, "last_seq = GREATEST(last_seq, VALUES(last_seq))");
}

/* Write the positions as timeline_chunks rows: one per user, split at TL_CHUNK_SPAN, in multi-row INSERTs
 * of about PERSIST_SQL_CHUNK_BYTES. A position listed twice (one entry twice in the batch) is written once.
 */
static int store_chunks(MYSQL *m, struct sql *s, struct persist_row **rows, size_t n,
                        struct persist_store_result *res)
{
    struct tl_pos *p;
    size_t np, i = 0, in_stmt = 0;
    int rc = collect_positions(rows, n, &p, &np);

    if (rc != MP_OK || np == 0)
        return rc;
    qsort(p, np, sizeof(*p), cmp_pos);
    while (i < np && rc == MP_OK) {
        size_t j = i, last = i;
        if (in_stmt == 0)
            chunk_insert_head(s);
        /* the row: positions of p[i].uid from p[i].seq, within the span */
        while (j < np && p[j].uid == p[i].uid && p[j].seq - p[i].seq < TL_CHUNK_SPAN)
            last = j++;
        sql_add(s, "%s(%" PRId64 ",%" PRId64 ",%" PRId64 ",'", in_stmt ? "," : "", p[i].uid, p[i].seq,
                p[last].seq);
        for (size_t k = i; k < j; k++)
            if (k == i || p[k].seq != p[k - 1].seq)
                sql_add(s, "%s%" PRId64 ":%" PRId64, k == i ? "" : " ", p[k].seq, p[k].mid);
        sql_add(s, "')");
        in_stmt++;
        res->chunks++;
        i = j;
        if (i == np || s->len >= PERSIST_SQL_CHUNK_BYTES) {
            chunk_insert_tail(s);
            if (s->failed)
                rc = MP_ENOMEM;
            else if (run(m, s->p, s->len) != 0)
                rc = MP_ERR;
            in_stmt = 0;
        }
    }
    free(p);
    return rc;
}

/* ---- chat_groups, group_members: the group state entries (G) ---- */

/* Run a statement; on an error about a value go back to the savepoint, mark row rejected and return
 * MP_EINVAL; on another error MP_ERR (mysql_errno(m) says). */
static int state_run(MYSQL *m, struct sql *s, struct persist_row *row)
{
    unsigned err;
    if (s->failed)
        return MP_ENOMEM;
    if (run(m, s->p, s->len) == 0)
        return MP_OK;
    err = mysql_errno(m);
    if (!persist_store_is_row_error(err))
        return MP_ERR;
    reject(row, err, "mysql refused the group state: error %u: %s", err, mysql_error(m));
    if (run(m, "ROLLBACK TO SAVEPOINT mp_state", 30) != 0)
        return MP_ERR;
    return MP_EINVAL;
}

/* The ver MySQL has for the group, locked until the commit: *ver = 0 when there is no row. */
static int state_current(MYSQL *m, struct sql *s, int64_t group, int64_t *ver)
{
    MYSQL_RES *r;
    MYSQL_ROW row;
    s->len = 0;
    s->failed = 0;
    sql_add(s, "SELECT ver FROM chat_groups WHERE id = %" PRId64 " FOR UPDATE", group);
    if (s->failed)
        return MP_ENOMEM;
    if (mysql_real_query(m, s->p, (unsigned long)s->len) != 0 || (r = mysql_store_result(m)) == NULL)
        return MP_ERR;
    row = mysql_fetch_row(r);
    *ver = row != NULL && row[0] != NULL ? strtoll(row[0], NULL, 10) : 0;
    mysql_free_result(r);
    return MP_OK;
}

/* Write one G entry, newer than MySQL's row: the group row, then its members replaced (none when deleted). */
static int state_write(MYSQL *m, struct sql *s, struct persist_row *row)
{
    const struct persist_msg *g = &row->msg;
    size_t at = 0, in_stmt = 0;
    int64_t uid, order, ms;
    char role;
    int rc;

    s->len = 0;
    s->failed = 0;
    sql_add(s, "INSERT INTO chat_groups (id, name, owner, created_ms, ver, deleted_ms) VALUES (%" PRId64 ",",
            g->group);
    sql_add_string(s, m, g->name ? g->name : "", g->name_len);
    if (g->deleted)
        sql_add(s,
                ",0,0,%" PRId64 ",%" PRId64 ") ON DUPLICATE KEY UPDATE ver = VALUES(ver), "
                "deleted_ms = VALUES(deleted_ms)",
                g->ver, g->ts);
    else
        sql_add(
            s,
            ",%" PRId64 ",%" PRId64 ",%" PRId64 ",NULL) ON DUPLICATE KEY UPDATE name = VALUES(name), "
            "owner = VALUES(owner), created_ms = VALUES(created_ms), ver = VALUES(ver), deleted_ms = NULL",
            g->owner, g->created, g->ver);
    if ((rc = state_run(m, s, row)) != MP_OK)
        return rc;
    s->len = 0;
    s->failed = 0;
    sql_add(s, "DELETE FROM group_members WHERE group_id = %" PRId64, g->group);
    if ((rc = state_run(m, s, row)) != MP_OK)
        return rc;
    for (;;) {
        int more = persist_members_next(g->members, g->members_len, &at, &uid, &role, &order, &ms);
        if (more) {
            if (in_stmt == 0) {
                s->len = 0;
                s->failed = 0;
                sql_add(s, "INSERT INTO group_members (group_id, uid, role, join_order, joined_ms) VALUES ");
            }
            /* a uid listed twice: the last item wins */
            sql_add(s, "%s(%" PRId64 ",%" PRId64 ",'%c',%" PRId64 ",%" PRId64 ")", in_stmt ? "," : "",
                    g->group, uid, role, order, ms);
            in_stmt++;
        }
        if (in_stmt > 0 && (!more || s->len >= PERSIST_SQL_CHUNK_BYTES)) {
            sql_add(s, " ON DUPLICATE KEY UPDATE role = VALUES(role), join_order = VALUES(join_order), "
                       "joined_ms = VALUES(joined_ms)");
            if ((rc = state_run(m, s, row)) != MP_OK)
                return rc;
            in_stmt = 0;
        }
        if (!more)
            return MP_OK;
    }
}

/* Apply the G entries states[0..n): of each group only the one with the highest ver in the batch, and only
 * when that ver is above the row's (MySQL may have a newer one already, from a batch stored before; equal is
 * the same change stored again). Each group is one savepoint: a group MySQL refuses is marked rejected and
 * the rest of the transaction goes on. */
static int store_states(MYSQL *m, struct sql *s, struct persist_row **states, size_t n,
                        struct persist_store_result *res)
{
    for (size_t i = 0; i < n; i++) {
        const struct persist_msg *g = &states[i]->msg;
        int64_t cur;
        int rc, newest = 1;
        for (size_t k = 0; k < n && newest; k++) {
            const struct persist_msg *o = &states[k]->msg;
            if (k != i && o->group == g->group && (o->ver > g->ver || (o->ver == g->ver && k < i)))
                newest = 0;
        }
        if (!newest) {
            res->stale++;
            continue;
        }
        if (run(m, "SAVEPOINT mp_state", 18) != 0)
            return MP_ERR;
        if ((rc = state_current(m, s, g->group, &cur)) != MP_OK)
            return rc;
        if (cur >= g->ver) {
            res->stale++;
            continue;
        }
        rc = state_write(m, s, states[i]);
        if (rc == MP_EINVAL) {
            res->rejected++;
            continue;
        }
        if (rc != MP_OK)
            return rc;
        res->states++;
    }
    return MP_OK;
}

/* ---- the batch ---- */

/* Is row a half of a split t or i (push/chat_send.c: sender and recipient in two shards), one of the two
 * entries each carrying one seq, stored as the row it names? */
static int is_half(const struct persist_row *row)
{
    const struct persist_msg *msg = &row->msg;
    return (msg->type == 't' || msg->type == 'i') && msg->group == 0 &&
           (msg->from_seq > 0) != (msg->to_seq > 0) && !row->rejected && row->stored_mid == msg->mid;
}

/* Fill the seq the halves of rows[from..to) carry into their rows (inserted by this or an earlier batch,
 * by whichever half came first): one UPDATE that sets a seq only where it is still NULL, so a half stored
 * again changes nothing and the two halves may come in any order, in one batch or in two. */
static int merge_halves(MYSQL *m, struct sql *s, const char *table, struct persist_row **rows, size_t from,
                        size_t to)
{
    size_t i, nf = 0, nt = 0, k = 0;
    for (i = from; i < to; i++)
        if (is_half(rows[i]))
            rows[i]->msg.from_seq > 0 ? nf++ : nt++;
    if (nf + nt == 0)
        return MP_OK;
    s->len = 0;
    s->failed = 0;
    sql_add(s, "UPDATE `%s` SET ", table);
    for (int col = 0; col < 2; col++) {
        if ((col == 0 ? nf : nt) == 0)
            continue;
        sql_add(s, "%s%s = COALESCE(%s, CASE id", col == 1 && nf > 0 ? ", " : "", col ? "to_seq" : "from_seq",
                col ? "to_seq" : "from_seq");
        for (i = from; i < to; i++) {
            const struct persist_msg *msg = &rows[i]->msg;
            int64_t seq = col ? msg->to_seq : msg->from_seq;
            if (is_half(rows[i]) && seq > 0)
                sql_add(s, " WHEN %" PRId64 " THEN %" PRId64, msg->mid, seq);
        }
        sql_add(s, " END)");
    }
    sql_add(s, " WHERE id IN (");
    for (i = from; i < to; i++)
        if (is_half(rows[i]))
            sql_add(s, "%s%" PRId64, k++ ? "," : "", rows[i]->msg.mid);
    sql_add(s, ")");
    if (s->failed)
        return MP_ENOMEM;
    return run(m, s->p, s->len) == 0 ? MP_OK : MP_ERR;
}

/* Insert the message rows msgs[0..n) (every type but G); *rejected counts those MySQL refused. */
static int store_messages(MYSQL *m, struct sql *s, const char *table, struct persist_row **msgs, size_t n,
                          struct persist_store_result *res)
{
    size_t i, j, before = res->rejected;
    int rc;

    for (i = 0; i < n; i = j) {
        /* One statement takes rows until it is PERSIST_SQL_CHUNK_BYTES long; the bytes of a row are at
         * most twice its strings plus a little. */
        size_t bytes = 0;
        for (j = i; j < n && (j == i || bytes < PERSIST_SQL_CHUNK_BYTES); j++)
            bytes += 2 * (msgs[j]->msg.cid_len + msgs[j]->msg.body_len) + 100;
        rc = insert_rows(m, s, table, msgs, i, j, &res->inserted);
        if (rc == MP_ERR && persist_store_is_row_error(mysql_errno(m)))
            rc = insert_one_by_one(m, s, table, msgs, i, j, res);
        if (rc != MP_OK)
            return rc;
    }
    if (res->inserted < n - (res->rejected - before)) {
        for (i = 0; i < n; i += PERSIST_CHECK_ROWS) {
            rc = check_stored(m, s, table, msgs, i, i + PERSIST_CHECK_ROWS < n ? i + PERSIST_CHECK_ROWS : n,
                              res);
            if (rc != MP_OK)
                return rc;
        }
    }
    for (i = 0; i < n; i += PERSIST_CHECK_ROWS)
        if ((rc = merge_halves(m, s, table, msgs, i,
                               i + PERSIST_CHECK_ROWS < n ? i + PERSIST_CHECK_ROWS : n)) != MP_OK)
            return rc;
    return MP_OK;
}

int persist_store(struct db *d, const char *table, struct persist_row **rows, size_t n,
                  struct persist_store_result *res)
{
    struct sql s = {0};
    struct persist_row **msgs = NULL, **states;
    MYSQL *m;
    size_t i, nmsgs = 0, nstates = 0, msgs_rejected;
    int rc = MP_OK;

    memset(res, 0, sizeof(*res));
    for (i = 0; i < n; i++) {
        rows[i]->rejected = 0;
        rows[i]->err = 0;
        rows[i]->why[0] = '\0';
        rows[i]->stored_mid = rows[i]->msg.mid;
    }
    m = db_conn(d);
    if (m == NULL) {
        set_why(res->why, "mysql unavailable");
        return MP_EAGAIN;
    }
    /* the message rows first, the group states after them (in their stream order) */
    if (n > 0 && (msgs = malloc(2 * n * sizeof(*msgs))) == NULL) {
        set_why(res->why, "out of memory");
        return MP_ENOMEM;
    }
    states = msgs != NULL ? msgs + n : NULL;
    for (i = 0; i < n; i++) {
        if (rows[i]->msg.type == MQ_TYPE_GROUP_STATE[0])
            states[nstates++] = rows[i];
        else
            msgs[nmsgs++] = rows[i];
    }
    if (run(m, "START TRANSACTION", 17) != 0) {
        rc = fail_batch(d, m, MP_ERR, res);
        goto done;
    }
    rc = store_messages(m, &s, table, msgs, nmsgs, res);
    msgs_rejected = res->rejected;
    if (rc == MP_OK)
        rc = store_chunks(m, &s, msgs, nmsgs, res);
    if (rc == MP_OK)
        rc = store_states(m, &s, states, nstates, res);
    if (rc == MP_OK && run(m, "COMMIT", 6) != 0)
        rc = MP_ERR;
    if (rc != MP_OK) {
        rc = fail_batch(d, m, rc, res);
        goto done;
    }
    res->duplicates = nmsgs - msgs_rejected > res->inserted ? nmsgs - msgs_rejected - res->inserted : 0;
done:
    free(s.p);
    free(msgs);
    if (rc != MP_OK) {
        res->inserted = 0;
        res->duplicates = 0;
        res->chunks = 0;
        res->states = 0;
        res->stale = 0;
    }
    return rc;
}
