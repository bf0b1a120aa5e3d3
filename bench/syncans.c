/* syncans.c -- see syncans.h. */
#include "syncans.h"

#include <stdarg.h>
#include <stdio.h>

static int bad(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

int sync_answer_check(const json_t *msg, int64_t after, int limit, struct sync_result *r, char *why,
                      size_t cap)
{
    const json_t *msgs = json_object_get(msg, "messages"), *more = json_object_get(msg, "more"),
                 *max = json_object_get(msg, "max");
    if (!json_is_object(msg) || !json_is_array(msgs) || !json_is_boolean(more) || !json_is_integer(max))
        return bad(why, cap, "Y: answer without messages[], more and max");
    r->max = json_integer_value(max);
    r->n = json_array_size(msgs);
    r->first = 0;
    r->short_cap = 0;
    if (r->max < after && r->n == 0 && !json_is_true(more))
        return 0; /* asked beyond the end: nothing, nothing more */
    for (size_t i = 0; i < r->n; i++) {
        const json_t *m = json_array_get(msgs, i), *seq = json_object_get(m, "seq");
        int64_t want = after + 1 + (int64_t)i;
        if (!json_is_object(m) || !json_is_integer(seq))
            return bad(why, cap, "Y: message %zu has no seq", i);
        if (json_integer_value(seq) != want)
            return bad(why, cap, "Y: after %lld, message %zu has seq %lld instead of %lld (gap or disorder)",
                       (long long)after, i, (long long)json_integer_value(seq), (long long)want);
        if (i == 0)
            r->first = want;
    }
    int64_t last = after + (int64_t)r->n;
    int64_t expect = r->max - after < limit ? r->max - after : limit;
    if (expect < 0)
        expect = 0;
    if (last > r->max)
        return bad(why, cap, "Y: seq %lld is past max %lld", (long long)last, (long long)r->max);
    if (json_is_true(more) != (last < r->max))
        return bad(why, cap, "Y: more is %s with %lld of max %lld", json_is_true(more) ? "true" : "false",
                   (long long)last, (long long)r->max);
    if ((int64_t)r->n < expect) {
        if (r->n == 0)
            return bad(why, cap, "Y: after %lld, no message though max is %lld", (long long)after,
                       (long long)r->max);
        r->short_cap = 1; /* more is true (checked above): the byte cap, allowed */
    }
    if ((int64_t)r->n > limit)
        return bad(why, cap, "Y: %zu messages, over the limit %d", r->n, limit);
    return 0;
}
