/* mqttpkt.c -- see mqttpkt.h. */
#include "mqttpkt.h"
#include "magpie.h"

#include <stdlib.h>
#include <string.h>

static const char *const type_names[16] = {
    [MQTT_CONNECT] = "CONNECT",         [MQTT_CONNACK] = "CONNACK",       [MQTT_PUBLISH] = "PUBLISH",
    [MQTT_PUBACK] = "PUBACK",           [MQTT_PUBREC] = "PUBREC",         [MQTT_PUBREL] = "PUBREL",
    [MQTT_PUBCOMP] = "PUBCOMP",         [MQTT_SUBSCRIBE] = "SUBSCRIBE",   [MQTT_SUBACK] = "SUBACK",
    [MQTT_UNSUBSCRIBE] = "UNSUBSCRIBE", [MQTT_UNSUBACK] = "UNSUBACK",     [MQTT_PINGREQ] = "PINGREQ",
    [MQTT_PINGRESP] = "PINGRESP",       [MQTT_DISCONNECT] = "DISCONNECT",
};

const char *mqttpkt_type_name(int type)
{
    return type > 0 && type < 16 && type_names[type] ? type_names[type] : "INVALID";
}

int mqttpkt_next(const uint8_t *buf, size_t len, size_t max_len, struct mqttpkt *p, size_t *used,
                 const char **why)
{
    size_t rl = 0, i;
    unsigned shift = 0;

    if (len < 2)
        return 0;
    for (i = 1;; i++) {
        if (i > 4) {
            *why = MQTT_E_REMAINING;
            return -1;
        }
        if (i >= len)
            return 0;
        rl |= (size_t)(buf[i] & 0x7F) << shift;
        shift += 7;
        if (!(buf[i] & 0x80))
            break;
    }
    if (i > 1 && buf[i] == 0) { /* a non-minimal encoding ends in a zero byte: a length of 0x80 0x00 */
        *why = MQTT_E_REMAINING;
        return -1;
    }
    if (rl > max_len) {
        *why = MQTT_E_TOO_BIG;
        return -1;
    }
    if (len - (i + 1) < rl)
        return 0;
    p->type = buf[0] >> 4;
    p->flags = buf[0] & 0x0F;
    p->body = buf + i + 1;
    p->len = rl;
    *used = i + 1 + rl;
    return 1;
}

/* UTF-8 as MQTT 3.1.1 §1.5.3 wants it: well-formed, no surrogates, no U+0000. */
static int utf8_ok(const uint8_t *s, size_t len)
{
    return memchr(s, 0, len) == NULL && mp_utf8_valid(s, len);
}

/* A reader over one packet's variable part. */
struct rd {
    const uint8_t *p;
    size_t left;
    const char *why;
};

static unsigned rd_u16(struct rd *r)
{
    unsigned v;
    if (r->left < 2) {
        r->why = r->why ? r->why : MQTT_E_SHORT;
        return 0;
    }
    v = (unsigned)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->left -= 2;
    return v;
}

static int rd_u8(struct rd *r)
{
    if (r->left < 1) {
        r->why = r->why ? r->why : MQTT_E_SHORT;
        return 0;
    }
    r->left--;
    return *r->p++;
}

/* A length-prefixed string (utf8: checked as UTF-8). */
static struct mqtt_str rd_str(struct rd *r, int utf8)
{
    struct mqtt_str s = {NULL, 0};
    size_t n = rd_u16(r);
    if (r->why)
        return s;
    if (r->left < n) {
        r->why = MQTT_E_SHORT;
        return s;
    }
    if (utf8 && !utf8_ok(r->p, n)) {
        r->why = MQTT_E_UTF8;
        return s;
    }
    s.s = (const char *)r->p;
    s.len = n;
    r->p += n;
    r->left -= n;
    return s;
}

const char *mqttpkt_connect(const struct mqttpkt *p, struct mqtt_connect *out, int *rc)
{
    struct rd r = {p->body, p->len, NULL};
    struct mqtt_str name;
    int flags;

    memset(out, 0, sizeof(*out));
    *rc = -1;
    if (p->type != MQTT_CONNECT || p->flags != 0)
        return MQTT_E_FLAGS;
    name = rd_str(&r, 1);
    out->level = rd_u8(&r);
    flags = rd_u8(&r);
    out->keepalive = rd_u16(&r);
    if (r.why)
        return r.why;
    if (name.len != 4 || memcmp(name.s, "MQTT", 4) != 0)
        return MQTT_E_PROTOCOL;
    if (out->level != 4) { /* 3.1.1 §3.1.2.2: CONNACK 1, then close */
        *rc = MQTT_RC_BAD_VERSION;
        return MQTT_E_PROTOCOL;
    }
    /* reserved bit 0; will QoS 3; will flags without will; a password without a user name */
    if ((flags & 0x01) || ((flags >> 3) & 3) == 3 || (!(flags & 0x04) && (flags & 0x38)) ||
        ((flags & 0x40) && !(flags & 0x80)))
        return MQTT_E_CONNECT_FLG;
    out->clean = (flags & 0x02) != 0;
    out->will = (flags & 0x04) != 0;
    out->has_user = (flags & 0x80) != 0;
    out->has_pass = (flags & 0x40) != 0;
    out->client_id = rd_str(&r, 1);
    if (out->will) {
        rd_str(&r, 1); /* will topic */
        rd_str(&r, 0); /* will message */
    }
    if (out->has_user)
        out->user = rd_str(&r, 1);
    if (out->has_pass)
        out->pass = rd_str(&r, 0);
    if (r.why)
        return r.why;
    if (r.left != 0)
        return MQTT_E_LONG;
    return NULL;
}

/* A topic name for PUBLISH: 1..max bytes of UTF-8 (checked by rd_str), no wildcard. */
static int topic_ok(struct mqtt_str t, size_t max)
{
    return t.len > 0 && t.len <= max && memchr(t.s, '+', t.len) == NULL && memchr(t.s, '#', t.len) == NULL;
}

const char *mqttpkt_publish(const struct mqttpkt *p, size_t max_topic, struct mqtt_publish *out)
{
    struct rd r = {p->body, p->len, NULL};

    memset(out, 0, sizeof(*out));
    out->dup = (p->flags >> 3) & 1;
    out->qos = (p->flags >> 1) & 3;
    out->retain = p->flags & 1;
    if (out->qos == 3)
        return MQTT_E_QOS;
    out->topic = rd_str(&r, 1);
    if (out->qos > 0)
        out->packet_id = rd_u16(&r);
    if (r.why)
        return r.why;
    if (!topic_ok(out->topic, max_topic))
        return MQTT_E_TOPIC;
    if (out->qos > 0 && out->packet_id == 0)
        return MQTT_E_PACKET_ID;
    out->payload = r.p;
    out->payload_len = r.left;
    return NULL;
}

const char *mqttpkt_ack(const struct mqttpkt *p, unsigned *packet_id)
{
    struct rd r = {p->body, p->len, NULL};
    /* PUBREL has flags 0010 (3.1.1 §3.6.1); the others 0000 */
    if (p->flags != (p->type == MQTT_PUBREL ? 2u : 0u))
        return MQTT_E_FLAGS;
    *packet_id = rd_u16(&r);
    if (r.why)
        return r.why;
    if (r.left != 0)
        return MQTT_E_LONG;
    return *packet_id == 0 ? MQTT_E_PACKET_ID : NULL;
}

/* A topic filter: '#' only last and alone in its level, '+' alone in its level. */
static int filter_ok(struct mqtt_str f, size_t max)
{
    if (f.len == 0 || f.len > max)
        return 0;
    for (size_t i = 0; i < f.len; i++) {
        int start = i == 0 || f.s[i - 1] == '/', end = i + 1 == f.len || f.s[i + 1] == '/';
        if (f.s[i] == '#' && !(start && i + 1 == f.len))
            return 0;
        if (f.s[i] == '+' && !(start && end))
            return 0;
    }
    return 1;
}

const char *mqttpkt_subscribe(const struct mqttpkt *p, int with_qos, size_t max_topic, unsigned *packet_id,
                              void (*fn)(const char *filter, size_t len, int qos, void *arg), void *arg)
{
    struct rd r = {p->body, p->len, NULL};
    int n = 0;

    if (p->flags != 2) /* 3.1.1 §3.8.1, §3.10.1 */
        return MQTT_E_FLAGS;
    *packet_id = rd_u16(&r);
    if (r.why)
        return r.why;
    if (*packet_id == 0)
        return MQTT_E_PACKET_ID;
    while (r.left > 0) {
        struct mqtt_str f = rd_str(&r, 1);
        int qos = 0;
        if (with_qos) {
            qos = rd_u8(&r);
            if (!r.why && qos > 2) /* the reserved bits too */
                return MQTT_E_QOS;
        }
        if (r.why)
            return r.why;
        if (!filter_ok(f, max_topic))
            return MQTT_E_FILTER;
        fn(f.s, f.len, qos, arg);
        n++;
    }
    return n == 0 ? MQTT_E_NO_TOPICS : NULL;
}

const char *mqttpkt_empty(const struct mqttpkt *p)
{
    if (p->flags != 0)
        return MQTT_E_FLAGS;
    return p->len != 0 ? MQTT_E_LONG : NULL;
}

/* ---- building ---- */

/* A packet of type/flags with room for rl bytes after its fixed header; *at = where they go. */
static uint8_t *packet(int type, unsigned flags, size_t rl, uint8_t **at, size_t *len)
{
    uint8_t head[5];
    size_t n = 0, v = rl;
    uint8_t *out;

    head[n++] = (uint8_t)(type << 4 | flags);
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        head[n++] = b | (v ? 0x80 : 0);
    } while (v && n < 5);
    if ((out = malloc(n + rl)) == NULL)
        return NULL;
    memcpy(out, head, n);
    *at = out + n;
    *len = n + rl;
    return out;
}

uint8_t *mqttpkt_connack(int session_present, int rc, size_t *len)
{
    uint8_t *at, *out = packet(MQTT_CONNACK, 0, 2, &at, len);
    if (out != NULL) {
        at[0] = session_present ? 1 : 0;
        at[1] = (uint8_t)rc;
    }
    return out;
}

uint8_t *mqttpkt_publish_build(const char *topic, const void *payload, size_t payload_len, int qos,
                               unsigned packet_id, size_t *len)
{
    size_t tl = strlen(topic), rl = 2 + tl + (qos > 0 ? 2 : 0) + payload_len;
    uint8_t *at, *out = packet(MQTT_PUBLISH, (unsigned)qos << 1, rl, &at, len);
    if (out == NULL)
        return NULL;
    *at++ = (uint8_t)(tl >> 8);
    *at++ = (uint8_t)tl;
    memcpy(at, topic, tl);
    at += tl;
    if (qos > 0) {
        *at++ = (uint8_t)(packet_id >> 8);
        *at++ = (uint8_t)packet_id;
    }
    if (payload_len > 0)
        memcpy(at, payload, payload_len);
    return out;
}

uint8_t *mqttpkt_ack_build(int type, unsigned packet_id, size_t *len)
{
    uint8_t *at, *out = packet(type, type == MQTT_PUBREL ? 2 : 0, 2, &at, len);
    if (out != NULL) {
        at[0] = (uint8_t)(packet_id >> 8);
        at[1] = (uint8_t)packet_id;
    }
    return out;
}

uint8_t *mqttpkt_suback(unsigned packet_id, const uint8_t *codes, size_t n, size_t *len)
{
    uint8_t *at, *out = packet(MQTT_SUBACK, 0, 2 + n, &at, len);
    if (out != NULL) {
        at[0] = (uint8_t)(packet_id >> 8);
        at[1] = (uint8_t)packet_id;
        memcpy(at + 2, codes, n);
    }
    return out;
}

uint8_t *mqttpkt_pingresp(size_t *len)
{
    uint8_t *at, *out = packet(MQTT_PINGRESP, 0, 0, &at, len);
    return out;
}
