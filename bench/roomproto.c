/* roomproto.c -- see roomproto.h. */
#include "roomproto.h"

#include "room.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

long batch_split(const uint8_t *data, size_t n, batch_fn fn, void *arg)
{
    size_t off = 0;
    long count = 0;
    while (off < n) {
        if (n - off < BATCH_HEAD)
            return -1;
        uint32_t len = le32(data + off);
        off += BATCH_HEAD;
        if (len > n - off)
            return -1;
        off += len;
        count++;
    }
    for (off = 0; off < n;) {
        uint32_t len = le32(data + off);
        fn(arg, data + off + BATCH_HEAD, len);
        off += BATCH_HEAD + (size_t)len;
    }
    return count;
}

enum room_reply_kind room_reply_decode(const uint8_t *frame, size_t n, batch_fn fn, void *arg,
                                       struct room_reply *out)
{
    enum room_reply_kind kind = ROOM_REPLY_BAD;
    Magpie__Reply *reply = magpie__reply__unpack(NULL, n, frame);
    memset(out, 0, sizeof(*out));
    if (reply == NULL)
        return ROOM_REPLY_BAD;

    switch (reply->type) {
    case MAGPIE__PACKAGE_TYPE__UNKNOWN: {
        Magpie__Err *err = magpie__err__unpack(NULL, reply->data.len, reply->data.data);
        if (err == NULL)
            break;
        out->code = err->code;
        snprintf(out->msg, sizeof(out->msg), "%s", err->msg ? err->msg : "");
        magpie__err__free_unpacked(err, NULL);
        kind = ROOM_REPLY_RESULT;
        break;
    }
    case MAGPIE__PACKAGE_TYPE__HEARTBEAT:
        kind = ROOM_REPLY_PONG;
        break;
    case MAGPIE__PACKAGE_TYPE__MEMBERS: {
        char num[24];
        if (reply->data.len == 0 || reply->data.len >= sizeof(num))
            break;
        memcpy(num, reply->data.data, reply->data.len);
        num[reply->data.len] = '\0';
        char *end;
        long v = strtol(num, &end, 10);
        if (*end != '\0' || v < 0)
            break;
        out->members = v;
        kind = ROOM_REPLY_MEMBERS;
        break;
    }
    case MAGPIE__PACKAGE_TYPE__MESSAGE: {
        Magpie__BroadcastRoomReq *b =
            magpie__broadcast_room_req__unpack(NULL, reply->data.len, reply->data.data);
        if (b == NULL)
            break;
        long count = batch_split(b->data.data, b->data.len, fn, arg);
        if (count >= 0) {
            out->messages = count;
            out->level = (int)b->msglv;
            kind = ROOM_REPLY_BATCH;
        }
        magpie__broadcast_room_req__free_unpacked(b, NULL);
        break;
    }
    default:
        kind = ROOM_REPLY_OTHER;
        break;
    }
    magpie__reply__free_unpacked(reply, NULL);
    return kind;
}

/* Pack Req{type, data} into a malloc'd buffer. */
static uint8_t *pack_req(Magpie__PackageType type, const uint8_t *data, size_t data_len, size_t *len)
{
    Magpie__Req req = MAGPIE__REQ__INIT;
    req.type = type;
    req.data.data = (uint8_t *)data;
    req.data.len = data_len;
    size_t n = magpie__req__get_packed_size(&req);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return NULL;
    *len = magpie__req__pack(&req, buf);
    return buf;
}

/* Pack Req{type, data = the packed inner message} into a malloc'd buffer. */
static uint8_t *pack_req_of(Magpie__PackageType type, const ProtobufCMessage *inner_msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(inner_msg);
    uint8_t *inner = malloc(n ? n : 1);
    if (inner == NULL)
        return NULL;
    protobuf_c_message_pack(inner_msg, inner);
    uint8_t *out = pack_req(type, inner, n, len);
    free(inner);
    return out;
}

uint8_t *room_req_sign_in(const char *token, const char *room, size_t *len)
{
    Magpie__SignIn s = MAGPIE__SIGN_IN__INIT;
    s.token = (char *)token;
    s.roomid = (char *)room;
    return pack_req_of(MAGPIE__PACKAGE_TYPE__SIGN_IN, &s.base, len);
}

uint8_t *room_req_heartbeat(size_t *len)
{
    return pack_req(MAGPIE__PACKAGE_TYPE__HEARTBEAT, NULL, 0, len);
}

uint8_t *room_req_message(const char *room, const uint8_t *msg, size_t msg_len, int level, size_t *len)
{
    Magpie__BroadcastRoomReq b = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    b.roomid = (char *)room;
    b.msglv = level ? MAGPIE__MSG_LEVEL__IMPORTANT : MAGPIE__MSG_LEVEL__NORMAL;
    b.data.data = (uint8_t *)msg;
    b.data.len = msg_len;
    return pack_req_of(MAGPIE__PACKAGE_TYPE__MESSAGE, &b.base, len);
}
