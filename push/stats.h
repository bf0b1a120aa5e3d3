/* stats.h -- magpie-push's metrics (SPEC §9): connections, packets by type, acks, errors by reason, queue
 * drops, delivery latency; rooms (SPEC §5): rooms and members here, requests by type, messages in,
 * deliveries out, batches, drops by level.
 *
 * The loop thread counts into plain variables (no lock on the hot path); a timer folds them into the
 * shared metrics registry (metrics.h) once per STATS_FLUSH_MS, which /metrics serves from its own thread.
 */
#ifndef PUSH_STATS_H
#define PUSH_STATS_H

#include <uv.h>

#define STATS_FLUSH_MS 1000

/* Why a client got an error or was refused; the metric's reason label. */
enum stats_reason {
    STATS_E_MALFORMED,    /* not JSON / not an object / missing or bad fields */
    STATS_E_UNKNOWN_TYPE, /* a packet type the server does not take */
    STATS_E_REJECTED,    /* a well-formed request refused: not friends, too long, to self, unknown order... */
    STATS_E_RATE,        /* over push.rate / push.burst */
    STATS_E_UNAVAILABLE, /* Redis or MySQL down */
    STATS_E_TICKET,      /* no, bad, expired, reused or wrong-kind ticket */
    STATS_E_TOO_MANY,    /* over push.max_conns_per_user */
    STATS_E_ORIGIN,      /* foreign Origin, refused before the upgrade */
    STATS_E_TOO_BIG,     /* message over push.max_frame (closed 1009) */
    STATS_E_ABUSE,       /* over push.bad_packet_limit (closed 1008) */
    STATS_E_IDLE,        /* a room connection without heartbeat for push.room_idle_s (closed 1008) */
    STATS_E_HANDSHAKE,   /* an upgrade request refused with an HTTP status, or dropped unanswered */
    STATS_E_COUNT
};

/* Start the flush timer and create the families. Returns MP_OK or MP_ENOMEM. */
int stats_start(uv_loop_t *loop);

/* Flush once more and close the timer. */
void stats_stop(void);

void stats_conn(const char *proto, int delta);   /* a connection of proto opened (+1) or closed (-1) */
void stats_packet(const char *proto, char type); /* a client packet of this type was received */
void stats_ack(void);                            /* an A was sent for an accepted message */
/* A frame of a standard protocol (STOMP, MQTT) was received; both strings static. */
void stats_frame(const char *proto, const char *command);
/* A standard protocol's subscription resumed from a stored session position; one timeline entry was sent
 * again to such a session (it had been sent on an earlier connection, not acknowledged). proto static. */
void stats_resumed(const char *proto);
void stats_redelivered(const char *proto);
/* A standard protocol's subscription caught up after a gap (a Y), or held an entry behind a gap its own
 * sends in flight may fill (push/resume.h). proto static. */
void stats_catchup(const char *proto);
void stats_held(const char *proto);
void stats_error(enum stats_reason r);
void stats_queue_drop(int closed);   /* a frame dropped (0), or a connection closed (1), for a full queue */
void stats_delivery(double seconds); /* from acceptance (ts) to a recipient's queue */
void stats_redis_up(int up);

void stats_room_gauges(long rooms, long members);   /* rooms with members here, and those members */
void stats_room_request(int type);                  /* a room request of this PackageType (-1: not a Req) */
void stats_room_published(void);                    /* a member's message published to its room */
void stats_room_in(void);                           /* a message arrived for a room with members here */
void stats_room_batch(long deliveries);             /* a batch went out: deliveries = messages x members */
void stats_room_drop(int important, long messages); /* messages a member missed (slow, or disconnected) */
/* Room subscriptions of STOMP and MQTT connections here (room_bridge.c), each also a member. */
void stats_room_subscriptions(long stomp, long mqtt);

#endif
