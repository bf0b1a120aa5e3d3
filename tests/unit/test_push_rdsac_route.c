/* Unit tests of push/rdsac_route.c: the pure pieces of magpie-push's asynchronous cluster client -- taking
 * apart what hiredis formatted (and refusing anything else), the slot of a formatted command, NOSCRIPT,
 * the retry budget, and "is every slot served through a ready connection". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "magpie.h"
#include "rcluster.h"
#include "rdsac_route.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_split_what_hiredis_formats(void **state)
{
    const char *argv[8], *in[3] = {"SET", "k", "v\r\n\0x"};
    size_t argvlen[8], inlen[3] = {3, 1, 6};
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, 3, in, inlen);
    (void)state;

    assert_true(len > 0);
    assert_int_equal(rdsac_split(cmd, (size_t)len, argv, argvlen, 8), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(argvlen[i], inlen[i]);
        assert_memory_equal(argv[i], in[i], inlen[i]); /* binary-safe: CR LF and NUL inside an argument */
    }
    redisFreeCommand(cmd);
    assert_int_equal(rdsac_split(S("*1\r\n$4\r\nPING\r\n"), argv, argvlen, 8), 1);
    assert_int_equal(rdsac_split(S("*2\r\n$3\r\nGET\r\n$0\r\n\r\n"), argv, argvlen, 8), 2);
    assert_int_equal(argvlen[1], 0);
}

static void test_split_refuses_anything_else(void **state)
{
    const char *argv[4];
    size_t argvlen[4];
    (void)state;

    assert_int_equal(rdsac_split(S(""), argv, argvlen, 4), -1);
    assert_int_equal(rdsac_split(S("PING\r\n"), argv, argvlen, 4), -1);             /* inline */
    assert_int_equal(rdsac_split(S("*0\r\n"), argv, argvlen, 4), -1);               /* no argument */
    assert_int_equal(rdsac_split(S("*-1\r\n"), argv, argvlen, 4), -1);              /* negative */
    assert_int_equal(rdsac_split(S("*1\r\n$4\r\nPIN"), argv, argvlen, 4), -1);      /* cut short */
    assert_int_equal(rdsac_split(S("*1\r\n$4\r\nPINGXX"), argv, argvlen, 4), -1);   /* no CR LF */
    assert_int_equal(rdsac_split(S("*2\r\n$4\r\nPING\r\n"), argv, argvlen, 4), -1); /* one missing */
    assert_int_equal(rdsac_split(S("*1\r\n$4\r\nPING\r\n$1\r\nx\r\n"), argv, argvlen, 4), -1); /* extra */
    assert_int_equal(rdsac_split(S("*1\r\n:4\r\nPING\r\n"), argv, argvlen, 4), -1);           /* not a bulk */
    assert_int_equal(rdsac_split(S("*1\r\n$99999999999\r\nPING\r\n"), argv, argvlen, 4), -1); /* huge */
    assert_int_equal(rdsac_split(S("*1\n$4\nPING\n"), argv, argvlen, 4), -1);                 /* LF only */
    assert_int_equal(
        rdsac_split(S("*5\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"), argv, argvlen, 4),
        -1); /* more than maxargs */
}

static int formatted_slot(int *slot, const char *fmt, ...)
{
    char why[256], *cmd = NULL;
    va_list ap;
    int len, rc;
    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    assert_true(len > 0);
    rc = rdsac_formatted_slot(cmd, (size_t)len, slot, why, sizeof(why));
    redisFreeCommand(cmd);
    return rc;
}

static void test_formatted_slot_routes_like_the_cluster(void **state)
{
    int slot;
    (void)state;

    assert_int_equal(formatted_slot(&slot, "GET %s", "foo"), MP_OK);
    assert_int_equal(slot, 12182); /* CLUSTER KEYSLOT foo */
    assert_int_equal(formatted_slot(&slot, "HSET %s %s %b", "{user1000}.a", "f", "v", (size_t)1), MP_OK);
    assert_int_equal(slot, rcl_keyslot(S("user1000")));
    assert_int_equal(formatted_slot(&slot, "PUBLISH %s %s", "chan", "hello"), MP_OK);
    assert_int_equal(slot, -1); /* no key: any master */
    assert_int_equal(formatted_slot(&slot, "EVALSHA %s 2 %s %s %s", "0123", "{a}1", "{a}2", "x"), MP_OK);
    assert_int_equal(slot, rcl_keyslot(S("a")));
    assert_int_equal(formatted_slot(&slot, "MGET %s %s", "a", "b"), MP_EINVAL); /* CROSSSLOT */
    assert_int_equal(formatted_slot(&slot, "SUBSCRIBE %s", "c"), MP_EINVAL);    /* not routed */
}

static void test_formatted_slot_refuses_garbage(void **state)
{
    int slot = 7;
    char why[256] = "";
    (void)state;
    assert_int_equal(rdsac_formatted_slot(S("GET foo\r\n"), &slot, why, sizeof(why)), MP_EINVAL);
    assert_int_equal(slot, -1);
    assert_true(strlen(why) > 0);
}

static void test_noscript(void **state)
{
    redisReply e = {
        .type = REDIS_REPLY_ERROR, .str = "NOSCRIPT No matching script. Please use EVAL.", .len = 45};
    redisReply other = {.type = REDIS_REPLY_ERROR, .str = "ERR unknown", .len = 11};
    redisReply str = {.type = REDIS_REPLY_STRING, .str = "NOSCRIPT", .len = 8};
    redisReply shorter = {.type = REDIS_REPLY_ERROR, .str = "NOSCRI", .len = 6};
    (void)state;
    assert_true(rdsac_noscript(&e));
    assert_false(rdsac_noscript(&other));
    assert_false(rdsac_noscript(&str)); /* a value that happens to read NOSCRIPT */
    assert_false(rdsac_noscript(&shorter));
    assert_false(rdsac_noscript(NULL));
}

static void test_next_try_doubles_then_stops_at_the_deadline(void **state)
{
    int backoff = RCL_BACKOFF_MIN_MS;
    int64_t due = 0, now = 1000, deadline = 1000 + 300;
    (void)state;

    assert_int_equal(rdsac_next_try(now, deadline, &backoff, RCL_BACKOFF_MAX_MS, &due), MP_OK);
    assert_int_equal(due, 1010);
    assert_int_equal(backoff, 20);
    now = due;
    assert_int_equal(rdsac_next_try(now, deadline, &backoff, RCL_BACKOFF_MAX_MS, &due), MP_OK);
    assert_int_equal(due, 1030);
    for (int i = 0; i < 10; i++)
        (void)rdsac_next_try(0, INT64_MAX / 2, &backoff, RCL_BACKOFF_MAX_MS, &due);
    assert_int_equal(backoff, RCL_BACKOFF_MAX_MS); /* capped */
    backoff = 200;
    assert_int_equal(rdsac_next_try(1200, 1300, &backoff, RCL_BACKOFF_MAX_MS, &due), MP_OK);
    assert_int_equal(due, 1300); /* the last try starts at the deadline, not after it */
    assert_int_equal(rdsac_next_try(1300, 1300, &backoff, RCL_BACKOFF_MAX_MS, &due), MP_EAGAIN);
    assert_int_equal(rdsac_next_try(1301, 1300, &backoff, RCL_BACKOFF_MAX_MS, &due), MP_EAGAIN);
    assert_int_equal(backoff, 200); /* untouched when it gives up */
    backoff = 10;
    assert_int_equal(rdsac_next_try(5, 5, &backoff, 200, &due), MP_EAGAIN); /* cluster_retry_ms 0: one try */
}

static int ready_mask(int node, void *arg)
{
    return (*(unsigned *)arg >> node) & 1;
}

static void test_map_full(void **state)
{
    struct rcl_map *m = malloc(sizeof(*m));
    unsigned mask;
    (void)state;
    assert_non_null(m);
    rcl_map_clear(m);
    mask = ~0u;
    assert_false(rdsac_map_full(NULL, ready_mask, &mask));
    assert_false(rdsac_map_full(m, ready_mask, &mask)); /* no slot served */
    for (int s = 0; s < RCL_SLOTS; s++)
        assert_int_equal(rcl_map_set_owner(m, s, s < 5461 ? "a" : s < 10923 ? "b" : "c", 7000), MP_OK);
    assert_true(rdsac_map_full(m, ready_mask, &mask));
    mask = 0x5; /* b's connection is not ready */
    assert_false(rdsac_map_full(m, ready_mask, &mask));
    mask = 0x7;
    m->owner[16383] = -1; /* one slot without a master (a failover under way) */
    assert_false(rdsac_map_full(m, ready_mask, &mask));
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_what_hiredis_formats),
        cmocka_unit_test(test_split_refuses_anything_else),
        cmocka_unit_test(test_formatted_slot_routes_like_the_cluster),
        cmocka_unit_test(test_formatted_slot_refuses_garbage),
        cmocka_unit_test(test_noscript),
        cmocka_unit_test(test_next_try_doubles_then_stops_at_the_deadline),
        cmocka_unit_test(test_map_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
