/* metrics.h -- Prometheus text metrics and the small loopback HTTP listener (libmicrohttpd) that serves
 * them with a health check, for the daemons without an HTTP front-end of their own (push, persist).
 *
 * A metric is a family (name, help, type); its series are told apart by a label string the caller
 * formats, e.g. `endpoint="/login",code="0"` (NULL or "" = no labels). Label values must not come
 * unfiltered from a client: use route names, codes and reasons, never paths or user input.
 * Every function is thread-safe. Families are created at start-up and live until exit.
 */
#ifndef MAGPIE_METRICS_H
#define MAGPIE_METRICS_H

#include <stddef.h>

struct metric;

/* Create a family. Returns NULL only when out of memory. */
struct metric *metrics_counter(const char *name, const char *help);
struct metric *metrics_gauge(const char *name, const char *help);
/* bounds: ascending upper bounds of the buckets (the +Inf bucket is implicit); copied. */
struct metric *metrics_histogram(const char *name, const char *help, const double *bounds, size_t nbounds);

/* Latency buckets in seconds, 0.5 ms .. 10 s, for metrics_histogram. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

void metric_add(struct metric *m, const char *labels, double v); /* counter or gauge */
void metric_set(struct metric *m, const char *labels, double v); /* gauge */
void metric_observe(struct metric *m, const char *labels, double v); /* histogram */

/* A series' handle, for a hot path that would otherwise format the same labels on every call: it stays
 * valid until exit (series are never freed). metric_series returns NULL only when out of memory; the
 * metric_series_* calls do what metric_add / metric_observe do, without formatting or looking up labels. */
struct metric_series;
struct metric_series *metric_series(struct metric *m, const char *labels);
void metric_series_add(struct metric *m, struct metric_series *s, double v);
void metric_series_observe(struct metric *m, struct metric_series *s, double v);

/* Add observations counted elsewhere (a thread that counts without locking and flushes now and then):
 * counts[i] of them fell in bucket i (nbounds + 1 entries, the last for +Inf; not cumulative), and their
 * values sum to sum. */
void metric_observe_batch(struct metric *m, const char *labels, const double *counts, double sum);

/* The exposition text of every family. Returns a malloc'd string (caller frees) and its length, or NULL. */
char *metrics_render(size_t *len);

/* Health check: return 0 when healthy, else nonzero with a one-line reason in why. */
typedef int (*metrics_health_fn)(char *why, size_t len, void *arg);

/* Serve GET /metrics and GET /healthz on addr ("host:port") from a libmicrohttpd thread, which takes no
 * asynchronous signal (they stay the caller's). health may be NULL (always healthy). Returns MP_OK, or MP_ERR
 * (address in use, bad address) after logging why. */
int metrics_listen(const char *addr, metrics_health_fn health, void *arg);

void metrics_stop(void);

#endif
