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
 * header), a destination that is not the client's own, an unknown ack id, rate limiting (push.rate).
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
 * Order and catch-up, by seq (timeline.h). The subscription keeps sent_upto: every seq of the user's
 * timeline up to it has been sent on this connection (or is one this session sent itself, on this or an
 * earlier connection with the same client-id: own messages are not sent back, the RECEIPT told the client).
 * In LIVE a delivery with seq sent_upto + 1 goes out; an older one is a duplicate and dropped; a newer one
 * means one is missing (a delivery from another node not here yet, or an own SEND's seq) and the session
 * catches up: CATCHUP sends Y after sent_upto, drops live deliveries meanwhile (remembering the highest seq
 * seen), sends each entry of the answer, and asks again while the answer has more or a higher seq was seen;
 * then LIVE again. So every entry goes out once, in seq order. Deliveries without seq (a read mark r, an
 * order event s) go out as they come. ack:auto (the default) starts LIVE at the first seq that arrives.
 * ack:client and client-individual keep acked_upto: every seq up to it was ACKed (cumulatively for client,
 * one by one for client-individual, with the ACKs past a gap held in a small window; own messages count as
 * ACKed). It is stored in Redis as KEY_STOMP_ACKED, field = the CONNECT client-id header ("" when none: give
 * each device its own), only ever raised, written when it moves (and at the end). A later SUBSCRIBE with a
 * client mode reads it and starts in CATCHUP after it: what was not ACKed, and what arrived while away, comes
 * again in order. With nothing stored it starts LIVE like ack:auto. NACK leaves a message un-ACKed (it comes
 * again on the next connect). Delivery is at-least-once across connections: an ACK whose write did not reach
 * Redis is sent again.
 */
#include "stomp.h"
#include "chat.h"
#include "conn.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "room_bridge.h"
#include "stats.h"
#include "stompframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STOMP_SWEEP_MIN_MS 50   /* heart-beats are sent and checked every stomp.heartbeat_ms / 4, within */
#define STOMP_SWEEP_MAX_MS 1000 /* these bounds */
#define STOMP_MAX_ID       64   /* bytes of a subscription id and a client-id */
#define STOMP_ACK_WINDOW   256 /* ACKs held past a gap (client-individual); more are forgotten (sent again) */
#define STOMP_SYNC_LIMIT   100 /* entries per catch-up Y */
#define STOMP_SEQ_ASK      "4000000000000000000" /* Y after this: no entries, only the latest seq */
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

/* Raise a session's ACKed seq (never lower it) and renew the key's TTL. KEYS: KEY_STOMP_ACKED. ARGV: field,
 * seq, stomp.session_ttl_s. */
static struct rdsa_script acked_lua = {
    "stomp_acked",
    "local v = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')\n"
    "if tonumber(ARGV[2]) > v then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return 0\n",
    ""};

enum ack_mode { ACK_AUTO, ACK_CLIENT, ACK_INDIVIDUAL };
enum sub_state { SUB_NONE, SUB_LOADING, SUB_CATCHUP, SUB_LIVE };

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
    char tag[16]; /* ".<8 hex of the client-id's hash>-": what every connection of the session puts in ids */
    char client_id[STOMP_MAX_ID + 1];
    uint64_t next_n, y_n;
    struct pending *pending, *pending_tail;
    uint64_t send_every_ms, expect_every_ms, sent_ms;
    /* the subscription */
    enum sub_state sub;
    enum ack_mode ack;
    char sub_id[STOMP_MAX_ID + 1];
    int64_t sent_upto; /* -1: not known yet (until the subscription's first Y answers) */
    int64_t seen_max;
    int64_t acked_upto, stored; /* -1: not known yet */
    /* ACKs held past a gap (client-individual): STOMP_ACK_WINDOW of them, allocated at the first one -- most
     * sessions never have one, and 2 KiB inline in every session was most of an idle STOMP connection's
     * memory (bench/README.md, "STOMP and MQTT") */
    int64_t *ahead;
    int nahead;
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

/* ---- the ACKed position ---- */

static void store_acked(struct stomp *s)
{
    char key[64], seq[24], ttl[24];
    const char *argv[4];
    size_t argvlen[4];

    if (s->acked_upto <= s->stored || s->c->uid == 0)
        return;
    snprintf(key, sizeof(key), KEY_STOMP_ACKED, (long long)s->c->uid);
    snprintf(seq, sizeof(seq), "%lld", (long long)s->acked_upto);
    snprintf(ttl, sizeof(ttl), "%lld", push.cfg->stomp.session_ttl_s);
    argv[0] = key;
    argv[1] = s->client_id;
    argv[2] = seq;
    argv[3] = ttl;
    for (int i = 0; i < 4; i++)
        argvlen[i] = strlen(argv[i]);
    /* Not waited for: a write that is lost leaves the older position, so those messages come again. */
    if (rdsa_eval(&acked_lua, NULL, NULL, 1, 4, argv, argvlen) == MP_OK)
        s->stored = s->acked_upto;
}

/* Move acked_upto over the ACKs held past it. */
static void absorb_ahead(struct stomp *s)
{
    int k = 0;
    if (s->nahead == 0)
        return;
    while (k < s->nahead && s->ahead[k] <= s->acked_upto + 1) {
        if (s->ahead[k] == s->acked_upto + 1)
            s->acked_upto++;
        k++;
    }
    memmove(s->ahead, s->ahead + k, (size_t)(s->nahead - k) * sizeof(s->ahead[0]));
    s->nahead -= k;
}

/* seq was ACKed on its own (client-individual, or the session's own message). */
static void ack_one(struct stomp *s, int64_t seq)
{
    int i;
    if (s->ack == ACK_AUTO || s->acked_upto < 0 || seq <= s->acked_upto)
        return;
    if (seq == s->acked_upto + 1) {
        s->acked_upto = seq;
        absorb_ahead(s);
        return;
    }
    for (i = 0; i < s->nahead && s->ahead[i] < seq; i++)
        ;
    if (i < s->nahead && s->ahead[i] == seq)
        return;
    if (s->ahead == NULL && (s->ahead = malloc(STOMP_ACK_WINDOW * sizeof(*s->ahead))) == NULL)
        return; /* out of memory: forgotten, as past the window: it comes again on the next connect */
    if (s->nahead == STOMP_ACK_WINDOW) {
        if (i == s->nahead)
            return; /* forgotten: it comes again on the next connect */
        s->nahead--;
    }
    memmove(s->ahead + i + 1, s->ahead + i, (size_t)(s->nahead - i) * sizeof(s->ahead[0]));
    s->ahead[i] = seq;
    s->nahead++;
}

/* Everything up to seq was ACKed (ack:client). */
static void ack_upto(struct stomp *s, int64_t seq)
{
    if (s->acked_upto < 0 || seq <= s->acked_upto)
        return;
    s->acked_upto = seq;
    absorb_ahead(s);
}

/* ---- deliveries ---- */

static int64_t json_int(json_t *o, const char *name, int64_t def)
{
    json_t *v = json_object_get(o, name);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) /* mid travels as a decimal string */
        return strtoll(json_string_value(v), NULL, 10);
    return def;
}

/* The session's own message: sent by a connection of this user with this client-id ("st<digits><tag>..."),
 * whose RECEIPT told the client. */
static int own(const struct stomp *s, json_t *pkt)
{
    const char *id = json_string_value(json_object_get(pkt, "id"));
    if (json_int(pkt, "from", 0) != s->c->uid || id == NULL || strncmp(id, "st", 2) != 0)
        return 0;
    id += 2 + strspn(id + 2, "0123456789");
    return strncmp(id, s->tag, strlen(s->tag)) == 0;
}

/* MESSAGE for one packet: body = text (the packet's JSON), headers from pkt. */
static void send_message(struct stomp *s, json_t *pkt, const char *text, size_t len)
{
    char seq_s[24], from_s[24], ts_s[24], ack_s[32], type_s[8];
    const char *mid = json_string_value(json_object_get(pkt, "mid"));
    const char *type = json_string_value(json_object_get(pkt, "type"));
    int64_t seq = json_int(pkt, "seq", -1);
    const char *h[32];
    int n = 0;

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
    if (s->ack != ACK_AUTO)
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
}

static void catch_up(struct stomp *s);

/* A seq-carrying entry at the LIVE position: the next one goes out, an old one is dropped, a newer one
 * starts a catch-up. Returns MP_OK when it was sent. */
static int live_entry(struct stomp *s, json_t *pkt, const char *text, size_t len, int64_t seq)
{
    if (seq <= s->sent_upto)
        return MP_EAGAIN;
    if (seq > s->sent_upto + 1) {
        s->seen_max = seq;
        catch_up(s);
        return MP_EAGAIN;
    }
    s->sent_upto = seq;
    if (pkt == NULL || own(s, pkt)) { /* the session's own message (its A, or another connection's copy) */
        ack_one(s, seq);
        store_acked(s);
        return MP_EAGAIN;
    }
    send_message(s, pkt, text, len);
    return MP_OK;
}

/* proto->deliver: a delivery for the user, as the JSON packet with the user's seq. */
static int stomp_deliver(struct conn *c, struct frame *f)
{
    struct stomp *s = c->pdata;
    json_t *pkt;
    int64_t seq;
    int rc = MP_EAGAIN;

    if (s == NULL || s->sub == SUB_NONE)
        return MP_EAGAIN;
    if ((pkt = json_loadb((const char *)frame_payload(f), f->len, 0, NULL)) == NULL)
        return MP_EAGAIN;
    seq = json_int(pkt, "seq", -1);
    if (seq < 0) {
        if (s->sub == SUB_LIVE || s->sub == SUB_CATCHUP) {
            send_message(s, pkt, (const char *)frame_payload(f), f->len);
            rc = MP_OK;
        }
    } else if (s->sub != SUB_LIVE) {
        if (seq > s->seen_max) /* CATCHUP (or still loading): a later Y brings it */
            s->seen_max = seq;
    } else {
        rc = live_entry(s, pkt, (const char *)frame_payload(f), f->len, seq);
    }
    json_decref(pkt);
    return rc;
}

/* ---- catch-up (Y through the core) ---- */

static void ask_y(struct stomp *s, const char *after)
{
    char id[64], body[96];
    struct chatpkt p;

    snprintf(id, sizeof(id), "%sy%llu", s->prefix, (unsigned long long)++s->y_n);
    snprintf(body, sizeof(body), "{\"after\":%s,\"limit\":%d}", after, STOMP_SYNC_LIMIT);
    memset(&p, 0, sizeof(p));
    if ((p.root = json_pack("{s:s,s:i,s:s,s:o}", "id", id, "to", 0, "type", "Y", "msg",
                            json_loads(body, 0, NULL))) == NULL) {
        conn_abort(s->c, "out of memory");
        return;
    }
    p.id = json_string_value(json_object_get(p.root, "id"));
    p.id_len = strlen(p.id);
    p.type = 'Y';
    p.to = json_object_get(p.root, "to");
    p.msg = json_object_get(p.root, "msg");
    chat_handle(s->c, &p);
    chatpkt_free(&p);
}

static void catch_up(struct stomp *s)
{
    char after[24];
    s->sub = SUB_CATCHUP;
    snprintf(after, sizeof(after), "%lld", (long long)s->sent_upto);
    ask_y(s, after);
}

/* The answer to a catch-up Y: {"messages": [...], "more", "max"}, or E. */
static void on_y(struct stomp *s, char type, json_t *msg)
{
    json_t *list = json_object_get(msg, "messages"), *pkt;
    int64_t before = s->sent_upto;
    size_t i;

    if (type != 'Y' || !json_is_array(list)) {
        log_info("stomp catch-up failed conn=%llu uid=%lld", (unsigned long long)s->c->id,
                 (long long)s->c->uid);
        send_error(s, CHAT_E_UNAVAILABLE, NULL);
        conn_close(s->c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
        return;
    }
    if (s->sub == SUB_LOADING) { /* asked for the position only: a client session with nothing stored */
        s->sent_upto = s->acked_upto = s->stored = json_int(msg, "max", 0);
        s->sub = SUB_LIVE;
        if (s->seen_max > s->sent_upto)
            catch_up(s);
        return;
    }
    json_array_foreach(list, i, pkt)
    {
        int64_t seq = json_int(pkt, "seq", -1);
        char *text;
        if (seq <= s->sent_upto)
            continue;
        s->sent_upto = seq;
        if (own(s, pkt)) {
            ack_one(s, seq);
            continue;
        }
        if ((text = json_dumps(pkt, JSON_COMPACT)) == NULL) {
            conn_abort(s->c, "out of memory");
            return;
        }
        send_message(s, pkt, text, strlen(text));
        free(text);
    }
    store_acked(s);
    if (json_is_true(json_object_get(msg, "more")) || s->seen_max > s->sent_upto) {
        if (s->sent_upto == before) {
            /* nothing served (timeline.h: an entry neither Redis nor MySQL has yet): the client retries */
            send_error(s, CHAT_E_UNAVAILABLE, NULL);
            conn_close(s->c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
            return;
        }
        catch_up(s);
        return;
    }
    s->sub = SUB_LIVE;
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
        if (rest[0] == 'y') {
            if (strtoull(rest + 1, NULL, 10) == s->y_n && s->sub != SUB_NONE)
                on_y(s, type, msg);
        } else {
            struct pending *p = take_pending(s, strtoull(rest, NULL, 10));
            if (p != NULL && type == 'A') {
                const char *mid = json_string_value(json_object_get(pkt, "mid"));
                int64_t seq = json_int(pkt, "seq", -1);
                char seq_s[24];
                const char *h[] = {"receipt-id", p->receipt, "mid", mid ? mid : "", "seq", seq_s, NULL};
                snprintf(seq_s, sizeof(seq_s), "%lld", (long long)seq);
                if (p->receipt != NULL)
                    send_frame(s, "RECEIPT", h, NULL, 0);
                if (seq > 0 && s->sub == SUB_LIVE)
                    live_entry(s, NULL, NULL, 0, seq);
                else if (seq > s->seen_max && s->sub != SUB_NONE)
                    s->seen_max = seq;
            } else if (p != NULL) {
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

/* FNV-1a, 32 bits: the client-id's tag in the session's ids. */
static unsigned fnv1a(const char *v)
{
    unsigned h = 2166136261u;
    for (; *v; v++)
        h = (h ^ (unsigned char)*v) * 16777619u;
    return h;
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
    snprintf(s->tag, sizeof(s->tag), ".%08x-", fnv1a(s->client_id));
    s->prefix_len =
        (size_t)snprintf(s->prefix, sizeof(s->prefix), "st%lld%s", (long long)id_next(&push.ids), s->tag);
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
    chat_handle(s->c, &p); /* the answer comes through stomp_reply */
    chatpkt_free(&p);
}

static void on_acked_loaded(redisReply *r, void *arg)
{
    struct conn *c = arg;
    struct stomp *s = c->pdata;

    if (s != NULL && conn_open(c) && s->sub == SUB_LOADING) {
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            send_error(s, CHAT_E_UNAVAILABLE, NULL);
            conn_close(c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
        } else if (r->type == REDIS_REPLY_STRING) {
            s->sent_upto = s->acked_upto = s->stored = strtoll(r->str, NULL, 10);
            catch_up(s);
        } else {
            ask_y(s, STOMP_SEQ_ASK); /* nothing stored: start at the timeline's end */
        }
    }
    conn_release(c);
}

static void do_subscribe(struct stomp *s, struct stompframe *f)
{
    const char *dest = stompframe_get(f, "destination"), *receipt = stompframe_get(f, "receipt");
    const char *id = stompframe_get(f, "id"), *ack = stompframe_get(f, "ack");
    char key[64];

    if (!valid_id(id)) {
        refuse(s, STOMP_E_NO_ID, receipt, STATS_E_MALFORMED);
        return;
    }
    if (dest == NULL) {
        refuse(s, STOMP_E_NO_DEST, receipt, STATS_E_MALFORMED);
        return;
    }
    if (room_bridge_stomp_dest(dest)) { /* joining a room (room_bridge.h) */
        const char *why =
            room_bridge_stomp_subscribe(s->c, dest, id, ack, receipt, s->sub != SUB_NONE ? s->sub_id : NULL);
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
    if (s->sub != SUB_NONE || room_bridge_stomp_has_id(s->c, id)) {
        refuse(s, STOMP_E_SUBSCRIBED, receipt, STATS_E_REJECTED);
        return;
    }
    if (ack == NULL || strcmp(ack, "auto") == 0)
        s->ack = ACK_AUTO;
    else if (strcmp(ack, "client") == 0)
        s->ack = ACK_CLIENT;
    else if (strcmp(ack, "client-individual") == 0)
        s->ack = ACK_INDIVIDUAL;
    else {
        refuse(s, STOMP_E_ACK_MODE, receipt, STATS_E_MALFORMED);
        return;
    }
    snprintf(s->sub_id, sizeof(s->sub_id), "%s", id);
    s->sent_upto = s->acked_upto = s->stored = -1;
    s->seen_max = 0;
    s->nahead = 0;
    send_receipt(s, receipt);
    s->sub = SUB_LOADING;
    if (s->ack == ACK_AUTO) { /* live from here: the timeline's end now is where it starts */
        ask_y(s, STOMP_SEQ_ASK);
        return;
    }
    snprintf(key, sizeof(key), KEY_STOMP_ACKED, (long long)s->c->uid);
    conn_hold(s->c);
    if (rdsa_cmd(on_acked_loaded, s->c, "HGET %s %s", key, s->client_id) != MP_OK) {
        conn_release(s->c);
        send_error(s, CHAT_E_UNAVAILABLE, NULL);
        conn_close(s->c, CONN_CLOSE_TRY_AGAIN_LATER, CHAT_E_UNAVAILABLE);
    }
}

static void do_unsubscribe(struct stomp *s, struct stompframe *f)
{
    const char *id = stompframe_get(f, "id"), *receipt = stompframe_get(f, "receipt");
    if (id != NULL && room_bridge_stomp_unsubscribe(s->c, id, receipt))
        return; /* it was a room's */
    if (s->sub == SUB_NONE || id == NULL || strcmp(id, s->sub_id) != 0) {
        refuse(s, STOMP_E_NO_SUB, receipt, STATS_E_REJECTED);
        return;
    }
    store_acked(s);
    s->sub = SUB_NONE;
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
    if (end == id || *end != '\0' || seq <= 0 || s->sub == SUB_NONE || s->sent_upto < 0 ||
        seq > s->sent_upto) {
        refuse(s, STOMP_E_ACK_ID, receipt, STATS_E_REJECTED);
        return;
    }
    if (f->cmd == STOMP_ACK) {
        if (s->ack == ACK_CLIENT)
            ack_upto(s, seq);
        else
            ack_one(s, seq);
        store_acked(s);
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
    store_acked(s);
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
    s->sent_upto = s->acked_upto = s->stored = -1;
    c->pdata = s;
    s->next = S.all;
    if (S.all != NULL)
        S.all->prev = s;
    S.all = s;
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
    store_acked(s);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        S.all = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    for (p = s->pending; p != NULL; p = next) {
        next = p->next;
        free(p->receipt);
        free(p);
    }
    free(s->ahead);
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
    rdsa_script(&acked_lua);
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
};
