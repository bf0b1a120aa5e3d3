/* qr.h -- the QR login session's long-poll check, shared by its handler (qr.c) and the long poll's answer
 * threads (longpoll.c). */
#ifndef MAGPIE_HTTP_QR_H
#define MAGPIE_HTTP_QR_H

#include "call.h"
#include "longpoll.h"

/* Look at the session for the browser waiting on it (one Lua call that also makes the transitions a poll
 * causes: confirmed -> consumed, the first "scanned" notice). Returns 0 after answering c (codes 0, 8, 9,
 * 14, 18 or 20), 1 when there is nothing to say yet: wait->ver is then the session's version and
 * wait->deadline_ms is pulled in to the session's expiry if that comes first; or -1 without answering when
 * Redis could not be reached or is still loading its data after a restart (the script did not run): the
 * long poll waits on rather than answer 20. */
int qr_poll_answer(struct call *c, struct lp_wait *wait);

#endif
