/* persist_store.c -- see persist_store.h. */
#include "persist_store.h"
#include "magpie.h"

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
        sql_add(s, "%" PRId64 ")", msg->to_seq);
    else
        sql_add(s, "NULL)");
}

static void sql_insert_head(struct sql *s, const char *table)
{
    s->len = 0;
    s->failed = 0;
    sql_add(s,
            "INSERT INTO `%s` (id, client_id, from_uid, to_uid, type, body, created_ms, from_seq, to_seq) "
            "VALUES ",
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
 * because its id belongs to a different message is marked rejected. Checks rows[from..to). */
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
    sql_add(s, "SELECT from_uid, client_id FROM `%s` WHERE ", table);
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
                memcmp(dbrow[1], msg->cid, msg->cid_len) == 0)
                found[i - from] = 1;
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

int persist_store(struct db *d, const char *table, struct persist_row **rows, size_t n,
                  struct persist_store_result *res)
{
    struct sql s = {0};
    MYSQL *m;
    size_t i, j, stored;
    int rc = MP_OK;

    memset(res, 0, sizeof(*res));
    for (i = 0; i < n; i++) {
        rows[i]->rejected = 0;
        rows[i]->err = 0;
        rows[i]->why[0] = '\0';
    }
    m = db_conn(d);
    if (m == NULL) {
        set_why(res->why, "mysql unavailable");
        return MP_EAGAIN;
    }
    if (run(m, "START TRANSACTION", 17) != 0) {
        rc = fail_batch(d, m, MP_ERR, res);
        goto done;
    }
    for (i = 0; i < n; i = j) {
        /* One statement takes rows until it is PERSIST_SQL_CHUNK_BYTES long; the bytes of a row are at
         * most twice its strings plus a little. */
        size_t bytes = 0;
        for (j = i; j < n && (j == i || bytes < PERSIST_SQL_CHUNK_BYTES); j++)
            bytes += 2 * (rows[j]->msg.cid_len + rows[j]->msg.body_len) + 100;
        rc = insert_rows(m, &s, table, rows, i, j, &res->inserted);
        if (rc == MP_ERR && persist_store_is_row_error(mysql_errno(m)))
            rc = insert_one_by_one(m, &s, table, rows, i, j, res);
        if (rc != MP_OK) {
            rc = fail_batch(d, m, rc, res);
            goto done;
        }
    }
    if (res->inserted < n - res->rejected) {
        for (i = 0; i < n; i += PERSIST_CHECK_ROWS) {
            rc = check_stored(m, &s, table, rows, i, i + PERSIST_CHECK_ROWS < n ? i + PERSIST_CHECK_ROWS : n,
                              res);
            if (rc != MP_OK) {
                rc = fail_batch(d, m, rc, res);
                goto done;
            }
        }
    }
    if (run(m, "COMMIT", 6) != 0) {
        rc = fail_batch(d, m, MP_ERR, res);
        goto done;
    }
    stored = n - res->rejected;
    res->duplicates = stored > res->inserted ? stored - res->inserted : 0;
done:
    free(s.p);
    if (rc != MP_OK) {
        res->inserted = 0;
        res->duplicates = 0;
    }
    return rc;
}
