/* rds.c -- see rds.h. */
#include "rds.h"
#include "config.h"
#include "log.h"
#include "magpie.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define RDS_BACKOFF_MIN_MS 100
#define RDS_BACKOFF_MAX_MS 2000

void rds_init(struct rds *r, const struct magpie_config *cfg)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->host, sizeof(r->host), "%s", cfg->redis.host);
    snprintf(r->password, sizeof(r->password), "%s", cfg->redis.password);
    r->port = (int)cfg->redis.port;
    r->db = (int)cfg->redis.db;
    r->connect_timeout_ms = (int)cfg->redis.connect_timeout_ms;
    r->command_timeout_ms = (int)cfg->redis.command_timeout_ms;
    r->backoff_ms = RDS_BACKOFF_MIN_MS;
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

/* AUTH and SELECT on a fresh connection; 0 or -1 with why filled. */
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

redisContext *rds_conn(struct rds *r)
{
    char why[256];
    if (r->c != NULL)
        return r->c;
    if (mp_mono_ms() < r->retry_at_ms)
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

/* A NULL reply means the context is in error and unusable. */
static redisReply *checked(struct rds *r, void *reply)
{
    if (reply == NULL)
        rds_drop(r, r->c && r->c->errstr[0] ? r->c->errstr : "connection lost");
    return reply;
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
