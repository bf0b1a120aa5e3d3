/* stats.c -- see stats.h. */
#include "stats.h"
#include "magpie.h"
#include "metrics.h"
#include "rdsa_cluster.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define STATS_MAX_PROTOS 4
#define STATS_MAX_FRAMES 48 /* (protocol, command) pairs of magpie_push_frames_total */

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
    [STATS_E_IDLE] = "idle",
    [STATS_E_HANDSHAKE] = "handshake",
};

/* Room request types as labels (PackageType of room.proto); anything else is "unknown". */
static const char *room_types[] = {"unknown", "sign_in", "heartbeat", "message", "members"};
#define STATS_ROOM_TYPES 5

static struct {
    uv_timer_t timer;
    struct metric *conns, *packets, *acks_m, *errors_m, *drops_m, *delivery, *redis_up_m;
    struct {
        const char *name;
        long long open;
        double packets[128]; /* by type letter */
        double resumed, redelivered, catchups, held;
    } protos[STATS_MAX_PROTOS];
    int nprotos;
    struct metric *frames_m, *resumed_m, *redelivered_m, *catchups_m, *held_m;
    struct {
        const char *proto, *command; /* static strings */
        double n;
    } frames[STATS_MAX_FRAMES];
    int nframes;
    double acks, errors[STATS_E_COUNT], drops[2];
    double buckets[32], sum; /* delivery latency, as metrics_latency_bounds */
    int redis_up;
    struct metric *rooms_m, *members_m, *room_req_m, *room_pub_m, *room_in_m, *room_out_m, *room_batch_m,
        *room_drop_m, *room_subs_m;
    long rooms, members, room_subs[2];
    double room_req[STATS_ROOM_TYPES], room_pub, room_in, room_out, room_batches, room_drops[2];
    struct metric *cluster_m, *cluster_masters_m;
    struct rdsac_stats cluster_last; /* rdsa's cluster counters at the last flush */
    int started;
} S;

/* rdsa's cluster counters as magpie_push_redis_cluster_events_total{event} (rdsa_cluster.h says each). */
static const struct {
    const char *label;
    size_t off;
} cluster_events[] = {
    {"event=\"moved\"", offsetof(struct rdsac_stats, moved)},
    {"event=\"ask\"", offsetof(struct rdsac_stats, ask)},
    {"event=\"tryagain\"", offsetof(struct rdsac_stats, tryagain)},
    {"event=\"clusterdown\"", offsetof(struct rdsac_stats, clusterdown)},
    {"event=\"noscript\"", offsetof(struct rdsac_stats, noscript)},
    {"event=\"retry\"", offsetof(struct rdsac_stats, retries)},
    {"event=\"gave_up\"", offsetof(struct rdsac_stats, gave_up)},
    {"event=\"lost_in_flight\"", offsetof(struct rdsac_stats, lost_in_flight)},
    {"event=\"refused\"", offsetof(struct rdsac_stats, refused)},
    {"event=\"refresh\"", offsetof(struct rdsac_stats, refreshes)},
    {"event=\"refresh_failed\"", offsetof(struct rdsac_stats, refresh_failures)},
    {"event=\"node_lost\"", offsetof(struct rdsac_stats, node_losses)},
    {"event=\"ssubscribe_moved\"", offsetof(struct rdsac_stats, sub_moved)},
};

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

void stats_resumed(const char *proto)
{
    S.protos[proto_index(proto)].resumed += 1;
}

void stats_redelivered(const char *proto)
{
    S.protos[proto_index(proto)].redelivered += 1;
}

void stats_catchup(const char *proto)
{
    S.protos[proto_index(proto)].catchups += 1;
}

void stats_held(const char *proto)
{
    S.protos[proto_index(proto)].held += 1;
}

void stats_frame(const char *proto, const char *command)
{
    int i;
    for (i = 0; i < S.nframes; i++)
        if (S.frames[i].proto == proto && S.frames[i].command == command)
            break;
    if (i == S.nframes) {
        if (S.nframes == STATS_MAX_FRAMES)
            return;
        S.frames[i].proto = proto;
        S.frames[i].command = command;
        S.nframes++;
    }
    S.frames[i].n += 1;
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

void stats_room_gauges(long rooms, long members)
{
    S.rooms = rooms;
    S.members = members;
}

void stats_room_subscriptions(long stomp, long mqtt)
{
    S.room_subs[0] = stomp;
    S.room_subs[1] = mqtt;
}

void stats_room_request(int type)
{
    S.room_req[type > 0 && type < STATS_ROOM_TYPES ? type : 0] += 1;
}

void stats_room_published(void)
{
    S.room_pub += 1;
}

void stats_room_in(void)
{
    S.room_in += 1;
}

void stats_room_batch(long deliveries)
{
    S.room_batches += 1;
    S.room_out += (double)deliveries;
}

void stats_room_drop(int important, long messages)
{
    S.room_drops[important ? 1 : 0] += (double)messages;
}

/* Add a pending count to a counter and zero it. */
static void fold(struct metric *m, const char *labels, double *v)
{
    if (*v > 0) {
        metric_add(m, labels, *v);
        *v = 0;
    }
}

static void flush_rooms(void)
{
    char labels[64];
    metric_set(S.rooms_m, NULL, (double)S.rooms);
    metric_set(S.members_m, NULL, (double)S.members);
    metric_set(S.room_subs_m, "protocol=\"stomp\"", (double)S.room_subs[0]);
    metric_set(S.room_subs_m, "protocol=\"mqtt\"", (double)S.room_subs[1]);
    for (int t = 0; t < STATS_ROOM_TYPES; t++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", room_types[t]);
        fold(S.room_req_m, labels, &S.room_req[t]);
    }
    fold(S.room_pub_m, NULL, &S.room_pub);
    fold(S.room_in_m, NULL, &S.room_in);
    fold(S.room_out_m, NULL, &S.room_out);
    fold(S.room_batch_m, NULL, &S.room_batches);
    fold(S.room_drop_m, "level=\"normal\"", &S.room_drops[0]);
    fold(S.room_drop_m, "level=\"important\"", &S.room_drops[1]);
}

/* With redis.cluster only: what rdsa's cluster backend met since the last flush, and its masters. */
static void flush_cluster(void)
{
    struct rdsac_stats now;
    if (!rdsac_running())
        return;
    rdsac_stats_get(&now);
    for (size_t i = 0; i < MP_ARRAY_LEN(cluster_events); i++) {
        uint64_t a = *(const uint64_t *)((const char *)&now + cluster_events[i].off);
        uint64_t b = *(const uint64_t *)((const char *)&S.cluster_last + cluster_events[i].off);
        metric_add(S.cluster_m, cluster_events[i].label, (double)(a - b));
    }
    metric_set(S.cluster_masters_m, "state=\"mapped\"", now.masters);
    metric_set(S.cluster_masters_m, "state=\"ready\"", now.masters_ready);
    S.cluster_last = now;
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
        snprintf(labels, sizeof(labels), "protocol=\"%s\"", S.protos[p].name);
        fold(S.resumed_m, labels, &S.protos[p].resumed);
        fold(S.redelivered_m, labels, &S.protos[p].redelivered);
        fold(S.catchups_m, labels, &S.protos[p].catchups);
        fold(S.held_m, labels, &S.protos[p].held);
    }
    for (int i = 0; i < S.nframes; i++)
        if (S.frames[i].n > 0) {
            snprintf(labels, sizeof(labels), "protocol=\"%s\",command=\"%s\"", S.frames[i].proto,
                     S.frames[i].command);
            fold(S.frames_m, labels, &S.frames[i].n);
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
    flush_rooms();
    flush_cluster();
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
    S.frames_m =
        metrics_counter("magpie_push_frames_total",
                        "Frames of the standard protocols received (SPEC 4.3), by protocol and command; "
                        "INVALID: a frame that did not parse.");
    S.resumed_m =
        metrics_counter("magpie_push_sessions_resumed_total",
                        "Subscriptions of the standard protocols that resumed from a stored session "
                        "position (STOMP ack:client, MQTT clean session 0), by protocol.");
    S.redelivered_m =
        metrics_counter("magpie_push_redelivered_total",
                        "Timeline entries sent again to a resumed session that had been sent "
                        "them on an earlier connection without acknowledging them, by protocol.");
    S.catchups_m =
        metrics_counter("magpie_push_catchups_total",
                        "Catch-ups of a standard protocol's subscription (a Y for entries after a gap "
                        "in the seqs it was delivered), by protocol.");
    S.held_m =
        metrics_counter("magpie_push_held_total",
                        "Entries of a standard protocol's subscription held behind a gap that the "
                        "connection's own sends in flight filled or could fill, instead of a catch-up, "
                        "by protocol.");
    S.acks_m =
        metrics_counter("magpie_push_acks_total", "Messages accepted and acknowledged (A, STOMP RECEIPT).");
    S.errors_m = metrics_counter("magpie_push_errors_total",
                                 "Errors answered to clients and refused connections, by reason.");
    S.drops_m = metrics_counter("magpie_push_queue_drops_total",
                                "Outgoing queue overflows: frames dropped, or connections closed.");
    S.delivery = metrics_histogram("magpie_push_delivery_seconds",
                                   "From a message's acceptance to its recipient's outgoing queue.",
                                   metrics_latency_bounds, metrics_latency_nbounds);
    S.redis_up_m = metrics_gauge("magpie_push_redis_up", "1 while the Redis command connection is ready.");
    S.rooms_m = metrics_gauge("magpie_push_rooms", "Rooms with members on this node.");
    S.members_m = metrics_gauge("magpie_push_room_members",
                                "Room members on this node: /room connections signed in, and STOMP and MQTT "
                                "room subscriptions.");
    S.room_subs_m =
        metrics_gauge("magpie_push_room_subscriptions",
                      "Room subscriptions of STOMP and MQTT connections on this node, by protocol "
                      "(each one a member of its room).");
    S.room_req_m = metrics_counter("magpie_push_room_requests_total", "Room requests received, by type.");
    S.room_pub_m =
        metrics_counter("magpie_push_room_published_total",
                        "Messages of members here (room MESSAGE, STOMP SEND, MQTT PUBLISH), published "
                        "to their room.");
    S.room_in_m =
        metrics_counter("magpie_push_room_messages_in_total",
                        "Room messages this node received for its members (members' and POST /msg).");
    S.room_out_m =
        metrics_counter("magpie_push_room_deliveries_total",
                        "Room messages queued to members: each message of a batch, once per member.");
    S.room_batch_m = metrics_counter("magpie_push_room_batches_total",
                                     "Merged room batches sent (one frame, shared by every member here).");
    S.room_drop_m =
        metrics_counter("magpie_push_room_drops_total",
                        "Room messages members missed, by level: normal ones dropped for a slow member, "
                        "important ones of a member disconnected because even they did not fit.");
    S.cluster_m = metrics_counter("magpie_push_redis_cluster_events_total",
                                  "With redis.cluster: what the Redis Cluster client met, by event (MOVED, "
                                  "ASK, retries, commands given up or lost with their connection...).");
    S.cluster_masters_m = metrics_gauge("magpie_push_redis_cluster_masters",
                                        "With redis.cluster: masters in the slot map, and those with a ready "
                                        "connection.");
    if (!S.cluster_m || !S.cluster_masters_m || !S.conns || !S.packets || !S.frames_m || !S.resumed_m ||
        !S.redelivered_m || !S.catchups_m || !S.held_m || !S.acks_m || !S.errors_m || !S.drops_m ||
        !S.delivery || !S.redis_up_m || !S.rooms_m || !S.members_m || !S.room_req_m || !S.room_pub_m ||
        !S.room_in_m || !S.room_out_m || !S.room_batch_m || !S.room_drop_m || !S.room_subs_m)
        return MP_ENOMEM;
    metric_add(S.acks_m, NULL, 0);
    metric_add(S.room_pub_m, NULL, 0);
    metric_add(S.room_in_m, NULL, 0);
    metric_add(S.room_out_m, NULL, 0);
    metric_add(S.room_batch_m, NULL, 0);
    metric_add(S.room_drop_m, "level=\"normal\"", 0);
    metric_add(S.room_drop_m, "level=\"important\"", 0);
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
