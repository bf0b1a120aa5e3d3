/* call.h -- one request on its way through a handler: who is calling, the parsed body, and the helpers
 * every handler uses to read fields and to answer in the route's envelope.
 *
 * A handler is `void h(struct call *c)`. It must answer exactly once (reply*, or longpoll_park for a
 * /session_login that waits). The field helpers answer code 2 themselves when a field is missing or of the
 * wrong type, and return -1: the handler then just returns.
 */
#ifndef MAGPIE_HTTP_CALL_H
#define MAGPIE_HTTP_CALL_H

#include "envelope.h"
#include "http.h"

#include <jansson.h>

struct lp_front;

struct call {
    struct worker *w;
    const struct http_req *req;
    struct http_resp *resp;
    const char *endpoint; /* the route's name, for metrics and logs */
    int seed004;          /* answer in seed 004's envelope (/msg, /tk) */
    json_t *body;         /* the request body when it is a JSON object; NULL when there was none */
    char param[80];       /* the path's variable segment ("*" in the route), when the route has one */
    int64_t uid;          /* the caller when logged in with a token, else 0 */
    struct auth_claims claims;
    int by_api_key; /* the caller presented a valid API key */
    int replied;
    int parked;    /* handed to the long poll; the front-end answers later */
    int refreshed; /* worker_refresh ran for this request (router.c) */
    const struct lp_front *front;
    void *front_ctx;
    int64_t started_us;
};

/* Answer with code (and its table message) and result (stolen; NULL = null) in the route's envelope, with
 * the HTTP status of the code. For seed 004 routes, API_OK becomes code 1, API_UNAUTHORIZED code 1001,
 * anything else code 0 with the message, and result becomes "data". */
void reply(struct call *c, enum api_code code, json_t *result);

/* As reply, with a message of our own (NULL = the table's). */
void reply_msg(struct call *c, enum api_code code, const char *message, json_t *result);

/* Answer with a body that is not an envelope (the QR SVG, /metrics). body is malloc'd and stolen. */
void reply_raw(struct call *c, int status, const char *content_type, char *body, size_t len);

/* A dependency is down: code 20, naming it ("redis", "mysql"). */
void reply_unavailable(struct call *c, const char *what);

/* Body fields. Each returns 0 with the value, or 1 when an optional field is absent (*out untouched), or
 * -1 after answering code 2 (missing, wrong type, out of range). Strings are borrowed from c->body. */
int field_str(struct call *c, const char *name, int required, size_t max_bytes, const char **out);
int field_int(struct call *c, const char *name, int required, long long min, long long max, long long *out);
/* A user id: a positive integer, or a string of digits (seed 004 sends "uid": "42"). */
int field_uid(struct call *c, const char *name, int required, int64_t *out);

/* Query argument `name` as an integer in min..max: 0 with the value, 1 when absent (*out untouched), -1 after
 * answering code 2 (not a decimal integer, out of range). */
int query_int(struct call *c, const char *name, long long min, long long max, long long *out);

/* A random 128-bit hex id (QR session tokens, browser ids, message ids). 0 or -1 (after answering). */
int call_random_hex(struct call *c, char *buf, size_t hex_len);

/* Copy s into dst (size n) replacing bytes that are not valid UTF-8 or are control characters with '?',
 * cutting at a character boundary. For client-supplied header values we echo back in JSON. */
void utf8_clean(char *dst, size_t n, const char *s);

/* Is s exactly HTTP_TOKEN_HEX lowercase hex digits? */
int is_hex_token(const char *s);

/* The value of cookie `name` in a Cookie header, copied into dst (size n). 0, or -1 when absent/too long. */
int cookie_get(const char *header, const char *name, char *dst, size_t n);

#endif
