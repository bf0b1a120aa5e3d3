/* longpoll.h -- where POST /session_login/<token> waits, without holding a thread.
 *
 * Design (the issue asks that a thousand browsers waiting on their QR codes never starve the handlers):
 *   - A handler thread looks at the session (qr.c). If there is nothing to say yet, it parks the request
 *     here and goes back to serve others: the FastCGI front-end hands over its FCGX_Request and takes a
 *     fresh one, the standalone front-end suspends the libmicrohttpd connection. A parked request costs a
 *     socket and its buffers (libfcgi's ~17 KB of stream buffers, or libmicrohttpd's connection memory
 *     pool), no thread.
 *   - One hub thread keeps the parked requests in a hash by session token and a min-heap by deadline. It
 *     holds one Redis connection subscribed (PSUBSCRIBE) to every CHAN_QR channel: each state change of a
 *     session (qr.c publishes it in the same Lua script that makes the change) wakes that session's waiters.
 *     A deadline (http.long_poll_s, or the session's expiry if sooner) wakes a waiter too.
 *   - Woken waiters go to http.poll_threads answer threads, which check the session again (one Lua call)
 *     and answer through the front-end's deliver callback, or park the request again if nothing changed.
 *   - No lost wake-ups: the hub registers a waiter first, then re-reads the session's version (pipelined
 *     HGETs for a batch of new waiters); a change that happened between the handler's look and the
 *     registration shows up as a newer version and wakes it at once. After the subscription was lost
 *     (Redis restart) every waiter is woken once it is back; a failed version check drops the subscription
 *     so that happens too. A woken waiter whose answer thread cannot reach Redis waits on (parked again):
 *     a Redis outage shorter than the poll costs the browser nothing, and only the deadline answers it
 *     (code 20 if Redis is still unreachable then).
 *   - At most http.max_long_polls wait at once; past that a poll is answered code 10 at once (the page polls
 *     again), so memory and file descriptors stay bounded.
 *   - On shutdown every waiter is answered code 10.
 */
#ifndef MAGPIE_HTTP_LONGPOLL_H
#define MAGPIE_HTTP_LONGPOLL_H

#include "http.h"

#include <stdint.h>

/* How a front-end answers a parked request. deliver runs on an answer thread, exactly once per parked
 * request; it takes over resp's contents. The hand-back is deliver's last act: once the request is given
 * back to the front-end's library (MHD_resume_connection; FCGX_Finish_r) another thread may complete and
 * free it, so deliver touches front_ctx no more after that (issue 21), and the long poll never does. */
struct lp_front {
    void (*deliver)(void *front_ctx, struct http_resp *resp);
};

/* What a parked poll waits on. */
struct lp_wait {
    char token[HTTP_TOKEN_HEX + 1];   /* the QR session */
    char browser[HTTP_TOKEN_HEX + 1]; /* the cookie that created it */
    long long ver;                    /* the session's version when it was last looked at */
    int64_t deadline_ms;              /* monotonic ms; answered code 10 then (or 8 if the session expired) */
};

/* Start the hub and the answer threads. MP_OK or MP_ERR. */
int longpoll_start(void);

/* Answer every waiter (code 10) and stop the threads. Call after the front-ends stopped accepting. */
void longpoll_stop(void);

/* Park a request. Returns MP_OK: the request now belongs to the long poll (the handler must not answer);
 * MP_EAGAIN: http.max_long_polls are waiting or we are shutting down -- the handler answers at once. */
int longpoll_park(const struct lp_wait *wait, const struct lp_front *front, void *front_ctx,
                  const char *endpoint, const char *frontend, int64_t started_us);

/* How many requests are parked now. */
long longpoll_waiting(void);

#endif
