/* persist-insert-variants -- how should magpie-persist write a batch? Compares, on the MySQL/MariaDB of a
 * magpie.conf, in one run and interleaved round by round (so a busy machine hurts all alike):
 *
 *   multi     what magpie-persist does (push/persist_store.c): multi-row INSERT ... ON DUPLICATE KEY
 *             UPDATE id = id, in one transaction per batch
 *   ignore    the same with INSERT IGNORE instead (not kept: it stores truncated or converted values
 *             instead of refusing them; measured to show the choice costs nothing)
 *   prepared  one prepared single-row INSERT ... ON DUPLICATE KEY UPDATE executed per row, in one
 *             transaction per batch
 *
 *   persist-insert-variants -c magpie.conf [-n rows per round] [-b batch] [-r rounds]
 *
 * It writes to scratch tables persist_bench_* (created LIKE messages, dropped at the end), never to
 * messages itself. Results: bench/results/persist-insert-variants.md.
 */
#include "cli.h"
#include "db.h"
#include "log.h"
#include "magpie.h"
#include "persist_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rows_per_round = 20000, batch = 500, rounds = 3;

static int on_opt(int opt, const char *arg)
{
    long v = strtol(arg, NULL, 10);
    if (v <= 0)
        return -1;
    if (opt == 'n')
        rows_per_round = v;
    else if (opt == 'b')
        batch = v;
    else if (opt == 'r')
        rounds = v;
    else
        return -1;
    return 0;
}

struct variant {
    const char *name;
    const char *table;
    int (*insert)(struct db *d, const char *table, struct persist_row **rows, size_t n);
    double seconds;
    long rows;
};

static int query(MYSQL *m, const char *q)
{
    if (mysql_query(m, q) != 0) {
        fprintf(stderr, "%s: %s\n", q, mysql_error(m));
        return -1;
    }
    return 0;
}

static int insert_multi(struct db *d, const char *table, struct persist_row **rows, size_t n)
{
    struct persist_store_result res;
    int rc = persist_store(d, table, rows, n, &res);
    if (rc != MP_OK || res.inserted != n)
        fprintf(stderr, "multi: rc=%d inserted=%zu of %zu: %s\n", rc, res.inserted, n, res.why);
    return rc;
}

static int insert_ignore(struct db *d, const char *table, struct persist_row **rows, size_t n)
{
    MYSQL *m = db_conn(d);
    size_t cap = 256 + n * 64, len = 0;
    char *q;
    int rc = MP_OK;
    for (size_t i = 0; i < n; i++)
        cap += 2 * (rows[i]->msg.cid_len + rows[i]->msg.body_len);
    if (m == NULL || (q = malloc(cap)) == NULL)
        return MP_ERR;
    len += (size_t)snprintf(
        q + len, cap - len,
        "INSERT IGNORE INTO `%s` (id, client_id, from_uid, to_uid, type, body, created_ms) VALUES ", table);
    for (size_t i = 0; i < n; i++) {
        const struct persist_msg *msg = &rows[i]->msg;
        len += (size_t)snprintf(q + len, cap - len, "%s(%" PRId64 ",'", i ? "," : "", msg->mid);
        len += mysql_real_escape_string(m, q + len, msg->cid, (unsigned long)msg->cid_len);
        len += (size_t)snprintf(q + len, cap - len, "',%" PRId64 ",%" PRId64 ",'%c','", msg->from, msg->to,
                                msg->type);
        len += mysql_real_escape_string(m, q + len, msg->body, (unsigned long)msg->body_len);
        len += (size_t)snprintf(q + len, cap - len, "',%" PRId64 ")", msg->ts);
    }
    if (query(m, "START TRANSACTION") != 0 || mysql_real_query(m, q, (unsigned long)len) != 0 ||
        query(m, "COMMIT") != 0) {
        fprintf(stderr, "ignore: %s\n", mysql_error(m));
        rc = MP_ERR;
    }
    free(q);
    return rc;
}

static int insert_prepared(struct db *d, const char *table, struct persist_row **rows, size_t n)
{
    MYSQL *m = db_conn(d);
    MYSQL_STMT *st;
    MYSQL_BIND b[7];
    char sql[256];
    int64_t mid, from, to, ts;
    char type;
    unsigned long cid_len, body_len, one = 1;
    int rc = MP_OK;

    if (m == NULL || (st = mysql_stmt_init(m)) == NULL)
        return MP_ERR;
    snprintf(
        sql, sizeof(sql),
        "INSERT INTO `%s` (id, client_id, from_uid, to_uid, type, body, created_ms) VALUES (?,?,?,?,?,?,?) "
        "ON DUPLICATE KEY UPDATE id = id",
        table);
    memset(b, 0, sizeof(b));
    b[0].buffer_type = MYSQL_TYPE_LONGLONG, b[0].buffer = &mid;
    b[1].buffer_type = MYSQL_TYPE_STRING, b[1].length = &cid_len;
    b[2].buffer_type = MYSQL_TYPE_LONGLONG, b[2].buffer = &from;
    b[3].buffer_type = MYSQL_TYPE_LONGLONG, b[3].buffer = &to;
    b[4].buffer_type = MYSQL_TYPE_STRING, b[4].buffer = &type, b[4].length = &one;
    b[5].buffer_type = MYSQL_TYPE_STRING, b[5].length = &body_len;
    b[6].buffer_type = MYSQL_TYPE_LONGLONG, b[6].buffer = &ts;
    /* Preparing once per batch is what the worker would do (a statement dies with its connection). */
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)) != 0 || query(m, "START TRANSACTION") != 0) {
        fprintf(stderr, "prepared: %s\n", mysql_stmt_error(st));
        mysql_stmt_close(st);
        return MP_ERR;
    }
    for (size_t i = 0; i < n && rc == MP_OK; i++) {
        const struct persist_msg *msg = &rows[i]->msg;
        mid = msg->mid, from = msg->from, to = msg->to, ts = msg->ts, type = msg->type;
        b[1].buffer = (void *)msg->cid, cid_len = (unsigned long)msg->cid_len;
        b[5].buffer = (void *)msg->body, body_len = (unsigned long)msg->body_len;
        if (mysql_stmt_bind_param(st, b) != 0 || mysql_stmt_execute(st) != 0) {
            fprintf(stderr, "prepared: %s\n", mysql_stmt_error(st));
            rc = MP_ERR;
        }
    }
    if (rc == MP_OK && query(m, "COMMIT") != 0)
        rc = MP_ERR;
    mysql_stmt_close(st);
    return rc;
}

/* Rows shaped like chat: short ASCII or CJK text, unique (from, cid) and mid per variant and round. */
static void make_rows(struct persist_row *rows, char *bodies, size_t n, int64_t base, unsigned *seed)
{
    static const char *words[] = {"ok ",    "on my way ",     "\xE5\xA5\xBD\xE7\x9A\x84 ",
                                  "5 min ", "it's \"here\" ", "\xF0\x9F\x9A\x80 "};
    for (size_t i = 0; i < n; i++) {
        struct persist_msg *msg = &rows[i].msg;
        char *body = bodies + i * 256, *cid = bodies + i * 256 + 200;
        size_t len = 0, want = 10 + (size_t)(rand_r(seed) % 150);
        while (len < want) {
            const char *w = words[rand_r(seed) % 6];
            size_t wl = strlen(w);
            if (len + wl > 190)
                break;
            memcpy(body + len, w, wl);
            len += wl;
        }
        msg->mid = base + (int64_t)i;
        msg->from = 1000000 + (int64_t)(i % 5000);
        msg->to = 2000000 + (int64_t)(i % 4999);
        msg->ts = 1790000000000LL + (int64_t)i;
        msg->type = 't';
        msg->body = body;
        msg->body_len = len;
        msg->cid_len = (size_t)snprintf(cid, 56, "b%" PRId64, base + (int64_t)i);
        msg->cid = cid;
    }
}

int main(int argc, char **argv)
{
    struct magpie_config cfg;
    struct db d;
    struct variant variants[] = {
        {"multi", "persist_bench_multi", insert_multi, 0, 0},
        {"ignore", "persist_bench_ignore", insert_ignore, 0, 0},
        {"prepared", "persist_bench_prepared", insert_prepared, 0, 0},
    };
    struct persist_row *rows;
    struct persist_row **ptrs;
    char *bodies, q[256];
    unsigned seed = 42;
    MYSQL *m;
    int rc = cli_start(argc, argv, NULL, " [-n rows] [-b batch] [-r rounds]", "n:b:r:", on_opt, &cfg),
        status = 1;

    if (rc >= 0)
        return rc;
    log_open("bench", "warn", "");
    db_library_init();
    db_init(&d, &cfg);
    persist_store_prepare(&d);
    rows = calloc((size_t)rows_per_round, sizeof(*rows));
    ptrs = calloc((size_t)rows_per_round, sizeof(*ptrs));
    bodies = malloc((size_t)rows_per_round * 256);
    if (rows == NULL || ptrs == NULL || bodies == NULL || (m = db_conn(&d)) == NULL) {
        fprintf(stderr, "setup failed (memory or MySQL)\n");
        goto out;
    }
    for (size_t v = 0; v < MP_ARRAY_LEN(variants); v++) {
        snprintf(q, sizeof(q), "DROP TABLE IF EXISTS `%s`", variants[v].table);
        query(m, q);
        snprintf(q, sizeof(q), "CREATE TABLE `%s` LIKE messages", variants[v].table);
        if (query(m, q) != 0)
            goto out;
    }
    for (long r = 0; r < rounds; r++) {
        for (size_t v = 0; v < MP_ARRAY_LEN(variants); v++) {
            int64_t t0;
            make_rows(rows, bodies, (size_t)rows_per_round, (int64_t)(r * 10 + (long)v + 1) * 100000000LL,
                      &seed);
            for (long i = 0; i < rows_per_round; i++)
                ptrs[i] = &rows[i];
            t0 = mp_mono_ms();
            for (long i = 0; i < rows_per_round; i += batch) {
                size_t n = (size_t)(i + batch <= rows_per_round ? batch : rows_per_round - i);
                if (variants[v].insert(&d, variants[v].table, ptrs + i, n) != MP_OK)
                    goto out;
            }
            variants[v].seconds += (double)(mp_mono_ms() - t0) / 1000.0;
            variants[v].rows += rows_per_round;
        }
    }
    printf("rows per round %ld, batch %ld, rounds %ld (interleaved)\n", rows_per_round, batch, rounds);
    for (size_t v = 0; v < MP_ARRAY_LEN(variants); v++)
        printf("%-9s %8.0f rows/s  (%ld rows in %.2f s)\n", variants[v].name,
               variants[v].rows / variants[v].seconds, variants[v].rows, variants[v].seconds);
    status = 0;
out:
    if ((m = db_conn(&d)) != NULL)
        for (size_t v = 0; v < MP_ARRAY_LEN(variants); v++) {
            snprintf(q, sizeof(q), "DROP TABLE IF EXISTS `%s`", variants[v].table);
            query(m, q);
        }
    free(rows);
    free(ptrs);
    free(bodies);
    db_close(&d);
    mysql_library_end();
    config_free(&cfg);
    return status;
}
