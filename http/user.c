/* user.c -- what a logged-in user asks about themselves: /logout, /me, /friends, /IM/token, /route
 * (SPEC §3), and the users table behind them. */
#include "bus.h"
#include "call.h"
#include "handlers.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "presence.h"
#include "revoked.h"
#include "sql.h"
#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the users table ---- */

int mobile_valid(const char *s)
{
    size_t digits;
    if (*s == '+')
        s++;
    digits = strspn(s, "0123456789");
    return s[digits] == '\0' && digits >= MOBILE_MIN_DIGITS && digits <= MOBILE_MAX_DIGITS;
}

void mobile_mask(const char *mobile, char *out, size_t n)
{
    size_t len = strlen(mobile), i;
    if (n == 0)
        return;
    for (i = 0; i < len && i + 1 < n; i++)
        out[i] = (i + 4 < len && mobile[i] >= '0' && mobile[i] <= '9') ? '*' : mobile[i];
    out[i] = '\0';
}

int users_login(struct db *d, const char *mobile, int64_t *uid, int *created)
{
    char sql[128];
    long long id;
    int rc;

    /* mobile_valid() allows only '+' and digits, so it goes into the statement as it is. */
    if (!mobile_valid(mobile))
        return MP_EINVAL;
    *created = 0;
    snprintf(sql, sizeof(sql), "SELECT id FROM users WHERE mobile = '%s'", mobile);
    rc = sql_get_int(d, sql, &id);
    if (rc == MP_ENOENT) {
        snprintf(sql, sizeof(sql), "INSERT INTO users (mobile) VALUES ('%s')", mobile);
        rc = sql_exec(d, sql, NULL);
        if (rc == MP_OK) {
            *created = 1;
            id = sql_insert_id(d);
        } else if (rc == MP_EEXIST) {
            /* Two first logins at once: the other one created it. */
            snprintf(sql, sizeof(sql), "SELECT id FROM users WHERE mobile = '%s'", mobile);
            rc = sql_get_int(d, sql, &id);
        }
    }
    if (rc == MP_OK)
        *uid = id;
    return rc;
}

int users_mobile(struct db *d, int64_t uid, char *buf, size_t n)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT mobile FROM users WHERE id = %lld", (long long)uid);
    return sql_get_str(d, sql, buf, n);
}

/* ---- endpoints ---- */

void user_logout(struct call *c)
{
    int64_t ttl = c->claims.exp - (int64_t)time(NULL);
    char *cmd;
    json_t *obj;
    redisReply *rep;

    if (ttl < 1)
        ttl = 1;
    /* The key (what magpie-push's ticket check and a request without the copy read), then the index the
     * copies of every magpie-http read whole (revoked.h); a failure of either is a failed logout (the
     * client retries; both writes are idempotent). */
    rep = rds_cmd(&c->w->rds, "SET " KEY_REVOKED " 1 EX %lld", c->claims.jti, (long long)ttl);
    if (rep != NULL && rep->type != REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        rep = rds_cmd(&c->w->rds, "ZADD %s %lld %s", KEY_REVOKED_INDEX, (long long)c->claims.exp,
                      c->claims.jti);
    }
    /* A revocation a failover takes back would let the token in again: with redis.min_replicas_acked it
     * is confirmed only once replicas hold both writes (the client retries a 503). */
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR || rds_wait(&c->w->rds) != MP_OK) {
        freeReplyObject(rep);
        reply_unavailable(c, "redis");
        return;
    }
    freeReplyObject(rep);
    revoked_add(c->claims.jti, c->claims.exp);
    /* Close the WebSocket connections opened with tickets minted from this token, and tell the other
     * magpie-http processes' copies (bus.h). */
    obj = json_pack("{s:s, s:I, s:s, s:I}", "cmd", BUS_CMD_LOGOUT, "uid", (json_int_t)c->uid, "sid",
                    c->claims.jti, "exp", (json_int_t)c->claims.exp);
    cmd = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (cmd != NULL) {
        freeReplyObject(rds_cmd(&c->w->rds, "PUBLISH %s %s", CHAN_CONTROL, cmd));
        free(cmd);
    }
    log_info("logout uid=%lld", (long long)c->uid);
    reply(c, API_OK, NULL);
}

void user_me(struct call *c)
{
    char mobile[64], masked[64];
    int rc = users_mobile(&c->w->db, c->uid, mobile, sizeof(mobile));
    if (rc == MP_ENOENT) {
        reply_msg(c, API_NOT_FOUND, "no such user", NULL);
        return;
    }
    if (rc != MP_OK) {
        reply_unavailable(c, "mysql");
        return;
    }
    mobile_mask(mobile, masked, sizeof(masked));
    reply(c, API_OK, json_pack("{s:I, s:s}", "userId", (json_int_t)c->uid, "mobile", masked));
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* The friends set is the one the chat's friend check reads (KEY_FRIENDS, kept with MySQL's friends table
 * by /admin/friends and the T packet); online comes from PRESENCE_LUA, as the O packet does it: given the
 * live node ids read just before (keys_live_read), once per shard that has friends (a script touches one
 * shard's slot: keys.h). */
void user_friends(struct call *c)
{
    redisReply *set = NULL, *on = NULL;
    long long *uids = NULL;
    const char **argv = NULL;
    char(*num)[64] = NULL, *live = NULL, nkeys[24];
    unsigned char *online = NULL;
    size_t n = 0, i;
    json_t *list = NULL;

    set = rds_cmd(&c->w->rds, "SMEMBERS " KEY_FRIENDS, key_shard(c->uid), (long long)c->uid);
    if (set == NULL || set->type != REDIS_REPLY_ARRAY)
        goto unavailable;
    uids = calloc(set->elements + 1, sizeof(*uids));
    if (uids == NULL)
        goto unavailable;
    for (i = 0; i < set->elements; i++) {
        long long v = set->element[i]->str ? strtoll(set->element[i]->str, NULL, 10) : 0;
        if (v > 0)
            uids[n++] = v;
    }
    qsort(uids, n, sizeof(*uids), cmp_ll);
    list = json_array();
    if (list == NULL)
        goto unavailable;
    if (n > 0) {
        argv = calloc(n + 4, sizeof(*argv));
        num = calloc(n, sizeof(*num));
        online = calloc(n, 1);
        live = malloc(KEY_LIVE_MAX);
        if (argv == NULL || num == NULL || online == NULL || live == NULL ||
            keys_live_read(&c->w->rds, app.cfg.push.node_ttl_s, live, KEY_LIVE_MAX) != MP_OK)
            goto unavailable;
        argv[0] = "EVAL";
        argv[1] = PRESENCE_LUA;
        argv[2] = nkeys;
        for (int s = 0; s < key_shards(); s++) {
            size_t k = 0, j = 0;
            for (i = 0; i < n; i++)
                if (key_shard(uids[i]) == s) {
                    key_tagged(num[k], sizeof(num[k]), KEY_PRESENCE, uids[i]);
                    argv[3 + k] = num[k];
                    k++;
                }
            if (k == 0)
                continue;
            snprintf(nkeys, sizeof(nkeys), "%zu", k);
            argv[3 + k] = live;
            on = rds_cmdargv(&c->w->rds, (int)(k + 4), argv, NULL);
            if (on == NULL || on->type != REDIS_REPLY_ARRAY || on->elements != k)
                goto unavailable;
            for (i = 0; i < n; i++)
                if (key_shard(uids[i]) == s) {
                    online[i] = on->element[j]->type == REDIS_REPLY_INTEGER && on->element[j]->integer == 1;
                    j++;
                }
            freeReplyObject(on);
            on = NULL;
        }
    }
    for (i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:I, s:b}", "uid", (json_int_t)uids[i], "online", online[i]));
    reply(c, API_OK, json_pack("{s:o}", "friends", list));
    list = NULL;
    goto done;
unavailable:
    if (on != NULL && on->type == REDIS_REPLY_ERROR)
        log_error("presence script failed reason=\"%s\"", on->str);
    reply_unavailable(c, "redis");
done:
    json_decref(list);
    freeReplyObject(set);
    freeReplyObject(on);
    free(uids);
    free(argv);
    free(num);
    free(online);
    free(live);
}

void user_im_token(struct call *c)
{
    struct auth_claims t;
    char *ticket =
        auth_issue(&app.auth, AUTH_KIND_WEBSOCKET, c->uid, app.cfg.auth.ws_ticket_ttl_s, c->claims.jti, &t);
    if (ticket == NULL) {
        reply_unavailable(c, "token issuer");
        return;
    }
    reply(c, API_OK,
          json_pack("{s:s, s:I}", "wstoken", ticket, "expires_in", (json_int_t)app.cfg.auth.ws_ticket_ttl_s));
    free(ticket);
}

/* splitmix64's finaliser: a well-mixed 64-bit hash of x. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct node_rank {
    long long id;
    uint64_t weight;
};

static int by_weight_desc(const void *a, const void *b)
{
    const struct node_rank *x = a, *y = b;
    return (x->weight < y->weight) - (x->weight > y->weight);
}

/* Rendezvous hashing: every live node gets a weight hash(uid, node); the heaviest wins. A user keeps their
 * node while it lives, and when a node joins or leaves only the users whose heaviest node changed move. */
void user_route(struct call *c)
{
    redisReply *live, *urls = NULL;
    struct node_rank *rank = NULL;
    size_t n = 0, i;

    live = rds_cmd(&c->w->rds, "ZRANGEBYSCORE %s %lld +inf", KEY_NODES,
                   (long long)(mp_now_ms() - app.cfg.push.node_ttl_s * 1000));
    if (live == NULL || live->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(live);
        reply_unavailable(c, "redis");
        return;
    }
    rank = calloc(live->elements + 1, sizeof(*rank));
    if (rank == NULL) {
        freeReplyObject(live);
        reply_unavailable(c, "memory");
        return;
    }
    for (i = 0; i < live->elements; i++) {
        char *end;
        long long id;
        if (live->element[i]->str == NULL)
            continue;
        id = strtoll(live->element[i]->str, &end, 10);
        if (*end != '\0' || id < 0)
            continue;
        rank[n].id = id;
        rank[n].weight = mix64((uint64_t)c->uid ^ mix64((uint64_t)id));
        n++;
    }
    freeReplyObject(live);
    qsort(rank, n, sizeof(*rank), by_weight_desc);
    /* A node whose URL hash is gone (it expired between the two reads) is skipped for the next one. */
    for (i = 0; i < n; i++) {
        urls = rds_cmd(&c->w->rds, "HMGET " KEY_NODE " ws_url room_url", (int)rank[i].id);
        if (urls == NULL || urls->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(urls);
            free(rank);
            reply_unavailable(c, "redis");
            return;
        }
        if (urls->elements == 2 && urls->element[0]->type == REDIS_REPLY_STRING) {
            const char *room = urls->element[1]->type == REDIS_REPLY_STRING ? urls->element[1]->str : "";
            reply(c, API_OK,
                  json_pack("{s:I, s:s, s:s}", "node", (json_int_t)rank[i].id, "ws_url",
                            urls->element[0]->str, "room_url", room));
            freeReplyObject(urls);
            free(rank);
            return;
        }
        freeReplyObject(urls);
    }
    free(rank);
    reply_msg(c, API_UNAVAILABLE, "no push node is alive, retry later", NULL);
}
