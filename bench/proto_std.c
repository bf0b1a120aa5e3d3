/* proto_std.c -- the standard protocols (SPEC §4.3) as a client speaks them: STOMP 1.2 and MQTT 3.1.1 over
 * WebSocket to magpie-push, and plain MQTT over TCP to a broker (mosquitto), with the same loop, payload and
 * schedule as every other protocol of magpie-bench.
 *
 * magpie-stomp: the upgrade offers the subprotocol v12.stomp (and must be answered with it). CONNECT with the
 * ticket of §4 (a fresh single-use one per connection, as magpie-chat mints) in passcode and heart-beat:0,0;
 * on CONNECTED, SUBSCRIBE /user/queue/messages (ack:auto) with a receipt, whose RECEIPT makes the connection
 * ready. A chat message is SEND destination:/user/<partner> with the message's payload id (payload.h) as its
 * receipt header: the RECEIPT -- sent only once the message is stored, the durable ack -- gives the id back,
 * so it is timed like an A with no state kept; an ERROR with that receipt-id is the refusal (E). Deliveries
 * are MESSAGE frames whose body is the §4 packet a JSON client gets, timed like a t.
 *
 * magpie-mqtt: subprotocol mqtt. CONNECT (clean session, keep-alive 3 x --heartbeat-s, PINGREQ every
 * --heartbeat-s) with the ticket as password; on CONNACK 0, SUBSCRIBE me/inbox at QoS 1, whose SUBACK makes
 * the connection ready. A chat message is PUBLISH user/<partner> at QoS 1; its PUBACK, sent only once stored,
 * is the durable ack. PUBACK names only a 16-bit packet id, so each connection keeps its PUBLISHes in flight
 * in order (id, step, seq, schedule) and times the PUBACK against its entry. A refused PUBLISH is PUBACKed
 * too (§4.3: the packet is consumed) and followed by {"packet_id", "topic", "reason"} on me/errors: that
 * counts the message as refused (send_errors) and takes its PUBACK back out of the expected deliveries
 * (acked_refused). Deliveries are PUBLISHes on me/inbox at QoS 1 whose payload is the §4 packet; each is
 * PUBACKed, as a client must.
 *
 * Rooms over STOMP and MQTT (the wire format is room_bridge.c's top comment in push/): every connection,
 * publishers too (only a member may send to its room), joins the run's room -- SUBSCRIBE
 * /topic/room.<room> (RECEIPT: ready) or SUBSCRIBE room/<room> (SUBACK, granted QoS 0: ready). A publisher
 * sends SEND /topic/room.<room> (receipt = the payload id: its RECEIPT says Redis took it, an ERROR with that
 * receipt-id is a refusal) or PUBLISH room/<room> at --mqtt-qos (0; a refusal comes on me/errors). A batch
 * arrives as one WebSocket message of MESSAGE frames / PUBLISH packets, one per room message, the body or
 * payload the message itself; each is counted and timed, and the WebSocket message is the "frame"
 * (deliveries per frame shows Magpie's batching, as for magpie-room).
 *
 * mosquitto (plain MQTT over TCP, no ticket: the broker runs with allow_anonymous): idle subscribes each
 * connection to a topic of its own ("<room>/u<idx>", QoS 1, as each Magpie user has their own inbox); room
 * subscribes the members to the topic "<room>" and the publishers (not subscribed: a broker needs no
 * membership) PUBLISH the payload itself to it, both at --mqtt-qos (0 by default, as room messages are live
 * in Magpie too; with 1 every delivery is PUBACKed by the receiver and every publish answered by the broker's
 * PUBACK, which is not timed). A "frame" is one read of the socket.
 */
#include "bench.h"
#include "mqttc.h"
#include "stompc.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STD_PACKET_MAX    (PAYLOAD_MAX + 512)
#define STOMP_SUB_RECEIPT "sub-0"
#define STOMP_INBOX       "/user/queue/messages"
#define MQTT_INBOX        "me/inbox"
#define MQTT_ERRORS       "me/errors"
#define MQTT_INFLIGHT_MAX 60000 /* PUBLISHes awaiting PUBACK per connection: under the 65,535 packet ids */

static int64_t conn_uid(const struct worker *w, const struct conn *c)
{
    return worker_opts(w)->uid_base + (int64_t)c->idx;
}

/* Write one protocol message: a binary WebSocket message, or the bytes themselves on a raw TCP connection. */
static int std_write(struct worker *w, struct conn *c, int opcode, const void *data, size_t len)
{
    if (c->raw)
        return conn_write(w, c, data, len);
    return conn_ws_send(w, c, opcode, data, len);
}

static int std_path(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    const struct bench_opts *o = worker_opts(w);
    int n = snprintf(buf, cap, "%s", o->urls[c->idx % (uint32_t)o->nurls].path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* A delivered §4 packet (a STOMP MESSAGE body, an MQTT me/inbox payload): a t from the partner carries a
 * bench message. */
static void deliver_packet(struct worker *w, struct conn *c, const char *data, size_t len, int64_t now)
{
    struct bench_report *rep = worker_report(w);
    json_error_t err;
    json_t *pkt = json_loadb(data, len, 0, &err);
    json_t *msg = json_object_get(pkt, "msg");
    const char *type = json_string_value(json_object_get(pkt, "type"));
    rep->frames++;
    if (pkt == NULL || type == NULL) {
        rep->proto_errors++;
        bench_note_error(w, "%s: a delivery that is not a packet: %s",
                         worker_opts(w)->scenario == SC_CHAT ? "chat" : "idle",
                         pkt == NULL ? err.text : "no type");
    } else if (strcmp(type, "t") == 0 && json_is_string(msg) &&
               json_integer_value(json_object_get(pkt, "from")) ==
                   worker_opts(w)->uid_base + (int64_t)(c->idx ^ 1u)) {
        bench_delivered(w, c, (const uint8_t *)json_string_value(msg), json_string_length(msg), now);
    } else {
        rep->foreign++; /* r, s, ... or someone else's: not part of the load */
    }
    json_decref(pkt);
}

/* ---- STOMP ------------------------------------------------------------------------------------------- */

static void stomp_open(struct worker *w, struct conn *c)
{
    const struct bench_opts *o = worker_opts(w);
    char frame[4096];
    char *ticket = auth_issue(&o->auth, AUTH_KIND_WEBSOCKET, conn_uid(w, c), o->ticket_ttl_s, NULL, NULL);
    if (ticket == NULL) {
        conn_fail(w, c, FR_LOGIN, "cannot mint a ticket");
        return;
    }
    const char *h[] = {
        "accept-version", "1.2", "host", o->urls[c->idx % (uint32_t)o->nurls].hostport, "passcode", ticket,
        "heart-beat",     "0,0", NULL};
    size_t n = stompc_build(frame, sizeof(frame), "CONNECT", h, NULL, 0);
    free(ticket);
    if (n == 0) {
        conn_fail(w, c, FR_LOGIN, "CONNECT frame too long");
        return;
    }
    conn_ws_send(w, c, WSF_TEXT, frame, n);
}

/* The connection's one subscription: its inbox, or (room) the run's room, which publishers join too: a
 * member may send to its room only (room_bridge.c). */
static void stomp_subscribe(struct worker *w, struct conn *c)
{
    char frame[512], dest[200];
    if (worker_opts(w)->scenario == SC_ROOM)
        snprintf(dest, sizeof(dest), "/topic/room.%s", bench_room(w));
    else
        snprintf(dest, sizeof(dest), "%s", STOMP_INBOX);
    const char *h[] = {"id", "0", "destination", dest, "ack", "auto", "receipt", STOMP_SUB_RECEIPT, NULL};
    size_t n = stompc_build(frame, sizeof(frame), "SUBSCRIBE", h, NULL, 0);
    conn_ws_send(w, c, WSF_TEXT, frame, n);
}

/* One frame from the server. Returns 1 when it was a room delivery. */
static int stomp_frame(struct worker *w, struct conn *c, const struct stompc_frame *fp, int64_t now)
{
    struct bench_report *rep = worker_report(w);
    const struct stompc_frame f = *fp;
    char rid[PAYLOAD_ID_MAX + 1], why[200];
    long have_rid = stompc_value(&f, "receipt-id", rid, sizeof(rid));
    switch (f.cmd) {
    case STOMPC_HEARTBEAT:
        break;
    case STOMPC_CONNECTED:
        if (c->state != CS_OPEN) {
            rep->proto_errors++;
            bench_note_error(w, "stomp: a second CONNECTED");
            break;
        }
        stomp_subscribe(w, c);
        break;
    case STOMPC_RECEIPT: {
        struct payload p = {.pub = c->idx};
        if (have_rid < 0) {
            rep->proto_errors++;
            bench_note_error(w, "stomp: RECEIPT without receipt-id");
        } else if (strcmp(rid, STOMP_SUB_RECEIPT) == 0) {
            if (c->state == CS_OPEN)
                conn_ready(w, c);
        } else if (payload_id_parse(rid, (size_t)have_rid, &p) == 0 && p.run == worker_opts(w)->run) {
            if (worker_opts(w)->scenario == SC_CHAT) /* room: Redis took it (not stored): not a durable ack */
                bench_acked(w, c, &p, now);
        } else {
            rep->proto_errors++;
            bench_note_error(w, "stomp: RECEIPT for a receipt we did not ask");
        }
        break;
    }
    case STOMPC_ERROR: {
        char msg[150];
        if (stompc_value(&f, "message", msg, sizeof(msg)) < 0)
            snprintf(msg, sizeof(msg), "%.*s", (int)(f.body_len > 140 ? 140 : f.body_len), f.body);
        snprintf(why, sizeof(why), "stomp ERROR: %s", msg);
        if (c->state == CS_OPEN) {
            conn_fail(w, c, FR_LOGIN, why);
        } else if (have_rid >= 0 && strcmp(rid, STOMP_SUB_RECEIPT) != 0) {
            rep->send_errors++; /* a SEND refused (E): the connection stays open */
            bench_note_error(w, "%s", why);
        } else {
            rep->proto_errors++;
            bench_note_error(w, "%s", why);
        }
        break;
    }
    case STOMPC_MESSAGE: {
        char sub[16];
        if (stompc_value(&f, "subscription", sub, sizeof(sub)) < 0 || strcmp(sub, "0") != 0) {
            rep->proto_errors++;
            bench_note_error(w, "stomp: MESSAGE for a subscription we did not make");
            break;
        }
        if (worker_opts(w)->scenario == SC_ROOM) { /* the body is the message itself (room_bridge.c) */
            bench_delivered(w, c, (const uint8_t *)f.body, f.body_len, now);
            return 1;
        }
        deliver_packet(w, c, f.body, f.body_len, now);
        break;
    }
    default:
        break;
    }
    return 0;
}

/* A WebSocket message: one frame, or a room batch's frames one after the other. */
static void stomp_message(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct stompc_frame f;
    int64_t now = bench_now_ns();
    size_t off = 0, used = 0;
    int room = 0;
    while (off < len && c->state != CS_DONE) {
        int rc = stompc_parse((const char *)data + off, len - off, &f, &used);
        if (rc != 0) {
            if (c->state == CS_OPEN) {
                conn_fail(w, c, FR_PROTOCOL, stompc_strerror(rc));
                return;
            }
            worker_report(w)->proto_errors++;
            bench_note_error(w, "%s", stompc_strerror(rc));
            return;
        }
        off += used;
        room |= stomp_frame(w, c, &f, now);
    }
    if (room && !c->publisher)
        worker_report(w)->frames++; /* one WebSocket message per batch: deliveries per frame shows batching */
}

static int stomp_send(struct worker *w, struct conn *c, const struct payload *p, const char *text, size_t len)
{
    static char frame[STD_PACKET_MAX];
    char id[PAYLOAD_ID_MAX + 1], dest[200];
    if (payload_id_format(id, sizeof(id), p) < 0)
        return -1;
    if (worker_opts(w)->scenario == SC_ROOM)
        snprintf(dest, sizeof(dest), "/topic/room.%s", bench_room(w));
    else
        snprintf(dest, sizeof(dest), "/user/%lld", (long long)bench_recipient(worker_opts(w), c->idx));
    const char *h[] = {"destination", dest, "receipt", id, "content-type", "text/plain", NULL};
    size_t n = stompc_build(frame, sizeof(frame), "SEND", h, text, len);
    if (n == 0)
        return -1;
    return conn_ws_send(w, c, WSF_TEXT, frame, n);
}

const struct proto proto_magpie_stomp = {
    .name = "magpie-stomp",
    .subprotocol = "v12.stomp",
    .path = std_path,
    .on_open = stomp_open,
    .on_message = stomp_message,
    .send = stomp_send,
};

/* ---- MQTT -------------------------------------------------------------------------------------------- */

struct inflight {
    uint16_t pid;
    uint8_t done;
    uint32_t step;
    uint64_t seq;
    int64_t sched_ns;
};

struct mq {
    struct mqttc_reader rd;
    unsigned next_pid;
    struct inflight *ring; /* PUBLISHes awaiting PUBACK, oldest at head (a power-of-two ring) */
    uint32_t head, n, cap;
};

static int is_mosquitto(const struct worker *w)
{
    return worker_opts(w)->proto == PROTO_MOSQUITTO;
}

/* What this connection subscribes to ("" = nothing: a mosquitto publisher) and at which QoS. */
static int mqtt_filter(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    const struct bench_opts *o = worker_opts(w);
    if (!is_mosquitto(w) && o->scenario == SC_ROOM) { /* publishers too: only members send to a room */
        snprintf(buf, cap, "room/%s", bench_room(w));
        return 0; /* granted 0 whatever is asked: room messages are live (room_bridge.c) */
    }
    if (!is_mosquitto(w)) {
        snprintf(buf, cap, "%s", MQTT_INBOX);
        return 1;
    }
    if (o->scenario == SC_IDLE) {
        snprintf(buf, cap, "%s/u%u", bench_room(w), c->idx);
        return 1;
    }
    snprintf(buf, cap, "%s", c->publisher ? "" : bench_room(w));
    return o->mqtt_qos;
}

static unsigned next_pid(struct mq *m)
{
    m->next_pid = m->next_pid % 65535 + 1;
    return m->next_pid;
}

static void mqtt_open(struct worker *w, struct conn *c)
{
    const struct bench_opts *o = worker_opts(w);
    uint8_t pkt[4096];
    char cid[40], user[24];
    struct mq *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        conn_fail(w, c, FR_LOGIN, "out of memory");
        return;
    }
    mqttc_reader_init(&m->rd, BENCH_MAX_MSG);
    c->ps = m;
    snprintf(cid, sizeof(cid), "mb%08x-%u", o->run, c->idx);
    snprintf(user, sizeof(user), "%lld", (long long)conn_uid(w, c));
    double ka = ceil(o->heartbeat_s * 3);
    char *ticket = NULL;
    if (!is_mosquitto(w) && (ticket = auth_issue(&o->auth, AUTH_KIND_WEBSOCKET, conn_uid(w, c),
                                                 o->ticket_ttl_s, NULL, NULL)) == NULL) {
        conn_fail(w, c, FR_LOGIN, "cannot mint a ticket");
        return;
    }
    /* 3.1.1 §3.1.2.9: a password needs a user name; Magpie ignores the name, the ticket says who this is */
    size_t n = mqttc_connect(pkt, sizeof(pkt), cid, ticket ? user : NULL, ticket,
                             ka > 65535 ? 65535 : (unsigned)ka, 1);
    free(ticket);
    if (n == 0) {
        conn_fail(w, c, FR_LOGIN, "CONNECT packet too long");
        return;
    }
    std_write(w, c, WSF_BINARY, pkt, n);
}

/* The PUBACK of one of our PUBLISHes: time it against its entry in the ring. */
static void mqtt_acked(struct worker *w, struct conn *c, struct mq *m, unsigned pid, int64_t now)
{
    for (uint32_t i = 0; i < m->n; i++) {
        struct inflight *e = &m->ring[(m->head + i) & (m->cap - 1)];
        if (e->done || e->pid != pid)
            continue;
        e->done = 1;
        struct payload p = {.run = worker_opts(w)->run,
                            .step = e->step,
                            .pub = c->idx,
                            .seq = e->seq,
                            .sched_ns = e->sched_ns};
        bench_acked(w, c, &p, now);
        while (m->n > 0 && m->ring[m->head].done) {
            m->head = (m->head + 1) & (m->cap - 1);
            m->n--;
        }
        return;
    }
    worker_report(w)->proto_errors++;
    bench_note_error(w, "mqtt: PUBACK %u for no PUBLISH in flight", pid);
}

/* {"packet_id", "topic", "reason"} on me/errors: a PUBLISH refused (its PUBACK came already). */
static void mqtt_refused(struct worker *w, const struct mqttc_packet *p)
{
    struct bench_report *rep = worker_report(w);
    json_t *j = json_loadb((const char *)p->payload, p->payload_len, 0, NULL);
    const char *why = json_string_value(json_object_get(j, "reason"));
    rep->send_errors++;
    if (worker_opts(w)->scenario == SC_CHAT) /* a chat PUBLISH is QoS 1: its PUBACK came first */
        rep->acked_refused++;
    bench_note_error(w, "mqtt refused: %s", why ? why : "(no reason)");
    json_decref(j);
}

struct mq_ctx {
    struct worker *w;
    struct conn *c;
    int64_t now;
    int deliveries;
};

static int on_mqtt(void *arg, const struct mqttc_packet *p)
{
    struct mq_ctx *x = arg;
    struct worker *w = x->w;
    struct conn *c = x->c;
    struct mq *m = c->ps;
    struct bench_report *rep = worker_report(w);
    uint8_t pkt[512];
    char why[160];
    size_t n;

    switch (p->type) {
    case MQTTC_CONNACK: {
        char filter[200];
        int qos;
        if (c->state != CS_OPEN) {
            rep->proto_errors++;
            bench_note_error(w, "mqtt: a second CONNACK");
            break;
        }
        if (p->rc != 0) {
            snprintf(why, sizeof(why), "mqtt CONNACK %d (refused)", p->rc);
            conn_fail(w, c, FR_LOGIN, why);
            break;
        }
        qos = mqtt_filter(w, c, filter, sizeof(filter));
        if (filter[0] == '\0') { /* a mosquitto publisher: connected is ready */
            conn_ready(w, c);
            break;
        }
        n = mqttc_subscribe(pkt, sizeof(pkt), next_pid(m), filter, qos);
        std_write(w, c, WSF_BINARY, pkt, n);
        break;
    }
    case MQTTC_SUBACK:
        if (c->state != CS_OPEN)
            break;
        if (p->payload_len != 1 || p->payload[0] == 0x80) {
            conn_fail(w, c, FR_LOGIN, "mqtt SUBACK refused the subscription (0x80)");
            break;
        }
        conn_ready(w, c);
        break;
    case MQTTC_PUBACK:
        /* only a chat PUBLISH's PUBACK is a durable ack; in a room (mosquitto's or Magpie's, at --mqtt-qos 1)
         * it says the broker took the message */
        if (worker_opts(w)->scenario == SC_CHAT)
            mqtt_acked(w, c, m, p->packet_id, x->now);
        break;
    case MQTTC_PUBLISH:
        if (p->qos > 0 && (n = mqttc_puback(pkt, sizeof(pkt), p->packet_id)) > 0)
            std_write(w, c, WSF_BINARY, pkt, n);
        if (c->state == CS_DONE)
            break;
        if (!is_mosquitto(w) && p->topic_len == strlen(MQTT_ERRORS) &&
            memcmp(p->topic, MQTT_ERRORS, p->topic_len) == 0) {
            mqtt_refused(w, p);
        } else if (!is_mosquitto(w) && p->topic_len == strlen(MQTT_INBOX) &&
                   memcmp(p->topic, MQTT_INBOX, p->topic_len) == 0) {
            deliver_packet(w, c, (const char *)p->payload, p->payload_len, x->now);
        } else if (is_mosquitto(w) || worker_opts(w)->scenario == SC_ROOM) {
            /* a room message (one PUBLISH room/<id> each, a batch's in one WebSocket message) or a mosquitto
             * topic's: the payload is the message itself */
            x->deliveries++;
            bench_delivered(w, c, p->payload, p->payload_len, x->now);
        } else {
            rep->proto_errors++;
            bench_note_error(w, "mqtt: PUBLISH on a topic we did not subscribe to: %.*s",
                             (int)(p->topic_len > 60 ? 60 : p->topic_len), p->topic);
        }
        break;
    default: /* PINGRESP, UNSUBACK */
        break;
    }
    return c->state == CS_DONE;
}

static void mqtt_bytes(struct worker *w, struct conn *c, const uint8_t *data, size_t len)
{
    struct mq_ctx x = {w, c, bench_now_ns(), 0};
    int rc = mqttc_feed(&((struct mq *)c->ps)->rd, data, len, on_mqtt, &x);
    if (c->state == CS_DONE)
        return;
    /* rooms: one WebSocket message per batch (Magpie), one read (mosquitto over TCP) -- deliveries per frame
     */
    if (x.deliveries > 0 && !c->publisher)
        worker_report(w)->frames++;
    if (rc < 0)
        conn_fail(w, c, FR_PROTOCOL, mqttc_strerror(rc));
}

static void mqtt_message(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len)
{
    if (opcode != WSF_BINARY) {
        worker_report(w)->proto_errors++;
        bench_note_error(w, "mqtt: a text frame from the server");
        return;
    }
    mqtt_bytes(w, c, data, len);
}

static int mqtt_send(struct worker *w, struct conn *c, const struct payload *p, const char *text, size_t len)
{
    static uint8_t pkt[STD_PACKET_MAX];
    const struct bench_opts *o = worker_opts(w);
    struct mq *m = c->ps;
    char topic[200];
    int chat = o->scenario == SC_CHAT, qos = chat ? 1 : o->mqtt_qos;
    unsigned pid = 0;
    if (is_mosquitto(w))
        snprintf(topic, sizeof(topic), "%s", bench_room(w));
    else if (!chat)
        snprintf(topic, sizeof(topic), "room/%s", bench_room(w));
    else
        snprintf(topic, sizeof(topic), "user/%lld", (long long)bench_recipient(o, c->idx));
    if (qos > 0 && chat) {
        if (m->n == m->cap) {
            uint32_t cap = m->cap ? m->cap * 2 : 16;
            struct inflight *r;
            if (m->n >= MQTT_INFLIGHT_MAX || (r = malloc(cap * sizeof(*r))) == NULL)
                return -1;
            for (uint32_t i = 0; i < m->n; i++)
                r[i] = m->ring[(m->head + i) & (m->cap - 1)];
            free(m->ring);
            m->ring = r;
            m->head = 0;
            m->cap = cap;
        }
        pid = next_pid(m);
        m->ring[(m->head + m->n) & (m->cap - 1)] =
            (struct inflight){.pid = (uint16_t)pid, .step = p->step, .seq = p->seq, .sched_ns = p->sched_ns};
        m->n++;
    } else if (qos > 0) {
        pid = next_pid(m); /* a room at QoS 1: the broker's PUBACK is not timed */
    }
    size_t n = mqttc_publish(pkt, sizeof(pkt), topic, text, len, qos, pid);
    if (n == 0)
        return -1;
    return std_write(w, c, WSF_BINARY, pkt, n);
}

static void mqtt_tick(struct worker *w, struct conn *c, int64_t now)
{
    uint8_t pkt[2];
    if (now - c->last_tx < (int64_t)(worker_opts(w)->heartbeat_s * 1e9))
        return;
    c->last_tx = now;
    std_write(w, c, WSF_BINARY, pkt, mqttc_pingreq(pkt, sizeof(pkt)));
}

static void mqtt_release(struct conn *c)
{
    struct mq *m = c->ps;
    if (m != NULL) {
        mqttc_reader_free(&m->rd);
        free(m->ring);
        free(m);
    }
}

const struct proto proto_magpie_mqtt = {
    .name = "magpie-mqtt",
    .subprotocol = "mqtt",
    .path = std_path,
    .on_open = mqtt_open,
    .on_message = mqtt_message,
    .send = mqtt_send,
    .tick = mqtt_tick,
    .release = mqtt_release,
};

const struct proto proto_mosquitto = {
    .name = "mosquitto",
    .path = std_path,
    .on_open = mqtt_open,
    .on_message = mqtt_message,
    .on_raw = mqtt_bytes,
    .send = mqtt_send,
    .tick = mqtt_tick,
    .release = mqtt_release,
};
