/* roompkt.c -- see roompkt.h. */
#include "roompkt.h"
#include "magpie.h"

#include <stdlib.h>
#include <string.h>

/* Length of the UTF-8 sequence starting at s (at most n bytes), or 0 when it is not valid UTF-8: no
 * overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len, i;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int roompkt_room_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, k;

    if (n == 0 || n > ROOM_MAX_ID)
        return 0;
    while (i < n) {
        if (p[i] < 0x20 || p[i] == 0x7F)
            return 0;
        if ((k = utf8_seq(p + i, n - i)) == 0)
            return 0;
        i += k;
    }
    return 1;
}

void roompkt_free(struct roompkt *p)
{
    if (p->req != NULL)
        magpie__req__free_unpacked(p->req, NULL);
    if (p->sign_in != NULL)
        magpie__sign_in__free_unpacked(p->sign_in, NULL);
    if (p->msg != NULL)
        magpie__broadcast_room_req__free_unpacked(p->msg, NULL);
    memset(p, 0, sizeof(*p));
}

static int refuse(struct roompkt *p, int code, const char *why)
{
    p->why = why;
    return code;
}

int roompkt_parse(const void *buf, size_t len, struct roompkt *p)
{
    memset(p, 0, sizeof(*p));
    p->type = -1;
    if ((p->req = magpie__req__unpack(NULL, len, buf)) == NULL)
        return refuse(p, ROOM_E_MALFORMED, ROOM_R_MALFORMED);
    p->type = (int)p->req->type;
    switch (p->type) {
    case MAGPIE__PACKAGE_TYPE__SIGN_IN:
        p->sign_in = magpie__sign_in__unpack(NULL, p->req->data.len, p->req->data.data);
        if (p->sign_in == NULL)
            return refuse(p, ROOM_E_MALFORMED, ROOM_R_BAD_SIGN_IN);
        if (p->sign_in->token[0] == '\0')
            return refuse(p, ROOM_E_SIGN_IN, ROOM_R_NO_TOKEN);
        if (!roompkt_room_ok(p->sign_in->roomid))
            return refuse(p, ROOM_E_BAD_ROOM, ROOM_R_BAD_ROOM);
        return ROOM_OK;
    case MAGPIE__PACKAGE_TYPE__MESSAGE:
        p->msg = magpie__broadcast_room_req__unpack(NULL, p->req->data.len, p->req->data.data);
        if (p->msg == NULL)
            return refuse(p, ROOM_E_MALFORMED, ROOM_R_BAD_MESSAGE);
        if (p->msg->roomid[0] != '\0' && !roompkt_room_ok(p->msg->roomid))
            return refuse(p, ROOM_E_BAD_ROOM, ROOM_R_BAD_ROOM);
        if (p->msg->data.len == 0)
            return refuse(p, ROOM_E_MALFORMED, ROOM_R_EMPTY);
        return ROOM_OK;
    case MAGPIE__PACKAGE_TYPE__HEARTBEAT:
    case MAGPIE__PACKAGE_TYPE__MEMBERS:
        return ROOM_OK; /* data is ignored */
    default:
        return refuse(p, ROOM_E_UNKNOWN_TYPE, ROOM_R_UNKNOWN_TYPE);
    }
}

uint8_t *roompkt_reply(int type, const void *data, size_t data_len, size_t *len)
{
    Magpie__Reply r = MAGPIE__REPLY__INIT;
    uint8_t *out;

    r.type = (Magpie__PackageType)type;
    r.data.data = (uint8_t *)data;
    r.data.len = data_len;
    *len = magpie__reply__get_packed_size(&r);
    if ((out = malloc(*len ? *len : 1)) == NULL)
        return NULL;
    magpie__reply__pack(&r, out);
    return out;
}

uint8_t *roompkt_err(int code, const char *msg, size_t *len)
{
    Magpie__Err e = MAGPIE__ERR__INIT;
    uint8_t *inner, *out;
    size_t n;

    e.code = code;
    e.msg = (char *)msg;
    n = magpie__err__get_packed_size(&e);
    if ((inner = malloc(n ? n : 1)) == NULL)
        return NULL;
    magpie__err__pack(&e, inner);
    out = roompkt_reply(MAGPIE__PACKAGE_TYPE__UNKNOWN, inner, n, len);
    free(inner);
    return out;
}

uint8_t *roompkt_bus_pack(const char *room, int important, const void *msg, size_t msg_len, size_t *len)
{
    Magpie__BroadcastRoomReq b = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    uint8_t *out;

    b.roomid = (char *)room;
    b.msglv = important ? MAGPIE__MSG_LEVEL__IMPORTANT : MAGPIE__MSG_LEVEL__NORMAL;
    b.data.data = (uint8_t *)msg;
    b.data.len = msg_len;
    *len = magpie__broadcast_room_req__get_packed_size(&b);
    if ((out = malloc(*len ? *len : 1)) == NULL)
        return NULL;
    magpie__broadcast_room_req__pack(&b, out);
    return out;
}

Magpie__BroadcastRoomReq *roompkt_bus_parse(const void *buf, size_t len)
{
    Magpie__BroadcastRoomReq *b = magpie__broadcast_room_req__unpack(NULL, len, buf);
    if (b != NULL && b->data.len == 0) {
        magpie__broadcast_room_req__free_unpacked(b, NULL);
        return NULL;
    }
    return b;
}

/* ---- batches ---- */

int roombatch_add(struct roombatch *b, const void *msg, size_t len, int important)
{
    size_t need = b->len + ROOM_LEN_PREFIX + len;
    uint8_t *p;

    if (len > UINT32_MAX || need < b->len)
        return MP_ENOMEM;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        if ((p = realloc(b->buf, cap)) == NULL)
            return MP_ENOMEM;
        b->buf = p;
        b->cap = cap;
    }
    p = b->buf + b->len;
    p[0] = (uint8_t)(len & 0xFF); /* little-endian, as the seed's DataView.setInt32(0, n, true) */
    p[1] = (uint8_t)((len >> 8) & 0xFF);
    p[2] = (uint8_t)((len >> 16) & 0xFF);
    p[3] = (uint8_t)((len >> 24) & 0xFF);
    if (len > 0)
        memcpy(p + ROOM_LEN_PREFIX, msg, len);
    b->len = need;
    b->count++;
    b->important |= important != 0;
    return MP_OK;
}

void roombatch_clear(struct roombatch *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}

static void batch_message(const struct roombatch *b, const char *room, Magpie__BroadcastRoomReq *m)
{
    m->roomid = (char *)room;
    m->msglv = b->important ? MAGPIE__MSG_LEVEL__IMPORTANT : MAGPIE__MSG_LEVEL__NORMAL;
    m->data.data = b->buf;
    m->data.len = b->len;
}

size_t roombatch_packed_size(const struct roombatch *b, const char *room)
{
    Magpie__BroadcastRoomReq m = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    Magpie__Reply r = MAGPIE__REPLY__INIT;

    batch_message(b, room, &m);
    r.type = MAGPIE__PACKAGE_TYPE__MESSAGE;
    r.data.len = magpie__broadcast_room_req__get_packed_size(&m);
    return magpie__reply__get_packed_size(&r);
}

size_t roombatch_pack(const struct roombatch *b, const char *room, uint8_t *out)
{
    Magpie__BroadcastRoomReq m = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    Magpie__Reply r = MAGPIE__REPLY__INIT;
    size_t n;

    batch_message(b, room, &m);
    r.type = MAGPIE__PACKAGE_TYPE__MESSAGE;
    r.data.len = magpie__broadcast_room_req__get_packed_size(&m);
    if ((r.data.data = malloc(r.data.len ? r.data.len : 1)) == NULL)
        return 0;
    magpie__broadcast_room_req__pack(&m, r.data.data);
    n = magpie__reply__pack(&r, out);
    free(r.data.data);
    return n;
}
