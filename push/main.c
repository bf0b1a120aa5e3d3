/* main.c -- magpie-push: the WebSocket node (SPEC §4, §6-§9).
 *
 * One thread runs a libuv loop carrying libwebsockets (server.c: chat on /ws, rooms on /room), the two
 * Redis connections (rdsa.c) and the timers; MySQL work goes to the thread pool (dbpool.c). SIGTERM: stop
 * taking connections, send every client C and close it after its queue is flushed, deregister from the
 * cluster, exit -- within PUSH_STOP_GRACE_MS even when clients or Redis do not cooperate. SIGHUP reopens the
 * log file.
 */
#include "chat.h"
#include "group.h"
#include "timeline.h"
#include "resume.h"
#include "cli.h"
#include "cluster.h"
#include "conn.h"
#include "dbpool.h"
#include "log.h"
#include "magpie.h"
#include "metrics.h"
#include "push.h"
#include "rdsa.h"
#include "relay.h"
#include "room.h"
#include "stomp.h"
#include "mqtt.h"
#include "server.h"
#include "stats.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define PUSH_STOP_GRACE_MS 3000 /* SPEC §9 wants the process gone within 5 s of SIGTERM */
#define PUSH_STOP_POLL_MS  50

struct push push;

static struct {
    uv_signal_t term, intr, hup;
    uv_timer_t stop_timer;
    uint64_t stop_deadline;
    int left; /* deregistered (or gave up) */
    int finished;
} M;

static void finish(void)
{
    if (M.finished)
        return;
    M.finished = 1;
    if (M.stop_deadline != 0)
        log_info("stopping node=%d connections_left=%zu", push.node, conn_total());
    server_stop();
    rdsa_stop();
    cluster_stop();
    room_stop();
    stomp_stop();
    mqtt_stop();
    resume_stop();
    conn_sweep_stop();
    stats_stop();
    uv_timer_stop(&M.stop_timer);
    uv_close((uv_handle_t *)&M.stop_timer, NULL);
    uv_close((uv_handle_t *)&M.term, NULL);
    uv_close((uv_handle_t *)&M.intr, NULL);
    uv_close((uv_handle_t *)&M.hup, NULL);
}

static void on_stop_timer(uv_timer_t *t)
{
    if ((M.left && conn_total() == 0) || push_now() >= M.stop_deadline)
        finish();
}

static void on_left(void *arg)
{
    M.left = 1;
}

static void begin_stop(int signum)
{
    if (push.stopping)
        return;
    push.stopping = 1;
    log_info("signal %s: closing connections node=%d connections=%zu", signum == SIGTERM ? "TERM" : "INT",
             push.node, conn_total());
    M.stop_deadline = push_now() + PUSH_STOP_GRACE_MS;
    conn_shutdown_all();
    cluster_leave(on_left, NULL);
    uv_timer_start(&M.stop_timer, on_stop_timer, PUSH_STOP_POLL_MS, PUSH_STOP_POLL_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP)
        log_request_reopen();
    else
        begin_stop(signum);
}

/* Checks across keys that the config table cannot express. */
static int check_config(const struct magpie_config *cfg)
{
    if (cfg->push.ping_interval_s >= cfg->push.idle_timeout_s) {
        log_error("push.ping_interval_s (%lld) must be less than push.idle_timeout_s (%lld)",
                  cfg->push.ping_interval_s, cfg->push.idle_timeout_s);
        return MP_EINVAL;
    }
    if (auth_init(&push.auth, cfg->auth.secret) != MP_OK) {
        log_error("auth.secret must be set, at least %d bytes", AUTH_MIN_SECRET);
        return MP_EINVAL;
    }
    if (id_init(&push.ids, (int)cfg->push.node_id) != MP_OK) {
        log_error("push.node_id must be 0..%d", ID_MAX_NODE);
        return MP_EINVAL;
    }
    return MP_OK;
}

/* Start every part. On failure the caller runs finish() and the loop, which undo what was started. */
static int start(void)
{
    uv_signal_init(push.loop, &M.term);
    uv_signal_init(push.loop, &M.intr);
    uv_signal_init(push.loop, &M.hup);
    uv_timer_init(push.loop, &M.stop_timer);
    if (dbpool_init(push.cfg) != MP_OK) {
        log_error("cannot set up the MySQL client library");
        return MP_ERR;
    }
    /* The listener first: a node that cannot listen should fail before it registers anywhere. */
    if (server_start() != MP_OK)
        return MP_ERR;
    if (stats_start(push.loop) != MP_OK || conn_start() != MP_OK || cluster_start() != MP_OK)
        return MP_ERR;
    chat_send_init();
    group_send_init();
    timeline_init();
    resume_init();
    chat_read_init();
    chat_online_init();
    chat_order_init();
    chat_site_init();
    if (room_start() != MP_OK || stomp_start() != MP_OK || mqtt_start() != MP_OK || relay_start() != MP_OK ||
        rdsa_start(push.loop, push.cfg) != MP_OK)
        return MP_ERR;
    if (push.cfg->push.metrics_listen[0] != '\0' &&
        metrics_listen(push.cfg->push.metrics_listen, cluster_health, NULL) != MP_OK)
        return MP_ERR;
    uv_signal_start(&M.term, on_signal, SIGTERM);
    uv_signal_start(&M.intr, on_signal, SIGINT);
    uv_signal_start(&M.hup, on_signal, SIGHUP);
    return MP_OK;
}

int main(int argc, char **argv)
{
    struct magpie_config cfg;
    uv_loop_t loop;
    int failed = 0, rc = cli_start(argc, argv, "push", NULL, NULL, NULL, &cfg);

    if (rc >= 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    push.cfg = &cfg;
    push.node = (int)cfg.push.node_id;
    if (check_config(&cfg) != MP_OK) {
        config_free(&cfg);
        return 1;
    }
    uv_loop_init(&loop);
    push.loop = &loop;
    if (start() != MP_OK) {
        log_error("magpie-push failed to start node=%d", push.node);
        failed = 1;
        push.stopping = 1;
        finish(); /* then the loop runs until what did start has closed */
    } else {
        log_info("magpie-push started node=%d listen=%s metrics=%s max_conns=%zu", push.node, cfg.push.listen,
                 cfg.push.metrics_listen, push.max_conns);
    }

    uv_run(&loop, UV_RUN_DEFAULT);

    server_free();
    metrics_stop();
    dbpool_close();
    conn_stop();
    room_hub_free();
    if (uv_loop_close(&loop) != 0)
        log_warn("the loop still had handles at exit");
    if (!failed)
        log_info("magpie-push stopped node=%d", push.node);
    auth_clear(&push.auth);
    config_free(&cfg);
    return failed;
}
