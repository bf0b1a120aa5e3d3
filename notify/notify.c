/* magpie-notify -- offline notifications to the operator's webhook (SPEC §6); the design is in
 * notify_worker.h.
 *
 *   magpie-notify [-c FILE] [-t] [-h] [-V]
 *
 * Signals: SIGTERM (or SIGINT) stops taking events and gives the POSTs in flight NOTIFY_STOP_MS to finish
 * (their events are acked, or left pending for the next start); SIGHUP reopens the log file.
 */
#include "cli.h"
#include "log.h"
#include "magpie.h"
#include "metrics.h"
#include "notify_worker.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    stop = 1;
}

static void on_hup(int sig)
{
    log_request_reopen();
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a Redis read in progress finishes (within notify.block_ms) instead of failing. */
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN; /* a receiver that closes the connection is an error to handle */
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
    struct magpie_config cfg;
    struct notify_worker *w = NULL;
    char consumer[256];
    int rc = cli_start(argc, argv, "notify", NULL, NULL, NULL, &cfg), status = 1;

    if (rc >= 0)
        return rc;
    if (cfg.notify.webhook_url[0] != '\0' && cfg.notify.secret[0] == '\0') {
        fprintf(stderr, "magpie-notify: notify.secret must be set when notify.webhook_url is\n");
        log_error("notify.secret must be set when notify.webhook_url is");
        goto done;
    }
    if (cfg.notify.webhook_url[0] == '\0')
        log_warn("notify.webhook_url is empty: no events are queued; waiting for any already queued");
    if (cfg.notify.consumer[0] != '\0')
        snprintf(consumer, sizeof(consumer), "%s", cfg.notify.consumer);
    else if (gethostname(consumer, sizeof(consumer) - 1) != 0 || consumer[0] == '\0')
        snprintf(consumer, sizeof(consumer), "notify");
    consumer[sizeof(consumer) - 1] = '\0';
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise libcurl");
        goto done;
    }
    srandom((unsigned)(mp_now_ms() ^ getpid())); /* the backoff's jitter */
    install_signals();
    if ((w = notify_worker_new(&cfg, consumer)) == NULL) {
        log_error("out of memory");
        goto done;
    }
    rc = cfg.notify.metrics_listen[0] ? metrics_listen(cfg.notify.metrics_listen, notify_worker_health, w)
                                      : MP_OK;
    if (rc != MP_OK)
        goto done;
    if (notify_worker_run(w, &stop) == MP_OK)
        status = 0;
    log_info("stopped");
done:
    metrics_stop();
    notify_worker_free(w);
    curl_global_cleanup();
    config_free(&cfg);
    return status;
}
