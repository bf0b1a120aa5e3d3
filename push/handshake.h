/* handshake.h -- the checks a WebSocket upgrade request passes before libwebsockets takes it over.
 *
 * Why here and not in libwebsockets: after LWS_CALLBACK_HTTP_CONFIRM_UPGRADE says yes, libwebsockets 4.1.6
 * closes the connection WITHOUT an HTTP answer for most malformed upgrades (lib/roles/ws/server-ws.c: a
 * Connection header without "upgrade", a subprotocol list it cannot parse or match, a missing Host or
 * Sec-WebSocket-Key, an over-long key). A proxy counts such a close as the node failing (nginx marked
 * every node down for 10 s after one such request, issue 13). So every condition under which
 * libwebsockets would close silently is checked here first -- with its own tokenizer, flags and limits,
 * so our verdict and its verdict cannot differ -- and refused with an HTTP status instead.
 *
 * What libwebsockets still drops unanswered happens before any callback (a request whose headers do not
 * fit push.max_header_bytes, or with more header lines or URL arguments than its fragment table holds)
 * or is a handshake that never finishes (push.handshake_timeout_s): conn.c logs those when the
 * connection goes.
 */
#ifndef PUSH_HANDSHAKE_H
#define PUSH_HANDSHAKE_H

#include "stats.h"

#include <libwebsockets.h>

struct proto;

/* The outcome of the checks. */
struct handshake {
    const struct proto *proto; /* accepted: the protocol this connection speaks */
    unsigned status;           /* refused: the HTTP status to answer with (0: accepted) */
    const char *reason;        /* refused: why (static; logged, and the answer's body) */
    const char *header;        /* refused: one more response header ("name:"), or NULL */
    const char *header_value;
    enum stats_reason stat; /* refused: the metric it counts in */
    int answered;           /* refused, and libwebsockets has already answered it (an unknown Upgrade) */
};

/* Check the upgrade request on wsi (upgrade: the Upgrade header's value). Fills h; returns h->status
 * (0 = accepted, h->proto set). The request's path and headers are read, nothing is written. */
unsigned handshake_check(struct lws *wsi, const char *upgrade, struct handshake *h);

/* Answer a refused upgrade: h->status with h->reason as a text/plain body, plus h->header. Returns what
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE must return (1: answered, the connection stays for another request;
 * -1: the answer could not be written, close). */
int handshake_refuse(struct lws *wsi, const struct handshake *h);

#endif
