/* persist_worker.h -- magpie-persist's loop (SPEC §6): read the chat stream with the consumer group, store
 * each batch in MySQL in one transaction, then XACK it.
 *
 *   - On start (and after any Redis failure) it first re-reads its own pending entries (ID 0): entries it
 *     was given but may not have stored.
 *   - Every persist.housekeeping_ms it claims entries pending longer than persist.claim_idle_ms under
 *     other consumers (XAUTOCLAIM), forgets consumers that are gone, trims the stream and updates the lag
 *     gauges.
 *   - MySQL unavailable or refusing the batch: the batch stays in hand and is retried with backoff (nothing
 *     new is read meanwhile); one log line when that starts and one when it ends.
 *   - A malformed entry goes to the dead-letter stream at once (reading it again cannot make it valid). A
 *     row MySQL refuses stays pending and is retried until it has been delivered persist.max_failures
 *     times (the PEL's delivery counter), then goes to the dead-letter stream. The rest of the batch is
 *     stored and acked either way.
 *   - The unique key (from_uid, client_id) makes every re-delivery a no-op, so at-least-once delivery
 *     from the stream is exactly-once in MySQL; several workers can share the group.
 */
#ifndef MAGPIE_PERSIST_WORKER_H
#define MAGPIE_PERSIST_WORKER_H

#include "config.h"

#include <signal.h>
#include <stddef.h>

struct persist_worker;

/* A worker for consumer name `consumer` with the settings of cfg (borrowed: it must outlive the worker).
 * Registers the metrics. Returns NULL when out of memory. Caller frees with persist_worker_free. */
struct persist_worker *persist_worker_new(const struct magpie_config *cfg, const char *consumer);

/* Run until *stop becomes nonzero; the batch in hand when it does is finished (stored and acked) if MySQL
 * and Redis answer, and otherwise left pending for the next start or another worker. Returns MP_OK. */
int persist_worker_run(struct persist_worker *w, volatile sig_atomic_t *stop);

/* For metrics_listen: 0 when Redis and MySQL answer, else nonzero with the reason. Thread-safe. */
int persist_worker_health(char *why, size_t len, void *arg);

void persist_worker_free(struct persist_worker *w);

#endif
