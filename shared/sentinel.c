/* sentinel.c -- see sentinel.h (the design). */
#include "sentinel.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SENTINEL_MAX        16   /* sentinels in redis.sentinels; a deployment has 3 or 5 */
#define SENTINEL_WATCH_FNS  4    /* sentinel_watch callbacks in one process (rds and rdsa: 1 each) */
#define SENTINEL_REWATCH_MS 1000 /* the watcher's pause after every sentinel failed it */

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

/* ---- following +switch-master (sentinel.h: sentinel_watch) ---- */

struct watch_fn {
    sentinel_switch_fn fn;
    void *arg;
};

static struct {
    pthread_mutex_t mu;
    int started;
    const struct magpie_config *cfg;
    struct watch_fn fns[SENTINEL_WATCH_FNS];
    int nfns;
    char host[256]; /* the master as the watcher knows it ("" before the first answer) */
    int port;
    struct metric *switches;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_uint switch_count;

unsigned sentinel_switches(void)
{
    return atomic_load(&switch_count);
}

/* The master is host:port now, as told by how (old_host:old_port is the one it replaced when the sentinel
 * said so, NULL when we only asked). The first address learnt by asking is no switch; a later different one
 * is: counted, logged once, and every callback told. */
static void master_is(const char *old_host, int old_port, const char *host, int port, const char *how)
{
    struct watch_fn fns[SENTINEL_WATCH_FNS];
    char was[300];
    int first, nfns;

    pthread_mutex_lock(&W.mu);
    if (strcmp(W.host, host) == 0 && W.port == port) {
        pthread_mutex_unlock(&W.mu);
        return; /* the other sentinels announce the same switch: already followed */
    }
    first = W.host[0] == '\0' && old_host == NULL; /* an announcement is a switch even if nothing was known */
    if (old_host != NULL)
        snprintf(was, sizeof(was), "%s:%d", old_host, old_port);
    else
        snprintf(was, sizeof(was), "%s:%d", W.host, W.port);
    snprintf(W.host, sizeof(W.host), "%s", host);
    W.port = port;
    nfns = W.nfns;
    memcpy(fns, W.fns, sizeof(fns));
    pthread_mutex_unlock(&W.mu);
    if (first)
        return;
    atomic_fetch_add(&switch_count, 1);
    if (W.switches != NULL)
        metric_add(W.switches, NULL, 1);
    log_info("redis master moved from %s to %s:%d (%s)", was, host, port, how);
    for (int i = 0; i < nfns; i++)
        fns[i].fn(host, port, fns[i].arg);
}

int sentinel_parse_switch(const redisReply *r, const char *master_name, struct sentinel_switch *s)
{
    char name[256];

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
        r->element[1]->type != REDIS_REPLY_STRING || strcmp(r->element[1]->str, "+switch-master") != 0 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return 0;
    if (sscanf(r->element[2]->str, "%255s %255s %d %255s %d", name, s->old_host, &s->old_port, s->host,
               &s->port) != 5 ||
        strcmp(name, master_name) != 0 || s->port < 1 || s->port > 65535)
        return 0;
    return 1;
}

/* A pub/sub message on the watch connection: a switch of our master is followed, anything else ignored. */
static void on_watch_message(const redisReply *r)
{
    struct sentinel_switch s;
    if (sentinel_parse_switch(r, W.cfg->redis.master_name, &s))
        master_is(s.old_host, s.old_port, s.host, s.port, "sentinel +switch-master");
}

/* Subscribe on one sentinel and read its announcements until the connection fails (logged). 0 when it
 * could not subscribe at all. */
static int watch_one(const char *shost, int sport)
{
    char why[512], host[256];
    int port;
    redisContext *c = dial(W.cfg, shost, sport, why, sizeof(why));
    redisReply *r;
    void *msg;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "SUBSCRIBE +switch-master");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        redisFree(c);
        return 0;
    }
    freeReplyObject(r);
    /* Subscribed: a switch announced from now on reaches us. One announced while we were not listening is
     * found by asking once, on a connection of its own (this one takes only pub/sub now). */
    if (ask(W.cfg, shost, sport, host, sizeof(host), &port, why, sizeof(why)) == MP_OK)
        master_is(NULL, 0, host, port, "sentinel, found on subscribing");
    log_info("following the sentinels' +switch-master sentinel=%s:%d", shost, sport);
    /* No read timeout: announcements are rare. TCP keepalive finds a sentinel that vanished. */
    redisEnableKeepAlive(c);
    struct timeval none = {0, 0};
    redisSetTimeout(c, none);
    while (redisGetReply(c, &msg) == REDIS_OK) {
        on_watch_message(msg);
        freeReplyObject(msg);
    }
    log_warn("lost the sentinel's +switch-master subscription sentinel=%s:%d reason=\"%s\"", shost, sport,
             c->errstr[0] ? c->errstr : "closed");
    redisFree(c);
    return 1;
}

static void *watch_main(void *arg)
{
    struct addr_list *l = arg;
    int warned = 0;
    for (;;) {
        int start = l->n > 0 ? atomic_load(&last_good) % l->n : 0, subscribed = 0;
        for (int k = 0; k < l->n; k++)
            subscribed |= watch_one(l->host[(start + k) % l->n], l->port[(start + k) % l->n]);
        if (!subscribed && !warned)
            log_warn("no sentinel takes the +switch-master subscription: failovers are followed on errors "
                     "only until one does");
        warned = !subscribed;
        usleep(SENTINEL_REWATCH_MS * 1000);
    }
    return NULL;
}

int sentinel_watch(const struct magpie_config *cfg, sentinel_switch_fn fn, void *arg)
{
    struct addr_list *l = NULL;
    pthread_attr_t attr;
    pthread_t t;
    int rc = MP_OK;

    if (!sentinel_enabled(cfg))
        return MP_ERR;
    pthread_mutex_lock(&W.mu);
    if (fn != NULL) {
        if (W.nfns == SENTINEL_WATCH_FNS) {
            rc = MP_ERR;
            goto done;
        }
        W.fns[W.nfns].fn = fn;
        W.fns[W.nfns].arg = arg;
        W.nfns++;
    }
    if (W.started)
        goto done;
    W.cfg = cfg;
    W.switches = metrics_counter("magpie_redis_master_switches_total",
                                 "Redis master changes this process followed (sentinel +switch-master)");
    if ((l = calloc(1, sizeof(*l))) == NULL) {
        rc = MP_ENOMEM;
        goto done;
    }
    config_list_each(cfg->redis.sentinels, add_addr, l);
    /* The watcher lives as long as the process (it holds l): detached, never joined. */
    if (pthread_attr_init(&attr) != 0) {
        free(l);
        rc = MP_ERR;
        goto done;
    }
    if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
        pthread_create(&t, &attr, watch_main, l) != 0) {
        log_error("cannot start the sentinel watcher thread: failovers are followed on errors only");
        free(l);
        rc = MP_ERR;
    } else {
        W.started = 1;
    }
    pthread_attr_destroy(&attr);
done:
    pthread_mutex_unlock(&W.mu);
    return rc;
}
