/* stompframe.h -- STOMP 1.2 frames (stomp.github.io/stomp-specification-1.2.html), parsed and built without
 * any I/O, so that every rule can be unit-tested and fuzzed against hostile input (stomp.c is the protocol).
 *
 * Over WebSocket one message carries one frame: optional EOLs (heart-beats), the command line, header lines,
 * a blank line, the body, a NUL, optional EOLs. An EOL is "\n" or "\r\n". A message of EOLs only is a
 * heart-beat. The body ends at the first NUL, or, when the frame has a content-length header, after that
 * many octets (which must be followed by the NUL). Header names and values are escaped (\r \n \c \\), except
 * in CONNECT, STOMP and CONNECTED frames (1.2 keeps those unescaped for 1.0 clients); an undefined escape
 * is an error. A command is a word of ASCII letters (an unknown one parses, as STOMP_UNKNOWN). A repeated
 * header: the first one counts. Limits (stomp.* config keys) bound the frame, each
 * header line and the number of headers, before anything is kept.
 */
#ifndef PUSH_STOMPFRAME_H
#define PUSH_STOMPFRAME_H

#include <stddef.h>

#define STOMP_MAX_HEADERS_CAP 128 /* the most stomp.max_headers may allow: the parser's fixed table */

/* Client commands; STOMP_UNKNOWN for anything else (a well-formed frame with a command the server does not
 * take). */
enum stomp_cmd {
    STOMP_UNKNOWN,
    STOMP_CONNECT,
    STOMP_STOMP,
    STOMP_SEND,
    STOMP_SUBSCRIBE,
    STOMP_UNSUBSCRIBE,
    STOMP_ACK,
    STOMP_NACK,
    STOMP_BEGIN,
    STOMP_COMMIT,
    STOMP_ABORT,
    STOMP_DISCONNECT,
    STOMP_CMD_COUNT
};

/* The command's name ("SEND"), "UNKNOWN" for STOMP_UNKNOWN: logs and metric labels. */
const char *stompframe_cmd_name(enum stomp_cmd cmd);

struct stomp_limits {
    size_t max_frame;      /* bytes of one frame (the whole WebSocket message) */
    size_t max_header_len; /* bytes of one header line (and of the command line), escaped */
    int max_headers;       /* header lines, at most STOMP_MAX_HEADERS_CAP */
};

struct stomp_header {
    const char *name, *value; /* decoded, NUL-terminated, pointing into the parsed buffer */
    size_t name_len, value_len;
};

struct stompframe {
    enum stomp_cmd cmd;
    const char *command; /* as sent, NUL-terminated */
    struct stomp_header h[STOMP_MAX_HEADERS_CAP];
    int nh;
    const char *body; /* points into the parsed buffer (not NUL-terminated by the parser: body[len] is NUL) */
    size_t body_len;
};

enum stompframe_result {
    STOMPFRAME_OK,        /* a frame: f is filled */
    STOMPFRAME_HEARTBEAT, /* EOLs only */
    STOMPFRAME_BAD,       /* *why says what is wrong (a static string, for the ERROR frame) */
};

/* The reasons of STOMPFRAME_BAD. */
#define STOMP_E_TOO_BIG       "frame too large"
#define STOMP_E_HEADER_LONG   "header line too long"
#define STOMP_E_TOO_MANY_HDRS "too many headers"
#define STOMP_E_NO_COMMAND    "missing command"
#define STOMP_E_BAD_COMMAND   "malformed command: expected letters"
#define STOMP_E_BAD_HEADER    "malformed header line: expected name:value"
#define STOMP_E_BAD_ESCAPE    "undefined escape sequence in a header"
#define STOMP_E_NO_BLANK      "frame ends inside its headers"
#define STOMP_E_BAD_LENGTH    "bad content-length"
#define STOMP_E_NO_NUL        "frame without NUL terminator"
#define STOMP_E_TRAILING      "one frame per WebSocket message: bytes after the NUL"
#define STOMP_E_NUL_IN_HEADER "NUL in the command or headers"
#define STOMP_E_NOT_UTF8      "command or header not UTF-8"

/* Parse one WebSocket message of len bytes in buf, which must be writable and have buf[len] addressable
 * (the caller's copy; escapes are decoded in place, names and values NUL-terminated there). Returns a
 * stompframe_result; on STOMPFRAME_BAD *why is set and f is undefined. */
enum stompframe_result stompframe_parse(char *buf, size_t len, const struct stomp_limits *lim,
                                        struct stompframe *f, const char **why);

/* The value of the first header called name, or NULL. */
const char *stompframe_get(const struct stompframe *f, const char *name);

/* A frame to send: command, then headers given as name, value, ..., NULL (escaped here unless the command
 * is CONNECTED), then, when body is not NULL, content-length and the body. Returns a malloc'd buffer holding
 * the frame with its NUL (caller frees) and its length in *len (the NUL included), or NULL when out of
 * memory. */
char *stompframe_build(const char *command, const char *const *headers, const char *body, size_t body_len,
                       size_t *len);

#endif
