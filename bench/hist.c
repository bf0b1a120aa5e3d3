/* hist.c -- see hist.h. */
#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

int hist_index(int64_t v)
{
    if (v < 0)
        v = 0;
    if (v >= HIST_MAX)
        v = HIST_MAX - 1;
    if (v < 2 * HIST_SUB)
        return (int)v;
    /* v lies in [2^(SUB_BITS + e), 2^(SUB_BITS + e + 1)): v >> e is in [HIST_SUB, 2 * HIST_SUB). */
    int e = (63 - __builtin_clzll((unsigned long long)v)) - HIST_SUB_BITS;
    return HIST_SUB * e + (int)(v >> e);
}

int64_t hist_bucket_low(int idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    int e = idx / HIST_SUB - 1;
    int64_t m = idx - (int64_t)HIST_SUB * e;
    return m << e;
}

int64_t hist_bucket_high(int idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    int e = idx / HIST_SUB - 1;
    int64_t m = idx - (int64_t)HIST_SUB * e;
    return ((m + 1) << e) - 1;
}

void hist_record(struct hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    if (v >= HIST_MAX) {
        h->overflow++;
        v = HIST_MAX - 1;
    }
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (h->count == 0 || v > h->max)
        h->max = v;
    h->count++;
    h->sum += (double)v;
    h->buckets[hist_index(v)]++;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->count == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
    for (int i = 0; i < HIST_NBUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

int64_t hist_percentile(const struct hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    if (pct >= 100.0)
        return h->max;
    if (pct < 0)
        pct = 0;
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_NBUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            int64_t v = hist_bucket_high(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
