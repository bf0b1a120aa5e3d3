/* rdsa.c -- see rdsa.h. */
#include "rdsa.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "map.h"
#include "rcluster.h"
#include "rdsa_cluster.h"
#include "sentinel.h"

#include <hiredis/async.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RDSA_BACKOFF_MIN_MS 100
#define RDSA_BACKOFF_MAX_MS 2000
#define RDSA_WATCHDOG_MS    100 /* how often timeouts are checked; well under the smallest allowed timeout */
#define RDSA_MAX_SCRIPTS    32
#define RDSA_MAX_STATE_FNS  8
/* A WAIT that falls short repeats for every message, a refused subscription is tried again and again: each
 * is logged this often. */
#define RDSA_WAIT_WARN_EVERY_MS 10000
#define RDSA_SUB_WARN_EVERY_MS  10000

/* ---- a libuv adapter for hiredis ----
 * hiredis 0.14's adapters/libuv.h drops every poll event that carries an error status (a socket reset by a
 * dying Redis reports POLLERR), so hiredis never learns that the connection is dead and its callbacks wait
 * forever. This is that adapter with the fix hiredis 1.0 made: on an error, let hiredis read and write, so
 * it sees the error itself and disconnects.
 *
 * Writes are flushed once per loop pass, not by polling for POLLOUT. hiredis asks for a write (addWrite)
 * with every command it buffers, and stops asking (delWrite) once its buffer is written; through uv_poll
 * each of those is a uv_poll_start, which libuv carries out as an epoll_ctl DEL and an epoll_ctl ADD, and
 * the write itself waits for the next pass's epoll_wait to report the socket writable -- several syscalls
 * and a loop iteration for every pass that sends anything (hiredis also asks for reads again after every
 * read and write), at thousands of passes a second. Instead, a command buffered on a connected socket
 * starts a uv_idle handle, and the buffer is written when it runs: at the start of the next loop pass,
 * after every callback of this one has added its commands (so everything a pass sends still goes in one
 * write), and before the loop can block (an active idle handle makes libuv poll without waiting, so a
 * command buffered in any phase goes out at once). Only when that write leaves something unsent (the
 * socket buffer is full), and while connecting, does the adapter poll for POLLOUT as before. */

struct uvev {
    uv_poll_t poll;
    uv_idle_t flush;       /* writes hiredis' buffer at the next pass */
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    int events;
    int flushing;     /* inside uvev_on_flush: an addWrite now means the socket is full */
    int open_handles; /* freed when both handles are closed */
    /* Set for the subscriber links (see pub/sub below): once connected, replies are read and parsed by it
     * instead of hiredis' callback machinery. */
    void (*raw_read)(redisAsyncContext *ac);
};

static void uvev_on_poll(uv_poll_t *h, int status, int events)
{
    struct uvev *e = h->data;
    if (status < 0)
        events = e->events ? e->events : UV_READABLE;
    if (e->ac != NULL && (events & UV_READABLE)) {
        if (e->raw_read != NULL && (e->ac->c.flags & REDIS_CONNECTED))
            e->raw_read(e->ac); /* may free the context: e->ac is NULL then */
        else
            redisAsyncHandleRead(e->ac);
    }
    if (e->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void uvev_update(struct uvev *e, int events)
{
    e->events = events;
    if (events)
        uv_poll_start(&e->poll, events, uvev_on_poll);
    else
        uv_poll_stop(&e->poll);
}

/* A new loop pass: write what the last one's callbacks buffered. */
static void uvev_on_flush(uv_idle_t *h)
{
    struct uvev *e = h->data;
    uv_idle_stop(&e->flush);
    if (e->ac == NULL || (e->events & UV_WRITABLE))
        return; /* gone, or waiting for POLLOUT: the poll callback writes */
    e->flushing = 1;
    redisAsyncHandleWrite(e->ac); /* may disconnect: uvev_cleanup then runs, e stays valid until closed */
    e->flushing = 0;
}

static void uvev_add_read(void *p)
{
    struct uvev *e = p;
    if (!(e->events & UV_READABLE))
        uvev_update(e, e->events | UV_READABLE);
}

static void uvev_del_read(void *p)
{
    struct uvev *e = p;
    if (e->events & UV_READABLE)
        uvev_update(e, e->events & ~UV_READABLE);
}

static void uvev_add_write(void *p)
{
    struct uvev *e = p;
    if (e->events & UV_WRITABLE)
        return; /* already polling for it */
    if (!e->flushing && e->ac != NULL && (e->ac->c.flags & REDIS_CONNECTED)) {
        uv_idle_start(&e->flush, uvev_on_flush); /* a no-op when already started */
        return;
    }
    /* connecting (hiredis learns the outcome from POLLOUT), or a flush could not write everything */
    uvev_update(e, e->events | UV_WRITABLE);
}

static void uvev_del_write(void *p)
{
    struct uvev *e = p;
    if (e->events & UV_WRITABLE)
        uvev_update(e, e->events & ~UV_WRITABLE);
}

static void uvev_closed(uv_handle_t *h)
{
    struct uvev *e = h->data;
    if (--e->open_handles == 0)
        free(e);
}

static void uvev_cleanup(void *p)
{
    struct uvev *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, uvev_closed);
    uv_close((uv_handle_t *)&e->flush, uvev_closed);
}

int rdsa_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uvev *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return MP_ENOMEM;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return MP_ERR;
    }
    uv_idle_init(loop, &e->flush); /* cannot fail */
    e->poll.data = e;
    e->flush.data = e;
    e->open_handles = 2;
    e->ac = ac;
    ac->ev.data = e;
    ac->ev.addRead = uvev_add_read;
    ac->ev.delRead = uvev_del_read;
    ac->ev.addWrite = uvev_add_write;
    ac->ev.delWrite = uvev_del_write;
    ac->ev.cleanup = uvev_cleanup;
    return MP_OK;
}

/* ---- the two connections ---- */

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_SETUP, LINK_READY };

struct subop;

struct link {
    const char *name;
    int subscriber; /* R.sub or a shard link: pub/sub, replies read by sub_read */
    int shard;      /* cluster: a link to one master for the sharded channels of its slots (fixed address) */
    char host[256]; /* where it connects (with Sentinel: the master found last) */
    int port;
    int finding;           /* a sentinel_find_master job is running for it */
    redisAsyncContext *ac; /* NULL when down */
    enum link_state state;
    int64_t state_ms;    /* when the current state began (connect timeout) */
    int pending;         /* commands sent whose replies have not come */
    int64_t progress_ms; /* last reply, or when pending rose from 0 */
    int setup_left;      /* setup replies (AUTH, SELECT, SCRIPT LOAD) still expected */
    int backoff_ms;
    int down_logged;
    uv_timer_t retry;
    struct subop *ops, **ops_tail; /* subscriber links: commands written, in order, replies not yet come */
    int nchannels;                 /* channels placed on it (shard links are closed at 0) */
    struct link *next_shard;       /* R.shards */
};

struct channel {
    struct channel *prev, *next; /* every channel, for resubscribing */
    struct channel *same_hash;   /* channels whose names hash alike */
    uint64_t hash;
    char *name;
    rdsa_message_fn fn;
    rdsa_ready_fn ready;
    void *arg;
    int sharded;         /* SSUBSCRIBE (rdsa_ssubscribe), else SUBSCRIBE */
    int slot;            /* sharded: the channel's cluster slot */
    struct link *link;   /* where it is subscribed, or will be when that link (re)connects; NULL: unplaced */
    int64_t retry_at_ms; /* unplaced after a refusal: not placed again before */
    int backoff_ms;      /* after a refusal; reset when confirmed */
    int redirects;       /* MOVED answers in a row */
};

static struct {
    uv_loop_t *loop;
    const struct magpie_config *cfg;
    struct link cmd, sub;
    uv_timer_t watchdog;
    int64_t watchdog_ms; /* when the watchdog last ran */
    int stopping;
    struct rdsa_script *scripts[RDSA_MAX_SCRIPTS];
    int nscripts;
    struct {
        rdsa_state_fn fn;
        void *arg;
    } state_fns[RDSA_MAX_STATE_FNS];
    int nstate_fns;
    struct channel *channels;
    struct map by_hash;  /* hash of the name -> first channel with it */
    uv_async_t moved;    /* the sentinels announced a new master (sentinel_watch's thread wakes the loop) */
    int cluster;         /* redis.cluster is set: commands go through rdsa_cluster.c, R.cmd stays down */
    struct link *shards; /* cluster: the sharded subscriber links, one per master serving a channel */
    int unplaced;        /* channels with link NULL */
    unsigned placed_gen; /* rdsac_map_gen() when every sharded channel was last placed by the map */
    uint64_t displaced;  /* sharded subscriptions the server dropped, since the last log line */
    int64_t sub_warned_ms;
    uint64_t sub_refused; /* refusals since the last log line */
} R;

/* What the watcher thread hands to the loop (on_switch -> on_moved). */
static struct {
    pthread_mutex_t mu;
    int live; /* R.moved may be sent to */
    int registered;
    char host[256]; /* the master announced last */
    int port;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct pending {
    rdsa_reply_fn fn;
    void *arg;
};

/* A caller waiting for WAIT (rdsa_wait). */
struct waiter {
    rdsa_wait_fn fn;
    void *arg;
    struct waiter *next;
};

/* The WAITs of the command link: at most one in flight (it holds the connection while it waits, so one
 * WAIT at a time covers as many writes as possible), the callers it answers, and the callers that came
 * after it was sent and wait for the next. */
static struct {
    int in_flight;
    struct waiter *sent;          /* answered by the WAIT in flight */
    struct waiter *queue, **tail; /* answered by the next */
    int64_t warned_ms;
} W;

static void link_connect(struct link *l);

static int64_t now_ms(void)
{
    return (int64_t)uv_now(R.loop);
}

void rdsa_script(struct rdsa_script *s)
{
    if (R.nscripts < RDSA_MAX_SCRIPTS)
        R.scripts[R.nscripts++] = s;
}

void rdsa_on_state(rdsa_state_fn fn, void *arg)
{
    if (R.nstate_fns < RDSA_MAX_STATE_FNS) {
        R.state_fns[R.nstate_fns].fn = fn;
        R.state_fns[R.nstate_fns].arg = arg;
        R.nstate_fns++;
    }
}

static void tell_state(int ready)
{
    for (int i = 0; i < R.nstate_fns; i++)
        R.state_fns[i].fn(ready, R.state_fns[i].arg);
}

static void sub_ops_free(struct link *l);

static void on_retry(uv_timer_t *t)
{
    link_connect(t->data);
}

/* The connection is gone (or never came): forget it and try again after the backoff. */
static void link_lost(struct link *l, const char *why)
{
    int was_ready = l->state == LINK_READY;
    l->ac = NULL;
    l->state = LINK_DOWN;
    l->pending = 0;
    l->setup_left = 0;
    sub_ops_free(l);
    if (l->shard && !R.stopping)
        rdsac_refresh_soon(); /* a failover moves its slots: the map says where */
    if (!l->down_logged && !R.stopping) {
        log_warn("redis down link=%s host=%s port=%d reason=\"%s\"", l->name, l->host, l->port, why);
        l->down_logged = 1;
    }
    if (!R.stopping) {
        uv_timer_start(&l->retry, on_retry, (uint64_t)l->backoff_ms, 0);
        l->backoff_ms = l->backoff_ms * 2 > RDSA_BACKOFF_MAX_MS ? RDSA_BACKOFF_MAX_MS : l->backoff_ms * 2;
    }
    if (was_ready && !l->subscriber)
        tell_state(0);
}

/* Drop a live connection: hiredis calls every outstanding callback with NULL, then frees the context. */
static void link_drop(struct link *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    if (ac == NULL)
        return;
    link_lost(l, why);
    redisAsyncFree(ac);
}

static void link_ready(struct link *l)
{
    l->state = LINK_READY;
    l->backoff_ms = RDSA_BACKOFF_MIN_MS;
    if (l->down_logged || l->subscriber == 0 || l->shard)
        log_info("redis ready link=%s host=%s port=%d", l->name, l->host, l->port);
    l->down_logged = 0;
    if (!l->subscriber)
        tell_state(1);
}

/* Send a command on l during setup or use, counting it for the watchdog. */
static int link_send(struct link *l, redisCallbackFn *cb, void *priv, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (redisAsyncCommandArgv(l->ac, cb, priv, argc, argv, argvlen) != REDIS_OK)
        return MP_EAGAIN;
    if (l->pending++ == 0)
        l->progress_ms = now_ms();
    return MP_OK;
}

/* The setup reply of CLIENT SETNAME: an error (a server that renamed CLIENT away) only costs the name. */
static struct rdsa_script setname_step = {"CLIENT SETNAME", "", ""};

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct link *l = ac->data;
    redisReply *r = reply;
    struct rdsa_script *s = priv;
    char why[300];

    if (l == NULL || l->ac != ac)
        return;
    l->pending--;
    l->progress_ms = now_ms();
    if (r == NULL)
        return; /* the connection is going; link_lost runs from the disconnect path */
    if (r->type == REDIS_REPLY_ERROR && s != &setname_step) {
        snprintf(why, sizeof(why), "%s failed: %s", s ? s->name : "AUTH/SELECT", r->str);
        link_drop(l, why);
        return;
    }
    if (s != NULL && s != &setname_step) {
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            link_drop(l, "SCRIPT LOAD gave no sha");
            return;
        }
        memcpy(s->sha, r->str, 40);
        s->sha[40] = '\0';
    }
    if (--l->setup_left == 0)
        link_ready(l);
}

static void sub_setup(struct link *l, const char *name);

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct link *l = ac->data;
    const char *argv[3];
    char db[24], name[64];

    if (l == NULL || l->ac != ac)
        return;
    if (status != REDIS_OK) {
        link_lost(l, ac->errstr[0] ? ac->errstr : "connect failed");
        return; /* hiredis frees the context after this callback */
    }
    redisEnableKeepAlive(&ac->c);
    l->state = LINK_SETUP;
    l->state_ms = now_ms();
    l->setup_left = 0;
    /* CLIENT LIST on the master shows whose connection this is: magpie-push-<node>-<link>. */
    snprintf(name, sizeof(name), "magpie-push-%lld-%s", R.cfg->push.node_id, l->name);
    if (l->subscriber) {
        sub_setup(l, name); /* pub/sub's own path (below): AUTH, SETNAME, its channels */
        return;
    }
    if (R.cfg->redis.password[0] != '\0') {
        argv[0] = "AUTH";
        argv[1] = R.cfg->redis.password;
        l->setup_left++;
        link_send(l, on_setup_reply, NULL, 2, argv, NULL);
    }
    argv[0] = "CLIENT";
    argv[1] = "SETNAME";
    argv[2] = name;
    l->setup_left++;
    link_send(l, on_setup_reply, &setname_step, 3, argv, NULL);
    if (R.cfg->redis.db != 0) {
        snprintf(db, sizeof(db), "%lld", R.cfg->redis.db);
        argv[0] = "SELECT";
        argv[1] = db;
        l->setup_left++;
        link_send(l, on_setup_reply, NULL, 2, argv, NULL);
    }
    for (int i = 0; i < R.nscripts; i++) {
        argv[0] = "SCRIPT";
        argv[1] = "LOAD";
        argv[2] = R.scripts[i]->src;
        l->setup_left++;
        link_send(l, on_setup_reply, R.scripts[i], 3, argv, NULL);
    }
    if (l->setup_left == 0)
        link_ready(l);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct link *l = ac->data;
    if (l == NULL || l->ac != ac)
        return; /* we dropped it ourselves and already know */
    link_lost(l, ac->errstr[0] ? ac->errstr : "connection closed");
}

/* ---- finding the master through the sentinels (sentinel.h) ----
 * sentinel_find_master blocks (a connection to each sentinel asked, one to the master for ROLE), so it
 * runs on libuv's thread pool; the link connects when it is done. */

struct find_job {
    uv_work_t req;
    struct link *l;
    char host[256];
    int port;
    int rc;
    char why[512];
};

static void link_dial(struct link *l);

static void find_work(uv_work_t *req)
{
    struct find_job *j = req->data;
    j->rc = sentinel_find_master(R.cfg, j->host, sizeof(j->host), &j->port, j->why, sizeof(j->why));
}

static void find_done(uv_work_t *req, int status)
{
    struct find_job *j = req->data;
    struct link *l = j->l;

    l->finding = 0;
    if (R.stopping || l->ac != NULL) {
        free(j);
        return;
    }
    if (status != 0 || j->rc != MP_OK) {
        link_lost(l, status != 0 ? "sentinel lookup cancelled" : j->why);
        free(j);
        return;
    }
    if (strcmp(j->host, l->host) != 0 || j->port != l->port)
        log_info("redis master found through the sentinels link=%s master=%s host=%s port=%d", l->name,
                 R.cfg->redis.master_name, j->host, j->port);
    snprintf(l->host, sizeof(l->host), "%s", j->host);
    l->port = j->port;
    free(j);
    link_dial(l);
}

static void link_connect(struct link *l)
{
    struct find_job *j;

    if (R.stopping || l->ac != NULL || l->finding)
        return;
    if (l->shard) {
        link_dial(l); /* its master's address, fixed */
        return;
    }
    if (R.cluster) {
        /* only the subscriber: any node of the cluster, the next one after each loss (rdsa_cluster.h) */
        if (rdsac_sub_address(l->host, sizeof(l->host), &l->port) != MP_OK) {
            link_lost(l, "no cluster node known");
            return;
        }
        link_dial(l);
        return;
    }
    if (!sentinel_enabled(R.cfg)) {
        link_dial(l);
        return;
    }
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        link_lost(l, "out of memory");
        return;
    }
    j->req.data = j;
    j->l = l;
    if (uv_queue_work(R.loop, &j->req, find_work, find_done) != 0) {
        free(j);
        link_lost(l, "cannot queue the sentinel lookup");
        return;
    }
    l->finding = 1;
}

static void sub_read(redisAsyncContext *ac);

/* Connect l to l->host:l->port. */
static void link_dial(struct link *l)
{
    redisAsyncContext *ac;

    ac = redisAsyncConnect(l->host, l->port);
    if (ac == NULL) {
        link_lost(l, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        link_lost(l, why);
        return;
    }
    if (rdsa_uv_attach(ac, R.loop) != MP_OK) {
        redisAsyncFree(ac);
        link_lost(l, "cannot watch the socket");
        return;
    }
    ac->data = l;
    if (l->subscriber)
        ((struct uvev *)ac->ev.data)->raw_read = sub_read;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l->ac = ac;
    l->state = LINK_CONNECTING;
    l->state_ms = now_ms();
    l->pending = 0;
}

static void channels_place(void);
static void shards_close_idle(void);

/* The timeouts of one link (the top of rdsa.h). */
static void link_watch(struct link *l, int64_t now, int stalled)
{
    if (stalled) {
        l->progress_ms = l->state_ms = now;
        return;
    }
    if (l->ac == NULL)
        return;
    if (l->state == LINK_CONNECTING && now - l->state_ms > R.cfg->redis.connect_timeout_ms)
        link_drop(l, "connect timed out");
    else if (l->pending > 0 && now - l->progress_ms > R.cfg->redis.command_timeout_ms)
        link_drop(l, "no reply within redis.command_timeout_ms");
}

static void on_watchdog(uv_timer_t *t)
{
    int64_t now = now_ms(), late = now - R.watchdog_ms - RDSA_WATCHDOG_MS;
    /* This loop itself was stalled (a connect storm on a busy machine): commands queued meanwhile may not
     * even be written yet. Redis gets a full timeout from now rather than the blame. */
    int stalled = late > R.cfg->redis.command_timeout_ms / 2;
    (void)t;
    R.watchdog_ms = now;
    if (stalled)
        log_info("event loop was stalled stalled_ms=%lld: redis timeouts restart", (long long)late);
    link_watch(&R.cmd, now, stalled);
    link_watch(&R.sub, now, stalled);
    for (struct link *l = R.shards; l != NULL; l = l->next_shard)
        link_watch(l, now, stalled);
    channels_place();
    shards_close_idle();
}

/* ---- following the sentinels' +switch-master (sentinel.h) ---- */

/* On the watcher's thread: note the address and wake the loop, unless rdsa is stopped. */
static void on_switch(const char *host, int port, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&M.mu);
    snprintf(M.host, sizeof(M.host), "%s", host);
    M.port = port;
    if (M.live)
        uv_async_send(&R.moved);
    pthread_mutex_unlock(&M.mu);
}

/* On the loop: every link that is not on the new master goes there now. A live one elsewhere is dropped
 * (its outstanding callbacks get NULL: those clients get E and retry, as on a lost connection); one down
 * and waiting out its backoff stops waiting and asks the sentinels, which name the new master already.
 * One whose sentinel lookup is under way finds it by itself. */
static void on_moved(uv_async_t *h)
{
    struct link *links[2] = {&R.cmd, &R.sub};
    char host[256];
    int port;
    (void)h;
    pthread_mutex_lock(&M.mu);
    snprintf(host, sizeof(host), "%s", M.host);
    port = M.port;
    pthread_mutex_unlock(&M.mu);
    for (int i = 0; i < 2; i++) {
        struct link *l = links[i];
        if (l->ac != NULL && (strcmp(l->host, host) != 0 || l->port != port))
            link_drop(l, "the sentinels moved the master (+switch-master)");
        if (l->ac == NULL && !l->finding && !R.stopping) {
            uv_timer_stop(&l->retry);
            l->backoff_ms = RDSA_BACKOFF_MIN_MS;
            link_connect(l);
        }
    }
}

int rdsa_start(uv_loop_t *loop, const struct magpie_config *cfg)
{
    R.loop = loop;
    R.cfg = cfg;
    R.stopping = 0;
    R.cmd.name = "command";
    R.sub.name = "subscriber";
    W.tail = &W.queue;
    if (!sentinel_enabled(cfg)) {
        snprintf(R.cmd.host, sizeof(R.cmd.host), "%s", cfg->redis.host);
        snprintf(R.sub.host, sizeof(R.sub.host), "%s", cfg->redis.host);
        R.cmd.port = R.sub.port = (int)cfg->redis.port;
    }
    R.sub.subscriber = 1;
    R.cmd.ops_tail = &R.cmd.ops;
    R.sub.ops_tail = &R.sub.ops;
    R.cluster = cfg->redis.cluster != NULL && cfg->redis.cluster[0] != '\0';
    if (R.cluster) {
        int rc = rdsac_start(loop, cfg, R.scripts, R.nscripts, tell_state);
        if (rc != MP_OK)
            return rc;
    }
    R.cmd.backoff_ms = R.sub.backoff_ms = RDSA_BACKOFF_MIN_MS;
    uv_timer_init(loop, &R.cmd.retry);
    uv_timer_init(loop, &R.sub.retry);
    R.cmd.retry.data = &R.cmd;
    R.sub.retry.data = &R.sub;
    uv_timer_init(loop, &R.watchdog);
    R.watchdog_ms = now_ms();
    uv_timer_start(&R.watchdog, on_watchdog, RDSA_WATCHDOG_MS, RDSA_WATCHDOG_MS);
    if (sentinel_enabled(cfg)) {
        uv_async_init(loop, &R.moved, on_moved);
        pthread_mutex_lock(&M.mu);
        M.live = 1;
        pthread_mutex_unlock(&M.mu);
        if (!M.registered && sentinel_watch(cfg, on_switch, NULL) == MP_OK)
            M.registered = 1;
    }
    if (!R.cluster)
        link_connect(&R.cmd);
    link_connect(&R.sub);
    return MP_OK;
}

static void shard_free(struct link *l);

void rdsa_stop(void)
{
    struct channel *c, *next;
    if (R.loop == NULL || R.stopping)
        return;
    R.stopping = 1;
    if (R.cluster)
        rdsac_stop();
    link_drop(&R.cmd, "stopping");
    link_drop(&R.sub, "stopping");
    while (R.shards != NULL) {
        struct link *l = R.shards;
        R.shards = l->next_shard;
        shard_free(l);
    }
    uv_timer_stop(&R.watchdog);
    uv_close((uv_handle_t *)&R.watchdog, NULL);
    uv_close((uv_handle_t *)&R.cmd.retry, NULL);
    uv_close((uv_handle_t *)&R.sub.retry, NULL);
    pthread_mutex_lock(&M.mu);
    if (M.live)
        uv_close((uv_handle_t *)&R.moved, NULL);
    M.live = 0;
    pthread_mutex_unlock(&M.mu);
    R.loop = NULL;
    for (c = R.channels; c != NULL; c = next) {
        next = c->next;
        free(c->name);
        free(c);
    }
    R.channels = NULL;
    R.unplaced = 0;
    R.placed_gen = 0;
    map_free(&R.by_hash);
}

int rdsa_ready(void)
{
    if (R.cluster)
        return rdsac_ready();
    return R.cmd.state == LINK_READY;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct link *l = ac->data;
    struct pending *p = priv;
    redisReply *r = reply;

    if (l != NULL && l->ac == ac) {
        l->pending--;
        l->progress_ms = now_ms();
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* Someone flushed the script cache: reconnecting loads the scripts again. */
        if (l != NULL && l->ac == ac)
            link_drop(l, "script cache lost (NOSCRIPT)");
        r = NULL;
    } else if (sentinel_readonly(r) && l != NULL && l->ac == ac) {
        /* The server is a replica now (a failover): reconnecting asks the sentinels. The caller still
         * gets the error reply, as for any refused command. */
        link_drop(l, "the server is a replica now (READONLY)");
    }
    if (p->fn != NULL)
        p->fn(r, p->arg);
    free(p);
}

int rdsa_cmdargv(rdsa_reply_fn fn, void *arg, int argc, const char **argv, const size_t *argvlen)
{
    struct pending *p;
    if (R.cluster)
        return rdsac_cmdargv(fn, arg, argc, argv, argvlen);
    if (R.cmd.state != LINK_READY)
        return MP_EAGAIN;
    if ((p = malloc(sizeof(*p))) == NULL)
        return MP_EAGAIN;
    p->fn = fn;
    p->arg = arg;
    if (link_send(&R.cmd, on_reply, p, argc, argv, argvlen) != MP_OK) {
        free(p);
        return MP_EAGAIN;
    }
    return MP_OK;
}

int rdsa_cmd(rdsa_reply_fn fn, void *arg, const char *fmt, ...)
{
    struct pending *p;
    va_list ap;
    int rc;

    if (R.cluster) {
        va_start(ap, fmt);
        rc = rdsac_cmdv(fn, arg, fmt, ap);
        va_end(ap);
        return rc;
    }
    if (R.cmd.state != LINK_READY)
        return MP_EAGAIN;
    if ((p = malloc(sizeof(*p))) == NULL)
        return MP_EAGAIN;
    p->fn = fn;
    p->arg = arg;
    va_start(ap, fmt);
    rc = redisvAsyncCommand(R.cmd.ac, on_reply, p, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        free(p);
        return MP_EAGAIN;
    }
    if (R.cmd.pending++ == 0)
        R.cmd.progress_ms = now_ms();
    return MP_OK;
}

int rdsa_eval(const struct rdsa_script *s, rdsa_reply_fn fn, void *arg, int numkeys, int argc,
              const char **argv, const size_t *argvlen)
{
    enum { STACK_ARGS = 256 };
    const char *stack_av[STACK_ARGS + 3], **av = stack_av;
    size_t stack_avlen[STACK_ARGS + 3], *avlen = stack_avlen;
    char nk[16];
    int rc;

    if (argc < 0 || argc > RDSA_MAX_EVAL_ARGS || s->sha[0] == '\0')
        return MP_EAGAIN;
    if (argc > STACK_ARGS) {
        av = malloc((size_t)(argc + 3) * sizeof(*av));
        avlen = malloc((size_t)(argc + 3) * sizeof(*avlen));
        if (av == NULL || avlen == NULL) {
            free(av);
            free(avlen);
            return MP_EAGAIN;
        }
    }
    snprintf(nk, sizeof(nk), "%d", numkeys);
    av[0] = "EVALSHA";
    avlen[0] = 7;
    av[1] = s->sha;
    avlen[1] = 40;
    av[2] = nk;
    avlen[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        avlen[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    rc = rdsa_cmdargv(fn, arg, argc + 3, av, avlen);
    if (av != stack_av) {
        free(av);
        free(avlen);
    }
    return rc;
}

/* ---- WAIT before a durable answer ---- */

static void waiters_answer(struct waiter *w, int ok)
{
    while (w != NULL) {
        struct waiter *next = w->next;
        w->fn(ok, w->arg);
        free(w);
        w = next;
    }
}

static void wait_send(void);

static void on_wait_reply(redisReply *r, void *arg)
{
    struct waiter *done = W.sent, *queued;
    long long want = R.cfg->redis.min_replicas_acked;
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= want;

    W.sent = NULL;
    W.in_flight = 0;
    if (r == NULL) {
        /* The connection is gone, and with it the writes of the callers queued behind this WAIT. */
        queued = W.queue;
        W.queue = NULL;
        W.tail = &W.queue;
        waiters_answer(done, 0);
        waiters_answer(queued, 0);
        return;
    }
    if (!ok && now_ms() - W.warned_ms >= RDSA_WAIT_WARN_EVERY_MS) {
        W.warned_ms = now_ms();
        log_warn("redis WAIT: too few replicas hold the writes; their senders get E and retry acked=%lld "
                 "wanted=%lld timeout_ms=%lld%s%s",
                 r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL, want, R.cfg->redis.wait_timeout_ms,
                 r->type == REDIS_REPLY_ERROR ? " error=" : "", r->type == REDIS_REPLY_ERROR ? r->str : "");
    }
    wait_send();
    waiters_answer(done, ok);
}

/* Send one WAIT for every queued caller. */
static void wait_send(void)
{
    if (W.queue == NULL || W.in_flight)
        return;
    W.sent = W.queue;
    W.queue = NULL;
    W.tail = &W.queue;
    if (rdsa_cmd(on_wait_reply, NULL, "WAIT %lld %lld", R.cfg->redis.min_replicas_acked,
                 R.cfg->redis.wait_timeout_ms) != MP_OK) {
        struct waiter *w = W.sent;
        W.sent = NULL;
        waiters_answer(w, 0);
        return;
    }
    W.in_flight = 1;
}

void rdsa_wait(rdsa_wait_fn fn, void *arg)
{
    struct waiter *w;
    if (R.cfg->redis.min_replicas_acked <= 0) {
        fn(1, arg);
        return;
    }
    if (R.cluster) {
        rdsac_wait(fn, arg);
        return;
    }
    if (!rdsa_ready() || (w = calloc(1, sizeof(*w))) == NULL) {
        fn(0, arg);
        return;
    }
    w->fn = fn;
    w->arg = arg;
    *W.tail = w;
    W.tail = &w->next;
    wait_send();
}

/* ---- pub/sub ----
 * hiredis 0.14 knows SUBSCRIBE and PSUBSCRIBE only (v0.14.1 async.c: __redisAsyncCommand flags a
 * connection subscribed for "subscribe" and "psubscribe", __redisGetSubscribeCallback looks a push up by
 * its channel among those). An SSUBSCRIBE is to it an ordinary command: its confirmation takes that
 * command's callback, and every "smessage" after it comes with no callback waiting, on a connection
 * hiredis does not think subscribed -- an assert -- or, with classic channels on it too, is handed to the
 * callback of whatever reply came before it. So the subscriber links do not use hiredis' callbacks: hiredis
 * connects them (on_connect) and writes what is appended to them, and sub_read (the adapter's raw_read)
 * reads and parses every reply itself (redisBufferRead, redisReaderGetReply). Each command written (AUTH,
 * CLIENT SETNAME, one channel per (S)(UN)SUBSCRIBE) is remembered in order (struct subop), so an error is
 * matched to its command; a confirmation, a message and the server's own "sunsubscribe" (Redis 7 drops the
 * sharded subscriptions of a slot that leaves a node: a reshard, a failover) are told apart by their
 * first element.
 *
 * Where each channel is subscribed (c->link): classic channels, and sharded ones on one Redis or with
 * Sentinel (Redis 7 takes SSUBSCRIBE without cluster mode), on R.sub. On a cluster a sharded channel is
 * subscribed on the master serving its slot (rdsac_slot_owner), through that master's shard link: one per
 * master serving a subscribed channel, made when the first is placed there, closed (by the watchdog) when
 * it has none left. An unplaced channel (c->link NULL: no map yet, no master for its slot, refused, or
 * dropped by the server) is placed by the watchdog (at most every RDSA_WATCHDOG_MS; after a refusal not
 * before its backoff, 100 ms doubling to 2 s); and whenever the cluster map changed (rdsac_map_gen), every
 * sharded channel whose slot has another master now is moved there (SUNSUBSCRIBE on the old link, if it
 * is up, SSUBSCRIBE on the new). A MOVED answer to an SSUBSCRIBE sets the slot's owner in the map and
 * subscribes there at once (up to RCL_MAX_REDIRECTS in a row, then after the backoff). A shard link that
 * is lost keeps its channels and subscribes them again when it is back, unless the map (refreshed: a
 * failover) moves them first. Each confirmation calls the channel's ready callback. */

enum subop_kind { OP_AUTH, OP_SETNAME, OP_SUB, OP_SSUB, OP_UNSUB, OP_SUNSUB };

struct subop {
    struct subop *next;
    enum subop_kind kind;
    char name[]; /* the channel ("" for AUTH and SETNAME) */
};

static int link_live(const struct link *l)
{
    return l->ac != NULL && (l->state == LINK_SETUP || l->state == LINK_READY);
}

static void sub_ops_free(struct link *l)
{
    struct subop *op, *next;
    for (op = l->ops; op != NULL; op = next) {
        next = op->next;
        free(op);
    }
    l->ops = NULL;
    l->ops_tail = &l->ops;
}

/* Append a command to subscriber link l (live) and remember it; MP_OK or MP_ENOMEM. */
static int sub_send(struct link *l, enum subop_kind kind, const char *arg)
{
    static const char *const names[] = {"AUTH",       "CLIENT",      "SUBSCRIBE",
                                        "SSUBSCRIBE", "UNSUBSCRIBE", "SUNSUBSCRIBE"};
    const char *keep = kind == OP_AUTH || kind == OP_SETNAME ? "" : arg;
    size_t len = strlen(keep);
    struct subop *op = malloc(sizeof(*op) + len + 1);
    const char *argv[3] = {names[kind], arg, NULL};
    int argc = 2;

    if (op == NULL)
        return MP_ENOMEM;
    op->next = NULL;
    op->kind = kind;
    memcpy(op->name, keep, len + 1);
    if (kind == OP_SETNAME) {
        argv[1] = "SETNAME";
        argv[2] = arg;
        argc = 3;
    }
    if (redisAppendCommandArgv(&l->ac->c, argc, argv, NULL) != REDIS_OK) {
        free(op);
        return MP_ENOMEM;
    }
    if (l->ac->ev.addWrite != NULL)
        l->ac->ev.addWrite(l->ac->ev.data); /* written at the next loop pass (the adapter) */
    *l->ops_tail = op;
    l->ops_tail = &op->next;
    if (l->pending++ == 0)
        l->progress_ms = now_ms();
    return MP_OK;
}

/* sub_send, a lost connection when it cannot be written. */
static void sub_send_or_drop(struct link *l, enum subop_kind kind, const char *arg)
{
    if (sub_send(l, kind, arg) != MP_OK)
        link_drop(l, "out of memory");
}

/* The oldest command written on l, taken off the list (the caller frees it); NULL when none. */
static struct subop *sub_pop(struct link *l)
{
    struct subop *op = l->ops;
    if (op == NULL)
        return NULL;
    l->ops = op->next;
    if (l->ops == NULL)
        l->ops_tail = &l->ops;
    l->pending--;
    return op;
}

/* FNV-1a: channel names are short; collisions only make a chain longer. A sharded channel is another
 * channel than the classic one of the same name (as to Redis). */
static uint64_t name_hash(const char *s, size_t len, int sharded)
{
    uint64_t h = sharded ? 0x84222325cbf29ce4ULL : 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct channel *channel_find(const char *name, size_t len, int sharded)
{
    struct channel *c = map_get(&R.by_hash, name_hash(name, len, sharded));
    while (c != NULL && (c->sharded != sharded || strlen(c->name) != len || memcmp(c->name, name, len) != 0))
        c = c->same_hash;
    return c;
}

/* The shard link of host:port, made (down) when new; NULL when out of memory or rdsa is not running. */
static struct link *shard_get(const char *host, int port)
{
    struct link *l;
    for (l = R.shards; l != NULL; l = l->next_shard)
        if (l->port == port && strcmp(l->host, host) == 0)
            return l;
    if (R.loop == NULL || R.stopping || strlen(host) >= sizeof(l->host) ||
        (l = calloc(1, sizeof(*l))) == NULL)
        return NULL;
    l->name = "sharded"; /* CLIENT SETNAME magpie-push-<node>-sharded */
    l->subscriber = 1;
    l->shard = 1;
    snprintf(l->host, sizeof(l->host), "%s", host);
    l->port = port;
    l->backoff_ms = RDSA_BACKOFF_MIN_MS;
    l->ops_tail = &l->ops;
    uv_timer_init(R.loop, &l->retry);
    l->retry.data = l;
    l->next_shard = R.shards;
    R.shards = l;
    return l;
}

static void shard_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Close shard link l (already off R.shards) quietly and free it once its timer is closed. */
static void shard_free(struct link *l)
{
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    l->state = LINK_DOWN;
    sub_ops_free(l);
    if (ac != NULL)
        redisAsyncFree(ac); /* on_disconnect finds l->ac != ac: nothing more */
    uv_timer_stop(&l->retry);
    uv_close((uv_handle_t *)&l->retry, shard_closed);
}

/* Shard links with no channel left (their slots moved, their channels unsubscribed) are closed. */
static void shards_close_idle(void)
{
    struct link **p = &R.shards;
    while (*p != NULL) {
        struct link *l = *p;
        if (l->nchannels > 0) {
            p = &l->next_shard;
            continue;
        }
        *p = l->next_shard;
        if (l->ac != NULL)
            log_info("redis sharded subscriber closed: no channel left on it host=%s port=%d", l->host,
                     l->port);
        shard_free(l);
    }
}

/* Where c belongs now (see above); NULL when that is not known yet (cluster: no map, no master). */
static struct link *channel_target(const struct channel *c)
{
    char host[256];
    int port;
    if (!c->sharded || !R.cluster)
        return &R.sub;
    if (rdsac_slot_owner(c->slot, host, sizeof(host), &port) != MP_OK)
        return NULL;
    return shard_get(host, port);
}

/* Take c off its link (unsubscribing it there when send and the link is up). */
static void channel_unplace(struct channel *c, int send)
{
    struct link *l = c->link;
    if (l == NULL)
        return;
    c->link = NULL;
    l->nchannels--;
    R.unplaced++;
    if (send && link_live(l))
        sub_send_or_drop(l, c->sharded ? OP_SUNSUB : OP_UNSUB, c->name);
}

/* Put c where it belongs: subscribed now when that link is up, else when it (re)connects. */
static void channel_place(struct channel *c)
{
    struct link *to = channel_target(c);
    if (to != NULL && to == c->link)
        return;
    channel_unplace(c, 1);
    if (to == NULL)
        return;
    c->link = to;
    to->nchannels++;
    R.unplaced--;
    if (link_live(to))
        sub_send_or_drop(to, c->sharded ? OP_SSUB : OP_SUB, c->name);
    else if (to->shard && to->ac == NULL && !uv_is_active((uv_handle_t *)&to->retry))
        link_connect(to); /* a new shard link (one waiting out its backoff keeps waiting) */
}

/* The watchdog's pass: unplaced channels whose backoff is over, and, when the cluster map changed, every
 * sharded channel (moved when its slot has another master now). */
static void channels_place(void)
{
    int64_t now = now_ms();
    int all = R.cluster && rdsac_map_gen() != R.placed_gen;
    unsigned moved = 0;

    if (R.stopping || (!all && R.unplaced == 0)) {
        if (R.displaced == 0)
            return;
    } else {
        if (R.cluster)
            R.placed_gen = rdsac_map_gen();
        for (struct channel *c = R.channels; c != NULL; c = c->next) {
            struct link *was = c->link;
            if (was == NULL ? now < c->retry_at_ms : !(all && c->sharded))
                continue;
            channel_place(c);
            moved += was != NULL && c->link != was;
        }
    }
    if (moved > 0)
        log_info("redis cluster map changed: sharded channels moved to their slots' new masters channels=%u",
                 moved);
    if (R.displaced > 0) {
        log_info("redis dropped sharded subscriptions (their slots left the node): subscribing them again "
                 "where the slots are now channels=%llu",
                 (unsigned long long)R.displaced);
        R.displaced = 0;
    }
}

/* An error answered c's (S)SUBSCRIBE on l: MOVED (cluster) goes where it says; anything else (CLUSTERDOWN
 * during a failover, an unknown command on a Redis before 7, an ACL) is tried again after the backoff. */
static void sub_refused(struct link *l, const struct subop *op, const redisReply *r)
{
    struct channel *c = channel_find(op->name, strlen(op->name), op->kind == OP_SSUB);
    struct rcl_redirect rd;
    int64_t now = now_ms();

    if (c == NULL || c->link != l)
        return; /* unsubscribed or moved meanwhile */
    channel_unplace(c, 0);
    if (R.cluster && c->sharded && rcl_classify(r, l->host, &rd) == RCL_MOVED) {
        rdsac_moved(rd.slot, rd.host, rd.port);
        if (++c->redirects <= RCL_MAX_REDIRECTS) {
            channel_place(c);
            return;
        }
        c->redirects = 0;
    }
    if (R.cluster)
        rdsac_refresh_soon();
    c->retry_at_ms = now + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > RDSA_BACKOFF_MAX_MS ? RDSA_BACKOFF_MAX_MS : c->backoff_ms * 2;
    R.sub_refused++;
    if (R.sub_warned_ms == 0 || now - R.sub_warned_ms >= RDSA_SUB_WARN_EVERY_MS) {
        log_warn(
            "redis refused a subscription: tried again link=%s host=%s port=%d channel=%s reply=\"%.200s\" "
            "count=%llu",
            l->name, l->host, l->port, c->name, r->str, (unsigned long long)R.sub_refused);
        R.sub_warned_ms = now;
        R.sub_refused = 0;
    }
}

static void sub_setup_step(struct link *l)
{
    if (--l->setup_left == 0)
        link_ready(l);
}

/* A status or error reply on l: the answer to its oldest command. */
static void sub_answer(struct link *l, const redisReply *r)
{
    struct subop *op = sub_pop(l);
    char why[300];

    if (op == NULL)
        return; /* nothing asked: not Redis' protocol, ignored */
    switch (op->kind) {
    case OP_AUTH:
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(why, sizeof(why), "AUTH failed: %.200s", r->str);
            free(op);
            link_drop(l, why);
            return;
        }
        sub_setup_step(l);
        break;
    case OP_SETNAME: /* an error (a server that renamed CLIENT away) only costs the name */
        sub_setup_step(l);
        break;
    case OP_SUB:
    case OP_SSUB:
        if (r->type == REDIS_REPLY_ERROR)
            sub_refused(l, op, r);
        break;
    case OP_UNSUB:
    case OP_SUNSUB: /* an error (MOVED: the slot left that node) means it is not subscribed there: fine */
        break;
    }
    free(op);
}

/* One reply read on subscriber link l. User callbacks run last: they may (un)subscribe or stop rdsa. */
static void sub_reply(struct link *l, const redisReply *r)
{
    const redisReply *k, *ch;
    struct channel *c;
    int sharded;

    l->progress_ms = now_ms();
    if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) {
        sub_answer(l, r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || (k = r->element[0])->type != REDIS_REPLY_STRING ||
        (ch = r->element[1])->type != REDIS_REPLY_STRING || k->len < 7)
        return; /* not a pub/sub reply: ignored */
    /* "smessage", "ssubscribe", "sunsubscribe" are the sharded ones ("subscribe" starts with an s too) */
    sharded = strcasecmp(k->str, "smessage") == 0 || strcasecmp(k->str, "ssubscribe") == 0 ||
              strcasecmp(k->str, "sunsubscribe") == 0;
    c = channel_find(ch->str, ch->len, sharded);
    if (strcasecmp(k->str + sharded, "message") == 0) {
        if (c != NULL && c->link == l && r->element[2]->type == REDIS_REPLY_STRING)
            c->fn(c->name, r->element[2]->str, r->element[2]->len, c->arg);
        return;
    }
    if (strcasecmp(k->str + sharded, "subscribe") == 0) {
        if (l->ops != NULL && l->ops->kind == (sharded ? OP_SSUB : OP_SUB))
            free(sub_pop(l));
        if (c != NULL && c->link == l) {
            c->backoff_ms = RDSA_BACKOFF_MIN_MS;
            c->redirects = 0;
            if (c->ready != NULL)
                c->ready(c->name, c->arg);
        }
        return;
    }
    if (strcasecmp(k->str + sharded, "unsubscribe") == 0) {
        struct subop *op = l->ops;
        if (op != NULL && op->kind == (sharded ? OP_SUNSUB : OP_UNSUB) && strlen(op->name) == ch->len &&
            memcmp(op->name, ch->str, ch->len) == 0) {
            free(sub_pop(l)); /* the answer to ours */
            return;
        }
        /* The server's own: the channel's slot left this node (a reshard, a failover). The map says, or
         * will after a refresh, where it is now; an SSUBSCRIBE sent to the old node meanwhile gets MOVED. */
        if (sharded && c != NULL && c->link == l) {
            channel_unplace(c, 0);
            c->retry_at_ms = now_ms();
            R.displaced++;
            if (R.cluster)
                rdsac_refresh_soon();
        }
    }
}

/* The adapter's raw_read for subscriber links, once connected (see above). */
static void sub_read(redisAsyncContext *ac)
{
    struct link *l = ac->data;
    redisContext *c = &ac->c;
    char why[160];

    if (l == NULL || l->ac != ac)
        return;
    if (redisBufferRead(c) != REDIS_OK) {
        snprintf(why, sizeof(why), "%s", c->errstr[0] ? c->errstr : "connection closed");
        link_drop(l, why);
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            snprintf(why, sizeof(why), "protocol error: %s", c->reader->errstr);
            link_drop(l, why);
            return;
        }
        if (reply == NULL)
            return;
        sub_reply(l, reply);
        freeReplyObject(reply);
        if (l->ac != ac)
            return; /* dropped, or rdsa stopped, meanwhile (l itself is freed only on a later pass) */
    }
}

/* A subscriber link connected: AUTH, CLIENT SETNAME, then every channel placed on it. Channels are the
 * same in every database: no SELECT. Ready once AUTH and SETNAME answered. */
static void sub_setup(struct link *l, const char *name)
{
    sub_ops_free(l);
    if (R.cfg->redis.password[0] != '\0') {
        if (sub_send(l, OP_AUTH, R.cfg->redis.password) != MP_OK)
            goto oom;
        l->setup_left++;
    }
    if (sub_send(l, OP_SETNAME, name) != MP_OK)
        goto oom;
    l->setup_left++;
    for (struct channel *c = R.channels; c != NULL; c = c->next)
        if (c->link == l && sub_send(l, c->sharded ? OP_SSUB : OP_SUB, c->name) != MP_OK)
            goto oom;
    return;
oom:
    link_drop(l, "out of memory");
}

static int channel_add(const char *channel, int sharded, rdsa_message_fn fn, rdsa_ready_fn ready, void *arg)
{
    struct channel *c = calloc(1, sizeof(*c));
    size_t len = strlen(channel);
    if (c == NULL || (c->name = strdup(channel)) == NULL) {
        free(c);
        return MP_ENOMEM;
    }
    c->hash = name_hash(channel, len, sharded);
    c->same_hash = map_get(&R.by_hash, c->hash);
    if (map_put(&R.by_hash, c->hash, c) != MP_OK) {
        free(c->name);
        free(c);
        return MP_ENOMEM;
    }
    c->fn = fn;
    c->ready = ready;
    c->arg = arg;
    c->sharded = sharded;
    c->slot = rcl_keyslot(channel, len);
    c->backoff_ms = RDSA_BACKOFF_MIN_MS;
    c->next = R.channels;
    if (R.channels != NULL)
        R.channels->prev = c;
    R.channels = c;
    R.unplaced++; /* c->link NULL */
    channel_place(c);
    return MP_OK;
}

static void channel_remove(const char *channel, int sharded)
{
    struct channel *c = channel_find(channel, strlen(channel), sharded), *head;

    if (c == NULL)
        return;
    head = map_get(&R.by_hash, c->hash);
    if (head == c) {
        if (c->same_hash != NULL)
            map_put(&R.by_hash, c->hash, c->same_hash); /* replaces a value: cannot fail */
        else
            map_del(&R.by_hash, c->hash);
    } else {
        while (head->same_hash != c)
            head = head->same_hash;
        head->same_hash = c->same_hash;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        R.channels = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    channel_unplace(c, 1);
    R.unplaced--;
    free(c->name);
    free(c);
}

int rdsa_subscribe_ready(const char *channel, rdsa_message_fn fn, rdsa_ready_fn ready, void *arg)
{
    return channel_add(channel, 0, fn, ready, arg);
}

int rdsa_subscribe(const char *channel, rdsa_message_fn fn, void *arg)
{
    return channel_add(channel, 0, fn, NULL, arg);
}

void rdsa_unsubscribe(const char *channel)
{
    channel_remove(channel, 0);
}

int rdsa_ssubscribe_ready(const char *channel, rdsa_message_fn fn, rdsa_ready_fn ready, void *arg)
{
    return channel_add(channel, 1, fn, ready, arg);
}

int rdsa_ssubscribe(const char *channel, rdsa_message_fn fn, void *arg)
{
    return channel_add(channel, 1, fn, NULL, arg);
}

void rdsa_sunsubscribe(const char *channel)
{
    channel_remove(channel, 1);
}
