/* payload.c -- see payload.h. */
#include "payload.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int payload_format(char *buf, size_t cap, size_t size, const struct payload *p)
{
    char head[PAYLOAD_MIN + 32];
    int n = snprintf(head, sizeof(head), "mb1 %08" PRIx32 " %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRId64,
                     p->run, p->step, p->pub, p->seq, p->sched_ns);
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    size_t len = size > (size_t)n ? size : (size_t)n;
    if (len > cap)
        return -1;
    memcpy(buf, head, (size_t)n);
    if (len > (size_t)n) {
        buf[n] = ' ';
        memset(buf + n + 1, '.', len - (size_t)n - 1);
    }
    return (int)len;
}

/* A decimal field followed by a blank or the end. Returns the position after it, or NULL. */
static const char *field_u64(const char *s, const char *end, uint64_t *out, uint64_t max)
{
    uint64_t v = 0;
    const char *p = s;
    while (p < end && *p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (max - d) / 10)
            return NULL;
        v = v * 10 + d;
        p++;
    }
    if (p == s || p - s > 20)
        return NULL;
    if (p < end && *p != ' ')
        return NULL;
    *out = v;
    return p;
}

int payload_parse(const char *buf, size_t n, struct payload *out)
{
    const char *p = buf, *end = buf + n;
    uint64_t v;
    if (n < 4 || memcmp(buf, "mb1 ", 4) != 0)
        return -1;
    p += 4;
    uint32_t run = 0;
    for (int i = 0; i < 8; i++, p++) {
        if (p >= end)
            return -1;
        int c = *p, d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        run = run << 4 | (uint32_t)d;
    }
    if (p >= end || *p++ != ' ')
        return -1;
    if ((p = field_u64(p, end, &v, UINT32_MAX)) == NULL || p >= end)
        return -1;
    out->step = (uint32_t)v;
    if ((p = field_u64(p + 1, end, &v, UINT32_MAX)) == NULL || p >= end)
        return -1;
    out->pub = (uint32_t)v;
    if ((p = field_u64(p + 1, end, &v, UINT64_MAX)) == NULL || p >= end)
        return -1;
    out->seq = v;
    if ((p = field_u64(p + 1, end, &v, INT64_MAX)) == NULL)
        return -1;
    out->sched_ns = (int64_t)v;
    if (p < end) {
        /* padding: one blank, then dots only */
        for (p++; p < end; p++)
            if (*p != '.')
                return -1;
    }
    out->run = run;
    return 0;
}

int payload_id_format(char *buf, size_t cap, const struct payload *p)
{
    int n = snprintf(buf, cap, "%08" PRIx32 "-%" PRIu32 "-%" PRIu64 "-%" PRId64, p->run, p->step, p->seq,
                     p->sched_ns);
    return n < 0 || (size_t)n >= cap || n > PAYLOAD_ID_MAX ? -1 : n;
}

int payload_id_parse(const char *id, size_t n, struct payload *out)
{
    char buf[PAYLOAD_ID_MAX + 16];
    struct payload p;
    /* Rewrite as a payload header ("mb1 <run> <step> 0 <seq> <sched>") and let one strict parser judge. */
    if (n > PAYLOAD_ID_MAX || n < 8 || memchr(id, ' ', n) != NULL || memchr(id, '\0', n) != NULL)
        return -1;
    const char *dash1 = memchr(id, '-', n);
    if (dash1 == NULL)
        return -1;
    const char *dash2 = memchr(dash1 + 1, '-', n - (size_t)(dash1 + 1 - id));
    if (dash2 == NULL)
        return -1;
    int len = snprintf(buf, sizeof(buf), "mb1 %.*s 0 %.*s", (int)(dash2 - id), id,
                       (int)(n - (size_t)(dash2 + 1 - id)), dash2 + 1);
    if (len < 0 || (size_t)len >= sizeof(buf))
        return -1;
    for (char *q = buf + 4; *q; q++)
        if (*q == '-')
            *q = ' ';
    if (payload_parse(buf, (size_t)len, &p) != 0)
        return -1;
    out->run = p.run;
    out->step = p.step;
    out->seq = p.seq;
    out->sched_ns = p.sched_ns;
    return 0;
}

int payload_seq_note(uint64_t *next, uint64_t seq, uint64_t *gaps)
{
    if (seq < *next)
        return 0;
    *gaps += seq - *next;
    *next = seq + 1;
    return 1;
}
