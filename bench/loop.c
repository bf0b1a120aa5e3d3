/* loop.c -- a worker process: its share of the connections on one epoll loop, a fixed-rate sender driven by
 * a timerfd, and the phases the parent asks for over a pipe. See bench.h for the shape of a run.
 *
 * Reading: one read(2) of up to BENCH_READ_CHUNK per readiness event into a scratch buffer shared by every
 * connection of the worker; only the tail of an incomplete frame is copied into the connection's own
 * buffer, so an idle connection costs the struct conn and nothing else.
 * Writing: straight to the socket; what the kernel does not take waits in the connection's buffer with
 * EPOLLOUT registered until it drains.
 * Sending at a fixed rate: message k of a step is due at t0 + k / rate (the worker's share of the senders
 * take turns). The loop sends every message that is due, late or not, stamped with the time it was due, so
 * a stall anywhere (the generator included) shows up as latency instead of quietly lowering the rate; how
 * late the generator itself was is reported apart (lag), to tell the two apart.
 */
#include "bench.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 512
#define TICK_NS    1000000000LL /* housekeeping (heartbeats) once a second */
#define NS         1000000000.0

struct worker {
    const struct bench_opts *o;
    const struct proto *proto;
    int id;
    long first, count;
    struct conn *conns;
    int epfd, tfd, ctl_in, rep_out;
    int64_t armed; /* absolute time the timerfd is armed for, 0 = not armed */

    uint8_t *scratch; /* reads */
    uint8_t *frame;   /* outgoing frames */
    size_t frame_cap;
    char *text;        /* outgoing payload text */
    uint8_t rnd[4096]; /* masking keys, refilled from RAND_bytes */
    size_t rnd_off;

    struct bench_report *rep;
    char room[160];
    long nready;
    FILE *ack_log; /* --ack-log: this worker's answers, NULL = none */

    struct conn **senders;
    long nsenders;      /* in this worker */
    long senders_total; /* in the whole run */

    /* connect phase */
    int connecting;
    long started, inflight;
    int64_t phase_start, deadline;
    double connect_rate; /* this worker's share; 0 = unpaced */

    /* run phase */
    int running;
    int32_t step;
    int64_t t0, t_end, report_at;
    double interval_ns;
    uint64_t k;
    /* Y requests (chat --sync-rate): request j of a step is due at ts0 + j * sync_interval_ns */
    int64_t ts0;
    double sync_interval_ns; /* 0 = none */
    uint64_t ks;
    long sync_cursor; /* the next connection to consider for a Y */

    int64_t next_tick;
    int64_t cpu_start; /* CPU time used when the phase began */
};

static char tag_ctl, tag_timer; /* epoll tags of the control pipe and the timer */

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

const struct bench_opts *worker_opts(const struct worker *w)
{
    return w->o;
}

struct bench_report *worker_report(struct worker *w)
{
    return w->rep;
}

const char *bench_room(const struct worker *w)
{
    return w->room;
}

int bench_sender_slot(const struct worker *w, uint32_t pub)
{
    if (w->o->scenario == SC_CHAT)
        return 0;
    if (w->o->scenario == SC_GROUP) { /* the sender's place among its group's senders */
        uint32_t m = pub % (uint32_t)w->o->members;
        return m < (uint32_t)w->o->group_senders ? (int)m : -1;
    }
    return pub < (uint32_t)w->o->publishers ? (int)pub : -1;
}

void bench_note_error(struct worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->rep->last_error, sizeof(w->rep->last_error), fmt, ap);
    va_end(ap);
}

/* CPU time (user + system) this process used so far, in ns. */
static int64_t cpu_now(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static void report_reset(struct worker *w)
{
    memset(w->rep, 0, sizeof(*w->rep));
    w->rep->worker = w->id;
    hist_init(&w->rep->lat);
    hist_init(&w->rep->ack);
    hist_init(&w->rep->lag);
    hist_init(&w->rep->sync);
    w->cpu_start = cpu_now();
}

/* Write the report to the parent and start a fresh one. A parent that went away ends the worker. */
static void report_send(struct worker *w)
{
    const uint8_t *p = (const uint8_t *)w->rep;
    size_t left = sizeof(*w->rep);
    w->rep->ready = (uint64_t)w->nready;
    w->rep->step = w->step;
    w->rep->cpu_ns = cpu_now() - w->cpu_start;
    while (left > 0) {
        ssize_t n = write(w->rep_out, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(3);
        p += n;
        left -= (size_t)n;
    }
    report_reset(w);
}

/* ---- connections ------------------------------------------------------------------------------------- */

static const struct endpoint *conn_endpoint(const struct worker *w, const struct conn *c)
{
    if (c->raw && w->o->proto == PROTO_NCHAN)
        return &w->o->pub_url;
    return &w->o->urls[c->idx % (uint32_t)w->o->nurls];
}

static void conn_events(struct worker *w, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_release(struct worker *w, struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->hs);
    c->hs = NULL;
    wsf_reader_free(&c->wr);
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    free(c->tx);
    c->tx = NULL;
    c->tx_off = c->tx_len = c->tx_cap = 0;
    free(c->rx_next);
    c->rx_next = NULL;
    if (w->proto->release)
        w->proto->release(c);
    c->ps = NULL;
}

void conn_fail(struct worker *w, struct conn *c, enum fail_reason why, const char *detail)
{
    if (c->state == CS_DONE)
        return;
    if (c->state == CS_READY) {
        w->rep->dropped++;
        w->nready--;
    } else {
        w->rep->failed[why]++;
        if (c->state != CS_NEW)
            w->inflight--;
    }
    if (detail != NULL)
        bench_note_error(w, "%s", detail);
    c->state = CS_DONE;
    conn_release(w, c);
}

void conn_ready(struct worker *w, struct conn *c)
{
    if (c->state != CS_OPEN)
        return;
    int64_t now = bench_now_ns();
    c->state = CS_READY;
    c->last_tx = now;
    w->nready++;
    w->inflight--;
    hist_record(&w->rep->lat, now - c->t_start);
    if (now > w->rep->last_ready_ns)
        w->rep->last_ready_ns = now;
}

/* Write out what is queued. Returns 0, or -1 when c failed. */
static int conn_flush(struct worker *w, struct conn *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t n = write(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                c->want_out = 1;
                conn_events(w, c, EPOLLIN | EPOLLOUT);
            }
            return 0;
        }
        if (n < 0) {
            conn_fail(w, c, FR_CLOSED, strerror(errno));
            return -1;
        }
        c->tx_off += (uint32_t)n;
    }
    c->tx_off = c->tx_len = 0;
    if (c->tx_cap > BENCH_READ_CHUNK) { /* a burst is over: give the memory back */
        free(c->tx);
        c->tx = NULL;
        c->tx_cap = 0;
    }
    if (c->want_out) {
        c->want_out = 0;
        conn_events(w, c, EPOLLIN);
    }
    return 0;
}

int conn_write(struct worker *w, struct conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (c->state == CS_DONE)
        return -1;
    if (c->tx_len == c->tx_off) {
        while (len > 0) {
            ssize_t n = write(c->fd, p, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0) {
                conn_fail(w, c, FR_CLOSED, strerror(errno));
                return -1;
            }
            p += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return 0;
        c->tx_off = c->tx_len = 0;
    }
    if ((size_t)(c->tx_len - c->tx_off) + len > BENCH_TX_CAP)
        return -1;
    if (c->tx_len + len > c->tx_cap) {
        if (c->tx_off > 0) { /* compact first */
            memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
            c->tx_len -= c->tx_off;
            c->tx_off = 0;
        }
        size_t cap = c->tx_cap ? c->tx_cap : 4096;
        while (cap < c->tx_len + len)
            cap *= 2;
        uint8_t *b = realloc(c->tx, cap);
        if (b == NULL)
            return -1;
        c->tx = b;
        c->tx_cap = (uint32_t)cap;
    }
    memcpy(c->tx + c->tx_len, p, len);
    c->tx_len += (uint32_t)len;
    if (!c->want_out) {
        c->want_out = 1;
        conn_events(w, c, EPOLLIN | EPOLLOUT);
    }
    return 0;
}

static void mask_key(struct worker *w, uint8_t key[4])
{
    if (w->rnd_off + 4 > sizeof(w->rnd)) {
        if (RAND_bytes(w->rnd, sizeof(w->rnd)) != 1) {
            fprintf(stderr, "magpie-bench: RAND_bytes failed\n");
            _exit(3);
        }
        w->rnd_off = 0;
    }
    memcpy(key, w->rnd + w->rnd_off, 4);
    w->rnd_off += 4;
}

int conn_ws_send(struct worker *w, struct conn *c, int opcode, const void *data, size_t len)
{
    size_t need = wsf_encoded_len(len);
    uint8_t key[4];
    if (c->state == CS_DONE)
        return -1;
    if (need > w->frame_cap) {
        uint8_t *b = realloc(w->frame, need);
        if (b == NULL)
            return -1;
        w->frame = b;
        w->frame_cap = need;
    }
    mask_key(w, key);
    size_t n = wsf_encode(w->frame, w->frame_cap, opcode, data, len, key);
    return conn_write(w, c, w->frame, n);
}

static void conn_start(struct worker *w, struct conn *c)
{
    const struct endpoint *ep = conn_endpoint(w, c);
    int one = 1;
    c->t_start = bench_now_ns();
    if (w->rep->first_start_ns == 0)
        w->rep->first_start_ns = c->t_start;
    w->inflight++;
    c->state = CS_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(w, c, FR_CONNECT, strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (w->o->src_ips > 0) {
        /* Spread the client side over 127.0.0.2.. so one client address's ~28k ephemeral ports toward one
         * server port are not the limit; the port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT). */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(2 + c->idx % (uint32_t)w->o->src_ips));
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            conn_fail(w, c, FR_CONNECT, strerror(errno));
            return;
        }
    }
    if (connect(c->fd, (const struct sockaddr *)&ep->addr, sizeof(ep->addr)) != 0 && errno != EINPROGRESS) {
        conn_fail(w, c, FR_CONNECT, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_fail(w, c, FR_CONNECT, strerror(errno));
        return;
    }
    c->want_out = 1;
}

/* TCP connect finished: start the WebSocket handshake (or, raw, the protocol). */
static void conn_connected(struct worker *w, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        conn_fail(w, c, FR_CONNECT, strerror(err));
        return;
    }
    c->want_out = 0;
    conn_events(w, c, EPOLLIN);
    if (c->raw) {
        c->state = CS_OPEN;
        w->proto->on_open(w, c);
        return;
    }
    char path[4096], key[RESP_KEY_LEN + 1], req[8192];
    if (w->proto->path(w, c, path, sizeof(path)) != 0) {
        conn_fail(w, c, FR_LOGIN, "cannot make the request path (ticket)");
        return;
    }
    if (resp_make_key(key) != 0 || (c->hs = malloc(sizeof(*c->hs))) == NULL) {
        conn_fail(w, c, FR_HANDSHAKE, "no randomness or memory for the handshake");
        return;
    }
    resp_upgrade_init(c->hs, key);
    resp_upgrade_want(c->hs, w->proto->subprotocol);
    int n = resp_upgrade_request_proto(req, sizeof(req), conn_endpoint(w, c)->hostport, path, key,
                                       w->proto->subprotocol);
    if (n < 0) {
        conn_fail(w, c, FR_HANDSHAKE, "upgrade request too long");
        return;
    }
    c->state = CS_HANDSHAKE;
    conn_write(w, c, req, (size_t)n);
}

struct msg_ctx {
    struct worker *w;
    struct conn *c;
};

static int on_ws_message(void *arg, int opcode, const uint8_t *data, size_t len)
{
    struct msg_ctx *m = arg;
    struct worker *w = m->w;
    struct conn *c = m->c;
    switch (opcode) {
    case WSF_PING:
        conn_ws_send(w, c, WSF_PONG, data, len);
        break;
    case WSF_PONG:
        break;
    case WSF_CLOSE: {
        char why[160];
        int code = len >= 2 ? (data[0] << 8 | data[1]) : 1005;
        snprintf(why, sizeof(why), "closed by the server: %d %.*s", code, len > 2 ? (int)(len - 2) : 0,
                 len > 2 ? (const char *)data + 2 : "");
        conn_ws_send(w, c, WSF_CLOSE, data, len >= 2 ? 2 : 0);
        conn_fail(w, c, c->state == CS_OPEN ? FR_LOGIN : FR_CLOSED, why);
        break;
    }
    default:
        w->proto->on_message(w, c, opcode, data, len);
        break;
    }
    return c->state == CS_DONE;
}

/* Handle len bytes of input. Returns how many were used; the rest is an incomplete frame. */
static size_t conn_input(struct worker *w, struct conn *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    if (c->state == CS_HANDSHAKE) {
        size_t used = 0;
        int rc = resp_upgrade_feed(c->hs, buf, len, &used);
        if (rc == RESP_UP_AGAIN)
            return len;
        if (rc != RESP_UP_OK) {
            char why[160];
            snprintf(why, sizeof(why), "%s (HTTP %d)", resp_upgrade_strerror(rc), c->hs->status);
            w->rep->last_status = c->hs->status;
            conn_fail(w, c, FR_HANDSHAKE, why);
            return len;
        }
        free(c->hs);
        c->hs = NULL;
        c->state = CS_OPEN;
        w->proto->on_open(w, c);
        if (c->state == CS_DONE)
            return len;
        off = used;
    }
    if (c->raw) {
        w->proto->on_raw(w, c, buf + off, len - off);
        return len;
    }
    struct msg_ctx m = {w, c};
    long r = wsf_feed(&c->wr, buf + off, len - off, on_ws_message, &m);
    if (c->state == CS_DONE)
        return len;
    if (r < 0) {
        conn_fail(w, c, FR_PROTOCOL, wsf_strerror((int)r));
        return len;
    }
    return off + (size_t)r;
}

static int rx_reserve(struct conn *c, size_t need)
{
    if (need <= c->rx_cap)
        return 0;
    size_t cap = c->rx_cap ? c->rx_cap : 1024;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(c->rx, cap);
    if (b == NULL)
        return -1;
    c->rx = b;
    c->rx_cap = (uint32_t)cap;
    return 0;
}

static void conn_read(struct worker *w, struct conn *c)
{
    uint8_t *buf;
    ssize_t n;
    if (c->rx_len > 0) {
        if (rx_reserve(c, (size_t)c->rx_len + BENCH_READ_CHUNK) != 0) {
            conn_fail(w, c, FR_PROTOCOL, "out of memory");
            return;
        }
        buf = c->rx;
        n = read(c->fd, buf + c->rx_len, BENCH_READ_CHUNK);
    } else {
        buf = w->scratch;
        n = read(c->fd, buf, BENCH_READ_CHUNK);
    }
    if (n == 0) {
        conn_fail(w, c, FR_CLOSED, "connection closed by the server");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_fail(w, c, FR_CLOSED, strerror(errno));
        return;
    }
    size_t len = (size_t)n + (buf == c->rx ? c->rx_len : 0);
    size_t used = conn_input(w, c, buf, len);
    if (c->state == CS_DONE)
        return;
    size_t keep = len - used;
    if (keep > BENCH_MAX_MSG + WSF_MAX_HEADER) {
        conn_fail(w, c, FR_PROTOCOL, "frame over the limit");
        return;
    }
    if (buf == c->rx) {
        memmove(c->rx, c->rx + used, keep);
    } else if (keep > 0) {
        if (rx_reserve(c, keep) != 0) {
            conn_fail(w, c, FR_PROTOCOL, "out of memory");
            return;
        }
        memcpy(c->rx, buf + used, keep);
    }
    c->rx_len = (uint32_t)keep;
    if (keep == 0 && c->rx_cap > 4096) {
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

static void conn_event(struct worker *w, struct conn *c, uint32_t events)
{
    if (c->state == CS_DONE) /* failed earlier in this batch of events */
        return;
    if (c->state == CS_CONNECTING) {
        conn_connected(w, c);
        return;
    }
    if ((events & EPOLLOUT) && conn_flush(w, c) != 0)
        return;
    if (c->state != CS_DONE && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        conn_read(w, c);
}

/* ---- bench messages ---------------------------------------------------------------------------------- */

void bench_delivered(struct worker *w, struct conn *c, const uint8_t *text, size_t len, int64_t now)
{
    struct payload p;
    if (c->publisher) /* Magpie's publishers are members and get their own messages; not counted */
        return;
    if (payload_parse((const char *)text, len, &p) != 0 || p.run != w->o->run) {
        w->rep->foreign++;
        return;
    }
    int slot = bench_sender_slot(w, p.pub);
    if (w->o->scenario == SC_GROUP &&
        (p.pub / (uint32_t)w->o->members != c->idx / (uint32_t)w->o->members || p.pub == c->idx))
        slot = -1; /* another group's sender, or our own message (a sender gets A, not its g) */
    if (slot < 0) {
        w->rep->foreign++;
        return;
    }
    if (c->rx_next == NULL) {
        size_t slots = w->o->scenario == SC_CHAT    ? 1
                       : w->o->scenario == SC_GROUP ? (size_t)w->o->group_senders
                                                    : (size_t)w->o->publishers;
        if ((c->rx_next = calloc(slots, sizeof(uint64_t))) == NULL)
            return;
    }
    if (!payload_seq_note(&c->rx_next[slot], p.seq, &w->rep->gaps)) {
        w->rep->dups++;
        return;
    }
    if ((int32_t)p.step != w->step || !w->running) {
        w->rep->late++;
        return;
    }
    w->rep->delivered++;
    hist_record(&w->rep->lat, now - p.sched_ns);
}

/* One line of --ack-log: when, A or E, the sender's uid and the message's id (what the server stores as
 * from_uid and client_id). */
static void ack_log(struct worker *w, char kind, const struct payload *p, int64_t now)
{
    char id[PAYLOAD_ID_MAX + 1];
    if (w->ack_log != NULL && payload_id_format(id, sizeof(id), p) >= 0)
        fprintf(w->ack_log, "%lld %c %lld %s\n", (long long)now, kind, (long long)(w->o->uid_base + p->pub),
                id);
}

void bench_refused(struct worker *w, const struct payload *p, int64_t now)
{
    ack_log(w, 'E', p, now);
}

void bench_acked(struct worker *w, struct conn *c, const struct payload *p, int64_t now)
{
    uint64_t skipped = 0;    /* acks of refused (E) messages never come: not counted as anything here */
    ack_log(w, 'A', p, now); /* every A, late ones too: the log is the whole run's */
    if (!payload_seq_note(&c->ack_next, p->seq, &skipped)) {
        w->rep->ack_dups++;
        return;
    }
    if ((int32_t)p->step != w->step || !w->running) {
        w->rep->late++;
        return;
    }
    w->rep->acked++;
    if (bench_offline(w->o, c->idx))
        w->rep->acked_offline++;
    hist_record(&w->rep->ack, now - p->sched_ns);
}

void bench_synced(struct worker *w, struct conn *c, const json_t *msg, const char *err, int64_t now)
{
    struct sync_result r;
    char why[160];
    if (c->y_sched == 0) {
        w->rep->proto_errors++;
        bench_note_error(w, "chat: a Y answer for no Y in flight");
        return;
    }
    int64_t sched = c->y_sched;
    c->y_sched = 0;
    if (c->y_step != w->step || !w->running) {
        w->rep->sync_late++;
        return;
    }
    if (msg == NULL) {
        w->rep->sync_errors++;
        bench_note_error(w, "chat Y E: %s", err);
        return;
    }
    if (sync_answer_check(msg, c->y_after, w->o->sync_limit, &r, why, sizeof(why)) != 0) {
        w->rep->sync_wrong++;
        bench_note_error(w, "user %lld: %s", (long long)(w->o->uid_base + c->idx), why);
        return;
    }
    if (r.max > c->tl_max)
        c->tl_max = r.max;
    w->rep->syncs_ok++;
    w->rep->sync_msgs += r.n;
    if (r.short_cap)
        w->rep->syncs_short++;
    hist_record(&w->rep->sync, now - sched);
}

/* Send every Y that is due, each from the next user of the worker that has seen sync_limit entries of its
 * timeline and has no Y in flight: its `after` is sync_limit back from the latest seq it was shown, so a
 * right answer is exactly sync_limit entries (syncans.h). A Y due when no user qualifies is counted as
 * skipped, never silently dropped. */
static void sync_due(struct worker *w, int64_t now)
{
    while (w->running && w->sync_interval_ns > 0) {
        int64_t sched = w->ts0 + (int64_t)((double)w->ks * w->sync_interval_ns);
        if (sched > now || sched >= w->t_end)
            return;
        w->ks++;
        struct conn *c = NULL;
        for (long i = 0; i < w->count && c == NULL; i++) {
            struct conn *x = &w->conns[(w->sync_cursor + i) % w->count];
            if (x->state == CS_READY && x->y_sched == 0 && x->tl_max >= w->o->sync_limit)
                c = x;
        }
        if (c == NULL) {
            w->rep->sync_skipped++;
            continue;
        }
        w->sync_cursor = (long)(c - w->conns) + 1;
        int64_t after = c->tl_max - w->o->sync_limit;
        if (w->proto->sync(w, c, after, w->o->sync_limit) != 0) {
            w->rep->sync_skipped++;
            continue;
        }
        c->y_sched = sched;
        c->y_after = after;
        c->y_step = w->step;
        w->rep->syncs_sent++;
    }
}

/* Send every message that is due. */
static void send_due(struct worker *w, int64_t now)
{
    while (w->running && w->nsenders > 0) {
        int64_t sched = w->t0 + (int64_t)((double)w->k * w->interval_ns);
        if (sched > now || sched >= w->t_end)
            return;
        struct conn *c = w->senders[w->k % (uint64_t)w->nsenders];
        w->k++;
        if (c->state != CS_READY) {
            w->rep->send_skipped++;
            continue;
        }
        struct payload p = {
            .run = w->o->run, .step = (uint32_t)w->step, .pub = c->idx, .seq = c->seq, .sched_ns = sched};
        int n = payload_format(w->text, PAYLOAD_MAX, w->o->size, &p);
        if (n < 0 || w->proto->send(w, c, &p, w->text, (size_t)n) != 0) {
            w->rep->send_skipped++;
            continue;
        }
        c->seq++;
        w->rep->sent++;
        hist_record(&w->rep->lag, now - sched);
    }
}

/* ---- phases ------------------------------------------------------------------------------------------ */

static void connect_pump(struct worker *w, int64_t now)
{
    if (!w->connecting)
        return;
    while (w->started < w->count && w->inflight < w->o->connect_inflight) {
        if (w->connect_rate > 0 &&
            w->phase_start + (int64_t)((double)w->started * NS / w->connect_rate) > now)
            break;
        conn_start(w, &w->conns[w->started++]);
    }
    if (now >= w->deadline) {
        for (long i = 0; i < w->count; i++) {
            struct conn *c = &w->conns[i];
            if (c->state != CS_READY && c->state != CS_DONE)
                conn_fail(w, c, FR_TIMEOUT, "not ready within --connect-timeout");
        }
        w->started = w->count;
    }
    if (w->started == w->count && w->inflight == 0) {
        w->connecting = 0;
        report_send(w);
    }
}

static void tick(struct worker *w, int64_t now)
{
    if (now < w->next_tick)
        return;
    w->next_tick = now + TICK_NS;
    if (w->proto->tick == NULL)
        return;
    for (long i = 0; i < w->count; i++)
        if (w->conns[i].state == CS_READY)
            w->proto->tick(w, &w->conns[i], now);
}

/* When the loop must wake up next (absolute monotonic ns). */
static int64_t next_wake(const struct worker *w, int64_t now)
{
    int64_t t = w->next_tick;
    if (w->connecting) {
        if (w->deadline < t)
            t = w->deadline;
        if (w->started < w->count && w->inflight < w->o->connect_inflight) {
            int64_t s = w->connect_rate > 0
                            ? w->phase_start + (int64_t)((double)w->started * NS / w->connect_rate)
                            : now;
            if (s < t)
                t = s;
        }
    }
    if (w->running) {
        int64_t s = w->t0 + (int64_t)((double)w->k * w->interval_ns);
        if (s < w->t_end && w->nsenders > 0 && s < t)
            t = s;
        if (w->report_at < t)
            t = w->report_at;
        if (w->sync_interval_ns > 0) {
            int64_t y = w->ts0 + (int64_t)((double)w->ks * w->sync_interval_ns);
            if (y < w->t_end && y < t)
                t = y;
        }
    }
    return t > now ? t : now + 1;
}

static void arm_timer(struct worker *w, int64_t at)
{
    if (at == w->armed)
        return;
    struct itimerspec its = {.it_value = {.tv_sec = at / 1000000000LL, .tv_nsec = at % 1000000000LL}};
    timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    w->armed = at;
}

static void handle_cmd(struct worker *w, int *quit)
{
    struct bench_cmd cmd;
    ssize_t n = read(w->ctl_in, &cmd, sizeof(cmd));
    if (n != (ssize_t)sizeof(cmd)) { /* the parent is gone */
        *quit = 1;
        return;
    }
    int64_t now = bench_now_ns();
    switch (cmd.op) {
    case OP_CONNECT:
        report_reset(w);
        w->connecting = 1;
        w->started = 0;
        w->phase_start = now;
        w->deadline = now + (int64_t)(w->o->connect_timeout_s * NS);
        w->connect_rate = w->o->connect_rate > 0 ? w->o->connect_rate / w->o->procs : 0;
        break;
    case OP_RUN:
        report_reset(w);
        w->running = 1;
        w->step = cmd.step;
        w->t0 = cmd.t0_ns;
        w->t_end = cmd.t_end_ns;
        w->report_at = cmd.report_ns;
        w->k = 0;
        /* This worker's share of the rate is in proportion to its share of the senders; its phase is
         * offset so the workers' messages interleave instead of leaving in lock-step. */
        if (w->nsenders > 0 && cmd.rate > 0) {
            double rate_w = cmd.rate * (double)w->nsenders / (double)w->senders_total;
            w->interval_ns = NS / rate_w;
            w->t0 += (int64_t)(w->interval_ns * w->id / w->o->procs);
        }
        /* Y requests: this worker's share in proportion to its users, offset the same way. */
        w->sync_interval_ns = 0;
        w->ks = 0;
        if (w->o->sync_rate > 0 && w->proto->sync != NULL && w->count > 0) {
            double rate_y = w->o->sync_rate * (double)w->count / (double)w->o->conns;
            w->sync_interval_ns = NS / rate_y;
            w->ts0 = cmd.t0_ns + (int64_t)(w->sync_interval_ns * w->id / w->o->procs);
        }
        break;
    case OP_STATUS:
        report_send(w);
        break;
    default:
        *quit = 1;
        break;
    }
}

static void worker_free(struct worker *w)
{
    for (long i = 0; i < w->count; i++) {
        struct conn *c = &w->conns[i];
        if (c->state == CS_READY && !c->raw)
            conn_ws_send(w, c, WSF_CLOSE, "\x03\xe8", 2); /* 1000: normal closure */
        if (c->state != CS_NEW)
            conn_release(w, c);
    }
    free(w->conns);
    free(w->senders);
    free(w->scratch);
    free(w->frame);
    free(w->text);
    free(w->rep);
    close(w->epfd);
    close(w->tfd);
    if (w->ack_log != NULL && fclose(w->ack_log) != 0)
        fprintf(stderr, "magpie-bench: worker %d: the --ack-log file could not be written\n", w->id);
}

void worker_main(const struct bench_opts *o, int id, long first, long count, int ctl_in, int rep_out)
{
    struct worker wk, *w = &wk;
    struct epoll_event evs[MAX_EVENTS];
    int quit = 0;

    memset(w, 0, sizeof(*w));
    w->o = o;
    w->id = id;
    w->first = first;
    w->count = count;
    w->ctl_in = ctl_in;
    w->rep_out = rep_out;
    if (o->ack_log != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s.%d", o->ack_log, id);
        if ((w->ack_log = fopen(path, "w")) == NULL) {
            fprintf(stderr, "magpie-bench: worker %d: cannot write %s: %s\n", id, path, strerror(errno));
            _exit(3);
        }
    }
    w->step = -1;
    w->rnd_off = sizeof(w->rnd);
    switch (o->proto) {
    case PROTO_MAGPIE_CHAT:
        w->proto = &proto_magpie_chat;
        break;
    case PROTO_MAGPIE_ROOM:
        w->proto = &proto_magpie_room;
        break;
    case PROTO_NATS:
        w->proto = &proto_nats;
        break;
    case PROTO_MAGPIE_STOMP:
        w->proto = &proto_magpie_stomp;
        break;
    case PROTO_MAGPIE_MQTT:
        w->proto = &proto_magpie_mqtt;
        break;
    case PROTO_MOSQUITTO:
        w->proto = &proto_mosquitto;
        break;
    default:
        w->proto = &proto_nchan;
        break;
    }
    snprintf(w->room, sizeof(w->room), "%s%08x", o->room, o->run);
    w->conns = calloc((size_t)count, sizeof(struct conn));
    w->senders = calloc((size_t)count + 1, sizeof(struct conn *));
    w->scratch = malloc(BENCH_READ_CHUNK);
    w->text = malloc(PAYLOAD_MAX);
    w->rep = malloc(sizeof(*w->rep));
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!w->conns || !w->senders || !w->scratch || !w->text || !w->rep || w->epfd < 0 || w->tfd < 0) {
        fprintf(stderr, "magpie-bench: worker %d: out of memory or descriptors\n", id);
        _exit(3);
    }
    report_reset(w);
    w->senders_total = o->scenario == SC_CHAT    ? o->conns
                       : o->scenario == SC_ROOM  ? o->publishers
                       : o->scenario == SC_GROUP ? (long)o->ngroups * o->group_senders
                                                 : 0;
    for (long i = 0; i < count; i++) {
        struct conn *c = &w->conns[i];
        c->fd = -1;
        c->idx = (uint32_t)(first + i);
        c->publisher = o->scenario == SC_ROOM && c->idx < (uint32_t)o->publishers;
        c->raw = (c->publisher && o->proto == PROTO_NCHAN) || o->proto == PROTO_MOSQUITTO;
        wsf_reader_init(&c->wr, BENCH_MAX_MSG);
        if (o->scenario == SC_CHAT || c->publisher ||
            (o->scenario == SC_GROUP && c->idx % (uint32_t)o->members < (uint32_t)o->group_senders))
            w->senders[w->nsenders++] = c;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_ctl};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, ctl_in, &ev);
    ev.data.ptr = &tag_timer;
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev);
    w->next_tick = bench_now_ns() + TICK_NS;

    while (!quit) {
        int64_t now = bench_now_ns();
        arm_timer(w, next_wake(w, now));
        int n = epoll_wait(w->epfd, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_ctl) {
                handle_cmd(w, &quit);
            } else if (p == &tag_timer) {
                uint64_t expirations;
                ssize_t r = read(w->tfd, &expirations, sizeof(expirations));
                (void)r; /* EAGAIN: a spurious wake-up; either way the timer is re-armed below */
                w->armed = 0;
            } else {
                conn_event(w, p, evs[i].events);
            }
        }
        now = bench_now_ns();
        connect_pump(w, now);
        send_due(w, now);
        sync_due(w, now);
        tick(w, now);
        if (w->running && now >= w->report_at) {
            w->running = 0;
            report_send(w);
        }
    }
    worker_free(w);
    close(ctl_in);
    close(rep_out);
    exit(0); /* not _exit: a sanitizer build checks the worker for leaks at exit too */
}
