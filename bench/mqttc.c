/* mqttc.c -- see mqttc.h. */
#include "mqttc.h"

#include <stdlib.h>
#include <string.h>

void mqttc_reader_init(struct mqttc_reader *r, size_t max_packet)
{
    memset(r, 0, sizeof(*r));
    r->max_packet = max_packet;
}

void mqttc_reader_free(struct mqttc_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = 0;
}

const char *mqttc_strerror(int err)
{
    switch (err) {
    case MQTTC_E_TYPE:
        return "mqtt: a packet type the server may not send";
    case MQTTC_E_FLAGS:
        return "mqtt: reserved flag bits set";
    case MQTTC_E_LENGTH:
        return "mqtt: malformed remaining length";
    case MQTTC_E_TOOBIG:
        return "mqtt: packet over the limit";
    case MQTTC_E_TOPIC:
        return "mqtt: bad PUBLISH topic";
    case MQTTC_E_CODE:
        return "mqtt: CONNACK or SUBACK code out of range";
    case MQTTC_E_NOMEM:
        return "mqtt: out of memory";
    default:
        return "mqtt: ok";
    }
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), without U+0000
 * (3.1.1 §1.5.3). */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t k;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k) /* the sequence runs past the end */
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* The remaining length at b[1..]: 1 and *len, *hdr (fixed header bytes) when complete, 0 when more bytes
 * are needed, -1 when malformed (a fifth length byte, 3.1.1 §2.2.3). */
static int remaining(const uint8_t *b, size_t n, uint32_t *len, size_t *hdr)
{
    uint32_t v = 0, mult = 1;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= n)
            return 0;
        v += (uint32_t)(b[i] & 0x7F) * mult;
        if (!(b[i] & 0x80)) {
            *len = v;
            *hdr = i + 1;
            return 1;
        }
        mult *= 128;
    }
    return -1;
}

static unsigned u16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Decode one whole packet (fixed header byte b0, body of rem bytes). Returns 0 and fills *p, or an error. */
static int decode(uint8_t b0, const uint8_t *body, uint32_t rem, struct mqttc_packet *p)
{
    int flags = b0 & 0x0F;
    memset(p, 0, sizeof(*p));
    p->type = b0 >> 4;
    switch (p->type) {
    case MQTTC_CONNACK:
        if (flags != 0)
            return MQTTC_E_FLAGS;
        if (rem != 2)
            return MQTTC_E_LENGTH;
        if ((body[0] & 0xFE) != 0 || body[1] > 5)
            return MQTTC_E_CODE;
        p->session = body[0] & 1;
        p->rc = body[1];
        return 0;
    case MQTTC_PUBLISH: {
        size_t tl, off;
        p->qos = (flags >> 1) & 3;
        p->dup = (flags >> 3) & 1;
        p->retain = flags & 1;
        if (p->qos == 3 || (p->qos == 0 && p->dup))
            return MQTTC_E_FLAGS;
        if (rem < 2)
            return MQTTC_E_LENGTH;
        tl = u16(body);
        off = 2 + tl + (p->qos > 0 ? 2 : 0);
        if (off > rem)
            return MQTTC_E_LENGTH;
        p->topic = (const char *)body + 2;
        p->topic_len = tl;
        if (tl == 0 || memchr(p->topic, '+', tl) || memchr(p->topic, '#', tl) || !utf8_ok(body + 2, tl))
            return MQTTC_E_TOPIC;
        if (p->qos > 0) {
            p->packet_id = u16(body + 2 + tl);
            if (p->packet_id == 0)
                return MQTTC_E_CODE;
        }
        p->payload = body + off;
        p->payload_len = rem - off;
        return 0;
    }
    case MQTTC_PUBACK:
    case MQTTC_UNSUBACK:
        if (flags != 0)
            return MQTTC_E_FLAGS;
        if (rem != 2)
            return MQTTC_E_LENGTH;
        p->packet_id = u16(body);
        return 0;
    case MQTTC_SUBACK:
        if (flags != 0)
            return MQTTC_E_FLAGS;
        if (rem < 3)
            return MQTTC_E_LENGTH;
        p->packet_id = u16(body);
        for (uint32_t i = 2; i < rem; i++)
            if (body[i] > 2 && body[i] != 0x80)
                return MQTTC_E_CODE;
        p->payload = body + 2;
        p->payload_len = rem - 2;
        return 0;
    case MQTTC_PINGRESP:
        if (flags != 0)
            return MQTTC_E_FLAGS;
        return rem == 0 ? 0 : MQTTC_E_LENGTH;
    default:
        return MQTTC_E_TYPE;
    }
}

/* Every complete packet at the start of buf. Returns the bytes consumed (>= 0), or an error; *stopped set
 * when fn asked to stop. */
static long consume(struct mqttc_reader *r, const uint8_t *buf, size_t n, mqttc_fn fn, void *arg,
                    int *stopped)
{
    size_t off = 0;
    while (off < n) {
        uint32_t rem;
        size_t hdr;
        struct mqttc_packet p;
        int rc = remaining(buf + off, n - off, &rem, &hdr);
        if (rc < 0)
            return MQTTC_E_LENGTH;
        if (rc == 0)
            break;
        if ((size_t)rem + hdr > r->max_packet)
            return MQTTC_E_TOOBIG;
        if (n - off < hdr + rem)
            break;
        if ((rc = decode(buf[off], buf + off + hdr, rem, &p)) != 0)
            return rc;
        off += hdr + rem;
        if (fn(arg, &p) != 0) {
            *stopped = 1;
            return (long)off;
        }
    }
    return (long)off;
}

int mqttc_feed(struct mqttc_reader *r, const uint8_t *data, size_t n, mqttc_fn fn, void *arg)
{
    const uint8_t *buf = data;
    size_t len = n;
    int stopped = 0;
    if (r->len > 0) { /* an incomplete packet is waiting: join */
        if (r->len + n > r->cap) {
            size_t cap = r->cap ? r->cap : 256;
            while (cap < r->len + n)
                cap *= 2;
            uint8_t *b = realloc(r->buf, cap);
            if (b == NULL)
                return MQTTC_E_NOMEM;
            r->buf = b;
            r->cap = cap;
        }
        memcpy(r->buf + r->len, data, n);
        r->len += n;
        buf = r->buf;
        len = r->len;
    }
    long used = consume(r, buf, len, fn, arg, &stopped);
    if (used < 0)
        return (int)used;
    if (stopped) /* r is not touched again: the callback may have freed it with its connection */
        return 1;
    size_t left = len - (size_t)used;
    if (left > r->max_packet)
        return MQTTC_E_TOOBIG;
    if (buf == r->buf) {
        memmove(r->buf, r->buf + used, left);
    } else if (left > 0) {
        if (left > r->cap) {
            uint8_t *b = realloc(r->buf, left < 256 ? 256 : left);
            if (b == NULL)
                return MQTTC_E_NOMEM;
            r->buf = b;
            r->cap = left < 256 ? 256 : left;
        }
        memcpy(r->buf, data + used, left);
    }
    r->len = left;
    if (left == 0 && r->cap > 4096) { /* a big packet passed: give the memory back */
        mqttc_reader_free(r);
    }
    return 0;
}

/* ---- encoders ---- */

/* Fixed header: type/flags byte and the remaining length. Returns its size, 0 when rem is too large. */
static size_t put_header(uint8_t *out, uint8_t b0, size_t rem)
{
    size_t i = 1;
    if (rem > MQTTC_MAX_REMAIN)
        return 0;
    out[0] = b0;
    do {
        uint8_t d = rem % 128;
        rem /= 128;
        out[i++] = (uint8_t)(d | (rem > 0 ? 0x80 : 0));
    } while (rem > 0);
    return i;
}

static size_t header_len(size_t rem)
{
    return rem < 128 ? 2 : rem < 16384 ? 3 : rem < 2097152 ? 4 : 5;
}

static uint8_t *put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t n)
{
    p = put_u16(p, (unsigned)n);
    memcpy(p, s, n);
    return p + n;
}

size_t mqttc_connect(uint8_t *out, size_t cap, const char *client_id, const char *user, const char *pass,
                     unsigned keepalive_s, int clean)
{
    size_t cl = strlen(client_id), ul = user ? strlen(user) : 0, pl = pass ? strlen(pass) : 0;
    if (cl > 65535 || ul > 65535 || pl > 65535 || keepalive_s > 65535 || (pass && !user))
        return 0; /* 3.1.1 §3.1.2.9: a password needs a user name */
    size_t rem = 10 + 2 + cl + (user ? 2 + ul : 0) + (pass ? 2 + pl : 0);
    size_t total = header_len(rem) + rem;
    if (total > cap)
        return 0;
    uint8_t *p = out + put_header(out, 0x10, rem);
    p = put_str(p, "MQTT", 4);
    *p++ = 4; /* protocol level: 3.1.1 */
    *p++ = (uint8_t)((user ? 0x80 : 0) | (pass ? 0x40 : 0) | (clean ? 0x02 : 0));
    p = put_u16(p, keepalive_s);
    p = put_str(p, client_id, cl);
    if (user)
        p = put_str(p, user, ul);
    if (pass)
        p = put_str(p, pass, pl);
    return (size_t)(p - out);
}

size_t mqttc_subscribe(uint8_t *out, size_t cap, unsigned packet_id, const char *filter, int qos)
{
    size_t fl = strlen(filter), rem = 2 + 2 + fl + 1;
    if (packet_id == 0 || packet_id > 65535 || fl == 0 || fl > 65535 || qos < 0 || qos > 2 ||
        header_len(rem) + rem > cap)
        return 0;
    uint8_t *p = out + put_header(out, 0x82, rem); /* SUBSCRIBE's reserved flags are 0010 */
    p = put_u16(p, packet_id);
    p = put_str(p, filter, fl);
    *p++ = (uint8_t)qos;
    return (size_t)(p - out);
}

size_t mqttc_publish(uint8_t *out, size_t cap, const char *topic, const void *payload, size_t len, int qos,
                     unsigned packet_id)
{
    size_t tl = strlen(topic), rem = 2 + tl + (qos > 0 ? 2 : 0) + len;
    if (tl == 0 || tl > 65535 || qos < 0 || qos > 2 || (qos > 0 && (packet_id == 0 || packet_id > 65535)) ||
        rem > MQTTC_MAX_REMAIN || header_len(rem) + rem > cap)
        return 0;
    uint8_t *p = out + put_header(out, (uint8_t)(0x30 | qos << 1), rem);
    p = put_str(p, topic, tl);
    if (qos > 0)
        p = put_u16(p, packet_id);
    memcpy(p, payload, len);
    return (size_t)(p + len - out);
}

size_t mqttc_puback(uint8_t *out, size_t cap, unsigned packet_id)
{
    if (cap < 4 || packet_id == 0 || packet_id > 65535)
        return 0;
    out[0] = 0x40;
    out[1] = 2;
    put_u16(out + 2, packet_id);
    return 4;
}

size_t mqttc_pingreq(uint8_t *out, size_t cap)
{
    if (cap < 2)
        return 0;
    out[0] = 0xC0;
    out[1] = 0;
    return 2;
}

size_t mqttc_disconnect(uint8_t *out, size_t cap)
{
    if (cap < 2)
        return 0;
    out[0] = 0xE0;
    out[1] = 0;
    return 2;
}
