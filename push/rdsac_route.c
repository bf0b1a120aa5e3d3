/* rdsac_route.c -- see rdsac_route.h. */
#include "rdsac_route.h"
#include "magpie.h"
#include "rcluster.h"

#include <stdio.h>
#include <string.h>

/* A decimal count of at most 9 digits at p (before end) followed by CR LF; the count, or -1. *next is
 * set after the CR LF. */
static long read_count(const char *p, const char *end, const char **next)
{
    long n = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 10) {
        n = n * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || digits > 9 || end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return -1;
    *next = p + 2;
    return n;
}

int rdsac_split(const char *cmd, size_t len, const char **argv, size_t *argvlen, int maxargs)
{
    const char *p = cmd, *end = cmd + len;
    long n;

    if (len < 4 || *p != '*' || (n = read_count(p + 1, end, &p)) < 1 || n > maxargs)
        return -1;
    for (long i = 0; i < n; i++) {
        long l;
        if (p >= end || *p != '$' || (l = read_count(p + 1, end, &p)) < 0)
            return -1;
        if ((size_t)(end - p) < (size_t)l + 2 || p[l] != '\r' || p[l + 1] != '\n')
            return -1;
        argv[i] = p;
        argvlen[i] = (size_t)l;
        p += l + 2;
    }
    return p == end ? (int)n : -1;
}

int rdsac_formatted_slot(const char *cmd, size_t len, int *slot, char *why, size_t whylen)
{
    /* RDSA_MAX_EVAL_ARGS (4096) arguments plus EVALSHA, sha and numkeys: the longest command rdsa sends */
    enum { MAX_ARGS = 4096 + 3 };
    static const char *argv[MAX_ARGS]; /* the loop thread only (rdsa is not thread-safe) */
    static size_t argvlen[MAX_ARGS];
    int argc = rdsac_split(cmd, len, argv, argvlen, MAX_ARGS);

    *slot = -1;
    if (argc < 0) {
        snprintf(why, whylen, "the command does not parse (or has more than %d arguments)", MAX_ARGS);
        return MP_EINVAL;
    }
    return rcl_command_slot(argc, argv, argvlen, slot, why, whylen);
}

int rdsac_noscript(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL && r->len >= 8 &&
           memcmp(r->str, "NOSCRIPT", 8) == 0;
}

int rdsac_next_try(int64_t now_ms, int64_t deadline_ms, int *backoff_ms, int max_ms, int64_t *due_ms)
{
    if (now_ms >= deadline_ms)
        return MP_EAGAIN;
    *due_ms = now_ms + *backoff_ms < deadline_ms ? now_ms + *backoff_ms : deadline_ms;
    *backoff_ms = *backoff_ms * 2 > max_ms ? max_ms : *backoff_ms * 2;
    return MP_OK;
}

int rdsac_map_full(const struct rcl_map *m, int (*ready)(int node, void *arg), void *arg)
{
    int checked[RCL_MAX_MASTERS] = {0}; /* 0 unknown, 1 ready, -1 not */

    if (m == NULL)
        return 0;
    for (int s = 0; s < RCL_SLOTS; s++) {
        int i = m->owner[s];
        if (i < 0 || i >= m->nnodes)
            return 0;
        if (checked[i] == 0)
            checked[i] = ready(i, arg) ? 1 : -1;
        if (checked[i] < 0)
            return 0;
    }
    return 1;
}
