/* Unit tests of the Prometheus text rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static void test_render(void **state)
{
    static const double bounds[] = {0.01, 0.1};
    struct metric *c = metrics_counter("t_requests_total", "Requests.");
    struct metric *g = metrics_gauge("t_connections", "Open connections.");
    struct metric *h = metrics_histogram("t_latency_seconds", "Latency.", bounds, 2);
    metric_add(c, "endpoint=\"/login\",code=\"0\"", 1);
    metric_add(c, "endpoint=\"/login\",code=\"0\"", 2);
    metric_add(c, "endpoint=\"/me\",code=\"13\"", 1);
    metric_set(g, NULL, 7);
    metric_observe(h, NULL, 0.005);
    metric_observe(h, NULL, 0.05);
    metric_observe(h, NULL, 5);

    size_t len;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "# TYPE t_requests_total counter\n"));
    assert_non_null(strstr(text, "t_requests_total{endpoint=\"/login\",code=\"0\"} 3\n"));
    assert_non_null(strstr(text, "t_requests_total{endpoint=\"/me\",code=\"13\"} 1\n"));
    assert_non_null(strstr(text, "t_connections 7\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.01\"} 1\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.1\"} 2\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "t_latency_seconds_count 3\n"));
    free(text);
}

/* A series' handle counts into the same series as the labels it was taken for. */
static void test_series_handles(void **state)
{
    static const double bounds[] = {0.01};
    struct metric *c = metrics_counter("t_handle_total", "Handles.");
    struct metric *h = metrics_histogram("t_handle_seconds", "Handle latency.", bounds, 1);
    struct metric_series *a = metric_series(c, "k=\"a\"");
    assert_non_null(a);
    assert_ptr_equal(metric_series(c, "k=\"a\""), a);
    metric_series_add(c, a, 2);
    metric_add(c, "k=\"a\"", 1);
    struct metric_series *hs = metric_series(h, "k=\"a\"");
    metric_series_observe(h, hs, 0.001);
    metric_series_observe(h, hs, 1);
    metric_series_observe(c, a, 1); /* not a histogram: ignored */
    metric_series_add(NULL, a, 1);
    size_t len;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_non_null(strstr(text, "t_handle_total{k=\"a\"} 3\n"));
    assert_non_null(strstr(text, "t_handle_seconds_bucket{k=\"a\",le=\"0.01\"} 1\n"));
    assert_non_null(strstr(text, "t_handle_seconds_count{k=\"a\"} 2\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_series_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
