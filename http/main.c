/* main.c -- magpie-http: start the front-ends, wait for a signal, stop them (SPEC §3, §9).
 *
 * Signals are taken by this thread alone (sigwait): SIGHUP reopens the log file; SIGTERM/SIGINT stop
 * accepting, answer what is in flight (waiting long polls get code 10 so the page polls again), and exit.
 */
#include "cli.h"
#include "fronts.h"
#include "http.h"
#include "log.h"
#include "longpoll.h"
#include "magpie.h"
#include "revoked.h"

#include <mysql.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static int check_config(void)
{
    const struct magpie_config *cfg = &app.cfg;
    if (auth_init(&app.auth, cfg->auth.secret) != MP_OK) {
        log_error(
            "auth.secret must be at least %d bytes; generate one with: head -c 48 /dev/urandom | base64",
            AUTH_MIN_SECRET);
        return -1;
    }
    if (cfg->http.client_timeout_s <= cfg->http.long_poll_s) {
        log_error("http.client_timeout_s (%lld) must exceed http.long_poll_s (%lld)",
                  cfg->http.client_timeout_s, cfg->http.long_poll_s);
        return -1;
    }
    if (cfg->http.enable_test_token)
        log_warn("http.enable_test_token is on: POST /tk hands out a token for any user (tests only)");
    if (cfg->sms.test_code[0] != '\0')
        log_warn("sms.test_code is set: a fixed code logs in any number (tests only)");
    return 0;
}

int main(int argc, char **argv)
{
    sigset_t set;
    int rc, sig, status = 1;

    rc = cli_start(argc, argv, "http", NULL, NULL, NULL, &app.cfg);
    if (rc >= 0)
        return rc;
    if (check_config() != 0)
        goto out;

    /* Every thread created from here on inherits this mask: only sigwait below sees these signals. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an error return, not a death */

    if (db_library_init() != MP_OK || http_metrics_init() != MP_OK) {
        log_error("cannot initialise the MySQL client library or the metrics");
        goto out;
    }
    if (revoked_start() != MP_OK || longpoll_start() != MP_OK || fcgi_front_start() != MP_OK ||
        mhd_front_start() != MP_OK)
        goto stop;
    if (!fcgi_front_active() && !mhd_front_active()) {
        log_error("nothing to serve: set http.listen and/or http.fcgi_socket (or start under spawn-fcgi)");
        goto stop;
    }
    log_info("started fastcgi=%s standalone=%s threads=%lld max_long_polls=%lld",
             fcgi_front_active() ? "on" : "off", mhd_front_active() ? app.cfg.http.listen : "off",
             app.cfg.http.threads, app.cfg.http.max_long_polls);

    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            log_request_reopen();
            log_info("log reopened");
            continue;
        }
        log_info("stopping signal=%d waiting_long_polls=%ld", sig, longpoll_waiting());
        break;
    }
    status = 0;
stop:
    fcgi_front_stop_accepting();
    mhd_front_stop_accepting();
    fcgi_front_stop();
    longpoll_stop();
    mhd_front_stop();
    revoked_stop();
    mysql_library_end();
    log_info("stopped");
out:
    if (status != 0 && app.cfg.log.file != NULL && app.cfg.log.file[0] != '\0')
        fprintf(stderr, "magpie-http: could not start; see %s\n", app.cfg.log.file);
    auth_clear(&app.auth);
    config_free(&app.cfg);
    return status;
}
