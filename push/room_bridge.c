/* room_bridge.c -- rooms for STOMP 1.2 and MQTT 3.1.1 clients on /ws (SPEC §4.3 table, §5; room_bridge.h).
 *
 * One set of rules. A room subscription of a STOMP or MQTT connection is a struct member of the room hub
 * (room.h), of kind MEMBER_STOMP or MEMBER_MQTT, exactly as a /room connection is one of kind MEMBER_ROOM:
 * room_join/room_leave, the cluster-wide member counts (room_count.c), the channel subscription, the merged
 * batches, the slow-member policy (push.room_normal_queue; important batches always queued up to
 * push.queue_cap) and the send path (room_publish, the one room.c's MESSAGE takes: a member's message is
 * PUBLISHed to the room's channel at normal level and comes back to every member, the sender too, on every
 * node, in one order). What is the bridge's own: the wire form of joins, sends and deliveries, and which
 * connection holds which subscriptions (an index by connection id; a connection may be in several rooms, at
 * most push.rooms_per_conn, where a /room connection is in one).
 *
 * Wire format (what a client sees; README "Rooms over STOMP and MQTT"):
 *
 *   room id      1-128 bytes of UTF-8 without control characters (the room protocol's rule, roompkt.h); in
 *                MQTT also without '+' and '#' (they are wildcards there).
 *   STOMP join   SUBSCRIBE id:<sub> destination:/topic/room.<id> [receipt:<r>]  (ack:auto only: room
 *                messages are live). The RECEIPT comes once this node's subscription to the room is
 *                confirmed: anything published after it reaches the client.
 *   STOMP leave  UNSUBSCRIBE id:<sub> [receipt:<r>]
 *   STOMP send   SEND destination:/topic/room.<id> [receipt:<r>], body = the message bytes (any bytes; use
 *                content-length for binary). Only to a room the connection is in (as in the room protocol).
 *                The RECEIPT comes once Redis took the PUBLISH: the message is out to the room's members
 *                (live, not stored: members who join later never see it, a member too slow to read may miss
 *                it); ERROR "temporarily unavailable, retry" (receipt-id set) when Redis did not take it.
 *   STOMP batch  each room message is one MESSAGE frame
 *                    MESSAGE
 *                    destination:/topic/room.<id>
 *                    subscription:<sub>
 *                    message-id:<batch id>.<n>       (n = 0, 1, ... within the batch; the batch id is a
 *                                                    server id, unique in the cluster)
 *                    content-length:<bytes>
 *
 *                    <the message bytes>^@
 *                and the MESSAGE frames of one batch travel together in one WebSocket message (STOMP frames
 *                delimit themselves; stompjs, Spring and stomp.js parse several frames per message) -- a
 *                text message when every body is UTF-8, else a binary one.
 *   MQTT join    SUBSCRIBE room/<id> at any QoS: granted QoS 0 (room messages are live, never resent); the
 *                SUBACK comes once this node's subscription to the room is confirmed (as STOMP's RECEIPT).
 *   MQTT leave   UNSUBSCRIBE room/<id>
 *   MQTT send    PUBLISH room/<id>, payload = the message bytes, only to a room the connection is in. QoS 1
 *                gets its PUBACK (QoS 2: PUBREC, then PUBCOMP) once Redis took it; when it did not, no PUBACK
 *                and close 1013 (the session sends it again), as for a chat PUBLISH.
 *   MQTT batch   each room message is one PUBLISH room/<id>, QoS 0, no retain, payload = the message bytes;
 *                the PUBLISH packets of one batch travel together in one binary WebSocket message (MQTT
 *                3.1.1 §6 lets packets share a message; every MQTT client reads a byte stream).
 *   refusals     STOMP: ERROR with the reason, the connection stays (one of push.bad_packet_limit, as for
 *                chat). MQTT: a refused room SUBSCRIBE gets 0x80 in its SUBACK; a refused PUBLISH its PUBACK
 *                and {"packet_id","topic","reason"} on me/errors. Reasons: "bad room id: expected 1-128
 *                bytes of text", "not in that room", "empty message", "rate limited", ROOM_BRIDGE_E_*.
 *   MEMBERS      not served over STOMP or MQTT (neither has a request/answer for it); the room protocol's
 *                MEMBERS counts these members too.
 *
 * Why one frame per message and not a JSON batch: it is what every STOMP and MQTT client already does with a
 * topic -- one callback per message, payload untouched, binary included -- so an app needs nothing of
 * Magpie's to read a room; and the message bytes are exactly what /room members and POST /msg sent, with no
 * encoding between. The batch still saves what it saves for /room: the frames of a batch are built once per
 * batch (MQTT: one for every MQTT member here; STOMP: one per subscription id, since the MESSAGE frame names
 * the client's own id, and clients number their subscriptions alike), and each member gets one WebSocket
 * message per batch. A message's level is not carried (no MQTT 3.1.1 field for it); /room members see it
 * per batch.
 */
#include "room_bridge.h"
#include "chatpkt.h"
#include "log.h"
#include "magpie.h"
#include "map.h"
#include "mqttpkt.h"
#include "push.h"
#include "stats.h"
#include "stompframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BRIDGE_MAX_SUB_ID   64 /* bytes of a STOMP subscription id (stomp.c checks it before) */
#define BRIDGE_TOPIC_ERRORS "me/errors"

/* An MQTT SUBACK waiting for the rooms its SUBSCRIBE joined to be ready. */
struct hold {
    struct hold *next;
    struct frame *f;
    int waiting; /* rooms not ready yet */
};

struct bconn;

/* One room subscription of a connection. */
struct bmember {
    struct member m; /* first: the hub's member is the subscription (room_bridge_ready casts back) */
    struct bconn *bc;
    struct bmember *next; /* the connection's rooms */
    char *receipt;        /* STOMP: the SUBSCRIBE's receipt, sent when the room is ready */
    struct hold *hold;    /* MQTT: the SUBACK that waits for this room */
    int unheld;           /* MQTT: joined by the SUBSCRIBE being served, not ready: its SUBACK must wait */
    char sub_id[BRIDGE_MAX_SUB_ID + 1]; /* STOMP: the subscription id */
};

/* The rooms of one STOMP or MQTT connection. */
struct bconn {
    struct conn *c;
    enum member_kind kind;
    struct bmember *rooms;
    int n;
    struct hold *holds;
};

static struct {
    struct map conns; /* conn->id -> struct bconn, for connections with a room or a waiting SUBACK */
    long subs[2];     /* room subscriptions here: STOMP, MQTT */
} B;

/* A message a member published, waiting for Redis. */
struct pubreq {
    struct conn *c; /* held */
    enum member_kind kind;
    int qos;
    unsigned packet_id;
    char *topic;   /* MQTT: for a refusal on me/errors */
    char *receipt; /* STOMP: NULL when none was asked */
};

/* ---- writing ---- */

static void stomp_put(struct conn *c, const char *command, const char *const *headers, const char *body,
                      size_t len)
{
    size_t n = 0;
    char *frame = stompframe_build(command, headers, body, len, &n);
    conn_send_str(c, frame, n); /* NULL: aborts the connection */
}

static void stomp_receipt(struct conn *c, const char *receipt)
{
    const char *h[] = {"receipt-id", receipt, NULL};
    if (receipt != NULL)
        stomp_put(c, "RECEIPT", h, NULL, 0);
}

/* ERROR as stomp.c sends it: message:why, receipt-id, the body repeats why. */
static void stomp_error(struct conn *c, const char *why, const char *receipt)
{
    const char *h[] = {"message", why, "content-type", "text/plain", receipt ? "receipt-id" : NULL,
                       receipt,   NULL};
    stomp_put(c, "ERROR", h, why, strlen(why));
}

/* An MQTT packet from a builder (adopted; NULL = out of memory). */
static void mqtt_put(struct conn *c, uint8_t *pkt, size_t len)
{
    struct frame *f = pkt != NULL ? frame_new(pkt, len, 1) : NULL;
    free(pkt);
    if (f == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    conn_send(c, f);
    frame_unref(f);
}

/* {"packet_id", "topic", "reason"} on me/errors, as mqtt.c sends refusals. */
static void mqtt_refusal(struct conn *c, unsigned packet_id, const char *topic, const char *why)
{
    json_t *o = json_pack("{s:I,s:s,s:s}", "packet_id", (json_int_t)packet_id, "topic", topic, "reason", why);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    uint8_t *pkt;
    size_t len = 0;
    json_decref(o);
    if (s == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    pkt =
        mqttpkt_publish_build(BRIDGE_TOPIC_ERRORS, s, strlen(s), 0, 0, &len); /* sets len: not in the call */
    mqtt_put(c, pkt, len);
    free(s);
}

/* ---- the index ---- */

static struct bconn *bconn_of(struct conn *c, enum member_kind kind, int create)
{
    struct bconn *bc = map_get(&B.conns, c->id);
    if (bc != NULL || !create)
        return bc;
    if ((bc = calloc(1, sizeof(*bc))) == NULL)
        return NULL;
    bc->c = c;
    bc->kind = kind;
    if (map_put(&B.conns, c->id, bc) != MP_OK) {
        free(bc);
        return NULL;
    }
    return bc;
}

static struct bmember *find_room(const struct bconn *bc, const char *room)
{
    struct bmember *bm;
    for (bm = bc != NULL ? bc->rooms : NULL; bm != NULL; bm = bm->next)
        if (strcmp(room_name(bm->m.room), room) == 0)
            break;
    return bm;
}

static struct bmember *find_sub(const struct bconn *bc, const char *sub_id)
{
    struct bmember *bm;
    for (bm = bc != NULL ? bc->rooms : NULL; bm != NULL; bm = bm->next)
        if (strcmp(bm->sub_id, sub_id) == 0)
            break;
    return bm;
}

static void gauges(void)
{
    stats_room_subscriptions(B.subs[0], B.subs[1]);
}

/* ---- joining and leaving ---- */

/* One room fewer that h waits for; the last one sends the SUBACK. */
static void release(struct bconn *bc, struct bmember *bm)
{
    struct hold *h = bm->hold, **pp;
    bm->hold = NULL;
    if (h == NULL || --h->waiting > 0)
        return;
    for (pp = &bc->holds; *pp != h; pp = &(*pp)->next)
        ;
    *pp = h->next;
    if (conn_open(bc->c))
        conn_send(bc->c, h->f);
    frame_unref(h->f);
    free(h);
}

void room_bridge_ready(struct member *m)
{
    struct bmember *bm = (struct bmember *)m;
    struct conn *c = m->c;

    m->state = MEMBER_IN;
    bm->unheld = 0;
    if (bm->receipt != NULL) {
        stomp_receipt(c, bm->receipt);
        free(bm->receipt);
        bm->receipt = NULL;
    }
    release(bm->bc, bm);
    log_info("room joined conn=%llu uid=%lld room=\"%s\" protocol=%s ip=%s", (unsigned long long)c->id,
             (long long)c->uid, room_name(m->room), c->proto->name, c->ip);
}

/* Put c in room (a good id, not one c is in). Returns NULL (joined, or the connection is being aborted for
 * want of memory; *out is then NULL) or the reason of the refusal. */
static const char *join(struct bconn *bc, const char *room, const char *sub_id, const char *receipt,
                        struct bmember **out)
{
    struct bmember *bm;

    *out = NULL;
    if (bc->n >= push.cfg->push.rooms_per_conn)
        return ROOM_BRIDGE_E_TOO_MANY;
    if ((bm = calloc(1, sizeof(*bm))) == NULL ||
        (receipt != NULL && (bm->receipt = strdup(receipt)) == NULL)) {
        free(bm);
        conn_abort(bc->c, "out of memory");
        return NULL;
    }
    snprintf(bm->sub_id, sizeof(bm->sub_id), "%s", sub_id != NULL ? sub_id : "");
    bm->m.c = bc->c;
    bm->m.kind = bc->kind;
    bm->m.state = MEMBER_JOINING;
    bm->bc = bc;
    bm->next = bc->rooms;
    bc->rooms = bm;
    bc->n++;
    B.subs[bc->kind == MEMBER_MQTT]++;
    gauges();
    /* fully set up first: when the room is ready already, room_bridge_ready runs inside room_join */
    if (room_join(&bm->m, room) != MP_OK) {
        log_error("room join failed: out of memory conn=%llu", (unsigned long long)bc->c->id);
        bc->rooms = bm->next;
        bc->n--;
        B.subs[bc->kind == MEMBER_MQTT]--;
        gauges();
        free(bm->receipt);
        free(bm);
        conn_abort(bc->c, "out of memory");
        return NULL;
    }
    *out = bm;
    return NULL;
}

/* Take bm out of its room and free it. A SUBSCRIBE receipt still owed is sent (the frame was served). */
static void leave(struct bmember *bm)
{
    struct bconn *bc = bm->bc;
    struct bmember **pp;

    for (pp = &bc->rooms; *pp != bm; pp = &(*pp)->next)
        ;
    *pp = bm->next;
    bc->n--;
    B.subs[bc->kind == MEMBER_MQTT]--;
    gauges();
    room_leave(&bm->m);
    if (bm->receipt != NULL && conn_open(bc->c))
        stomp_receipt(bc->c, bm->receipt);
    release(bc, bm);
    free(bm->receipt);
    free(bm);
}

/* A refused join, logged (room: len bytes, not necessarily NUL-terminated; the first 64 are shown). */
static void refused(struct conn *c, const char *room, size_t len, const char *why)
{
    log_info("room subscribe refused conn=%llu uid=%lld protocol=%s room=\"%.*s\" reason=\"%s\"",
             (unsigned long long)c->id, (long long)c->uid, c->proto->name, (int)(len > 64 ? 64 : len), room,
             why);
}

void room_bridge_closed(struct conn *c)
{
    struct bconn *bc = map_del(&B.conns, c->id);
    struct hold *h;

    if (bc == NULL)
        return;
    while ((h = bc->holds) != NULL) {
        bc->holds = h->next;
        frame_unref(h->f);
        free(h);
    }
    for (struct bmember *bm = bc->rooms; bm != NULL; bm = bm->next)
        bm->hold = NULL;
    while (bc->rooms != NULL)
        leave(bc->rooms);
    free(bc);
}

void room_bridge_free(void)
{
    map_free(&B.conns);
}

/* ---- sending ---- */

static void pubreq_free(struct pubreq *p)
{
    free(p->topic);
    free(p->receipt);
    free(p);
}

/* Redis did not take the message: the protocol's answer for "storage unavailable". */
static void publish_failed(struct pubreq *p)
{
    struct conn *c = p->c;

    stats_error(STATS_E_UNAVAILABLE);
    if (p->kind == MEMBER_STOMP) {
        stomp_error(c, CHAT_E_UNAVAILABLE, p->receipt);
    } else if (p->qos > 0) {
        log_info("mqtt closing: room publish failed conn=%llu uid=%lld", (unsigned long long)c->id,
                 (long long)c->uid);
        conn_close(c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
    } else {
        mqtt_refusal(c, 0, p->topic, CHAT_E_UNAVAILABLE);
    }
}

static void on_published(redisReply *r, void *arg)
{
    struct pubreq *p = arg;
    struct conn *c = p->c;
    uint8_t *pkt;
    size_t len = 0;

    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("room publish failed reason=\"%s\"", r->str);
    if (conn_open(c)) {
        if (r == NULL || r->type != REDIS_REPLY_INTEGER)
            publish_failed(p);
        else if (p->kind == MEMBER_STOMP)
            stomp_receipt(c, p->receipt);
        else if (p->qos > 0) {
            pkt = mqttpkt_ack_build(p->qos == 2 ? MQTT_PUBREC : MQTT_PUBACK, p->packet_id, &len);
            mqtt_put(c, pkt, len);
        }
    }
    conn_release(c);
    pubreq_free(p);
}

/* Publish msg as bm's (the request p, adopted); the answer comes through on_published. */
static void publish(struct bmember *bm, const void *msg, size_t len, struct pubreq *p)
{
    p->c = bm->m.c;
    p->kind = bm->m.kind;
    conn_hold(p->c);
    if (room_publish(bm->m.room, msg, len, on_published, p) != MP_OK)
        on_published(NULL, p); /* Redis is down (or no memory): answered at once */
}

/* ---- STOMP ---- */

int room_bridge_stomp_dest(const char *dest)
{
    return strncmp(dest, ROOM_BRIDGE_STOMP_PREFIX, strlen(ROOM_BRIDGE_STOMP_PREFIX)) == 0;
}

const char *room_bridge_stomp_subscribe(struct conn *c, const char *dest, const char *id, const char *ack,
                                        const char *receipt, const char *inbox_id)
{
    const char *room = dest + strlen(ROOM_BRIDGE_STOMP_PREFIX), *why;
    struct bconn *bc = bconn_of(c, MEMBER_STOMP, 0);
    struct bmember *bm;

    if (!roompkt_room_ok(room))
        why = ROOM_R_BAD_ROOM;
    else if (ack != NULL && strcmp(ack, "auto") != 0)
        why = ROOM_BRIDGE_E_ACK;
    else if ((inbox_id != NULL && strcmp(inbox_id, id) == 0) || find_sub(bc, id) != NULL ||
             find_room(bc, room) != NULL)
        why = ROOM_BRIDGE_E_SUBSCRIBED;
    else if (bc == NULL && (bc = bconn_of(c, MEMBER_STOMP, 1)) == NULL) {
        conn_abort(c, "out of memory");
        return NULL;
    } else if ((why = join(bc, room, id, receipt, &bm)) == NULL)
        return NULL;
    refused(c, room, strlen(room), why);
    return why;
}

int room_bridge_stomp_unsubscribe(struct conn *c, const char *id, const char *receipt)
{
    struct bmember *bm = find_sub(bconn_of(c, MEMBER_STOMP, 0), id);
    if (bm == NULL)
        return 0;
    leave(bm);
    stomp_receipt(c, receipt);
    return 1;
}

int room_bridge_stomp_has_id(struct conn *c, const char *id)
{
    return find_sub(bconn_of(c, MEMBER_STOMP, 0), id) != NULL;
}

const char *room_bridge_stomp_send(struct conn *c, const char *dest, const char *body, size_t len,
                                   const char *receipt)
{
    const char *room = dest + strlen(ROOM_BRIDGE_STOMP_PREFIX);
    struct bmember *bm;
    struct pubreq *p;

    if (!roompkt_room_ok(room))
        return ROOM_R_BAD_ROOM;
    if ((bm = find_room(bconn_of(c, MEMBER_STOMP, 0), room)) == NULL)
        return ROOM_R_OTHER_ROOM;
    if (len == 0)
        return ROOM_R_EMPTY;
    if ((p = calloc(1, sizeof(*p))) == NULL || (receipt != NULL && (p->receipt = strdup(receipt)) == NULL)) {
        free(p);
        conn_abort(c, "out of memory");
        return NULL;
    }
    publish(bm, body, len, p);
    return NULL;
}

/* ---- MQTT ---- */

int room_bridge_mqtt_topic(const char *topic, size_t len)
{
    size_t n = strlen(ROOM_BRIDGE_MQTT_PREFIX);
    return len >= n && memcmp(topic, ROOM_BRIDGE_MQTT_PREFIX, n) == 0;
}

/* The room id of room/<id> (len bytes, not NUL-terminated) into out; 0 when it is not a good one. */
static int mqtt_room(const char *topic, size_t len, char out[ROOM_MAX_ID + 1])
{
    size_t n = strlen(ROOM_BRIDGE_MQTT_PREFIX);
    if (len - n > ROOM_MAX_ID || memchr(topic + n, '+', len - n) != NULL ||
        memchr(topic + n, '#', len - n) != NULL || memchr(topic + n, '\0', len - n) != NULL)
        return 0;
    memcpy(out, topic + n, len - n);
    out[len - n] = '\0';
    return roompkt_room_ok(out);
}

int room_bridge_mqtt_subscribe(struct conn *c, const char *filter, size_t len)
{
    char room[ROOM_MAX_ID + 1];
    struct bconn *bc = bconn_of(c, MEMBER_MQTT, 0);
    struct bmember *bm;
    const char *why;

    if (!mqtt_room(filter, len, room)) {
        refused(c, filter, len, ROOM_R_BAD_ROOM);
        stats_error(STATS_E_REJECTED);
        return MQTT_SUBACK_FAILURE;
    }
    if (find_room(bc, room) != NULL)
        return 0; /* MQTT: a SUBSCRIBE of a filter held replaces it; nothing to do */
    if (bc == NULL && (bc = bconn_of(c, MEMBER_MQTT, 1)) == NULL) {
        conn_abort(c, "out of memory");
        return MQTT_SUBACK_FAILURE;
    }
    if ((why = join(bc, room, NULL, NULL, &bm)) != NULL) {
        refused(c, room, strlen(room), why);
        stats_error(STATS_E_REJECTED);
        return MQTT_SUBACK_FAILURE;
    }
    if (bm == NULL)
        return MQTT_SUBACK_FAILURE; /* out of memory: closing */
    if (bm->m.state == MEMBER_JOINING)
        bm->unheld = 1;
    return 0;
}

void room_bridge_mqtt_unsubscribe(struct conn *c, const char *filter, size_t len)
{
    char room[ROOM_MAX_ID + 1];
    struct bmember *bm;
    if (mqtt_room(filter, len, room) && (bm = find_room(bconn_of(c, MEMBER_MQTT, 0), room)) != NULL)
        leave(bm);
}

void room_bridge_mqtt_suback(struct conn *c, uint8_t *pkt, size_t len)
{
    struct bconn *bc = bconn_of(c, MEMBER_MQTT, 0);
    struct frame *f = pkt != NULL ? frame_new(pkt, len, 1) : NULL;
    struct hold *h = NULL;
    int waiting = 0;

    free(pkt);
    if (f == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    for (struct bmember *bm = bc != NULL ? bc->rooms : NULL; bm != NULL; bm = bm->next)
        waiting += bm->unheld;
    if (waiting > 0 && (h = calloc(1, sizeof(*h))) != NULL) {
        h->f = f;
        h->waiting = waiting;
        h->next = bc->holds;
        bc->holds = h;
    }
    for (struct bmember *bm = bc != NULL ? bc->rooms : NULL; bm != NULL; bm = bm->next)
        if (bm->unheld) {
            bm->unheld = 0;
            bm->hold = h;
        }
    if (h == NULL) { /* nothing to wait for (or no memory to wait with: the SUBACK goes now) */
        conn_send(c, f);
        frame_unref(f);
    }
}

const char *room_bridge_mqtt_publish(struct conn *c, const char *topic, size_t topic_len, const void *payload,
                                     size_t len, int qos, unsigned packet_id)
{
    char room[ROOM_MAX_ID + 1];
    struct bmember *bm;
    struct pubreq *p;

    if (!mqtt_room(topic, topic_len, room))
        return ROOM_R_BAD_ROOM;
    if ((bm = find_room(bconn_of(c, MEMBER_MQTT, 0), room)) == NULL)
        return ROOM_R_OTHER_ROOM;
    if (len == 0)
        return ROOM_R_EMPTY;
    if ((p = calloc(1, sizeof(*p))) == NULL || (p->topic = strndup(topic, topic_len)) == NULL) {
        free(p);
        conn_abort(c, "out of memory");
        return NULL;
    }
    p->qos = qos;
    p->packet_id = packet_id;
    publish(bm, payload, len, p);
    return NULL;
}

/* ---- delivery frames ---- */

/* A growing byte buffer. */
struct obuf {
    uint8_t *p;
    size_t len, cap;
};

/* Append n bytes of a builder's output (adopted; NULL = out of memory). Returns MP_OK or MP_ENOMEM. */
static int obuf_take(struct obuf *o, void *bytes, size_t n)
{
    if (bytes == NULL)
        return MP_ENOMEM;
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        uint8_t *p;
        while (cap < o->len + n)
            cap *= 2;
        if ((p = realloc(o->p, cap)) == NULL) {
            free(bytes);
            return MP_ENOMEM;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, bytes, n);
    o->len += n;
    free(bytes);
    return MP_OK;
}

/* The next message of a merged batch (roompkt.h: 4-byte little-endian length, then the bytes). */
static int next_message(const struct roombatch *b, size_t *off, const uint8_t **msg, size_t *len)
{
    const uint8_t *p = b->buf + *off;
    if (*off + ROOM_LEN_PREFIX > b->len)
        return 0;
    *len = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    *msg = p + ROOM_LEN_PREFIX;
    *off += ROOM_LEN_PREFIX + *len;
    return 1;
}

/* Every message of the batch as PUBLISH room/<id> QoS 0, in one binary frame. */
static struct frame *mqtt_frame(const struct room_bridge_batch *bb)
{
    char topic[sizeof(ROOM_BRIDGE_MQTT_PREFIX) + ROOM_MAX_ID];
    struct obuf o = {0};
    struct frame *f = NULL;
    const uint8_t *msg;
    size_t off = 0, len, n = 0;
    int rc = MP_OK;

    snprintf(topic, sizeof(topic), ROOM_BRIDGE_MQTT_PREFIX "%s", bb->room);
    while (rc == MP_OK && next_message(bb->b, &off, &msg, &len)) {
        uint8_t *pkt = mqttpkt_publish_build(topic, msg, len, 0, 0, &n);
        rc = obuf_take(&o, pkt, n);
    }
    if (rc == MP_OK)
        f = frame_new(o.p, o.len, 1);
    free(o.p);
    return f;
}

/* Every message of the batch as a MESSAGE frame of subscription sub_id, in one frame: text when every body
 * is UTF-8 (headers are), else binary. */
static struct frame *stomp_frame(struct room_bridge_batch *bb, const char *sub_id)
{
    char dest[sizeof(ROOM_BRIDGE_STOMP_PREFIX) + ROOM_MAX_ID], mid[48];
    const char *h[] = {"destination", dest, "subscription", sub_id, "message-id", mid, NULL};
    struct obuf o = {0};
    struct frame *f = NULL;
    const uint8_t *msg;
    size_t off = 0, len, n = 0;
    int rc = MP_OK, text = 1, k = 0;

    if (bb->id == 0)
        bb->id = id_next(&push.ids);
    snprintf(dest, sizeof(dest), ROOM_BRIDGE_STOMP_PREFIX "%s", bb->room);
    while (rc == MP_OK && next_message(bb->b, &off, &msg, &len)) {
        snprintf(mid, sizeof(mid), "%lld.%d", (long long)bb->id, k++);
        text = text && mp_utf8_valid(msg, len);
        char *one = stompframe_build("MESSAGE", h, (const char *)msg, len, &n);
        rc = obuf_take(&o, one, n);
    }
    if (rc == MP_OK)
        f = frame_new(o.p, o.len, !text);
    free(o.p);
    return f;
}

void room_bridge_batch_init(struct room_bridge_batch *bb, const struct roombatch *b, const char *room)
{
    memset(bb, 0, sizeof(*bb));
    bb->b = b;
    bb->room = room;
}

struct frame *room_bridge_batch_frame(struct room_bridge_batch *bb, const struct member *m)
{
    const struct bmember *bm = (const struct bmember *)m;
    struct frame *f;

    if (m->kind == MEMBER_MQTT)
        return bb->mqtt != NULL ? bb->mqtt : (bb->mqtt = mqtt_frame(bb));
    for (int i = 0; i < bb->nstomp; i++)
        if (strcmp(bb->stomp[i].sub_id, bm->sub_id) == 0)
            return bb->stomp[i].f;
    if ((f = stomp_frame(bb, bm->sub_id)) == NULL)
        return NULL;
    if (bb->nstomp < ROOM_BRIDGE_STOMP_FORMS) {
        bb->stomp[bb->nstomp].sub_id = bm->sub_id;
        bb->stomp[bb->nstomp++].f = f;
    } else {
        frame_unref(bb->spare);
        bb->spare = f;
    }
    return f;
}

void room_bridge_batch_free(struct room_bridge_batch *bb)
{
    frame_unref(bb->mqtt);
    for (int i = 0; i < bb->nstomp; i++)
        frame_unref(bb->stomp[i].f);
    frame_unref(bb->spare);
}
