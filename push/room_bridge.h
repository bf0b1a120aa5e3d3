/* room_bridge.h -- rooms (SPEC §5) for STOMP 1.2 and MQTT 3.1.1 clients on /ws (SPEC §4.3): a room
 * subscription of such a connection is a member of the room hub (room.h), the second kind next to /room
 * connections. The design and the exact wire format are the comment at the top of room_bridge.c.
 *
 * stomp.c and mqtt.c only dispatch: a SUBSCRIBE, UNSUBSCRIBE or SEND/PUBLISH on a room destination comes
 * here, and so does the end of the connection. Functions that return a reason (a static string) leave the
 * refusal to the caller, in its protocol's form (STOMP ERROR, MQTT me/errors); NULL means the bridge took the
 * request and answers it itself (RECEIPT, SUBACK, PUBACK) when its time comes.
 */
#ifndef PUSH_ROOM_BRIDGE_H
#define PUSH_ROOM_BRIDGE_H

#include "conn.h"
#include "frame.h"
#include "room.h"

#include <stddef.h>
#include <stdint.h>

#define ROOM_BRIDGE_STOMP_PREFIX "/topic/room." /* destination:/topic/room.<id> */
#define ROOM_BRIDGE_MQTT_PREFIX  "room/"        /* topic room/<id> */

/* Reasons of refusals (README names them; the room protocol's own where it has one, roompkt.h). */
#define ROOM_BRIDGE_E_TOO_MANY   "too many rooms on this connection (push.rooms_per_conn)"
#define ROOM_BRIDGE_E_ACK        "room messages are live: subscribe to a room with ack:auto"
#define ROOM_BRIDGE_E_SUBSCRIBED "already subscribed"

/* ---- STOMP (stomp.c) ---- */

/* Is dest a room destination (ROOM_BRIDGE_STOMP_PREFIX...)? */
int room_bridge_stomp_dest(const char *dest);

/* SUBSCRIBE id:<id> destination:<dest> (a room destination): join the room. id is a good subscription id;
 * inbox_id is the id of the connection's /user/queue/messages subscription, or NULL (ids are unique per
 * connection). Returns NULL when joined: the RECEIPT for receipt (when not NULL) goes out once the room is
 * ready to deliver, so a message published after it reaches the client. Or the reason of the refusal. */
const char *room_bridge_stomp_subscribe(struct conn *c, const char *dest, const char *id, const char *ack,
                                        const char *receipt, const char *inbox_id);

/* UNSUBSCRIBE id:<id>: if id is one of c's room subscriptions, leave that room, send the RECEIPT for receipt
 * and return 1; else 0 (not a room subscription: the caller goes on). */
int room_bridge_stomp_unsubscribe(struct conn *c, const char *id, const char *receipt);

/* Does one of c's room subscriptions use this id? */
int room_bridge_stomp_has_id(struct conn *c, const char *id);

/* SEND destination:<dest> (a room destination) with this body: publish it. Returns NULL when taken (the
 * RECEIPT for receipt comes once Redis took it; ERROR "temporarily unavailable, retry" if it did not), or
 * the reason of the refusal. */
const char *room_bridge_stomp_send(struct conn *c, const char *dest, const char *body, size_t len,
                                   const char *receipt);

/* ---- MQTT (mqtt.c) ---- */

/* Is topic (or filter) of len bytes a room topic (ROOM_BRIDGE_MQTT_PREFIX...)? */
int room_bridge_mqtt_topic(const char *topic, size_t len);

/* A room filter of a SUBSCRIBE: join the room (a second SUBSCRIBE of a room c is in changes nothing).
 * Returns the SUBACK return code: 0 (room messages are delivered at QoS 0) or MQTT_SUBACK_FAILURE. */
int room_bridge_mqtt_subscribe(struct conn *c, const char *filter, size_t len);

/* A room filter of an UNSUBSCRIBE: leave the room if c is in it. */
void room_bridge_mqtt_unsubscribe(struct conn *c, const char *filter, size_t len);

/* The SUBACK of a SUBSCRIBE, built (malloc'd, adopted; NULL = out of memory): sent now, or once every room
 * that SUBSCRIBE joined is ready to deliver. */
void room_bridge_mqtt_suback(struct conn *c, uint8_t *pkt, size_t len);

/* PUBLISH room/<id> (topic of topic_len bytes) with this payload, QoS and packet id: publish it. Returns NULL
 * when taken (PUBACK -- PUBREC for QoS 2 -- once Redis took it; when it did not, a QoS 1/2 publish gets no
 * PUBACK and the connection is closed 1013, so the client's session sends it again), or the reason of the
 * refusal. */
const char *room_bridge_mqtt_publish(struct conn *c, const char *topic, size_t topic_len, const void *payload,
                                     size_t len, int qos, unsigned packet_id);

/* ---- both ---- */

/* c is gone (proto->closed): leave every room it was in. */
void room_bridge_closed(struct conn *c);

/* After every connection is gone: free the index. */
void room_bridge_free(void);

/* ---- the hub (room_hub.c) ---- */

/* The hub: m's room is ready (m->kind is MEMBER_STOMP or MEMBER_MQTT). */
void room_bridge_ready(struct member *m);

#define ROOM_BRIDGE_STOMP_FORMS 8 /* distinct subscription ids whose frames one batch keeps for sharing */

/* The bridge's frames of one batch, built when the first member that needs one asks: one MQTT frame for
 * every MQTT member, one STOMP frame per subscription id (clients number their subscriptions alike --
 * stompjs "sub-0", "sub-1" -- so members share them; past ROOM_BRIDGE_STOMP_FORMS ids a frame is built for
 * each further member). */
struct room_bridge_batch {
    const struct roombatch *b;
    const char *room;
    struct frame *mqtt;
    struct {
        const char *sub_id; /* the first member's, alive for the batch */
        struct frame *f;
    } stomp[ROOM_BRIDGE_STOMP_FORMS];
    int nstomp;
    int64_t id;          /* message-id base of the batch's STOMP frames; 0 until the first is built */
    struct frame *spare; /* the frame of a member past ROOM_BRIDGE_STOMP_FORMS, until the next */
};

void room_bridge_batch_init(struct room_bridge_batch *bb, const struct roombatch *b, const char *room);

/* The frame for bridged member m: a borrowed reference, valid until the next call or room_bridge_batch_free
 * (queue it at once: conn_send takes its own reference); NULL when out of memory. */
struct frame *room_bridge_batch_frame(struct room_bridge_batch *bb, const struct member *m);

void room_bridge_batch_free(struct room_bridge_batch *bb);

#endif
