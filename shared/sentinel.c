/* sentinel.c -- see sentinel.h (the design). */
#include "sentinel.h"
#include "config.h"
#include "magpie.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL_MAX 16 /* sentinels in redis.sentinels; a deployment has 3 or 5 */

/* The sentinel that answered last: the next search starts there, so a dead first sentinel costs its
 * connect timeout once, not at every reconnect. Shared by every thread; a stale value only changes the
 * order in which sentinels are asked. */
static atomic_int last_good;

struct addr_list {
    char host[SENTINEL_MAX][256];
    int port[SENTINEL_MAX];
    int n;
};

static int add_addr(const char *item, size_t len, void *arg)
{
    struct addr_list *l = arg;
    char buf[300];
    if (l->n == SENTINEL_MAX || len >= sizeof(buf))
        return 0; /* config_table.c checked the syntax; more than SENTINEL_MAX are not asked */
    memcpy(buf, item, len);
    buf[len] = '\0';
    if (config_split_addr(buf, l->host[l->n], sizeof(l->host[0]), &l->port[l->n]) == 0)
        l->n++;
    return 0;
}

int sentinel_enabled(const struct magpie_config *cfg)
{
    return cfg->redis.sentinels != NULL && cfg->redis.sentinels[0] != '\0';
}

static struct timeval ms_tv(long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* A short blocking connection with the configured timeouts; NULL with why filled. */
static redisContext *dial(const struct magpie_config *cfg, const char *host, int port, char *why, size_t len)
{
    redisContext *c = redisConnectWithTimeout(host, port, ms_tv(cfg->redis.connect_timeout_ms));
    if (c == NULL || c->err) {
        snprintf(why, len, "%s:%d: %s", host, port, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, ms_tv(cfg->redis.command_timeout_ms)) != REDIS_OK) {
        snprintf(why, len, "%s:%d: cannot set the socket timeout", host, port);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Ask one sentinel: MP_OK with host/port, or MP_EAGAIN with why. */
static int ask(const struct magpie_config *cfg, const char *shost, int sport, char *host, size_t hostlen,
               int *port, char *why, size_t len)
{
    redisContext *c = dial(cfg, shost, sport, why, len);
    redisReply *r;
    int rc = MP_EAGAIN;

    if (c == NULL)
        return MP_EAGAIN;
    r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", cfg->redis.master_name);
    if (r == NULL)
        snprintf(why, len, "%s:%d: %s", shost, sport, c->errstr[0] ? c->errstr : "no reply");
    else if (r->type == REDIS_REPLY_ERROR)
        snprintf(why, len, "%s:%d: %s", shost, sport, r->str);
    else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
             r->element[1]->type != REDIS_REPLY_STRING)
        snprintf(why, len, "%s:%d: does not know master_name %s", shost, sport, cfg->redis.master_name);
    else if ((*port = atoi(r->element[1]->str)) < 1 || *port > 65535 || r->element[0]->len >= hostlen)
        snprintf(why, len, "%s:%d: gave a bad address", shost, sport);
    else {
        memcpy(host, r->element[0]->str, r->element[0]->len + 1);
        rc = MP_OK;
    }
    freeReplyObject(r);
    redisFree(c);
    return rc;
}

/* Is host:port a master now? (AUTH first when Redis wants a password: ROLE needs it.) */
static int is_master(const struct magpie_config *cfg, const char *host, int port, char *why, size_t len)
{
    redisContext *c = dial(cfg, host, port, why, len);
    redisReply *r = NULL;
    int rc = MP_EAGAIN;

    if (c == NULL)
        return MP_EAGAIN;
    if (cfg->redis.password[0] != '\0') {
        r = redisCommand(c, "AUTH %s", cfg->redis.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, len, "%s:%d: AUTH failed", host, port);
            goto done;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "ROLE");
    if (r == NULL)
        snprintf(why, len, "%s:%d: %s", host, port, c->errstr[0] ? c->errstr : "no reply to ROLE");
    else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING &&
             strcmp(r->element[0]->str, "master") == 0)
        rc = MP_OK;
    else
        snprintf(why, len, "%s:%d: named master but is %s (failover in progress?)", host, port,
                 r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING
                     ? r->element[0]->str
                     : "not a master");
done:
    freeReplyObject(r);
    redisFree(c);
    return rc;
}

int sentinel_find_master(const struct magpie_config *cfg, char *host, size_t hostlen, int *port, char *why,
                         size_t whylen)
{
    struct addr_list *l = calloc(1, sizeof(*l));
    char last[256] = "no sentinel configured";
    int start, rc = MP_EAGAIN;

    if (l == NULL) {
        if (why != NULL)
            snprintf(why, whylen, "out of memory");
        return MP_EAGAIN;
    }
    config_list_each(cfg->redis.sentinels, add_addr, l);
    start = l->n > 0 ? atomic_load(&last_good) % l->n : 0;
    for (int k = 0; k < l->n; k++) {
        int i = (start + k) % l->n;
        if (ask(cfg, l->host[i], l->port[i], host, hostlen, port, last, sizeof(last)) != MP_OK)
            continue;
        if (is_master(cfg, host, *port, last, sizeof(last)) != MP_OK)
            continue;
        atomic_store(&last_good, i);
        rc = MP_OK;
        break;
    }
    if (rc != MP_OK && why != NULL)
        snprintf(why, whylen, "no sentinel named a master for %s (last: %s)", cfg->redis.master_name, last);
    free(l);
    return rc;
}

int sentinel_readonly(const redisReply *r)
{
    /* A write on a replica: "READONLY You can't write against a read only replica."; inside a script
     * Redis 7 keeps that code at the front of the script's error, older ones put it after "ERR ...".
     * WAIT on a replica: "ERR WAIT cannot be used with replica instances. ...". */
    return r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL &&
           (strncmp(r->str, "READONLY", 8) == 0 || strstr(r->str, "-READONLY") != NULL ||
            strstr(r->str, "read only replica") != NULL ||
            strstr(r->str, "cannot be used with replica") != NULL);
}
