/* notify_worker.h -- magpie-notify (SPEC §6, "Offline notifications"): the events of the stream KEY_NOTIFY
 * to the operator's webhook. This comment is the design.
 *
 * Where the decision is made. Where the message is stored: the send script (push/chat_send.c) already
 * reads the recipient's presence (KEY_PRESENCE) in the same Redis script that gives the message its seqs
 * and counts the recipient's received messages in the conversation. When no node holding a connection of
 * the recipient is live (KEY_NODES heartbeat within push.node_ttl_s: the rule of shared/presence.h), the
 * script XADDs one event to KEY_NOTIFY with the recipient's seq and unread count (received - received at
 * the read mark, chat_read.c). So an event exists exactly when its message does (one atomic script: a
 * refused or retried message queues none), and the decision sees the presence of the moment the message
 * was ordered among the others. POST /msg {to} (http/msg.c) does the same for its system packet in one
 * small script. Nothing is queued while notify.webhook_url is empty. Groups: the group send script adds
 * one event per offline member the same way (notify_event.h), and nothing here changes.
 *
 * Why a daemon of its own, not a second group inside magpie-persist: the two fail differently. A
 * receiver that is slow, down or hostile must never slow the path into MySQL (which is what makes Y and H
 * whole), and magpie-persist's loop blocks on MySQL, which must not hold back notifications. They share
 * the stream code (push/persist_stream.c, bound to KEY_NOTIFY with persist_stream_bind) and the daemon
 * skeleton (cli, log, metrics listener), not a process. It is also one more thing an operator who wants
 * no notifications simply does not run.
 *
 * The loop (one thread; libcurl's multi interface for the POSTs, a blocking Redis connection, rds.h):
 *   - On start it re-reads its own pending entries (XREADGROUP from 0, as magpie-persist does): what it
 *     held when it was killed is sent again with the same event_id (the entry id). Every claim_idle_ms / 3
 *     it takes over entries idle longer than notify.claim_idle_ms under any consumer (XAUTOCLAIM): those of
 *     a magpie-notify that is gone, and its own that wait for a retry (which only renews them; an entry
 *     already held is not held twice).
 *   - Events are kept per recipient, in stream order, at most notify.max_pending in all (no more are read
 *     meanwhile: memory is bounded whatever the receiver does). A batch takes, from recipients that are
 *     neither in flight nor waiting for a retry, their events from the oldest, up to notify.max_batch;
 *     up to notify.max_inflight batches are in flight. A recipient is in at most one batch, so one of its
 *     events never overtakes an earlier one: order per recipient holds across retries.
 *   - 2xx: the batch's entries are XACKed and XDELed (so the stream holds only what is still to do). An
 *     XACK that fails (Redis down) is kept and tried again; if the process dies first, the events are sent
 *     again after the restart: at-least-once, duplicates only with the same event_id.
 *   - Anything else (non-2xx, timeout, connection refused, bad URL, redirect): every recipient of the batch
 *     waits retry_base_ms * 2^(failures-1) (up to retry_max_ms), drawn between half and all of it (jitter),
 *     and one log line says why. After a failure, a recipient's events older than notify.max_age_s go to
 *     KEY_NOTIFY_DEAD with that reason (XADD + XACK in one script, persist_stream_dead_letter), then XDEL.
 *     An entry that is not a valid event (another format version, no recipient) goes there at once.
 *   - SIGTERM: no new batch; the batches in flight get until NOTIFY_STOP_MS to finish (then they are left
 *     pending, sent again on the next start); exit.
 * Run one magpie-notify per Redis: two would share the stream's entries and could reorder a recipient's.
 */
#ifndef MAGPIE_NOTIFY_WORKER_H
#define MAGPIE_NOTIFY_WORKER_H

#include "config.h"

#include <signal.h>
#include <stddef.h>

/* How long the batches in flight may take after SIGTERM (SPEC §9: exit within 5 s; a Redis read may take
 * up to notify.block_ms <= 2 s before the stop is seen). */
#define NOTIFY_STOP_MS 2500

struct notify_worker;

/* A worker with consumer name `consumer` and cfg (borrowed: it must outlive the worker). Registers the
 * metrics. Returns NULL when out of memory. Caller frees with notify_worker_free. */
struct notify_worker *notify_worker_new(const struct magpie_config *cfg, const char *consumer);

/* Run until *stop becomes nonzero (then as SIGTERM above). Returns MP_OK, or MP_ERR when libcurl cannot
 * be set up. */
int notify_worker_run(struct notify_worker *w, volatile sig_atomic_t *stop);

/* For metrics_listen: 0 when Redis answers, else nonzero with the reason. Thread-safe. */
int notify_worker_health(char *why, size_t len, void *arg);

void notify_worker_free(struct notify_worker *w);

#endif
