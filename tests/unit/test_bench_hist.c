/* Unit tests of magpie-bench's histogram: exact where it must be, within its resolution elsewhere, mergeable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

static struct hist *new_hist(void)
{
    struct hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    hist_init(h);
    return h;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact percentile by the same rank rule (ceil(p/100 * n)), from sorted samples. */
static int64_t exact(const int64_t *sorted, size_t n, double pct)
{
    size_t rank = (size_t)ceil(pct / 100.0 * (double)n);
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void test_empty_is_zero(void **state)
{
    struct hist *h = new_hist();
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_int_equal(hist_percentile(h, 100), 0);
    assert_true(hist_mean(h) == 0.0);
    free(h);
}

static void test_small_values_are_exact(void **state)
{
    struct hist *h = new_hist();
    for (int64_t v = 0; v < 2 * HIST_SUB; v++)
        hist_record(h, v);
    assert_int_equal(h->count, 2 * HIST_SUB);
    assert_int_equal(hist_percentile(h, 50), HIST_SUB - 1);
    assert_int_equal(hist_percentile(h, 100), 2 * HIST_SUB - 1);
    assert_int_equal(h->min, 0);
    free(h);
}

static void test_buckets_are_contiguous_and_tight(void **state)
{
    /* Every bucket starts right after the previous one ends, and is at most 1/HIST_SUB of its values wide. */
    for (int i = 1; i < HIST_NBUCKETS; i++) {
        assert_int_equal(hist_bucket_low(i), hist_bucket_high(i - 1) + 1);
        int64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
        assert_true((double)(hi - lo) <= (double)lo / HIST_SUB + 1e-9);
        assert_int_equal(hist_index(lo), i);
        assert_int_equal(hist_index(hi), i);
    }
    assert_int_equal(hist_bucket_high(HIST_NBUCKETS - 1), HIST_MAX - 1);
}

static void test_percentiles_within_resolution(void **state)
{
    enum { N = 100000 };
    struct hist *h = new_hist();
    int64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    srand(7);
    for (int i = 0; i < N; i++) {
        /* log-uniform from 1 us to 10 s: a latency-like spread over many powers of two */
        double x = exp(log(1e3) + (log(1e10) - log(1e3)) * rand() / (double)RAND_MAX);
        v[i] = (int64_t)x;
        hist_record(h, v[i]);
    }
    qsort(v, N, sizeof(*v), cmp_i64);
    const double pcts[] = {1, 10, 50, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        int64_t e = exact(v, N, pcts[i]), got = hist_percentile(h, pcts[i]);
        assert_true(got >= e);                                      /* the bucket's top: never optimistic */
        assert_true((double)(got - e) <= (double)e / HIST_SUB + 1); /* and within the resolution */
    }
    assert_int_equal(hist_percentile(h, 100), v[N - 1]);
    assert_int_equal(h->min, v[0]);
    free(v);
    free(h);
}

static void test_merge_equals_recording_everything(void **state)
{
    struct hist *a = new_hist(), *b = new_hist(), *all = new_hist();
    for (int64_t i = 1; i <= 5000; i++) {
        int64_t x = i * 7919 % 1000003 * 1000;
        hist_record(i % 3 ? a : b, x);
        hist_record(all, x);
    }
    hist_merge(a, b);
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->buckets, all->buckets, sizeof(a->buckets));
    assert_int_equal(hist_percentile(a, 99), hist_percentile(all, 99));
    /* merging an empty histogram changes nothing, and into an empty one copies */
    struct hist *empty = new_hist();
    hist_merge(a, empty);
    assert_int_equal(a->count, all->count);
    hist_merge(empty, all);
    assert_int_equal(empty->min, all->min);
    assert_int_equal(hist_percentile(empty, 50), hist_percentile(all, 50));
    free(a);
    free(b);
    free(all);
    free(empty);
}

static void test_out_of_range_values_are_clamped_and_counted(void **state)
{
    struct hist *h = new_hist();
    hist_record(h, -5);
    hist_record(h, HIST_MAX);
    hist_record(h, INT64_MAX);
    assert_int_equal(h->count, 3);
    assert_int_equal(h->overflow, 2);
    assert_int_equal(h->min, 0);
    assert_int_equal(h->max, HIST_MAX - 1);
    assert_int_equal(hist_percentile(h, 100), HIST_MAX - 1);
    assert_int_equal(hist_percentile(h, 10), 0);
    free(h);
}

static void test_single_value(void **state)
{
    struct hist *h = new_hist();
    hist_record(h, 123456789);
    /* any percentile of one sample is that sample (the max caps the bucket's top) */
    assert_int_equal(hist_percentile(h, 50), 123456789);
    assert_int_equal(hist_percentile(h, 0.001), 123456789);
    assert_true(fabs(hist_mean(h) - 123456789.0) < 1e-6);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_is_zero),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_buckets_are_contiguous_and_tight),
        cmocka_unit_test(test_percentiles_within_resolution),
        cmocka_unit_test(test_merge_equals_recording_everything),
        cmocka_unit_test(test_out_of_range_values_are_clamped_and_counted),
        cmocka_unit_test(test_single_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
