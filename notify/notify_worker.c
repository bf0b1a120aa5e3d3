/* notify_worker.c -- see notify_worker.h (the design). */
#include "notify_worker.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "metrics.h"
#include "notify_event.h"
#include "notify_post.h"
#include "persist_sid.h"
#include "persist_stream.h"
#include "rds.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_RETRY_MS 200 /* after a failed Redis call, before the next: rds.c also backs off */
#define BUSY_POLL_MS   10  /* with POSTs in flight, how long curl waits before the stream is read again */
/* A failing webhook is logged when the reason changes, and otherwise once per this long (with how many
 * failures were not logged), so a receiver down for hours is a few lines, not one per POST. */
#define FAIL_LOG_MS 10000

struct notify_metrics {
    struct metric *queued, *sent, *retried, *dead, *posts, *latency, *held;
};

/* One event in hand: an entry of KEY_NOTIFY read (or claimed) and not yet acked. */
struct event {
    char id[PERSIST_SID_MAX];
    struct persist_sid sid;
    int64_t queued_ms; /* when it was added: its id's ms part */
    char *json;        /* the event object of the webhook's array */
    size_t json_len;
    char **fields; /* the entry's fields and values as read, for the dead-letter stream */
    size_t *flens;
    size_t nfields;
    struct event *next;
};

/* A recipient with events in hand. */
struct rcpt {
    int64_t to;
    struct event *head, *tail;
    size_t n;
    int inflight;             /* its first `inflight` events are in a batch in flight */
    int failures;             /* failed tries in a row */
    int64_t next_try_ms;      /* monotonic */
    struct rcpt *hnext;       /* hash chain */
    struct rcpt *prev, *next; /* the round-robin list of all recipients */
};

/* A batch in flight: the recipients it took events from, in body order. */
struct batch {
    struct notify_post *post;
    struct rcpt **rcpts;
    int *counts;
    size_t nrcpt, events;
    struct batch *prev, *next; /* the worker's batches in flight */
};

struct notify_worker {
    const struct magpie_config *cfg;
    char consumer[256];
    struct rds rds;
    CURLM *multi;
    int group_ready;
    int recovering; /* reading this consumer's own pending entries, after pending_cursor */
    char pending_cursor[PERSIST_SID_MAX];
    char claim_cursor[PERSIST_SID_MAX];
    int64_t claim_at;    /* monotonic ms of the next claim */
    int64_t redis_at;    /* no Redis call before this (after a failure) */
    struct rcpt **table; /* hash of recipients by uid */
    size_t nbuckets;
    struct rcpt *first, *last;
    size_t held; /* events in hand */
    int inflight;
    struct batch *batches;            /* in flight */
    char (*unacked)[PERSIST_SID_MAX]; /* delivered but not yet acked (Redis failed) */
    size_t nunacked, capunacked;
    atomic_int redis_down;
    char fail_reason[512]; /* the last failure logged; "" while the webhook takes batches */
    int64_t fail_logged_ms;
    long long fail_unlogged; /* failed POSTs since the last line */
    struct notify_metrics m;
};

/* ---- recipients and events ---- */

static struct rcpt *rcpt_find(struct notify_worker *w, int64_t to, int create)
{
    size_t b = (size_t)((uint64_t)to * 0x9E3779B97F4A7C15ULL >> 32) & (w->nbuckets - 1);
    struct rcpt *r;
    for (r = w->table[b]; r != NULL; r = r->hnext)
        if (r->to == to)
            return r;
    if (!create || (r = calloc(1, sizeof(*r))) == NULL)
        return NULL;
    r->to = to;
    r->hnext = w->table[b];
    w->table[b] = r;
    r->prev = w->last;
    if (w->last != NULL)
        w->last->next = r;
    else
        w->first = r;
    w->last = r;
    return r;
}

static void list_unlink(struct notify_worker *w, struct rcpt *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        w->first = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        w->last = r->prev;
    r->prev = r->next = NULL;
}

/* Move r to the end of the round-robin list (it just had its turn). */
static void list_to_back(struct notify_worker *w, struct rcpt *r)
{
    list_unlink(w, r);
    r->prev = w->last;
    if (w->last != NULL)
        w->last->next = r;
    else
        w->first = r;
    w->last = r;
}

/* Free r when it holds nothing. */
static void rcpt_release(struct notify_worker *w, struct rcpt *r)
{
    size_t b = (size_t)((uint64_t)r->to * 0x9E3779B97F4A7C15ULL >> 32) & (w->nbuckets - 1);
    struct rcpt **pp;
    if (r->head != NULL || r->inflight)
        return;
    for (pp = &w->table[b]; *pp != r; pp = &(*pp)->hnext)
        ;
    *pp = r->hnext;
    list_unlink(w, r);
    free(r);
}

static void event_free(struct event *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->nfields; i++)
        free(e->fields[i]);
    free(e->fields);
    free(e->flens);
    free(e->json);
    free(e);
}

/* Remove and return r's first event. */
static struct event *rcpt_pop(struct notify_worker *w, struct rcpt *r)
{
    struct event *e = r->head;
    r->head = e->next;
    if (r->head == NULL)
        r->tail = NULL;
    r->n--;
    w->held--;
    return e;
}

/* ---- the stream ---- */

/* A Redis call failed with rc: wait a little, and read our own pending entries again from the start
 * (entries may have been given to us in a reply lost with the connection). */
static void redis_failed(struct notify_worker *w, int rc)
{
    if (rc == MP_ENOENT) {
        if (w->group_ready)
            log_warn("consumer group gone, creating it again group=%s", NOTIFY_GROUP);
        w->group_ready = 0;
    }
    if (rc == MP_EAGAIN)
        atomic_store(&w->redis_down, 1);
    w->recovering = 1;
    snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
    w->redis_at = mp_mono_ms() + REDIS_RETRY_MS;
}

static void redis_ok(struct notify_worker *w)
{
    atomic_store(&w->redis_down, 0);
}

static int xdel(struct notify_worker *w, const char *const *ids, size_t n)
{
    return persist_stream_del(&w->rds, ids, n); /* each shard's stream its ids (persist_stream.h) */
}

/* XACK then XDEL ids (an entry acked but not deleted is only a leftover that MAXLEN trims). Returns MP_OK
 * or the failure (the caller keeps the ids and tries again). */
static int ack_delete(struct notify_worker *w, const char *const *ids, size_t n)
{
    int rc = persist_stream_ack(&w->rds, ids, n);
    if (rc == MP_OK)
        xdel(w, ids, n);
    return rc;
}

/* Keep ids whose XACK failed, to try again before the next read. */
static void keep_unacked(struct notify_worker *w, const char *const *ids, size_t n)
{
    if (w->nunacked + n > w->capunacked) {
        size_t cap = (w->nunacked + n) * 2;
        void *p = realloc(w->unacked, cap * sizeof(*w->unacked));
        if (p == NULL) {
            log_error("out of memory keeping unacked events; they will be sent again count=%zu", n);
            return;
        }
        w->unacked = p;
        w->capunacked = cap;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(w->unacked[w->nunacked++], PERSIST_SID_MAX, "%s", ids[i]);
}

static void flush_unacked(struct notify_worker *w)
{
    const char **ids;
    int rc;
    if (w->nunacked == 0 || (ids = malloc(w->nunacked * sizeof(*ids))) == NULL)
        return;
    for (size_t i = 0; i < w->nunacked; i++)
        ids[i] = w->unacked[i];
    rc = ack_delete(w, ids, w->nunacked);
    free(ids);
    if (rc == MP_OK) {
        log_info("acked events delivered while redis was unavailable count=%zu", w->nunacked);
        w->nunacked = 0;
    } else {
        redis_failed(w, rc);
    }
}

/* Move e to the dead-letter stream with reason, and drop it from the stream. */
static void dead_letter(struct notify_worker *w, struct event *e, const char *reason)
{
    redisReply *el = calloc(e->nfields ? e->nfields : 1, sizeof(*el)), **els, arr;
    const char *id = e->id;
    int rc;

    els = calloc(e->nfields ? e->nfields : 1, sizeof(*els));
    if (el == NULL || els == NULL) {
        free(el);
        free(els);
        log_error("out of memory dead-lettering an event id=%s", e->id);
        return;
    }
    /* persist_stream_dead_letter copies the original fields from a reply; these are that reply's shape. */
    for (size_t i = 0; i < e->nfields; i++) {
        el[i].type = REDIS_REPLY_STRING;
        el[i].str = e->fields[i];
        el[i].len = e->flens[i];
        els[i] = &el[i];
    }
    memset(&arr, 0, sizeof(arr));
    arr.type = REDIS_REPLY_ARRAY;
    arr.elements = e->nfields;
    arr.element = els;
    rc = persist_stream_dead_letter(&w->rds, e->id, &arr, reason);
    free(el);
    free(els);
    if (rc == MP_OK) {
        xdel(w, &id, 1);
        metric_add(w->m.dead, NULL, 1);
        log_warn("event dead-lettered id=%s reason=\"%s\"", e->id, reason);
    } else {
        /* It stays pending: the next start or claim brings it back, and it is tried (and judged) again. */
        log_error("cannot dead-letter an event; it stays pending id=%s", e->id);
        redis_failed(w, rc);
    }
}

/* The webhook's JSON object for an entry; NULL with *why set when the entry is not a valid event. */
static char *event_json(const char *id, const redisReply *f, int64_t *to, size_t *len, const char **why)
{
    const char *v[11] = {0};
    static const char *const names[] = {NT_F_VERSION, NT_F_TYPE,    NT_F_KIND,  NT_F_TO,
                                        NT_F_FROM,    NT_F_CONV,    NT_F_MID,   NT_F_SEQ,
                                        NT_F_TS,      NT_F_PREVIEW, NT_F_UNREAD};
    json_t *o, *conv;
    char *out;

    for (size_t i = 0; i + 1 < f->elements; i += 2)
        for (size_t k = 0; k < MP_ARRAY_LEN(names); k++)
            if (strcmp(f->element[i]->str, names[k]) == 0)
                v[k] = f->element[i + 1]->str;
    if (v[0] == NULL || strcmp(v[0], NOTIFY_FORMAT_VERSION) != 0) {
        *why = "malformed: unknown format version";
        return NULL;
    }
    *to = v[3] ? strtoll(v[3], NULL, 10) : 0;
    if (*to <= 0 || v[1] == NULL || v[5] == NULL || (v[5][0] != 'u' && v[5][0] != 'g') || v[6] == NULL) {
        *why = "malformed: missing to, type, conv or mid";
        return NULL;
    }
    conv = json_pack("{s:I}", v[5][0] == 'u' ? "with" : "group", (json_int_t)strtoll(v[5] + 1, NULL, 10));
    o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:s, s:I, s:s}", "event_id", id, "type", v[1], "kind",
                  v[2] ? v[2] : "", "to", (json_int_t)*to, "from",
                  (json_int_t)(v[4] ? strtoll(v[4], NULL, 10) : 0), "conversation", conv, "mid", v[6], "ts",
                  (json_int_t)(v[8] ? strtoll(v[8], NULL, 10) : 0), "preview", v[9] ? v[9] : "");
    if (o == NULL) {
        *why = "malformed: not valid UTF-8";
        return NULL;
    }
    if (v[7] != NULL)
        json_object_set_new(o, "seq", json_integer(strtoll(v[7], NULL, 10)));
    if (v[10] != NULL)
        json_object_set_new(o, "unread", json_integer(strtoll(v[10], NULL, 10)));
    out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    *len = out ? strlen(out) : 0;
    if (out == NULL)
        *why = "out of memory";
    return out;
}

/* Take one entry read or claimed into hand (nil fields: deleted while pending, only acked). */
static void take_entry(struct notify_worker *w, const redisReply *entry)
{
    const redisReply *idr = entry->element[0], *f = entry->element[1];
    struct event *e, **pp;
    struct rcpt *r;
    const char *why = NULL;
    int64_t to = 0;

    if (f->type != REDIS_REPLY_ARRAY) {
        const char *id = idr->str;
        if (ack_delete(w, &id, 1) != MP_OK)
            keep_unacked(w, &id, 1);
        return;
    }
    if ((e = calloc(1, sizeof(*e))) == NULL)
        goto oom;
    snprintf(e->id, sizeof(e->id), "%s", idr->str);
    /* With several shards the id is "<id>@<shard>" (persist_stream.h): the order is the id's, and two
     * shards' streams may give the same id to two events: the same event is the same whole id. */
    if (persist_sid_parse(&e->sid, idr->str, strcspn(idr->str, "@")) != MP_OK)
        goto oom; /* Redis' own ids always parse */
    e->queued_ms = (int64_t)e->sid.ms;
    e->nfields = f->elements;
    e->fields = calloc(f->elements ? f->elements : 1, sizeof(*e->fields));
    e->flens = calloc(f->elements ? f->elements : 1, sizeof(*e->flens));
    if (e->fields == NULL || e->flens == NULL)
        goto oom;
    for (size_t i = 0; i < f->elements; i++) {
        if ((e->fields[i] = malloc(f->element[i]->len + 1)) == NULL)
            goto oom;
        memcpy(e->fields[i], f->element[i]->str, f->element[i]->len + 1);
        e->flens[i] = f->element[i]->len;
    }
    e->json = event_json(e->id, f, &to, &e->json_len, &why);
    if (e->json == NULL) {
        dead_letter(w, e, why);
        event_free(e);
        return;
    }
    if ((r = rcpt_find(w, to, 1)) == NULL)
        goto oom;
    /* In stream order, but behind the events in flight (those are the first r->inflight); an entry already
     * in hand (claimed back from ourselves) is not held twice. */
    pp = &r->head;
    for (int k = 0; k < r->inflight && *pp != NULL; k++) {
        if (strcmp((*pp)->id, e->id) == 0) {
            event_free(e);
            return;
        }
        pp = &(*pp)->next;
    }
    for (; *pp != NULL; pp = &(*pp)->next) {
        int c = persist_sid_cmp(&(*pp)->sid, &e->sid);
        if (c == 0 && strcmp((*pp)->id, e->id) == 0) {
            event_free(e);
            return;
        }
        if (c > 0)
            break;
    }
    e->next = *pp;
    *pp = e;
    if (e->next == NULL)
        r->tail = e;
    r->n++;
    w->held++;
    metric_add(w->m.queued, NULL, 1);
    return;
oom:
    log_error("out of memory taking an event; it stays pending id=%s", idr->str);
    event_free(e);
}

static void run_curl(struct notify_worker *w, int wait_ms);

/* Read: our own pending entries while recovering, else new ones, waiting up to block_ms. With
 * notify.max_pending events in hand nothing is read: the wait is spent on libcurl instead. */
static void read_stream(struct notify_worker *w, long long block_ms)
{
    struct persist_read rd;
    long long room = w->cfg->notify.max_pending - (long long)w->held;
    int rc;

    if (room <= 0) {
        run_curl(w, (int)block_ms);
        return;
    }
    if (room > 1000)
        room = 1000;
    rc = persist_stream_read(&w->rds, w->consumer, w->recovering ? w->pending_cursor : ">", room, block_ms,
                             &rd);
    if (rc != MP_OK) {
        redis_failed(w, rc);
        return;
    }
    redis_ok(w);
    for (size_t i = 0; i < rd.n; i++)
        take_entry(w, rd.entries[i]);
    if (w->recovering) {
        if (rd.n == 0) {
            w->recovering = 0;
        } else {
            const redisReply *last = rd.entries[rd.n - 1]->element[0];
            snprintf(w->pending_cursor, sizeof(w->pending_cursor), "%s", last->str);
            log_info("resumed pending events count=%zu", rd.n);
        }
    }
    persist_read_free(&rd);
}

/* Take over entries idle under any consumer, as many as there is room for (notify.max_pending). */
static void claim(struct notify_worker *w)
{
    struct persist_read rd;
    long long room = w->cfg->notify.max_pending - (long long)w->held;
    int rc;

    if (room <= 0)
        return;
    rc = persist_stream_claim(&w->rds, w->consumer, w->cfg->notify.claim_idle_ms, w->claim_cursor,
                              room < 1000 ? room : 1000, &rd);
    if (rc != MP_OK) {
        redis_failed(w, rc);
        return;
    }
    for (size_t i = 0; i < rd.n; i++)
        take_entry(w, rd.entries[i]);
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "%s", rd.cursor);
    persist_read_free(&rd);
}

/* ---- batches ---- */

static void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    notify_post_free(b->post);
    free(b->rcpts);
    free(b->counts);
    free(b);
}

/* Start a POST of the next batch, if any recipient is ready. Returns 1 when one was started. *due gets
 * the earliest monotonic ms a waiting recipient becomes ready (unchanged when none waits). */
static int start_batch(struct notify_worker *w, int64_t now, int64_t *due)
{
    long long max = w->cfg->notify.max_batch;
    struct batch *b = calloc(1, sizeof(*b));
    struct rcpt *r, *next;
    size_t body_len = 2, events = 0, at;
    char *body;

    if (b == NULL || (b->rcpts = calloc((size_t)max, sizeof(*b->rcpts))) == NULL ||
        (b->counts = calloc((size_t)max, sizeof(*b->counts))) == NULL) {
        batch_free(b);
        return 0;
    }
    for (r = w->first; r != NULL && (long long)events < max; r = next) {
        next = r->next;
        if (r->inflight || r->head == NULL)
            continue;
        if (r->next_try_ms > now) {
            if (r->next_try_ms < *due)
                *due = r->next_try_ms;
            continue;
        }
        int n = 0;
        for (struct event *e = r->head; e != NULL && (long long)events < max; e = e->next, n++, events++)
            body_len += e->json_len + 1;
        r->inflight = n;
        b->rcpts[b->nrcpt] = r;
        b->counts[b->nrcpt++] = n;
        list_to_back(w, r);
    }
    if (events == 0) {
        batch_free(b);
        return 0;
    }
    b->events = events;
    if ((body = malloc(body_len + 1)) == NULL)
        goto failed;
    body[0] = '[';
    at = 1;
    for (size_t i = 0; i < b->nrcpt; i++) {
        struct event *e = b->rcpts[i]->head;
        for (int k = 0; k < b->counts[i]; k++, e = e->next) {
            if (at > 1)
                body[at++] = ',';
            memcpy(body + at, e->json, e->json_len);
            at += e->json_len;
        }
    }
    body[at++] = ']';
    body[at] = '\0';
    if ((b->post = notify_post_new(w->cfg, body, at, b)) == NULL ||
        curl_multi_add_handle(w->multi, b->post->easy) != CURLM_OK)
        goto failed;
    w->inflight++;
    b->next = w->batches;
    if (w->batches != NULL)
        w->batches->prev = b;
    w->batches = b;
    return 1;
failed:
    log_error("cannot start a webhook POST (out of memory or libcurl refused) events=%zu", events);
    for (size_t i = 0; i < b->nrcpt; i++) {
        b->rcpts[i]->inflight = 0;
        b->rcpts[i]->next_try_ms = now + w->cfg->notify.retry_base_ms;
    }
    batch_free(b);
    return 0;
}

/* How long recipient r waits after its failures-th failure in a row: exponential with jitter. */
static int64_t backoff_ms(const struct notify_worker *w, int failures)
{
    long long d = w->cfg->notify.retry_base_ms;
    for (int i = 1; i < failures && d < w->cfg->notify.retry_max_ms; i++)
        d *= 2;
    if (d > w->cfg->notify.retry_max_ms)
        d = w->cfg->notify.retry_max_ms;
    return d / 2 + (int64_t)(random() % (d - d / 2 + 1));
}

/* Are two failure reasons of one kind ("http 500", "timeout", "Couldn't connect to server")? The kind is
 * what comes before the first ':'; the rest (timings, the answer's first bytes) may differ. */
static int same_kind(const char *a, const char *b)
{
    size_t n = strcspn(a, ":");
    return strncmp(a, b, n) == 0 && (b[n] == ':' || b[n] == '\0') && a[0] != '\0';
}

static void batch_done(struct notify_worker *w, struct batch *b, CURLcode rc)
{
    char why[512];
    int64_t now = mp_mono_ms(), wall = mp_now_ms();
    int ok = notify_post_result(b->post, rc, why, sizeof(why));
    double secs = (double)(now - b->post->started_ms) / 1000.0;

    w->inflight--;
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        w->batches = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    metric_observe(w->m.latency, NULL, secs);
    metric_add(w->m.posts, ok ? "result=\"ok\"" : "result=\"failed\"", 1);
    if (ok) {
        const char **ids = malloc(b->events * sizeof(*ids));
        size_t n = 0;
        struct event **done = malloc(b->events * sizeof(*done));
        if (b->post->cut)
            log_warn("webhook answer over notify.max_response_bytes; the batch counts as taken events=%zu",
                     b->events);
        for (size_t i = 0; i < b->nrcpt; i++) {
            struct rcpt *r = b->rcpts[i];
            for (int k = 0; k < b->counts[i]; k++) {
                struct event *e = rcpt_pop(w, r);
                if (ids != NULL && done != NULL) {
                    ids[n] = e->id;
                    done[n++] = e;
                } else {
                    event_free(e);
                }
            }
            r->inflight = 0;
            r->failures = 0;
            r->next_try_ms = 0;
            rcpt_release(w, r);
        }
        metric_add(w->m.sent, NULL, (double)b->events);
        if (n > 0 && ack_delete(w, ids, n) != MP_OK)
            keep_unacked(w, ids, n);
        for (size_t i = 0; i < n; i++)
            event_free(done[i]);
        free(ids);
        free(done);
        if (w->fail_reason[0] != '\0') {
            log_info("webhook takes batches again failed_posts_not_logged=%lld", w->fail_unlogged);
            w->fail_reason[0] = '\0';
            w->fail_unlogged = 0;
        }
        log_debug("webhook took a batch events=%zu ms=%.0f", b->events, secs * 1000);
    } else {
        int failures = 0;
        size_t expired = 0;
        metric_add(w->m.retried, NULL, (double)b->events);
        for (size_t i = 0; i < b->nrcpt; i++) {
            struct rcpt *r = b->rcpts[i];
            r->inflight = 0;
            r->failures++;
            if (r->failures > failures)
                failures = r->failures;
            r->next_try_ms = now + backoff_ms(w, r->failures);
            while (r->head != NULL && wall - r->head->queued_ms > w->cfg->notify.max_age_s * 1000) {
                struct event *e = rcpt_pop(w, r);
                char reason[600];
                snprintf(reason, sizeof(reason), "not taken within notify.max_age_s: %s", why);
                dead_letter(w, e, reason);
                event_free(e);
                expired++;
            }
            rcpt_release(w, r);
        }
        if (!same_kind(why, w->fail_reason) || now - w->fail_logged_ms >= FAIL_LOG_MS) {
            log_warn("webhook POST failed; retrying with backoff reason=\"%s\" events=%zu failures=%d "
                     "dead_lettered=%zu failed_posts_not_logged=%lld",
                     why, b->events, failures, expired, w->fail_unlogged);
            snprintf(w->fail_reason, sizeof(w->fail_reason), "%s", why);
            w->fail_logged_ms = now;
            w->fail_unlogged = 0;
        } else {
            w->fail_unlogged++;
        }
    }
    batch_free(b);
}

/* Let libcurl work for up to wait_ms, then finish the transfers that are done. */
static void run_curl(struct notify_worker *w, int wait_ms)
{
    int running, left;
    CURLMsg *msg;

    curl_multi_perform(w->multi, &running);
    if (wait_ms > 0) {
        curl_multi_poll(w->multi, NULL, 0, wait_ms, NULL);
        curl_multi_perform(w->multi, &running);
    }
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        struct notify_post *p = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
        curl_multi_remove_handle(w->multi, msg->easy_handle);
        batch_done(w, p->owner, msg->data.result);
    }
}

/* ---- the loop ---- */

int notify_worker_health(char *why, size_t len, void *arg)
{
    struct notify_worker *w = arg;
    if (!atomic_load(&w->redis_down))
        return 0;
    snprintf(why, len, "redis unavailable");
    return 1;
}

struct notify_worker *notify_worker_new(const struct magpie_config *cfg, const char *consumer)
{
    struct notify_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->cfg = cfg;
    snprintf(w->consumer, sizeof(w->consumer), "%s", consumer);
    rds_init(&w->rds, cfg);
    for (w->nbuckets = 1024; w->nbuckets < (size_t)cfg->notify.max_pending; w->nbuckets *= 2)
        ;
    if ((w->table = calloc(w->nbuckets, sizeof(*w->table))) == NULL) {
        free(w);
        return NULL;
    }
    w->recovering = 1;
    snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    w->m.queued = metrics_counter("magpie_notify_events_queued_total",
                                  "Events taken from the notification streams (read, resumed or claimed).");
    w->m.sent = metrics_counter("magpie_notify_events_sent_total", "Events the webhook took (2xx).");
    w->m.retried = metrics_counter("magpie_notify_events_retried_total",
                                   "Events in a POST that failed, to be tried again.");
    w->m.dead = metrics_counter("magpie_notify_events_dead_total",
                                "Events moved to the dead-letter streams (too old, or not a valid event).");
    w->m.posts = metrics_counter("magpie_notify_posts_total", "Webhook POSTs by result.");
    w->m.latency =
        metrics_histogram("magpie_notify_webhook_seconds", "Time of one webhook POST, start to end.",
                          metrics_latency_bounds, metrics_latency_nbounds);
    w->m.held =
        metrics_gauge("magpie_notify_events_held", "Events in hand: in flight or waiting for a retry.");
    return w;
}

int notify_worker_run(struct notify_worker *w, volatile sig_atomic_t *stop)
{
    int64_t stop_at = 0, housekeeping = w->cfg->notify.claim_idle_ms / 3;
    int created;

    persist_stream_bind(KEY_NOTIFY_NAME, NOTIFY_GROUP, KEY_NOTIFY_DEAD_NAME, NOTIFY_DEAD_MAXLEN);
    if ((w->multi = curl_multi_init()) == NULL) {
        log_error("cannot initialise libcurl's multi interface");
        return MP_ERR;
    }
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)w->cfg->notify.max_inflight);
    log_info("notify worker started consumer=%s max_batch=%lld max_inflight=%lld", w->consumer,
             w->cfg->notify.max_batch, w->cfg->notify.max_inflight);
    w->claim_at = mp_mono_ms() + housekeeping;
    for (;;) {
        int64_t now = mp_mono_ms(), due = INT64_MAX;
        long long block;

        if (*stop && stop_at == 0) {
            stop_at = now + NOTIFY_STOP_MS;
            log_info("stopping batches_in_flight=%d", w->inflight);
        }
        if (stop_at != 0 && (w->inflight == 0 || now >= stop_at))
            break;
        if (stop_at == 0 && now >= w->redis_at) {
            rds_follow(&w->rds); /* between rounds: a master the sentinels announced is used from now on */
            if (!w->group_ready) {
                int rc = persist_stream_create_group(&w->rds, &created);
                if (rc != MP_OK) {
                    redis_failed(w, rc);
                    run_curl(w, REDIS_RETRY_MS);
                    continue;
                }
                if (created)
                    log_info("consumer group created group=%s", NOTIFY_GROUP);
                w->group_ready = 1;
            }
            flush_unacked(w);
            if (now >= w->claim_at && !w->recovering) {
                claim(w);
                w->claim_at = now + housekeeping;
            }
        }
        /* The last call that starts nothing has set due: when the next retry is. */
        while (stop_at == 0 && w->inflight < w->cfg->notify.max_inflight && start_batch(w, now, &due))
            ;
        metric_set(w->m.held, NULL, (double)w->held);
        /* Wait for Redis (new events) when nothing is in flight, for libcurl otherwise. */
        if (stop_at == 0 && now >= w->redis_at && w->group_ready) {
            block = w->inflight > 0 || w->recovering ? 1 : w->cfg->notify.block_ms;
            if (due != INT64_MAX && due - now < block)
                block = due - now < 1 ? 1 : due - now;
            read_stream(w, block);
            run_curl(w, 0);
        } else {
            run_curl(w, w->inflight > 0 ? BUSY_POLL_MS : REDIS_RETRY_MS);
        }
        if (w->inflight > 0)
            run_curl(w, BUSY_POLL_MS);
    }
    if (w->inflight > 0)
        log_warn("stopped with batches in flight; their events stay pending and are sent again on the next "
                 "start batches=%d",
                 w->inflight);
    return MP_OK;
}

void notify_worker_free(struct notify_worker *w)
{
    struct rcpt *r, *next;
    if (w == NULL)
        return;
    /* Batches still in flight (stop deadline): their events are left pending in Redis. */
    while (w->batches != NULL) {
        struct batch *b = w->batches;
        w->batches = b->next;
        curl_multi_remove_handle(w->multi, b->post->easy);
        batch_free(b);
    }
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    for (r = w->first; r != NULL; r = next) {
        next = r->next;
        while (r->head != NULL)
            event_free(rcpt_pop(w, r));
        free(r);
    }
    free(w->table);
    free(w->unacked);
    rds_close(&w->rds);
    free(w);
}
