/* Unit tests of the bench message format and the chat id that carries its schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "payload.h"

static void test_roundtrip_and_padding(void **state)
{
    static char buf[PAYLOAD_MAX];
    struct payload p = {.run = 0xdeadbeef,
                        .step = 3,
                        .pub = 17,
                        .seq = 123456789012ULL,
                        .sched_ns = 987654321987654321LL},
                   q;
    int n = payload_format(buf, sizeof(buf), 1000, &p);
    assert_int_equal(n, 1000);
    assert_int_equal(memcmp(buf, "mb1 deadbeef 3 17 123456789012 987654321987654321 ...", 53), 0);
    assert_int_equal(buf[999], '.');
    assert_int_equal(payload_parse(buf, (size_t)n, &q), 0);
    assert_int_equal(q.run, p.run);
    assert_int_equal(q.step, p.step);
    assert_int_equal(q.pub, p.pub);
    assert_int_equal(q.seq, p.seq);
    assert_int_equal(q.sched_ns, p.sched_ns);
    /* smaller than the header: the header alone */
    n = payload_format(buf, sizeof(buf), 1, &p);
    assert_int_equal(n, (int)strlen("mb1 deadbeef 3 17 123456789012 987654321987654321"));
    assert_int_equal(payload_parse(buf, (size_t)n, &q), 0);
    /* the largest numbers fit in PAYLOAD_MIN */
    struct payload big = {UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT64_MAX, INT64_MAX};
    n = payload_format(buf, sizeof(buf), PAYLOAD_MIN, &big);
    assert_true(n > 0 && n <= PAYLOAD_MIN + 32);
    assert_int_equal(payload_parse(buf, (size_t)n, &q), 0);
    assert_int_equal(q.seq, UINT64_MAX);
    /* too small a buffer */
    assert_int_equal(payload_format(buf, 10, 100, &p), -1);
}

static void test_not_ours_is_refused(void **state)
{
    struct payload q;
    const char *bad[] = {
        "",
        "mb1",
        "mb2 deadbeef 1 2 3 4",
        "mb1 deadbee 1 2 3 4",
        "mb1 DEADBEEF 1 2 3 4",
        "mb1 deadbeef 1 2 3",
        "mb1 deadbeef 1 2 3 4 5",
        "mb1 deadbeef 1 2 3 4 ..x",
        "mb1 deadbeef 1  2 3 4",
        "mb1 deadbeef -1 2 3 4",
        "mb1 deadbeef 4294967296 2 3 4",
        "mb1 deadbeef 1 2 18446744073709551616 4",
        "mb1 deadbeef 1 2 3 9223372036854775808",
        "mb1 deadbeef 1 2 3 4x",
        "{\"type\":\"t\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(payload_parse(bad[i], strlen(bad[i]), &q), -1);
    assert_int_equal(payload_parse("mb1 deadbeef 1 2 3 4", 20, &q), 0);
    assert_int_equal(payload_parse("mb1 deadbeef 1 2 3 4 ", 21, &q), 0); /* blank then no dots */
}

static void test_chat_id_roundtrip_and_limits(void **state)
{
    char id[PAYLOAD_ID_MAX + 1];
    struct payload p = {.run = 0x0badf00d,
                        .step = 4294967295u,
                        .pub = 99,
                        .seq = UINT64_MAX,
                        .sched_ns = INT64_MAX},
                   q;
    int n = payload_id_format(id, sizeof(id), &p);
    assert_true(n > 0 && n <= PAYLOAD_ID_MAX); /* SPEC §4: ids are at most 64 characters */
    q.pub = 7;
    assert_int_equal(payload_id_parse(id, (size_t)n, &q), 0);
    assert_int_equal(q.run, p.run);
    assert_int_equal(q.step, p.step);
    assert_int_equal(q.seq, p.seq);
    assert_int_equal(q.sched_ns, p.sched_ns);
    assert_int_equal(q.pub, 7); /* not in the id: left alone */
    const char *bad[] = {"",
                         "0badf00d",
                         "0badf00d-1-2",
                         "0badf00d-1-2-3-4",
                         "0badf00d-1-2-x",
                         "0badf00d 1-2-3",
                         "0badf00d-1--3",
                         "zzzzzzzz-1-2-3",
                         "0badf00d-1-2-3.."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(payload_id_parse(bad[i], strlen(bad[i]), &q), -1);
    char longid[100];
    memset(longid, '1', sizeof(longid));
    assert_int_equal(payload_id_parse(longid, sizeof(longid), &q), -1);
}

static void test_sequence_tracking_counts_gaps_and_duplicates(void **state)
{
    uint64_t next = 0, gaps = 0;
    /* 0 1 2 in order, then 5 (3 and 4 missing), 4 late, 5 again, 6 */
    assert_int_equal(payload_seq_note(&next, 0, &gaps), 1);
    assert_int_equal(payload_seq_note(&next, 1, &gaps), 1);
    assert_int_equal(payload_seq_note(&next, 2, &gaps), 1);
    assert_int_equal(payload_seq_note(&next, 5, &gaps), 1);
    assert_int_equal(gaps, 2);
    assert_int_equal(payload_seq_note(&next, 4, &gaps), 0);
    assert_int_equal(payload_seq_note(&next, 5, &gaps), 0);
    assert_int_equal(payload_seq_note(&next, 6, &gaps), 1);
    assert_int_equal(next, 7);
    assert_int_equal(gaps, 2);
    /* a first message that is not 0 (the receiver joined late) counts what it missed as gaps */
    next = gaps = 0;
    assert_int_equal(payload_seq_note(&next, 10, &gaps), 1);
    assert_int_equal(gaps, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_padding),
        cmocka_unit_test(test_not_ours_is_refused),
        cmocka_unit_test(test_chat_id_roundtrip_and_limits),
        cmocka_unit_test(test_sequence_tracking_counts_gaps_and_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
