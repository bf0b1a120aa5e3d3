/* http.h -- magpie-http's core: one request in, one response out, whatever front-end carried it.
 *
 * The two front-ends (fcgi_front.c: FastCGI behind nginx; mhd_front.c: libmicrohttpd standalone) turn what
 * they receive into a struct http_req, call http_dispatch() on one of their threads, and write the
 * struct http_resp it fills. Everything in between -- the route table, authentication, the envelopes, the
 * handlers -- is written once, here and in the files named after the endpoints:
 *
 *   router.c   the route table (method + path pattern -> handler), auth gate, metrics, access log line
 *   call.c     what handlers share: JSON fields, replies in either envelope, Redis/MySQL error mapping
 *   sms.c      POST /send_code, POST /login
 *   user.c     /logout, /me, /friends, /IM/token, /route
 *   conv.c     GET /conversations
 *   groups.c   /groups and /groups/<id>...: the group endpoints (one Redis script per change)
 *   qr.c       the QR login session: /pc_session, its SVG, /session_login, /scan_pc, /confirm_pc, /cancel_pc
 *   longpoll.c where a /session_login waits without holding a thread
 *   msg.c      POST /msg, POST /tk
 *   admin.c    /admin/friends, /admin/orders, /admin/kick
 *   ops.c      /healthz, /metrics
 *
 * Threads: each front-end thread owns a struct worker (its own Redis and MySQL connections); nothing in a
 * request is shared with another thread except through Redis.
 */
#ifndef MAGPIE_HTTP_H
#define MAGPIE_HTTP_H

#include "auth.h"
#include "config.h"
#include "db.h"
#include "rds.h"

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_RESP_HEADERS 4
#define HTTP_TOKEN_HEX        32   /* QR session tokens and browser ids: 128 random bits as hex */
#define HTTP_MAX_IP           64   /* an IPv6 address as text, with room to spare */
#define HTTP_MAX_QUERY        1024 /* bytes of query string a handler reads (the standalone front-end's copy) */

/* One request, as a front-end received it. Every pointer is borrowed from the front-end and stays valid
 * until the response is written. Header values are NULL when absent. */
struct http_req {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* decoded path, without the query string */
    const char *query;         /* the query string (after '?', still percent-encoded); NULL when none */
    const char *authorization; /* Authorization */
    const char *auth_token;    /* authToken (Wildfire clients) */
    const char *cookie;        /* Cookie */
    const char *user_agent;    /* User-Agent */
    const char *client_ip;     /* the browser's address (X-Real-IP from nginx, or the peer) */
    const char *body;          /* request body, not NUL-terminated; NULL when empty */
    size_t body_len;
    int body_too_large;   /* the front-end refused to read a body over http.max_body */
    const char *frontend; /* "fcgi" or "standalone", for metrics */
};

struct http_header {
    const char *name; /* static */
    char *value;      /* owned */
};

/* A response. http_resp_free() releases what it owns. */
struct http_resp {
    int status;
    const char *content_type; /* static */
    char *body;               /* owned, malloc'd; may hold NUL bytes (binary) */
    size_t body_len;
    struct http_header headers[HTTP_MAX_RESP_HEADERS];
    int nheaders;
};

/* A thread's connections. Created by the thread that uses it; never shared. */
struct worker {
    struct rds rds;
    struct db db;
};

/* The process-wide state every handler reads. Filled by main before the front-ends start; read-only
 * afterwards. */
struct http_app {
    struct magpie_config cfg;
    struct auth auth;
};

extern struct http_app app;

/* Create / free a worker for the calling thread. worker_new returns NULL when out of memory. */
struct worker *worker_new(void);
void worker_free(struct worker *w);

/* Drop connections the server closed while they were idle (a Redis or MySQL restart), so the next command
 * reconnects instead of failing. Called before a request's first Redis or MySQL command. */
void worker_refresh(struct worker *w);

/* Run one request: route it, check who is calling, run the handler. Fills *resp (which the caller
 * zeroed) unless the request was parked as a long poll: then returns 1, *resp is untouched, and the
 * request will be answered later through the front-end's deliver callback (longpoll.h). Returns 0 when
 * *resp is ready to be written. */
struct lp_front;
int http_dispatch(struct worker *w, const struct http_req *req, struct http_resp *resp,
                  const struct lp_front *front, void *front_ctx);

/* Count a finished request in the metrics and write its debug log line. endpoint is the route's name
 * (never the raw path, which may hold a token) and frontend the front-end's name, both strings that live
 * until exit (their addresses key a per-thread cache of the series: router.c); started_us from
 * http_clock_us() when the request came in. */
void http_account(const char *endpoint, const char *frontend, const struct http_resp *resp,
                  int64_t started_us);

/* Monotonic microseconds. */
int64_t http_clock_us(void);

/* Add a header to resp (name static, value copied). Silently dropped past HTTP_MAX_RESP_HEADERS or when
 * out of memory: every header we send is an extra (the body carries the answer). */
void http_resp_header(struct http_resp *resp, const char *name, const char *value);

/* The reason phrase of an HTTP status. */
const char *http_reason(int status);

void http_resp_free(struct http_resp *resp);

/* Register the metric families (once, before any request). */
int http_metrics_init(void);

/* Replace every token-bearing part of a line (QR session paths, JWTs) with "-", in place. Used on log
 * text that comes from a library (libmicrohttpd) and may quote a request line. */
void http_redact(char *s);

#endif
