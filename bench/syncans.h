/* syncans.h -- the check of a Y answer (SPEC §4.1) that magpie-bench's chat syncers apply.
 *
 * A client that asked Y {after, limit} must get the entries after + 1, after + 2, ... of its timeline, in
 * seq order and with none missing: n = min(limit, max - after) of them, where max is the latest seq the
 * answer names, and "more" true exactly when after + n < max. The one allowed shortfall is the server's
 * byte cap on one answer (timeline.c: half of push.queue_cap), which must then say "more": true. Anything
 * else is a wrong answer, counted apart from errors (E) so a benchmark can never pass on a broken sync.
 */
#ifndef BENCH_SYNCANS_H
#define BENCH_SYNCANS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct sync_result {
    int64_t max;   /* the answer's "max" */
    size_t n;      /* messages in the answer */
    int64_t first; /* seq of the first message (0 when none) */
    int short_cap; /* fewer than min(limit, max - after) but "more": true (the byte cap) */
};

/* Check msg, the "msg" of a Y answer to Y {after, limit}. Returns 0 when it is right (fills *r), or -1 with
 * the reason in why (cap bytes). */
int sync_answer_check(const json_t *msg, int64_t after, int limit, struct sync_result *r, char *why,
                      size_t cap);

#endif
