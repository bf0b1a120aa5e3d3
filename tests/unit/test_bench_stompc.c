/* Unit tests of magpie-bench's STOMP 1.2 client frames: what servers send (with escapes, content-length,
 * heart-beats), every violation a client must catch, what the builder writes, and random garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "stompc.h"

/* Parse s as a message holding exactly one frame. */
static int parse(const char *s, size_t n, struct stompc_frame *f)
{
    size_t used = 0;
    int rc = stompc_parse(s, n, f, &used);
    if (rc == 0)
        assert_int_equal(used, n);
    return rc;
}

#define PARSE(lit, f) parse(lit, sizeof(lit) - 1, f)

static void test_server_frames(void **state)
{
    struct stompc_frame f;
    char v[64];
    assert_int_equal(PARSE("CONNECTED\nversion:1.2\nheart-beat:0,0\nsession:a\\c\n\n\0", &f), 0);
    assert_int_equal(f.cmd, STOMPC_CONNECTED);
    assert_int_equal(stompc_value(&f, "session", v, sizeof(v)), 3); /* CONNECTED is not unescaped */
    assert_string_equal(v, "a\\c");

    assert_int_equal(PARSE("\r\n\nRECEIPT\r\nreceipt-id:ab-1\r\n\r\n\0\n\n", &f), 0);
    assert_int_equal(f.cmd, STOMPC_RECEIPT);
    assert_int_equal(stompc_value(&f, "receipt-id", v, sizeof(v)), 4);
    assert_string_equal(v, "ab-1");

    assert_int_equal(PARSE("MESSAGE\nsubscription:0\ndest:a\\cb\\\\c\\nd\nseq:1\nseq:2\n\n{\"x\":1}\0", &f),
                     0);
    assert_int_equal(f.cmd, STOMPC_MESSAGE);
    assert_int_equal(stompc_value(&f, "dest", v, sizeof(v)), 7);
    assert_string_equal(v, "a:b\\c\nd");
    assert_int_equal(stompc_value(&f, "seq", v, sizeof(v)), 1); /* the first of a repeated header */
    assert_string_equal(v, "1");
    assert_int_equal(f.body_len, 7);
    assert_memory_equal(f.body, "{\"x\":1}", 7);
    assert_int_equal(stompc_value(&f, "nope", v, sizeof(v)), -1);
    assert_int_equal(stompc_value(&f, "dest", v, 4), -1); /* does not fit */

    /* content-length: a body with a NUL inside */
    assert_int_equal(PARSE("ERROR\nmessage:no\ncontent-length:3\n\na\0b\0", &f), 0);
    assert_int_equal(f.cmd, STOMPC_ERROR);
    assert_int_equal(f.body_len, 3);

    assert_int_equal(PARSE("\n", &f), 0);
    assert_int_equal(f.cmd, STOMPC_HEARTBEAT);
    assert_int_equal(PARSE("\r\n\n", &f), 0);
    assert_int_equal(f.cmd, STOMPC_HEARTBEAT);
}

static void test_violations_are_errors(void **state)
{
    struct stompc_frame f;
    assert_int_equal(PARSE("SEND\ndestination:a\n\n\0", &f), STOMPC_E_COMMAND); /* a client command */
    assert_int_equal(PARSE("message\n\n\0", &f), STOMPC_E_COMMAND);
    assert_int_equal(PARSE("MESSAGE", &f), STOMPC_E_COMMAND);
    assert_int_equal(PARSE("MESSAGE\nnocolon\n\n\0", &f), STOMPC_E_HEADER);
    assert_int_equal(PARSE("MESSAGE\n:empty\n\n\0", &f), STOMPC_E_HEADER);
    assert_int_equal(PARSE("MESSAGE\na:b\n", &f), STOMPC_E_HEADER); /* no blank line */
    assert_int_equal(PARSE("MESSAGE\na:b\\t\n\n\0", &f), STOMPC_E_ESCAPE);
    assert_int_equal(PARSE("MESSAGE\na:b\\\n\n\0", &f), STOMPC_E_ESCAPE);
    assert_int_equal(PARSE("MESSAGE\na:b\rc\n\n\0", &f), STOMPC_E_ESCAPE);
    assert_int_equal(PARSE("MESSAGE\n\nbody", &f), STOMPC_E_BODY);                      /* no NUL */
    assert_int_equal(PARSE("MESSAGE\ncontent-length:5\n\nbody\0", &f), STOMPC_E_BODY);  /* too long */
    assert_int_equal(PARSE("MESSAGE\ncontent-length:2\n\nbody\0", &f), STOMPC_E_BODY);  /* no NUL there */
    assert_int_equal(PARSE("MESSAGE\ncontent-length:-1\n\nbody\0", &f), STOMPC_E_BODY); /* not a number */
    assert_int_equal(PARSE("MESSAGE\ncontent-length:\n\nbody\0", &f), STOMPC_E_BODY);
    char many[2048] = "MESSAGE\n";
    for (int i = 0; i <= STOMPC_MAX_HEADERS; i++)
        strcat(many, "a:b\n");
    strcat(many, "\n");
    assert_int_equal(parse(many, strlen(many) + 1, &f), STOMPC_E_HEADER);
}

/* Several frames in one message (a room batch): each parsed in turn, the EOLs between them skipped. */
static void test_frames_in_one_message(void **state)
{
    static const char batch[] = "MESSAGE\nmessage-id:b.0\ncontent-length:2\n\nab\0\n"
                                "MESSAGE\nmessage-id:b.1\n\ncd\0"
                                "MESSAGE\nmessage-id:b.2\ncontent-length:1\n\n\0\0\r\n\n";
    struct stompc_frame f;
    char v[16];
    size_t off = 0, used;
    const char *want[] = {"ab", "cd", ""};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(stompc_parse(batch + off, sizeof(batch) - 1 - off, &f, &used), 0);
        assert_int_equal(f.cmd, STOMPC_MESSAGE);
        assert_int_equal(f.body_len, i == 2 ? 1 : 2);
        assert_memory_equal(f.body, i == 2 ? "\0" : want[i], f.body_len);
        stompc_value(&f, "message-id", v, sizeof(v));
        assert_int_equal(v[2], '0' + i);
        off += used;
    }
    assert_int_equal(off, sizeof(batch) - 1);
    /* something that is not a frame after the first: the first parses, the rest is an error */
    static const char tail[] = "RECEIPT\nreceipt-id:1\n\n\0x";
    assert_int_equal(stompc_parse(tail, sizeof(tail) - 1, &f, &used), 0);
    assert_int_equal(used, sizeof(tail) - 2);
    assert_int_equal(stompc_parse(tail + used, 1, &f, &used), STOMPC_E_COMMAND);
}

static void test_build(void **state)
{
    char out[256];
    const char *h[] = {"destination", "/user/7", "receipt", "a:b\n", NULL};
    size_t n = stompc_build(out, sizeof(out), "SEND", h, "hi", 2);
    const char want[] = "SEND\ndestination:/user/7\nreceipt:a\\cb\\n\ncontent-length:2\n\nhi";
    assert_int_equal(n, sizeof(want)); /* with the NUL */
    assert_memory_equal(out, want, sizeof(want));
    const char *c[] = {"passcode", "x:y", NULL};
    n = stompc_build(out, sizeof(out), "CONNECT", c, NULL, 0);
    assert_int_equal(n, sizeof("CONNECT\npasscode:x:y\n\n")); /* CONNECT is not escaped */
    assert_int_equal(out[n - 1], '\0');
    assert_int_equal(stompc_build(out, 10, "SEND", h, "hi", 2), 0);
    /* what the builder writes, a server's parser of the same grammar reads (a RECEIPT built the same way) */
    const char *r[] = {"receipt-id", "a:b", NULL};
    struct stompc_frame f;
    char v[16];
    n = stompc_build(out, sizeof(out), "RECEIPT", r, NULL, 0);
    assert_int_equal(parse(out, n, &f), 0);
    assert_int_equal(stompc_value(&f, "receipt-id", v, sizeof(v)), 3);
    assert_string_equal(v, "a:b");
}

static void test_random_garbage_never_crashes(void **state)
{
    static char buf[512];
    const char *seeds[] = {"MESSAGE\n", "RECEIPT\n", "a:b\n", "\n", "\\", "content-length:3\n", "\0", "\r\n"};
    struct stompc_frame f;
    char v[32];
    srand(7);
    for (int round = 0; round < 50000; round++) {
        size_t n = 0;
        while (n < sizeof(buf) - 32 && rand() % 10) {
            if (rand() % 2) {
                int k = rand() % 8;
                size_t l = k == 6 ? 1 : strlen(seeds[k]);
                memcpy(buf + n, seeds[k], l);
                n += l;
            } else {
                buf[n++] = (char)rand();
            }
        }
        size_t off = 0, used = 0;
        while (off < n && stompc_parse(buf + off, n - off, &f, &used) == 0) {
            stompc_value(&f, "content-length", v, sizeof(v));
            stompc_value(&f, "a", v, sizeof(v));
            assert_true(used > 0 && used <= n - off);
            off += used;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_frames),
        cmocka_unit_test(test_violations_are_errors),
        cmocka_unit_test(test_frames_in_one_message),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_random_garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
