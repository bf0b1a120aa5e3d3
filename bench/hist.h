/* hist.h -- latency histogram in the manner of HdrHistogram: log-linear buckets, fixed memory, O(1) record,
 * percentiles without keeping or sorting the samples, and histograms of several processes merge by adding.
 *
 * Values are nanoseconds (any unit works). Values below 2 * HIST_SUB are exact; above, every power of two is
 * cut into HIST_SUB equal buckets, so a reported value is within 1 / HIST_SUB (0.8 %) of the true one.
 * Values of HIST_MAX or more are counted in the last bucket and in `overflow`; negative values count as 0.
 * A struct hist is plain data (no pointers): a worker process writes it to a pipe and the parent merges it.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB      (1 << HIST_SUB_BITS) /* buckets per power of two: 0.8 % resolution */
#define HIST_MAX_EXP  40                   /* largest power-of-two step: values up to 2^48 ns (78 hours) */
#define HIST_MAX      ((int64_t)1 << (HIST_SUB_BITS + 1 + HIST_MAX_EXP))
#define HIST_NBUCKETS ((HIST_MAX_EXP + 2) * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t overflow; /* values >= HIST_MAX (recorded as HIST_MAX - 1) */
    int64_t min, max;  /* exact; meaningful when count > 0 */
    double sum;        /* for the mean */
    uint64_t buckets[HIST_NBUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, int64_t v);

/* Add every sample of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile pct (0..100]: the largest value that falls in the bucket holding the sample of
 * rank ceil(pct / 100 * count), capped at the exact maximum. 0 when the histogram is empty. */
int64_t hist_percentile(const struct hist *h, double pct);

double hist_mean(const struct hist *h);

/* Bucket arithmetic, exposed for the unit tests. */
int hist_index(int64_t v);
int64_t hist_bucket_low(int idx);
int64_t hist_bucket_high(int idx);

#endif
