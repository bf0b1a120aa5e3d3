/* Unit tests of stream ids: parsing what Redis returns, ordering, and "the id after" (the trim floor). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "magpie.h"
#include "persist_sid.h"

static struct persist_sid sid(const char *s)
{
    struct persist_sid v = {0, 0};
    if (persist_sid_parse(&v, s, strlen(s)) != MP_OK)
        fail_msg("'%s' did not parse", s);
    return v;
}

static void test_parse_and_format(void **state)
{
    static const char *good[] = {"0-0", "1-0", "1790000000000-12",
                                 "18446744073709551615-18446744073709551615"};
    char buf[PERSIST_SID_MAX];
    for (size_t i = 0; i < MP_ARRAY_LEN(good); i++) {
        struct persist_sid v = sid(good[i]);
        persist_sid_format(&v, buf, sizeof(buf));
        assert_string_equal(buf, good[i]);
    }
    assert_true(sid("18446744073709551615-7").ms == UINT64_MAX);
}

static void test_parse_refuses_garbage(void **state)
{
    static const char *bad[] = {"",
                                "-",
                                "1",
                                "1-",
                                "-1",
                                "1-2-3",
                                "a-1",
                                "1-a",
                                " 1-1",
                                "1-1 ",
                                "1--1",
                                "+1-1",
                                "1-+1",
                                "18446744073709551616-0",
                                "0-18446744073709551616"};
    for (size_t i = 0; i < MP_ARRAY_LEN(bad); i++) {
        struct persist_sid v = {7, 7};
        if (persist_sid_parse(&v, bad[i], strlen(bad[i])) != MP_EINVAL)
            fail_msg("'%s' parsed", bad[i]);
        assert_true(v.ms == 7 && v.seq == 7); /* untouched */
    }
    struct persist_sid v;
    assert_int_equal(persist_sid_parse(&v, "1-2", 2), MP_EINVAL); /* only len bytes are read */
    assert_int_equal(persist_sid_parse(&v, "1-2\0", 4), MP_EINVAL);
    assert_int_equal(persist_sid_parse(&v, NULL, 0), MP_EINVAL);
}

static void test_order(void **state)
{
    struct persist_sid a = sid("5-9"), b = sid("6-0"), c = sid("6-1");
    assert_true(persist_sid_cmp(&a, &b) < 0);
    assert_true(persist_sid_cmp(&b, &c) < 0);
    assert_true(persist_sid_cmp(&c, &a) > 0);
    assert_int_equal(persist_sid_cmp(&b, &b), 0);
    struct persist_sid big = sid("1-18446744073709551615"), small = sid("2-0");
    assert_true(persist_sid_cmp(&big, &small) < 0);
}

static void test_next(void **state)
{
    char buf[PERSIST_SID_MAX];
    struct persist_sid v = sid("5-9");
    persist_sid_next(&v);
    persist_sid_format(&v, buf, sizeof(buf));
    assert_string_equal(buf, "5-10");
    v = sid("5-18446744073709551615");
    persist_sid_next(&v);
    persist_sid_format(&v, buf, sizeof(buf));
    assert_string_equal(buf, "6-0");
    v = sid("18446744073709551615-18446744073709551615");
    persist_sid_next(&v);
    persist_sid_format(&v, buf, sizeof(buf));
    assert_string_equal(buf, "18446744073709551615-18446744073709551615");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_format),
        cmocka_unit_test(test_parse_refuses_garbage),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
