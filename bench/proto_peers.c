/* proto_peers.c -- the peers' protocols, spoken by the same loop, message size and schedule as Magpie's.
 *
 * NATS over WebSocket (nats-server's websocket listener): the NATS text protocol inside binary frames.
 * A receiver sends CONNECT, SUB <subject> and PING; the PONG tells it the subscription is in place (the
 * server handles a connection's operations in order). A publisher sends CONNECT and PING, then PUB.
 * Subjects: the room's name for the room scenario; one per connection ("<room>.u<idx>") for idle, as each
 * Magpie user has their own delivery.
 *
 * nchan (nginx module): a receiver opens a WebSocket on <url><channel>, and is subscribed once upgraded;
 * each message arrives as one frame holding the published body. Publishers POST the body to
 * <pub-url><channel> over keep-alive HTTP/1.1 connections, pipelined (the answers are counted as they come;
 * a non-2xx answer is a refused message).
 */
#include "bench.h"
#include "natsp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUB_MAX (PAYLOAD_MAX + 512)

/* ---- NATS -------------------------------------------------------------------------------------------- */

static int prefix_path(struct worker *w, struct conn *c, const char *suffix, char *buf, size_t cap)
{
    const struct bench_opts *o = worker_opts(w);
    int n = snprintf(buf, cap, "%s%s", o->urls[c->idx % (uint32_t)o->nurls].path, suffix);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int nats_path(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    return prefix_path(w, c, "", buf, cap);
}

static void nats_subject(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    if (worker_opts(w)->scenario == SC_IDLE)
        snprintf(buf, cap, "%s.u%u", bench_room(w), c->idx);
    else
        snprintf(buf, cap, "%s", bench_room(w));
}

static void nats_open(struct worker *w, struct conn *c)
{
    char ops[1024], subject[200];
    struct natsp *p = malloc(sizeof(*p));
    if (p == NULL) {
        conn_fail(w, c, FR_LOGIN, "out of memory");
        return;
    }
    natsp_init(p, BENCH_MAX_MSG);
    c->ps = p;
    nats_subject(w, c, subject, sizeof(subject));
    int n = snprintf(
        ops, sizeof(ops),
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\"name\":\"magpie-bench\","
        "\"lang\":\"c\",\"version\":\"1\",\"protocol\":1,\"echo\":false}\r\n"
        "%s%s%s"
        "PING\r\n",
        c->publisher ? "" : "SUB ", c->publisher ? "" : subject, c->publisher ? "" : " 1\r\n");
    conn_ws_send(w, c, WSF_BINARY, ops, (size_t)n);
}

struct nats_ctx {
    struct worker *w;
    struct conn *c;
    int64_t now;
    int msgs;
};

static int on_nats(void *arg, const struct natsp_event *ev)
{
    struct nats_ctx *x = arg;
    struct worker *w = x->w;
    struct conn *c = x->c;
    char why[200];
    switch (ev->op) {
    case NATSP_MSG:
        x->msgs++;
        bench_delivered(w, c, ev->payload, ev->payload_len, x->now);
        break;
    case NATSP_PING:
        conn_ws_send(w, c, WSF_BINARY, "PONG\r\n", 6);
        break;
    case NATSP_PONG:
        conn_ready(w, c);
        break;
    case NATSP_ERR:
        snprintf(why, sizeof(why), "nats -ERR%.*s", (int)(ev->text_len > 150 ? 150 : ev->text_len), ev->text);
        if (c->state == CS_OPEN) {
            conn_fail(w, c, FR_LOGIN, why);
            return 1;
        }
        worker_report(w)->send_errors++;
        bench_note_error(w, "%s", why);
        break;
    default: /* INFO, +OK */
        break;
    }
    return c->state == CS_DONE;
}

static void nats_message(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct nats_ctx x = {w, c, bench_now_ns(), 0};
    int rc = natsp_feed(c->ps, data, len, on_nats, &x);
    if (x.msgs > 0 && !c->publisher)
        worker_report(w)->frames++;
    if (rc < 0)
        conn_fail(w, c, FR_PROTOCOL, "nats: malformed protocol line");
}

static int nats_send(struct worker *w, struct conn *c, const struct payload *p, const char *text, size_t len)
{
    static char pub[PUB_MAX];
    int n = snprintf(pub, sizeof(pub), "PUB %s %zu\r\n", bench_room(w), len);
    if (n < 0 || (size_t)n + len + 2 > sizeof(pub))
        return -1;
    memcpy(pub + n, text, len);
    memcpy(pub + n + len, "\r\n", 2);
    return conn_ws_send(w, c, WSF_BINARY, pub, (size_t)n + len + 2);
}

static void nats_release(struct conn *c)
{
    if (c->ps != NULL) {
        natsp_free(c->ps);
        free(c->ps);
    }
}

const struct proto proto_nats = {
    .name = "nats",
    .path = nats_path,
    .on_open = nats_open,
    .on_message = nats_message,
    .send = nats_send,
    .release = nats_release,
};

/* ---- nchan ------------------------------------------------------------------------------------------- */

struct nchan_pub {
    struct resp_stream rs;
    uint64_t refused_counted; /* non-2xx answers already counted as send errors */
};

static int nchan_path(struct worker *w, struct conn *c, char *buf, size_t cap)
{
    char chan[200];
    if (worker_opts(w)->scenario == SC_IDLE)
        snprintf(chan, sizeof(chan), "%s-u%u", bench_room(w), c->idx);
    else
        snprintf(chan, sizeof(chan), "%s", bench_room(w));
    return prefix_path(w, c, chan, buf, cap);
}

static void nchan_open(struct worker *w, struct conn *c)
{
    if (c->raw) {
        struct nchan_pub *p = calloc(1, sizeof(*p));
        if (p == NULL) {
            conn_fail(w, c, FR_LOGIN, "out of memory");
            return;
        }
        resp_stream_init(&p->rs);
        c->ps = p;
    }
    conn_ready(w, c); /* a WebSocket subscriber is subscribed once upgraded */
}

static void nchan_message(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len)
{
    worker_report(w)->frames++;
    bench_delivered(w, c, data, len, bench_now_ns());
}

static void nchan_raw(struct worker *w, struct conn *c, const uint8_t *data, size_t len)
{
    struct nchan_pub *p = c->ps;
    if (resp_stream_feed(&p->rs, data, len) != 0) {
        conn_fail(w, c, FR_PROTOCOL, "nchan publisher: the answer is not HTTP");
        return;
    }
    uint64_t refused = p->rs.responses - p->rs.ok;
    if (refused > p->refused_counted) {
        worker_report(w)->send_errors += refused - p->refused_counted;
        p->refused_counted = refused;
        bench_note_error(w, "nchan publish answered HTTP %d", p->rs.last_status);
    }
}

static int nchan_send(struct worker *w, struct conn *c, const struct payload *pl, const char *text,
                      size_t len)
{
    static char req[PUB_MAX];
    const struct bench_opts *o = worker_opts(w);
    int n =
        snprintf(req, sizeof(req),
                 "POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                 o->pub_url.path, bench_room(w), o->pub_url.hostport, len);
    if (n < 0 || (size_t)n + len > sizeof(req))
        return -1;
    memcpy(req + n, text, len);
    return conn_write(w, c, req, (size_t)n + len);
}

static void nchan_release(struct conn *c)
{
    free(c->ps);
}

const struct proto proto_nchan = {
    .name = "nchan",
    .path = nchan_path,
    .on_open = nchan_open,
    .on_message = nchan_message,
    .on_raw = nchan_raw,
    .send = nchan_send,
    .release = nchan_release,
};
