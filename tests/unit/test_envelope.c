/* Unit tests of the two response envelopes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "envelope.h"

static void test_statuses(void **state)
{
    assert_int_equal(env_http_status(API_OK), 200);
    assert_int_equal(env_http_status(API_QR_SCANNED), 200);
    assert_int_equal(env_http_status(API_QR_WAITING), 200);
    assert_int_equal(env_http_status(API_BAD_MOBILE), 400);
    assert_int_equal(env_http_status(API_TOO_FREQUENT), 429);
    assert_int_equal(env_http_status(API_CODE_BURNT), 429);
    assert_int_equal(env_http_status(API_QR_GONE), 410);
    assert_int_equal(env_http_status(API_QR_CANCELLED), 410);
    assert_int_equal(env_http_status(API_UNAUTHORIZED), 401);
    assert_int_equal(env_http_status(API_FORBIDDEN), 403);
    assert_int_equal(env_http_status(API_NOT_FOUND), 404);
    assert_int_equal(env_http_status(API_TOO_LARGE), 413);
    assert_int_equal(env_http_status(API_METHOD), 405);
    assert_int_equal(env_http_status(API_UNAVAILABLE), 503);
    assert_int_equal(env_http_status((enum api_code)77), 500);
}

static void test_wildfire(void **state)
{
    char *s = env_wildfire(API_OK, NULL, json_pack("{s:i}", "userId", 5));
    assert_string_equal(s, "{\"code\":0,\"message\":\"ok\",\"result\":{\"userId\":5}}");
    free(s);
    s = env_wildfire(API_UNAUTHORIZED, NULL, NULL);
    assert_string_equal(s, "{\"code\":13,\"message\":\"not logged in\",\"result\":null}");
    free(s);
    s = env_wildfire(API_INVALID, "mobile: expected a string \"x\"", NULL);
    assert_string_equal(s, "{\"code\":2,\"message\":\"mobile: expected a string \\\"x\\\"\",\"result\":null}");
    free(s);
}

static void test_seed004(void **state)
{
    char *s = env_seed004(SEED_OK, "", json_string("tok"));
    assert_string_equal(s, "{\"code\":1,\"msg\":\"\",\"data\":\"tok\"}");
    free(s);
    s = env_seed004(SEED_NOT_LOGGED_IN, "please log in", NULL);
    assert_string_equal(s, "{\"code\":1001,\"msg\":\"please log in\"}");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_wildfire),
        cmocka_unit_test(test_seed004),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
