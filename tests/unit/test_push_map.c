/* Unit tests of push/map.c: the u64 -> pointer hash map behind the per-user connection index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "magpie.h"
#include "map.h"

static void test_empty(void **state)
{
    struct map m;
    map_init(&m);
    assert_null(map_get(&m, 1));
    assert_null(map_del(&m, 1));
    size_t pos = 0;
    assert_int_equal(map_next(&m, &pos, NULL, NULL), 0);
    map_free(&m);
}

static void test_put_get_replace(void **state)
{
    struct map m;
    int a, b;
    map_init(&m);
    assert_int_equal(map_put(&m, 7, &a), MP_OK);
    assert_ptr_equal(map_get(&m, 7), &a);
    assert_int_equal(map_put(&m, 7, &b), MP_OK);
    assert_ptr_equal(map_get(&m, 7), &b);
    assert_int_equal(m.len, 1);
    assert_int_equal(map_put(&m, 8, NULL), MP_EINVAL);
    assert_ptr_equal(map_del(&m, 7), &b);
    assert_null(map_get(&m, 7));
    assert_int_equal(m.len, 0);
    map_free(&m);
}

/* Many keys, deleted in an order that exercises backward shifts across wrapped probe runs; the map must
 * agree with a plain array at every step. */
static void test_churn_against_reference(void **state)
{
    enum { N = 20000 };
    static char present[N];
    struct map m;
    uint64_t seed = 42;
    map_init(&m);
    for (int round = 0; round < 200000; round++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t k = (seed >> 33) % N;
        if (present[k]) {
            assert_ptr_equal(map_del(&m, k + 1), &present[k]);
            present[k] = 0;
        } else {
            assert_int_equal(map_put(&m, k + 1, &present[k]), MP_OK);
            present[k] = 1;
        }
    }
    size_t count = 0;
    for (uint64_t k = 0; k < N; k++) {
        if (present[k]) {
            assert_ptr_equal(map_get(&m, k + 1), &present[k]);
            count++;
        } else {
            assert_null(map_get(&m, k + 1));
        }
    }
    assert_int_equal(m.len, count);
    size_t pos = 0, seen = 0;
    uint64_t key;
    void *value;
    while (map_next(&m, &pos, &key, &value)) {
        assert_ptr_equal(value, &present[key - 1]);
        seen++;
    }
    assert_int_equal(seen, count);
    map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_put_get_replace),
        cmocka_unit_test(test_churn_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
