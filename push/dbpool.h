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

/* Queue a job. Returns MP_OK (done will be called) or MP_ERR. */
int dbpool_submit(dbpool_work_fn work, dbpool_done_fn done, void *arg);

/* Jobs queued and not yet done. */
int dbpool_busy(void);

/* Close every pool thread's connection; call when no job is running (after the loop ended). */
void dbpool_close(void);

#endif
