/* notify_post.h -- one webhook POST of magpie-notify: the body (a JSON array of events), its signature, and
 * a libcurl easy handle set up so that a hostile or broken receiver costs bounded time and memory:
 *
 *   - the whole transfer (DNS, connect, send, answer) ends after notify.timeout_ms (a slow-loris receiver
 *     that trickles its answer, or one that never answers, is cut there);
 *   - redirects are not followed (a 3xx is a failure like any non-2xx: a webhook URL that redirects is a
 *     misconfiguration the log line names);
 *   - only http and https, on the first request and ever after;
 *   - at most notify.max_response_bytes of the answer body are read, counted, and thrown away (the first
 *     NOTIFY_POST_SNIPPET bytes are kept for the failure's log line); then the transfer is cut and the
 *     status decides (libcurl has the status line by then);
 *   - response headers are bounded by libcurl itself (CURL_MAX_HTTP_HEADER, 100 KiB).
 * https verifies the peer with the system's CA certificates (libcurl's default).
 */
#ifndef MAGPIE_NOTIFY_POST_H
#define MAGPIE_NOTIFY_POST_H

#include "config.h"

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#define NOTIFY_SIG_HEADER   "X-Magpie-Signature"
#define NOTIFY_SIG_MAX      (7 + 64 + 1) /* "sha256=" + 64 hex digits + NUL */
#define NOTIFY_POST_SNIPPET 96           /* bytes of a failed answer's body quoted in the log */

struct notify_post {
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* owned */
    size_t body_len;
    size_t cap;      /* notify.max_response_bytes */
    size_t received; /* answer body bytes seen (counted up to the cut) */
    int cut;         /* the answer was longer than cap: the transfer was ended */
    char snippet[NOTIFY_POST_SNIPPET + 1];
    size_t snippet_len;
    char err[CURL_ERROR_SIZE];
    int64_t started_ms; /* monotonic */
    void *owner;        /* the caller's batch */
};

/* Write "sha256=<hex of HMAC-SHA256(body) keyed with secret>" into out (NOTIFY_SIG_MAX bytes).
 * Returns MP_OK, or MP_ERR when OpenSSL fails. */
int notify_sign(const char *secret, const char *body, size_t len, char *out);

/* A POST of body (taken: freed with the post) to cfg's notify.webhook_url, signed with notify.secret.
 * Returns NULL when out of memory or libcurl refuses an option (then body is freed too). */
struct notify_post *notify_post_new(const struct magpie_config *cfg, char *body, size_t len, void *owner);

/* After libcurl finished the transfer with rc: returns 1 when the receiver took the batch (2xx), else 0 with
 * a one-line reason in why ("http 500: <start of body>", "timeout: 5000 ms, http 0 so far", "connect: ...").
 */
int notify_post_result(struct notify_post *p, CURLcode rc, char *why, size_t len);

void notify_post_free(struct notify_post *p);

#endif
