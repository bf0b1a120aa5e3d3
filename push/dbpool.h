/* dbpool.h -- MySQL work off the loop thread (H history reads, T order writes).
 *
 * libmariadb blocks, so each job runs on libuv's thread pool (uv_queue_work, push.db_threads threads) with
 * that thread's own MySQL connection (db.h: created on its first job, reconnecting by itself), and its
 * result is handled back on the loop thread. A job must not touch loop-thread state (connections, maps):
 * it gets its input in arg and leaves its output there.
 */
#ifndef PUSH_DBPOOL_H
#define PUSH_DBPOOL_H

#include "db.h"

/* Runs on a pool thread. db is that thread's connection (db_conn may still return NULL: MySQL down). */
typedef void (*dbpool_work_fn)(struct db *db, void *arg);
/* Runs on the loop thread when the work is done. */
typedef void (*dbpool_done_fn)(void *arg);

/* Size the pool (sets UV_THREADPOOL_SIZE: call before anything uses libuv's pool) and remember cfg. */
int dbpool_init(const struct magpie_config *cfg);

/* For read-only work, which may run twice: run query(db, arg), and when it failed because db's connection
 * was stale -- MySQL restarted since the connection was made, so the first statement on it fails and drops
 * it (db.h) -- run it once more on a fresh connection, DBPOOL_STALE_RETRY_US later (more than db.c's first
 * reconnect backoff). A MySQL that is really down costs one more connect attempt, no more. Returns what the
 * last run returned (MP_OK, MP_EAGAIN: MySQL unavailable, MP_ERR). Call from a job's work function. */
#define DBPOOL_STALE_RETRY_US 150000
int dbpool_read(struct db *db, int (*query)(struct db *db, void *arg), void *arg);

/* Queue a job. Returns MP_OK (done will be called) or MP_ERR. */
int dbpool_submit(dbpool_work_fn work, dbpool_done_fn done, void *arg);

/* Jobs queued and not yet done. */
int dbpool_busy(void);

/* Close every pool thread's connection; call when no job is running (after the loop ended). */
void dbpool_close(void);

#endif
