/* proto_magpie.c -- Magpie's two WebSocket protocols as a client speaks them.
 *
 * Chat (SPEC §4): connect to <url>/<ticket> with a fresh single-use ticket minted with libmagpie
 * (auth_issue, kind websocket); "L" means logged in. Connection 2k and 2k+1 are a pair of friends; each sends
 * its partner {"id","to","type":"t","msg"} packets whose id carries the schedule (payload_id_format), times
 * the "A" with the same id and the partner times the delivered "t". Each user remembers the highest timeline
 * seq (SPEC §4.1) an A, a t or a Y answer showed it; with --sync-rate some send Y {after, limit} that far
 * back and check and time the answer (loop.c, syncans.h). Y ids are "y<run>-<after>", apart from the bench
 * message ids (payload_id_format: hex digits first), so an E can be told to be a Y's.
 * Group (SPEC §4.2): the same connections and packets, but a member sends g to its group (bench.h: which
 * connection is which member), times the A, and every other member times the delivered g.
 * Room (SPEC §5): SIGN_IN with a login token minted the same way, HEARTBEAT every --heartbeat-s, MESSAGE to
 * publish; deliveries come merged (roomproto.h), each message inside a batch counted and timed.
 */
#include "bench.h"
#include "roomproto.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_PACKET_MAX (PAYLOAD_MAX + 256)

static int64_t conn_uid(const struct worker *w, const struct conn *c)
{
    return worker_opts(w)->uid_base + (int64_t)c->idx;
}

/* ---- chat -------------------------------------------------------------------------------------------- */

/* Connections 2k and 2k+1 chat with each other. */
static int64_t partner_uid(const struct worker *w, const struct conn *c)
{
    return worker_opts(w)->uid_base + (int64_t)(c->idx ^ 1u);
}

/* group: the group connection c is a member of (bench.h). */
static int64_t group_of(const struct worker *w, const struct conn *c)
{
    const struct bench_opts *o = worker_opts(w);
    return o->group_ids[c->idx / (uint32_t)o->members];
}

static int chat_path(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    const struct bench_opts *o = worker_opts(w);
    const struct endpoint *ep = &o->urls[c->idx % (uint32_t)o->nurls];
    char *ticket = auth_issue(&o->auth, AUTH_KIND_WEBSOCKET, conn_uid(w, c), o->ticket_ttl_s, NULL, NULL);
    if (ticket == NULL)
        return -1;
    size_t pl = strlen(ep->path);
    int n = snprintf(buf, cap, "%s%s%s", ep->path, pl > 0 && ep->path[pl - 1] == '/' ? "" : "/", ticket);
    free(ticket);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static void chat_open(struct worker *w, struct conn *c)
{
    /* Nothing to send: the server greets a good ticket with "L". */
}

/* msg of an E packet, for the operator. */
static const char *packet_msg(json_t *pkt)
{
    const char *m = json_string_value(json_object_get(pkt, "msg"));
    return m ? m : "(no text)";
}

/* Remember the highest seq a packet showed this user (A and deliveries carry it; before timelines none). */
static void note_seq(struct conn *c, json_t *pkt)
{
    json_t *seq = json_object_get(pkt, "seq");
    if (json_is_integer(seq) && json_integer_value(seq) > c->tl_max)
        c->tl_max = json_integer_value(seq);
}

/* Is id one of this run's Y ids? */
static int is_sync_id(const struct worker *w, const char *id)
{
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "y%08x-", worker_opts(w)->run);
    return id != NULL && strncmp(id, prefix, strlen(prefix)) == 0;
}

static void chat_message(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct bench_report *rep = worker_report(w);
    json_error_t err;
    json_t *pkt = json_loadb((const char *)data, len, 0, &err);
    const char *type = json_string_value(json_object_get(pkt, "type"));
    if (opcode != WSF_TEXT || pkt == NULL || !json_is_object(pkt) || type == NULL || strlen(type) != 1) {
        rep->proto_errors++;
        bench_note_error(w, "chat: not a packet: %s", pkt == NULL ? err.text : "no one-letter type");
        json_decref(pkt);
        return;
    }
    int64_t now = bench_now_ns();
    const char *id = json_string_value(json_object_get(pkt, "id"));
    struct payload p;
    switch (type[0]) {
    case 'L':
        conn_ready(w, c);
        break;
    case 'E':
        if (c->state == CS_OPEN) {
            char why[160];
            snprintf(why, sizeof(why), "chat login refused: %s", packet_msg(pkt));
            conn_fail(w, c, FR_LOGIN, why);
            break;
        }
        if (is_sync_id(w, id)) {
            bench_synced(w, c, NULL, packet_msg(pkt), now);
            break;
        }
        rep->send_errors++;
        bench_note_error(w, "chat E: %s", packet_msg(pkt));
        p.pub = c->idx;
        if (id != NULL && payload_id_parse(id, strlen(id), &p) == 0 && p.run == worker_opts(w)->run)
            bench_refused(w, &p, now);
        break;
    case 'Y':
        if (!is_sync_id(w, id)) {
            rep->proto_errors++;
            bench_note_error(w, "chat: Y with an id we did not send");
            break;
        }
        bench_synced(w, c, json_object_get(pkt, "msg"), NULL, now);
        break;
    case 'A':
        note_seq(c, pkt);
        p.pub = c->idx;
        if (id == NULL || payload_id_parse(id, strlen(id), &p) != 0 || p.run != worker_opts(w)->run) {
            rep->proto_errors++;
            bench_note_error(w, "chat: A with an id we did not send");
            break;
        }
        bench_acked(w, c, &p, now);
        break;
    case 't': {
        json_t *msg = json_object_get(pkt, "msg");
        json_int_t from = json_integer_value(json_object_get(pkt, "from"));
        rep->frames++;
        note_seq(c, pkt);
        if (!json_is_string(msg) || from != partner_uid(w, c)) {
            rep->foreign++;
            break;
        }
        bench_delivered(w, c, (const uint8_t *)json_string_value(msg), json_string_length(msg), now);
        break;
    }
    case 'g': {
        /* A group message (SPEC §4.2): every member's every connection gets it, with this member's seq. */
        json_t *msg = json_object_get(pkt, "msg");
        rep->frames++;
        note_seq(c, pkt);
        if (worker_opts(w)->scenario != SC_GROUP || !json_is_string(msg) ||
            json_integer_value(json_object_get(pkt, "to")) != group_of(w, c)) {
            rep->foreign++;
            break;
        }
        bench_delivered(w, c, (const uint8_t *)json_string_value(msg), json_string_length(msg), now);
        break;
    }
    case 'C':
        bench_note_error(w, "chat C: %s", packet_msg(pkt));
        break;
    default: /* P, O, s...: not part of the load */
        break;
    }
    json_decref(pkt);
}

static int chat_send(struct worker *w, struct conn *c, const struct payload *p, const char *text, size_t len)
{
    static char pkt[CHAT_PACKET_MAX];
    char id[PAYLOAD_ID_MAX + 1];
    if (payload_id_format(id, sizeof(id), p) < 0)
        return -1;
    /* text is the payload alphabet (payload.h): nothing to escape, so the packet is formatted directly. */
    int group = worker_opts(w)->scenario == SC_GROUP;
    int n = snprintf(pkt, sizeof(pkt), "{\"id\":\"%s\",\"to\":%lld,\"type\":\"%c\",\"msg\":\"%.*s\"}", id,
                     (long long)(group ? group_of(w, c) : bench_recipient(worker_opts(w), c->idx)),
                     group ? 'g' : 't', (int)len, text);
    if (n < 0 || (size_t)n >= sizeof(pkt))
        return -1;
    return conn_ws_send(w, c, WSF_TEXT, pkt, (size_t)n);
}

static int chat_sync(struct worker *w, struct conn *c, int64_t after, int limit)
{
    char pkt[160];
    int n = snprintf(pkt, sizeof(pkt),
                     "{\"id\":\"y%08x-%lld\",\"to\":0,\"type\":\"Y\",\"msg\":{\"after\":%lld,\"limit\":%d}}",
                     worker_opts(w)->run, (long long)after, (long long)after, limit);
    if (n < 0 || (size_t)n >= sizeof(pkt))
        return -1;
    return conn_ws_send(w, c, WSF_TEXT, pkt, (size_t)n);
}

const struct proto proto_magpie_chat = {
    .name = "magpie-chat",
    .path = chat_path,
    .on_open = chat_open,
    .on_message = chat_message,
    .send = chat_send,
    .sync = chat_sync,
};

/* ---- rooms ------------------------------------------------------------------------------------------- */

static int room_path(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    const struct bench_opts *o = worker_opts(w);
    int n = snprintf(buf, cap, "%s", o->urls[c->idx % (uint32_t)o->nurls].path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int send_req(struct worker *w, struct conn *c, uint8_t *req, size_t len)
{
    if (req == NULL)
        return -1;
    int rc = conn_ws_send(w, c, WSF_BINARY, req, len);
    free(req);
    return rc;
}

static void room_open(struct worker *w, struct conn *c)
{
    const struct bench_opts *o = worker_opts(w);
    size_t len = 0;
    char *token = auth_issue(&o->auth, AUTH_KIND_LOGIN, conn_uid(w, c), 3600, NULL, NULL);
    if (token == NULL) {
        conn_fail(w, c, FR_LOGIN, "cannot mint a login token");
        return;
    }
    uint8_t *req = room_req_sign_in(token, bench_room(w), &len);
    free(token);
    send_req(w, c, req, len);
}

struct batch_ctx {
    struct worker *w;
    struct conn *c;
    int64_t now;
};

static void on_batch_message(void *arg, const uint8_t *msg, size_t len)
{
    struct batch_ctx *b = arg;
    bench_delivered(b->w, b->c, msg, len, b->now);
}

static void room_message(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct bench_report *rep = worker_report(w);
    struct batch_ctx b = {w, c, bench_now_ns()};
    struct room_reply r;
    if (opcode != WSF_BINARY) {
        rep->proto_errors++;
        bench_note_error(w, "room: a text frame from the server");
        return;
    }
    switch (room_reply_decode(data, len, on_batch_message, &b, &r)) {
    case ROOM_REPLY_RESULT:
        if (c->state == CS_OPEN) {
            if (r.code == 0) {
                conn_ready(w, c);
            } else {
                char why[200];
                snprintf(why, sizeof(why), "room sign-in refused: Err %d %s", r.code, r.msg);
                conn_fail(w, c, FR_LOGIN, why);
            }
        } else if (r.code != 0) {
            rep->send_errors++;
            bench_note_error(w, "room Err %d %s", r.code, r.msg);
        }
        break;
    case ROOM_REPLY_BATCH:
        if (!c->publisher)
            rep->frames++;
        break;
    case ROOM_REPLY_PONG:
    case ROOM_REPLY_MEMBERS:
        break;
    case ROOM_REPLY_OTHER:
        rep->proto_errors++;
        bench_note_error(w, "room: Reply of an unknown type");
        break;
    default:
        rep->proto_errors++;
        bench_note_error(w, "room: a frame that is not a Reply (or a malformed batch)");
        break;
    }
}

static int room_send(struct worker *w, struct conn *c, const struct payload *p, const char *text, size_t len)
{
    size_t n = 0;
    uint8_t *req = room_req_message(bench_room(w), (const uint8_t *)text, len, worker_opts(w)->level, &n);
    return send_req(w, c, req, n);
}

static void room_tick(struct worker *w, struct conn *c, int64_t now)
{
    size_t len = 0;
    if (now - c->last_tx < (int64_t)(worker_opts(w)->heartbeat_s * 1e9))
        return;
    c->last_tx = now;
    uint8_t *req = room_req_heartbeat(&len); /* before send_req reads len: argument order is unspecified */
    send_req(w, c, req, len);
}

const struct proto proto_magpie_room = {
    .name = "magpie-room",
    .path = room_path,
    .on_open = room_open,
    .on_message = room_message,
    .send = room_send,
    .tick = room_tick,
};
