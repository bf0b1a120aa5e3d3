/* chat_order.c -- T: a courier takes an order (seed 001, SPEC §4).
 *
 * Redis decides who gets it, atomically (order_lua): the order must exist (KEY_ORDER, written by
 * magpie-http's /admin/orders) and have no courier yet; HSETNX makes this courier its courier. Then courier
 * and customer become friends in Redis (SADD to each one's KEY_FRIENDS, what the t/i friend check reads):
 * two commands after the script, since the order and the two users' sets are three slots (keys.h); they are
 * sent for a retry too, so a node that died between the script and them leaves nothing missing once the
 * courier retries (the script answers "this courier has it" and the friendship is written then). Then a pool
 * thread records it in MySQL (friends rows both ways, orders.courier and taken_at). Only then does the
 * courier get T, and the customer an "s" {event: "order_taken"} on every connection it has in the cluster.
 *
 * If MySQL fails, the courier gets E and retries; Redis remembers that this courier holds the order, so the
 * retry skips straight to the MySQL part, and the customer hears of it once, when MySQL first records it.
 *
 * With redis.min_replicas_acked (shared/sentinel.h) the MySQL part waits for rdsa_wait after the script: a
 * failover must not take back a courier MySQL already names, nor the friendship t's check reads. Fewer
 * replicas: E "temporarily unavailable" and the retry goes on from there (a retry of a T already taken
 * writes the courier again, so that its WAIT covers the first attempt whichever connection made it).
 */
#include "bus.h"
#include "chat.h"
#include "dbpool.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ORDER_RETRY_US                                                                                       \
    150000 /* after a stale MySQL connection was dropped: more than db.c's first backoff                     \
            */

/* KEYS: the order. ARGV: courier, "1" when the caller WAITs.
 * Returns {0, customer} taken now, {1, customer} this courier took it before, {-1} no such order,
 * {-2} another courier has it, {-3} the courier is the customer. */
static struct rdsa_script order_lua = {
    "order",
    LUA_SHEBANG "local customer = redis.call('HGET', KEYS[1], 'customer')\n"
                "if not customer then return {-1} end\n"
                "if customer == ARGV[1] then return {-3} end\n"
                "if redis.call('HSETNX', KEYS[1], 'courier', ARGV[1]) == 0 then\n"
                "  if redis.call('HGET', KEYS[1], 'courier') ~= ARGV[1] then\n"
                "    return {-2}\n"
                "  end\n"
                "  if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'courier', ARGV[1]) end\n"
                "  return {1, customer}\n"
                "end\n"
                "return {0, customer}\n",
    ""};

struct order_req {
    struct chat_req r;
    char order[CHAT_MAX_ORDER + 1];
    int64_t courier, customer;
    int status;  /* pool thread: MP_OK or MP_EAGAIN */
    int changed; /* pool thread: this T is the one that recorded the order in MySQL */
};

void chat_order_init(void)
{
    rdsa_script(&order_lua);
}

/* MySQL: friends both ways, and the order's courier. MP_OK or MP_EAGAIN. */
static int order_record(struct db *db, struct order_req *q)
{
    char sql[512], esc[2 * CHAT_MAX_ORDER + 1];
    MYSQL *m = db ? db_conn(db) : NULL;
    long long a = q->courier, b = q->customer;
    my_ulonglong affected;
    int n;

    if (m == NULL)
        return MP_EAGAIN;
    n = snprintf(sql, sizeof(sql),
                 "INSERT IGNORE INTO friends (uid, friend_uid) VALUES (%lld, %lld), (%lld, %lld)", a, b, b,
                 a);
    if (db_exec(db, sql, (unsigned long)n) != MP_OK)
        goto failed;
    mysql_real_escape_string(m, esc, q->order, strlen(q->order));
    n = snprintf(sql, sizeof(sql),
                 "INSERT INTO orders (id, customer, courier, taken_at) VALUES ('%s', %lld, %lld, NOW(3)) "
                 "ON DUPLICATE KEY UPDATE taken_at = IF(courier IS NULL, VALUES(taken_at), taken_at), "
                 "courier = IF(courier IS NULL, VALUES(courier), courier)",
                 esc, b, a);
    if (mysql_real_query(m, sql, (unsigned long)n) != 0) {
        db_check_error(db);
        goto failed;
    }
    affected = mysql_affected_rows(m);
    q->changed = affected == 1 || affected == 2; /* inserted, or updated from no courier */
    return MP_OK;
failed:
    if (db->m != NULL)
        log_error("order write failed order_len=%zu error=\"%s\"", strlen(q->order), mysql_error(db->m));
    return MP_EAGAIN;
}

static void order_work(struct db *db, void *arg)
{
    struct order_req *q = arg;
    int had_conn = db != NULL && db->m != NULL;
    q->status = order_record(db, q);
    if (q->status == MP_EAGAIN && had_conn && db->m == NULL) {
        usleep(ORDER_RETRY_US);
        q->status = order_record(db, q);
    }
}

/* Tell the customer, wherever they are connected: a deliver command to every node (bus.h). */
static void tell_customer(const struct order_req *q)
{
    char id[24];
    json_t *cmd;
    char *s;

    snprintf(id, sizeof(id), "%lld", (long long)id_next(&push.ids));
    cmd = json_pack("{s:s,s:I,s:{s:s,s:i,s:s,s:{s:s,s:s,s:I},s:I}}", "cmd", BUS_CMD_DELIVER, "uid",
                    (json_int_t)q->customer, "packet", "id", id, "from", 0, "type", "s", "msg", "event",
                    "order_taken", "order", q->order, "courier", (json_int_t)q->courier, "ts",
                    (json_int_t)mp_now_ms());
    s = cmd ? json_dumps(cmd, JSON_COMPACT) : NULL;
    json_decref(cmd);
    if (s == NULL || rdsa_cmd(NULL, NULL, "PUBLISH %s %s", CHAN_CONTROL, s) != MP_OK)
        log_warn("order_taken not sent customer=%lld (redis unavailable)", (long long)q->customer);
    free(s);
}

static void order_done(void *arg)
{
    struct order_req *q = arg;
    if (q->status != MP_OK) {
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else {
        chat_reply(q->r.c, q->r.id, q->r.id_len, 'T',
                   json_pack("{s:s,s:I}", "order", q->order, "customer", (json_int_t)q->customer), NULL);
        if (q->changed) {
            log_info("order taken courier=%lld customer=%lld", (long long)q->courier, (long long)q->customer);
            tell_customer(q);
        }
    }
    chat_req_done(&q->r);
    free(q);
}

/* rdsa_wait answered (at once when no WAIT is configured): on to MySQL. */
static void on_order_durable(int ok, void *arg)
{
    struct order_req *q = arg;
    if (ok && dbpool_submit(order_work, order_done, q) == MP_OK)
        return;
    chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    chat_req_done(&q->r);
    free(q);
}

static void on_order_reply(redisReply *r, void *arg)
{
    struct order_req *q = arg;
    char friends[64];
    long long code;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("order script failed reason=\"%s\"", r->str);
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        goto done;
    }
    code = r->element[0]->integer;
    if (code < 0) {
        chat_error(q->r.c, q->r.id, q->r.id_len,
                   code == -1   ? CHAT_E_NO_ORDER
                   : code == -2 ? CHAT_E_ORDER_TAKEN
                                : CHAT_E_OWN_ORDER,
                   STATS_E_REJECTED);
        goto done;
    }
    if (r->elements < 2 || r->element[1]->type != REDIS_REPLY_STRING ||
        (q->customer = strtoll(r->element[1]->str, NULL, 10)) <= 0) {
        log_warn("order has a bad customer field order_len=%zu", strlen(q->order));
        chat_error(q->r.c, q->r.id, q->r.id_len, CHAT_E_NO_ORDER, STATS_E_REJECTED);
        goto done;
    }
    /* The friendship, both ways: each set in its user's slot. Sent before the WAIT, which covers them. */
    key_tagged(friends, sizeof(friends), KEY_FRIENDS, q->courier);
    rdsa_cmd(NULL, NULL, "SADD %s %lld", friends, (long long)q->customer);
    key_tagged(friends, sizeof(friends), KEY_FRIENDS, q->customer);
    rdsa_cmd(NULL, NULL, "SADD %s %lld", friends, (long long)q->courier);
    rdsa_wait(on_order_durable, q);
    return;
done:
    chat_req_done(&q->r);
    free(q);
}

void chat_take_order(struct conn *c, const struct chatpkt *p)
{
    char key[128], courier[24];
    const char *argv[3];
    size_t argvlen[3];
    struct order_req *q = calloc(1, sizeof(*q));
    const char *bad;

    if (q == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    if ((bad = chatpkt_order(p, q->order, sizeof(q->order))) != NULL) {
        free(q);
        chat_error(c, p->id, p->id_len, bad, STATS_E_MALFORMED);
        return;
    }
    q->courier = c->uid;
    snprintf(key, sizeof(key), KEY_ORDER, q->order);
    snprintf(courier, sizeof(courier), "%lld", (long long)c->uid);
    argv[0] = key;
    argv[1] = courier;
    argv[2] = push.cfg->redis.min_replicas_acked > 0 ? "1" : "";
    for (int i = 0; i < 3; i++)
        argvlen[i] = strlen(argv[i]);
    chat_req_init(&q->r, c, p);
    if (rdsa_eval(&order_lua, on_order_reply, q, 1, 3, argv, argvlen) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        chat_req_done(&q->r);
        free(q);
    }
}
