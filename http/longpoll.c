/* longpoll.c -- see longpoll.h for the design. */
#include "longpoll.h"
#include "call.h"
#include "hmetrics.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "qr.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LP_IDLE_WAKE_MS 1000 /* the hub looks around at least this often (subscription retries) */
#define LP_EARLY_MS     20   /* a waiter woken this close to its deadline is answered, not parked again */

struct waiter {
    struct lp_wait wait;
    const struct lp_front *front;
    void *front_ctx;
    const char *endpoint;
    const char *frontend;
    int64_t started_us;
    struct waiter *next; /* in the pending list, a hash bucket or the answer queue */
    size_t heap_i;
};

static struct {
    pthread_mutex_t lock; /* guards pending, stopping, waiting, hub_gone */
    struct waiter *pending;
    int stopping;
    int hub_gone;
    long waiting; /* parked and not yet answered */
    long max_waiting;
    int efd; /* wakes the hub when something is pending or we stop */

    pthread_mutex_t qlock; /* the answer queue */
    pthread_cond_t qcond;
    struct waiter *qhead, **qtail;
    int workers_done;

    pthread_t hub;
    pthread_t *workers;
    int nworkers;
    int started;

    /* Owned by the hub thread. */
    struct waiter **buckets;
    size_t nbuckets;
    struct waiter **heap;
    size_t nheap;
    struct rds sub, check;
    int subscribed;
    char chan_prefix[32], chan_suffix[16], pattern[64];
} lp = {.lock = PTHREAD_MUTEX_INITIALIZER,
        .qlock = PTHREAD_MUTEX_INITIALIZER,
        .qcond = PTHREAD_COND_INITIALIZER,
        .efd = -1};

long longpoll_waiting(void)
{
    long n;
    pthread_mutex_lock(&lp.lock);
    n = lp.waiting;
    pthread_mutex_unlock(&lp.lock);
    return n;
}

static void kick_hub(void)
{
    uint64_t one = 1;
    if (write(lp.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error("cannot wake the long-poll hub errno=%d", errno);
}

/* ---- the answer queue ---- */

static void queue_push(struct waiter *w)
{
    w->next = NULL;
    pthread_mutex_lock(&lp.qlock);
    *lp.qtail = w;
    lp.qtail = &w->next;
    pthread_cond_signal(&lp.qcond);
    pthread_mutex_unlock(&lp.qlock);
}

/* Hand a waiter to the hub (again), or straight to the answer queue when the hub has stopped. */
static void submit(struct waiter *w)
{
    pthread_mutex_lock(&lp.lock);
    if (lp.stopping) {
        pthread_mutex_unlock(&lp.lock);
        queue_push(w);
        return;
    }
    w->next = lp.pending;
    lp.pending = w;
    pthread_mutex_unlock(&lp.lock);
    kick_hub();
}

int longpoll_park(const struct lp_wait *wait, const struct lp_front *front, void *front_ctx,
                  const char *endpoint, const char *frontend, int64_t started_us)
{
    struct waiter *w;

    pthread_mutex_lock(&lp.lock);
    if (lp.stopping || !lp.started || lp.waiting >= lp.max_waiting) {
        int full = !lp.stopping && lp.started;
        pthread_mutex_unlock(&lp.lock);
        if (full)
            metric_add(hm.long_polls_refused, NULL, 1);
        return MP_EAGAIN;
    }
    lp.waiting++;
    metric_set(hm.long_polls, NULL, (double)lp.waiting);
    pthread_mutex_unlock(&lp.lock);

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        pthread_mutex_lock(&lp.lock);
        lp.waiting--;
        pthread_mutex_unlock(&lp.lock);
        return MP_EAGAIN;
    }
    w->wait = *wait;
    w->front = front;
    w->front_ctx = front_ctx;
    w->endpoint = endpoint;
    w->frontend = frontend;
    w->started_us = started_us;
    submit(w);
    return MP_OK;
}

/* ---- the hub's index: hash by token, min-heap by deadline ---- */

static size_t bucket_of(const char *token)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *token != '\0'; token++)
        h = (h ^ (unsigned char)*token) * 1099511628211ULL;
    return (size_t)h & (lp.nbuckets - 1);
}

static void heap_swap(size_t a, size_t b)
{
    struct waiter *t = lp.heap[a];
    lp.heap[a] = lp.heap[b];
    lp.heap[b] = t;
    lp.heap[a]->heap_i = a;
    lp.heap[b]->heap_i = b;
}

static void heap_up(size_t i)
{
    while (i > 0 && lp.heap[(i - 1) / 2]->wait.deadline_ms > lp.heap[i]->wait.deadline_ms) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < lp.nheap && lp.heap[l]->wait.deadline_ms < lp.heap[m]->wait.deadline_ms)
            m = l;
        if (r < lp.nheap && lp.heap[r]->wait.deadline_ms < lp.heap[m]->wait.deadline_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(i, m);
        i = m;
    }
}

/* The heap has room: it holds at most max_waiting entries and every entry holds a slot. */
static void index_add(struct waiter *w)
{
    size_t b = bucket_of(w->wait.token);
    w->next = lp.buckets[b];
    lp.buckets[b] = w;
    w->heap_i = lp.nheap;
    lp.heap[lp.nheap++] = w;
    heap_up(w->heap_i);
}

static void index_remove(struct waiter *w)
{
    struct waiter **pp = &lp.buckets[bucket_of(w->wait.token)];
    size_t i = w->heap_i;
    while (*pp != NULL && *pp != w)
        pp = &(*pp)->next;
    if (*pp == w)
        *pp = w->next;
    lp.nheap--;
    if (i != lp.nheap) {
        heap_swap(i, lp.nheap);
        heap_down(i);
        heap_up(i);
    }
}

static void wake(struct waiter *w)
{
    index_remove(w);
    queue_push(w);
}

static void wake_token(const char *token, size_t len)
{
    char t[HTTP_TOKEN_HEX + 1];
    struct waiter *w, *next;
    if (len != HTTP_TOKEN_HEX)
        return;
    memcpy(t, token, len);
    t[len] = '\0';
    for (w = lp.buckets[bucket_of(t)]; w != NULL; w = next) {
        next = w->next;
        if (strcmp(w->wait.token, t) == 0)
            wake(w);
    }
}

static void wake_all(void)
{
    while (lp.nheap > 0)
        wake(lp.heap[0]);
}

/* ---- the subscription ---- */

static void subscribe(void)
{
    redisReply *rep;
    if (rds_conn(&lp.sub) == NULL)
        return;
    rep = rds_cmd(&lp.sub, "PSUBSCRIBE %s", lp.pattern);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        rds_drop(&lp.sub, "PSUBSCRIBE failed");
        return;
    }
    freeReplyObject(rep);
    lp.subscribed = 1;
    log_debug("long poll subscribed pattern=%s waiting=%zu", lp.pattern, lp.nheap);
    /* Changes made while we were not listening are unknown: let every waiter look again. */
    wake_all();
}

static void sub_lost(const char *why)
{
    rds_drop(&lp.sub, why);
    lp.subscribed = 0;
}

/* Read what the subscription delivered and wake the sessions it names. */
static void read_messages(void)
{
    redisContext *ctx = lp.sub.c;
    void *r = NULL;
    size_t plen = strlen(lp.chan_prefix), slen = strlen(lp.chan_suffix);

    if (redisBufferRead(ctx) != REDIS_OK) {
        sub_lost(ctx->errstr[0] ? ctx->errstr : "subscription lost");
        return;
    }
    for (;;) {
        redisReply *rep;
        if (redisGetReplyFromReader(ctx, &r) != REDIS_OK) {
            sub_lost("bad reply on the subscription");
            return;
        }
        if (r == NULL)
            return;
        rep = r;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4 &&
            rep->element[2]->type == REDIS_REPLY_STRING &&
            strcmp(rep->element[0]->str ? rep->element[0]->str : "", "pmessage") == 0) {
            const char *ch = rep->element[2]->str;
            size_t len = rep->element[2]->len;
            if (len > plen + slen && memcmp(ch, lp.chan_prefix, plen) == 0 &&
                memcmp(ch + len - slen, lp.chan_suffix, slen) == 0)
                wake_token(ch + plen, len - plen - slen);
        }
        freeReplyObject(rep);
    }
}

/* Index newly parked waiters, then re-read their sessions' versions in one pipelined round trip: a change
 * between the handler's look and now must not be missed. Any doubt (Redis trouble) drops the subscription
 * too: subscribing again (no sooner than the connection's backoff) wakes every waiter, so one that could
 * not be checked is looked at again once Redis answers -- not at once, which would spin while Redis is
 * down, since an answer thread that cannot reach Redis parks the waiter again. */
static void register_batch(struct waiter *list)
{
    struct waiter *batch[256];
    size_t n = 0, i;

    while (list != NULL || n > 0) {
        while (list != NULL && n < MP_ARRAY_LEN(batch)) {
            struct waiter *w = list;
            list = list->next;
            index_add(w);
            batch[n++] = w;
        }
        /* The QR keys are in different slots on a cluster: rds_append groups them per master (rds.h). */
        for (i = 0; i < n; i++)
            if (rds_append(&lp.check, "HGET " KEY_QR " ver", batch[i]->wait.token) != MP_OK)
                break;
        if (i < n) {
            rds_discard(&lp.check);
            if (lp.subscribed)
                sub_lost("the version check failed");
            n = 0;
            continue;
        }
        for (i = 0; i < n; i++) {
            redisReply *rep = rds_reply(&lp.check);
            if (rep == NULL || rep->type == REDIS_REPLY_ERROR) { /* e.g. LOADING after a restart */
                int live = rep != NULL;
                freeReplyObject(rep);
                for (i++; live && i < n; i++) { /* read the rest of the pipeline's replies */
                    redisReply *more = rds_reply(&lp.check);
                    live = more != NULL;
                    freeReplyObject(more);
                }
                if (!live)
                    rds_discard(&lp.check);
                if (lp.subscribed)
                    sub_lost("the version check failed");
                break;
            }
            if (rep->type != REDIS_REPLY_STRING || strtoll(rep->str, NULL, 10) != batch[i]->wait.ver)
                wake(batch[i]);
            freeReplyObject(rep);
        }
        n = 0;
    }
}

static void expire_due(void)
{
    int64_t now = mp_mono_ms();
    while (lp.nheap > 0 && lp.heap[0]->wait.deadline_ms <= now)
        wake(lp.heap[0]);
}

static void *hub_main(void *arg)
{
    struct waiter *list;
    (void)arg;
    for (;;) {
        struct pollfd pfd[2];
        int nfd = 1, timeout = LP_IDLE_WAKE_MS;

        pthread_mutex_lock(&lp.lock);
        list = lp.pending;
        lp.pending = NULL;
        if (lp.stopping) {
            lp.hub_gone = 1;
            pthread_mutex_unlock(&lp.lock);
            break;
        }
        pthread_mutex_unlock(&lp.lock);

        if (!lp.subscribed)
            subscribe();
        register_batch(list);
        expire_due();

        if (lp.nheap > 0) {
            int64_t left = lp.heap[0]->wait.deadline_ms - mp_mono_ms();
            if (left < timeout)
                timeout = left < 0 ? 0 : (int)left;
        }
        pfd[0].fd = lp.efd;
        pfd[0].events = POLLIN;
        if (lp.subscribed) {
            pfd[1].fd = lp.sub.c->fd;
            pfd[1].events = POLLIN;
            nfd = 2;
        }
        if (poll(pfd, (nfds_t)nfd, timeout) < 0 && errno != EINTR) {
            log_error("long-poll hub poll failed errno=%d", errno);
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            if (read(lp.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_error("long-poll hub cannot read its eventfd errno=%d", errno);
        }
        if (nfd == 2 && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)))
            read_messages();
        if (lp.subscribed && rds_stale(&lp.sub)) {
            /* Resubscribe on the new master at once (rds_follow: no backoff); that wakes every waiter. */
            sub_lost("the sentinels moved the master (+switch-master)");
            rds_follow(&lp.sub);
        }
        rds_follow(&lp.check);
        expire_due();
    }
    /* Stopping: everything still waiting goes to the answer threads, which answer code 10. */
    wake_all();
    while (list != NULL) {
        struct waiter *w = list;
        list = list->next;
        queue_push(w);
    }
    rds_close(&lp.sub);
    rds_close(&lp.check);
    return NULL;
}

/* ---- the answer threads ---- */

static void finish(struct worker *wk, struct waiter *w)
{
    struct http_resp resp;
    struct call c;
    int stopping, rc;

    memset(&resp, 0, sizeof(resp));
    memset(&c, 0, sizeof(c));
    c.w = wk;
    c.resp = &resp;
    c.endpoint = w->endpoint;

    pthread_mutex_lock(&lp.lock);
    stopping = lp.stopping;
    pthread_mutex_unlock(&lp.lock);
    worker_refresh(wk);

    if (stopping) {
        reply(&c, API_QR_WAITING, NULL);
    } else if ((rc = qr_poll_answer(&c, &w->wait)) != 0) {
        /* A wake-up that changed nothing for this browser, or one that found Redis unreachable (a restart
         * wakes every waiter, and a Redis still closing can take the new subscription and then drop it):
         * wait on. The hub looks again when its subscription is back; only the deadline answers. */
        if (mp_mono_ms() < w->wait.deadline_ms - LP_EARLY_MS) {
            submit(w);
            return;
        }
        if (rc < 0)
            reply_unavailable(&c, "redis");
        else
            reply(&c, API_QR_WAITING, NULL);
    }
    http_account(w->endpoint, w->frontend, &resp, w->started_us);
    w->front->deliver(w->front_ctx, &resp);
    pthread_mutex_lock(&lp.lock);
    lp.waiting--;
    metric_set(hm.long_polls, NULL, (double)lp.waiting);
    pthread_mutex_unlock(&lp.lock);
    free(w);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    for (;;) {
        struct waiter *w;
        pthread_mutex_lock(&lp.qlock);
        while (lp.qhead == NULL && !lp.workers_done)
            pthread_cond_wait(&lp.qcond, &lp.qlock);
        w = lp.qhead;
        if (w == NULL) {
            pthread_mutex_unlock(&lp.qlock);
            break;
        }
        lp.qhead = w->next;
        if (lp.qhead == NULL)
            lp.qtail = &lp.qhead;
        pthread_mutex_unlock(&lp.qlock);
        finish(wk, w);
    }
    worker_free(wk);
    return NULL;
}

/* ---- start and stop ---- */

int longpoll_start(void)
{
    const char *fmt = CHAN_QR, *hole = strstr(fmt, "%s");
    size_t cap = 64;
    int i;

    lp.max_waiting = (long)app.cfg.http.max_long_polls;
    while (cap < (size_t)lp.max_waiting * 2)
        cap *= 2;
    lp.nbuckets = cap;
    lp.buckets = calloc(lp.nbuckets, sizeof(*lp.buckets));
    lp.heap = calloc((size_t)lp.max_waiting + 1, sizeof(*lp.heap));
    lp.nworkers = (int)app.cfg.http.poll_threads;
    lp.workers = calloc((size_t)lp.nworkers, sizeof(*lp.workers));
    lp.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    lp.qtail = &lp.qhead;
    if (lp.buckets == NULL || lp.heap == NULL || lp.workers == NULL || lp.efd < 0 || hole == NULL) {
        log_error("cannot set up the long poll");
        return MP_ERR;
    }
    /* The channel of a session is CHAN_QR with the token in place of %s. */
    snprintf(lp.chan_prefix, sizeof(lp.chan_prefix), "%.*s", (int)(hole - fmt), fmt);
    snprintf(lp.chan_suffix, sizeof(lp.chan_suffix), "%s", hole + 2);
    snprintf(lp.pattern, sizeof(lp.pattern), "%s*%s", lp.chan_prefix, lp.chan_suffix);
    rds_init(&lp.sub, &app.cfg);
    rds_subscriber(&lp.sub);
    rds_init(&lp.check, &app.cfg);

    for (i = 0; i < lp.nworkers; i++) {
        struct worker *wk = worker_new();
        if (wk == NULL || pthread_create(&lp.workers[i], NULL, worker_main, wk) != 0) {
            worker_free(wk);
            log_error("cannot start the long-poll answer threads");
            lp.nworkers = i;
            return MP_ERR;
        }
    }
    if (pthread_create(&lp.hub, NULL, hub_main, NULL) != 0) {
        log_error("cannot start the long-poll hub");
        return MP_ERR;
    }
    pthread_mutex_lock(&lp.lock);
    lp.started = 1;
    pthread_mutex_unlock(&lp.lock);
    return MP_OK;
}

void longpoll_stop(void)
{
    int i, hub_running;

    pthread_mutex_lock(&lp.lock);
    hub_running = lp.started;
    lp.stopping = 1;
    pthread_mutex_unlock(&lp.lock);
    if (hub_running) {
        kick_hub();
        pthread_join(lp.hub, NULL);
    }
    pthread_mutex_lock(&lp.qlock);
    lp.workers_done = 1;
    pthread_cond_broadcast(&lp.qcond);
    pthread_mutex_unlock(&lp.qlock);
    for (i = 0; i < lp.nworkers; i++)
        pthread_join(lp.workers[i], NULL);
    free(lp.workers);
    free(lp.buckets);
    free(lp.heap);
    lp.workers = NULL;
    lp.buckets = NULL;
    lp.heap = NULL;
    if (lp.efd >= 0)
        close(lp.efd);
    lp.efd = -1;
}
