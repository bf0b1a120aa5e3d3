/* stomp.c -- STOMP 1.2 on /ws (SPEC §4.3): a client that offers the WebSocket subprotocol v12.stomp (also
 * v11.stomp, v10.stomp) speaks STOMP instead of the JSON packets, one frame per WebSocket message
 * (stompframe.h parses and builds them).
 *
 * No second copy of the rules. Every request that touches chat becomes the JSON packet it means and goes
 * through chat_handle(), the same call a JSON client's packet takes (proto.h describes the seam):
 *   SEND destination:/user/<uid>   -> {"id", "to": uid, "type": "t", "msg": body}   (chat_send.c)
 *   SEND destination:/group/<gid>  -> {"id", "to": gid, "type": "g", "msg": body}   (group_send.c)
 *   catching a session up          -> {"id", "type": "Y", "msg": {"after", "limit"}} (timeline.c)
 * The id is this connection's: "st<session>.<tag>-<n>" for the n-th SEND, "st<session>.<tag>-y<n>" for its
 * Y requests (<session> is a server message id, unique in the cluster, so ids never meet the dedup key of
 * another connection; <tag> is a hash of the CONNECT client-id, so a session knows its own messages on
 * every connection it makes). The core answers through stomp_reply(): A for a SEND is a RECEIPT (when the
 * SEND asked for one: only once the message is stored, as A is), carrying mid and seq; E is an ERROR with the
 * reason of §4 and receipt-id -- the connection stays open, as a JSON client's does after E (a refusal is not
 * a broken frame). Deliveries come through stomp_deliver() as the JSON packet a JSON client gets, and go out
 * as MESSAGE with that packet as the body and mid/seq/from/ts/type as headers.
 *
 * What closes the connection (ERROR first, as the standard asks): a frame that does not parse or breaks a
 * limit (stomp.max_frame, stomp.max_headers, stomp.max_header_len), an unknown command, a frame before
 * CONNECT, a second CONNECT, a bad ticket, a silent client that asked for heart-beats. What only gets an
 * ERROR (and uses one of push.bad_packet_limit, like E): transactions (BEGIN/COMMIT/ABORT, a transaction
 * header), a destination that is not the client's own, an unknown ack id, rate limiting (push.rate; an ACK
 * of a message sent on this connection and not ACKed yet is not counted: stomp_unmetered).
 *
 * Login: CONNECT/STOMP with the ticket of §4 in passcode (or Authorization: Bearer <ticket>); the ticket
 * rules are the JSON client's (conn_login: single use, push.max_conns_per_user). CONNECTED names version
 * 1.2 and heart-beat:<stomp.heartbeat_ms>,<stomp.heartbeat_ms>; the negotiated intervals (the larger of
 * each pair, 0 when either side says 0) are kept by one sweep over the sessions (stomp.heartbeat_ms / 4).
 *
 * Subscriptions: /user/queue/messages (a client may subscribe only to what is its own), one per connection;
 * and rooms, /topic/room.<id>: SUBSCRIBE, UNSUBSCRIBE and SEND on a room go to room_bridge.c (the wire format
 * of room batches is there), which makes the subscription a member of the room hub, and the connection's
 * end leaves its rooms.
 *
 * Order and catch-up, by seq: the subscription is a struct resume (resume.h has the rules, shared with
 * MQTT): every entry of the user's timeline goes out once, in seq order, except the session's own messages
 * (sent by a connection with this client-id: the RECEIPT told the client); deliveries without seq (a read
 * mark r, an order event s) go out as they come. ack:auto (the default) starts at the timeline's end.
 * ack:client and client-individual keep the ACKed position (cumulative for client: an ACK of seq n ACKs
 * everything up to n; one by one for client-individual; own messages count as ACKed), stored in Redis as
 * KEY_STOMP_ACKED, field = the CONNECT client-id header ("" when none: give each device its own), only ever
 * raised, written at every ACK that moves it (and at the end). A later SUBSCRIBE with a client mode reads it
 * and starts after it: what was not ACKed, and what arrived while away, comes again in order. With nothing
 * stored it starts at the timeline's end, and that position is stored at once, so what comes after it is
 * kept for the session even if nothing is ACKed. NACK leaves a message un-ACKed (it comes again on the next
 * connect). Delivery is at-least-once across connections: an ACK whose write did not reach Redis is sent
 * again.
 */
#include "stomp.h"
#include "chat.h"
#include "conn.h"
#include "dlist.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "resume.h"
#include "room_bridge.h"
#include "stats.h"
#include "stompframe.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STOMP_SWEEP_MIN_MS 50   /* heart-beats are sent and checked every stomp.heartbeat_ms / 4, within */
#define STOMP_SWEEP_MAX_MS 1000 /* these bounds */
#define STOMP_MAX_ID       64   /* bytes of a subscription id and a client-id */
#define STOMP_DEST_INBOX   "/user/queue/messages"

/* ERROR reasons of this layer (the core's are chatpkt.h's CHAT_E_*). */
#define STOMP_E_NOT_CONNECTED "not connected: send CONNECT first"
#define STOMP_E_CONNECTED     "already connected"
#define STOMP_E_VERSION       "unsupported version: this server speaks STOMP 1.2"
#define STOMP_E_HEARTBEAT     "bad heart-beat header"
#define STOMP_E_CLIENT_ID     "bad client-id header: 1-64 bytes"
#define STOMP_E_UNKNOWN_CMD   "unknown command"
#define STOMP_E_TRANSACTION   "transactions are not supported"
#define STOMP_E_NO_DEST       "missing destination header"
#define STOMP_E_BAD_DEST      "unknown destination: /user/<uid>, /group/<gid> or /topic/room.<id>"
#define STOMP_E_FORBIDDEN     "forbidden destination: subscribe to " STOMP_DEST_INBOX " or /topic/room.<id>"
#define STOMP_E_NO_ID         "missing or bad id header"
#define STOMP_E_SUBSCRIBED    "already subscribed"
#define STOMP_E_NO_SUB        "no such subscription"
#define STOMP_E_ACK_MODE      "bad ack header: auto, client or client-individual"
#define STOMP_E_ACK_ID        "unknown ack id"
#define STOMP_E_HEARTBEAT_TO  "heart-beat timeout"

/* A SEND waiting for the core's answer. */
struct pending {
    struct pending *next;
    uint64_t n;
    char *receipt; /* NULL: none asked */
};

struct stomp {
    struct conn *c;
    struct stomp *prev, *next; /* every session (the heart-beat sweep) */
    int connected;             /* CONNECT accepted: CONNECTED sent */
    int logging_in;
    char prefix[48]; /* "st<session>.<tag>-": the ids of this session's requests to the core */
    size_t prefix_len;
    char client_id[STOMP_MAX_ID + 1];
    uint64_t next_n;
    struct pending *pending, *pending_tail;
    uint64_t send_every_ms, expect_every_ms, sent_ms;
    /* the subscription: its place in the timeline (r.state RESUME_OFF: none) */
    struct resume r;
    char sub_id[STOMP_MAX_ID + 1];
    uint64_t extra_n; /* ack ids of deliveries without seq */
};

static struct {
    struct stomp *all;
    uv_timer_t sweep;
    int started;
    struct stomp_limits lim;
} S;

/* ---- writing ---- */

static void put(struct stomp *s, char *frame, size_t len)
{
    if (frame == NULL) {
        conn_abort(s->c, "out of memory");
        return;
    }
    s->sent_ms = push_now();
    conn_send_str(s->c, frame, len);
}

static void send_frame(struct stomp *s, const char *command, const char *const *headers, const char *body,
                       size_t body_len)
{
    size_t len = 0;
    char *frame = stompframe_build(command, headers, body, body_len, &len);
    put(s, frame, len);
}

/* ERROR with message:why (and receipt-id when receipt is not NULL); the body repeats why. */
static void send_error(struct stomp *s, const char *why, const char *receipt)
{
    const char *h[] = {"message", why, "content-type", "text/plain", receipt ? "receipt-id" : NULL,
                       receipt,   NULL};
    send_frame(s, "ERROR", h, why, strlen(why));
}

/* A frame that breaks the protocol: ERROR, then close (what is queued goes first). */
static void protocol_error(struct stomp *s, const char *why, const char *receipt)
{
    log_info("stomp error, closing conn=%llu uid=%lld reason=\"%s\" ip=%s", (unsigned long long)s->c->id,
             (long long)s->c->uid, why, s->c->ip);
    stats_error(STATS_E_MALFORMED);
    send_error(s, why, receipt);
    conn_close(s->c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "STOMP protocol error");
}

/* A refused request (the connection stays): ERROR, and one of the bad-packet allowance. */
static void refuse(struct stomp *s, const char *why, const char *receipt, enum stats_reason r)
{
    stats_error(r);
    send_error(s, why, receipt);
    conn_strike(s->c);
}

static void send_receipt(struct stomp *s, const char *receipt)
{
    const char *h[] = {"receipt-id", receipt, NULL};
    if (receipt != NULL)
        send_frame(s, "RECEIPT", h, NULL, 0);
}

/* ---- deliveries (the order and the ACKed position: resume.h) ---- */

static int64_t json_int(json_t *o, const char *name, int64_t def)
{
    json_t *v = json_object_get(o, name);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) /* mid travels as a decimal string */
        return strtoll(json_string_value(v), NULL, 10);
    return def;
}

/* resume ops->send: MESSAGE for one packet: body = text (the packet's JSON), headers from pkt. */
static int send_message(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq, int again)
{
    struct stomp *s = (struct stomp *)((char *)r - offsetof(struct stomp, r));
    char seq_s[24], from_s[24], ts_s[24], ack_s[32], type_s[8];
    const char *mid = json_string_value(json_object_get(pkt, "mid"));
    const char *type = json_string_value(json_object_get(pkt, "type"));
    const char *h[32];
    int n = 0;

    (void)again; /* STOMP 1.2 has no redelivered header */
    if (seq >= 0)
        snprintf(ack_s, sizeof(ack_s), "%lld", (long long)seq);
    else
        snprintf(ack_s, sizeof(ack_s), "n%llu", (unsigned long long)++s->extra_n);
    snprintf(from_s, sizeof(from_s), "%lld", (long long)json_int(pkt, "from", 0));
    snprintf(ts_s, sizeof(ts_s), "%lld", (long long)json_int(pkt, "ts", 0));
    snprintf(type_s, sizeof(type_s), "%.4s", type ? type : "");
#define H(k, v) (h[n++] = (k), h[n++] = (v))
    H("subscription", s->sub_id);
    H("message-id", mid ? mid : ack_s);
    H("destination", STOMP_DEST_INBOX);
    H("content-type", "application/json");
    if (s->r.ack != RESUME_ACK_NONE)
        H("ack", ack_s);
    if (mid != NULL)
        H("mid", mid);
    if (seq >= 0) {
        snprintf(seq_s, sizeof(seq_s), "%lld", (long long)seq);
        H("seq", seq_s);
    }
    H("from", from_s);
    H("ts", ts_s);
    H("type", type_s);
#undef H
    h[n] = NULL;
    send_frame(s, "MESSAGE", h, text, len);
    return MP_OK;
}

/* resume ops->failed: the catch-up cannot be served; the client reconnects later. */
static void catch_up_failed(struct resume *r)
{
    struct stomp *s = (struct stomp *)((char *)r - offsetof(struct stomp, r));
    send_error(s, CHAT_E_UNAVAILABLE, NULL);
    conn_close(s->c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
}

static void session_key(char *buf, size_t size, int64_t uid)
{
    key_tagged(buf, size, KEY_STOMP_ACKED, uid);
}

static const struct resume_ops stomp_resume = {
    .proto = "stomp",
    .key = session_key,
    .send = send_message,
    .room = NULL, /* the position is stored at every ACK */
    .failed = catch_up_failed,
};

/* proto->deliver: a delivery for the user, as the JSON packet with the user's seq. */
static int stomp_deliver(struct conn *c, struct frame *f)
{
    struct stomp *s = c->pdata;
    return s == NULL ? MP_EAGAIN : resume_deliver(&s->r, f);
}

/* ---- the core's answers ---- */

static struct pending *take_pending(struct stomp *s, uint64_t n)
{
    struct pending **pp, *prev = NULL;
    for (pp = &s->pending; *pp != NULL; prev = *pp, pp = &(*pp)->next)
        if ((*pp)->n == n) {
            struct pending *p = *pp;
            *pp = p->next;
            if (s->pending_tail == p)
                s->pending_tail = prev;
            return p;
        }
    return NULL;
}

/* proto->reply: the core's answer as the JSON packet (adopted). */
static int stomp_reply(struct conn *c, char *packet, size_t len)
{
    struct stomp *s = c->pdata;
    json_t *pkt = json_loadb(packet, len, 0, NULL), *msg = json_object_get(pkt, "msg");
    const char *id = json_string_value(json_object_get(pkt, "id")),
               *type_s = json_string_value(json_object_get(pkt, "type"));
    char type = type_s != NULL ? type_s[0] : 0;
    const char *why = json_is_string(msg) ? json_string_value(msg) : CHAT_E_UNAVAILABLE;

    free(packet);
    if (s == NULL || id == NULL) {
        json_decref(pkt);
        return MP_EAGAIN;
    }
    if (strncmp(id, s->prefix, s->prefix_len) == 0 && id[s->prefix_len] != '\0') {
        const char *rest = id + s->prefix_len;
        if (!resume_reply(&s->r, rest, type, msg)) {
            struct pending *p = take_pending(s, strtoull(rest, NULL, 10));
            if (p != NULL && type == 'A') {
                const char *mid = json_string_value(json_object_get(pkt, "mid"));
                int64_t seq = json_int(pkt, "seq", -1);
                char seq_s[24];
                const char *h[] = {"receipt-id", p->receipt, "mid", mid ? mid : "", "seq", seq_s, NULL};
                snprintf(seq_s, sizeof(seq_s), "%lld", (long long)seq);
                if (p->receipt != NULL)
                    send_frame(s, "RECEIPT", h, NULL, 0);
                resume_own_sent(&s->r, seq);
            } else if (p != NULL) {
                resume_own_refused(&s->r);
                send_error(s, why, p->receipt);
            }
            if (p != NULL) {
                free(p->receipt);
                free(p);
            }
        }
    } else if (type == 'E') {
        send_error(s, why, NULL);
    }
    json_decref(pkt);
    return MP_OK;
}

/* ---- frames ---- */

static int valid_id(const char *v)
{
    return v != NULL && v[0] != '\0' && strlen(v) <= STOMP_MAX_ID;
}

static void on_login(struct conn *c, enum conn_login_result r)
{
    struct stomp *s = c->pdata;
    char hb[48], user[24];
    const char *why;

    s->logging_in = 0;
    switch (r) {
    case CONN_LOGIN_OK: {
        const char *h[] = {"version", "1.2",     "heart-beat", hb,   "server", "magpie-push",
                           "session", s->prefix, "user-name",  user, NULL};
        snprintf(hb, sizeof(hb), "%lld,%lld", push.cfg->stomp.heartbeat_ms, push.cfg->stomp.heartbeat_ms);
        snprintf(user, sizeof(user), "%lld", (long long)c->uid);
        s->connected = 1;
        send_frame(s, "CONNECTED", h, NULL, 0);
        log_info("stomp open conn=%llu uid=%lld ip=%s", (unsigned long long)c->id, (long long)c->uid, c->ip);
        return;
    }
    case CONN_LOGIN_USED:
        why = CHAT_E_USED_TICKET;
        break;
    case CONN_LOGIN_TOO_MANY:
        why = CHAT_E_TOO_MANY;
        break;
    default:
        stats_error(STATS_E_UNAVAILABLE);
        send_error(s, CHAT_E_UNAVAILABLE, NULL);
        conn_close(c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
        return;
    }
    log_info("stomp refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)c->id, why, c->ip);
    stats_error(r == CONN_LOGIN_TOO_MANY ? STATS_E_TOO_MANY : STATS_E_TICKET);
    send_error(s, why, NULL);
    conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, why);
}

/* "cx,cy" -> both, each 0..2^31 ms. */
static int parse_heartbeat(const char *v, long long *cx, long long *cy)
{
    char *end;
    if (v == NULL) {
        *cx = *cy = 0;
        return 0;
    }
    *cx = strtoll(v, &end, 10);
    if (end == v || *end != ',' || *cx < 0 || *cx > 2147483647LL || v[0] == '-' || v[0] == ' ')
        return -1;
    v = end + 1;
    *cy = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || *cy < 0 || *cy > 2147483647LL || v[0] == '-' || v[0] == ' ')
        return -1;
    return 0;
}

/* accept-version absent (a 1.0 client) or listing 1.2. */
static int version_ok(const char *v)
{
    const char *p = v;
    if (v == NULL)
        return 1;
    while ((p = strstr(p, "1.2")) != NULL) {
        if ((p == v || p[-1] == ',') && (p[3] == '\0' || p[3] == ','))
            return 1;
        p += 3;
    }
    return 0;
}

static void do_connect(struct stomp *s, struct stompframe *f)
{
    const char *ticket = stompframe_get(f, "passcode"), *auth = stompframe_get(f, "Authorization");
    const char *client_id = stompframe_get(f, "client-id");
    long long cx, cy, sx = push.cfg->stomp.heartbeat_ms;
    struct auth_claims claims;
    const char *why;

    if (auth == NULL)
        auth = stompframe_get(f, "authorization");
    if (s->connected || s->logging_in) {
        protocol_error(s, STOMP_E_CONNECTED, NULL);
        return;
    }
    if (!version_ok(stompframe_get(f, "accept-version"))) {
        protocol_error(s, STOMP_E_VERSION, NULL);
        return;
    }
    if (parse_heartbeat(stompframe_get(f, "heart-beat"), &cx, &cy) != 0) {
        protocol_error(s, STOMP_E_HEARTBEAT, NULL);
        return;
    }
    if (client_id != NULL && !valid_id(client_id)) {
        protocol_error(s, STOMP_E_CLIENT_ID, NULL);
        return;
    }
    snprintf(s->client_id, sizeof(s->client_id), "%s", client_id ? client_id : "");
    resume_tag(s->r.tag, s->client_id, strlen(s->client_id));
    s->prefix_len =
        (size_t)snprintf(s->prefix, sizeof(s->prefix), "st%lld%s", (long long)id_next(&push.ids), s->r.tag);
    s->r.prefix_len = s->prefix_len;
    s->send_every_ms = sx > 0 && cy > 0 ? (uint64_t)(sx > cy ? sx : cy) : 0;
    s->expect_every_ms = sx > 0 && cx > 0 ? (uint64_t)(sx > cx ? sx : cx) : 0;
    if ((ticket == NULL || ticket[0] == '\0') && auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0)
        ticket = auth + 7;
    if (ticket == NULL || ticket[0] == '\0') {
        why = CHAT_E_NO_TICKET;
    } else {
        enum auth_result r = auth_verify(&push.auth, ticket, AUTH_KIND_WEBSOCKET, &claims);
        if (r == AUTH_OK) {
            s->logging_in = 1;
            conn_login(s->c, claims.uid, claims.sid, claims.jti, on_login);
            return;
        }
        why = chat_ticket_refusal(r);
    }
    log_info("stomp refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)s->c->id, why, s->c->ip);
    stats_error(STATS_E_TICKET);
    send_error(s, why, NULL);
    conn_close(s->c, LWS_CLOSE_STATUS_POLICY_VIOLATION, why);
}

/* "/user/<uid>" or "/group/<gid>" -> type and id; 0 when it is neither. */
static char parse_dest(const char *d, int64_t *to)
{
    static const struct {
        const char *prefix;
        char type;
    } dests[] = {{"/user/", 't'}, {"/group/", 'g'}};
    for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]); i++) {
        size_t n = strlen(dests[i].prefix), k;
        int64_t v = 0;
        if (strncmp(d, dests[i].prefix, n) != 0)
            continue;
        for (k = n; d[k] >= '0' && d[k] <= '9' && k - n < 18; k++)
            v = v * 10 + (d[k] - '0');
        if (k == n || d[k] != '\0' || d[n] == '0')
            return 0;
        *to = v;
        return dests[i].type;
    }
    return 0;
}

static void do_send(struct stomp *s, struct stompframe *f)
{
    const char *dest = stompframe_get(f, "destination"), *receipt = stompframe_get(f, "receipt");
    struct pending *pe;
    struct chatpkt p;
    char id[64];
    int64_t to;
    char type;

    if (stompframe_get(f, "transaction") != NULL) {
        refuse(s, STOMP_E_TRANSACTION, receipt, STATS_E_REJECTED);
        return;
    }
    if (dest == NULL) {
        refuse(s, STOMP_E_NO_DEST, receipt, STATS_E_MALFORMED);
        return;
    }
    if (room_bridge_stomp_dest(dest)) { /* a room (room_bridge.h): answered there, or refused here */
        const char *why = room_bridge_stomp_send(s->c, dest, f->body, f->body_len, receipt);
        if (why != NULL)
            refuse(s, why, receipt, STATS_E_REJECTED);
        return;
    }
    if ((type = parse_dest(dest, &to)) == 0) {
        refuse(s, STOMP_E_BAD_DEST, receipt, STATS_E_REJECTED);
        return;
    }
    if ((pe = calloc(1, sizeof(*pe))) == NULL || (receipt && (pe->receipt = strdup(receipt)) == NULL)) {
        free(pe);
        conn_abort(s->c, "out of memory");
        return;
    }
    pe->n = ++s->next_n;
    snprintf(id, sizeof(id), "%s%llu", s->prefix, (unsigned long long)pe->n);
    memset(&p, 0, sizeof(p));
    /* The packet a JSON client would send; a body that is not UTF-8 makes no string, and the core answers
     * "missing or bad msg" as it would to a JSON client. */
    p.root = json_pack("{s:s,s:I,s:s#}", "id", id, "to", (json_int_t)to, "type", &type, (int)1);
    if (p.root == NULL) {
        free(pe->receipt);
        free(pe);
        conn_abort(s->c, "out of memory");
        return;
    }
    json_object_set_new(p.root, "msg", json_stringn(f->body, f->body_len));
    if (s->pending_tail != NULL)
        s->pending_tail->next = pe;
    else
        s->pending = pe;
    s->pending_tail = pe;
    p.id = json_string_value(json_object_get(p.root, "id"));
    p.id_len = strlen(p.id);
    p.type = type;
    p.to = json_object_get(p.root, "to");
    p.msg = json_object_get(p.root, "msg");
    stats_packet(stomp_proto.name, type);
    resume_own_begin(&s->r);
    chat_handle(s->c, &p); /* the answer comes through stomp_reply */
    chatpkt_free(&p);
}

/* resume_load's answer for a SUBSCRIBE with a client ack mode. */
static void on_acked_loaded(struct conn *c, int found, int64_t acked, int64_t sent, int sub)
{
    struct stomp *s = c->pdata;

    (void)sub;
    if (s == NULL || s->r.state != RESUME_LOADING)
        return;
    if (found < 0)
        catch_up_failed(&s->r);
    else if (found)
        resume_from(&s->r, s->r.ack, acked, sent);
    else
        resume_begin(&s->r, s->r.ack); /* nothing stored: start at the timeline's end */
}

static void do_subscribe(struct stomp *s, struct stompframe *f)
{
    const char *dest = stompframe_get(f, "destination"), *receipt = stompframe_get(f, "receipt");
    const char *id = stompframe_get(f, "id"), *ack = stompframe_get(f, "ack");
    enum resume_ack mode;

    if (!valid_id(id)) {
        refuse(s, STOMP_E_NO_ID, receipt, STATS_E_MALFORMED);
        return;
    }
    if (dest == NULL) {
        refuse(s, STOMP_E_NO_DEST, receipt, STATS_E_MALFORMED);
        return;
    }
    if (room_bridge_stomp_dest(dest)) { /* joining a room (room_bridge.h) */
        const char *why = room_bridge_stomp_subscribe(s->c, dest, id, ack, receipt,
                                                      s->r.state != RESUME_OFF ? s->sub_id : NULL);
        if (why != NULL)
            refuse(s, why, receipt, STATS_E_REJECTED);
        return;
    }
    if (strcmp(dest, STOMP_DEST_INBOX) != 0) {
        log_info("stomp subscribe refused conn=%llu uid=%lld ip=%s", (unsigned long long)s->c->id,
                 (long long)s->c->uid, s->c->ip);
        refuse(s, STOMP_E_FORBIDDEN, receipt, STATS_E_REJECTED);
        return;
    }
    if (s->r.state != RESUME_OFF || room_bridge_stomp_has_id(s->c, id)) {
        refuse(s, STOMP_E_SUBSCRIBED, receipt, STATS_E_REJECTED);
        return;
    }
    if (ack == NULL || strcmp(ack, "auto") == 0)
        mode = RESUME_ACK_NONE;
    else if (strcmp(ack, "client") == 0)
        mode = RESUME_ACK_CUMULATIVE;
    else if (strcmp(ack, "client-individual") == 0)
        mode = RESUME_ACK_INDIVIDUAL;
    else {
        refuse(s, STOMP_E_ACK_MODE, receipt, STATS_E_MALFORMED);
        return;
    }
    snprintf(s->sub_id, sizeof(s->sub_id), "%s", id);
    send_receipt(s, receipt);
    if (mode == RESUME_ACK_NONE) { /* live from here */
        s->r.field = NULL;
        resume_begin(&s->r, mode);
        return;
    }
    s->r.field = s->client_id;
    resume_loading(&s->r, mode);
    if (resume_load(s->c, &stomp_resume, s->client_id, s->r.ttl_s, on_acked_loaded) != MP_OK)
        catch_up_failed(&s->r);
}

static void do_unsubscribe(struct stomp *s, struct stompframe *f)
{
    const char *id = stompframe_get(f, "id"), *receipt = stompframe_get(f, "receipt");
    if (id != NULL && room_bridge_stomp_unsubscribe(s->c, id, receipt))
        return; /* it was a room's */
    if (s->r.state == RESUME_OFF || id == NULL || strcmp(id, s->sub_id) != 0) {
        refuse(s, STOMP_E_NO_SUB, receipt, STATS_E_REJECTED);
        return;
    }
    resume_store(&s->r, 0);
    resume_end(&s->r);
    send_receipt(s, receipt);
}

static void do_ack(struct stomp *s, struct stompframe *f)
{
    const char *id = stompframe_get(f, "id"), *receipt = stompframe_get(f, "receipt");
    char *end;
    long long seq;

    if (stompframe_get(f, "transaction") != NULL) {
        refuse(s, STOMP_E_TRANSACTION, receipt, STATS_E_REJECTED);
        return;
    }
    if (id == NULL) {
        refuse(s, STOMP_E_NO_ID, receipt, STATS_E_MALFORMED);
        return;
    }
    if (id[0] == 'n' && id[1] >= '0' && id[1] <= '9') { /* a delivery without seq: nothing to keep */
        send_receipt(s, receipt);
        return;
    }
    seq = strtoll(id, &end, 10);
    if (end == id || *end != '\0' || seq <= 0 || s->r.state == RESUME_OFF || s->r.sent_upto < 0 ||
        seq > s->r.sent_upto) {
        refuse(s, STOMP_E_ACK_ID, receipt, STATS_E_REJECTED);
        return;
    }
    if (f->cmd == STOMP_ACK) {
        if (s->r.ack == RESUME_ACK_CUMULATIVE)
            resume_ack_upto(&s->r, seq);
        else
            resume_ack_one(&s->r, seq);
        resume_store(&s->r, 0);
    }
    /* NACK: it stays un-ACKed and comes again on the next connect */
    send_receipt(s, receipt);
}

static void do_transaction(struct stomp *s, struct stompframe *f)
{
    refuse(s, STOMP_E_TRANSACTION, stompframe_get(f, "receipt"), STATS_E_REJECTED);
}

static void do_disconnect(struct stomp *s, struct stompframe *f)
{
    resume_store(&s->r, 0);
    send_receipt(s, stompframe_get(f, "receipt"));
    conn_close(s->c, LWS_CLOSE_STATUS_NORMAL, "disconnect");
}

/* Command -> handler, for a connected session (CONNECT/STOMP are handled before). */
static void (*const frame_table[STOMP_CMD_COUNT])(struct stomp *s, struct stompframe *f) = {
    [STOMP_CONNECT] = do_connect,
    [STOMP_STOMP] = do_connect,
    [STOMP_SEND] = do_send,
    [STOMP_SUBSCRIBE] = do_subscribe,
    [STOMP_UNSUBSCRIBE] = do_unsubscribe,
    [STOMP_ACK] = do_ack,
    [STOMP_NACK] = do_ack,
    [STOMP_BEGIN] = do_transaction,
    [STOMP_COMMIT] = do_transaction,
    [STOMP_ABORT] = do_transaction,
    [STOMP_DISCONNECT] = do_disconnect,
};

/* proto->message: one WebSocket message = one frame (or heart-beat EOLs). */
static void stomp_message(struct conn *c, const char *buf, size_t len, int limited)
{
    struct stomp *s = c->pdata;
    struct stompframe *f;
    const char *why = NULL;
    char *copy;
    enum stompframe_result r;

    if (buf == NULL) { /* sent while its CONNECT was being checked */
        protocol_error(s, CHAT_E_NOT_READY, NULL);
        return;
    }
    if (len > S.lim.max_frame) { /* before copying it */
        stats_frame(stomp_proto.name, "INVALID");
        protocol_error(s, STOMP_E_TOO_BIG, NULL);
        return;
    }
    if ((copy = malloc(len + 1)) == NULL || (f = malloc(sizeof(*f))) == NULL) {
        free(copy);
        conn_abort(c, "out of memory");
        return;
    }
    memcpy(copy, buf, len);
    copy[len] = '\0';
    r = stompframe_parse(copy, len, &S.lim, f, &why);
    if (r == STOMPFRAME_HEARTBEAT) {
        stats_frame(stomp_proto.name, "HEARTBEAT");
    } else if (r == STOMPFRAME_BAD) {
        stats_frame(stomp_proto.name, "INVALID");
        protocol_error(s, why, NULL);
    } else {
        const char *receipt = stompframe_get(f, "receipt");
        stats_frame(stomp_proto.name, stompframe_cmd_name(f->cmd));
        if (limited) /* counted by the connection layer, which also takes one of the allowance */
            send_error(s, CHAT_E_RATE, receipt);
        else if (f->cmd == STOMP_UNKNOWN)
            protocol_error(s, STOMP_E_UNKNOWN_CMD, receipt);
        else if (!s->connected && f->cmd != STOMP_CONNECT && f->cmd != STOMP_STOMP)
            protocol_error(s, STOMP_E_NOT_CONNECTED, receipt);
        else
            frame_table[f->cmd](s, f);
    }
    explicit_bzero(copy, len); /* a CONNECT frame holds a ticket */
    free(copy);
    free(f);
}

/* proto->unmetered: one ACK frame (the whole message, as stomp.js writes it) whose id is a seq sent on this
 * connection and not ACKed yet: an answer to the server, at most one per MESSAGE, so not counted against
 * push.rate (a client-individual subscriber ACKs every message at the pace they come). */
static int stomp_unmetered(struct conn *c, const char *buf, size_t len)
{
    struct stomp *s = c->pdata;
    const char *end = buf + len;

    if (s == NULL || !s->connected || len < 8 || len > 512 || memcmp(buf, "ACK", 3) != 0 ||
        (buf[3] != '\n' && buf[3] != '\r'))
        return 0;
    for (const char *p = buf + 3; p + 4 < end; p++) {
        if (p[0] == '\n' && p[1] == '\n')
            return 0; /* the headers ended without an id */
        if (p[0] == '\n' && memcmp(p + 1, "id:", 3) == 0) {
            const char *q = p + 4;
            int64_t seq = 0;
            int digits = 0;
            for (; q < end && *q >= '0' && *q <= '9' && digits < 18; q++, digits++)
                seq = seq * 10 + (*q - '0');
            return digits > 0 && q < end && (*q == '\n' || *q == '\r') && resume_unacked(&s->r, seq);
        }
    }
    return 0;
}

/* ---- the connection ---- */

static void stomp_open(struct conn *c)
{
    struct stomp *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    s->c = c;
    s->sent_ms = push_now();
    resume_setup(&s->r, &stomp_resume, c, s->prefix, 0);
    s->r.ttl_s = push.cfg->stomp.session_ttl_s;
    c->pdata = s;
    DLIST_PUSH(S.all, s, prev, next);
    conn_accept(c); /* the ticket comes in CONNECT */
}

static void stomp_goodbye(struct conn *c, const char *why)
{
    if (c->pdata != NULL)
        send_error(c->pdata, why, NULL);
}

static void stomp_closed(struct conn *c)
{
    struct stomp *s = c->pdata;
    struct pending *p, *next;
    room_bridge_closed(c);
    if (s == NULL)
        return;
    resume_store(&s->r, 1); /* with the position sent: what comes again is counted as redelivered */
    resume_free(&s->r);
    DLIST_UNLINK(S.all, s, prev, next);
    for (p = s->pending; p != NULL; p = next) {
        next = p->next;
        free(p->receipt);
        free(p);
    }
    free(s);
    c->pdata = NULL;
}

/* Heart-beats (STOMP 1.2 "Heart-beating"): an EOL to a client that asked for them, when nothing else went
 * out for the interval; a client that promised them and is silent for twice its interval is closed. */
static void on_sweep(uv_timer_t *t)
{
    uint64_t now = push_now();
    (void)t;
    for (struct stomp *s = S.all; s != NULL; s = s->next) {
        struct conn *c = s->c;
        if (!s->connected || !conn_open(c))
            continue;
        if (s->expect_every_ms > 0 && now - c->heard_ms > 2 * s->expect_every_ms) {
            log_info("stomp heart-beat timeout conn=%llu uid=%lld ip=%s", (unsigned long long)c->id,
                     (long long)c->uid, c->ip);
            stats_error(STATS_E_IDLE);
            send_error(s, STOMP_E_HEARTBEAT_TO, NULL);
            conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, STOMP_E_HEARTBEAT_TO);
        } else if (s->send_every_ms > 0 && now - s->sent_ms >= s->send_every_ms) {
            char *eol = strdup("\n");
            put(s, eol, 1);
        }
    }
}

int stomp_start(void)
{
    S.lim.max_frame = (size_t)push.cfg->stomp.max_frame;
    S.lim.max_headers = (int)push.cfg->stomp.max_headers;
    S.lim.max_header_len = (size_t)push.cfg->stomp.max_header_len;
    if (push.cfg->stomp.heartbeat_ms > 0) {
        /* A negotiated interval is at least stomp.heartbeat_ms: four sweeps in the shortest keep beats on
         * time */
        uint64_t every = (uint64_t)push.cfg->stomp.heartbeat_ms / 4;
        every = every < STOMP_SWEEP_MIN_MS   ? STOMP_SWEEP_MIN_MS
                : every > STOMP_SWEEP_MAX_MS ? STOMP_SWEEP_MAX_MS
                                             : every;
        uv_timer_init(push.loop, &S.sweep);
        uv_timer_start(&S.sweep, on_sweep, every, every);
        S.started = 1;
    }
    return MP_OK;
}

void stomp_stop(void)
{
    if (S.started) {
        S.started = 0;
        uv_timer_stop(&S.sweep);
        uv_close((uv_handle_t *)&S.sweep, NULL);
    }
}

const struct proto stomp_proto = {
    .name = "stomp",
    .path = "/ws",
    .binary = 0,
    .open = stomp_open,
    .message = stomp_message,
    .goodbye = stomp_goodbye,
    .closed = stomp_closed,
    .reply = stomp_reply,
    .deliver = stomp_deliver,
    .unmetered = stomp_unmetered,
};
