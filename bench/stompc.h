/* stompc.h -- the client side of STOMP 1.2 (stomp.github.io/stomp-specification-1.2.html) over WebSocket
 * for magpie-bench: build the frames a client sends, parse the frames a server sends. A WebSocket message
 * carries one frame, or several one after the other (magpie-push sends a room batch's MESSAGE frames in one
 * message: room_bridge.c), each optionally followed by EOLs (heart-beats).
 *
 * Hand-written for the reason wsframe.c is (README.md, "Why raw epoll"): the generator must not share the
 * server's parser (push/stompframe.c), and no library the SPEC names speaks STOMP. Strict: a command a
 * server does not send (only CONNECTED, MESSAGE, RECEIPT, ERROR), a header line without ':', an undefined
 * escape (1.2 defines \r \n \c \\; CONNECTED is not escaped), a missing blank line, a body without its NUL, a
 * content-length that does not match: all are errors. What follows a frame's NUL and its EOLs is the next
 * frame. EOLs alone are a heart-beat.
 */
#ifndef BENCH_STOMPC_H
#define BENCH_STOMPC_H

#include <stddef.h>

#define STOMPC_MAX_HEADERS 32

enum stompc_cmd { STOMPC_HEARTBEAT, STOMPC_CONNECTED, STOMPC_MESSAGE, STOMPC_RECEIPT, STOMPC_ERROR };

enum stompc_error {
    STOMPC_E_COMMAND = -1, /* not a server command */
    STOMPC_E_HEADER = -2,  /* a header line without ':', too many headers, or no blank line */
    STOMPC_E_ESCAPE = -3,  /* an undefined escape sequence */
    STOMPC_E_BODY = -4,    /* no NUL, or a content-length that does not end at a NUL */
};

/* A parsed frame. Header names and values are the raw (escaped) bytes inside the message; stompc_value
 * decodes one. */
struct stompc_frame {
    int cmd; /* enum stompc_cmd */
    int nh;
    struct {
        const char *name, *value;
        size_t name_len, value_len;
    } h[STOMPC_MAX_HEADERS];
    const char *body;
    size_t body_len;
};

/* Parse the frame at the start of msg (len bytes: the rest of a WebSocket message, which must hold the whole
 * frame). Returns 0 and sets *used to the bytes taken (the frame, the EOLs before and after it), or a
 * negative stompc_error. Call again with msg + *used while bytes are left. */
int stompc_parse(const char *msg, size_t len, struct stompc_frame *f, size_t *used);

/* The first header called name (1.2: a repeated header's first value counts), decoded into buf
 * (NUL-terminated). Returns its length, or -1 when absent or longer than cap - 1. */
long stompc_value(const struct stompc_frame *f, const char *name, char *buf, size_t cap);

const char *stompc_strerror(int err);

/* Build a frame: command, headers as name, value pairs ending with NULL (escaped, except in CONNECT), a
 * content-length header when body is not NULL, the body and the NUL. Returns the length, or 0 when it does
 * not fit in cap. */
size_t stompc_build(char *out, size_t cap, const char *command, const char *const *headers, const void *body,
                    size_t body_len);

#endif
