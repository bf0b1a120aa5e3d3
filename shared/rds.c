/* rds.c -- see rds.h. */
#include "rds.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "rcluster.h"
#include "sentinel.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RDS_BACKOFF_MIN_MS 100
#define RDS_BACKOFF_MAX_MS 2000
#define RDS_WARN_EVERY_MS  10000 /* a WAIT that falls short repeats for every request: logged this often */

static int64_t wait_warned_ms; /* shared by every thread's struct rds (atomic access) */
static const struct magpie_config *watch_cfg;
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

static void watch_start(void)
{
    sentinel_watch(watch_cfg, NULL, NULL); /* rds needs no callback: sentinel_switches() tells */
}

void rds_init(struct rds *r, const struct magpie_config *cfg)
{
    memset(r, 0, sizeof(*r));
    r->cfg = cfg;
    r->sentinel = sentinel_enabled(cfg);
    r->min_replicas = (int)cfg->redis.min_replicas_acked;
    r->wait_timeout_ms = (int)cfg->redis.wait_timeout_ms;
    if (!r->sentinel)
        snprintf(r->host, sizeof(r->host), "%s", cfg->redis.host);
    snprintf(r->password, sizeof(r->password), "%s", cfg->redis.password);
    r->port = (int)cfg->redis.port;
    r->db = (int)cfg->redis.db;
    r->connect_timeout_ms = (int)cfg->redis.connect_timeout_ms;
    r->command_timeout_ms = (int)cfg->redis.command_timeout_ms;
    r->backoff_ms = RDS_BACKOFF_MIN_MS;
    if (cfg->redis.cluster[0] != '\0') {
        r->cluster = 1;
        r->host[0] = '\0'; /* a subscriber's master, found at its connect */
        r->cl = malloc(sizeof(*r->cl));
        if (r->cl != NULL && rcl_init(r->cl, cfg) != MP_OK) {
            rcl_close(r->cl);
            free(r->cl);
            r->cl = NULL;
        }
        if (r->cl == NULL)
            log_error("redis cluster: cannot set the client up (out of memory)");
    }
    if (r->sentinel) {
        watch_cfg = cfg;
        pthread_once(&watch_once, watch_start);
    }
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void clear_pipeline(struct rds *r);

void rds_drop(struct rds *r, const char *why)
{
    char reason[256];
    if (r->cluster && !r->subscriber) { /* rcluster drops its own connections; a pipeline's rest goes */
        clear_pipeline(r);
        return;
    }
    /* why may point into r->c (its errstr): copy it before the context is freed. */
    snprintf(reason, sizeof(reason), "%s", why);
    if (r->c != NULL) {
        redisFree(r->c);
        r->c = NULL;
    }
    if (!r->down) {
        log_warn("redis down host=%s port=%d reason=\"%s\"",
                 r->host[0] != '\0' ? r->host
                 : r->cluster       ? "(a master of redis.cluster)"
                                    : "",
                 r->port, reason);
        r->down = 1;
    }
    r->retry_at_ms = mp_mono_ms() + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > RDS_BACKOFF_MAX_MS ? RDS_BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* AUTH, CLIENT SETNAME and SELECT on a fresh connection; 0 or -1 with why filled. */
static int rds_setup(struct rds *r, char *why, size_t len)
{
    redisReply *rep;
    if (r->password[0] != '\0') {
        rep = redisCommand(r->c, "AUTH %s", r->password);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, len, "AUTH failed: %s", rep ? rep->str : r->c->errstr);
            freeReplyObject(rep);
            return -1;
        }
        freeReplyObject(rep);
    }
    rep = redisCommand(r->c, "CLIENT SETNAME %s", program_invocation_short_name);
    if (rep == NULL) {
        snprintf(why, len, "CLIENT SETNAME failed: %s", r->c->errstr);
        return -1;
    }
    freeReplyObject(rep); /* an error (a proxy without CLIENT) costs only the name */
    if (r->db != 0) {
        rep = redisCommand(r->c, "SELECT %d", r->db);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, len, "SELECT failed: %s", rep ? rep->str : r->c->errstr);
            freeReplyObject(rep);
            return -1;
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* Point r at the master the sentinels name; 0, or -1 after counting it as a failure. */
static int find_master(struct rds *r)
{
    char host[256], why[512];
    int port;
    if (sentinel_find_master(r->cfg, host, sizeof(host), &port, why, sizeof(why)) != MP_OK) {
        rds_drop(r, why);
        return -1;
    }
    if (strcmp(host, r->host) != 0 || port != r->port) {
        log_info("redis master found through the sentinels master=%s host=%s port=%d",
                 r->cfg->redis.master_name, host, port);
        snprintf(r->host, sizeof(r->host), "%s", host);
        r->port = port;
    }
    return 0;
}

void rds_subscriber(struct rds *r)
{
    r->subscriber = 1;
}

/* A subscriber on a cluster: point r at the next master of the slot map; 0, or -1 counted as a failure. */
static int next_master(struct rds *r)
{
    struct rcl_node m[16];
    int n;
    if (r->cl != NULL)
        rcl_refresh(r->cl); /* the masters of now (a failover since?); on failure the last map is used */
    n = r->cl != NULL ? rcl_masters(r->cl, m, (int)MP_ARRAY_LEN(m)) : -1;
    if (n <= 0) {
        rds_drop(r, r->cl == NULL ? "out of memory" : n < 0 ? r->cl->errstr : "no master in the slot map");
        return -1;
    }
    n = (int)(r->next_master++ % (unsigned)n);
    snprintf(r->host, sizeof(r->host), "%s", m[n].host);
    r->port = m[n].port;
    return 0;
}

int rds_stale(const struct rds *r)
{
    return r->sentinel && r->c != NULL && r->switches != sentinel_switches();
}

void rds_follow(struct rds *r)
{
    if (!r->sentinel || r->switches == sentinel_switches())
        return;
    /* The watcher logged the switch; this connection just goes. */
    r->switches = sentinel_switches();
    if (r->c != NULL) {
        redisFree(r->c);
        r->c = NULL;
    }
    r->retry_at_ms = 0;
    r->backoff_ms = RDS_BACKOFF_MIN_MS;
}

redisContext *rds_conn(struct rds *r)
{
    char why[256];
    if (r->c != NULL)
        return r->c;
    if (r->cluster && !r->subscriber) {
        log_error("redis cluster: a plain connection was asked for outside a subscription (a bug: use "
                  "rds_cmd, rds_append)");
        return NULL;
    }
    if (mp_mono_ms() < r->retry_at_ms)
        return NULL;
    if (r->cluster && next_master(r) != 0)
        return NULL;
    r->switches = sentinel_switches(); /* before the lookup: a switch announced after it counts */
    if (r->sentinel && find_master(r) != 0)
        return NULL;
    r->c = redisConnectWithTimeout(r->host, r->port, ms_tv(r->connect_timeout_ms));
    if (r->c == NULL || r->c->err) {
        snprintf(why, sizeof(why), "%s", r->c ? r->c->errstr : "out of memory");
        rds_drop(r, why);
        return NULL;
    }
    if (redisSetTimeout(r->c, ms_tv(r->command_timeout_ms)) != REDIS_OK) {
        rds_drop(r, "cannot set socket timeout");
        return NULL;
    }
    redisEnableKeepAlive(r->c);
    if (rds_setup(r, why, sizeof(why)) != 0) {
        rds_drop(r, why);
        return NULL;
    }
    if (r->down) {
        log_info("redis back host=%s port=%d", r->host, r->port);
        r->down = 0;
    }
    r->backoff_ms = RDS_BACKOFF_MIN_MS;
    return r->c;
}

/* A NULL reply means the context is in error and unusable. A READONLY error means the server is a
 * replica now (a failover): the caller gets the error, the next call asks the sentinels again. */
static redisReply *checked(struct rds *r, void *reply)
{
    if (reply == NULL)
        rds_drop(r, r->c && r->c->errstr[0] ? r->c->errstr : "connection lost");
    else if (sentinel_readonly(reply))
        rds_drop(r, "the server is a replica now (READONLY)");
    return reply;
}

/* Is r a cluster client (every command through rcluster)? */
static int via_cluster(const struct rds *r)
{
    return r->cluster && !r->subscriber;
}

/* An rcluster answer: NULL for a refused command is a caller's bug, said in the log. */
static redisReply *cl_checked(struct rds *r, redisReply *reply)
{
    if (reply == NULL && r->cl != NULL && r->cl->err == MP_EINVAL)
        log_error("redis cluster refused a command reason=\"%s\"", r->cl->errstr);
    return reply;
}

int rds_wait(struct rds *r)
{
    redisReply *rep;
    int rc = MP_EAGAIN;
    if (r->min_replicas <= 0)
        return MP_OK;
    if (via_cluster(r)) {
        long long acked = -1;
        if (r->cl == NULL)
            return MP_EAGAIN;
        rc = rcl_wait(r->cl, r->min_replicas, r->wait_timeout_ms, &acked);
        if (rc == MP_OK && acked >= r->min_replicas)
            return MP_OK;
        if (mp_mono_ms() - __atomic_load_n(&wait_warned_ms, __ATOMIC_RELAXED) >= RDS_WARN_EVERY_MS) {
            __atomic_store_n(&wait_warned_ms, mp_mono_ms(), __ATOMIC_RELAXED);
            log_warn("redis cluster WAIT: fewer replicas than redis.min_replicas_acked hold the writes, not "
                     "confirmed acked=%lld wanted=%d timeout_ms=%d%s%s",
                     acked, r->min_replicas, r->wait_timeout_ms, rc != MP_OK ? " error=" : "",
                     rc != MP_OK ? r->cl->errstr : "");
        }
        return MP_EAGAIN;
    }
    if (r->c == NULL)
        return MP_EAGAIN;
    rep = checked(r, redisCommand(r->c, "WAIT %d %d", r->min_replicas, r->wait_timeout_ms));
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer >= r->min_replicas)
        rc = MP_OK;
    else if (rep != NULL &&
             mp_mono_ms() - __atomic_load_n(&wait_warned_ms, __ATOMIC_RELAXED) >= RDS_WARN_EVERY_MS) {
        __atomic_store_n(&wait_warned_ms, mp_mono_ms(), __ATOMIC_RELAXED);
        log_warn("redis WAIT: fewer replicas than redis.min_replicas_acked hold the writes, not confirmed "
                 "acked=%lld wanted=%d timeout_ms=%d%s%s",
                 rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1LL, r->min_replicas, r->wait_timeout_ms,
                 rep->type == REDIS_REPLY_ERROR ? " error=" : "",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    }
    freeReplyObject(rep);
    return rc;
}

redisReply *rds_cmd(struct rds *r, const char *fmt, ...)
{
    va_list ap;
    void *reply;
    if (via_cluster(r)) {
        if (r->cl == NULL)
            return NULL;
        va_start(ap, fmt);
        reply = rcl_vcmd(r->cl, fmt, ap);
        va_end(ap);
        return cl_checked(r, reply);
    }
    if (rds_conn(r) == NULL)
        return NULL;
    va_start(ap, fmt);
    reply = redisvCommand(r->c, fmt, ap);
    va_end(ap);
    return checked(r, reply);
}

redisReply *rds_cmdargv(struct rds *r, int argc, const char **argv, const size_t *argvlen)
{
    if (via_cluster(r))
        return r->cl != NULL ? cl_checked(r, rcl_cmdargv(r->cl, argc, argv, argvlen)) : NULL;
    if (rds_conn(r) == NULL)
        return NULL;
    return checked(r, redisCommandArgv(r->c, argc, argv, argvlen));
}

/* ---- pipelines ---- */

/* The replies not handed out and the commands not sent of a cluster pipeline: freed. */
static void clear_pipeline(struct rds *r)
{
    for (int i = r->next_reply; i < r->nreplies; i++)
        if (r->replies[i] != NULL)
            freeReplyObject(r->replies[i]);
    free(r->replies);
    r->replies = NULL;
    r->nreplies = r->next_reply = 0;
    for (int i = 0; i < r->nqueue; i++)
        redisFreeCommand(r->queue[i]);
    r->nqueue = 0;
}

/* Queue a formatted command (len < 0: formatting failed) on a cluster pipeline. */
static int queue_cmd(struct rds *r, char *cmd, int len)
{
    if (len < 0)
        return MP_EAGAIN;
    if (r->nqueue == r->queue_cap) {
        int cap = r->queue_cap ? r->queue_cap * 2 : 64;
        char **q = realloc(r->queue, sizeof(*q) * (size_t)cap);
        size_t *ql;
        if (q == NULL) {
            redisFreeCommand(cmd);
            return MP_EAGAIN;
        }
        r->queue = q;
        ql = realloc(r->queue_len, sizeof(*ql) * (size_t)cap);
        if (ql == NULL) {
            redisFreeCommand(cmd);
            return MP_EAGAIN;
        }
        r->queue_len = ql;
        r->queue_cap = cap;
    }
    r->queue[r->nqueue] = cmd;
    r->queue_len[r->nqueue++] = (size_t)len;
    return MP_OK;
}

int rds_append(struct rds *r, const char *fmt, ...)
{
    va_list ap;
    int rc;
    if (via_cluster(r)) {
        char *cmd = NULL;
        va_start(ap, fmt);
        rc = redisvFormatCommand(&cmd, fmt, ap);
        va_end(ap);
        return r->cl != NULL ? queue_cmd(r, cmd, rc) : (redisFreeCommand(cmd), MP_EAGAIN);
    }
    if (rds_conn(r) == NULL)
        return MP_EAGAIN;
    va_start(ap, fmt);
    rc = redisvAppendCommand(r->c, fmt, ap);
    va_end(ap);
    return rc == REDIS_OK ? MP_OK : MP_EAGAIN;
}

int rds_appendargv(struct rds *r, int argc, const char **argv, const size_t *argvlen)
{
    if (via_cluster(r)) {
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
        return r->cl != NULL ? queue_cmd(r, cmd, len) : (redisFreeCommand(cmd), MP_EAGAIN);
    }
    if (rds_conn(r) == NULL)
        return MP_EAGAIN;
    return redisAppendCommandArgv(r->c, argc, argv, argvlen) == REDIS_OK ? MP_OK : MP_EAGAIN;
}

redisReply *rds_reply(struct rds *r)
{
    void *reply = NULL;
    if (via_cluster(r)) {
        /* FIFO as on one connection: the replies of the commands sent first, then the queue is sent */
        if (r->next_reply >= r->nreplies && r->nqueue > 0) {
            free(r->replies);
            r->nreplies = r->next_reply = 0;
            r->replies = calloc((size_t)r->nqueue, sizeof(*r->replies));
            if (r->replies == NULL || r->cl == NULL) {
                clear_pipeline(r);
                return NULL;
            }
            rcl_pipeline(r->cl, r->nqueue, r->queue, r->queue_len, r->replies);
            r->nreplies = r->nqueue;
            r->next_reply = 0;
            for (int i = 0; i < r->nqueue; i++)
                redisFreeCommand(r->queue[i]);
            r->nqueue = 0;
        }
        if (r->next_reply < r->nreplies) {
            reply = r->replies[r->next_reply];
            r->replies[r->next_reply++] = NULL;
        }
        return cl_checked(r, reply);
    }
    if (r->c == NULL)
        return NULL;
    if (redisGetReply(r->c, &reply) != REDIS_OK)
        reply = NULL;
    return checked(r, reply);
}

void rds_discard(struct rds *r)
{
    if (via_cluster(r))
        clear_pipeline(r);
    else if (r->c != NULL)
        rds_drop(r, "a pipeline was abandoned");
}

/* ---- SCAN ---- */

/* One SCAN walk of one server: through rcl_cmd_at on a cluster (host set), else rds_cmd. */
static int scan_one(struct rds *r, const char *host, int port, const char *pattern,
                    int (*each)(const char *key, size_t len, void *arg), void *arg)
{
    char cursor[32] = "0";
    int rc = MP_OK;
    do {
        redisReply *rep = host != NULL
                              ? rcl_cmd_at(r->cl, host, port, "SCAN %s MATCH %s COUNT 1000", cursor, pattern)
                              : rds_cmd(r, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (rep == NULL)
            return MP_EAGAIN;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= sizeof(cursor) ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            log_error("unexpected SCAN reply type=%d%s%s", rep->type,
                      rep->type == REDIS_REPLY_ERROR ? " error=" : "",
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "");
            freeReplyObject(rep);
            return MP_EAGAIN;
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
        for (size_t i = 0; i < rep->element[1]->elements && rc == MP_OK; i++) {
            const redisReply *k = rep->element[1]->element[i];
            if (k->type == REDIS_REPLY_STRING)
                rc = each(k->str, k->len, arg);
        }
        freeReplyObject(rep);
    } while (rc == MP_OK && strcmp(cursor, "0") != 0);
    return rc;
}

int rds_scan(struct rds *r, const char *pattern, int (*each)(const char *key, size_t len, void *arg),
             void *arg)
{
    struct rcl_node m[RCL_MAX_MASTERS / 8];
    int n, rc = MP_OK;
    if (!via_cluster(r))
        return scan_one(r, NULL, 0, pattern, each, arg);
    if (r->cl == NULL || (n = rcl_masters(r->cl, m, (int)MP_ARRAY_LEN(m))) < 0)
        return MP_EAGAIN;
    for (int i = 0; i < n && rc == MP_OK; i++)
        rc = scan_one(r, m[i].host, m[i].port, pattern, each, arg);
    return rc;
}

void rds_close(struct rds *r)
{
    if (r->c != NULL)
        redisFree(r->c);
    r->c = NULL;
    clear_pipeline(r);
    free(r->queue);
    free(r->queue_len);
    r->queue = NULL;
    r->queue_len = NULL;
    r->queue_cap = 0;
    if (r->cl != NULL) {
        rcl_close(r->cl);
        free(r->cl);
        r->cl = NULL;
    }
}
