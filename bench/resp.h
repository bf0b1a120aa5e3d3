/* resp.h -- the HTTP side of magpie-bench: the WebSocket opening handshake (RFC 6455 §4.1) and the
 * responses to HTTP publishes (nchan). Responses are parsed with http-parser; the key and the expected
 * Sec-WebSocket-Accept come from OpenSSL (RAND_bytes, SHA-1, base64).
 */
#ifndef BENCH_RESP_H
#define BENCH_RESP_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#define RESP_KEY_LEN    24 /* base64 of 16 random bytes */
#define RESP_ACCEPT_LEN 28 /* base64 of a SHA-1 */

/* Outcomes of resp_upgrade_feed. */
enum resp_upgrade_result {
    RESP_UP_AGAIN = 0,     /* everything consumed; the response is not complete yet */
    RESP_UP_OK = 1,        /* 101 with the right Upgrade, Connection and Sec-WebSocket-Accept */
    RESP_UP_STATUS = -1,   /* another status (in .status): the server refused the upgrade */
    RESP_UP_HEADERS = -2,  /* 101 but Upgrade/Connection missing or wrong */
    RESP_UP_ACCEPT = -3,   /* 101 but Sec-WebSocket-Accept does not match our key */
    RESP_UP_PARSE = -4,    /* not HTTP */
    RESP_UP_PROTOCOL = -5, /* 101 but Sec-WebSocket-Protocol is not the subprotocol we asked for (or one we
                            * did not ask for: RFC 6455 §4.1 requires the client to fail then) */
};

/* Reader of one upgrade response. */
struct resp_upgrade {
    http_parser p;
    char expect[RESP_ACCEPT_LEN + 1]; /* the Sec-WebSocket-Accept we must get */
    int status;
    int done;
    int header;   /* which header the current value belongs to (internal) */
    int in_value; /* last callback was a value (internal) */
    char field[32];
    size_t field_len;
    char upgrade[64];
    size_t upgrade_len;
    char connection[128];
    size_t connection_len;
    char accept[64];
    size_t accept_len;
    char want[32]; /* the subprotocol requested ("" = none), resp_upgrade_want */
    char protocol[64];
    size_t protocol_len;
};

/* Make a fresh Sec-WebSocket-Key (base64 of 16 bytes from RAND_bytes) into key (RESP_KEY_LEN + 1 bytes).
 * Returns 0, or -1 when OpenSSL has no randomness. */
int resp_make_key(char *key);

/* The Sec-WebSocket-Accept a server must answer to key: base64(SHA-1(key + RFC 6455 GUID)). */
void resp_accept_for(const char *key, char *out /* RESP_ACCEPT_LEN + 1 */);

/* Format the upgrade request for path on host ("host:port") into buf. Returns its length, or -1 when it
 * does not fit. */
int resp_upgrade_request(char *buf, size_t cap, const char *host, const char *path, const char *key);

/* The same with Sec-WebSocket-Protocol: protocol (NULL or "" = no such header). */
int resp_upgrade_request_proto(char *buf, size_t cap, const char *host, const char *path, const char *key,
                               const char *protocol);

/* Start reading the answer to a request made with key. */
void resp_upgrade_init(struct resp_upgrade *r, const char *key);

/* After resp_upgrade_init: the request offered this one subprotocol, which the 101 must name. */
void resp_upgrade_want(struct resp_upgrade *r, const char *protocol);

/* Feed response bytes. On RESP_UP_OK, *consumed is the length of the HTTP response; bytes after it are the
 * first WebSocket bytes. */
int resp_upgrade_feed(struct resp_upgrade *r, const uint8_t *buf, size_t n, size_t *consumed);

const char *resp_upgrade_strerror(int rc);

/* Reader of a stream of keep-alive responses (pipelined publishes). */
struct resp_stream {
    http_parser p;
    uint64_t responses; /* complete responses so far */
    uint64_t ok;        /* of them, 2xx */
    int last_status;
    int closing; /* the server said Connection: close */
};

void resp_stream_init(struct resp_stream *r);

/* Feed bytes; counts complete responses. Returns 0, or -1 when the stream is not HTTP. */
int resp_stream_feed(struct resp_stream *r, const uint8_t *buf, size_t n);

#endif
