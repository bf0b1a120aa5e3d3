/* persist_seq.c -- see persist_seq.h. */
#include "persist_seq.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Users whose counters go to Redis in one pipeline. */
#define SEQ_PIPELINE 500

/* KEYS: a KEY_SEQ. ARGV: the highest seq MySQL has for its user. Raises the counter, never lowers it. */
static const char raise_lua[] =
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')\n"
    "if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return 1 end\n"
    "return 0\n";

/* Send the queued commands' replies back; MP_OK when every one was not an error. */
static int drain(struct rds *r, int n)
{
    int rc = MP_OK;
    for (int i = 0; i < n; i++) {
        redisReply *rep = rds_reply(r);
        if (rep == NULL)
            return MP_EAGAIN;
        if (rep->type == REDIS_REPLY_ERROR) {
            log_error("seq restore: redis refused a counter reason=\"%s\"", rep->str);
            rc = MP_EAGAIN;
        }
        freeReplyObject(rep);
    }
    return rc;
}

int persist_seq_restore(struct rds *r, struct db *d, long long *restored)
{
    static const char sql[] =
        "SELECT uid, MAX(seq) FROM ("
        "SELECT from_uid AS uid, from_seq AS seq FROM messages WHERE from_seq IS NOT NULL "
        "UNION ALL "
        "SELECT to_uid, to_seq FROM messages WHERE to_seq IS NOT NULL) s GROUP BY uid";
    redisReply *rep = rds_cmd(r, "EXISTS %s", KEY_SEQ_RESTORED);
    redisContext *ctx;
    MYSQL *m;
    MYSQL_RES *res;
    MYSQL_ROW row;
    int queued = 0, rc = MP_OK;
    long long users = 0;

    *restored = -1;
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        if (rep != NULL)
            freeReplyObject(rep);
        return MP_EAGAIN;
    }
    if (rep->integer == 1) {
        freeReplyObject(rep);
        return MP_OK;
    }
    freeReplyObject(rep);
    log_warn("seq counters: %s is missing (a new Redis, or one that lost its data): restoring every user's "
             "counter from MySQL; until then messages of users without a counter are refused",
             KEY_SEQ_RESTORED);
    if ((m = db_conn(d)) == NULL)
        return MP_EAGAIN;
    /* mysql_use_result streams the rows: a table of millions of users is not held in memory at once */
    if (mysql_real_query(m, sql, sizeof(sql) - 1) != 0 || (res = mysql_use_result(m)) == NULL) {
        log_error("seq restore: query failed error=\"%s\"", mysql_error(m));
        db_check_error(d);
        return MP_EAGAIN;
    }
    *restored = 0;
    while ((row = mysql_fetch_row(res)) != NULL) {
        char key[64];
        if (row[0] == NULL || row[1] == NULL)
            continue;
        snprintf(key, sizeof(key), KEY_SEQ, strtoll(row[0], NULL, 10));
        if ((ctx = rds_conn(r)) == NULL ||
            redisAppendCommand(ctx, "EVAL %s 1 %s %s", raise_lua, key, row[1]) != REDIS_OK) {
            rc = MP_EAGAIN;
            break;
        }
        users++;
        if (++queued == SEQ_PIPELINE) {
            if ((rc = drain(r, queued)) != MP_OK)
                break;
            queued = 0;
        }
    }
    if (mysql_errno(m) != 0) {
        log_error("seq restore: reading the rows failed error=\"%s\"", mysql_error(m));
        rc = MP_EAGAIN;
    }
    mysql_free_result(res);
    if (rc == MP_OK && queued > 0)
        rc = drain(r, queued);
    if (rc != MP_OK) {
        if (rc == MP_EAGAIN && rds_conn(r) != NULL)
            rds_drop(r, "seq restore failed");
        return rc;
    }
    rep = rds_cmd(r, "SET %s %lld", KEY_SEQ_RESTORED, (long long)mp_now_ms());
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        if (rep != NULL)
            freeReplyObject(rep);
        return MP_EAGAIN;
    }
    freeReplyObject(rep);
    *restored = users;
    log_info("seq counters restored from MySQL users=%lld", users);
    return MP_OK;
}
