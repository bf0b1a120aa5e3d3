/* admin.c -- server-to-server endpoints (Authorization: Key <key>): /admin/friends, /admin/orders,
 * /admin/kick (SPEC §3). MySQL keeps the record; Redis holds what magpie-push reads at message time
 * (keys.h: KEY_FRIENDS, KEY_ORDER), so both are written, MySQL first. Each call is idempotent: after a
 * code 20 the caller simply retries. */
#include "bus.h"
#include "call.h"
#include "handlers.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORDER_MAX_ID 64 /* orders.id is VARCHAR(64) */

static int redis_ok(struct call *c, redisReply *rep)
{
    int ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        log_error("admin redis command failed reason=\"%s\"", rep->str);
    freeReplyObject(rep);
    /* With redis.min_replicas_acked: ok only once replicas hold the write (shared/sentinel.h), else code
     * 20, and the caller's retry is harmless. */
    if (ok && rds_wait(&c->w->rds) != MP_OK)
        ok = 0;
    if (!ok)
        reply_unavailable(c, "redis");
    return ok;
}

void admin_friends(struct call *c)
{
    int64_t a, b;
    char sql[160], ka[48], kb[48], sa[24], sb[24];
    int rc;

    if (field_uid(c, "a", 1, &a) != 0 || field_uid(c, "b", 1, &b) != 0)
        return;
    if (a == b) {
        reply_msg(c, API_INVALID, "a and b must be two users", NULL);
        return;
    }
    snprintf(sql, sizeof(sql),
             "INSERT IGNORE INTO friends (uid, friend_uid) VALUES (%lld, %lld), (%lld, %lld)", (long long)a,
             (long long)b, (long long)b, (long long)a);
    rc = sql_exec(&c->w->db, sql, NULL);
    if (rc != MP_OK) {
        reply_unavailable(c, "mysql");
        return;
    }
    key_tagged(ka, sizeof(ka), KEY_FRIENDS, a);
    key_tagged(kb, sizeof(kb), KEY_FRIENDS, b);
    snprintf(sa, sizeof(sa), "%lld", (long long)a);
    snprintf(sb, sizeof(sb), "%lld", (long long)b);
    /* One SADD per user, each in that user's shard (a cluster slot each: keys.h), a then b. SADD is
     * idempotent, so a retry redoes both harmlessly. A failure between them leaves MySQL's two rows and a's
     * set with b: a may send to b, b not yet to a (the send checks the sender's set); the caller gets code
     * 20 and its retry completes b's. */
    if (!redis_ok(c, rds_cmd(&c->w->rds, "SADD %s %s", ka, sb)) ||
        !redis_ok(c, rds_cmd(&c->w->rds, "SADD %s %s", kb, sa)))
        return;
    log_info("friends added a=%lld b=%lld", (long long)a, (long long)b);
    reply(c, API_OK, json_pack("{s:I, s:I}", "a", (json_int_t)a, "b", (json_int_t)b));
}

void admin_orders(struct call *c)
{
    const char *order;
    char quoted[2 * ORDER_MAX_ID + 1], sql[2 * ORDER_MAX_ID + 128], key[ORDER_MAX_ID + 16];
    int64_t customer;
    long long owner;
    int rc;

    if (field_str(c, "order_id", 1, ORDER_MAX_ID, &order) != 0 || field_uid(c, "customer", 1, &customer) != 0)
        return;
    for (const unsigned char *p = (const unsigned char *)order; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f) {
            reply_msg(c, API_INVALID, "order_id: control characters are not allowed", NULL);
            return;
        }
    if (*order == '\0') {
        reply_msg(c, API_INVALID, "order_id: must not be empty", NULL);
        return;
    }
    if (sql_quote(&c->w->db, quoted, order, strlen(order)) != MP_OK) {
        reply_unavailable(c, "mysql");
        return;
    }
    snprintf(sql, sizeof(sql), "INSERT INTO orders (id, customer) VALUES ('%s', %lld)", quoted,
             (long long)customer);
    rc = sql_exec(&c->w->db, sql, NULL);
    if (rc == MP_EEXIST) {
        /* Registering the same order again is a retry; for another customer it is a mistake. */
        snprintf(sql, sizeof(sql), "SELECT customer FROM orders WHERE id = '%s'", quoted);
        rc = sql_get_int(&c->w->db, sql, &owner);
        if (rc == MP_OK && owner != customer) {
            reply_msg(c, API_INVALID, "order_id is already registered for another customer", NULL);
            return;
        }
    }
    if (rc != MP_OK) {
        reply_unavailable(c, "mysql");
        return;
    }
    snprintf(key, sizeof(key), KEY_ORDER, order);
    if (!redis_ok(c, rds_cmd(&c->w->rds, "HSET %s customer %lld", key, (long long)customer)))
        return;
    log_info("order registered customer=%lld", (long long)customer);
    reply(c, API_OK, json_pack("{s:s, s:I}", "order_id", order, "customer", (json_int_t)customer));
}

void admin_kick(struct call *c)
{
    int64_t uid;
    json_t *cmd;
    char *payload;
    redisReply *rep;

    if (field_uid(c, "uid", 1, &uid) != 0)
        return;
    cmd = json_pack("{s:s, s:I}", "cmd", BUS_CMD_KICK, "uid", (json_int_t)uid);
    payload = cmd ? json_dumps(cmd, JSON_COMPACT) : NULL;
    json_decref(cmd);
    if (payload == NULL) {
        reply_unavailable(c, "memory");
        return;
    }
    rep = rds_cmd(&c->w->rds, "PUBLISH %s %s", CHAN_CONTROL, payload);
    free(payload);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        reply_unavailable(c, "redis");
        return;
    }
    freeReplyObject(rep);
    log_info("kick uid=%lld", (long long)uid);
    reply(c, API_OK, NULL);
}
