/* proto.h -- what a WebSocket protocol plugs into the shared connection layer (conn.h).
 *
 * One listener serves every protocol: the request path picks it (/ws for chat, /room for rooms) before the
 * upgrade. The connection layer does everything protocols have in common -- Origin check, frame size,
 * packet rate, bad-input allowance, outgoing queue with its byte cap, login with the cluster-wide
 * connection limit and presence, close handshakes, shutdown -- and calls the protocol for what is its
 * own: authenticating a new connection and handling whole messages, each through its packet table.
 */
#ifndef PUSH_PROTO_H
#define PUSH_PROTO_H

#include <stddef.h>

struct conn;

struct proto {
    const char *name; /* "chat", "room": logs and metric labels */
    const char *path; /* matches the path itself, path/..., and path?... */
    int binary;       /* sends binary frames (else text) */
    /* The WebSocket is up and its request headers are still readable (conn_header, conn_urlarg): decide.
     * Call conn_login() to let the client in, or conn_refuse(); rx is paused until then. */
    void (*open)(struct conn *c);
    /* One whole message. limited: it came over the packet rate and must be refused, not served.
     * buf NULL: a message that arrived before the login finished (refuse it; the client sent too early). */
    void (*message)(struct conn *c, const char *buf, size_t len, int limited);
    /* Queue the protocol's goodbye (chat: a C packet) before the server closes the connection: why is
     * "kicked", "logout" or "shutdown". */
    void (*goodbye)(struct conn *c, const char *why);
    /* The connection is gone; free c->pdata. May be NULL. */
    void (*closed)(struct conn *c);
};

/* What this node serves (server.c): the request path picks the protocols whose `path` it matches, and the
 * WebSocket subprotocol the client offers picks one of them (SPEC §4.3; subprotocol NULL: the client
 * offered none). An offered list with no row for the path is refused with 400 (handshake.c). Adding a
 * protocol or a name for one is adding its rows: libwebsockets is told every name from this table, so it
 * answers the client with the one chosen. Ends with a row whose proto is NULL. */
struct proto_route {
    const struct proto *proto;
    const char *subprotocol;
};

extern const struct proto_route push_routes[];

#endif
