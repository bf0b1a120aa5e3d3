/* mqtt.c -- MQTT 3.1.1 on /ws (SPEC §4.3): a client that offers the WebSocket subprotocol mqtt speaks MQTT
 * (binary messages; mqttpkt.h cuts packets out of the byte stream, which may split or join them).
 *
 * No second copy of the rules: like STOMP (stomp.c, and the seam in proto.h), a PUBLISH becomes the JSON
 * packet it means and goes through chat_handle():
 *   PUBLISH user/<uid>   -> {"id", "to": uid, "type": "t", "msg": payload}   (chat_send.c)
 *   PUBLISH group/<gid>  -> {"id", "to": gid, "type": "g", "msg": payload}   (group_send.c)
 * with this connection's id "mq<session>-<n>" (unique in the cluster). The core's answer comes through
 * mqtt_reply(): A is the PUBACK of a QoS 1 PUBLISH (PUBREC for QoS 2, which is served as 1: PUBREL gets
 * PUBCOMP), sent only once stored; E is the PUBACK too (the packet is consumed, as brokers do with a denied
 * publish) plus {"packet_id", "topic", "reason"} as a PUBLISH on me/errors; E "temporarily unavailable,
 * retry" gets no PUBACK: the connection is closed and the client's session sends it again. Deliveries come
 * through mqtt_deliver() as the JSON packet a JSON client gets, and go out as PUBLISH on me/inbox with that
 * packet as the payload, at the QoS the subscription was granted (at most 1).
 *
 * Login: CONNECT with the ticket of §4 as password (the user name is ignored); a bad ticket gets CONNACK 4,
 * a used one or too many connections CONNACK 5, Redis down CONNACK 3, then close. Keep-alive: a client
 * silent for one and a half times its keep-alive is closed (3.1.1 §3.1.2.10). Subscriptions: me/inbox and
 * me/errors (a client may subscribe only to what is its own), and rooms: SUBSCRIBE, UNSUBSCRIBE and PUBLISH
 * on room/<id> go to room_bridge.c (the wire format of room batches is there), which makes the subscription
 * a member of the room hub, holds the SUBACK until the room is ready, and leaves the rooms when the
 * connection ends; anything else -- '#', user/<other> -- gets 0x80 in SUBACK. A malformed packet (remaining
 * length, flags, UTF-8, a wildcard in a PUBLISH topic, over mqtt.max_packet or mqtt.max_topic), a packet
 * before CONNECT, a second CONNECT, a packet type a client may not send: the connection is closed, as the
 * standard asks. Over push.rate: the packet is dropped (PUBACK + me/errors "rate limited" for QoS 1), and
 * push.bad_packet_limit of those close the connection, as for JSON.
 *
 * Not yet (issue 16): clean session 0 (a session resumed from the timeline on reconnect, what was not
 * PUBACKed sent again in order) -- every session is served as clean; will messages are accepted and never
 * published; retained messages are not kept.
 */
#include "mqtt.h"
#include "chat.h"
#include "conn.h"
#include "log.h"
#include "magpie.h"
#include "mqttpkt.h"
#include "push.h"
#include "room_bridge.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MQTT_SWEEP_MS     1000 /* how often keep-alives are checked */
#define MQTT_TOPIC_INBOX  "me/inbox"
#define MQTT_TOPIC_ERRORS "me/errors"
#define MQTT_E_BAD_TOPIC  "unknown topic: user/<uid>, group/<gid> or room/<id>"

/* A PUBLISH waiting for the core's answer. */
struct mpending {
    struct mpending *next;
    uint64_t n;
    int qos;
    unsigned packet_id;
    char *topic;
};

struct mqtt {
    struct conn *c;
    struct mqtt *prev, *next;
    int connected, logging_in;
    unsigned keepalive_s;
    uint8_t *rx; /* bytes of a packet not complete yet */
    size_t rx_len;
    char prefix[32];
    size_t prefix_len;
    uint64_t next_n;
    struct mpending *pending;
    int inbox_qos; /* -1: not subscribed */
    unsigned next_pid;
};

static struct {
    struct mqtt *all;
    uv_timer_t sweep;
    int started;
} M;

/* Queue a packet a builder returned: PUT(m, mqttpkt_x(..., &len_)). */
#define PUT(m, build)                                                                                        \
    do {                                                                                                     \
        size_t len_ = 0;                                                                                     \
        uint8_t *pkt_ = (build);                                                                             \
        put((m), pkt_, len_);                                                                                \
    } while (0)

static void put(struct mqtt *m, uint8_t *pkt, size_t len)
{
    struct frame *f;
    if (pkt == NULL || (f = frame_new(pkt, len, 1)) == NULL) {
        free(pkt);
        conn_abort(m->c, "out of memory");
        return;
    }
    free(pkt);
    conn_send(m->c, f);
    frame_unref(f);
}

/* A broken packet: log and close (MQTT has no error packet). */
static void violation(struct mqtt *m, const char *why)
{
    log_info("mqtt error, closing conn=%llu uid=%lld reason=\"%s\" ip=%s", (unsigned long long)m->c->id,
             (long long)m->c->uid, why, m->c->ip);
    stats_error(STATS_E_MALFORMED);
    conn_close(m->c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "MQTT protocol error");
}

static void send_ack(struct mqtt *m, int qos, unsigned pid)
{
    if (qos > 0)
        PUT(m, mqttpkt_ack_build(qos == 2 ? MQTT_PUBREC : MQTT_PUBACK, pid, &len_));
}

/* {"packet_id", "topic", "reason"} on me/errors (QoS 0). */
static void send_refusal(struct mqtt *m, unsigned pid, const char *topic, const char *why)
{
    json_t *o = json_pack("{s:I,s:s,s:s}", "packet_id", (json_int_t)pid, "topic", topic, "reason", why);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) {
        conn_abort(m->c, "out of memory");
        return;
    }
    PUT(m, mqttpkt_publish_build(MQTT_TOPIC_ERRORS, s, strlen(s), 0, 0, &len_));
    free(s);
}

/* ---- the core's answers and deliveries (proto.h) ---- */

static int mqtt_reply(struct conn *c, char *packet, size_t len)
{
    struct mqtt *m = c->pdata;
    json_t *pkt = json_loadb(packet, len, 0, NULL), *msg = json_object_get(pkt, "msg");
    const char *id = json_string_value(json_object_get(pkt, "id")),
               *type = json_string_value(json_object_get(pkt, "type"));
    const char *why = json_is_string(msg) ? json_string_value(msg) : CHAT_E_UNAVAILABLE;
    struct mpending **pp, *p = NULL;

    free(packet);
    if (m != NULL && id != NULL && strncmp(id, m->prefix, m->prefix_len) == 0) {
        uint64_t n = strtoull(id + m->prefix_len, NULL, 10);
        for (pp = &m->pending; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->n == n) {
                p = *pp;
                *pp = p->next;
                break;
            }
    }
    if (p != NULL) {
        if (type != NULL && type[0] == 'A') {
            send_ack(m, p->qos, p->packet_id);
        } else if (strcmp(why, CHAT_E_UNAVAILABLE) == 0 && p->qos > 0) {
            /* not stored: no PUBACK, so the client's session sends it again on its next connection */
            log_info("mqtt closing: storage unavailable conn=%llu uid=%lld", (unsigned long long)c->id,
                     (long long)c->uid);
            conn_close(c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
        } else {
            send_ack(m, p->qos, p->packet_id);
            send_refusal(m, p->packet_id, p->topic, why);
        }
        free(p->topic);
        free(p);
    }
    json_decref(pkt);
    return MP_OK;
}

static int mqtt_deliver(struct conn *c, struct frame *f)
{
    struct mqtt *m = c->pdata;
    unsigned pid = 0;

    if (m == NULL || !m->connected || m->inbox_qos < 0)
        return MP_EAGAIN;
    if (m->inbox_qos > 0) {
        pid = m->next_pid = m->next_pid % 65535 + 1;
    }
    PUT(m, mqttpkt_publish_build(MQTT_TOPIC_INBOX, frame_payload(f), f->len, m->inbox_qos, pid, &len_));
    return MP_OK;
}

/* ---- packets ---- */

static void drain(struct mqtt *m, int limited);

static void on_login(struct conn *c, enum conn_login_result r)
{
    struct mqtt *m = c->pdata;
    int rc;

    m->logging_in = 0;
    switch (r) {
    case CONN_LOGIN_OK:
        m->connected = 1;
        PUT(m, mqttpkt_connack(0, MQTT_RC_ACCEPTED, &len_));
        log_info("mqtt open conn=%llu uid=%lld ip=%s", (unsigned long long)c->id, (long long)c->uid, c->ip);
        if (m->rx_len > 0) /* packets the client sent right after CONNECT */
            drain(m, 0);
        return;
    case CONN_LOGIN_USED:
    case CONN_LOGIN_TOO_MANY:
        rc = MQTT_RC_NOT_AUTHORIZED;
        stats_error(r == CONN_LOGIN_USED ? STATS_E_TICKET : STATS_E_TOO_MANY);
        break;
    default:
        rc = MQTT_RC_UNAVAILABLE;
        stats_error(STATS_E_UNAVAILABLE);
        break;
    }
    log_info("mqtt refused conn=%llu rc=%d ip=%s", (unsigned long long)c->id, rc, c->ip);
    PUT(m, mqttpkt_connack(0, rc, &len_));
    conn_close(c, rc == MQTT_RC_UNAVAILABLE ? CONN_CLOSE_TRY_AGAIN_LATER : LWS_CLOSE_STATUS_POLICY_VIOLATION,
               "refused");
}

static void do_connect(struct mqtt *m, const struct mqttpkt *p)
{
    struct mqtt_connect cn;
    struct auth_claims claims;
    char ticket[AUTH_MAX_TOKEN + 1];
    const char *why;
    int rc;

    if (m->connected || m->logging_in) {
        violation(m, "second CONNECT");
        return;
    }
    if ((why = mqttpkt_connect(p, &cn, &rc)) != NULL) {
        if (rc >= 0)
            PUT(m, mqttpkt_connack(0, rc, &len_));
        violation(m, why);
        return;
    }
    if (cn.client_id.len == 0 && !cn.clean) { /* 3.1.1 §3.1.3.1 */
        PUT(m, mqttpkt_connack(0, MQTT_RC_BAD_CLIENT_ID, &len_));
        violation(m, "empty client id without clean session");
        return;
    }
    m->keepalive_s = cn.keepalive;
    if (cn.pass.len == 0 || cn.pass.len > AUTH_MAX_TOKEN) {
        why = CHAT_E_NO_TICKET;
    } else {
        memcpy(ticket, cn.pass.s, cn.pass.len);
        ticket[cn.pass.len] = '\0';
        enum auth_result r = auth_verify(&push.auth, ticket, AUTH_KIND_WEBSOCKET, &claims);
        explicit_bzero(ticket, sizeof(ticket));
        if (r == AUTH_OK) {
            m->logging_in = 1;
            conn_login(m->c, claims.uid, claims.sid, claims.jti, on_login);
            return;
        }
        why = chat_ticket_refusal(r);
    }
    log_info("mqtt refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)m->c->id, why, m->c->ip);
    stats_error(STATS_E_TICKET);
    PUT(m, mqttpkt_connack(0, MQTT_RC_BAD_LOGIN, &len_));
    conn_close(m->c, LWS_CLOSE_STATUS_POLICY_VIOLATION, why);
}

/* "user/<uid>" or "group/<gid>" -> type and id; 0 when neither. */
static char parse_topic(const char *t, size_t len, int64_t *to)
{
    static const struct {
        const char *prefix;
        char type;
    } topics[] = {{"user/", 't'}, {"group/", 'g'}};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        size_t n = strlen(topics[i].prefix), k;
        int64_t v = 0;
        if (len <= n || strncmp(t, topics[i].prefix, n) != 0)
            continue;
        for (k = n; k < len && t[k] >= '0' && t[k] <= '9' && k - n < 18; k++)
            v = v * 10 + (t[k] - '0');
        if (k != len || t[n] == '0')
            return 0;
        *to = v;
        return topics[i].type;
    }
    return 0;
}

static void do_publish(struct mqtt *m, const struct mqttpkt *p, int limited)
{
    struct mqtt_publish pub;
    struct mpending *pe;
    struct chatpkt cp;
    const char *why;
    char id[48], *topic;
    int64_t to;
    char type = 0;
    int room;

    if ((why = mqttpkt_publish(p, (size_t)push.cfg->mqtt.max_topic, &pub)) != NULL) {
        violation(m, why);
        return;
    }
    room = !limited && room_bridge_mqtt_topic(pub.topic.s, pub.topic.len);
    if ((topic = strndup(pub.topic.s, pub.topic.len)) == NULL) {
        conn_abort(m->c, "out of memory");
        return;
    }
    if (room) /* a room (room_bridge.h): answered there, or refused below */
        why = room_bridge_mqtt_publish(m->c, pub.topic.s, pub.topic.len, pub.payload, pub.payload_len,
                                       pub.qos, pub.packet_id);
    else if (limited || (type = parse_topic(pub.topic.s, pub.topic.len, &to)) == 0)
        why = limited ? CHAT_E_RATE : MQTT_E_BAD_TOPIC;
    if (why != NULL) {
        if (!limited)
            stats_error(STATS_E_REJECTED);
        send_ack(m, pub.qos, pub.packet_id);
        send_refusal(m, pub.packet_id, topic, why);
        free(topic);
        if (!limited)
            conn_strike(m->c);
        return;
    }
    if (room) {
        free(topic);
        return;
    }
    if ((pe = calloc(1, sizeof(*pe))) == NULL) {
        free(topic);
        conn_abort(m->c, "out of memory");
        return;
    }
    pe->n = ++m->next_n;
    pe->qos = pub.qos;
    pe->packet_id = pub.packet_id;
    pe->topic = topic;
    pe->next = m->pending;
    m->pending = pe;
    snprintf(id, sizeof(id), "%s%llu", m->prefix, (unsigned long long)pe->n);
    memset(&cp, 0, sizeof(cp));
    /* the packet a JSON client would send; a payload that is not UTF-8 makes no string, and the core answers
     * "missing or bad msg" as it would to a JSON client */
    if ((cp.root = json_pack("{s:s,s:I,s:s#}", "id", id, "to", (json_int_t)to, "type", &type, (int)1)) ==
        NULL) {
        conn_abort(m->c, "out of memory");
        return;
    }
    json_object_set_new(cp.root, "msg", json_stringn((const char *)pub.payload, pub.payload_len));
    cp.id = json_string_value(json_object_get(cp.root, "id"));
    cp.id_len = strlen(cp.id);
    cp.type = type;
    cp.to = json_object_get(cp.root, "to");
    cp.msg = json_object_get(cp.root, "msg");
    stats_packet(mqtt_proto.name, type);
    chat_handle(m->c, &cp);
    chatpkt_free(&cp);
}

struct sub_ctx {
    struct mqtt *m;
    uint8_t codes[64];
    size_t n;
    int unsubscribe;
};

static void on_filter(const char *filter, size_t len, int qos, void *arg)
{
    struct sub_ctx *x = arg;
    int inbox = len == strlen(MQTT_TOPIC_INBOX) && memcmp(filter, MQTT_TOPIC_INBOX, len) == 0;
    int errors = len == strlen(MQTT_TOPIC_ERRORS) && memcmp(filter, MQTT_TOPIC_ERRORS, len) == 0;
    uint8_t code = MQTT_SUBACK_FAILURE;

    if (x->unsubscribe) {
        if (inbox)
            x->m->inbox_qos = -1;
        else if (room_bridge_mqtt_topic(filter, len))
            room_bridge_mqtt_unsubscribe(x->m->c, filter, len);
        return;
    }
    if (inbox) {
        x->m->inbox_qos = qos > 1 ? 1 : qos; /* QoS 2 is granted as 1 */
        code = (uint8_t)x->m->inbox_qos;
    } else if (errors) {
        code = 0; /* refusals go out at QoS 0 */
    } else if (room_bridge_mqtt_topic(filter, len)) {
        code = (uint8_t)room_bridge_mqtt_subscribe(x->m->c, filter, len); /* logs and counts a refusal */
    } else {
        log_info("mqtt subscribe refused conn=%llu uid=%lld filter=\"%.*s\"", (unsigned long long)x->m->c->id,
                 (long long)x->m->c->uid, (int)(len > 64 ? 64 : len), filter);
        stats_error(STATS_E_REJECTED);
    }
    if (x->n < sizeof(x->codes))
        x->codes[x->n++] = code;
}

static void do_subscribe(struct mqtt *m, const struct mqttpkt *p, int unsubscribe)
{
    struct sub_ctx x = {.m = m, .unsubscribe = unsubscribe};
    const char *why;
    unsigned pid;

    if ((why = mqttpkt_subscribe(p, !unsubscribe, (size_t)push.cfg->mqtt.max_topic, &pid, on_filter, &x)) !=
        NULL) {
        violation(m, why);
        return;
    }
    if (unsubscribe) {
        PUT(m, mqttpkt_ack_build(MQTT_UNSUBACK, pid, &len_));
    } else {
        size_t len = 0;
        uint8_t *pkt = mqttpkt_suback(pid, x.codes, x.n, &len);
        room_bridge_mqtt_suback(m->c, pkt, len); /* now, or once the rooms it joined are ready */
    }
}

/* One whole packet. Returns 0 to go on with the next, -1 when the connection is closing. */
static int handle(struct mqtt *m, const struct mqttpkt *p, int limited)
{
    const char *why = NULL;
    unsigned pid;

    stats_frame(mqtt_proto.name, mqttpkt_type_name(p->type));
    if (!m->connected && p->type != MQTT_CONNECT) {
        violation(m, "a packet before CONNECT");
        return -1;
    }
    switch (p->type) {
    case MQTT_CONNECT:
        do_connect(m, p);
        break;
    case MQTT_PUBLISH:
        do_publish(m, p, limited);
        break;
    case MQTT_PUBACK: /* deliveries are not tracked yet (no clean session 0): the id is checked only */
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        why = mqttpkt_ack(p, &pid);
        break;
    case MQTT_PUBREL:
        if ((why = mqttpkt_ack(p, &pid)) == NULL)
            PUT(m, mqttpkt_ack_build(MQTT_PUBCOMP, pid, &len_));
        break;
    case MQTT_SUBSCRIBE:
        do_subscribe(m, p, 0);
        break;
    case MQTT_UNSUBSCRIBE:
        do_subscribe(m, p, 1);
        break;
    case MQTT_PINGREQ:
        if ((why = mqttpkt_empty(p)) == NULL)
            PUT(m, mqttpkt_pingresp(&len_));
        break;
    case MQTT_DISCONNECT:
        if ((why = mqttpkt_empty(p)) == NULL) {
            conn_close(m->c, LWS_CLOSE_STATUS_NORMAL, "disconnect");
            return -1;
        }
        break;
    default:
        why = MQTT_E_TYPE;
        break;
    }
    if (why != NULL)
        violation(m, why);
    return conn_open(m->c) || m->logging_in ? 0 : -1;
}

/* Serve the whole packets buffered in m->rx; limited: the first one came over push.rate (the connection
 * layer counted it and takes one of the allowance for it). Stops while a CONNECT is being checked (rx is
 * paused then; on_login serves what is left). */
static void drain(struct mqtt *m, int limited)
{
    size_t max = (size_t)push.cfg->mqtt.max_packet, off = 0, used;
    struct conn *c = m->c;
    struct mqttpkt p;
    const char *why = NULL;
    int first = 1, rc = 0;

    while (!m->logging_in && (rc = mqttpkt_next(m->rx + off, m->rx_len - off, max, &p, &used, &why)) == 1) {
        int over = first ? limited : conn_rate_limited(c);
        if (over && !first) {
            stats_error(STATS_E_RATE);
            if (conn_strike(c))
                return;
        }
        first = 0;
        off += used;
        if (over && p.type != MQTT_PUBLISH) /* dropped; a PUBLISH is refused in MQTT's form */
            continue;
        if (handle(m, &p, over) != 0)
            return; /* closing: what is left is not read */
    }
    if (rc < 0) {
        stats_frame(mqtt_proto.name, "INVALID");
        violation(m, why);
        return;
    }
    memmove(m->rx, m->rx + off, m->rx_len - off);
    m->rx_len -= off;
    if (m->rx_len == 0) {
        free(m->rx);
        m->rx = NULL;
    }
}

static void mqtt_message(struct conn *c, const char *buf, size_t len, int limited)
{
    struct mqtt *m = c->pdata;
    uint8_t *data;

    if (buf == NULL) { /* cannot be (early_rx) */
        violation(m, CHAT_E_NOT_READY);
        return;
    }
    if (m->rx_len + len > (size_t)push.cfg->mqtt.max_packet + 5) { /* more than any good packet */
        stats_frame(mqtt_proto.name, "INVALID");
        violation(m, MQTT_E_TOO_BIG);
        return;
    }
    if ((data = realloc(m->rx, m->rx_len + len)) == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    memcpy(data + m->rx_len, buf, len);
    m->rx = data;
    m->rx_len += len;
    drain(m, limited);
}

/* ---- the connection ---- */

static void mqtt_open(struct conn *c)
{
    struct mqtt *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    m->c = c;
    m->inbox_qos = -1;
    m->prefix_len = (size_t)snprintf(m->prefix, sizeof(m->prefix), "mq%lld-", (long long)id_next(&push.ids));
    c->pdata = m;
    m->next = M.all;
    if (M.all != NULL)
        M.all->prev = m;
    M.all = m;
    conn_accept(c); /* the ticket comes in CONNECT */
}

static void mqtt_goodbye(struct conn *c, const char *why)
{
    (void)c; /* MQTT 3.1.1 has no goodbye from the server: the close frame says why */
    (void)why;
}

static void mqtt_closed(struct conn *c)
{
    struct mqtt *m = c->pdata;
    struct mpending *p, *next;
    room_bridge_closed(c);
    if (m == NULL)
        return;
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        M.all = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    for (p = m->pending; p != NULL; p = next) {
        next = p->next;
        free(p->topic);
        free(p);
    }
    free(m->rx);
    free(m);
    c->pdata = NULL;
}

/* Keep-alive (3.1.1 §3.1.2.10): nothing from the client for one and a half times its keep-alive. */
static void on_sweep(uv_timer_t *t)
{
    uint64_t now = push_now();
    (void)t;
    for (struct mqtt *m = M.all; m != NULL; m = m->next) {
        struct conn *c = m->c;
        if (m->connected && m->keepalive_s > 0 && conn_open(c) &&
            now - c->heard_ms > m->keepalive_s * 1500ULL) {
            log_info("mqtt keep-alive timeout conn=%llu uid=%lld ip=%s", (unsigned long long)c->id,
                     (long long)c->uid, c->ip);
            stats_error(STATS_E_IDLE);
            conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "keep-alive timeout");
        }
    }
}

int mqtt_start(void)
{
    uv_timer_init(push.loop, &M.sweep);
    uv_timer_start(&M.sweep, on_sweep, MQTT_SWEEP_MS, MQTT_SWEEP_MS);
    M.started = 1;
    return MP_OK;
}

void mqtt_stop(void)
{
    if (M.started) {
        M.started = 0;
        uv_timer_stop(&M.sweep);
        uv_close((uv_handle_t *)&M.sweep, NULL);
    }
}

const struct proto mqtt_proto = {
    .name = "mqtt",
    .path = "/ws",
    .binary = 1,
    .early_rx = 1,
    .open = mqtt_open,
    .message = mqtt_message,
    .goodbye = mqtt_goodbye,
    .closed = mqtt_closed,
    .reply = mqtt_reply,
    .deliver = mqtt_deliver,
};
