/* stats.c -- see stats.h. */
#include "stats.h"
#include "magpie.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

#define STATS_MAX_PROTOS 4

static const char *reason_names[STATS_E_COUNT] = {
    [STATS_E_MALFORMED] = "malformed",
    [STATS_E_UNKNOWN_TYPE] = "unknown_type",
    [STATS_E_REJECTED] = "rejected",
    [STATS_E_RATE] = "rate_limited",
    [STATS_E_UNAVAILABLE] = "unavailable",
    [STATS_E_TICKET] = "ticket",
    [STATS_E_TOO_MANY] = "too_many_connections",
    [STATS_E_ORIGIN] = "origin",
    [STATS_E_TOO_BIG] = "too_big",
    [STATS_E_ABUSE] = "abuse",
};

static struct {
    uv_timer_t timer;
    struct metric *conns, *packets, *acks_m, *errors_m, *drops_m, *delivery, *redis_up_m;
    struct {
        const char *name;
        long long open;
        double packets[128]; /* by type letter */
    } protos[STATS_MAX_PROTOS];
    int nprotos;
    double acks, errors[STATS_E_COUNT], drops[2];
    double buckets[32], sum; /* delivery latency, as metrics_latency_bounds */
    int redis_up;
    int started;
} S;

static int proto_index(const char *proto)
{
    for (int i = 0; i < S.nprotos; i++)
        if (S.protos[i].name == proto || strcmp(S.protos[i].name, proto) == 0)
            return i;
    if (S.nprotos == STATS_MAX_PROTOS)
        return STATS_MAX_PROTOS - 1;
    S.protos[S.nprotos].name = proto;
    return S.nprotos++;
}

void stats_conn(const char *proto, int delta)
{
    S.protos[proto_index(proto)].open += delta;
}

void stats_packet(const char *proto, char type)
{
    S.protos[proto_index(proto)].packets[(unsigned char)type & 127] += 1;
}

void stats_ack(void)
{
    S.acks += 1;
}

void stats_error(enum stats_reason r)
{
    if (r < STATS_E_COUNT)
        S.errors[r] += 1;
}

void stats_queue_drop(int closed)
{
    S.drops[closed ? 1 : 0] += 1;
}

void stats_delivery(double seconds)
{
    size_t i;
    for (i = 0; i < metrics_latency_nbounds && seconds > metrics_latency_bounds[i]; i++)
        ;
    S.buckets[i] += 1;
    S.sum += seconds > 0 ? seconds : 0;
}

void stats_redis_up(int up)
{
    S.redis_up = up;
}

static void flush(void)
{
    char labels[96];
    for (int p = 0; p < S.nprotos; p++) {
        snprintf(labels, sizeof(labels), "protocol=\"%s\"", S.protos[p].name);
        metric_set(S.conns, labels, (double)S.protos[p].open);
        for (int t = 0; t < 128; t++)
            if (S.protos[p].packets[t] > 0) {
                int letter = (t >= 'A' && t <= 'Z') || (t >= 'a' && t <= 'z');
                snprintf(labels, sizeof(labels), "protocol=\"%s\",type=\"%c\"", S.protos[p].name,
                         letter ? t : '?');
                metric_add(S.packets, labels, S.protos[p].packets[t]);
                S.protos[p].packets[t] = 0;
            }
    }
    if (S.acks > 0) {
        metric_add(S.acks_m, NULL, S.acks);
        S.acks = 0;
    }
    for (int r = 0; r < STATS_E_COUNT; r++)
        if (S.errors[r] > 0) {
            snprintf(labels, sizeof(labels), "reason=\"%s\"", reason_names[r]);
            metric_add(S.errors_m, labels, S.errors[r]);
            S.errors[r] = 0;
        }
    for (int c = 0; c < 2; c++)
        if (S.drops[c] > 0) {
            metric_add(S.drops_m, c ? "action=\"closed\"" : "action=\"dropped\"", S.drops[c]);
            S.drops[c] = 0;
        }
    metric_observe_batch(S.delivery, NULL, S.buckets, S.sum);
    memset(S.buckets, 0, sizeof(S.buckets));
    S.sum = 0;
    metric_set(S.redis_up_m, NULL, S.redis_up);
}

static void on_flush(uv_timer_t *t)
{
    flush();
}

int stats_start(uv_loop_t *loop)
{
    S.conns = metrics_gauge("magpie_push_connections", "Open WebSocket connections by protocol.");
    S.packets =
        metrics_counter("magpie_push_packets_total", "Client packets received, by protocol and type.");
    S.acks_m = metrics_counter("magpie_push_acks_total", "Messages accepted and acknowledged with A.");
    S.errors_m = metrics_counter("magpie_push_errors_total",
                                 "Errors answered to clients and refused connections, by reason.");
    S.drops_m = metrics_counter("magpie_push_queue_drops_total",
                                "Outgoing queue overflows: frames dropped, or connections closed.");
    S.delivery = metrics_histogram("magpie_push_delivery_seconds",
                                   "From a message's acceptance to its recipient's outgoing queue.",
                                   metrics_latency_bounds, metrics_latency_nbounds);
    S.redis_up_m = metrics_gauge("magpie_push_redis_up", "1 while the Redis command connection is ready.");
    if (!S.conns || !S.packets || !S.acks_m || !S.errors_m || !S.drops_m || !S.delivery || !S.redis_up_m)
        return MP_ENOMEM;
    metric_add(S.acks_m, NULL, 0);
    metric_set(S.redis_up_m, NULL, 0);
    uv_timer_init(loop, &S.timer);
    S.started = 1;
    uv_timer_start(&S.timer, on_flush, STATS_FLUSH_MS, STATS_FLUSH_MS);
    return MP_OK;
}

void stats_stop(void)
{
    if (!S.started)
        return;
    S.started = 0;
    flush();
    uv_timer_stop(&S.timer);
    uv_close((uv_handle_t *)&S.timer, NULL);
}
