/* proto.h -- what a WebSocket protocol plugs into the shared connection layer (conn.h).
 *
 * One listener serves every protocol: the request path picks it (/ws for chat, /room for rooms) before the
 * upgrade. The connection layer does everything protocols have in common -- Origin check, frame size,
 * packet rate, bad-input allowance, outgoing queue with its byte cap, login with the cluster-wide
 * connection limit and presence, close handshakes, shutdown -- and calls the protocol for what is its
 * own: authenticating a new connection and handling whole messages, each through its packet table.
 *
 * The chat core and the wire protocols on /ws (SPEC §4.3). The rules of chat -- friends, limits, storage,
 * timelines, groups -- exist once, in the handlers of the JSON packets (chat.h's table: chat_send,
 * group_send, timeline_sync, ...), which take a parsed JSON packet (struct chatpkt) and answer through
 * chat_reply()/chat_error(); deliveries reach connections through chat_deliver(). A wire protocol other
 * than the JSON packets (stomp.c: STOMP 1.2; mqtt.c: MQTT 3.1.1) is a parser in a file of its own that
 * turns each of its requests into the JSON packet it means and calls the same handler (chat_handle); the
 * core's answers and deliveries come back through the two hooks below, where the protocol writes them in its
 * own form:
 *   reply    every answer of the core to one request (A, E, Y, ...) as the JSON packet, whose id is the one
 *            the protocol gave the request, so the protocol finds what it was (STOMP: a SEND's receipt ->
 *            RECEIPT or ERROR; a Y it asked for itself to catch a session up). chat's own sends the packet.
 *   deliver  a message (or event) for the connection's user, as the JSON packet with the user's seq that
 *            JSON clients get (chat.c: chat_deliver); the protocol wraps it (STOMP: MESSAGE, body = the
 *            packet, seq/mid/from/ts as headers) or drops it (not subscribed). NULL: the protocol takes no
 *            chat deliveries (rooms).
 * So a JSON client, a STOMP client and an MQTT client chat with each other through one set of rules.
 */
#ifndef PUSH_PROTO_H
#define PUSH_PROTO_H

#include <stddef.h>

struct conn;
struct frame;

struct proto {
    const char *name; /* "chat", "room": logs and metric labels */
    const char *path; /* matches the path itself, path/..., and path?... */
    int binary;       /* sends binary frames (else text) */
    /* The WebSocket is up and its request headers are still readable (conn_header, conn_urlarg): decide.
     * Call conn_login() to let the client in, or conn_refuse(); rx is paused until then. */
    void (*open)(struct conn *c);
    /* Messages that arrive while the login is checked are passed on, not refused (MQTT: a client's packets
     * may come in several messages, some behind the CONNECT; the protocol holds them until the login ends).
     */
    int early_rx;
    /* One whole message. limited: it came over the packet rate and must be refused, not served.
     * buf NULL: a message that arrived before the login finished (refuse it; the client sent too early);
     * never for a protocol with early_rx. */
    void (*message)(struct conn *c, const char *buf, size_t len, int limited);
    /* Queue the protocol's goodbye (chat: a C packet) before the server closes the connection: why is
     * "kicked", "logout" or "shutdown". */
    void (*goodbye)(struct conn *c, const char *why);
    /* The connection is gone; free c->pdata. May be NULL. */
    void (*closed)(struct conn *c);
    /* The chat core's answer to a request of this connection (see above): the JSON server packet as the
     * JSON protocol sends it ({"id", "from": 0, "type", "msg", ...}), malloc'd and adopted (freed in every
     * case). Returns MP_OK when something was queued. NULL for protocols that do not use the chat core. */
    int (*reply)(struct conn *c, char *packet, size_t len);
    /* A chat delivery for this connection's user: f holds the JSON packet (text). Returns MP_OK when it was
     * queued for the client, another code when not (dropped, not subscribed). NULL: no chat deliveries. */
    int (*deliver)(struct conn *c, struct frame *f);
    /* A whole message that only acknowledges what the server sent (MQTT: PUBACKs of deliveries in flight)
     * is not counted against push.rate: a subscriber's acks follow the server's pace, not its own, and are
     * bounded by what was sent. Returns 1 for such a message. NULL: every message counts. */
    int (*unmetered)(struct conn *c, const char *buf, size_t len);
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
