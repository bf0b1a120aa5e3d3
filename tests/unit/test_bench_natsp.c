/* Unit tests of magpie-bench's NATS protocol reader: every server operation, split anywhere, and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "natsp.h"

struct seen {
    int ops[32];
    int n;
    char payload[32][64];
    size_t plen[32];
    char subject[32][32];
    uint64_t sid[32];
    int stop_at;
};

static int collect(void *arg, const struct natsp_event *ev)
{
    struct seen *s = arg;
    if (s->n < 32) {
        s->ops[s->n] = ev->op;
        if (ev->op == NATSP_MSG) {
            s->plen[s->n] = ev->payload_len;
            memcpy(s->payload[s->n], ev->payload, ev->payload_len < 63 ? ev->payload_len : 63);
            memcpy(s->subject[s->n], ev->subject, ev->subject_len < 31 ? ev->subject_len : 31);
            s->sid[s->n] = ev->sid;
        }
    }
    s->n++;
    return s->stop_at && s->n >= s->stop_at;
}

static const char stream[] = "INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n"
                             "+OK\r\n"
                             "PING\r\n"
                             "MSG room.a 1 5\r\nhello\r\n"
                             "MSG room.a 1 _INBOX.x 7\r\nab\r\ncd!\r\n" /* a CRLF inside the payload */
                             "msg room.b 22 0\r\n\r\n"                  /* lower case, empty payload */
                             "PONG\r\n"
                             "-ERR 'Unknown Protocol Operation'\r\n";

static void check_stream(const struct seen *s)
{
    assert_int_equal(s->n, 8);
    assert_int_equal(s->ops[0], NATSP_INFO);
    assert_int_equal(s->ops[1], NATSP_OK);
    assert_int_equal(s->ops[2], NATSP_PING);
    assert_int_equal(s->ops[3], NATSP_MSG);
    assert_int_equal(s->plen[3], 5);
    assert_memory_equal(s->payload[3], "hello", 5);
    assert_string_equal(s->subject[3], "room.a");
    assert_int_equal(s->sid[3], 1);
    assert_int_equal(s->ops[4], NATSP_MSG);
    assert_int_equal(s->plen[4], 7);
    assert_memory_equal(s->payload[4], "ab\r\ncd!", 7);
    assert_int_equal(s->ops[5], NATSP_MSG);
    assert_int_equal(s->plen[5], 0);
    assert_int_equal(s->sid[5], 22);
    assert_int_equal(s->ops[6], NATSP_PONG);
    assert_int_equal(s->ops[7], NATSP_ERR);
}

static void test_whole_stream(void **state)
{
    struct natsp p;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    natsp_init(&p, 1 << 20);
    assert_int_equal(natsp_feed(&p, (const uint8_t *)stream, strlen(stream), collect, &s), 0);
    check_stream(&s);
    assert_int_equal(p.len, 0);
    natsp_free(&p);
}

static void test_split_at_every_position(void **state)
{
    size_t n = strlen(stream);
    for (size_t cut = 1; cut < n; cut++) {
        struct natsp p;
        static struct seen s;
        memset(&s, 0, sizeof(s));
        natsp_init(&p, 1 << 20);
        assert_int_equal(natsp_feed(&p, (const uint8_t *)stream, cut, collect, &s), 0);
        assert_int_equal(natsp_feed(&p, (const uint8_t *)stream + cut, n - cut, collect, &s), 0);
        check_stream(&s);
        natsp_free(&p);
    }
}

static void test_byte_by_byte(void **state)
{
    struct natsp p;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    natsp_init(&p, 1 << 20);
    for (size_t i = 0; i < strlen(stream); i++)
        assert_int_equal(natsp_feed(&p, (const uint8_t *)stream + i, 1, collect, &s), 0);
    check_stream(&s);
    natsp_free(&p);
}

static int bad(const char *text, size_t max_payload)
{
    struct natsp p;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    natsp_init(&p, max_payload);
    int rc = natsp_feed(&p, (const uint8_t *)text, strlen(text), collect, &s);
    natsp_free(&p);
    return rc;
}

static void test_malformed_operations_are_errors(void **state)
{
    assert_int_equal(bad("HELLO\r\n", 100), -1);                  /* unknown operation */
    assert_int_equal(bad("PING\n", 100), -1);                     /* LF without CR */
    assert_int_equal(bad("MSG a 1\r\n", 100), -1);                /* no byte count */
    assert_int_equal(bad("MSG a 1 x\r\n", 100), -1);              /* count not a number */
    assert_int_equal(bad("MSG a 1 -5\r\n", 100), -1);             /* negative */
    assert_int_equal(bad("MSG a x 5\r\nhello\r\n", 100), -1);     /* sid not a number */
    assert_int_equal(bad("MSG a 1 b c 5\r\nhello\r\n", 100), -1); /* too many fields */
    assert_int_equal(bad("MSG a 1 101\r\n", 100), -1);            /* over max_payload: refused up front */
    assert_int_equal(bad("MSG a 1 99999999999999999999\r\n", 1 << 20), -1); /* overflow */
    assert_int_equal(bad("MSG a 1 5\r\nhelloXY", 100), -1);                 /* payload not followed by CRLF */
    assert_int_equal(bad("PINGPONG\r\n", 100), -1);
    assert_int_equal(bad("\r\n", 100), -1); /* empty line */
}

static void test_overlong_line_is_an_error(void **state)
{
    char *line = malloc(NATSP_MAX_LINE + 10);
    assert_non_null(line);
    memcpy(line, "INFO ", 5);
    memset(line + 5, 'x', NATSP_MAX_LINE);
    line[NATSP_MAX_LINE + 5] = '\0';
    assert_int_equal(bad(line, 100), -1);
    /* the same, fed in pieces: refused once the limit is passed, not buffered forever */
    struct natsp p;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    natsp_init(&p, 100);
    int rc = 0;
    for (size_t off = 0; off < NATSP_MAX_LINE + 5 && rc == 0; off += 1000) {
        size_t n = NATSP_MAX_LINE + 5 - off < 1000 ? NATSP_MAX_LINE + 5 - off : 1000;
        rc = natsp_feed(&p, (const uint8_t *)line + off, n, collect, &s);
    }
    assert_int_equal(rc, -1);
    natsp_free(&p);
    free(line);
}

static void test_stop_from_the_callback(void **state)
{
    struct natsp p;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    natsp_init(&p, 100);
    assert_int_equal(natsp_feed(&p, (const uint8_t *)"PING\r\nPING\r\nPING\r\n", 18, collect, &s), 1);
    assert_int_equal(s.n, 2);
    natsp_free(&p);
}

static void test_random_garbage_never_crashes(void **state)
{
    static uint8_t buf[2048];
    static struct seen s;
    const char *seeds[] = {"MSG ", "PING\r\n", "INFO ", "-ERR ", "\r\n", " 5\r\n", "PONG\r\n"};
    srand(3);
    for (int round = 0; round < 20000; round++) {
        size_t n = 0;
        while (n < sizeof(buf) - 16 && rand() % 8) {
            if (rand() % 2) {
                const char *p = seeds[rand() % 7];
                memcpy(buf + n, p, strlen(p));
                n += strlen(p);
            } else {
                buf[n++] = (uint8_t)rand();
            }
        }
        struct natsp p;
        memset(&s, 0, sizeof(s));
        natsp_init(&p, 64);
        size_t cut = n ? (size_t)rand() % n : 0;
        if (natsp_feed(&p, buf, cut, collect, &s) == 0)
            natsp_feed(&p, buf + cut, n - cut, collect, &s);
        natsp_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_split_at_every_position),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_malformed_operations_are_errors),
        cmocka_unit_test(test_overlong_line_is_an_error),
        cmocka_unit_test(test_stop_from_the_callback),
        cmocka_unit_test(test_random_garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
