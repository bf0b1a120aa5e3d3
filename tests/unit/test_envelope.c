/* Unit tests of the two response envelopes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

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

/* The envelope is written around the result's serialisation (envelope.c): the same bytes as the object
 * json_pack + json_dumps(JSON_COMPACT) would give, for every code of the table, a handler's message that
 * needs escaping, results of every JSON type, and a message that is not UTF-8 (refused: NULL). */
static char *packed(enum api_code code, const char *message, json_t *result)
{
    json_t *obj = json_pack("{s:i, s:s, s:O}", "code", (int)code, "message", message ? message : env_message(code),
                            "result", result ? result : json_null());
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return s;
}

static void same(enum api_code code, const char *message, json_t *result)
{
    char *want = packed(code, message, result);
    char *got = env_wildfire(code, message, result); /* steals result */
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

static void test_wildfire_same_bytes(void **state)
{
    static const enum api_code codes[] = {API_OK, API_BAD_MOBILE, API_INVALID, API_TOO_FREQUENT, API_CODE_BURNT,
                                          API_NO_CODE, API_WRONG_CODE, API_QR_GONE, API_QR_SCANNED, API_QR_WAITING,
                                          API_UNAUTHORIZED, API_FORBIDDEN, API_NOT_FOUND, API_TOO_LARGE, API_METHOD,
                                          API_QR_CANCELLED, API_UNAVAILABLE, (enum api_code)77};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *m = env_message(codes[i]);
        assert_null(strpbrk(m, "\"\\"));
        for (const char *c = m; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
        same(codes[i], NULL, NULL);
        same(codes[i], NULL, json_pack("{s:s, s:I, s:[i, n, b]}", "token", "a.b.c", "userId", (json_int_t)1 << 40,
                                       "x", 1, 1));
    }
    same(API_INVALID, "tab\there \"quoted\" back\\slash \x01 \xc3\xa9 \xe4\xbd\xa0", json_string("s"));
    same(API_OK, "", json_integer(-3));
    same(API_OK, NULL, json_real(0.5));
    same(API_OK, NULL, json_true());
    same(API_OK, NULL, json_array());
    same(API_OK, NULL, json_object());
    assert_null(env_wildfire(API_INVALID, "\xff\xfe not utf-8", json_string("leak check: stolen on failure")));
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
        cmocka_unit_test(test_wildfire_same_bytes),
        cmocka_unit_test(test_seed004),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
