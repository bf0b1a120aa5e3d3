/* metrics.c -- see metrics.h. */
#include "metrics.h"
#include "config.h"
#include "log.h"
#include "magpie.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_series {
    struct metric_series *next;
    char *labels;
    double value;     /* counter, gauge; histogram: sum */
    double count;     /* histogram */
    double *buckets;  /* histogram: per-bucket (not cumulative) counts, nbounds + 1 */
};

struct metric {
    struct metric *next;
    char *name;
    char *help;
    enum metric_type type;
    double *bounds;
    size_t nbounds;
    pthread_mutex_t lock;
    struct metric_series *series;
};

const double metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
const size_t metrics_latency_nbounds = MP_ARRAY_LEN(metrics_latency_bounds);

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *registry, **registry_tail = &registry;

static struct metric *family_new(const char *name, const char *help, enum metric_type type)
{
    struct metric *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->name = strdup(name)) == NULL || (m->help = strdup(help)) == NULL) {
        if (m != NULL)
            free(m->name);
        free(m);
        return NULL;
    }
    m->type = type;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_lock(&registry_lock);
    *registry_tail = m;
    registry_tail = &m->next;
    pthread_mutex_unlock(&registry_lock);
    return m;
}

struct metric *metrics_counter(const char *name, const char *help)
{
    return family_new(name, help, METRIC_COUNTER);
}

struct metric *metrics_gauge(const char *name, const char *help)
{
    return family_new(name, help, METRIC_GAUGE);
}

struct metric *metrics_histogram(const char *name, const char *help, const double *bounds, size_t nbounds)
{
    double *copy = malloc(nbounds * sizeof(double));
    struct metric *m;
    if (copy == NULL)
        return NULL;
    memcpy(copy, bounds, nbounds * sizeof(double));
    m = family_new(name, help, METRIC_HISTOGRAM);
    if (m == NULL) {
        free(copy);
        return NULL;
    }
    m->bounds = copy;
    m->nbounds = nbounds;
    return m;
}

/* The series for labels, created on first use. Called with m->lock held; NULL when out of memory. */
static struct metric_series *series_get(struct metric *m, const char *labels)
{
    struct metric_series *s;
    if (labels == NULL)
        labels = "";
    for (s = m->series; s != NULL; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->labels = strdup(labels)) == NULL ||
        (m->type == METRIC_HISTOGRAM && (s->buckets = calloc(m->nbounds + 1, sizeof(double))) == NULL)) {
        if (s != NULL)
            free(s->labels);
        free(s);
        return NULL;
    }
    s->next = m->series;
    m->series = s;
    return s;
}

void metric_add(struct metric *m, const char *labels, double v)
{
    struct metric_series *s;
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if ((s = series_get(m, labels)) != NULL)
        s->value += v;
    pthread_mutex_unlock(&m->lock);
}

void metric_set(struct metric *m, const char *labels, double v)
{
    struct metric_series *s;
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if ((s = series_get(m, labels)) != NULL)
        s->value = v;
    pthread_mutex_unlock(&m->lock);
}

/* One observation into s; m->lock held. */
static void observe_locked(struct metric *m, struct metric_series *s, double v)
{
    size_t i;
    for (i = 0; i < m->nbounds && v > m->bounds[i]; i++)
        ;
    s->buckets[i] += 1;
    s->count += 1;
    s->value += v;
}

void metric_observe(struct metric *m, const char *labels, double v)
{
    struct metric_series *s;
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if ((s = series_get(m, labels)) != NULL)
        observe_locked(m, s, v);
    pthread_mutex_unlock(&m->lock);
}

struct metric_series *metric_series(struct metric *m, const char *labels)
{
    struct metric_series *s;
    if (m == NULL)
        return NULL;
    pthread_mutex_lock(&m->lock);
    s = series_get(m, labels);
    pthread_mutex_unlock(&m->lock);
    return s;
}

void metric_series_add(struct metric *m, struct metric_series *s, double v)
{
    if (m == NULL || s == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    s->value += v;
    pthread_mutex_unlock(&m->lock);
}

void metric_series_observe(struct metric *m, struct metric_series *s, double v)
{
    if (m == NULL || s == NULL || m->type != METRIC_HISTOGRAM)
        return;
    pthread_mutex_lock(&m->lock);
    observe_locked(m, s, v);
    pthread_mutex_unlock(&m->lock);
}

void metric_observe_batch(struct metric *m, const char *labels, const double *counts, double sum)
{
    struct metric_series *s;
    if (m == NULL || m->type != METRIC_HISTOGRAM)
        return;
    pthread_mutex_lock(&m->lock);
    if ((s = series_get(m, labels)) != NULL) {
        for (size_t i = 0; i <= m->nbounds; i++) {
            s->buckets[i] += counts[i];
            s->count += counts[i];
        }
        s->value += sum;
    }
    pthread_mutex_unlock(&m->lock);
}

struct buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* `name{labels,extra}` with the braces only when there is something inside. */
static void series_name(struct buf *b, const char *name, const char *suffix, const char *labels,
                        const char *extra)
{
    int has_l = labels && *labels, has_e = extra && *extra;
    buf_printf(b, "%s%s", name, suffix);
    if (has_l || has_e)
        buf_printf(b, "{%s%s%s}", has_l ? labels : "", has_l && has_e ? "," : "", has_e ? extra : "");
}

static void render_family(struct buf *b, struct metric *m)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    struct metric_series *s;
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, types[m->type]);
    pthread_mutex_lock(&m->lock);
    for (s = m->series; s != NULL; s = s->next) {
        if (m->type != METRIC_HISTOGRAM) {
            series_name(b, m->name, "", s->labels, NULL);
            buf_printf(b, " %.17g\n", s->value);
            continue;
        }
        double cum = 0;
        char le[64];
        for (size_t i = 0; i <= m->nbounds; i++) {
            cum += s->buckets[i];
            if (i < m->nbounds)
                snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[i]);
            else
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            series_name(b, m->name, "_bucket", s->labels, le);
            buf_printf(b, " %.17g\n", cum);
        }
        series_name(b, m->name, "_sum", s->labels, NULL);
        buf_printf(b, " %.17g\n", s->value);
        series_name(b, m->name, "_count", s->labels, NULL);
        buf_printf(b, " %.17g\n", s->count);
    }
    pthread_mutex_unlock(&m->lock);
}

char *metrics_render(size_t *len)
{
    struct buf b = {malloc(4096), 0, 4096, 0};
    struct metric *m;
    if (b.p == NULL)
        return NULL;
    b.p[0] = '\0';
    pthread_mutex_lock(&registry_lock);
    for (m = registry; m != NULL; m = m->next)
        render_family(&b, m);
    pthread_mutex_unlock(&registry_lock);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}

/* ---- the loopback listener ---- */

static struct MHD_Daemon *listener;
static metrics_health_fn health_fn;
static void *health_arg;

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type, char *body,
                               size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret;
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    char why[256] = "", *body;
    size_t len;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        body = strdup("method not allowed\n");
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", body, body ? strlen(body) : 0);
    }
    if (strcmp(url, "/metrics") == 0) {
        body = metrics_render(&len);
        if (body == NULL)
            return MHD_NO;
        return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", body, len);
    }
    if (strcmp(url, "/healthz") == 0) {
        int bad = health_fn != NULL && health_fn(why, sizeof(why), health_arg) != 0;
        json_t *obj = json_pack("{s:b, s:s}", "ok", !bad, "reason", bad ? why : "");
        body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        if (body == NULL)
            return MHD_NO;
        return respond(conn, bad ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, "application/json", body,
                       strlen(body));
    }
    body = strdup("not found\n");
    return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain", body, body ? strlen(body) : 0);
}

int metrics_listen(const char *addr, metrics_health_fn health, void *arg)
{
    char host[256];
    int port;
    struct addrinfo hints = {0}, *ai = NULL;
    sigset_t block, old;

    if (config_split_addr(addr, host, sizeof(host), &port) != 0) {
        log_error("bad metrics address addr=%s", addr);
        return MP_ERR;
    }
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : NULL, NULL, &hints, &ai) != 0 || ai == NULL) {
        log_error("cannot resolve metrics address addr=%s", addr);
        return MP_ERR;
    }
    ((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((uint16_t)port);
    health_fn = health;
    health_arg = arg;
    /* The listener's thread inherits the signal mask it is started with: with every asynchronous signal
     * blocked there, SIGTERM, SIGHUP and the like always reach the daemon's main thread and interrupt its
     * waits. Faults (SIGSEGV, ...) stay unblocked: they go to the thread that faults (log.c reports them). */
    sigfillset(&block);
    sigdelset(&block, SIGSEGV);
    sigdelset(&block, SIGBUS);
    sigdelset(&block, SIGFPE);
    sigdelset(&block, SIGILL);
    sigdelset(&block, SIGABRT);
    sigdelset(&block, SIGTRAP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    listener = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
                                on_request, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    freeaddrinfo(ai);
    if (listener == NULL) {
        log_error("cannot listen for metrics addr=%s", addr);
        return MP_ERR;
    }
    log_info("metrics listening addr=%s", addr);
    return MP_OK;
}

void metrics_stop(void)
{
    if (listener != NULL)
        MHD_stop_daemon(listener);
    listener = NULL;
}
