/* rds.c -- see rds.h. */
#include "rds.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "sentinel.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
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

void rds_drop(struct rds *r, const char *why)
{
    char reason[256];
    /* why may point into r->c (its errstr): copy it before the context is freed. */
    snprintf(reason, sizeof(reason), "%s", why);
    if (r->c != NULL) {
        redisFree(r->c);
        r->c = NULL;
    }
    if (!r->down) {
        log_warn("redis down host=%s port=%d reason=\"%s\"", r->host, r->port, reason);
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
    if (mp_mono_ms() < r->retry_at_ms)
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

int rds_wait(struct rds *r)
{
    redisReply *rep;
    int rc = MP_EAGAIN;
    if (r->min_replicas <= 0)
        return MP_OK;
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
    if (rds_conn(r) == NULL)
        return NULL;
    va_start(ap, fmt);
    reply = redisvCommand(r->c, fmt, ap);
    va_end(ap);
    return checked(r, reply);
}

redisReply *rds_cmdargv(struct rds *r, int argc, const char **argv, const size_t *argvlen)
{
    if (rds_conn(r) == NULL)
        return NULL;
    return checked(r, redisCommandArgv(r->c, argc, argv, argvlen));
}

redisReply *rds_reply(struct rds *r)
{
    void *reply = NULL;
    if (r->c == NULL)
        return NULL;
    if (redisGetReply(r->c, &reply) != REDIS_OK)
        reply = NULL;
    return checked(r, reply);
}

void rds_close(struct rds *r)
{
    if (r->c != NULL)
        redisFree(r->c);
    r->c = NULL;
}
