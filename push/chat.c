/* chat.c -- see chat.h: the handshake, the packet table, replies. */
#include "chat.h"
#include "group.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void chat_req_init(struct chat_req *r, struct conn *c, const struct chatpkt *p)
{
    r->c = c;
    r->id_len = p->id_len;
    memcpy(r->id, p->id, p->id_len);
    r->id[p->id_len] = '\0';
    conn_hold(c);
}

void chat_req_done(struct chat_req *r)
{
    conn_release(r->c);
    r->c = NULL;
}

void chat_reply(struct conn *c, const char *id, size_t id_len, char type, json_t *msg, json_t *extra)
{
    size_t len;
    char *s;
    if (c->state != CONN_OPEN && c->state != CONN_OPENING) {
        json_decref(msg);
        json_decref(extra);
        return;
    }
    s = chatpkt_reply_ex(id, id_len, type, msg, extra, &len);
    if (s == NULL) {
        conn_abort(c, "out of memory");
        return;
    }
    chat_reply_str(c, s, len);
}

void chat_reply_str(struct conn *c, char *packet, size_t len)
{
    if ((c->state != CONN_OPEN && c->state != CONN_OPENING) || c->proto->reply == NULL) {
        free(packet);
        return;
    }
    c->proto->reply(c, packet, len); /* proto.h: the JSON packet, or the protocol's form of it */
}

void chat_error(struct conn *c, const char *id, size_t id_len, const char *reason, enum stats_reason r)
{
    stats_error(r);
    chat_reply(c, id, id_len, 'E', json_string(reason), NULL);
    if (r == STATS_E_MALFORMED || r == STATS_E_UNKNOWN_TYPE)
        conn_strike(c);
}

void chat_deliver(int64_t uid, struct frame *f, const struct conn *except, int64_t ts)
{
    double latency = (double)(mp_now_ms() - ts) / 1000.0;
    for (struct conn *c = conn_user(uid); c != NULL; c = c->user_next)
        if (c != except && c->proto->deliver != NULL && conn_open(c) && c->proto->deliver(c, f) == MP_OK)
            stats_delivery(latency);
}

void chat_deliver_seq(int64_t uid, const char *packet, size_t len, int64_t seq, const struct conn *except,
                      int64_t ts)
{
    struct conn *c = conn_user(uid);
    struct frame *f;
    char *s;
    size_t n;

    if (c == NULL || (c == except && c->user_next == NULL))
        return;
    if ((s = packet_with_seq(packet, len, seq, &n)) == NULL || (f = frame_from_str(s, n)) == NULL) {
        log_error("delivery dropped: out of memory uid=%lld", (long long)uid);
        return;
    }
    chat_deliver(uid, f, except, ts);
    frame_unref(f);
}

size_t chat_dedup_key(char *buf, size_t size, int64_t from, const char *id, size_t id_len)
{
    int n = snprintf(buf, size, KEY_DEDUP, key_shard(from), (long long)from, "");
    if (n < 0 || (size_t)n + id_len > size)
        return 0;
    memcpy(buf + n, id, id_len);
    return (size_t)n + id_len;
}

/* Bytes of the first notify.preview_chars characters of a valid UTF-8 body: a notification's preview. */
size_t chat_preview_len(const char *body, size_t len)
{
    long long chars = 0;
    size_t i;
    for (i = 0; i < len; i++)
        if (((unsigned char)body[i] & 0xC0) != 0x80 && chars++ == push.cfg->notify.preview_chars)
            break;
    return i;
}

int chat_durable_ack(const struct chat_req *r, int ok, const char *retry, const char *mid, int64_t seq)
{
    if (!ok) {
        chat_error(r->c, r->id, r->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return 0;
    }
    chat_reply(r->c, r->id, r->id_len, 'A', json_string("success"),
               retry != NULL ? chat_retry_extra(retry)
                             : json_pack("{s:s,s:I}", "mid", mid, "seq", (json_int_t)seq));
    stats_ack();
    return retry == NULL;
}

json_t *chat_retry_extra(const char *first)
{
    const char *sp = strchr(first, ' ');
    if (sp == NULL)
        return json_pack("{s:s}", "mid", first);
    return json_pack("{s:s%,s:I}", "mid", first, (size_t)(sp - first), "seq",
                     (json_int_t)strtoll(sp + 1, NULL, 10));
}

/* ---- P ---- */

static void chat_ping(struct conn *c, const struct chatpkt *p)
{
    chat_reply(c, p->id, p->id_len, 'P', json_string("pong"), NULL);
}

/* Packet type -> handler. Types not here (including the server-only E L A C s) get E "unknown type". */
static void (*const chat_table[128])(struct conn *c, const struct chatpkt *p) = {
    ['P'] = chat_ping,    ['t'] = chat_send,       ['i'] = chat_send, ['O'] = chat_online,
    ['H'] = chat_history, ['T'] = chat_take_order, ['S'] = chat_site, ['Y'] = timeline_sync,
    ['R'] = chat_read,    ['g'] = group_send,
};

void chat_handle(struct conn *c, const struct chatpkt *p)
{
    if (chat_table[(unsigned char)p->type] == NULL)
        chat_error(c, p->id, p->id_len, CHAT_E_UNKNOWN_TYPE, STATS_E_UNKNOWN_TYPE);
    else
        chat_table[(unsigned char)p->type](c, p);
}

static void chat_message(struct conn *c, const char *buf, size_t len, int limited)
{
    struct chatpkt p;
    const char *bad;

    if (buf == NULL) {
        chat_error(c, "", 0, CHAT_E_NOT_READY, STATS_E_REJECTED);
        return;
    }
    bad = chatpkt_parse(buf, len, &p);
    if (limited) {
        /* counted by the connection layer */
        chat_reply(c, p.id, p.id_len, 'E', json_string(CHAT_E_RATE), NULL);
    } else if (bad != NULL) {
        chat_error(c, p.id, p.id_len, bad, STATS_E_MALFORMED);
    } else {
        stats_packet(chat_proto.name, p.type);
        chat_handle(c, &p);
    }
    chatpkt_free(&p);
}

/* ---- the handshake ---- */

/* E with the reason, then close: a client that cannot be let in. */
static void refuse(struct conn *c, const char *reason, enum stats_reason r, int code)
{
    stats_error(r);
    chat_reply(c, "", 0, 'E', json_string(reason), NULL);
    conn_close(c, code, reason);
}

static void on_login(struct conn *c, enum conn_login_result r)
{
    char id[24];
    switch (r) {
    case CONN_LOGIN_OK:
        snprintf(id, sizeof(id), "%lld", (long long)id_next(&push.ids));
        chat_reply(c, id, strlen(id), 'L', json_string("login in"), NULL);
        log_info("chat open conn=%llu uid=%lld ip=%s", (unsigned long long)c->id, (long long)c->uid, c->ip);
        break;
    case CONN_LOGIN_USED:
        log_info("chat refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)c->id, CHAT_E_USED_TICKET,
                 c->ip);
        refuse(c, CHAT_E_USED_TICKET, STATS_E_TICKET, LWS_CLOSE_STATUS_POLICY_VIOLATION);
        break;
    case CONN_LOGIN_TOO_MANY:
        log_info("chat refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)c->id, CHAT_E_TOO_MANY,
                 c->ip);
        refuse(c, CHAT_E_TOO_MANY, STATS_E_TOO_MANY, LWS_CLOSE_STATUS_POLICY_VIOLATION);
        break;
    default:
        refuse(c, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE, CONN_CLOSE_TRY_AGAIN_LATER);
        break;
    }
}

/* The ticket: /ws/<ticket>, or /ws?token=<ticket>. */
static const char *find_ticket(struct conn *c, char *buf, int len)
{
    const char *t;
    size_t n = strlen(chat_proto.path);
    if (conn_header(c, WSI_TOKEN_GET_URI, buf, len) > 0 && buf[n] == '/' && buf[n + 1] != '\0')
        return buf + n + 1;
    t = conn_urlarg(c, "token=", buf, len);
    return t && *t ? t : NULL;
}

const char *chat_ticket_refusal(enum auth_result r)
{
    return r == AUTH_EXPIRED      ? CHAT_E_EXPIRED_TICKET
           : r == AUTH_WRONG_KIND ? CHAT_E_WRONG_KIND
                                  : CHAT_E_BAD_TICKET;
}

static void chat_open(struct conn *c)
{
    char buf[AUTH_MAX_TOKEN + 64];
    const char *ticket = find_ticket(c, buf, sizeof(buf));
    struct auth_claims claims;
    enum auth_result r;
    const char *why;

    if (ticket == NULL) {
        why = CHAT_E_NO_TICKET;
        goto refused;
    }
    r = auth_verify(&push.auth, ticket, AUTH_KIND_WEBSOCKET, &claims);
    memset(buf, 0, sizeof(buf)); /* the ticket is a credential until it is claimed */
    if (r == AUTH_OK) {
        conn_login(c, claims.uid, claims.sid, claims.jti, on_login);
        return;
    }
    why = chat_ticket_refusal(r);
refused:
    log_info("chat refused conn=%llu reason=\"%s\" ip=%s", (unsigned long long)c->id, why, c->ip);
    refuse(c, why, STATS_E_TICKET, LWS_CLOSE_STATUS_POLICY_VIOLATION);
}

static void chat_goodbye(struct conn *c, const char *why)
{
    chat_reply(c, "", 0, 'C', json_string(why), NULL);
}

const struct proto chat_proto = {
    .name = "chat",
    .path = "/ws",
    .binary = 0,
    .open = chat_open,
    .message = chat_message,
    .goodbye = chat_goodbye,
    .closed = NULL,
    .reply = conn_send_str,
    .deliver = conn_send,
};
