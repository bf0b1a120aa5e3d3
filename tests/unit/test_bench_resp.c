/* Unit tests of magpie-bench's HTTP side: the opening handshake (RFC 6455 §4) and publish answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define RFC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void test_accept_of_the_rfc_example(void **state)
{
    char out[RESP_ACCEPT_LEN + 1];
    resp_accept_for(RFC_KEY, out);
    assert_string_equal(out, RFC_ACCEPT);
}

static void test_keys_are_fresh_base64_of_16_bytes(void **state)
{
    char a[RESP_KEY_LEN + 1], b[RESP_KEY_LEN + 1];
    assert_int_equal(resp_make_key(a), 0);
    assert_int_equal(resp_make_key(b), 0);
    assert_int_equal(strlen(a), RESP_KEY_LEN);
    assert_true(a[22] == '=' && a[23] == '=');
    assert_string_not_equal(a, b);
}

static void test_request_has_every_required_header(void **state)
{
    char buf[1024];
    int n = resp_upgrade_request(buf, sizeof(buf), "127.0.0.1:9001", "/ws/abc", RFC_KEY);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "GET /ws/abc HTTP/1.1\r\n"));
    assert_non_null(strstr(buf, "\r\nHost: 127.0.0.1:9001\r\n"));
    assert_non_null(strstr(buf, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(buf, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(buf, "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"));
    assert_non_null(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_int_equal(memcmp(buf + n - 4, "\r\n\r\n", 4), 0);
    assert_int_equal(resp_upgrade_request(buf, 40, "h:1", "/", RFC_KEY), -1);
}

static const char good[] = "HTTP/1.1 101 Switching Protocols\r\n"
                           "upgrade: WebSocket\r\n"
                           "Connection: keep-alive, Upgrade\r\n"
                           "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                           "\r\n";

static void test_good_answer_in_one_piece_with_frames_after_it(void **state)
{
    struct resp_upgrade r;
    char buf[512];
    size_t used = 0, hl = strlen(good);
    memcpy(buf, good, hl);
    memcpy(buf + hl, "\x81\x02hi", 4); /* the first frame came in the same read */
    resp_upgrade_init(&r, RFC_KEY);
    assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)buf, hl + 4, &used), RESP_UP_OK);
    assert_int_equal(used, hl);
}

static void test_good_answer_byte_by_byte(void **state)
{
    struct resp_upgrade r;
    size_t used = 0, n = strlen(good);
    resp_upgrade_init(&r, RFC_KEY);
    for (size_t i = 0; i + 1 < n; i++) {
        assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)good + i, 1, &used), RESP_UP_AGAIN);
        assert_int_equal(used, 1);
    }
    assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)good + n - 1, 1, &used), RESP_UP_OK);
}

/* A subprotocol offered (SPEC §4.3: v12.stomp, mqtt) must be named in the 101; none offered, none named. */
static void test_subprotocol(void **state)
{
    char buf[1024];
    int n = resp_upgrade_request_proto(buf, sizeof(buf), "h:1", "/ws", RFC_KEY, "mqtt");
    assert_true(n > 0);
    assert_non_null(strstr(buf, "\r\nSec-WebSocket-Protocol: mqtt\r\n"));
    n = resp_upgrade_request_proto(buf, sizeof(buf), "h:1", "/ws", RFC_KEY, NULL);
    assert_null(strstr(buf, "Sec-WebSocket-Protocol"));
    static const char named[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
    struct resp_upgrade r;
    size_t used;
    resp_upgrade_init(&r, RFC_KEY);
    resp_upgrade_want(&r, "mqtt");
    assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)named, strlen(named), &used), RESP_UP_OK);
    resp_upgrade_init(&r, RFC_KEY);
    resp_upgrade_want(&r, "v12.stomp"); /* another one named */
    assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)named, strlen(named), &used), RESP_UP_PROTOCOL);
    resp_upgrade_init(&r, RFC_KEY); /* none offered, one named */
    assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)named, strlen(named), &used), RESP_UP_PROTOCOL);
    resp_upgrade_init(&r, RFC_KEY); /* offered, none named: the server fell back to its default protocol */
    resp_upgrade_want(&r, "mqtt");
    assert_int_equal(resp_upgrade_feed(&r, (const uint8_t *)good, strlen(good), &used), RESP_UP_PROTOCOL);
}

static int answer(const char *text, const char *key, int *status)
{
    struct resp_upgrade r;
    size_t used;
    resp_upgrade_init(&r, key);
    int rc = resp_upgrade_feed(&r, (const uint8_t *)text, strlen(text), &used);
    if (status)
        *status = r.status;
    return rc;
}

static void test_refusals_and_bad_answers(void **state)
{
    int status = 0;
    assert_int_equal(answer("HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden", RFC_KEY, &status),
                     RESP_UP_STATUS);
    assert_int_equal(status, 403);
    assert_int_equal(answer("HTTP/1.1 404 Not Found\r\n\r\n", RFC_KEY, &status), RESP_UP_STATUS);
    assert_int_equal(status, 404);
    /* 101 with the wrong accept: the server did not read our key (or is not a WebSocket server) */
    assert_int_equal(answer(good, "AAAAAAAAAAAAAAAAAAAAAA==", NULL), RESP_UP_ACCEPT);
    /* 101 without Upgrade, or Connection without the upgrade token */
    assert_int_equal(answer("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
                            RFC_KEY, NULL),
                     RESP_UP_HEADERS);
    assert_int_equal(answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: close\r\n"
                            "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
                            RFC_KEY, NULL),
                     RESP_UP_HEADERS);
    assert_int_equal(
        answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocketx\r\nConnection: upgrade\r\n"
               "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
               RFC_KEY, NULL),
        RESP_UP_HEADERS);
    /* not HTTP at all */
    assert_int_equal(answer("\x81\x05hello", RFC_KEY, NULL), RESP_UP_PARSE);
    assert_int_equal(answer("SSH-2.0-OpenSSH\r\n", RFC_KEY, NULL), RESP_UP_PARSE);
}

static void test_overlong_header_values_do_not_overflow(void **state)
{
    char text[20000];
    char longv[4000];
    memset(longv, 'A', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    snprintf(
        text, sizeof(text),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: %s\r\nSec-WebSocket-Accept: %s\r\n"
        "X-%s: y\r\n\r\n",
        longv, longv, longv, longv);
    assert_int_equal(answer(text, RFC_KEY, NULL), RESP_UP_HEADERS);
}

static void test_publish_answers_are_counted(void **state)
{
    struct resp_stream r;
    const char *two = "HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nqueueHTTP/1.1 201 Created\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    const char *bad = "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    resp_stream_init(&r);
    /* split anywhere: the counts come out the same */
    size_t n = strlen(two);
    assert_int_equal(resp_stream_feed(&r, (const uint8_t *)two, 17), 0);
    assert_int_equal(resp_stream_feed(&r, (const uint8_t *)two + 17, n - 17), 0);
    assert_int_equal(r.responses, 2);
    assert_int_equal(r.ok, 2);
    assert_int_equal(r.last_status, 201);
    assert_false(r.closing);
    assert_int_equal(resp_stream_feed(&r, (const uint8_t *)bad, strlen(bad)), 0);
    assert_int_equal(r.responses, 3);
    assert_int_equal(r.ok, 2);
    assert_true(r.closing);

    resp_stream_init(&r);
    assert_int_equal(resp_stream_feed(&r, (const uint8_t *)"garbage\r\n\r\n", 11), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_of_the_rfc_example),
        cmocka_unit_test(test_keys_are_fresh_base64_of_16_bytes),
        cmocka_unit_test(test_request_has_every_required_header),
        cmocka_unit_test(test_good_answer_in_one_piece_with_frames_after_it),
        cmocka_unit_test(test_good_answer_byte_by_byte),
        cmocka_unit_test(test_refusals_and_bad_answers),
        cmocka_unit_test(test_subprotocol),
        cmocka_unit_test(test_overlong_header_values_do_not_overflow),
        cmocka_unit_test(test_publish_answers_are_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
