/* conn.h -- the connection layer every WebSocket protocol shares (see proto.h).
 *
 * A struct conn is one client connection. It is created when libwebsockets accepts the TCP connection (so
 * that a handshake libwebsockets drops without an answer is still logged with its address) and lives
 * until libwebsockets has closed the connection and the last asynchronous operation holding it (a Redis
 * reply, a MySQL job) has let go: code that waits for something holds a reference (conn_hold/conn_release)
 * and checks conn_open() before using it when the answer comes.
 *
 * Outgoing: conn_send() writes a frame at once when nothing is waiting ahead of it and the socket takes
 * it; otherwise it queues it, and queued frames are written one per writeable callback, in order. A
 * connection whose queue would exceed push.queue_cap bytes is closed at once (a reader that cannot keep up
 * must not make the node hold its backlog); conn_send_droppable() instead drops a frame that would take the
 * queue past a lower bound the caller names (room messages of normal level). Either is counted in metrics.
 *
 * Users: after conn_login() succeeds the connection is in its user's list on this node (conn_user), which
 * is what delivery walks, and counts in the user's cluster-wide presence (cluster.h). A protocol that
 * authenticates inside the protocol (rooms: a SIGN_IN request) first lets the connection in without a user
 * (conn_accept), then calls conn_login_session() when the request comes.
 */
#ifndef PUSH_CONN_H
#define PUSH_CONN_H

#include "auth.h"
#include "frame.h"
#include "proto.h"

#include <libwebsockets.h>
#include <stdint.h>

/* WebSocket close status "Try Again Later" (IANA registry; libwebsockets 4.1 has no name for it). */
#define CONN_CLOSE_TRY_AGAIN_LATER 1013

enum conn_state {
    CONN_HTTP,      /* accepted; its request not read or not answered yet */
    CONN_ANSWERED,  /* its request was refused with an HTTP status (it may send another) */
    CONN_UPGRADING, /* upgrade accepted, WebSocket not yet established */
    CONN_OPENING,   /* established; the protocol is checking the client (rx paused) */
    CONN_OPEN,      /* logged in */
    CONN_CLOSING,   /* draining its queue, then closing */
    CONN_GONE,      /* closed by libwebsockets; kept only by references */
};

enum conn_login_result {
    CONN_LOGIN_OK,
    CONN_LOGIN_USED,        /* the single-use ticket was used before */
    CONN_LOGIN_TOO_MANY,    /* the user already holds push.max_conns_per_user connections */
    CONN_LOGIN_UNAVAILABLE, /* Redis is down */
    CONN_LOGIN_REVOKED,     /* the login token was revoked by /logout */
};

struct qitem;

struct conn {
    struct lws *wsi; /* NULL once gone */
    const struct proto *proto;
    void *pdata; /* the protocol's own state; freed by proto->closed */
    uint64_t id; /* unique on this node, for logs */
    int64_t uid; /* 0 until conn_login */
    enum conn_state state;
    int refs;
    struct conn *user_prev, *user_next; /* the same user's connections on this node */
    struct conn *all_prev, *all_next;   /* every connection past the upgrade (shutdown walks it) */
    struct qitem *q_head, *q_tail;
    size_t q_bytes;
    unsigned char *rx; /* a message arriving in several pieces; NULL otherwise */
    size_t rx_len;
    int rx_binary;     /* the message being received came in binary frames (else text) */
    int64_t tokens;    /* packet rate bucket, in thousandths of a packet */
    int64_t allowance; /* bad-packet bucket, in thousandths */
    uint64_t tokens_ms, allowance_ms;
    int close_code;
    const char *close_reason; /* static */
    int close_started;        /* the close frame is on its way (or the connection is being dropped) */
    /* loop time of the last frame or pong from the client (idle sweep); before the upgrade, of the accept */
    uint64_t heard_ms;
    int ping_sent; /* a ping went out since the client was last heard */
    int ping_due;  /* the next writeable callback sends a ping */
    char ip[48];
    char sid[AUTH_JTI_LEN + 1]; /* jti of the login token behind this connection (logout closes it) */
};

typedef void (*conn_login_fn)(struct conn *c, enum conn_login_result r);

/* The libwebsockets protocol callback of the single protocol the context serves (server.c). */
int conn_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);

/* Queue a frame (a reference is taken; the caller keeps its own). Returns MP_OK; MP_ERR when c is not
 * open or its queue is over the cap (then c is being closed). */
int conn_send(struct conn *c, struct frame *f);

/* As conn_send, but when the queue would pass `limit` bytes (at most push.queue_cap) the frame is dropped
 * (counted) and the connection kept: returns MP_EAGAIN then. */
int conn_send_droppable(struct conn *c, struct frame *f, size_t limit);

/* Queue a malloc'd text payload (adopted: freed in every case). */
int conn_send_str(struct conn *c, char *payload, size_t len);

/* Close after what is queued has been written; code is the WebSocket close status. Idempotent. */
void conn_close(struct conn *c, int code, const char *reason);

/* Close now, dropping the queue (the client is not reading). */
void conn_abort(struct conn *c, const char *why);

/* A bad packet: uses one of push.bad_packet_limit; when none is left the connection is closed with 1008.
 * Returns 1 if it is closing now. */
int conn_strike(struct conn *c);

/* Over push.rate / push.burst? Takes one token when there is one. The connection layer takes one per
 * WebSocket message; a protocol whose messages may hold several requests (MQTT) takes one for each more. */
int conn_rate_limited(struct conn *c);

static inline int conn_open(const struct conn *c)
{
    return c->state == CONN_OPEN;
}

/* Do frames wait in c's queue, not yet written to its socket (the client reads slower than it is sent to)? */
static inline int conn_backlogged(const struct conn *c)
{
    return c->q_head != NULL;
}

void conn_hold(struct conn *c);
void conn_release(struct conn *c);

/* Request headers; only from proto->open. conn_header: bytes copied (NUL-terminated) or -1. */
int conn_header(struct conn *c, enum lws_token_indexes h, char *buf, int len);
const char *conn_urlarg(struct conn *c, const char *name_eq, char *buf, int len);

/* Let the client in as uid: claims the single-use ticket claim_jti first when it is not NULL, enforces
 * push.max_conns_per_user across the cluster and counts the connection in presence (one Redis round trip).
 * sid is remembered for logout (may be ""). done is called once, with c held; on CONN_LOGIN_OK the
 * connection is open and rx resumes. Otherwise the protocol says why and closes. */
void conn_login(struct conn *c, int64_t uid, const char *sid, const char *claim_jti, conn_login_fn done);

/* As conn_login for a connection opened with a login token (no ticket to claim): sid is that token's jti,
 * and a token revoked by /logout gets CONN_LOGIN_REVOKED in the same round trip. May also be called on a
 * connection that conn_accept() opened without a user: rx pauses until done is called, and on anything
 * but CONN_LOGIN_OK the connection is left paused (conn_accept resumes it). */
void conn_login_session(struct conn *c, int64_t uid, const char *sid, conn_login_fn done);

/* Let the client in without a user (from proto->open, or after a failed conn_login_session): the
 * connection is open and rx resumes. Does nothing to a connection that is closing. */
void conn_accept(struct conn *c);

/* The first of uid's connections on this node (walk ->user_next), NULL if none. Includes connections
 * still logging in or closing: check conn_open(). */
struct conn *conn_user(int64_t uid);

/* How many connections of uid this node holds (those logging in counted). */
int conn_user_count(int64_t uid);

/* Call fn for every user with connections here, with their count (presence resync). */
void conn_each_user(void (*fn)(int64_t uid, int count, void *arg), void *arg);

/* Connections of every state (handshakes included), for shutdown and push.max_conns. */
size_t conn_total(void);

/* SIGTERM: goodbye to every open connection (with a user or not), then close them (1001). */
void conn_shutdown_all(void);

/* Set up the connection layer for the node (after push is filled). */
int conn_start(void);

/* Free what is left (after the lws context is destroyed). */
/* Stop the idle sweep (its timer handle is closed on the loop): the first step of shutting down. */
void conn_sweep_stop(void);
void conn_stop(void);

#endif
