/* Unit tests of the webhook signature: HMAC-SHA256 as the receiver computes it (RFC 4231's vectors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "magpie.h"
#include "notify_post.h"

static void test_rfc4231_case_2(void **state)
{
    char sig[NOTIFY_SIG_MAX];
    const char *body = "what do ya want for nothing?";
    assert_int_equal(notify_sign("Jefe", body, strlen(body), sig), MP_OK);
    assert_string_equal(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_body_bytes_count_not_nul(void **state)
{
    char a[NOTIFY_SIG_MAX], b[NOTIFY_SIG_MAX];
    assert_int_equal(notify_sign("a secret of sixteen+", "[]\0x", 4, a), MP_OK);
    assert_int_equal(notify_sign("a secret of sixteen+", "[]", 2, b), MP_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), NOTIFY_SIG_MAX - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231_case_2),
        cmocka_unit_test(test_body_bytes_count_not_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
