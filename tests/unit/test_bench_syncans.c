/* Unit tests of the Y answer check magpie-bench's syncers apply (bench/syncans.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "syncans.h"

/* The msg of a Y answer with the seqs first..last (none when last < first). */
static json_t *answer(long long first, long long last, int more, long long max)
{
    json_t *msgs = json_array();
    for (long long s = first; s <= last; s++)
        json_array_append_new(msgs,
                              json_pack("{s:s,s:I,s:s}", "type", "t", "seq", (json_int_t)s, "msg", "x"));
    return json_pack("{s:o,s:b,s:I}", "messages", msgs, "more", more, "max", (json_int_t)max);
}

static int check(json_t *msg, long long after, int limit, struct sync_result *r, char *why)
{
    int rc = sync_answer_check(msg, after, limit, r, why, 160);
    json_decref(msg);
    return rc;
}

static void test_right_answers(void **state)
{
    struct sync_result r;
    char why[160];
    /* 100 back from the end: all 100, nothing more */
    assert_int_equal(check(answer(901, 1000, 0, 1000), 900, 100, &r, why), 0);
    assert_int_equal(r.n, 100);
    assert_int_equal(r.first, 901);
    assert_int_equal(r.max, 1000);
    assert_false(r.short_cap);
    /* more arrived meanwhile: 100 of them and more */
    assert_int_equal(check(answer(901, 1000, 1, 1005), 900, 100, &r, why), 0);
    /* fewer than the limit are left */
    assert_int_equal(check(answer(4, 10, 0, 10), 3, 100, &r, why), 0);
    assert_int_equal(r.n, 7);
    /* beyond the end, and at the end */
    assert_int_equal(check(answer(1, 0, 0, 10), 50, 100, &r, why), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(check(answer(1, 0, 0, 10), 10, 100, &r, why), 0);
    /* cut short by the server's byte cap, saying more */
    assert_int_equal(check(answer(1, 40, 1, 1000), 0, 100, &r, why), 0);
    assert_true(r.short_cap);
}

static void test_wrong_answers(void **state)
{
    struct sync_result r;
    char why[160];
    json_t *m;
    /* a gap */
    m = answer(901, 1000, 0, 1000);
    json_array_remove(json_object_get(m, "messages"), 50);
    assert_int_equal(check(m, 900, 100, &r, why), -1);
    assert_non_null(strstr(why, "gap"));
    /* a duplicate */
    m = answer(901, 999, 0, 1000);
    json_array_insert_new(json_object_get(m, "messages"), 5, json_pack("{s:I}", "seq", (json_int_t)905));
    assert_int_equal(check(m, 900, 100, &r, why), -1);
    /* not starting right after `after` */
    assert_int_equal(check(answer(902, 1000, 0, 1000), 900, 100, &r, why), -1);
    /* short without more */
    assert_int_equal(check(answer(901, 950, 0, 1000), 900, 100, &r, why), -1);
    /* more that is a lie */
    assert_int_equal(check(answer(901, 1000, 1, 1000), 900, 100, &r, why), -1);
    /* over the limit */
    assert_int_equal(check(answer(901, 1000, 1, 2000), 900, 50, &r, why), -1);
    /* past max */
    assert_int_equal(check(answer(901, 1000, 0, 990), 900, 100, &r, why), -1);
    /* nothing though there is something */
    assert_int_equal(check(answer(1, 0, 1, 1000), 900, 100, &r, why), -1);
    /* malformed */
    assert_int_equal(check(json_pack("{s:b,s:I}", "more", 0, "max", (json_int_t)3), 0, 100, &r, why), -1);
    assert_int_equal(check(json_string("x"), 0, 100, &r, why), -1);
    m = answer(1, 2, 0, 2);
    json_object_del(json_array_get(json_object_get(m, "messages"), 1), "seq");
    assert_int_equal(check(m, 0, 100, &r, why), -1);
    assert_non_null(strstr(why, "no seq"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_right_answers),
        cmocka_unit_test(test_wrong_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
