/* Unit tests of push/stompframe.c: STOMP 1.2 frames (SPEC §4.3) as stock clients send them, the limits,
 * escaping, content-length and NUL-terminated bodies, and hostile bytes. Every refusal carries its documented
 * reason; nothing may crash or leak (the sanitizer build runs these too), on random and mutated bytes
 * included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompframe.h"

static const struct stomp_limits LIM = {.max_frame = 16384, .max_header_len = 1024, .max_headers = 32};
static struct stompframe F;

/* Parse a copy of text (len bytes) with LIM; returns the result and sets *why. The copy stays alive until
 * the next call (F points into it). */
static enum stompframe_result parse(const char *text, size_t len, const char **why)
{
    static char *buf;
    free(buf);
    buf = malloc(len + 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    *why = NULL;
    return stompframe_parse(buf, len, &LIM, &F, why);
}

#define PARSE(lit, why) parse(lit, sizeof(lit) - 1, why)

static void expect_bad(const char *text, size_t len, const char *reason)
{
    const char *why;
    assert_int_equal(parse(text, len, &why), STOMPFRAME_BAD);
    assert_string_equal(why, reason);
}
#define BAD(lit, reason) expect_bad(lit, sizeof(lit) - 1, reason)

static void test_stompjs_connect(void **state)
{
    const char *why;
    (void)state;
    assert_int_equal(
        PARSE("CONNECT\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\npasscode:a:b\\c\n\n\0", &why),
        STOMPFRAME_OK);
    assert_int_equal(F.cmd, STOMP_CONNECT);
    assert_int_equal(F.nh, 3);
    assert_string_equal(stompframe_get(&F, "accept-version"), "1.2,1.1,1.0");
    /* CONNECT is not escaped (1.2 keeps it so for 1.0 clients): the value is as sent, colons included */
    assert_string_equal(stompframe_get(&F, "passcode"), "a:b\\c");
    assert_int_equal(F.body_len, 0);
}

static void test_send_with_body_and_eols(void **state)
{
    const char *why;
    (void)state;
    assert_int_equal(
        PARSE("\n\r\nSEND\r\ndestination:/user/42\r\nreceipt:r-1\r\n\r\nhello world\0\n\r\n", &why),
        STOMPFRAME_OK);
    assert_int_equal(F.cmd, STOMP_SEND);
    assert_string_equal(stompframe_get(&F, "destination"), "/user/42");
    assert_string_equal(stompframe_get(&F, "receipt"), "r-1");
    assert_int_equal(F.body_len, 11);
    assert_memory_equal(F.body, "hello world", 11);
}

static void test_content_length_body_may_hold_nul(void **state)
{
    const char *why;
    (void)state;
    assert_int_equal(PARSE("SEND\ndestination:/group/7\ncontent-length:5\n\nhe\0lo\0", &why), STOMPFRAME_OK);
    assert_int_equal(F.body_len, 5);
    assert_memory_equal(F.body, "he\0lo", 5);
    BAD("SEND\ncontent-length:9\n\nhe\0lo\0", STOMP_E_NO_NUL);
    BAD("SEND\ncontent-length:2\n\nhello\0", STOMP_E_BAD_LENGTH);
    BAD("SEND\ncontent-length:-1\n\nx\0", STOMP_E_BAD_LENGTH);
    BAD("SEND\ncontent-length:1x\n\nx\0", STOMP_E_BAD_LENGTH);
    BAD("SEND\ncontent-length:99999999999999999999\n\nx\0", STOMP_E_BAD_LENGTH);
}

static void test_escapes(void **state)
{
    const char *why;
    (void)state;
    assert_int_equal(PARSE("SEND\nk\\cey:a\\nb\\rc\\\\d\\ce\n\n\0", &why), STOMPFRAME_OK);
    assert_string_equal(F.h[0].name, "k:ey");
    assert_string_equal(F.h[0].value, "a\nb\rc\\d:e");
    assert_int_equal(F.h[0].value_len, 9);
    BAD("SEND\nk:a\\tb\n\n\0", STOMP_E_BAD_ESCAPE);
    BAD("SEND\nk:ab\\\n\n\0", STOMP_E_BAD_ESCAPE);
}

static void test_repeated_header_first_wins(void **state)
{
    const char *why;
    (void)state;
    assert_int_equal(PARSE("SEND\nfoo:1\nfoo:2\n\n\0", &why), STOMPFRAME_OK);
    assert_string_equal(stompframe_get(&F, "foo"), "1");
    assert_null(stompframe_get(&F, "bar"));
}

static void test_heartbeat_and_unknown(void **state)
{
    const char *why;
    (void)state;
    assert_int_equal(PARSE("\n", &why), STOMPFRAME_HEARTBEAT);
    assert_int_equal(PARSE("\r\n\n\r\n", &why), STOMPFRAME_HEARTBEAT);
    assert_int_equal(PARSE("FLY\nto:moon\n\n\0", &why), STOMPFRAME_OK);
    assert_int_equal(F.cmd, STOMP_UNKNOWN);
    assert_string_equal(stompframe_cmd_name(F.cmd), "UNKNOWN");
    assert_int_equal(PARSE("send\n\n\0", &why), STOMPFRAME_OK); /* commands are case-sensitive */
    assert_int_equal(F.cmd, STOMP_UNKNOWN);
}

static void test_limits(void **state)
{
    char *big = malloc(20000);
    (void)state;
    memset(big, 'x', 20000);
    expect_bad(big, 16385, STOMP_E_TOO_BIG);
    /* a header line of 1024 bytes passes, 1025 does not */
    memcpy(big, "SEND\nk:", 7);
    memset(big + 7, 'v', 1022);
    memcpy(big + 7 + 1022, "\n\n\0", 3);
    {
        const char *why;
        assert_int_equal(parse(big, 7 + 1022 + 3, &why), STOMPFRAME_OK);
    }
    memcpy(big, "SEND\nk:", 7);
    memset(big + 7, 'v', 1023);
    memcpy(big + 7 + 1023, "\n\n\0", 3);
    expect_bad(big, 7 + 1023 + 3, STOMP_E_HEADER_LONG);
    /* 32 headers pass, 33 do not */
    {
        char text[1024];
        size_t n = (size_t)sprintf(text, "SEND\n");
        const char *why;
        for (int i = 0; i < 32; i++)
            n += (size_t)sprintf(text + n, "h%d:v\n", i);
        memcpy(text + n, "\n\0", 2);
        assert_int_equal(parse(text, n + 2, &why), STOMPFRAME_OK);
        assert_int_equal(F.nh, 32);
        n += (size_t)sprintf(text + n, "h32:v\n");
        memcpy(text + n, "\n\0", 2);
        expect_bad(text, n + 2, STOMP_E_TOO_MANY_HDRS);
    }
    free(big);
}

static void test_malformed(void **state)
{
    (void)state;
    BAD("SEND\ndestination:/user/1\n\nno nul", STOMP_E_NO_NUL);
    BAD("SEND\ndestination:/user/1", STOMP_E_NO_BLANK);
    BAD("SEND\ndestination:/user/1\n", STOMP_E_NO_BLANK);
    BAD("SEND\nno colon\n\n\0", STOMP_E_BAD_HEADER);
    BAD("SEND\n:empty name\n\n\0", STOMP_E_BAD_HEADER);
    BAD("SEND\n\nx\0SEND\n\n\0", STOMP_E_TRAILING);
    BAD("SEND\n\nx\0 ", STOMP_E_TRAILING);
    BAD("SE\0ND\n\n\0", STOMP_E_NUL_IN_HEADER);
    BAD("SEND\nk:v\0w\n\n\0", STOMP_E_NUL_IN_HEADER);
    BAD("SEND\nk:\xff\xfe\n\n\0", STOMP_E_NOT_UTF8);
    BAD("SEND\nk:\xed\xa0\x80\n\n\0", STOMP_E_NOT_UTF8); /* a surrogate */
    BAD("SEND\nk:\xc0\xaf\n\n\0", STOMP_E_NOT_UTF8);     /* overlong */
    BAD("\xff\n\n\0", STOMP_E_BAD_COMMAND);
    BAD("\r\r\n\r\neNACK\n\0", STOMP_E_BAD_COMMAND); /* fuzz: a command "\r" echoed back looked like an EOL */
    BAD("SE ND\n\n\0", STOMP_E_BAD_COMMAND);
}

static void test_build_escapes_and_parses_back(void **state)
{
    const char *h[] = {"message-id", "a:b\nc\\d\re", "subscription", "0", NULL};
    const char *ch[] = {"version", "1.2", "session", "a:b", NULL};
    size_t len;
    char *out = stompframe_build("MESSAGE", h, "{\"x\":1}", 7, &len);
    const char *why;

    assert_non_null(out);
    assert_int_equal(out[len - 1], '\0');
    assert_non_null(strstr(out, "message-id:a\\cb\\nc\\\\d\\re\n"));
    assert_non_null(strstr(out, "content-length:7\n"));
    assert_int_equal(parse(out, len, &why), STOMPFRAME_OK);
    assert_string_equal(stompframe_get(&F, "message-id"), "a:b\nc\\d\re");
    assert_int_equal(F.body_len, 7);
    free(out);
    /* CONNECTED is not escaped; no body, no content-length */
    out = stompframe_build("CONNECTED", ch, NULL, 0, &len);
    assert_memory_equal(out, "CONNECTED\nversion:1.2\nsession:a:b\n\n\0", len);
    free(out);
}

/* Random and mutated frames: any answer but a crash. */
static void test_fuzz(void **state)
{
    static const char *seeds[] = {
        "CONNECT\naccept-version:1.2\npasscode:x\n\n",
        "SEND\ndestination:/user/42\ncontent-length:5\nreceipt:r\n\nhello",
        "SUBSCRIBE\nid:0\ndestination:/user/queue/messages\nack:client\n\n",
        "ACK\nid:1\\c2\n\n",
    };
    unsigned seed = 16;
    (void)state;
    for (int i = 0; i < 20000; i++) {
        char buf[256];
        const char *why;
        size_t len;
        if (i % 4 == 0) {
            len = (size_t)(rand_r(&seed) % 200);
            for (size_t k = 0; k < len; k++)
                buf[k] = "\n\r:\\\0abcSEND-content-length9"[rand_r(&seed) % 28];
        } else {
            const char *s = seeds[rand_r(&seed) % 4];
            len = strlen(s) + 1;
            memcpy(buf, s, len); /* with its NUL */
            for (int m = 0; m < 3; m++)
                buf[rand_r(&seed) % len] = (char)(rand_r(&seed) % 256);
            len = (size_t)(rand_r(&seed) % (len + 1));
        }
        if (parse(buf, len, &why) == STOMPFRAME_BAD)
            assert_non_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stompjs_connect),
        cmocka_unit_test(test_send_with_body_and_eols),
        cmocka_unit_test(test_content_length_body_may_hold_nul),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_repeated_header_first_wins),
        cmocka_unit_test(test_heartbeat_and_unknown),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_build_escapes_and_parses_back),
        cmocka_unit_test(test_fuzz),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    parse("", 0, &(const char *){NULL}); /* frees the last copy */
    return rc;
}
