/* chatpkt.h -- the JSON packets of the chat protocol (SPEC §4), parsed and checked without any I/O so that
 * every rule can be unit-tested against hostile input.
 *
 * A client packet is one JSON object per text frame: {"id": string, "to": number, "type": letter,
 * "msg": ...}; unknown fields are ignored. chatpkt_parse() checks what every packet needs (an object, an
 * id of 1..CHAT_MAX_ID bytes, a one-letter type); the chatpkt_<kind>() functions check the msg of one
 * packet type. Each returns NULL when the packet is good, else the reason the client gets in its E packet
 * (one of the CHAT_E_* strings below, so tests and docs can name them).
 */
#ifndef PUSH_CHATPKT_H
#define PUSH_CHATPKT_H

#include "packet.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CHAT_MAX_ID          64   /* bytes of a client packet id (messages.client_id is VARCHAR(64)) */
#define CHAT_MAX_TEXT        1023 /* characters of a t message (seed 001) */
#define CHAT_MAX_IMAGE       1023 /* characters of an i message (an image id) */
#define CHAT_MAX_ORDER       64   /* bytes of an order id (orders.id is VARCHAR(64)) */
#define CHAT_HISTORY_DEFAULT 100  /* messages per H answer when the client names no limit */
#define CHAT_HISTORY_MAX     500  /* most messages one H answer carries */
#define CHAT_SYNC_DEFAULT    100  /* entries per Y answer when the client names no limit (SPEC §4.1) */
#define CHAT_SYNC_MAX        500  /* most entries one Y answer carries */

/* The reasons of E packets. */
#define CHAT_E_MALFORMED    "malformed packet: expected one JSON object"
#define CHAT_E_BAD_ID       "missing or bad id: expected a string of 1-64 bytes"
#define CHAT_E_BAD_TYPE     "missing or bad type: expected one letter"
#define CHAT_E_UNKNOWN_TYPE "unknown type"
#define CHAT_E_BAD_TO       "missing or bad to: expected a user id"
#define CHAT_E_TO_SELF      "cannot send to yourself"
#define CHAT_E_BAD_MSG      "missing or bad msg"
#define CHAT_E_EMPTY        "empty message"
#define CHAT_E_TOO_LONG     "message too long"
#define CHAT_E_NOT_FRIENDS  "not friends"
#define CHAT_E_BAD_UID      "bad msg: expected a user id"
#define CHAT_E_BAD_HISTORY  "bad msg: expected {since, with?, limit?} or a number"
#define CHAT_E_BAD_READ     "bad msg: expected {with: uid, mid} or {group: gid, mid}"
#define CHAT_E_NOT_IN_CONV  "no such message in that conversation"
#define CHAT_E_NOT_MEMBER   "not a member"
#define CHAT_E_BAD_SYNC     "bad msg: expected {after: seq >= 0, limit?: 1-500}"
#define CHAT_E_BAD_ORDER    "bad msg: expected an order id"
#define CHAT_E_BAD_SITE     "bad msg: expected {longitude, latitude} in range"
#define CHAT_E_NO_ORDER     "unknown order"
#define CHAT_E_ORDER_TAKEN  "order already taken"
#define CHAT_E_OWN_ORDER    "cannot take your own order"
#define CHAT_E_RATE         "rate limited"
#define CHAT_E_UNAVAILABLE  "temporarily unavailable, retry"
#define CHAT_E_NOT_READY    "not logged in yet"
/* handshake */
#define CHAT_E_NO_TICKET      "no ticket"
#define CHAT_E_BAD_TICKET     "bad ticket"
#define CHAT_E_EXPIRED_TICKET "ticket expired"
#define CHAT_E_WRONG_KIND     "not a websocket ticket"
#define CHAT_E_USED_TICKET    "ticket already used"
#define CHAT_E_TOO_MANY       "too many connections"

struct chatpkt {
    json_t *root;   /* owned; chatpkt_free releases it */
    const char *id; /* borrowed from root; "" when the packet has no usable id */
    size_t id_len;
    char type;   /* the letter; 0 when missing or bad */
    json_t *to;  /* borrowed; NULL when absent */
    json_t *msg; /* borrowed; NULL when absent */
};

/* Parse one frame of len bytes (need not be NUL-terminated). Fills *p in every case (so the caller can
 * answer with p->id where there is one) and returns NULL or the E reason. Free with chatpkt_free. */
const char *chatpkt_parse(const char *buf, size_t len, struct chatpkt *p);
void chatpkt_free(struct chatpkt *p);

/* t and i: a message to a friend. */
struct chat_msg {
    int64_t to;
    const char *body; /* borrowed from the packet */
    size_t body_len;  /* bytes */
};
const char *chatpkt_message(const struct chatpkt *p, int64_t self, struct chat_msg *out);

/* O: msg is a user id, as a number or a string of digits. */
const char *chatpkt_online(const struct chatpkt *p, int64_t *uid);

/* H: {"since": ms, "with"?: uid, "limit"?: n} or a bare ms number. */
struct chat_history {
    int64_t since;
    int64_t with; /* 0 = every peer */
    int limit;
};
const char *chatpkt_history(const struct chatpkt *p, struct chat_history *out);

/* Y: {"after": seq, "limit"?: n}; after an integer >= 0, limit 1..CHAT_SYNC_MAX. */
struct chat_sync {
    int64_t after;
    int limit;
};
const char *chatpkt_sync(const struct chatpkt *p, struct chat_sync *out);

/* R: {"with": uid, "mid": m} or {"group": gid, "mid": m}; mid a positive number or a string of digits;
 * with must not be self. */
struct chat_read {
    int64_t with;  /* 0 when group */
    int64_t group; /* 0 when with */
    int64_t mid;
};
const char *chatpkt_read(const struct chatpkt *p, int64_t self, struct chat_read *out);

/* T: msg is an order id, a string or a positive number; written to order (>= CHAT_MAX_ORDER + 1 bytes). */
const char *chatpkt_order(const struct chatpkt *p, char *order, size_t order_size);

/* S: {"longitude": x, "latitude": y}; seed 001 spells the first "longtitude", which is accepted too.
 * Bounds are Redis GEO's: longitude -180..180, latitude -85.05112878..85.05112878. */
const char *chatpkt_site(const struct chatpkt *p, double *lon, double *lat);

/* Characters (code points) in a valid UTF-8 string of len bytes. */
size_t chatpkt_utf8_chars(const char *s, size_t len);

/* ---- server packets ---- */

/* {"id": id, "from": 0, "type": type, "msg": msg} as a malloc'd compact JSON string (caller frees);
 * msg is stolen. NULL when out of memory. */
char *chatpkt_reply(const char *id, size_t id_len, char type, json_t *msg, size_t *len);

/* The same with extra fields, stolen too (an object, or NULL). */
char *chatpkt_reply_ex(const char *id, size_t id_len, char type, json_t *msg, json_t *extra, size_t *len);

/* ---- between nodes ---- */

/* A chat delivery for another node (CHAN_NODE, private to magpie-push): "<to> <from> <ts>\n<packet>", the
 * packet without seq. The send script puts "<from seq> <to seq> " in front of it when it publishes.
 * Returns a malloc'd payload (caller frees) and its length, or NULL when out of memory. */
char *chatpkt_delivery(int64_t to, int64_t from, int64_t ts, const char *packet, size_t len, size_t *out_len);

/* A delivery as published: "<from seq> <to seq> <to> <from> <ts>\n<packet>". One of the two seqs may be 0:
 * a split send (push/chat_send.c) publishes the sender's part with to seq 0 and the recipient's with from
 * seq 0; a receiving node delivers only to the user whose seq is not 0. */
struct chat_delivery {
    int64_t from_seq, to_seq, to, from, ts;
    const char *packet; /* points into the payload */
    size_t packet_len;
};

/* Take a published delivery apart. Returns 0, or -1 when it is not one (both seqs 0 included). */
int chatpkt_delivery_parse(const char *payload, size_t len, struct chat_delivery *d);

/* A packet for every connection of one user (CHAN_NODE too): "u <uid>\n<packet>", e.g. an r read mark.
 * chatpkt_user_packet_parse returns 0 and points *packet into the payload, or -1 when it is not one. */
#define CHAT_USER_PACKET_HEAD "u %lld\n"
int chatpkt_user_packet_parse(const char *payload, size_t len, int64_t *uid, const char **packet,
                              size_t *packet_len);

/* A group delivery (CHAN_NODE, shared/group_lua.h's GROUP_DELIVERY_HEAD): "g <ts>\n<uid> <seq> <uid> <seq>
 * ...\n<packet>". chatpkt_group_delivery_parse checks all of it (ts > 0, every uid and seq > 0, a packet)
 * and returns 0 with d pointing into the payload, or -1. chatpkt_group_pair_next reads the next pair of a
 * pair list from *p (advanced) up to end: 1 with uid and seq set, 0 at the end, -1 when malformed. */
struct group_delivery {
    int64_t ts;
    const char *pairs, *packet;
    size_t pairs_len, packet_len;
};
int chatpkt_group_delivery_parse(const char *payload, size_t len, struct group_delivery *d);
int chatpkt_group_pair_next(const char **p, const char *end, int64_t *uid, int64_t *seq);

/* A CHAN_CONTROL command (shared/bus.h), parsed: what relay.c acts on. */
enum chat_ctl_cmd { CHAT_CTL_KICK, CHAT_CTL_LOGOUT, CHAT_CTL_DELIVER };
struct chat_control {
    json_t *root; /* owned; chatpkt_control_free releases it */
    enum chat_ctl_cmd cmd;
    int64_t uid;     /* > 0 */
    const char *sid; /* logout: the login token's jti, non-empty; borrowed from root; else NULL */
    json_t *packet;  /* deliver: the server packet, a JSON object; borrowed from root; else NULL */
};

/* Parse one CHAN_CONTROL payload. Returns 0 with *out filled, -1 when it is not a usable command (not a
 * JSON object, no "cmd" string, no positive "uid", a logout without "sid", a deliver without an object
 * "packet"), -2 for a command this node does not know (a newer magpie-http may send one). Call
 * chatpkt_control_free(out) in every case. */
int chatpkt_control_parse(const char *payload, size_t len, struct chat_control *out);
void chatpkt_control_free(struct chat_control *c);

#endif
