/* mqtt.c -- MQTT 3.1.1 on /ws (SPEC §4.3): a client that offers the WebSocket subprotocol mqtt speaks MQTT
 * (binary messages; mqttpkt.h cuts packets out of the byte stream, which may split or join them).
 *
 * No second copy of the rules: like STOMP (stomp.c, and the seam in proto.h), a PUBLISH becomes the JSON
 * packet it means and goes through chat_handle():
 *   PUBLISH user/<uid>   -> {"id", "to": uid, "type": "t", "msg": payload}   (chat_send.c)
 *   PUBLISH group/<gid>  -> {"id", "to": gid, "type": "g", "msg": payload}   (group_send.c)
 * with this connection's id "mq<session>.<tag>-<n>" (<session> a server message id, unique in the cluster;
 * <tag> a hash of the CONNECT client id, or of <session> when the client gave none, so a session knows its
 * own messages on every connection it makes). The core's answer comes through
 * mqtt_reply(): A is the PUBACK of a QoS 1 PUBLISH (PUBREC for QoS 2, which is served as 1: PUBREL gets
 * PUBCOMP), sent only once stored; E is the PUBACK too (the packet is consumed, as brokers do with a denied
 * publish) plus {"packet_id", "topic", "reason"} as a PUBLISH on me/errors; E "temporarily unavailable,
 * retry" gets no PUBACK: the connection is closed and the client's session sends it again. Deliveries come
 * through mqtt_deliver() as the JSON packet a JSON client gets, and go out as PUBLISH on me/inbox with that
 * packet as the payload, at the QoS the subscription was granted (at most 1; a delivery without seq -- a
 * read mark r, an order event s -- is not in the timeline and goes out at QoS 0).
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
 * me/inbox and sessions (3.1.1 §3.1.2.4, §4.1, §4.4). The subscription is a struct resume (resume.h, the
 * rules STOMP's ack:client uses too): every entry of the user's timeline goes out once, in seq order,
 * except the session's own messages (its PUBACK told the client). At QoS 1 each entry is a PUBLISH with
 * packet id (seq - 1) % 65535 + 1 -- the same on every connection, so a re-delivery carries its original
 * id -- kept in the in-flight table (packet id -> seq) until its PUBACK, which acknowledges that seq; the
 * acknowledged position moves over a contiguous prefix only. At most mqtt.max_inflight are in flight: the
 * next entries wait and are read from the timeline when PUBACKs make room; those PUBACKs are answers and do
 * not count against push.rate (mqtt_unmetered). QoS 0 tracks nothing. A SUBSCRIBE that starts the
 * subscription gets its SUBACK (and the answers behind it keep their order) once the subscription's place
 * in the timeline is known, so nothing sent after the SUBACK is missed.
 *   clean session 0 (with a client id): the session is the hash field KEY_MQTT_SESSION (uid) / client id,
 *     holding the acknowledged seq, the highest seq sent, and the QoS of its me/inbox subscription (-1:
 *     none): the subscription is part of the session and persists with it, as 3.1.1 says. CONNACK says
 *     session present when the field exists; a session with a QoS 1 subscription then gets, without a new
 *     SUBSCRIBE, everything after the acknowledged seq in order -- what it had not PUBACKed (DUP=1: it was
 *     sent before) and what arrived while it was away (DUP=0) -- then live messages. A SUBSCRIBE of me/inbox
 *     at the same QoS goes on with that flow (§3.8.4); at another QoS it starts over at the timeline's end;
 *     a QoS 0 subscription resumes at the timeline's end (nothing was kept for it). A new session is
 *     written at once (session present 0 now, 1 next time). The position is stored at most once a second
 *     while PUBACKs move it (the sweep), at SUBSCRIBE / UNSUBSCRIBE and when the connection ends; TTL
 *     mqtt.session_ttl_s per session, at most mqtt.max_sessions_per_user per user.
 *   clean session 1: the stored session with that client id is deleted, the connection starts fresh
 *     (session present 0) and nothing is kept when it ends.
 *   A CONNECT with the client id of a connected client of the same user on this node closes that one
 *     first (§3.1.4), storing its position before the new one reads it. On another node it is not closed:
 *     the two share the stored position, which is only ever raised (so at worst a message comes twice).
 * Delivery is at-least-once: a position write lost with a node leaves the older one, and those entries come
 * again (with DUP=0 when the highest sent seq was lost as well).
 *
 * Not yet: will messages are accepted and never published; retained messages are not kept.
 */
#include "mqtt.h"
#include "chat.h"
#include "conn.h"
#include "dlist.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "mqttpkt.h"
#include "push.h"
#include "resume.h"
#include "room_bridge.h"
#include "stats.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MQTT_SWEEP_MS      1000 /* how often keep-alives are checked and moved session positions stored */
#define MQTT_MAX_CLIENT_ID 128  /* bytes; 3.1.1 §3.1.3.1 asks for 1-23, a server may take more */
#define MQTT_TOPIC_INBOX   "me/inbox"
#define MQTT_TOPIC_ERRORS  "me/errors"
#define MQTT_E_BAD_TOPIC   "unknown topic: user/<uid>, group/<gid> or room/<id>"

/* A PUBLISH waiting for the core's answer. */
struct mpending {
    struct mpending *next;
    uint64_t n;
    int qos;
    unsigned packet_id;
    char *topic;
};

/* A QoS 1 PUBLISH on me/inbox sent and not PUBACKed yet. */
struct inflight {
    unsigned pid;
    int64_t seq;
};

struct mqtt {
    struct conn *c;
    struct mqtt *prev, *next;
    int connected, logging_in; /* logging_in: the ticket, then (clean session 0) the stored session */
    int clean;
    unsigned keepalive_s;
    uint8_t *rx; /* bytes of a packet not complete yet */
    size_t rx_len;
    char prefix[48]; /* "mq<session>.<tag>-": the ids of this connection's requests to the core */
    size_t prefix_len;
    char client_id[MQTT_MAX_CLIENT_ID + 1];
    uint64_t next_n;
    struct mpending *pending;
    /* me/inbox: its place in the timeline (resume.h); r.sub is its QoS, -1 not subscribed */
    struct resume r;
    struct inflight *inflight; /* in send order; allocated at the first QoS 1 delivery */
    int ninflight, cap_inflight;
    /* a SUBACK (and the answers behind it) held until the new subscription's place in the timeline is
     * known: a client that publishes (or has others publish) after its SUBACK misses nothing */
    uint8_t *held;
    size_t held_len;
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

/* An answer to a client's packet (SUBACK, UNSUBACK, PINGRESP, PUBCOMP): queued, or kept behind a held
 * SUBACK (hold: start holding with this one) so that the answers keep the order of the packets. */
static void answer(struct mqtt *m, uint8_t *pkt, size_t len, int hold)
{
    if (pkt != NULL && (hold || m->held != NULL)) {
        uint8_t *h = realloc(m->held, m->held_len + len);
        if (h != NULL) {
            memcpy(h + m->held_len, pkt, len);
            m->held = h;
            m->held_len += len;
            free(pkt);
            return;
        }
        free(pkt);
        pkt = NULL;
    }
    put(m, pkt, len);
}

#define ANSWER(m, build)                                                                                     \
    do {                                                                                                     \
        size_t len_ = 0;                                                                                     \
        uint8_t *pkt_ = (build);                                                                             \
        answer((m), pkt_, len_, 0);                                                                          \
    } while (0)

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

/* ---- me/inbox: deliveries, the in-flight window, the session (resume.h) ---- */

static struct mqtt *of_resume(struct resume *r)
{
    return (struct mqtt *)((char *)r - offsetof(struct mqtt, r));
}

/* A timeline entry's packet id: the same on every connection of the session, so a re-delivery after a
 * reconnect uses its original packet id (3.1.1 §4.4). */
static unsigned pid_of(int64_t seq)
{
    return (unsigned)((seq - 1) % 65535) + 1;
}

static int inflight_find(const struct mqtt *m, unsigned pid)
{
    for (int i = 0; i < m->ninflight; i++)
        if (m->inflight[i].pid == pid)
            return i;
    return -1;
}

/* resume ops->room: under mqtt.max_inflight, and the entry's packet id is not in flight (one sent 65535
 * seqs earlier and still not PUBACKed). */
static int inbox_room(struct resume *r, int64_t seq)
{
    struct mqtt *m = of_resume(r);
    return m->ninflight < push.cfg->mqtt.max_inflight && inflight_find(m, pid_of(seq)) < 0;
}

/* resume ops->send: PUBLISH me/inbox, payload = the §4 packet. QoS 1 (with its packet id in flight) for a
 * timeline entry on a QoS 1 subscription, DUP when the session was sent it before; QoS 0 for the rest (a
 * delivery without seq -- a read mark, an order event -- is not in the timeline, so not kept for a
 * session). */
static int send_inbox(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq, int again)
{
    struct mqtt *m = of_resume(r);
    int qos = r->sub == 1 && seq > 0;
    unsigned pid = 0;
    uint8_t *out;
    size_t n = 0;

    (void)pkt;
    if (qos) {
        if (m->ninflight == m->cap_inflight) {
            int cap = m->cap_inflight ? m->cap_inflight * 2 : 16;
            struct inflight *t;
            if (cap > push.cfg->mqtt.max_inflight)
                cap = (int)push.cfg->mqtt.max_inflight;
            if (cap <= m->ninflight) { /* inbox_room() said there was room: cannot be */
                conn_abort(m->c, "in-flight window overflow");
                return MP_ERR;
            }
            if ((t = realloc(m->inflight, (size_t)cap * sizeof(*t))) == NULL) {
                conn_abort(m->c, "out of memory");
                return MP_ENOMEM;
            }
            m->inflight = t;
            m->cap_inflight = cap;
        }
        pid = pid_of(seq);
        m->inflight[m->ninflight].pid = pid;
        m->inflight[m->ninflight++].seq = seq;
    }
    out = mqttpkt_publish_build(MQTT_TOPIC_INBOX, text, len, qos, pid, &n);
    if (out != NULL && qos && again)
        out[0] |= MQTT_FLAG_DUP;
    put(m, out, n);
    return MP_OK;
}

/* resume ops->failed: the catch-up cannot be served now; the client's session reconnects. */
static void inbox_failed(struct resume *r)
{
    struct mqtt *m = of_resume(r);
    log_info("mqtt closing: catch-up unavailable conn=%llu uid=%lld", (unsigned long long)m->c->id,
             (long long)m->c->uid);
    conn_close(m->c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
}

static void session_key(char *buf, size_t size, int64_t uid)
{
    key_tagged(buf, size, KEY_MQTT_SESSION, uid);
}

static const struct resume_ops mqtt_resume = {
    .proto = "mqtt",
    .key = session_key,
    .send = send_inbox,
    .room = inbox_room,
    .failed = inbox_failed,
};

/* PUBACK of a delivery: its seq is acknowledged, and its slot is free. An unknown id (not in flight on this
 * connection) is ignored. */
static void inbox_puback(struct mqtt *m, unsigned pid)
{
    int i = inflight_find(m, pid);
    if (i < 0)
        return;
    resume_ack_one(&m->r, m->inflight[i].seq);
    memmove(m->inflight + i, m->inflight + i + 1, (size_t)(m->ninflight - i - 1) * sizeof(m->inflight[0]));
    m->ninflight--;
    resume_room(&m->r);
}

/* A PUBACK of a delivery in flight: an answer to the server, not counted against push.rate. */
static int owed_puback(const struct mqtt *m, const struct mqttpkt *p)
{
    return p->type == MQTT_PUBACK && p->flags == 0 && p->len == 2 &&
           inflight_find(m, (unsigned)p->body[0] << 8 | p->body[1]) >= 0;
}

/* proto->unmetered: the bytes buffered and this message are PUBACKs (4 bytes each), each of a delivery in
 * flight and no more of them than are in flight, the last one possibly cut short: stock clients write a
 * PUBACK in pieces, one WebSocket message each (mqtt.js: the fixed header, then the packet id). */
static int mqtt_unmetered(struct conn *c, const char *buf, size_t len)
{
    struct mqtt *m = c->pdata;
    size_t total, i;
    uint8_t b[4];

    if (m == NULL || !m->connected || m->rx_len > 3 || len == 0)
        return 0;
    total = m->rx_len + len;
    if (total / 4 > (size_t)m->ninflight)
        return 0;
    for (i = 0; i < total; i++) {
        b[i % 4] = i < m->rx_len ? m->rx[i] : (uint8_t)buf[i - m->rx_len];
        if ((i % 4 == 0 && b[0] != MQTT_PUBACK << 4) || (i % 4 == 1 && b[1] != 2) ||
            (i % 4 == 3 && inflight_find(m, (unsigned)b[2] << 8 | b[3]) < 0))
            return 0;
    }
    return 1;
}

/* SUBSCRIBE me/inbox at qos (0 or 1). The same subscription again goes on as it is (3.1.1 §3.8.4: the flow
 * is not interrupted); another QoS starts over at the timeline's end. */
static void inbox_subscribe(struct mqtt *m, int qos)
{
    if (m->r.state != RESUME_OFF && m->r.sub == qos)
        return;
    m->ninflight = 0;
    m->r.sub = qos;
    resume_begin(&m->r, qos == 1 ? RESUME_ACK_INDIVIDUAL : RESUME_ACK_NONE);
    if (qos == 0)
        resume_store(&m->r, 1); /* QoS 1 is stored once its position is known */
}

static void inbox_unsubscribe(struct mqtt *m)
{
    if (m->r.state == RESUME_OFF)
        return;
    resume_end(&m->r);
    m->ninflight = 0;
    m->r.sub = -1;
    resume_store(&m->r, 1);
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
    if (m != NULL && id != NULL && strncmp(id, m->prefix, m->prefix_len) == 0 && id[m->prefix_len] != '\0' &&
        resume_reply(&m->r, id + m->prefix_len, type != NULL ? type[0] : 0, msg)) {
        if (m->held != NULL && m->r.state != RESUME_LOADING && conn_open(c)) { /* the place is known */
            uint8_t *held = m->held;
            size_t held_len = m->held_len;
            m->held = NULL;
            m->held_len = 0;
            put(m, held, held_len); /* adopted */
        }
    } else if (m != NULL && id != NULL && strncmp(id, m->prefix, m->prefix_len) == 0 &&
               id[m->prefix_len] != '\0') {
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
            json_t *seq = json_object_get(pkt, "seq");
            send_ack(m, p->qos, p->packet_id);
            /* the session's own entry: not sent back to it */
            resume_own_sent(&m->r, json_is_integer(seq) ? json_integer_value(seq) : -1);
        } else {
            resume_own_refused(&m->r);
            if (strcmp(why, CHAT_E_UNAVAILABLE) == 0 && p->qos > 0) {
                /* not stored: no PUBACK, so the client's session sends it again on its next connection */
                log_info("mqtt closing: storage unavailable conn=%llu uid=%lld", (unsigned long long)c->id,
                         (long long)c->uid);
                conn_close(c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
            } else {
                send_ack(m, p->qos, p->packet_id);
                send_refusal(m, p->packet_id, p->topic, why);
            }
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
    if (m == NULL || !m->connected)
        return MP_EAGAIN;
    return resume_deliver(&m->r, f);
}

/* ---- packets ---- */

static void drain(struct mqtt *m, int limited);

/* CONNACK 0: the client is in. */
static void accepted(struct mqtt *m, int session_present)
{
    m->logging_in = 0;
    m->connected = 1;
    PUT(m, mqttpkt_connack(session_present, MQTT_RC_ACCEPTED, &len_));
    log_info("mqtt open conn=%llu uid=%lld clean=%d session_present=%d ip=%s", (unsigned long long)m->c->id,
             (long long)m->c->uid, m->clean, session_present, m->c->ip);
}

/* Refused after the ticket was checked: CONNACK rc, then close. */
static void refused(struct mqtt *m, int rc)
{
    m->logging_in = 0;
    log_info("mqtt refused conn=%llu rc=%d ip=%s", (unsigned long long)m->c->id, rc, m->c->ip);
    PUT(m, mqttpkt_connack(0, rc, &len_));
    conn_close(m->c,
               rc == MQTT_RC_UNAVAILABLE ? CONN_CLOSE_TRY_AGAIN_LATER : LWS_CLOSE_STATUS_POLICY_VIOLATION,
               "refused");
}

/* 3.1.1 §3.1.4: a CONNECT with the client id of a connected client closes that one. Its position is stored
 * first, on the same Redis connection the new one reads it from; then it lets go of the session. That
 * includes a connection that is closing already (a dropped one whose end is not done yet). (A connection of
 * the same session on another node is not closed: each stores only raised positions.) */
static void take_over(struct mqtt *m)
{
    if (m->client_id[0] == '\0')
        return; /* each connection without a client id is a session of its own */
    for (struct mqtt *o = M.all; o != NULL; o = o->next)
        if (o != m && o->connected && o->c->uid == m->c->uid && strcmp(o->client_id, m->client_id) == 0) {
            log_info("mqtt session taken over conn=%llu by conn=%llu uid=%lld", (unsigned long long)o->c->id,
                     (unsigned long long)m->c->id, (long long)m->c->uid);
            resume_store(&o->r, 1);
            o->r.field = NULL;
            resume_end(&o->r);
            if (conn_open(o->c))
                conn_close(o->c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "session taken over");
        }
}

/* resume_load's answer for a clean-session-0 CONNECT. */
static void on_session(struct conn *c, int found, int64_t acked, int64_t sent, int sub)
{
    struct mqtt *m = c->pdata;

    if (m == NULL || !m->logging_in)
        return;
    if (found < 0) {
        stats_error(STATS_E_UNAVAILABLE);
        refused(m, MQTT_RC_UNAVAILABLE);
        return;
    }
    m->r.field = m->client_id;
    accepted(m, found);
    if (!found) {
        m->r.sub = -1;
        resume_store(&m->r, 1); /* the session exists from now on: session present on the next CONNECT */
    } else if (sub == 1) {
        m->r.sub = 1;
        log_info("mqtt session resumed conn=%llu uid=%lld after=%lld sent=%lld", (unsigned long long)c->id,
                 (long long)c->uid, (long long)acked, (long long)sent);
        resume_from(&m->r, RESUME_ACK_INDIVIDUAL, acked, sent);
    } else if (sub == 0) {
        m->r.sub = 0; /* QoS 0: nothing was kept for it; live from the timeline's end */
        resume_begin(&m->r, RESUME_ACK_NONE);
    }
    if (m->rx_len > 0) /* packets the client sent right after CONNECT */
        drain(m, 0);
}

static void on_login(struct conn *c, enum conn_login_result r)
{
    struct mqtt *m = c->pdata;
    int rc;

    switch (r) {
    case CONN_LOGIN_OK:
        take_over(m);
        if (!m->clean) { /* the stored session decides session present, and what comes again */
            if (resume_load(c, &mqtt_resume, m->client_id, push.cfg->mqtt.session_ttl_s, on_session) == MP_OK)
                return;
            stats_error(STATS_E_UNAVAILABLE);
            refused(m, MQTT_RC_UNAVAILABLE);
            return;
        }
        if (m->client_id[0] != '\0') /* 3.1.1 §3.1.2.4: clean session 1 discards the stored session */
            resume_forget(&mqtt_resume, c->uid, m->client_id);
        accepted(m, 0);
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
    refused(m, rc);
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
    if (cn.client_id.len > MQTT_MAX_CLIENT_ID) {
        PUT(m, mqttpkt_connack(0, MQTT_RC_BAD_CLIENT_ID, &len_));
        violation(m, "client id too long");
        return;
    }
    memcpy(m->client_id, cn.client_id.s, cn.client_id.len);
    m->client_id[cn.client_id.len] = '\0';
    m->clean = cn.clean;
    /* The ids of this connection's requests: a client id names the session on every connection it makes
     * (resume.h: its own messages are known by the tag); without one, the connection is the session. */
    {
        char session[24];
        long long n = (long long)id_next(&push.ids);
        snprintf(session, sizeof(session), "%lld", n);
        if (cn.client_id.len > 0)
            resume_tag(m->r.tag, cn.client_id.s, cn.client_id.len);
        else
            resume_tag(m->r.tag, session, strlen(session));
        m->prefix_len = (size_t)snprintf(m->prefix, sizeof(m->prefix), "mq%s%s", session, m->r.tag);
        m->r.prefix_len = m->prefix_len;
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
    char id[96], *topic;
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
    resume_own_begin(&m->r);
    chat_handle(m->c, &cp);
    chatpkt_free(&cp);
}

struct sub_ctx {
    struct mqtt *m;
    uint8_t codes[64];
    size_t n;
    int unsubscribe;
    int inbox; /* me/inbox named: its granted QoS (SUBSCRIBE), 1 (UNSUBSCRIBE); -1 not named */
    int rooms; /* room topics named (SUBSCRIBE) */
};

static void on_filter(const char *filter, size_t len, int qos, void *arg)
{
    struct sub_ctx *x = arg;
    int inbox = len == strlen(MQTT_TOPIC_INBOX) && memcmp(filter, MQTT_TOPIC_INBOX, len) == 0;
    int errors = len == strlen(MQTT_TOPIC_ERRORS) && memcmp(filter, MQTT_TOPIC_ERRORS, len) == 0;
    uint8_t code = MQTT_SUBACK_FAILURE;

    if (x->unsubscribe) {
        if (inbox)
            x->inbox = 1;
        else if (room_bridge_mqtt_topic(filter, len))
            room_bridge_mqtt_unsubscribe(x->m->c, filter, len);
        return;
    }
    if (inbox) {
        x->inbox = qos > 1 ? 1 : qos; /* QoS 2 is granted as 1 */
        code = (uint8_t)x->inbox;
    } else if (errors) {
        code = 0; /* refusals go out at QoS 0 */
    } else if (room_bridge_mqtt_topic(filter, len)) {
        code = (uint8_t)room_bridge_mqtt_subscribe(x->m->c, filter, len); /* logs and counts a refusal */
        x->rooms++;
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
    struct sub_ctx x = {.m = m, .unsubscribe = unsubscribe, .inbox = -1};
    const char *why;
    unsigned pid;
    uint8_t *ack;
    size_t len = 0;

    if ((why = mqttpkt_subscribe(p, !unsubscribe, (size_t)push.cfg->mqtt.max_topic, &pid, on_filter, &x)) !=
        NULL) {
        violation(m, why);
        return;
    }
    /* the subscription changes once the whole packet parsed */
    if (x.inbox >= 0 && unsubscribe)
        inbox_unsubscribe(m);
    else if (x.inbox >= 0)
        inbox_subscribe(m, x.inbox);
    if (unsubscribe)
        ack = mqttpkt_ack_build(MQTT_UNSUBACK, pid, &len);
    else
        ack = mqttpkt_suback(pid, x.codes, x.n, &len);
    /* A SUBACK waits for what it started: the rooms it joined to be ready here (room_bridge.h), or the
     * inbox's start position (answers held behind it keep their order). When a packet starts both, it waits
     * for the position only: a publish to the room right after may then miss the client's own message. */
    if (x.rooms > 0 && ack != NULL && m->r.state != RESUME_LOADING && m->held == NULL)
        room_bridge_mqtt_suback(m->c, ack, len); /* now, or once the rooms it joined are ready */
    else
        answer(m, ack, len, m->r.state == RESUME_LOADING);
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
    case MQTT_PUBACK:
        if ((why = mqttpkt_ack(p, &pid)) == NULL)
            inbox_puback(m, pid);
        break;
    case MQTT_PUBREC: /* deliveries go out at QoS 0 or 1: the id is checked only */
    case MQTT_PUBCOMP:
        why = mqttpkt_ack(p, &pid);
        break;
    case MQTT_PUBREL:
        if ((why = mqttpkt_ack(p, &pid)) == NULL)
            ANSWER(m, mqttpkt_ack_build(MQTT_PUBCOMP, pid, &len_));
        break;
    case MQTT_SUBSCRIBE:
        do_subscribe(m, p, 0);
        break;
    case MQTT_UNSUBSCRIBE:
        do_subscribe(m, p, 1);
        break;
    case MQTT_PINGREQ:
        if ((why = mqttpkt_empty(p)) == NULL)
            ANSWER(m, mqttpkt_pingresp(&len_));
        break;
    case MQTT_DISCONNECT:
        if ((why = mqttpkt_empty(p)) == NULL) {
            resume_store(&m->r, 1); /* now, before the client's next CONNECT can read it */
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
        int over = first ? limited : owed_puback(m, &p) ? 0 : conn_rate_limited(c);
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
    resume_setup(&m->r, &mqtt_resume, c, m->prefix, 0); /* the prefix is made at CONNECT */
    m->r.sub = -1;
    m->r.ttl_s = push.cfg->mqtt.session_ttl_s;
    m->r.max_sessions = push.cfg->mqtt.max_sessions_per_user;
    c->pdata = m;
    DLIST_PUSH(M.all, m, prev, next);
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
    resume_store(&m->r, 1); /* a clean-session-0 session's last position, with what was sent */
    DLIST_UNLINK(M.all, m, prev, next);
    for (p = m->pending; p != NULL; p = next) {
        next = p->next;
        free(p->topic);
        free(p);
    }
    free(m->rx);
    free(m->inflight);
    free(m->held);
    resume_free(&m->r);
    free(m);
    c->pdata = NULL;
}

/* Keep-alive (3.1.1 §3.1.2.10): nothing from the client for one and a half times its keep-alive. And a
 * clean-session-0 position that PUBACKs moved is stored (at most one write a second per session, not one
 * per PUBACK; a node that dies loses at most that second: those messages come again). */
static void on_sweep(uv_timer_t *t)
{
    uint64_t now = push_now();
    (void)t;
    for (struct mqtt *m = M.all; m != NULL; m = m->next) {
        struct conn *c = m->c;
        if (m->connected && conn_open(c))
            resume_store(&m->r, 0);
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
    .unmetered = mqtt_unmetered,
};
