/* room.c -- the room protocol (room.h): requests, sign-in, heartbeat timeouts. */
#include "room.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    struct member *idle_head, *idle_tail; /* every room connection, least recently heard from first */
    uv_timer_t sweep;
    int started;
} K;

/* ---- replies ---- */

static void send_packed(struct conn *c, uint8_t *buf, size_t len)
{
    struct frame *f = buf ? frame_new(buf, len, 1) : NULL;
    free(buf);
    if (f == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    conn_send(c, f);
    frame_unref(f);
}

static void reply(struct conn *c, int type, const void *data, size_t data_len)
{
    size_t len = 0;
    uint8_t *buf;
    if (c->state != CONN_OPEN && c->state != CONN_OPENING)
        return;
    buf = roompkt_reply(type, data, data_len, &len);
    send_packed(c, buf, len);
}

static void reply_err(struct conn *c, int code, const char *msg)
{
    size_t len = 0;
    uint8_t *buf;
    if (c->state != CONN_OPEN && c->state != CONN_OPENING)
        return;
    buf = roompkt_err(code, msg, &len);
    send_packed(c, buf, len);
}

/* A refused request: Err with the reason, counted; requests a client should never send also use one of
 * the connection's bad-packet allowance (push.bad_packet_limit). */
static void refuse(struct conn *c, int code, const char *why, enum stats_reason r, int strike)
{
    stats_error(r);
    reply_err(c, code, why);
    if (strike)
        conn_strike(c);
}

/* ---- heartbeats ---- */

static void idle_unlink(struct member *m)
{
    if (m->idle_prev != NULL)
        m->idle_prev->idle_next = m->idle_next;
    else if (K.idle_head == m)
        K.idle_head = m->idle_next;
    else
        return; /* not in the list */
    if (m->idle_next != NULL)
        m->idle_next->idle_prev = m->idle_prev;
    else
        K.idle_tail = m->idle_prev;
    m->idle_prev = m->idle_next = NULL;
}

/* m was heard from: it moves to the tail, so the list stays in the order of heard_ms. */
static void touch(struct member *m)
{
    idle_unlink(m);
    m->heard_ms = push_now();
    m->idle_prev = K.idle_tail;
    if (K.idle_tail != NULL)
        K.idle_tail->idle_next = m;
    else
        K.idle_head = m;
    K.idle_tail = m;
}

static void on_sweep(uv_timer_t *t)
{
    uint64_t now = push_now(), idle = (uint64_t)push.cfg->push.room_idle_s * 1000;
    struct member *m;

    while ((m = K.idle_head) != NULL && now - m->heard_ms >= idle) {
        idle_unlink(m);
        stats_error(STATS_E_IDLE);
        log_info("room closing silent connection conn=%llu uid=%lld ip=%s idle_s=%lld",
                 (unsigned long long)m->c->id, (long long)m->c->uid, m->c->ip, push.cfg->push.room_idle_s);
        reply_err(m->c, ROOM_E_CLOSING, ROOM_R_IDLE);
        conn_close(m->c, LWS_CLOSE_STATUS_POLICY_VIOLATION, ROOM_R_IDLE);
    }
}

/* ---- SIGN_IN ---- */

void room_member_ready(struct member *m)
{
    m->state = MEMBER_IN;
    reply_err(m->c, ROOM_OK, ROOM_R_OK);
    log_info("room signed in conn=%llu uid=%lld room=\"%s\" ip=%s", (unsigned long long)m->c->id,
             (long long)m->c->uid, room_name(m->room), m->c->ip);
}

static void on_signed_in(struct conn *c, enum conn_login_result r)
{
    struct member *m = c->pdata;

    if (m == NULL)
        return;
    if (r == CONN_LOGIN_OK) {
        m->state = MEMBER_JOINING;
        if (room_join(m, m->want) != MP_OK) {
            log_error("room join failed: out of memory conn=%llu", (unsigned long long)c->id);
            conn_abort(c, "out of memory");
        }
        return;
    }
    m->state = MEMBER_NEW;
    switch (r) {
    case CONN_LOGIN_REVOKED:
        refuse(c, ROOM_E_SIGN_IN, ROOM_R_REVOKED, STATS_E_TICKET, 1);
        break;
    case CONN_LOGIN_TOO_MANY:
        log_info("room refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)c->id, ROOM_R_TOO_MANY,
                 c->ip);
        refuse(c, ROOM_E_TOO_MANY, ROOM_R_TOO_MANY, STATS_E_TOO_MANY, 0);
        conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, ROOM_R_TOO_MANY);
        return;
    default:
        refuse(c, ROOM_E_UNAVAILABLE, ROOM_R_UNAVAILABLE, STATS_E_UNAVAILABLE, 0);
        break;
    }
    conn_accept(c); /* the client may try again */
}

static void room_sign_in(struct conn *c, struct member *m, const struct roompkt *p)
{
    struct auth_claims claims;
    const char *why;

    if (m->state != MEMBER_NEW) {
        refuse(c, ROOM_E_SIGNED_IN, ROOM_R_SIGNED_IN, STATS_E_REJECTED, 1);
        return;
    }
    switch (auth_verify(&push.auth, p->sign_in->token, AUTH_KIND_LOGIN, &claims)) {
    case AUTH_OK:
        touch(m);
        m->state = MEMBER_SIGNING;
        snprintf(m->want, sizeof(m->want), "%s", p->sign_in->roomid);
        conn_login_session(c, claims.uid, claims.jti, on_signed_in);
        return;
    case AUTH_EXPIRED:
        why = ROOM_R_EXPIRED;
        break;
    case AUTH_WRONG_KIND:
        why = ROOM_R_WRONG_KIND;
        break;
    default:
        why = ROOM_R_BAD_TOKEN;
        break;
    }
    log_info("room refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)c->id, why, c->ip);
    refuse(c, ROOM_E_SIGN_IN, why, STATS_E_TICKET, 1);
}

/* ---- HEARTBEAT ---- */

static void room_heartbeat(struct conn *c, struct member *m, const struct roompkt *p)
{
    static const char pong[] = "pong";
    reply(c, MAGPIE__PACKAGE_TYPE__HEARTBEAT, pong, sizeof(pong) - 1);
}

/* ---- MESSAGE ---- */

static void on_published(redisReply *r, void *arg)
{
    struct conn *c = arg;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("room publish failed reason=\"%s\"", r->str);
        refuse(c, ROOM_E_UNAVAILABLE, ROOM_R_UNAVAILABLE, STATS_E_UNAVAILABLE, 0);
    }
    conn_release(c);
}

/* Publish to the room's channel (room_publish: always of normal level, whatever msgLv says); the member gets
 * its own message back in a batch like everyone else. */
static void room_message(struct conn *c, struct member *m, const struct roompkt *p)
{
    const char *room = room_name(m->room);

    if (p->msg->roomid[0] != '\0' && strcmp(p->msg->roomid, room) != 0) {
        refuse(c, ROOM_E_BAD_ROOM, ROOM_R_OTHER_ROOM, STATS_E_REJECTED, 0);
        return;
    }
    conn_hold(c);
    if (room_publish(m->room, p->msg->data.data, p->msg->data.len, on_published, c) != MP_OK) {
        conn_release(c);
        refuse(c, ROOM_E_UNAVAILABLE, ROOM_R_UNAVAILABLE, STATS_E_UNAVAILABLE, 0);
    }
}

/* ---- MEMBERS ---- */

static void answer_members(struct conn *c, long long n)
{
    char s[24];
    int len = snprintf(s, sizeof(s), "%lld", n);
    reply(c, MAGPIE__PACKAGE_TYPE__MEMBERS, s, (size_t)len);
}

static void on_others(long long n, void *arg)
{
    struct conn *c = arg;
    struct member *m = c->pdata;

    if (conn_open(c) && m != NULL && m->room != NULL) {
        if (n < 0) {
            refuse(c, ROOM_E_UNAVAILABLE, ROOM_R_UNAVAILABLE, STATS_E_UNAVAILABLE, 0);
        } else {
            room_set_others(m->room, n);
            answer_members(c, room_local_members(m->room) + n);
        }
    }
    conn_release(c);
}

/* Members across the cluster: this node's own count is exact; the other nodes' come from Redis, read at
 * most once per ROOM_COUNT_CACHE_MS per room however many members ask. */
static void room_members(struct conn *c, struct member *m, const struct roompkt *p)
{
    long long others;

    if (room_others(m->room, &others)) {
        answer_members(c, room_local_members(m->room) + others);
        return;
    }
    conn_hold(c);
    if (room_count_others(room_name(m->room), on_others, c) != MP_OK) {
        conn_release(c);
        refuse(c, ROOM_E_UNAVAILABLE, ROOM_R_UNAVAILABLE, STATS_E_UNAVAILABLE, 0);
    }
}

/* ---- the request table ---- */

typedef void (*room_handler)(struct conn *c, struct member *m, const struct roompkt *p);

/* PackageType -> handler, and whether it needs a signed-in member. Types not here get "unknown type". */
static const struct {
    room_handler fn;
    int signed_in;
} room_table[] = {
    [MAGPIE__PACKAGE_TYPE__SIGN_IN] = {room_sign_in, 0},
    [MAGPIE__PACKAGE_TYPE__HEARTBEAT] = {room_heartbeat, 1},
    [MAGPIE__PACKAGE_TYPE__MESSAGE] = {room_message, 1},
    [MAGPIE__PACKAGE_TYPE__MEMBERS] = {room_members, 1},
};

static void room_dispatch(struct conn *c, const char *buf, size_t len, int limited)
{
    struct member *m = c->pdata;
    struct roompkt p;
    int code;

    if (buf == NULL || m->state == MEMBER_SIGNING || m->state == MEMBER_JOINING) {
        /* a request that came before the answer to SIGN_IN */
        refuse(c, ROOM_E_SIGN_IN, ROOM_R_SIGN_IN, STATS_E_REJECTED, 0);
        return;
    }
    if (limited) {
        reply_err(c, ROOM_E_RATE, ROOM_R_RATE); /* counted and struck by the connection layer */
        return;
    }
    if (!c->rx_binary) {
        refuse(c, ROOM_E_MALFORMED, ROOM_R_TEXT_FRAME, STATS_E_MALFORMED, 1);
        return;
    }
    code = roompkt_parse(buf, len, &p);
    stats_room_request(p.type);
    if (code != ROOM_OK) {
        refuse(c, code, p.why, code == ROOM_E_UNKNOWN_TYPE ? STATS_E_UNKNOWN_TYPE : STATS_E_MALFORMED, 1);
    } else if (room_table[p.type].signed_in && m->state != MEMBER_IN) {
        refuse(c, ROOM_E_SIGN_IN, ROOM_R_SIGN_IN, STATS_E_REJECTED, 1);
    } else {
        if (m->state == MEMBER_IN)
            touch(m);
        room_table[p.type].fn(c, m, &p);
    }
    roompkt_free(&p);
}

/* ---- the connection ---- */

/* The WebSocket is up: no credentials yet (they come in SIGN_IN). Heard from now, so a client that never
 * signs in is closed after push.room_idle_s like a silent member. */
static void room_open(struct conn *c)
{
    struct member *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    m->c = c;
    m->state = MEMBER_NEW;
    c->pdata = m;
    touch(m);
    conn_accept(c);
}

static void room_goodbye(struct conn *c, const char *why)
{
    reply_err(c, ROOM_E_CLOSING, why);
}

static void room_closed(struct conn *c)
{
    struct member *m = c->pdata;
    if (m == NULL)
        return;
    idle_unlink(m);
    room_leave(m);
    c->pdata = NULL;
    free(m);
}

const struct proto room_proto = {
    .name = "room",
    .path = "/room",
    .binary = 1,
    .open = room_open,
    .message = room_dispatch,
    .goodbye = room_goodbye,
    .closed = room_closed,
};

/* ---- the node ---- */

int room_start(void)
{
    uv_timer_init(push.loop, &K.sweep);
    K.started = 1;
    uv_timer_start(&K.sweep, on_sweep, ROOM_SWEEP_MS, ROOM_SWEEP_MS);
    return room_hub_start();
}

void room_stop(void)
{
    if (!K.started)
        return;
    K.started = 0;
    uv_timer_stop(&K.sweep);
    uv_close((uv_handle_t *)&K.sweep, NULL);
    room_hub_stop();
}
