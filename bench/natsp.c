/* natsp.c -- see natsp.h. */
#include "natsp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void natsp_init(struct natsp *p, size_t max_payload)
{
    memset(p, 0, sizeof(*p));
    p->max_payload = max_payload;
}

void natsp_free(struct natsp *p)
{
    free(p->buf);
    memset(p, 0, sizeof(*p));
}

/* A decimal number of at most 19 digits. Returns 0 and sets *out, or -1. */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Split line into blank-separated tokens (at most max). Returns the count, or -1 when there are more. */
static int tokens(const char *line, size_t n, const char **tok, size_t *tlen, int max)
{
    int count = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == n)
            break;
        if (count == max)
            return -1;
        tok[count] = line + i;
        while (i < n && line[i] != ' ' && line[i] != '\t')
            i++;
        tlen[count] = (size_t)(line + i - tok[count]);
        count++;
    }
    return count;
}

static int op_is(const char *line, size_t n, const char *op)
{
    size_t l = strlen(op);
    return n >= l && strncasecmp(line, op, l) == 0 && (n == l || line[l] == ' ' || line[l] == '\t');
}

/* Parse one operation at data[0..n). Returns the bytes it takes (> 0) after calling fn (*stop set when fn
 * asked to stop), 0 when incomplete, -1 on a protocol error. */
static long parse_one(struct natsp *p, const uint8_t *data, size_t n, natsp_fn fn, void *arg, int *stop)
{
    const uint8_t *nl = memchr(data, '\n', n < NATSP_MAX_LINE ? n : NATSP_MAX_LINE);
    if (nl == NULL)
        return n >= NATSP_MAX_LINE ? -1 : 0;
    if (nl == data || nl[-1] != '\r')
        return -1;
    const char *line = (const char *)data;
    size_t ll = (size_t)(nl - data) - 1; /* without CRLF */
    size_t taken = ll + 2;
    struct natsp_event ev;
    memset(&ev, 0, sizeof(ev));

    if (op_is(line, ll, "MSG")) {
        const char *tok[5];
        size_t tl[5];
        uint64_t size;
        int nt = tokens(line, ll, tok, tl, 5);
        if (nt != 4 && nt != 5)
            return -1;
        if (parse_u64(tok[nt - 1], tl[nt - 1], &size) != 0 || size > p->max_payload)
            return -1;
        if (parse_u64(tok[2], tl[2], &ev.sid) != 0)
            return -1;
        if (n - taken < size + 2)
            return 0;
        if (data[taken + size] != '\r' || data[taken + size + 1] != '\n')
            return -1;
        ev.op = NATSP_MSG;
        ev.subject = tok[1];
        ev.subject_len = tl[1];
        ev.payload = data + taken;
        ev.payload_len = (size_t)size;
        taken += (size_t)size + 2;
    } else if (op_is(line, ll, "PING") && ll == 4) {
        ev.op = NATSP_PING;
    } else if (op_is(line, ll, "PONG") && ll == 4) {
        ev.op = NATSP_PONG;
    } else if (op_is(line, ll, "+OK") && ll == 3) {
        ev.op = NATSP_OK;
    } else if (op_is(line, ll, "-ERR")) {
        ev.op = NATSP_ERR;
        ev.text = line + 4;
        ev.text_len = ll - 4;
    } else if (op_is(line, ll, "INFO")) {
        ev.op = NATSP_INFO;
        ev.text = line + 4;
        ev.text_len = ll - 4;
    } else {
        return -1;
    }
    *stop = fn(arg, &ev) != 0;
    return (long)taken;
}

/* Parse what is complete in data; returns bytes taken, or -1. */
static long parse_all(struct natsp *p, const uint8_t *data, size_t n, natsp_fn fn, void *arg, int *stop)
{
    size_t off = 0;
    while (off < n && !*stop) {
        long r = parse_one(p, data + off, n - off, fn, arg, stop);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        off += (size_t)r;
    }
    return (long)off;
}

/* Keep n bytes for the next feed. Returns 0 or -1 (out of memory). */
static int keep(struct natsp *p, const uint8_t *data, size_t n)
{
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n)
            cap *= 2;
        uint8_t *b = realloc(p->buf, cap);
        if (b == NULL)
            return -1;
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, data, n);
    p->len += n;
    return 0;
}

int natsp_feed(struct natsp *p, const uint8_t *data, size_t n, natsp_fn fn, void *arg)
{
    int stop = 0;
    long used;
    if (p->len == 0) {
        /* Common case: parse straight from the caller's bytes and keep only an incomplete tail. */
        used = parse_all(p, data, n, fn, arg, &stop);
        if (used < 0)
            return -1;
        if (stop || (size_t)used == n)
            return stop;
        return keep(p, data + used, n - (size_t)used);
    }
    if (keep(p, data, n) != 0)
        return -1;
    used = parse_all(p, p->buf, p->len, fn, arg, &stop);
    if (used < 0)
        return -1;
    memmove(p->buf, p->buf + used, p->len - (size_t)used);
    p->len -= (size_t)used;
    return stop;
}
