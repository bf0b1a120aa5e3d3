/* dbpool.c -- see dbpool.h. */
#include "dbpool.h"
#include "config.h"
#include "magpie.h"
#include "push.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Each pool thread's connection, also kept in a list so they can be closed at exit. */
struct dbconn {
    struct dbconn *next;
    struct db db;
};

static _Thread_local struct dbconn *thread_db;
static pthread_mutex_t dbs_lock = PTHREAD_MUTEX_INITIALIZER; /* taken once per thread, not per job */
static struct dbconn *dbs;
static const struct magpie_config *pool_cfg;
static int busy;

struct job {
    uv_work_t req;
    dbpool_work_fn work;
    dbpool_done_fn done;
    void *arg;
};

int dbpool_init(const struct magpie_config *cfg)
{
    char n[16];
    pool_cfg = cfg;
    snprintf(n, sizeof(n), "%lld", cfg->push.db_threads);
    if (setenv("UV_THREADPOOL_SIZE", n, 1) != 0)
        return MP_ERR;
    return db_library_init();
}

static void on_work(uv_work_t *req)
{
    struct job *j = req->data;
    if (thread_db == NULL) {
        struct dbconn *d = calloc(1, sizeof(*d));
        if (d == NULL) {
            j->work(NULL, j->arg);
            return;
        }
        db_init(&d->db, pool_cfg);
        pthread_mutex_lock(&dbs_lock);
        d->next = dbs;
        dbs = d;
        pthread_mutex_unlock(&dbs_lock);
        thread_db = d;
    }
    j->work(&thread_db->db, j->arg);
}

static void on_done(uv_work_t *req, int status)
{
    struct job *j = req->data;
    busy--;
    j->done(j->arg);
    free(j);
}

int dbpool_read(struct db *db, int (*query)(struct db *db, void *arg), void *arg)
{
    int had_conn = db != NULL && db->m != NULL;
    int rc = query(db, arg);
    if (rc == MP_EAGAIN && had_conn && db->m == NULL) {
        usleep(DBPOOL_STALE_RETRY_US);
        rc = query(db, arg);
    }
    return rc;
}

int dbpool_submit(dbpool_work_fn work, dbpool_done_fn done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (j == NULL)
        return MP_ERR;
    j->req.data = j;
    j->work = work;
    j->done = done;
    j->arg = arg;
    if (uv_queue_work(push.loop, &j->req, on_work, on_done) != 0) {
        free(j);
        return MP_ERR;
    }
    busy++;
    return MP_OK;
}

int dbpool_busy(void)
{
    return busy;
}

void dbpool_close(void)
{
    struct dbconn *d, *next;
    pthread_mutex_lock(&dbs_lock);
    for (d = dbs; d != NULL; d = next) {
        next = d->next;
        db_close(&d->db);
        free(d);
    }
    dbs = NULL;
    pthread_mutex_unlock(&dbs_lock);
}
