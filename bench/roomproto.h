/* roomproto.h -- the client side of Magpie's room protocol (SPEC §5, seed 004): Req packets out, Reply
 * packets in, and the merged delivery: Reply{type MESSAGE, data BroadcastRoomReq} whose BroadcastRoomReq.data
 * holds one or more messages, each a 4-byte little-endian length then the bytes. The protobuf layers are
 * encoded and decoded with protobuf-c's generated code (shared/room.proto, compiled into libmagpie).
 */
#ifndef BENCH_ROOMPROTO_H
#define BENCH_ROOMPROTO_H

#include <stddef.h>
#include <stdint.h>

#define BATCH_HEAD 4 /* bytes of each message's length prefix */

/* Called for each message of a batch. */
typedef void (*batch_fn)(void *arg, const uint8_t *msg, size_t len);

/* Check the whole batch first (every length within the data, nothing left over), then call fn for each
 * message in order. Returns the number of messages (an empty batch has 0), or -1 when the batch is
 * malformed; fn is then never called, so a bad batch is not counted in part. */
long batch_split(const uint8_t *data, size_t n, batch_fn fn, void *arg);

/* What a room Reply from the server says. */
enum room_reply_kind {
    ROOM_REPLY_BAD = -1,   /* not a Reply, or a Reply whose data does not decode as its type requires */
    ROOM_REPLY_RESULT = 0, /* type UNKNOWN with Err: .code (0 = ok) and .msg */
    ROOM_REPLY_PONG = 2,
    ROOM_REPLY_BATCH = 3,   /* type MESSAGE: fn was called for every message of the batch */
    ROOM_REPLY_MEMBERS = 4, /* .members */
    ROOM_REPLY_OTHER = 5,   /* a type we do not know (counted, not fatal) */
};

struct room_reply {
    int code;      /* RESULT: Err.code */
    char msg[128]; /* RESULT: Err.msg (cut) */
    long members;  /* MEMBERS */
    long messages; /* BATCH: messages in the batch */
    int level;     /* BATCH: msgLv */
};

/* Decode one binary frame from /room. */
enum room_reply_kind room_reply_decode(const uint8_t *frame, size_t n, batch_fn fn, void *arg,
                                       struct room_reply *out);

/* Encode Req{type, data} into a malloc'd buffer (caller frees). *len gets its length. NULL on failure. */
uint8_t *room_req_sign_in(const char *token, const char *room, size_t *len);
uint8_t *room_req_heartbeat(size_t *len);
uint8_t *room_req_message(const char *room, const uint8_t *msg, size_t msg_len, int level, size_t *len);

#endif
