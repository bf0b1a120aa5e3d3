/* Unit tests of magpie-http's pure parts: cookie parsing, UTF-8 cleaning of header values, token
 * redaction of library log text, mobile number rules and masking. The endpoints themselves are tested
 * end to end against real servers (tests/integration/test_http_*.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "call.h"
#include "http.h"
#include "users.h"

static void cookie_found_among_others(void **state)
{
    char v[64];
    (void)state;
    assert_int_equal(cookie_get("a=1; mp_pc=abc; b=2", "mp_pc", v, sizeof(v)), 0);
    assert_string_equal(v, "abc");
    assert_int_equal(cookie_get("mp_pc=xyz", "mp_pc", v, sizeof(v)), 0);
    assert_string_equal(v, "xyz");
    assert_int_equal(cookie_get("  mp_pc=q  ;", "mp_pc", v, sizeof(v)), 0);
    assert_string_equal(v, "q");
}

static void cookie_prefix_names_do_not_match(void **state)
{
    char v[64];
    (void)state;
    assert_int_equal(cookie_get("xmp_pc=1; mp_pcx=2", "mp_pc", v, sizeof(v)), -1);
    assert_int_equal(cookie_get(NULL, "mp_pc", v, sizeof(v)), -1);
    assert_int_equal(cookie_get("", "mp_pc", v, sizeof(v)), -1);
    assert_int_equal(cookie_get("mp_pc", "mp_pc", v, sizeof(v)), -1);
}

static void cookie_too_long_is_refused(void **state)
{
    char v[4];
    (void)state;
    assert_int_equal(cookie_get("mp_pc=abcdef", "mp_pc", v, sizeof(v)), -1);
}

static void utf8_clean_keeps_text_and_replaces_garbage(void **state)
{
    char out[64];
    (void)state;
    utf8_clean(out, sizeof(out), "Mozilla/5.0 \xe4\xb8\xad");
    assert_string_equal(out, "Mozilla/5.0 \xe4\xb8\xad");
    utf8_clean(out, sizeof(out),
               "a\xff"
               "b\xc0\xaf"
               "c\n");
    assert_string_equal(out, "a?b??c?");
    utf8_clean(out, sizeof(out), "\xed\xa0\x80"); /* a UTF-16 surrogate is not UTF-8 */
    assert_string_equal(out, "???");
    utf8_clean(out, 4, "ab\xe4\xb8\xad"); /* never cuts a character in half */
    assert_string_equal(out, "ab");
    utf8_clean(out, sizeof(out), NULL);
    assert_string_equal(out, "");
}

static void hex_tokens(void **state)
{
    (void)state;
    assert_true(is_hex_token("0123456789abcdef0123456789abcdef"));
    assert_false(is_hex_token("0123456789ABCDEF0123456789abcdef"));
    assert_false(is_hex_token("0123456789abcdef0123456789abcde"));
    assert_false(is_hex_token("0123456789abcdef0123456789abcdef0"));
    assert_false(is_hex_token("../../../../../../../../etc/passw"));
}

static void redaction_cuts_tokens(void **state)
{
    char s[256];
    (void)state;
    strcpy(s, "Failed to send data in request for `/session_login/0123456789abcdef0123456789abcdef'.");
    http_redact(s);
    assert_string_equal(s, "Failed to send data in request for `/session_login/-'.");
    strcpy(s, "x /scan_pc/abc y /pc_session/def/qr.svg z");
    http_redact(s);
    assert_string_equal(s, "x /scan_pc/- y /pc_session/-/qr.svg z");
    strcpy(s, "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.sig-_x end");
    http_redact(s);
    assert_string_equal(s, "Authorization: Bearer - end");
    strcpy(s, "GET /ws?token=eyJabc HTTP/1.1");
    http_redact(s);
    assert_string_equal(s, "GET /ws?token=- HTTP/1.1");
}

static void mobile_rules(void **state)
{
    (void)state;
    assert_true(mobile_valid("13800138000"));
    assert_true(mobile_valid("+8613800138000"));
    assert_false(mobile_valid(""));
    assert_false(mobile_valid("1234"));
    assert_false(mobile_valid("1234567890123456"));
    assert_false(mobile_valid("138-0013-8000"));
    assert_false(mobile_valid("13800138000'"));
    assert_false(mobile_valid("++13800138000"));
    assert_false(
        mobile_valid("\xef\xbc\x91\xef\xbc\x93\xef\xbc\x98\xef\xbc\x90\xef\xbc\x90")); /* fullwidth digits */
}

static void mobile_masking_keeps_last_four(void **state)
{
    char out[32];
    (void)state;
    mobile_mask("13800138000", out, sizeof(out));
    assert_string_equal(out, "*******8000");
    mobile_mask("+8613800138000", out, sizeof(out));
    assert_string_equal(out, "+*********8000");
    mobile_mask("123", out, sizeof(out));
    assert_string_equal(out, "123");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cookie_found_among_others),
        cmocka_unit_test(cookie_prefix_names_do_not_match),
        cmocka_unit_test(cookie_too_long_is_refused),
        cmocka_unit_test(utf8_clean_keeps_text_and_replaces_garbage),
        cmocka_unit_test(hex_tokens),
        cmocka_unit_test(redaction_cuts_tokens),
        cmocka_unit_test(mobile_rules),
        cmocka_unit_test(mobile_masking_keeps_last_four),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
