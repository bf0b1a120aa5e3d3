/* natsp.h -- the server side of the NATS client protocol (INFO, MSG, PING, PONG, +OK, -ERR), read from the
 * byte stream that nats-server sends inside WebSocket frames (a frame may hold several operations or part
 * of one, so the reader keeps what is incomplete).
 *
 * Strict: an operation name we do not know, a MSG line without a valid byte count, a payload not followed
 * by CRLF, a line over NATSP_MAX_LINE or a payload over max_payload is an error, not a guess.
 */
#ifndef BENCH_NATSP_H
#define BENCH_NATSP_H

#include <stddef.h>
#include <stdint.h>

#define NATSP_MAX_LINE 16384 /* INFO with a long connect_urls list fits */

enum natsp_op { NATSP_INFO, NATSP_MSG, NATSP_PING, NATSP_PONG, NATSP_OK, NATSP_ERR };

/* One operation. For MSG: subject, sid and payload; for -ERR and INFO: the rest of the line in text. */
struct natsp_event {
    enum natsp_op op;
    const char *subject;
    size_t subject_len;
    uint64_t sid;
    const uint8_t *payload;
    size_t payload_len;
    const char *text;
    size_t text_len;
};

/* Return 0 to go on, nonzero to stop natsp_feed (what is left unparsed is then dropped: stop only to drop
 * the connection). */
typedef int (*natsp_fn)(void *arg, const struct natsp_event *ev);

struct natsp {
    uint8_t *buf; /* bytes not yet parsed (malloc'd) */
    size_t len;
    size_t cap;
    size_t max_payload;
};

void natsp_init(struct natsp *p, size_t max_payload);
void natsp_free(struct natsp *p);

/* Feed stream bytes; calls fn for each complete operation. Returns 0, 1 when fn asked to stop, or -1 on a
 * protocol error (the connection must be dropped). */
int natsp_feed(struct natsp *p, const uint8_t *data, size_t n, natsp_fn fn, void *arg);

#endif
