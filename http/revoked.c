/* revoked.c -- this process's copy of the revoked login tokens (the design is in revoked.h). */
#include "revoked.h"
#include "bus.h"
#include "hmetrics.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "rds.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define REVOKED_PING_MS  1000  /* the subscription is PINGed this often (silence: http.revoked_silence_ms) */
#define REVOKED_PURGE_MS 60000 /* expired tokens are dropped this often */
#define REVOKED_RETRY_MS 500   /* after a failed subscribe or load, try again this much later */

struct rentry {
    struct rentry *next;
    int64_t exp; /* unix seconds */
    char jti[AUTH_JTI_LEN + 1];
};

static struct {
    pthread_rwlock_t lock; /* the table, ready, full */
    struct rentry **buckets;
    size_t nbuckets; /* a power of two, or 0 */
    long n;
    int ready; /* the copy answers (subscribed, index read, not full) */
    int full;  /* tokens were left out for http.revoked_cache_max: reload once there is room */
    pthread_t thread;
    int started;
    int efd; /* written by revoked_stop */
    struct rds sub, cmd;
} rv = {.lock = PTHREAD_RWLOCK_INITIALIZER, .efd = -1};

/* ---- the table (callers hold the lock) ---- */

static uint64_t hash_jti(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int grow(void)
{
    size_t nb = rv.nbuckets ? rv.nbuckets * 2 : 1024, i;
    struct rentry **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return MP_ENOMEM;
    for (i = 0; i < rv.nbuckets; i++) {
        struct rentry *e = rv.buckets[i], *next;
        for (; e != NULL; e = next) {
            size_t k = hash_jti(e->jti) & (nb - 1);
            next = e->next;
            e->next = b[k];
            b[k] = e;
        }
    }
    free(rv.buckets);
    rv.buckets = b;
    rv.nbuckets = nb;
    return MP_OK;
}

static struct rentry *find(const char *jti)
{
    struct rentry *e;
    if (rv.nbuckets == 0)
        return NULL;
    for (e = rv.buckets[hash_jti(jti) & (rv.nbuckets - 1)]; e != NULL; e = e->next)
        if (strcmp(e->jti, jti) == 0)
            return e;
    return NULL;
}

static void set_ready(int ready, const char *why)
{
    if (ready && rv.full)
        ready = 0;
    if (ready != rv.ready)
        log_info("revoked-token copy %s tokens=%ld%s%s", ready ? "ready" : "not used: requests ask Redis",
                 rv.n, why ? " why=" : "", why ? why : "");
    rv.ready = ready;
    metric_set(hm.revoked_ready, NULL, ready);
}

/* Remember jti until exp. A token left out for the cap makes the copy unusable until it is read again. */
static void put(const char *jti, int64_t exp)
{
    struct rentry *e;
    size_t k;

    if (strlen(jti) != AUTH_JTI_LEN)
        return;
    e = find(jti);
    if (e != NULL) {
        if (exp > e->exp)
            e->exp = exp;
        return;
    }
    if (rv.n >= app.cfg.http.revoked_cache_max || (rv.n >= (long)rv.nbuckets && grow() != MP_OK) ||
        (e = calloc(1, sizeof(*e))) == NULL) {
        if (!rv.full)
            log_warn("revoked-token copy is full (http.revoked_cache_max=%lld): requests ask Redis until "
                     "tokens expire",
                     app.cfg.http.revoked_cache_max);
        rv.full = 1;
        set_ready(0, "full");
        return;
    }
    memcpy(e->jti, jti, AUTH_JTI_LEN + 1);
    e->exp = exp;
    k = hash_jti(jti) & (rv.nbuckets - 1);
    e->next = rv.buckets[k];
    rv.buckets[k] = e;
    rv.n++;
    metric_set(hm.revoked_tokens, NULL, (double)rv.n);
}

/* Drop the tokens that expired. Returns how many are left. */
static long purge(int64_t now)
{
    for (size_t i = 0; i < rv.nbuckets; i++) {
        struct rentry **p = &rv.buckets[i];
        while (*p != NULL) {
            struct rentry *e = *p;
            if (e->exp < now) {
                *p = e->next;
                free(e);
                rv.n--;
            } else {
                p = &e->next;
            }
        }
    }
    metric_set(hm.revoked_tokens, NULL, (double)rv.n);
    return rv.n;
}

/* ---- what requests call ---- */

enum revoked_answer revoked_check(const char *jti)
{
    enum revoked_answer a = REVOKED_UNKNOWN;
    pthread_rwlock_rdlock(&rv.lock);
    if (rv.ready)
        a = find(jti) != NULL ? REVOKED_YES : REVOKED_NO;
    pthread_rwlock_unlock(&rv.lock);
    return a;
}

void revoked_add(const char *jti, int64_t exp)
{
    if (!rv.started)
        return;
    pthread_rwlock_wrlock(&rv.lock);
    put(jti, exp);
    pthread_rwlock_unlock(&rv.lock);
}

long revoked_count(int *ready)
{
    long n;
    pthread_rwlock_rdlock(&rv.lock);
    n = rv.n;
    if (ready != NULL)
        *ready = rv.ready;
    pthread_rwlock_unlock(&rv.lock);
    return n;
}

/* ---- the thread ---- */

/* A logout published on CHAN_CONTROL: {"cmd": "logout", "uid", "sid": jti, "exp"}. Other commands (most of
 * the channel's traffic: deliveries of POST /msg) are skipped before they are parsed. */
static void on_message(const char *payload, size_t len)
{
    json_t *o;
    const char *cmd = NULL, *sid = NULL;
    json_int_t exp = 0;

    if (memmem(payload, len, "\"" BUS_CMD_LOGOUT "\"", strlen(BUS_CMD_LOGOUT) + 2) == NULL)
        return;
    o = json_loadb(payload, len, 0, NULL);
    if (o != NULL && json_unpack(o, "{s:s, s:s, s?I}", "cmd", &cmd, "sid", &sid, "exp", &exp) == 0 &&
        strcmp(cmd, BUS_CMD_LOGOUT) == 0) {
        /* A publisher that does not say exp (an older magpie-http): no login token lives longer than this. */
        if (exp <= 0)
            exp = (json_int_t)time(NULL) + app.cfg.auth.login_ttl_s;
        pthread_rwlock_wrlock(&rv.lock);
        put(sid, (int64_t)exp);
        pthread_rwlock_unlock(&rv.lock);
    }
    json_decref(o);
}

/* One key of the SCAN in migrate: a revoked token's key goes into the index with its TTL. */
static int index_one(const char *key, size_t len, void *arg)
{
    const char *pattern = arg, *jti;
    redisReply *ttl;
    if (strlen(key) != len || len != strlen(pattern) - 1 + AUTH_JTI_LEN)
        return MP_OK;
    jti = key + strlen(pattern) - 1;
    ttl = rds_cmd(&rv.cmd, "TTL %s", key);
    if (ttl != NULL && ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0)
        freeReplyObject(rds_cmd(&rv.cmd, "ZADD %s %lld %s", KEY_REVOKED_INDEX,
                                (long long)time(NULL) + ttl->integer, jti));
    freeReplyObject(ttl);
    return MP_OK;
}

/* Tokens revoked before there was an index (an upgrade): copy their keys into it, once per Redis (every
 * master of a cluster is scanned: rds_scan). */
static int migrate(void)
{
    char pattern[64];
    redisReply *rep;

    rep = rds_cmd(&rv.cmd, "EXISTS %s", KEY_REVOKED_INDEXED);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        return MP_ERR;
    }
    if (rep->integer == 1) {
        freeReplyObject(rep);
        return MP_OK;
    }
    freeReplyObject(rep);
    snprintf(pattern, sizeof(pattern), KEY_REVOKED, "*");
    log_info("indexing the revoked tokens once key=%s", KEY_REVOKED_INDEX);
    if (rds_scan(&rv.cmd, pattern, index_one, pattern) != MP_OK)
        return MP_ERR;
    rep = rds_cmd(&rv.cmd, "SET %s 1", KEY_REVOKED_INDEXED);
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        return MP_ERR;
    }
    freeReplyObject(rep);
    return MP_OK;
}

/* Read the whole index into the table. */
static int load(void)
{
    long long now = (long long)time(NULL);
    redisReply *rep;

    if (migrate() != MP_OK)
        return MP_ERR;
    freeReplyObject(rds_cmd(&rv.cmd, "ZREMRANGEBYSCORE %s -inf (%lld", KEY_REVOKED_INDEX, now));
    rep = rds_cmd(&rv.cmd, "ZRANGEBYSCORE %s %lld +inf WITHSCORES", KEY_REVOKED_INDEX, now);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return MP_ERR;
    }
    pthread_rwlock_wrlock(&rv.lock);
    rv.full = 0;
    purge(now);
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        if (rep->element[i]->str != NULL && rep->element[i + 1]->str != NULL)
            put(rep->element[i]->str, strtoll(rep->element[i + 1]->str, NULL, 10));
    set_ready(1, NULL);
    pthread_rwlock_unlock(&rv.lock);
    freeReplyObject(rep);
    return MP_OK;
}

static void lost(const char *why)
{
    pthread_rwlock_wrlock(&rv.lock);
    set_ready(0, why);
    pthread_rwlock_unlock(&rv.lock);
    rds_drop(&rv.sub, why);
}

/* Subscribe, then read the index. MP_OK: ready. */
static int connect_copy(void)
{
    redisReply *rep = rds_cmd(&rv.sub, "SUBSCRIBE %s", CHAN_CONTROL);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        if (rv.sub.c != NULL)
            rds_drop(&rv.sub, "SUBSCRIBE failed");
        return MP_ERR;
    }
    freeReplyObject(rep);
    if (load() != MP_OK) {
        rds_drop(&rv.sub, "cannot read the revoked-token index");
        return MP_ERR;
    }
    return MP_OK;
}

/* Read what arrived on the subscription. Returns MP_OK, or MP_ERR when the connection failed. */
static int read_sub(void)
{
    redisContext *ctx = rv.sub.c;
    void *r = NULL;

    if (redisBufferRead(ctx) != REDIS_OK)
        return MP_ERR;
    for (;;) {
        redisReply *rep;
        if (redisGetReplyFromReader(ctx, &r) != REDIS_OK)
            return MP_ERR;
        if (r == NULL)
            return MP_OK;
        rep = r;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 && rep->element[0]->str != NULL &&
            strcmp(rep->element[0]->str, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING)
            on_message(rep->element[2]->str, rep->element[2]->len);
        freeReplyObject(rep);
    }
}

static int ping(void)
{
    int done = 0;
    if (redisAppendCommand(rv.sub.c, "PING") != REDIS_OK)
        return MP_ERR;
    while (!done)
        if (redisBufferWrite(rv.sub.c, &done) != REDIS_OK)
            return MP_ERR;
    return MP_OK;
}

/* Wait up to ms for the subscription (fd >= 0) or the stop signal. 1: stop. */
static int wait_for(int fd, int ms, int *readable)
{
    struct pollfd p[2] = {{.fd = rv.efd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int n = poll(p, fd >= 0 ? 2 : 1, ms);
    *readable = n > 0 && fd >= 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
    return n > 0 && (p[0].revents & POLLIN) != 0;
}

static void *revoked_main(void *arg)
{
    int64_t heard = 0, pinged = 0, purged = mp_now_ms();
    int readable;
    (void)arg;

    for (;;) {
        int64_t now;
        if (rv.sub.c == NULL) {
            if (connect_copy() != MP_OK) {
                if (wait_for(-1, REVOKED_RETRY_MS, &readable))
                    break;
                continue;
            }
            heard = pinged = mp_now_ms();
        }
        if (wait_for(rv.sub.c->fd, REVOKED_PING_MS / 4, &readable))
            break;
        if (rds_stale(&rv.sub)) {
            lost("the sentinels moved the master (+switch-master)");
            rds_follow(&rv.sub); /* subscribe on the new master at once, without a backoff */
            continue;
        }
        rds_follow(&rv.cmd);
        now = mp_now_ms();
        if (readable) {
            if (read_sub() != MP_OK) {
                lost(rv.sub.c->errstr[0] ? rv.sub.c->errstr : "subscription lost");
                continue;
            }
            heard = now;
        }
        if (now - heard > app.cfg.http.revoked_silence_ms) {
            lost("Redis silent on the subscription");
            continue;
        }
        if (now - pinged >= REVOKED_PING_MS) {
            if (ping() != MP_OK) {
                lost("cannot PING the subscription");
                continue;
            }
            pinged = now;
        }
        if (now - purged >= REVOKED_PURGE_MS) {
            int reload;
            purged = now;
            pthread_rwlock_wrlock(&rv.lock);
            reload = rv.full && purge((int64_t)time(NULL)) < app.cfg.http.revoked_cache_max * 9 / 10;
            pthread_rwlock_unlock(&rv.lock);
            freeReplyObject(
                rds_cmd(&rv.cmd, "ZREMRANGEBYSCORE %s -inf (%lld", KEY_REVOKED_INDEX, (long long)time(NULL)));
            if (reload)
                lost("room again in the copy: reading the index again");
        }
    }
    rds_close(&rv.sub);
    rds_close(&rv.cmd);
    return NULL;
}

int revoked_start(void)
{
    metric_set(hm.revoked_ready, NULL, 0);
    if (app.cfg.http.revoked_cache_max == 0) {
        log_info("revoked-token copy off (http.revoked_cache_max = 0): every request asks Redis");
        return MP_OK;
    }
    rds_init(&rv.sub, &app.cfg);
    rds_subscriber(&rv.sub);
    rds_init(&rv.cmd, &app.cfg);
    rv.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rv.efd < 0) {
        log_error("cannot create an eventfd errno=%d", errno);
        return MP_ERR;
    }
    rv.started = 1;
    if (pthread_create(&rv.thread, NULL, revoked_main, NULL) != 0) {
        log_error("cannot start the revoked-token thread errno=%d", errno);
        rv.started = 0;
        return MP_ERR;
    }
    return MP_OK;
}

void revoked_stop(void)
{
    uint64_t one = 1;
    if (rv.started) {
        if (write(rv.efd, &one, sizeof(one)) < 0)
            log_error("cannot stop the revoked-token thread errno=%d", errno);
        pthread_join(rv.thread, NULL);
        rv.started = 0;
    }
    if (rv.efd >= 0)
        close(rv.efd);
    rv.efd = -1;
    pthread_rwlock_wrlock(&rv.lock);
    rv.ready = 0;
    purge(INT64_MAX);
    free(rv.buckets);
    rv.buckets = NULL;
    rv.nbuckets = 0;
    pthread_rwlock_unlock(&rv.lock);
}
