/* persist_worker.c -- see persist_worker.h. */
#include "persist_worker.h"
#include "db.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "metrics.h"
#include "persist_entry.h"
#include "persist_seq.h"
#include "persist_sid.h"
#include "persist_store.h"
#include "persist_stream.h"
#include "rds.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The table the worker writes messages to (sql/001_init.sql); the group tables are persist_store.c's. */
#define PERSIST_TABLE "messages"

/* Waiting after a failure: 100 ms doubling to 2 s, like rds.c and db.c reconnect. */
#define PERSIST_BACKOFF_MIN_MS 100
#define PERSIST_BACKOFF_MAX_MS 2000

/* Bits of the health state read by /healthz. */
#define HEALTH_REDIS_DOWN    1
#define HEALTH_MYSQL_DOWN    2
#define HEALTH_MYSQL_REFUSES 4

struct persist_metrics {
    struct metric *read, *inserted, *duplicates, *chunks, *states, *dead, *gone, *retries, *trimmed;
    struct metric *batch_seconds, *lag, *length, *pending;
};

/* One entry of the batch in hand. */
struct item {
    const char *id;           /* the stream id, borrowed from the read */
    const redisReply *fields; /* its fields; NULL when it was deleted from the stream while pending */
    int malformed;
    struct persist_row row; /* the parsed entry, and what MySQL said about it */
};

struct persist_worker {
    const struct magpie_config *cfg;
    char consumer[256];
    struct rds rds;
    struct db db;
    int group_ready;
    int read_pending;                     /* the next read is of this consumer's pending entries ... */
    char pending_cursor[PERSIST_SID_MAX]; /* ... after this id */
    char claim_cursor[PERSIST_SID_MAX];
    int64_t housekeeping_at; /* monotonic ms */
    int backoff_ms;
    unsigned refused_err; /* MySQL refuses batches with this error (logged once); 0 = it does not */
    atomic_int health;    /* HEALTH_* bits */
    const char **kv;      /* scratch for persist_entry_parse */
    size_t *kvlen;
    size_t kvcap;
    struct persist_metrics m;
};

/* ---- small helpers ---- */

static void health_set(struct persist_worker *w, int bit, int on)
{
    if (on)
        atomic_fetch_or(&w->health, bit);
    else
        atomic_fetch_and(&w->health, ~bit);
}

int persist_worker_health(char *why, size_t len, void *arg)
{
    struct persist_worker *w = arg;
    int h = atomic_load(&w->health);
    if (h == 0)
        return 0;
    snprintf(why, len, "%s%s%s%s%s", h & HEALTH_REDIS_DOWN ? "redis unavailable" : "",
             (h & HEALTH_REDIS_DOWN) && (h & ~HEALTH_REDIS_DOWN) ? ", " : "",
             h & HEALTH_MYSQL_DOWN ? "mysql unavailable" : "",
             (h & HEALTH_MYSQL_DOWN) && (h & HEALTH_MYSQL_REFUSES) ? ", " : "",
             h & HEALTH_MYSQL_REFUSES ? "mysql refuses inserts" : "");
    return 1;
}

/* Sleep ms unless stopping; a signal cuts it short, so SIGTERM is seen at once. */
static void nap(long long ms, volatile sig_atomic_t *stop)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    if (ms > 0 && !*stop)
        nanosleep(&ts, NULL);
}

/* Sleep the backoff, then double it. */
static void pause_backoff(struct persist_worker *w, volatile sig_atomic_t *stop)
{
    nap(w->backoff_ms, stop);
    w->backoff_ms = w->backoff_ms * 2 > PERSIST_BACKOFF_MAX_MS ? PERSIST_BACKOFF_MAX_MS : w->backoff_ms * 2;
}

/* After a Redis failure: entries may have been delivered to us without our seeing them (a reply lost with
 * the connection), or acks may not have happened, so read our own pending entries from the start. */
static void redis_failed(struct persist_worker *w, int rc)
{
    if (rc == MP_ENOENT) {
        if (w->group_ready)
            log_warn("consumer group gone, creating it again group=%s", MQ_GROUP);
        w->group_ready = 0;
    }
    if (rc == MP_EAGAIN)
        health_set(w, HEALTH_REDIS_DOWN, 1);
    w->read_pending = 1;
    snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
}

static void redis_ok(struct persist_worker *w)
{
    health_set(w, HEALTH_REDIS_DOWN, 0);
}

/* ---- the batch ---- */

/* Parse entry fields into it->row.msg; marks it malformed with the reason when it cannot be stored. */
static int parse_item(struct persist_worker *w, struct item *it)
{
    size_t n = it->fields->elements;
    if (n > w->kvcap) {
        const char **kv = realloc(w->kv, n * sizeof(*kv));
        size_t *kvlen;
        if (kv == NULL)
            return MP_ENOMEM;
        w->kv = kv;
        kvlen = realloc(w->kvlen, n * sizeof(*kvlen));
        if (kvlen == NULL)
            return MP_ENOMEM;
        w->kvlen = kvlen;
        w->kvcap = n;
    }
    for (size_t i = 0; i < n; i++) {
        w->kv[i] = it->fields->element[i]->str;
        w->kvlen[i] = it->fields->element[i]->len;
    }
    if (persist_entry_parse(&it->row.msg, w->kv, w->kvlen, n, it->row.why, sizeof(it->row.why)) != MP_OK)
        it->malformed = 1;
    return MP_OK;
}

/* Store the rows in one transaction, retrying while MySQL is unavailable or refuses the batch. Returns
 * MP_OK when committed, or MP_EAGAIN when stopped first (the entries stay pending). */
static int store_rows(struct persist_worker *w, struct persist_row **rows, size_t n,
                      volatile sig_atomic_t *stop, struct persist_store_result *res);

static void housekeeping(struct persist_worker *w, volatile sig_atomic_t *stop, int claim);

/* Move an entry to the dead-letter stream with reason; returns 1 when done. */
static int dead_letter(struct persist_worker *w, const struct item *it, const char *kind, const char *reason)
{
    int rc = persist_stream_dead_letter(&w->rds, it->id, it->fields, reason);
    if (rc != MP_OK) {
        redis_failed(w, rc);
        return 0;
    }
    metric_add(w->m.dead, strcmp(kind, "malformed") == 0 ? "reason=\"malformed\"" : "reason=\"refused\"", 1);
    /* MySQL's messages may quote values, so only its error number is logged (the dead letter has the text);
     * our own reasons name fields and rules, never values. */
    if (it->row.err != 0)
        log_warn("entry moved to the dead-letter stream id=%s kind=%s mysql_error=%u", it->id, kind,
                 it->row.err);
    else
        log_warn("entry moved to the dead-letter stream id=%s kind=%s reason=\"%s\"", it->id, kind, reason);
    return 1;
}

/* A row MySQL refused: dead-letter it once it has been delivered max_failures times, else leave it pending
 * and have it read again. Returns 1 when it was dead-lettered. */
static int refused(struct persist_worker *w, struct item *it)
{
    char reason[PERSIST_WHY_MAX + 64];
    long long deliveries = 0;
    int rc = persist_stream_deliveries(&w->rds, it->id, &deliveries);
    if (rc != MP_OK) {
        redis_failed(w, rc);
        return 0;
    }
    if (deliveries >= w->cfg->persist.max_failures) {
        snprintf(reason, sizeof(reason), "refused %lld times: %s", deliveries, it->row.why);
        return dead_letter(w, it, "refused", reason);
    }
    log_debug("row refused, will retry id=%s deliveries=%lld", it->id, deliveries);
    w->read_pending = 1;
    snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
    return 0;
}

/* Store, ack and dead-letter one read's entries. Returns how many entries were finished (acked). */
static size_t process(struct persist_worker *w, const struct persist_read *rd, const char *source,
                      volatile sig_atomic_t *stop)
{
    int64_t t0 = mp_mono_ms();
    struct item *items = calloc(rd->n, sizeof(*items));
    struct persist_row **rows = calloc(rd->n, sizeof(*rows));
    const char **acks = calloc(rd->n, sizeof(*acks));
    struct persist_store_result res = {0};
    size_t nrows = 0, nacks = 0, finished = 0, gone = 0;
    char labels[32];
    int rc;

    if (items == NULL || rows == NULL || acks == NULL) {
        log_error("out of memory for a batch entries=%zu", rd->n);
        goto out;
    }
    snprintf(labels, sizeof(labels), "source=\"%s\"", source);
    metric_add(w->m.read, labels, (double)rd->n);
    for (size_t i = 0; i < rd->n; i++) {
        struct item *it = &items[i];
        const redisReply *fields = rd->entries[i]->element[1];
        it->id = rd->entries[i]->element[0]->str;
        if (fields->type != REDIS_REPLY_ARRAY) {
            acks[nacks++] = it->id; /* deleted while pending: nothing left to store */
            gone++;
            continue;
        }
        it->fields = fields;
        if (parse_item(w, it) != MP_OK) {
            log_error("out of memory parsing an entry id=%s", it->id);
            goto out;
        }
        if (!it->malformed)
            rows[nrows++] = &it->row;
    }
    if (gone > 0) {
        log_warn("pending entries were deleted from the stream before being stored count=%zu", gone);
        metric_add(w->m.gone, NULL, (double)gone);
    }
    if (nrows > 0 && store_rows(w, rows, nrows, stop, &res) != MP_OK) {
        log_info("stopping with a batch not stored; its entries stay pending entries=%zu", rd->n);
        goto out;
    }
    metric_add(w->m.inserted, NULL, (double)res.inserted);
    metric_add(w->m.duplicates, NULL, (double)res.duplicates);
    metric_add(w->m.chunks, NULL, (double)res.chunks);
    metric_add(w->m.states, "result=\"applied\"", (double)res.states);
    metric_add(w->m.states, "result=\"stale\"", (double)res.stale);
    for (size_t i = 0; i < rd->n; i++)
        if (items[i].fields != NULL && !items[i].malformed && !items[i].row.rejected)
            acks[nacks++] = items[i].id;
    rc = persist_stream_ack(&w->rds, acks, nacks);
    if (rc == MP_OK) {
        redis_ok(w);
        finished += nacks;
    } else {
        redis_failed(w, rc); /* stored but not acked: they come back and are skipped as duplicates */
    }
    for (size_t i = 0; i < rd->n; i++) {
        struct item *it = &items[i];
        char reason[PERSIST_WHY_MAX + 16];
        if (it->fields == NULL)
            continue;
        if (it->malformed) {
            snprintf(reason, sizeof(reason), "malformed: %s", it->row.why);
            finished += (size_t)dead_letter(w, it, "malformed", reason);
        } else if (it->row.rejected) {
            finished += (size_t)refused(w, it);
        }
    }
    metric_observe(w->m.batch_seconds, NULL, (double)(mp_mono_ms() - t0) / 1000.0);
    log_debug("batch done source=%s entries=%zu inserted=%zu duplicates=%zu chunks=%zu group_states=%zu "
              "stale_group_states=%zu rejected=%zu ms=%lld",
              source, rd->n, res.inserted, res.duplicates, res.chunks, res.states, res.stale, res.rejected,
              (long long)(mp_mono_ms() - t0));
out:
    free(items);
    free(rows);
    free(acks);
    return finished;
}

static int store_rows(struct persist_worker *w, struct persist_row **rows, size_t n,
                      volatile sig_atomic_t *stop, struct persist_store_result *res)
{
    int backoff_ms = PERSIST_BACKOFF_MIN_MS;
    for (;;) {
        int rc = persist_store(&w->db, PERSIST_TABLE, rows, n, res);
        if (rc == MP_OK) {
            health_set(w, HEALTH_MYSQL_DOWN | HEALTH_MYSQL_REFUSES, 0);
            if (w->refused_err != 0) {
                log_info("mysql accepts inserts again");
                w->refused_err = 0;
            }
            return MP_OK;
        }
        if (rc == MP_EAGAIN) {
            health_set(w, HEALTH_MYSQL_DOWN, 1); /* db.c logged the outage */
            metric_add(w->m.retries, "cause=\"unavailable\"", 1);
        } else if (rc == MP_ERR && persist_store_is_conflict(res->err)) {
            metric_add(w->m.retries, "cause=\"conflict\"", 1);
            log_debug("batch clashed with another transaction, retrying reason=\"%s\"", res->why);
        } else {
            health_set(w, HEALTH_MYSQL_REFUSES, 1);
            metric_add(w->m.retries, "cause=\"refused\"", 1);
            if (w->refused_err != res->err || res->err == 0) {
                log_error("mysql refuses the batch; holding it and retrying rows=%zu reason=\"%s\"", n,
                          res->why);
                w->refused_err = res->err ? res->err : 1;
            }
        }
        if (*stop)
            return MP_EAGAIN;
        /* The lag gauges and trimming go on while we wait; no claiming (we are not storing). */
        if (mp_mono_ms() >= w->housekeeping_at)
            housekeeping(w, stop, 0);
        nap(backoff_ms, stop);
        backoff_ms = backoff_ms * 2 > PERSIST_BACKOFF_MAX_MS ? PERSIST_BACKOFF_MAX_MS : backoff_ms * 2;
        if (*stop)
            return MP_EAGAIN;
    }
}

/* ---- housekeeping ---- */

static void check_mysql(struct persist_worker *w)
{
    MYSQL *m = db_conn(&w->db);
    if (m != NULL && mysql_ping(m) != 0 && db_check_error(&w->db) == MP_EAGAIN)
        m = NULL;
    health_set(w, HEALTH_MYSQL_DOWN, m == NULL);
}

/* Take over entries idle too long under other consumers and store them; after a full pass, forget the
 * consumers that are gone. */
static void claim(struct persist_worker *w, volatile sig_atomic_t *stop)
{
    const struct magpie_config *cfg = w->cfg;
    while (!*stop) {
        struct persist_read rd;
        int rc = persist_stream_claim(&w->rds, w->consumer, cfg->persist.claim_idle_ms, w->claim_cursor,
                                      cfg->persist.batch, &rd);
        if (rc != MP_OK) {
            redis_failed(w, rc);
            return;
        }
        snprintf(w->claim_cursor, sizeof(w->claim_cursor), "%s", rd.cursor);
        if (rd.n > 0) {
            log_info("claimed entries idle too long under other consumers count=%zu", rd.n);
            process(w, &rd, "claimed", stop);
        }
        if (rd.deleted > 0) {
            log_warn("pending entries were deleted from the stream before being stored count=%zu",
                     rd.deleted);
            metric_add(w->m.gone, NULL, (double)rd.deleted);
        }
        persist_read_free(&rd);
        if (strcmp(w->claim_cursor, "0-0") == 0) {
            int removed;
            if ((rc = persist_stream_forget_consumers(&w->rds, w->consumer, cfg->persist.claim_idle_ms,
                                                      &removed)) != MP_OK)
                redis_failed(w, rc);
            return;
        }
    }
}

static void housekeeping(struct persist_worker *w, volatile sig_atomic_t *stop, int do_claim)
{
    struct persist_stream_state st;
    long long trimmed = 0;
    int rc;

    w->housekeeping_at = mp_mono_ms() + w->cfg->persist.housekeeping_ms;
    if (do_claim) {
        long long restored;
        check_mysql(w);
        if (persist_seq_restore(&w->rds, &w->db, &restored) != MP_OK)
            log_debug("seq restore: not yet (Redis or MySQL unavailable); next housekeeping tries again");
        claim(w, stop);
    }
    rc = persist_stream_state(&w->rds, &st);
    if (rc == MP_OK)
        rc = persist_stream_trim(&w->rds, &st, w->cfg->persist.stream_maxlen, &trimmed);
    if (rc != MP_OK) {
        redis_failed(w, rc);
        return;
    }
    redis_ok(w);
    metric_add(w->m.trimmed, NULL, (double)trimmed);
    metric_set(w->m.length, NULL, (double)(st.length - trimmed));
    metric_set(w->m.pending, NULL, (double)st.pending);
    metric_set(w->m.lag, NULL, (double)st.lag_ms / 1000.0);
}

/* ---- the loop ---- */

/* One read: this consumer's pending entries while there are any to re-read, else new ones. */
static void read_and_process(struct persist_worker *w, volatile sig_atomic_t *stop)
{
    const struct magpie_config *cfg = w->cfg;
    struct persist_read rd;
    int pending = w->read_pending;
    int rc = persist_stream_read(&w->rds, w->consumer, pending ? w->pending_cursor : ">", cfg->persist.batch,
                                 cfg->persist.block_ms, &rd);
    if (rc != MP_OK) {
        redis_failed(w, rc);
        pause_backoff(w, stop);
        return;
    }
    redis_ok(w);
    if (rd.n > 0 && cfg->redis.min_replicas_acked > 0 &&
        (persist_stream_fence(&w->rds, w->consumer, &rd) != MP_OK || rds_wait(&w->rds) != MP_OK)) {
        /* With redis.min_replicas_acked: entries the replicas do not hold yet are not stored. A failover
         * could take them back, and the retry of their message would then be stored under another mid and
         * seq than the row written from them (the sender got no A for them yet, shared/sentinel.h). The
         * fence is a write after them, so the WAIT covers them; they are read again from our pending
         * list. */
        persist_read_free(&rd);
        w->read_pending = 1;
        snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
        pause_backoff(w, stop);
        return;
    }
    if (pending) {
        if (rd.n == 0)
            w->read_pending = 0; /* all re-read; from now on new entries */
        else
            snprintf(w->pending_cursor, sizeof(w->pending_cursor), "%s",
                     rd.entries[rd.n - 1]->element[0]->str);
    }
    if (rd.n > 0) {
        /* A batch that finished nothing (every row refused, Redis failing) is not retried at full speed. */
        if (process(w, &rd, pending ? "pending" : "new", stop) == 0)
            pause_backoff(w, stop);
        else {
            w->backoff_ms = PERSIST_BACKOFF_MIN_MS;
            if (!pending && rd.n < (size_t)cfg->persist.batch)
                nap(cfg->persist.batch_wait_ms, stop); /* a short batch: let the next one gather */
        }
    }
    persist_read_free(&rd);
}

int persist_worker_run(struct persist_worker *w, volatile sig_atomic_t *stop)
{
    char streams[128];
    persist_stream_describe(streams, sizeof(streams));
    log_info("started consumer=%s stream=\"%s\" group=%s batch=%lld", w->consumer, streams, MQ_GROUP,
             w->cfg->persist.batch);
    while (!*stop) {
        rds_follow(&w->rds); /* between batches: a master the sentinels announced is used from now on */
        if (!w->group_ready) {
            int created = 0, rc = persist_stream_create_group(&w->rds, &created);
            if (rc != MP_OK) {
                redis_failed(w, rc);
                pause_backoff(w, stop);
                continue;
            }
            if (created)
                log_info("created the consumer group stream=\"%s\" group=%s", streams, MQ_GROUP);
            w->group_ready = 1;
            redis_ok(w);
        }
        if (mp_mono_ms() >= w->housekeeping_at) {
            housekeeping(w, stop, 1);
            continue;
        }
        read_and_process(w, stop);
    }
    log_info("stopped consumer=%s", w->consumer);
    return MP_OK;
}

/* ---- setup ---- */

static int metrics_init(struct persist_metrics *m)
{
    m->read = metrics_counter("magpie_persist_entries_read_total",
                              "Stream entries given to this worker, by source (new, pending = re-read own, "
                              "claimed = taken over from another consumer).");
    m->inserted =
        metrics_counter("magpie_persist_rows_inserted_total", "Rows inserted into the messages table.");
    m->duplicates = metrics_counter("magpie_persist_duplicates_total",
                                    "Entries skipped because their (from, cid) was already stored.");
    m->chunks = metrics_counter("magpie_persist_timeline_chunks_total",
                                "timeline_chunks rows written: where a batch's group entries sit in each "
                                "member's timeline, one row per member per batch.");
    m->states = metrics_counter("magpie_persist_group_states_total",
                                "Group state entries (type G), by result (applied to chat_groups and "
                                "group_members, stale = MySQL had that version or a newer one).");
    m->dead =
        metrics_counter("magpie_persist_dead_letters_total",
                        "Entries moved to the dead-letter stream, by reason (malformed, refused by MySQL).");
    m->gone = metrics_counter("magpie_persist_entries_gone_total",
                              "Pending entries found deleted from the stream before they were stored.");
    m->retries =
        metrics_counter("magpie_persist_batch_retries_total",
                        "Batch attempts that failed and were retried, by cause (unavailable, refused, "
                        "conflict = deadlock with another worker).");
    m->trimmed = metrics_counter("magpie_persist_trimmed_total", "Entries trimmed from the stream.");
    m->batch_seconds = metrics_histogram("magpie_persist_batch_seconds",
                                         "Time from reading a batch to acking it (store included).",
                                         metrics_latency_bounds, metrics_latency_nbounds);
    m->lag = metrics_gauge("magpie_persist_lag_seconds",
                           "Age of the oldest stream entry not yet stored (pending or not yet read).");
    m->length = metrics_gauge("magpie_persist_stream_length", "Entries in the stream.");
    m->pending =
        metrics_gauge("magpie_persist_pending_entries", "Entries read by a worker but not yet acked.");
    return m->read && m->inserted && m->duplicates && m->chunks && m->states && m->dead && m->gone &&
                   m->retries && m->trimmed && m->batch_seconds && m->lag && m->length && m->pending
               ? MP_OK
               : MP_ENOMEM;
}

struct persist_worker *persist_worker_new(const struct magpie_config *cfg, const char *consumer)
{
    struct persist_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    if (metrics_init(&w->m) != MP_OK) {
        free(w);
        return NULL;
    }
    w->cfg = cfg;
    snprintf(w->consumer, sizeof(w->consumer), "%s", consumer);
    rds_init(&w->rds, cfg);
    /* XREADGROUP BLOCK holds the reply back for up to block_ms: the socket timeout must outlast it. */
    w->rds.command_timeout_ms += (int)cfg->persist.block_ms;
    db_init(&w->db, cfg);
    persist_store_prepare(&w->db);
    w->read_pending = 1;
    snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    w->backoff_ms = PERSIST_BACKOFF_MIN_MS;
    atomic_init(&w->health, HEALTH_REDIS_DOWN | HEALTH_MYSQL_DOWN); /* until first contact */
    return w;
}

void persist_worker_free(struct persist_worker *w)
{
    if (w == NULL)
        return;
    rds_close(&w->rds);
    db_close(&w->db);
    free(w->kv);
    free(w->kvlen);
    free(w);
}
