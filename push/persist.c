/* magpie-persist -- moves accepted chat messages from the Redis stream into MySQL (SPEC §6); the loop is
 * described in persist_worker.h.
 *
 *   magpie-persist [-c FILE] [-t] [-h] [-V]
 *
 * Signals: SIGTERM (or SIGINT) finishes the batch in hand -- commit and XACK -- and exits. If that cannot
 * be done by PERSIST_STOP_DEADLINE_MS (MySQL hung), the process exits anyway: the batch's entries stay
 * pending in Redis, and the next start (or another worker) stores them. SIGHUP reopens the log file.
 */
#include "cli.h"
#include "db.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "metrics.h"
#include "persist_worker.h"
#include "rds.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* SPEC §9: exit within 5 s of SIGTERM; half a second is left for the process to end. */
#define PERSIST_STOP_DEADLINE_MS 4500

static volatile sig_atomic_t stop;
static timer_t deadline; /* SIGALRM PERSIST_STOP_DEADLINE_MS after the first SIGTERM */

static void on_stop(int sig)
{
    struct itimerspec when = {
        {0, 0}, {PERSIST_STOP_DEADLINE_MS / 1000, (PERSIST_STOP_DEADLINE_MS % 1000) * 1000000L}};
    if (!stop)
        timer_settime(deadline, 0, &when, NULL); /* async-signal-safe, unlike setitimer */
    stop = 1;
}

static void on_deadline(int sig)
{
    static const char msg[] = "magpie-persist: the batch in hand could not be finished before the shutdown "
                              "deadline; exiting, its entries stay pending in Redis\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)n;
    _exit(1);
}

static void on_hup(int sig)
{
    log_request_reopen();
}

/* Returns 0, or -1 when the deadline timer cannot be created. */
static int install_signals(void)
{
    struct sigaction sa;
    struct sigevent ev;
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGALRM;
    if (timer_create(CLOCK_MONOTONIC, &ev, &deadline) != 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop; /* no SA_RESTART: a sleep in the backoff ends at once */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_deadline;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_hup;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN; /* a write to a closed socket is an error to handle, not a reason to die */
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

/* Settings that are fine one by one but not together. Returns 0, or -1 after printing why. */
static int check_config(const struct magpie_config *cfg)
{
    if (cfg->persist.claim_idle_ms < 2 * cfg->persist.block_ms) {
        fprintf(
            stderr,
            "magpie-persist: persist.claim_idle_ms (%lld) must be at least twice persist.block_ms (%lld)\n",
            cfg->persist.claim_idle_ms, cfg->persist.block_ms);
        log_error(
            "persist.claim_idle_ms must be at least twice persist.block_ms claim_idle_ms=%lld block_ms=%lld",
            cfg->persist.claim_idle_ms, cfg->persist.block_ms);
        return -1;
    }
    return 0;
}

/* keys_upgrade on a connection of its own. */
static int upgrade_keys(const struct magpie_config *cfg)
{
    struct rds r;
    long long renamed;
    int rc;
    rds_init(&r, cfg);
    rc = keys_upgrade(&r, &renamed);
    rds_close(&r);
    return rc;
}

int main(int argc, char **argv)
{
    struct magpie_config cfg;
    struct persist_worker *w = NULL;
    char consumer[256];
    int rc = cli_start(argc, argv, "persist", NULL, NULL, NULL, &cfg), status = 1;

    if (rc >= 0)
        return rc;
    if (check_config(&cfg) != 0)
        goto done;
    if (cfg.persist.consumer[0] != '\0') {
        snprintf(consumer, sizeof(consumer), "%s", cfg.persist.consumer);
    } else if (gethostname(consumer, sizeof(consumer) - 1) != 0 || consumer[0] == '\0') {
        snprintf(consumer, sizeof(consumer), "persist");
    }
    consumer[sizeof(consumer) - 1] = '\0';
    if (db_library_init() != MP_OK) {
        log_error("cannot initialise the MySQL client library");
        goto done;
    }
    if (install_signals() != 0) {
        log_error("cannot create the shutdown deadline timer");
        goto done;
    }
    w = persist_worker_new(&cfg, consumer);
    if (w == NULL) {
        log_error("out of memory");
        goto done;
    }
    rc = cfg.persist.metrics_listen[0] ? metrics_listen(cfg.persist.metrics_listen, persist_worker_health, w)
                                       : MP_OK;
    if (rc != MP_OK)
        goto done;
    /* The shard count against Redis' (keys.h) before any stream is read (cli_start could not ask if Redis
     * was down), then the one-time renaming of a Redis written before the shard tags. */
    while (!stop && (rc = keys_startup_check(&cfg)) != MP_OK) {
        if (rc == MP_ERR)
            goto done;
        sleep(1);
    }
    while (!stop && (rc = upgrade_keys(&cfg)) != MP_OK) {
        if (rc == MP_ERR)
            goto done; /* a cluster holding old names: logged, the operator must act */
        sleep(1);
    }
    persist_worker_run(w, &stop);
    status = 0;
done:
    metrics_stop();
    persist_worker_free(w);
    mysql_library_end();
    config_free(&cfg);
    return status;
}
