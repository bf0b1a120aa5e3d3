/* Unit tests of message ids: layout, strict monotonicity whatever the clock does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "id.h"
#include "magpie.h"

#define T0 1800000000000LL /* some ms after ID_EPOCH_MS */

static void test_layout(void **state)
{
    struct id_gen g;
    assert_int_equal(id_init(&g, 5), MP_OK);
    int64_t id = id_next_at(&g, T0);
    assert_true(id > 0);
    assert_int_equal(id_time_ms(id), T0);
    assert_int_equal(id_node(id), 5);
    assert_int_equal(id_seq(id), 0);
    id = id_next_at(&g, T0);
    assert_int_equal(id_seq(id), 1);
}

static void test_bad_node(void **state)
{
    struct id_gen g;
    assert_int_equal(id_init(&g, -1), MP_EINVAL);
    assert_int_equal(id_init(&g, ID_MAX_NODE + 1), MP_EINVAL);
    assert_int_equal(id_init(&g, ID_MAX_NODE), MP_OK);
    assert_int_equal(id_node(id_next_at(&g, T0)), ID_MAX_NODE);
}

static void test_monotonic_when_clock_steps_back(void **state)
{
    struct id_gen g;
    id_init(&g, 1);
    int64_t a = id_next_at(&g, T0);
    int64_t b = id_next_at(&g, T0 - 5000);
    int64_t c = id_next_at(&g, T0 - 4000);
    assert_true(b > a);
    assert_true(c > b);
    int64_t d = id_next_at(&g, T0 + 1);
    assert_true(d > c);
}

static void test_sequence_overflow_borrows_next_ms(void **state)
{
    struct id_gen g;
    int64_t prev = 0, id = 0;
    id_init(&g, 3);
    for (int i = 0; i < (1 << ID_SEQ_BITS) + 10; i++) {
        id = id_next_at(&g, T0);
        assert_true(id > prev);
        prev = id;
    }
    assert_int_equal(id_time_ms(id), T0 + 1);
    assert_int_equal(id_seq(id), 9);
    /* When the clock reaches the borrowed millisecond the ids still increase. */
    assert_true(id_next_at(&g, T0 + 1) > id);
}

static void test_nodes_never_collide(void **state)
{
    struct id_gen g1, g2;
    id_init(&g1, 1);
    id_init(&g2, 2);
    for (int i = 0; i < 1000; i++)
        assert_int_not_equal(id_next_at(&g1, T0 + i / 10), id_next_at(&g2, T0 + i / 10));
}

static void test_real_clock(void **state)
{
    struct id_gen g;
    id_init(&g, 0);
    int64_t before = mp_now_ms();
    int64_t id = id_next(&g);
    assert_true(id_time_ms(id) >= before);
    assert_true(id_time_ms(id) <= mp_now_ms());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_bad_node),
        cmocka_unit_test(test_monotonic_when_clock_steps_back),
        cmocka_unit_test(test_sequence_overflow_borrows_next_ms),
        cmocka_unit_test(test_nodes_never_collide),
        cmocka_unit_test(test_real_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
