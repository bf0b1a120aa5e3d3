/* room.h -- the room protocol of seed 004 (SPEC §5) on /room: binary frames carrying protobuf (roompkt.h).
 *
 * room.c       the protocol: the request table (SIGN_IN, HEARTBEAT, MESSAGE, MEMBERS), sign-in with a
 *              login token (checked against /logout and the per-user connection limit in one Redis round
 *              trip, through conn_login_session), heartbeat timeouts.
 * room_hub.c   the rooms of this node: their members here, the subscription to each room's channel
 *              (CHAN_ROOM; a node subscribes only to rooms it has members in), merged batches and the
 *              fan-out of one shared frame per batch to every member.
 * room_count.c the cluster-wide member counts in Redis (KEY_ROOM_MEMBERS).
 * room_bridge.c the second kind of member: a STOMP or MQTT connection on /ws subscribed to a room topic
 *              (room_bridge.h; SPEC §4.3). The hub treats it like a /room connection -- the same join and
 *              leave, counts, channel, batches, slow-member policy and send path (room_publish) -- and asks
 *              the bridge only for the delivery frame of its protocol.
 *
 * Every message takes one path: a member's MESSAGE and magpie-http's POST /msg are both PUBLISHed to the
 * room's channel, and every node with members in the room (the sender's included) merges what it receives
 * for its own members. Redis delivers a channel's messages to every subscriber in one order, so members on
 * every node see the same messages in the same order.
 *
 * Slow members: a batch of normal messages is dropped for a member whose outgoing queue holds more than
 * push.room_normal_queue bytes (counted by level); a batch holding an important message (level 1, from
 * POST /msg) is always queued, and a member whose queue would pass push.queue_cap with it is disconnected.
 */
#ifndef PUSH_ROOM_H
#define PUSH_ROOM_H

#include "conn.h"
#include "proto.h"
#include "rdsa.h"
#include "roompkt.h"

#include <stdint.h>

#define ROOM_SWEEP_MS 250 /* how often heartbeat timeouts are checked */
#define ROOM_TICK_MS  200 /* how often changed member counts are written: well inside the 2 s promise */
#define ROOM_LINGER_MS                                                                                       \
    5000                        /* an empty room stays subscribed this long, so a member who reconnects (or  \
                                 * the next one to join) finds it ready and the channel is not churned */
#define ROOM_COUNT_CACHE_MS 500 /* MEMBERS answers within this from one Redis read: members poll it */
#define ROOM_COUNT_BATCH    100 /* rooms per member-count write */

extern const struct proto room_proto;

/* Start the heartbeat sweep and the hub (before rdsa_start: it registers scripts). Returns MP_OK. */
int room_start(void);

/* SIGTERM is done with the connections: stop the timers (room_hub_stop). */
void room_stop(void);

enum member_state {
    MEMBER_NEW,     /* connected, not signed in */
    MEMBER_SIGNING, /* SIGN_IN sent to Redis (conn_login_session); rx paused */
    MEMBER_JOINING, /* in the room, waiting for its channel subscription to be confirmed */
    MEMBER_IN,      /* signed in: told so, receives the room's batches */
};

/* Who a member is: a /room connection (room.c), or one room subscription of a STOMP or MQTT connection on /ws
 * (room_bridge.c; a connection may hold several, one per room). */
enum member_kind {
    MEMBER_ROOM,
    MEMBER_STOMP,
    MEMBER_MQTT,
};

struct room;

/* A member of a room here: a room connection (conn->pdata), or a bridged subscription (room_bridge.c). */
struct member {
    struct conn *c;
    enum member_kind kind; /* MEMBER_ROOM for calloc'd room connections */
    enum member_state state;
    struct room *room;                    /* JOINING and IN */
    struct member *prev, *next;           /* the room's members on this node */
    struct member *idle_prev, *idle_next; /* every room connection, least recently heard from first */
    uint64_t heard_ms;                    /* loop time of its last good request (or of its connection) */
    char want[ROOM_MAX_ID + 1];           /* SIGNING: the room asked for */
};

/* ---- room_hub.c ---- */

/* Start the hub's timers. Returns MP_OK. */
int room_hub_start(void);

/* Stop the timers and free the empty rooms; rooms with members go when their last member does. */
void room_hub_stop(void);

/* After every connection is gone: free the index. */
void room_hub_free(void);

/* Put m (MEMBER_JOINING) in room id, creating the room and subscribing to its channel when m is its first
 * member here. room_member_ready(m) follows once the subscription is confirmed (before room_join returns
 * when it already is). Returns MP_OK or MP_ENOMEM. */
int room_join(struct member *m, const char *id);

/* Take m out of its room (if it is in one). */
void room_leave(struct member *m);

/* Called by the hub when m's room is ready to deliver to it (room.c tells the client it is in; for a bridged
 * member the hub calls room_bridge_ready instead). */
void room_member_ready(struct member *m);

/* Publish a member's message (normal level) to r's channel: the one send path of every member, whatever its
 * protocol; the message comes back to every member on every node in a batch, the sender's too. fn gets
 * Redis's answer (an integer: taken) with arg. Returns MP_OK (fn will be called), MP_ENOMEM, or MP_EAGAIN
 * (Redis is down; fn is not called). */
int room_publish(const struct room *r, const void *msg, size_t len, rdsa_reply_fn fn, void *arg);

const char *room_name(const struct room *r);
const char *room_channel(const struct room *r);
int room_local_members(const struct room *r);

/* Members of r on the other nodes as last read from Redis: 1 and *n when read within ROOM_COUNT_CACHE_MS,
 * else 0. room_set_others stores a fresh read. */
int room_others(const struct room *r, long long *n);
void room_set_others(struct room *r, long long n);

/* ---- room_count.c ---- */

/* Register the scripts and the resync after every Redis reconnect (it clears this node's entries, then
 * resync() must write every room again). Call before rdsa_start. Returns MP_OK. */
int room_count_start(void (*resync)(void));

/* Write this node's member counts of n rooms (0 = none here: the entry is removed). */
void room_count_write(const char *const *rooms, const int *counts, int n);

/* Members of room on the other live nodes: fn(n, arg) with n >= 0, or n = -1 when Redis is unavailable.
 * Returns MP_OK (fn will be called) or MP_EAGAIN (Redis is down; fn is not called). */
int room_count_others(const char *room, void (*fn)(long long n, void *arg), void *arg);

#endif
