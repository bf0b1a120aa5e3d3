/* conn.c -- see conn.h. */
#include "conn.h"
#include "cluster.h"
#include "config.h"
#include "dlist.h"
#include "handshake.h"
#include "log.h"
#include "magpie.h"
#include "map.h"
#include "push.h"
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#define CONN_CLOSE_GRACE_S 3 /* a closing connection whose client does not read is dropped after this */
/* libwebsockets' timeouts fire on a coarse timer: a handshake closed this close to push.handshake_timeout_s
 * is logged as timed out. */
#define CONN_TIMEOUT_SLACK_MS 500

struct qitem {
    struct qitem *next;
    struct frame *f;
};

/* The connections of one user on this node. */
struct user {
    struct conn *head;
    int count;
};

static struct {
    struct map users; /* uid -> struct user */
    struct conn *all; /* established connections (all_next), newest first */
    uint64_t next_id;
    size_t total; /* struct conns alive (any state) */
    uv_timer_t idle_sweep;
    int started;
} K;

#define CONN_IDLE_SWEEP_MS 1000 /* how often silent connections are pinged and closed */
#define CONN_PING_PAYLOAD  "mp" /* what a ping carries (and its pong brings back) */

/* ---- references ---- */

static void conn_free(struct conn *c)
{
    struct qitem *q, *next;
    for (q = c->q_head; q != NULL; q = next) {
        next = q->next;
        frame_unref(q->f);
        free(q);
    }
    free(c->rx);
    free(c);
    K.total--;
}

void conn_hold(struct conn *c)
{
    c->refs++;
}

void conn_release(struct conn *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static struct conn *conn_new(struct lws *wsi)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->wsi = wsi;
    c->id = ++K.next_id;
    c->refs = 1; /* libwebsockets' reference, dropped at WSI_DESTROY */
    c->state = CONN_HTTP;
    c->tokens = push.cfg->push.burst * 1000;
    c->allowance = push.cfg->push.bad_packet_limit * 1000;
    c->tokens_ms = c->allowance_ms = push_now();
    K.total++;
    return c;
}

size_t conn_total(void)
{
    return K.total;
}

/* ---- users ---- */

static int user_add(struct conn *c)
{
    struct user *u = map_get(&K.users, (uint64_t)c->uid);
    if (u == NULL) {
        if ((u = calloc(1, sizeof(*u))) == NULL || map_put(&K.users, (uint64_t)c->uid, u) != MP_OK) {
            free(u);
            return MP_ENOMEM;
        }
    }
    DLIST_PUSH(u->head, c, user_prev, user_next);
    u->count++;
    return MP_OK;
}

/* Take c out of its user's list; returns how many connections the user still has here. */
static int user_remove(struct conn *c)
{
    struct user *u = map_get(&K.users, (uint64_t)c->uid);
    int left;
    if (u == NULL)
        return 0;
    DLIST_UNLINK(u->head, c, user_prev, user_next);
    left = --u->count;
    if (left == 0) {
        map_del(&K.users, (uint64_t)c->uid);
        free(u);
    }
    return left;
}

static int user_count(int64_t uid)
{
    struct user *u = map_get(&K.users, (uint64_t)uid);
    return u ? u->count : 0;
}

int conn_user_count(int64_t uid)
{
    return user_count(uid);
}

struct conn *conn_user(int64_t uid)
{
    struct user *u = map_get(&K.users, (uint64_t)uid);
    return u ? u->head : NULL;
}

void conn_each_user(void (*fn)(int64_t uid, int count, void *arg), void *arg)
{
    uint64_t uid;
    void *v;
    for (size_t pos = 0; map_next(&K.users, &pos, &uid, &v);)
        fn((int64_t)uid, ((struct user *)v)->count, arg);
}

/* ---- login ---- */

struct login {
    struct conn *c;
    conn_login_fn done;
};

static void on_login(int result, void *arg)
{
    struct login *l = arg;
    struct conn *c = l->c;

    if (c->state == CONN_GONE) {
        /* It left while Redis answered; it was taken out of the user's list then. Make presence right. */
        if (result == CONN_LOGIN_OK)
            cluster_presence(c->uid, user_count(c->uid));
    } else if (result == CONN_LOGIN_OK && c->state == CONN_OPENING) {
        c->state = CONN_OPEN;
        lws_rx_flow_control(c->wsi, 1 | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
        log_debug("login conn=%llu uid=%lld proto=%s", (unsigned long long)c->id, (long long)c->uid,
                  c->proto->name);
        l->done(c, CONN_LOGIN_OK);
    } else {
        int left = user_remove(c);
        if (result == CONN_LOGIN_OK) /* accepted, but the connection is already closing */
            result = CONN_LOGIN_UNAVAILABLE;
        /* Another login of this user may have been counted with this one: write the true count. */
        cluster_presence(c->uid, left);
        c->uid = 0;
        l->done(c, (enum conn_login_result)result);
    }
    conn_release(c);
    free(l);
}

/* claim_jti: a ticket to claim; revoked_jti: a login token that must not be revoked (either may be NULL). */
static void login(struct conn *c, int64_t uid, const char *sid, const char *claim_jti,
                  const char *revoked_jti, conn_login_fn done)
{
    struct login *l = malloc(sizeof(*l));

    if (c->state == CONN_OPEN) {
        /* let in earlier without a user (conn_accept): nothing more is read until the answer */
        c->state = CONN_OPENING;
        lws_rx_flow_control(c->wsi, 0);
    }
    c->uid = uid;
    snprintf(c->sid, sizeof(c->sid), "%s", sid ? sid : "");
    if (l == NULL || user_add(c) != MP_OK) {
        free(l);
        c->uid = 0;
        done(c, CONN_LOGIN_UNAVAILABLE);
        return;
    }
    l->c = c;
    l->done = done;
    conn_hold(c);
    if (cluster_login(uid, claim_jti, revoked_jti, on_login, l) != MP_OK) {
        user_remove(c);
        c->uid = 0;
        free(l);
        done(c, CONN_LOGIN_UNAVAILABLE);
        conn_release(c);
    }
}

void conn_login(struct conn *c, int64_t uid, const char *sid, const char *claim_jti, conn_login_fn done)
{
    login(c, uid, sid, claim_jti, NULL, done);
}

void conn_login_session(struct conn *c, int64_t uid, const char *sid, conn_login_fn done)
{
    login(c, uid, sid, NULL, sid, done);
}

void conn_accept(struct conn *c)
{
    if (c->state != CONN_OPENING || c->wsi == NULL)
        return;
    c->state = CONN_OPEN;
    lws_rx_flow_control(c->wsi, 1 | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

/* ---- outgoing ---- */

/* Queue f; a droppable frame is dropped (MP_EAGAIN) when the queue would pass drop_above bytes. */
static int enqueue(struct conn *c, struct frame *f, int droppable, size_t drop_above)
{
    struct qitem *q;

    if (c->state != CONN_OPEN && c->state != CONN_OPENING)
        return MP_ERR; /* a closing connection takes nothing more: its goodbye is already queued */
    if (droppable && c->q_bytes + f->len > drop_above) {
        stats_queue_drop(0);
        return MP_EAGAIN;
    }
    if (c->q_bytes + f->len > (size_t)push.cfg->push.queue_cap) {
        stats_queue_drop(1);
        log_info("closing slow reader conn=%llu uid=%lld queued=%zu cap=%lld", (unsigned long long)c->id,
                 (long long)c->uid, c->q_bytes, push.cfg->push.queue_cap);
        conn_abort(c, "outgoing queue over push.queue_cap");
        return MP_ERR;
    }
    /* Nothing ahead of f: write it now. Waiting for a writeable callback instead costs two epoll_ctl
     * calls and a loop pass per frame, which doubled a room broadcast's time to reach every member
     * (bench/README.md). A socket that takes only part of it leaves the rest with libwebsockets, which
     * finishes it before the next writeable callback; frames after that one queue here, under the cap. */
    if (c->q_head == NULL && !c->ping_due && !lws_partial_buffered(c->wsi)) {
        int n = lws_write(c->wsi, frame_payload(f), f->len, f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < (int)f->len) {
            conn_abort(c, "write failed");
            return MP_ERR;
        }
        return MP_OK;
    }
    if ((q = malloc(sizeof(*q))) == NULL) {
        conn_abort(c, "out of memory");
        return MP_ERR;
    }
    q->next = NULL;
    q->f = frame_ref(f);
    if (c->q_tail != NULL)
        c->q_tail->next = q;
    else
        c->q_head = q;
    c->q_tail = q;
    c->q_bytes += f->len;
    if (q == c->q_head)
        lws_callback_on_writable(c->wsi);
    return MP_OK;
}

int conn_send(struct conn *c, struct frame *f)
{
    return enqueue(c, f, 0, 0);
}

int conn_send_droppable(struct conn *c, struct frame *f, size_t limit)
{
    return enqueue(c, f, 1, limit);
}

int conn_send_str(struct conn *c, char *payload, size_t len)
{
    struct frame *f = frame_from_str(payload, len);
    int rc;
    if (f == NULL) {
        conn_abort(c, "out of memory");
        return MP_ERR;
    }
    rc = conn_send(c, f);
    frame_unref(f);
    return rc;
}

/* Send the close frame with c's code and reason, then close.
 *
 * Not the usual lws_close_reason() + "return -1 from the callback": Debian's libwebsockets 4.1.6 is built
 * with _DEBUG, and with libuv that build closes a connection a second time right after a callback asks
 * for the close, which kills it before the close frame goes out (warmcat/libwebsockets#3569; the client
 * sees 1006 instead of our code). A close started by a timeout is not doubled, and the keep-alive idle
 * timeout is the one libwebsockets closes politely (the others are treated as a dead peer). */
static void close_politely(struct conn *c)
{
    if (c->close_started || c->wsi == NULL)
        return;
    c->close_started = 1;
    lws_close_reason(c->wsi, (enum lws_close_status)c->close_code, (unsigned char *)c->close_reason,
                     strlen(c->close_reason));
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE, LWS_TO_KILL_ASYNC);
}

/* One frame per writeable callback (libwebsockets allows one lws_write each). Returns -1 to close. */
static int on_writeable(struct conn *c)
{
    struct qitem *q = c->q_head;
    int n;

    if (c->ping_due && c->state != CONN_CLOSING) {
        /* Not empty: libwebsockets 4.1.6 does not report an empty pong (LWS_CALLBACK_RECEIVE_PONG). */
        unsigned char ping[LWS_PRE + sizeof(CONN_PING_PAYLOAD) - 1];
        memcpy(ping + LWS_PRE, CONN_PING_PAYLOAD, sizeof(CONN_PING_PAYLOAD) - 1);
        c->ping_due = 0;
        if (lws_write(c->wsi, ping + LWS_PRE, sizeof(CONN_PING_PAYLOAD) - 1, LWS_WRITE_PING) < 0)
            return -1;
        if (q != NULL)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (q == NULL) {
        if (c->state == CONN_CLOSING)
            close_politely(c);
        return 0;
    }
    c->q_head = q->next;
    if (c->q_head == NULL)
        c->q_tail = NULL;
    c->q_bytes -= q->f->len;
    n = lws_write(c->wsi, frame_payload(q->f), q->f->len, q->f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (n < (int)q->f->len) {
        frame_unref(q->f);
        free(q);
        return -1;
    }
    frame_unref(q->f);
    free(q);
    if (c->q_head != NULL || c->state == CONN_CLOSING)
        lws_callback_on_writable(c->wsi);
    return 0;
}

void conn_close(struct conn *c, int code, const char *reason)
{
    if (c->state == CONN_CLOSING || c->state == CONN_GONE || c->wsi == NULL)
        return;
    c->state = CONN_CLOSING;
    c->close_code = code;
    c->close_reason = reason;
    lws_callback_on_writable(c->wsi);
    /* At shutdown the node's own deadline bounds every close; the timer is left out there because
     * libwebsockets keeps timers in one sorted list, and 20,000 of them at once cost seconds. */
    if (!push.stopping)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, CONN_CLOSE_GRACE_S);
}

void conn_abort(struct conn *c, const char *why)
{
    if (c->state == CONN_GONE || c->wsi == NULL)
        return;
    log_debug("abort conn=%llu uid=%lld reason=\"%s\"", (unsigned long long)c->id, (long long)c->uid, why);
    c->state = CONN_CLOSING;
    c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
    c->close_reason = why;
    c->close_started = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* ---- incoming ---- */

/* Refill a bucket of thousandths at per_s units per second, up to cap units. */
static void refill(int64_t *bucket, uint64_t *at, int64_t per_s, int64_t cap)
{
    uint64_t now = push_now();
    *bucket += (int64_t)(now - *at) * per_s;
    if (*bucket > cap * 1000)
        *bucket = cap * 1000;
    *at = now;
}

int conn_strike(struct conn *c)
{
    refill(&c->allowance, &c->allowance_ms, 1, push.cfg->push.bad_packet_limit);
    if (c->allowance >= 1000) {
        c->allowance -= 1000;
        return 0;
    }
    stats_error(STATS_E_ABUSE);
    log_info("closing abusive client conn=%llu uid=%lld ip=%s", (unsigned long long)c->id, (long long)c->uid,
             c->ip);
    conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many bad packets");
    return 1;
}

int conn_rate_limited(struct conn *c)
{
    refill(&c->tokens, &c->tokens_ms, push.cfg->push.rate, push.cfg->push.burst);
    if (c->tokens >= 1000) {
        c->tokens -= 1000;
        return 0;
    }
    return 1;
}

static void deliver(struct conn *c, const char *buf, size_t len)
{
    int limited = c->proto->unmetered != NULL && c->proto->unmetered(c, buf, len) ? 0 : conn_rate_limited(c);
    if (limited)
        stats_error(STATS_E_RATE);
    c->proto->message(c, buf, len, limited);
    if (limited && c->state == CONN_OPEN)
        conn_strike(c);
}

/* A piece of a message. Returns -1 to close the connection (close reason set). */
static int on_receive(struct conn *c, const unsigned char *in, size_t len)
{
    size_t remaining = lws_remaining_packet_payload(c->wsi);
    int final = lws_is_final_fragment(c->wsi);
    size_t max = (size_t)push.cfg->push.max_frame;
    unsigned char *p;

    if (c->state == CONN_CLOSING) {
        free(c->rx);
        c->rx = NULL;
        return 0;
    }
    if (c->rx_len + len + remaining > max) {
        stats_error(STATS_E_TOO_BIG);
        log_info("message too big conn=%llu uid=%lld ip=%s max=%zu", (unsigned long long)c->id,
                 (long long)c->uid, c->ip, max);
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
        c->state = CONN_CLOSING;
        c->close_code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
        c->close_reason = "message too big";
        close_politely(c); /* what is queued is dropped: this client broke the rules */
        return 0;
    }
    if (c->state != CONN_OPEN && !(c->state == CONN_OPENING && c->proto->early_rx)) {
        /* rx is paused while logging in; a message that was already buffered is refused. */
        c->proto->message(c, NULL, 0, 0);
        return 0;
    }
    if (c->rx == NULL)
        c->rx_binary = lws_frame_is_binary(c->wsi);
    if (c->rx == NULL && final) {
        deliver(c, (const char *)in, len);
        return 0;
    }
    /* Collect pieces; the limit above bounds the buffer. */
    if ((p = realloc(c->rx, c->rx_len + len + 1)) == NULL)
        return -1;
    memcpy(p + c->rx_len, in, len);
    c->rx = p;
    c->rx_len += len;
    if (final) {
        c->rx = NULL;
        deliver(c, (const char *)p, c->rx_len);
        c->rx_len = 0;
        free(p);
    }
    return 0;
}

/* ---- request headers ---- */

int conn_header(struct conn *c, enum lws_token_indexes h, char *buf, int len)
{
    int n;
    buf[0] = '\0';
    if (c->wsi == NULL || lws_hdr_total_length(c->wsi, h) <= 0)
        return -1;
    n = lws_hdr_copy(c->wsi, buf, len, h);
    if (n < 0)
        buf[0] = '\0';
    return n;
}

const char *conn_urlarg(struct conn *c, const char *name_eq, char *buf, int len)
{
    return c->wsi ? lws_get_urlarg_by_name(c->wsi, name_eq, buf, len) : NULL;
}

/* The client's address: X-Real-IP when a proxy (nginx) set it, else the peer's. */
static void client_ip(struct lws *wsi, char *ip, size_t len)
{
    int n = -1;
#if defined(LWS_WITH_HTTP_UNCOMMON_HEADERS)
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_X_REAL_IP) > 0)
        n = lws_hdr_copy(wsi, ip, (int)len, WSI_TOKEN_HTTP_X_REAL_IP);
#else
    n = lws_hdr_custom_copy(wsi, ip, (int)len, "x-real-ip:", 10);
#endif
    if (n <= 0 || strspn(ip, "0123456789abcdefABCDEF.:") != (size_t)n)
        lws_get_peer_simple(wsi, ip, len);
    if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip, '.') != NULL) /* an IPv4 client of a dual-stack socket */
        memmove(ip, ip + 7, strlen(ip + 7) + 1);
}

/* ---- the handshake ---- */

/* A TCP connection was accepted: its struct conn exists from now on, so that however the handshake ends
 * it is accounted for (push.max_conns) and, if libwebsockets drops it unanswered, logged. */
static int on_accepted(struct lws *wsi)
{
    struct conn *c = conn_new(wsi);
    if (c == NULL)
        return -1;
    c->heard_ms = push_now();
    client_ip(wsi, c->ip, sizeof(c->ip)); /* the peer; X-Real-IP once the request is read */
    lws_set_wsi_user(wsi, c);
    return 0;
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 lets libwebsockets upgrade, 1 means we answered with a status. */
static int on_confirm_upgrade(struct conn *c, struct lws *wsi, const char *upgrade)
{
    struct handshake h;

    if (c == NULL || (c->state != CONN_HTTP && c->state != CONN_ANSWERED))
        return -1;
    client_ip(wsi, c->ip, sizeof(c->ip));
    if (handshake_check(wsi, upgrade, &h) == 0) {
        /* the node's own state: nginx tries another node on a 503 (proxy_next_upstream http_503) */
        const char *busy = push.stopping ? "shutting down" : K.total > push.max_conns ? "node full" : NULL;
        if (busy != NULL) {
            h.status = HTTP_STATUS_SERVICE_UNAVAILABLE;
            h.reason = busy;
            h.stat = STATS_E_UNAVAILABLE;
        }
    }
    if (h.status != 0) {
        stats_error(h.stat);
        log_info("handshake refused status=%u reason=\"%s\" proto=%s ip=%s", h.status, h.reason,
                 h.proto ? h.proto->name : "-", c->ip);
        c->state = CONN_ANSWERED;
        return handshake_refuse(wsi, &h);
    }
    c->proto = h.proto;
    c->state = CONN_UPGRADING;
    return 0;
}

/* A connection that ends before its request was answered or upgraded (SPEC §8: never silently). */
static void log_unanswered(struct conn *c)
{
    uint64_t ms = push_now() - c->heard_ms;
    const char *why;

    if (push.stopping)
        return;
    if (c->state == CONN_UPGRADING) {
        /* handshake.c checks everything libwebsockets refuses after the upgrade is confirmed */
        log_warn("handshake dropped by libwebsockets after it was accepted proto=%s ip=%s", c->proto->name,
                 c->ip);
        stats_error(STATS_E_HANDSHAKE);
        return;
    }
    if (ms + CONN_TIMEOUT_SLACK_MS >= (uint64_t)push.cfg->push.handshake_timeout_s * 1000)
        why = "not finished within push.handshake_timeout_s";
    else /* the client left; or libwebsockets could not read the request (README: headers over
          * push.max_header_bytes, too many header lines or URL arguments), or refused an Upgrade other than
          * websocket with its own 403, before any callback */
        why = "closed before an answer";
    stats_error(STATS_E_HANDSHAKE);
    log_info("handshake dropped reason=\"%s\" ip=%s after_ms=%llu", why, c->ip, (unsigned long long)ms);
}

static void on_established(struct conn *c)
{
    c->state = CONN_OPENING;
    c->heard_ms = push_now();
    DLIST_PUSH(K.all, c, all_prev, all_next);
    stats_conn(c->proto->name, 1);
    lws_rx_flow_control(c->wsi, 0);
    c->proto->open(c);
}

/* libwebsockets is done with the wsi (any state). */
static void on_destroy(struct conn *c)
{
    int was_established = c->state >= CONN_OPENING;

    if (c->state == CONN_HTTP || c->state == CONN_UPGRADING)
        log_unanswered(c);
    c->state = CONN_GONE;
    c->wsi = NULL;
    if (was_established) {
        stats_conn(c->proto->name, -1);
        DLIST_UNLINK(K.all, c, all_prev, all_next);
    }
    if (c->uid != 0) {
        int left = user_remove(c);
        cluster_presence(c->uid, left);
        log_debug("closed conn=%llu uid=%lld proto=%s", (unsigned long long)c->id, (long long)c->uid,
                  c->proto->name);
    }
    if (was_established && c->proto->closed != NULL)
        c->proto->closed(c);
    conn_release(c);
}

int conn_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        return on_accepted(wsi);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return on_confirm_upgrade(c, wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP:
        /* A plain HTTP request: only WebSockets live here. */
        if (c != NULL)
            c->state = CONN_ANSWERED;
        if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL))
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (c == NULL || c->state != CONN_UPGRADING)
            return -1;
        on_established(c);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (c == NULL)
            return -1;
        c->heard_ms = push_now();
        c->ping_sent = 0;
        return on_receive(c, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* The client began the closing handshake: libwebsockets echoes its close frame (as a pong, on the
         * next writeable) and then closes. A close of ours already on its way -- close_politely's
         * asynchronous kill, armed when the client's close crossed ours, as after a STOMP DISCONNECT whose
         * RECEIPT makes stompjs close at once -- would fire first and cut the connection before the echo
         * (libwebsockets 4.1.6 kills a wsi in LRS_RETURNED_CLOSE outright), and the client would see 1006
         * instead of a clean close. So the kill is replaced by a bound on the echo, and no other close is
         * started. */
        if (c != NULL && c->wsi != NULL) { /* wsi is NULL only once GONE */
            c->state = CONN_CLOSING;
            c->close_started = 1;
            lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, CONN_CLOSE_GRACE_S);
        }
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c != NULL) {
            c->heard_ms = push_now();
            c->ping_sent = 0;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? on_writeable(c) : 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (c != NULL) {
            lws_set_wsi_user(wsi, NULL);
            on_destroy(c);
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- shutdown ---- */

void conn_shutdown_all(void)
{
    for (struct conn *c = K.all; c != NULL; c = c->all_next)
        if (c->state == CONN_OPEN) {
            c->proto->goodbye(c, "shutdown");
            conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "shutdown");
        }
}

/* SPEC §8: a client silent for push.ping_interval_s gets a ping; silent (no frame, no pong) for
 * push.idle_timeout_s, it is closed. Not libwebsockets' validity timers (lws_retry_bo_t): 4.1.6 keeps every
 * timer of a context in one sorted list and moves a connection's timer on every frame it receives, a walk
 * over all connections each time -- at 16,000 connections a connect storm stalled the loop for seconds.
 * One pass a second over the established connections costs well under a millisecond at 20,000. */
static void on_idle_sweep(uv_timer_t *t)
{
    uint64_t now = push_now(), ping = (uint64_t)push.cfg->push.ping_interval_s * 1000,
             idle = (uint64_t)push.cfg->push.idle_timeout_s * 1000;
    (void)t;
    for (struct conn *c = K.all; c != NULL; c = c->all_next) {
        if (c->state != CONN_OPENING && c->state != CONN_OPEN)
            continue;
        if (now - c->heard_ms >= idle) {
            log_info("closing silent connection conn=%llu uid=%lld proto=%s ip=%s idle_s=%lld",
                     (unsigned long long)c->id, (long long)c->uid, c->proto->name, c->ip,
                     push.cfg->push.idle_timeout_s);
            conn_abort(c, "idle timeout"); /* a silent peer would not answer a close frame either */
        } else if (now - c->heard_ms >= ping && !c->ping_sent) {
            c->ping_sent = 1;
            c->ping_due = 1;
            lws_callback_on_writable(c->wsi);
        }
    }
}

int conn_start(void)
{
    map_init(&K.users);
    uv_timer_init(push.loop, &K.idle_sweep);
    uv_timer_start(&K.idle_sweep, on_idle_sweep, CONN_IDLE_SWEEP_MS, CONN_IDLE_SWEEP_MS);
    K.started = 1;
    return MP_OK;
}

void conn_sweep_stop(void)
{
    if (K.started) {
        K.started = 0;
        uv_timer_stop(&K.idle_sweep);
        uv_close((uv_handle_t *)&K.idle_sweep, NULL);
    }
}

void conn_stop(void)
{
    uint64_t uid;
    void *v;
    for (size_t pos = 0; map_next(&K.users, &pos, &uid, &v);)
        free(v);
    map_free(&K.users);
}
