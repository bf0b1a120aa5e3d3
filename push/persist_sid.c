/* persist_sid.c -- see persist_sid.h. */
#include "persist_sid.h"
#include "magpie.h"

#include <inttypes.h>
#include <stdio.h>

/* Parse one unsigned decimal of 1..20 digits from s[*i..len) up to the first non-digit. */
static int parse_u64(const char *s, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        unsigned d = (unsigned)(s[*i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return MP_EINVAL;
        v = v * 10 + d;
        (*i)++;
    }
    if (*i == start)
        return MP_EINVAL;
    *out = v;
    return MP_OK;
}

int persist_sid_parse(struct persist_sid *sid, const char *s, size_t len)
{
    struct persist_sid v;
    size_t i = 0;
    if (s == NULL || parse_u64(s, len, &i, &v.ms) != MP_OK || i >= len || s[i] != '-')
        return MP_EINVAL;
    i++;
    if (parse_u64(s, len, &i, &v.seq) != MP_OK || i != len)
        return MP_EINVAL;
    *sid = v;
    return MP_OK;
}

void persist_sid_format(const struct persist_sid *sid, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64 "-%" PRIu64, sid->ms, sid->seq);
}

int persist_sid_cmp(const struct persist_sid *a, const struct persist_sid *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

void persist_sid_next(struct persist_sid *sid)
{
    if (sid->seq < UINT64_MAX) {
        sid->seq++;
    } else if (sid->ms < UINT64_MAX) {
        sid->ms++;
        sid->seq = 0;
    }
}
