/* roompkt.h -- the protobuf messages of the room protocol (SPEC §5, seed 004; shared/room.proto), packed
 * and unpacked with protobuf-c and checked without any I/O, so every rule can be unit-tested against
 * hostile bytes.
 *
 * A client frame is a packed Req{type, data}; data is a packed SignIn (SIGN_IN), a packed BroadcastRoomReq
 * (MESSAGE) or nothing (HEARTBEAT, MEMBERS). The server answers with a packed Reply{type, data}: errors and
 * the sign-in result as type 0 with a packed Err{code, msg}, "pong" as type 2, the member count as type 4
 * (a decimal string) and room messages as type 3 with a packed BroadcastRoomReq whose data holds one or
 * more messages merged the seed's way: each a 4-byte little-endian length, then its bytes.
 */
#ifndef PUSH_ROOMPKT_H
#define PUSH_ROOMPKT_H

#include "room.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define ROOM_MAX_ID     128 /* bytes of a room id (magpie-http's POST /msg takes the same) */
#define ROOM_LEN_PREFIX 4   /* bytes of the little-endian length in front of each merged message */

/* Err.code. 0 and 100 are seed 004's; the others are Magpie's own, one per kind of refusal. */
enum room_code {
    ROOM_OK = 0,
    ROOM_E_SIGN_IN = 100,   /* sign in first, or the token is bad (seed 004) */
    ROOM_E_MALFORMED = 101, /* not a Req, its data is not what its type needs, or a text frame */
    ROOM_E_UNKNOWN_TYPE = 102,
    ROOM_E_BAD_ROOM = 103,    /* room id empty, too long or not text; a MESSAGE to a room one is not in */
    ROOM_E_RATE = 104,        /* over push.rate / push.burst: the request was dropped */
    ROOM_E_UNAVAILABLE = 105, /* Redis is down: send the same request again later */
    ROOM_E_TOO_MANY = 106,    /* over push.max_conns_per_user; the connection is closed */
    ROOM_E_SIGNED_IN = 107,   /* a second SIGN_IN: a connection is in one room */
    ROOM_E_CLOSING = 108,     /* the server is closing the connection; msg says why */
};

/* Err.msg of each refusal (tests and the README name them). */
#define ROOM_R_OK           "ok"
#define ROOM_R_MALFORMED    "malformed request: expected a Req"
#define ROOM_R_TEXT_FRAME   "malformed request: binary frames only"
#define ROOM_R_BAD_SIGN_IN  "malformed SignIn"
#define ROOM_R_BAD_MESSAGE  "malformed BroadcastRoomReq"
#define ROOM_R_EMPTY        "empty message"
#define ROOM_R_UNKNOWN_TYPE "unknown type"
#define ROOM_R_BAD_ROOM     "bad room id: expected 1-128 bytes of text"
#define ROOM_R_OTHER_ROOM   "not in that room"
#define ROOM_R_SIGN_IN      "sign in first"
#define ROOM_R_NO_TOKEN     "bad token: missing"
#define ROOM_R_BAD_TOKEN    "bad token"
#define ROOM_R_EXPIRED      "bad token: expired"
#define ROOM_R_WRONG_KIND   "bad token: not a login token"
#define ROOM_R_REVOKED      "bad token: revoked"
#define ROOM_R_SIGNED_IN    "already signed in"
#define ROOM_R_RATE         "rate limited"
#define ROOM_R_UNAVAILABLE  "temporarily unavailable, retry"
#define ROOM_R_TOO_MANY     "too many connections"
#define ROOM_R_IDLE         "no heartbeat"

/* A client request, unpacked. */
struct roompkt {
    int type;                      /* Req.type as sent: any value, unknown ones included */
    Magpie__Req *req;              /* owned */
    Magpie__SignIn *sign_in;       /* SIGN_IN: owned; token non-empty, roomID a good room id */
    Magpie__BroadcastRoomReq *msg; /* MESSAGE: owned; data non-empty, roomID empty or a good room id */
    const char *why;               /* the reason when roompkt_parse refused it */
};

/* Unpack one client frame. Returns ROOM_OK, or the Err code with p->why set. Call roompkt_free(p) in
 * every case. */
int roompkt_parse(const void *buf, size_t len, struct roompkt *p);
void roompkt_free(struct roompkt *p);

/* A good room id: 1..ROOM_MAX_ID bytes of UTF-8 with no control characters (it is echoed in every
 * delivery, whose proto3 string field clients decode as UTF-8, and written in logs). */
int roompkt_room_ok(const char *s);

/* A packed Reply{type, data}; malloc'd (caller frees), its length in *len. NULL when out of memory. */
uint8_t *roompkt_reply(int type, const void *data, size_t data_len, size_t *len);

/* A packed Reply{type 0, data Err{code, msg}}; as roompkt_reply. */
uint8_t *roompkt_err(int code, const char *msg, size_t *len);

/* A CHAN_ROOM payload (bus.h): a packed BroadcastRoomReq{roomID, msgLv, data = one message}; as
 * roompkt_reply. */
uint8_t *roompkt_bus_pack(const char *room, int important, const void *msg, size_t msg_len, size_t *len);

/* Unpack a CHAN_ROOM payload. Returns it (caller frees with magpie__broadcast_room_req__free_unpacked), or
 * NULL when it is not a BroadcastRoomReq or carries no message. */
Magpie__BroadcastRoomReq *roompkt_bus_parse(const void *buf, size_t len);

/* A room's batch: messages merged as the seed lays them out, waiting to be sent. */
struct roombatch {
    uint8_t *buf; /* ROOM_LEN_PREFIX + bytes, per message */
    size_t len, cap;
    int count;
    int important; /* holds a message of level IMPORTANT: the batch travels as important */
};

/* Append a message. Returns MP_OK or MP_ENOMEM (the batch is unchanged). */
int roombatch_add(struct roombatch *b, const void *msg, size_t len, int important);

/* Empty the batch and free its buffer (an idle room keeps no memory). */
void roombatch_clear(struct roombatch *b);

/* The delivery frame of a batch, Reply{type 3, data BroadcastRoomReq{room, msgLv, data = merged}}: its
 * size, then the bytes written into out (which holds at least that size). roombatch_pack returns the
 * bytes written, or 0 when out of memory. */
size_t roombatch_packed_size(const struct roombatch *b, const char *room);
size_t roombatch_pack(const struct roombatch *b, const char *room, uint8_t *out);

#endif
