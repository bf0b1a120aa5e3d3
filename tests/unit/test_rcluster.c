/* Unit tests of shared/rcluster.c that need no server: slots and hash tags, which arguments are keys, the
 * slot map from a CLUSTER SLOTS reply, what MOVED/ASK/TRYAGAIN/CLUSTERDOWN mean, and hostile replies. The
 * replies are the bytes a Redis 7.0.15 cluster sent (recorded from `scripts/dev up --redis cluster`), fed
 * through hiredis' own reader, so the parsers see exactly what they see in production. (The client against
 * a real cluster, with a migration and a failover, is tests/integration/test_rcluster.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "rds.h"
#include "magpie.h"
#include "rcluster.h"

/* The reply that the RESP bytes resp make (caller frees), as hiredis parses them off a socket. */
static redisReply *resp(const char *bytes, size_t len)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, bytes, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}
#define RESP(s) resp((s), sizeof(s) - 1)

static struct rcl_map *new_map(void)
{
    struct rcl_map *m = malloc(sizeof(*m));
    assert_non_null(m);
    rcl_map_clear(m);
    return m;
}

/* ---- slots ---- */

static void test_crc16_of_the_spec_example(void **state)
{
    /* Redis Cluster spec, "Keys distribution model": CRC16 of "123456789" is 0x31C3 */
    assert_int_equal(rcl_crc16("123456789", 9), 0x31C3);
    assert_int_equal(rcl_crc16("", 0), 0);
    assert_int_equal(rcl_keyslot("123456789", 9), 0x31C3 & 16383);
}

/* CLUSTER KEYSLOT answers of a real Redis 7.0.15 (recorded; tests/integration/test_rcluster.py checks the
 * same and more against the running cluster). */
static const struct {
    const char *key;
    int slot;
} recorded_slots[] = {
    {"foo", 12182},
    {"bar", 5061},
    {"a", 15495},
    {"b", 3300},
    {"hello", 866},
    {"123456789", 12739},
    {"user:1000", 1649},
    {"{user1000}.following", 3443},
    {"{user1000}.followers", 3443},
    {"a{b}c{d}", 3300},
    {"{}", 15257},
    {"{a", 10276},
    {"{{x}}", 11068},
    {"x{}{y}", 14166},
    {"mp:msg:42", 2829},
    {"{u:17}:tl", 3140},
    {"", 0},
    {"{", 4092},
    {"}", 12090},
    {"{}{a}", 13650},
};

static void test_keyslot_matches_redis(void **state)
{
    for (size_t i = 0; i < MP_ARRAY_LEN(recorded_slots); i++) {
        int s = rcl_keyslot(recorded_slots[i].key, strlen(recorded_slots[i].key));
        if (s != recorded_slots[i].slot)
            fail_msg("slot of '%s': %d, Redis says %d", recorded_slots[i].key, s, recorded_slots[i].slot);
    }
}

static int slot_of(const char *k)
{
    return rcl_keyslot(k, strlen(k));
}

static void test_hash_tags(void **state)
{
    /* the part between the first '{' and the first '}' after it, when it is not empty */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("user1000"));
    assert_int_equal(slot_of("a{b}c{d}"), slot_of("b"));
    assert_int_equal(slot_of("{{x}}"), slot_of("{x"));
    assert_int_equal(slot_of("x{}{y}"), rcl_crc16("x{}{y}", 6) & 16383); /* "{}" first: the whole key */
    /* no tag: the whole key */
    assert_int_equal(slot_of("{}"), rcl_crc16("{}", 2) & 16383);
    assert_int_equal(slot_of("{a"), rcl_crc16("{a", 2) & 16383);
    assert_int_equal(slot_of("a}b{"), rcl_crc16("a}b{", 4) & 16383);
    assert_int_equal(slot_of("{"), rcl_crc16("{", 1) & 16383);
    assert_int_equal(slot_of(""), 0);
    /* binary keys: a NUL is a byte like any other */
    assert_int_equal(rcl_keyslot("{a\0b}c", 6), rcl_crc16("a\0b", 3) & 16383);
}

/* ---- which arguments are keys ---- */

/* The slot rcl_command_slot gives a command written as one string of space-separated words. */
static int cmd_slot(const char *line, char *why, size_t whylen)
{
    char buf[512], *save = NULL;
    const char *argv[32];
    size_t argvlen[32];
    int argc = 0, slot = -2, rv;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *w = strtok_r(buf, " ", &save); w != NULL && argc < 32; w = strtok_r(NULL, " ", &save)) {
        argv[argc] = w;
        argvlen[argc++] = strlen(w);
    }
    rv = rcl_command_slot(argc, argv, argvlen, &slot, why, whylen);
    return rv == MP_OK ? slot : rv;
}

static void test_command_keys(void **state)
{
    char why[256];
    int u = slot_of("u1");
    assert_int_equal(cmd_slot("GET {u1}:a", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("set {u1}:a 1", why, sizeof(why)), u); /* any case */
    assert_int_equal(cmd_slot("XADD {u1}:s * f v", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("EVALSHA abc 2 {u1}:a {u1}:b x y", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("EVAL return 1 {u1}:a", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("EVAL return 0 {u1}:a", why, sizeof(why)), -1); /* 0 keys: {u1}:a is an arg */
    assert_int_equal(cmd_slot("MGET {u1}:a {u1}:b {u1}:c", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("MSET {u1}:a 1 {u1}:b 2", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("DEL {u1}:a", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("BLPOP {u1}:a {u1}:b 0", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("LMOVE {u1}:a {u1}:b LEFT RIGHT", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("ZUNIONSTORE {u1}:d 2 {u1}:a {u1}:b WEIGHTS 1 2", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("ZUNION 2 {u1}:a {u1}:b", why, sizeof(why)), u);
    assert_int_equal(
        cmd_slot("XREADGROUP GROUP g c COUNT 10 BLOCK 5 STREAMS {u1}:s {u1}:t > >", why, sizeof(why)), u);
    /* a group or a count named STREAMS is not the STREAMS token */
    assert_int_equal(cmd_slot("XREADGROUP GROUP STREAMS c STREAMS {u1}:s >", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("XREAD COUNT STREAMS STREAMS {u1}:s 0", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("XINFO STREAM {u1}:s", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("XGROUP CREATE {u1}:s g $ MKSTREAM", why, sizeof(why)), u);
    assert_int_equal(cmd_slot("SPUBLISH {u1}:chan hello", why, sizeof(why)), u);
    /* no key: any master */
    assert_int_equal(cmd_slot("PING", why, sizeof(why)), -1);
    assert_int_equal(cmd_slot("TIME", why, sizeof(why)), -1);
    assert_int_equal(cmd_slot("SCRIPT LOAD return", why, sizeof(why)), -1);
    assert_int_equal(cmd_slot("EVALSHA abc 0", why, sizeof(why)), -1);
    assert_int_equal(cmd_slot("XINFO HELP", why, sizeof(why)), -1);
}

static void test_cross_slot_refused_locally(void **state)
{
    char why[256];
    /* "a" and "b" are in different slots (15495 and 3300) */
    assert_int_not_equal(slot_of("a"), slot_of("b"));
    assert_int_equal(cmd_slot("MGET a b", why, sizeof(why)), MP_EINVAL);
    assert_non_null(strstr(why, "keys in different slots"));
    assert_int_equal(cmd_slot("EVALSHA abc 2 a b", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("MSET a 1 b 2", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("XREAD STREAMS a b 0 0", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("ZUNIONSTORE a 1 b", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("RENAME a b", why, sizeof(why)), MP_EINVAL);
    /* MSET's values are not keys: only a and {a}x count */
    assert_int_equal(cmd_slot("MSET a b {a}x b", why, sizeof(why)), slot_of("a"));
}

static void test_malformed_or_unroutable_commands(void **state)
{
    char why[256];
    assert_int_equal(cmd_slot("", why, sizeof(why)), MP_EINVAL); /* no words at all */
    assert_int_equal(cmd_slot("EVALSHA abc 3 a", why, sizeof(why)), MP_EINVAL);
    assert_non_null(strstr(why, "key count"));
    assert_int_equal(cmd_slot("EVALSHA abc -1 a", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("EVALSHA abc x a", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("EVALSHA abc", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("EVAL s 99999999999999999999 a", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("ZUNIONSTORE d", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("XREAD COUNT 1 a 0", why, sizeof(why)), MP_EINVAL);   /* no STREAMS */
    assert_int_equal(cmd_slot("XREAD STREAMS a b 0", why, sizeof(why)), MP_EINVAL); /* odd */
    assert_int_equal(cmd_slot("XREAD STREAMS", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("MULTI", why, sizeof(why)), MP_EINVAL);
    assert_non_null(strstr(why, "not supported"));
    assert_int_equal(cmd_slot("SUBSCRIBE c", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("SELECT 1", why, sizeof(why)), MP_EINVAL);
    assert_int_equal(cmd_slot("WATCH a", why, sizeof(why)), MP_EINVAL);
}

/* ---- the slot map ---- */

/* CLUSTER SLOTS of `scripts/dev up --redis cluster` (Redis 7.0.15, 3 masters + 3 replicas), as sent: [start,
 * end, master, replicas...], each node [ip, port, id, metadata]. Asked right after the cluster was made, the
 * node did not know the third master's replica yet: a range with no replica is a real answer too. */
static const char recorded_slots_reply[] = "*3\r\n"
                                           "*4\r\n"
                                           ":0\r\n"
                                           ":5460\r\n"
                                           "*4\r\n"
                                           "$9\r\n"
                                           "127.0.0.1\r\n"
                                           ":24916\r\n"
                                           "$40\r\n"
                                           "0d6d4a82474866ac4266746764b8707f1d376822\r\n"
                                           "*0\r\n"
                                           "*4\r\n"
                                           "$9\r\n"
                                           "127.0.0.1\r\n"
                                           ":30869\r\n"
                                           "$40\r\n"
                                           "f3c9dfdf858c15d8e9a25e9ab7c6ec94e4f6b2d1\r\n"
                                           "*0\r\n"
                                           "*4\r\n"
                                           ":5461\r\n"
                                           ":10922\r\n"
                                           "*4\r\n"
                                           "$9\r\n"
                                           "127.0.0.1\r\n"
                                           ":22364\r\n"
                                           "$40\r\n"
                                           "4fdeef38743a5626cbc9a6b64000592232ecbd80\r\n"
                                           "*0\r\n"
                                           "*4\r\n"
                                           "$9\r\n"
                                           "127.0.0.1\r\n"
                                           ":31878\r\n"
                                           "$40\r\n"
                                           "2d0b98e5e1770177c9c8cb375e811224199c564a\r\n"
                                           "*0\r\n"
                                           "*3\r\n"
                                           ":10923\r\n"
                                           ":16383\r\n"
                                           "*4\r\n"
                                           "$9\r\n"
                                           "127.0.0.1\r\n"
                                           ":32701\r\n"
                                           "$40\r\n"
                                           "874cd460f025322876e44341993b8cebe5c765f8\r\n"
                                           "*0\r\n";

static void test_parse_recorded_cluster_slots(void **state)
{
    redisReply *r = RESP(recorded_slots_reply);
    struct rcl_map *m = new_map();
    char why[256] = "";
    const struct rcl_node *n;

    assert_int_equal(rcl_map_parse_slots(m, r, "127.0.0.1", why, sizeof(why)), MP_OK);
    assert_int_equal(m->nnodes, 3); /* masters only: the replicas are not routed to */
    assert_int_equal(rcl_map_owner(m, 0)->port, 24916);
    assert_int_equal(rcl_map_owner(m, 5460)->port, 24916);
    assert_int_equal(rcl_map_owner(m, 5461)->port, 22364);
    assert_int_equal(rcl_map_owner(m, 10922)->port, 22364);
    assert_int_equal(rcl_map_owner(m, 10923)->port, 32701);
    /* the replicas (30869, 31878) are not masters of anything */
    for (int i = 0; i < m->nnodes; i++)
        assert_true(m->node[i].port != 30869 && m->node[i].port != 31878);
    for (int s = 0; s < RCL_SLOTS; s++)
        assert_non_null(rcl_map_owner(m, s));
    n = rcl_map_owner(m, 16383);
    assert_string_equal(n->host, "127.0.0.1");
    freeReplyObject(r);
    free(m);
}

static void test_parse_endpoints(void **state)
{
    /* a NULL or empty endpoint is the host that was asked; "?" leaves the range unserved */
    redisReply *r = RESP("*3\r\n"
                         "*3\r\n:0\r\n:99\r\n*2\r\n$-1\r\n:7001\r\n"
                         "*3\r\n:100\r\n:199\r\n*2\r\n$0\r\n\r\n:7002\r\n"
                         "*3\r\n:200\r\n:299\r\n*2\r\n$1\r\n?\r\n:7003\r\n");
    struct rcl_map *m = new_map();
    char why[256];
    assert_int_equal(rcl_map_parse_slots(m, r, "10.1.2.3", why, sizeof(why)), MP_OK);
    assert_string_equal(rcl_map_owner(m, 0)->host, "10.1.2.3");
    assert_int_equal(rcl_map_owner(m, 99)->port, 7001);
    assert_string_equal(rcl_map_owner(m, 150)->host, "10.1.2.3");
    assert_int_equal(rcl_map_owner(m, 150)->port, 7002);
    assert_null(rcl_map_owner(m, 250));
    assert_null(rcl_map_owner(m, 300)); /* in no range */
    assert_null(rcl_map_owner(m, -1));
    assert_null(rcl_map_owner(m, 16384));
    freeReplyObject(r);
    free(m);
}

static void test_parse_hostile_cluster_slots(void **state)
{
#define B(lit) lit, sizeof(lit) - 1 /* a literal and its length (one holds a NUL) */
    static const struct {
        const char *bytes;
        size_t len;
        const char *what;
    } bad[] = {
        {B("-ERR This instance has cluster support disabled\r\n"), "an error"},
        {B("+OK\r\n"), "not an array"},
        {B(":5\r\n"), "not an array"},
        {B("*1\r\n:5\r\n"), "a range that is not an array"},
        {B("*1\r\n*2\r\n:0\r\n:5\r\n"), "a range without a node"},
        {B("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"), "slot 16384"},
        {B("*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"), "slot -1"},
        {B("*1\r\n*3\r\n:9\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"), "end before start"},
        {B("*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"), "a slot as a string"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n$9\r\n127.0.0.1\r\n"), "a node that is a string"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$9\r\n127.0.0.1\r\n"), "a node without a port"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7000\r\n"), "a port as a string"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:0\r\n"), "port 0"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:65536\r\n"), "port 65536"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n:1\r\n:7000\r\n"), "a host as an integer"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n*0\r\n:7000\r\n"), "a host as an array"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\na\0b\r\n:7000\r\n"), "a host with a NUL"},
        {B("*1\r\n*3\r\n:0\r\n:5\r\n*0\r\n"), "an empty node"},
        {B("*1\r\n$-1\r\n"), "a nil range"},
        {B("*1\r\n*-1\r\n"), "a nil array as a range"},
        {B("*2\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
           "*3\r\n:5\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7001\r\n"),
         "overlapping ranges"},
    };
    struct rcl_map *m = new_map();
    for (size_t i = 0; i < MP_ARRAY_LEN(bad); i++) {
        redisReader *rd = redisReaderCreate();
        void *r = NULL;
        char why[256] = "";
        redisReaderFeed(rd, bad[i].bytes, bad[i].len);
        assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
        assert_non_null(r);
        rcl_map_set_owner(m, 7, "127.0.0.1", 1); /* something that a failed parse must clear */
        if (rcl_map_parse_slots(m, r, "127.0.0.1", why, sizeof(why)) != MP_EINVAL)
            fail_msg("CLUSTER SLOTS with %s was accepted", bad[i].what);
        assert_true(why[0] != '\0');
        assert_int_equal(m->nnodes, 0);
        assert_null(rcl_map_owner(m, 7));
        freeReplyObject(r);
        redisReaderFree(rd);
    }
    free(m);
#undef B
}

static void test_too_many_masters(void **state)
{
    /* RCL_MAX_MASTERS + 1 one-slot ranges, each on its own port */
    size_t cap = 64 * (RCL_MAX_MASTERS + 1) + 16, len;
    char *b = malloc(cap);
    struct rcl_map *m = new_map();
    redisReply *r;
    char why[256];
    assert_non_null(b);
    len = (size_t)snprintf(b, cap, "*%d\r\n", RCL_MAX_MASTERS + 1);
    for (int i = 0; i <= RCL_MAX_MASTERS; i++)
        len += (size_t)snprintf(b + len, cap - len, "*3\r\n:%d\r\n:%d\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n", i,
                                i, 10000 + i);
    r = resp(b, len);
    assert_int_equal(rcl_map_parse_slots(m, r, "127.0.0.1", why, sizeof(why)), MP_EINVAL);
    assert_non_null(strstr(why, "more than"));
    freeReplyObject(r);
    free(b);
    free(m);
}

static void test_set_owner_as_moved_says(void **state)
{
    struct rcl_map *m = new_map();
    assert_int_equal(rcl_map_set_owner(m, 3999, "127.0.0.1", 6381), MP_OK);
    assert_int_equal(rcl_map_owner(m, 3999)->port, 6381);
    assert_int_equal(rcl_map_set_owner(m, 4000, "127.0.0.1", 6381), MP_OK);
    assert_int_equal(m->nnodes, 1); /* the same node once */
    assert_int_equal(rcl_map_set_owner(m, 3999, "127.0.0.1", 6382), MP_OK);
    assert_int_equal(rcl_map_owner(m, 3999)->port, 6382);
    assert_int_equal(rcl_map_owner(m, 4000)->port, 6381);
    assert_int_equal(rcl_map_set_owner(m, 16384, "127.0.0.1", 6381), MP_EINVAL);
    assert_int_equal(rcl_map_set_owner(m, -1, "127.0.0.1", 6381), MP_EINVAL);
    assert_int_equal(rcl_map_set_owner(m, 1, "127.0.0.1", 0), MP_EINVAL);
    assert_int_equal(rcl_map_set_owner(m, 1, "127.0.0.1", 65536), MP_EINVAL);
    free(m);
}

/* ---- what a reply means ---- */

static void test_classify_recorded_redirects(void **state)
{
    struct rcl_redirect rd;
    /* recorded from the dev cluster: a key of another master's slot, and one being migrated */
    redisReply *moved = RESP("-MOVED 12182 127.0.0.1:32701\r\n");
    redisReply *ask = RESP("-ASK 12182 127.0.0.1:24916\r\n");
    redisReply *tryagain = RESP("-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
    redisReply *down = RESP("-CLUSTERDOWN The cluster is down\r\n");
    /* a blocked XREADGROUP whose stream MIGRATE moved away */
    redisReply *unblocked = RESP("-UNBLOCKED the stream key no longer exists\r\n");
    redisReply *wrong = RESP("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    redisReply *noscript = RESP("-NOSCRIPT No matching script. Please use EVAL.\r\n");
    redisReply *value = RESP("$5\r\nMOVED\r\n"); /* a value that says MOVED is a value */
    redisReply *status = RESP("+MOVED 1 127.0.0.1:7000\r\n");
    redisReply *nil = RESP("$-1\r\n");

    assert_int_equal(rcl_classify(moved, "127.0.0.1", &rd), RCL_MOVED);
    assert_int_equal(rd.slot, 12182);
    assert_string_equal(rd.host, "127.0.0.1");
    assert_int_equal(rd.port, 32701);
    assert_int_equal(rcl_classify(ask, "127.0.0.1", &rd), RCL_ASK);
    assert_int_equal(rd.slot, 12182);
    assert_int_equal(rd.port, 24916);
    assert_int_equal(rcl_classify(tryagain, "h", &rd), RCL_TRYAGAIN);
    assert_int_equal(rcl_classify(down, "h", &rd), RCL_CLUSTERDOWN);
    assert_int_equal(rcl_classify(unblocked, "h", &rd), RCL_TRYAGAIN);
    assert_int_equal(rcl_classify(wrong, "h", &rd), RCL_REPLY);
    assert_int_equal(rcl_classify(noscript, "h", &rd), RCL_REPLY);
    assert_int_equal(rcl_classify(value, "h", &rd), RCL_REPLY);
    assert_int_equal(rcl_classify(status, "h", &rd), RCL_REPLY);
    assert_int_equal(rcl_classify(nil, "h", &rd), RCL_REPLY);
    freeReplyObject(moved);
    freeReplyObject(ask);
    freeReplyObject(tryagain);
    freeReplyObject(down);
    freeReplyObject(unblocked);
    freeReplyObject(wrong);
    freeReplyObject(noscript);
    freeReplyObject(value);
    freeReplyObject(status);
    freeReplyObject(nil);
}

static void test_redirect_endpoints(void **state)
{
    struct rcl_redirect rd;
    redisReply *same = RESP("-MOVED 3999 :6381\r\n"); /* no host: the node that answered */
    redisReply *v6 = RESP("-ASK 1 ::1:6381\r\n");     /* IPv6: the port is after the last ':' */
    redisReply *name = RESP("-MOVED 16383 redis-3.example:7000\r\n");
    assert_int_equal(rcl_classify(same, "10.0.0.9", &rd), RCL_MOVED);
    assert_string_equal(rd.host, "10.0.0.9");
    assert_int_equal(rd.port, 6381);
    assert_int_equal(rcl_classify(v6, "x", &rd), RCL_ASK);
    assert_string_equal(rd.host, "::1");
    assert_int_equal(rd.port, 6381);
    assert_int_equal(rcl_classify(name, "x", &rd), RCL_MOVED);
    assert_string_equal(rd.host, "redis-3.example");
    assert_int_equal(rd.slot, 16383);
    freeReplyObject(same);
    freeReplyObject(v6);
    freeReplyObject(name);
}

static void test_hostile_redirects(void **state)
{
    static const char *bad[] = {
        "-MOVED\r\n",
        "-MOVED \r\n",
        "-MOVED 12\r\n",
        "-MOVED 12 127.0.0.1\r\n",             /* no port */
        "-MOVED 12 127.0.0.1:\r\n",            /* empty port */
        "-MOVED 12 127.0.0.1:0\r\n",           /* port 0 */
        "-MOVED 12 127.0.0.1:65536\r\n",       /* port too big */
        "-MOVED 12 127.0.0.1:12ab\r\n",        /* port not a number */
        "-MOVED 12 127.0.0.1:-5\r\n",          /* negative port */
        "-MOVED 16384 127.0.0.1:7000\r\n",     /* slot out of range */
        "-MOVED -1 127.0.0.1:7000\r\n",        /* negative slot */
        "-MOVED abc 127.0.0.1:7000\r\n",       /* slot not a number */
        "-MOVED 99999999999999999999 h:1\r\n", /* slot overflowing */
        "-MOVED  127.0.0.1:7000\r\n",          /* empty slot */
        "-MOVED 12 a b:7000\r\n",              /* a space in the host */
        "-MOVED 12 127.0.0.1:7000 extra\r\n",  /* trailing words */
        "-ASK\r\n",
        "-ASK 1\r\n",
        "-ASK x 127.0.0.1:7000\r\n",
        "-ASK 1 127.0.0.1:70000\r\n",
    };
    for (size_t i = 0; i < MP_ARRAY_LEN(bad); i++) {
        struct rcl_redirect rd;
        redisReply *r = resp(bad[i], strlen(bad[i]));
        if (rcl_classify(r, "127.0.0.1", &rd) != RCL_BADREDIRECT)
            fail_msg("'%.*s' was not refused", (int)strlen(bad[i]) - 2, bad[i]);
        freeReplyObject(r);
    }
    {
        /* a host longer than any host name */
        char b[600];
        struct rcl_redirect rd;
        redisReply *r;
        int n = snprintf(b, sizeof(b), "-MOVED 1 %0*d:7000\r\n", 400, 0);
        r = resp(b, (size_t)n);
        assert_int_equal(rcl_classify(r, "127.0.0.1", &rd), RCL_BADREDIRECT);
        freeReplyObject(r);
    }
    {
        /* words that merely start like a redirect are the command's own errors */
        struct rcl_redirect rd;
        redisReply *r = RESP("-MOVEDX 1 127.0.0.1:7000\r\n");
        assert_int_equal(rcl_classify(r, "127.0.0.1", &rd), RCL_REPLY);
        freeReplyObject(r);
        r = RESP("-ASKING is not allowed\r\n");
        assert_int_equal(rcl_classify(r, "127.0.0.1", &rd), RCL_REPLY);
        freeReplyObject(r);
    }
}

/* ---- the client without a server ---- */

static void test_client_refuses_before_sending(void **state)
{
    struct magpie_config cfg;
    struct rcl c;
    char err[CONFIG_ERR_LEN];
    const char *argv[] = {"MGET", "a", "b"};
    size_t argvlen[] = {4, 1, 1};

    /* a seed where nothing listens: a refused command must not even try it */
    setenv("MAGPIE_REDIS_CLUSTER", "127.0.0.1:1", 1);
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    unsetenv("MAGPIE_REDIS_CLUSTER");
    assert_int_equal(rcl_init(&c, &cfg), MP_OK);
    assert_null(rcl_cmdargv(&c, 3, argv, argvlen));
    assert_int_equal(c.err, MP_EINVAL);
    assert_non_null(strstr(c.errstr, "keys in different slots"));
    assert_null(rcl_cmd(&c, "MULTI"));
    assert_int_equal(c.err, MP_EINVAL);
    assert_int_equal(c.stats.refused, 2);
    assert_int_equal(c.stats.conn_errors, 0); /* nothing was dialled */
    assert_int_equal(c.stats.commands, 0);
    rcl_close(&c);
    config_free(&cfg);
}

static void test_client_no_node_answers(void **state)
{
    struct magpie_config cfg;
    struct rcl c;
    char err[CONFIG_ERR_LEN];
    redisReply *r;

    /* port 1 on loopback: connection refused at once; a 100 ms budget */
    setenv("MAGPIE_REDIS_CLUSTER", "127.0.0.1:1", 1);
    setenv("MAGPIE_REDIS_CLUSTER_RETRY_MS", "100", 1);
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    unsetenv("MAGPIE_REDIS_CLUSTER");
    unsetenv("MAGPIE_REDIS_CLUSTER_RETRY_MS");
    assert_int_equal(rcl_init(&c, &cfg), MP_OK);
    int64_t t0 = mp_mono_ms();
    r = rcl_cmd(&c, "GET %s", "k");
    assert_null(r);
    assert_int_equal(c.err, MP_EAGAIN);
    assert_non_null(strstr(c.errstr, "127.0.0.1:1"));
    assert_true(mp_mono_ms() - t0 < 1000); /* bounded by the budget, not hanging */
    assert_true(c.stats.refresh_failures >= 1);
    rcl_close(&c);
    config_free(&cfg);
}

static void load_cluster_cfg(struct magpie_config *cfg, const char *min_replicas)
{
    char err[CONFIG_ERR_LEN];
    /* port 1 on loopback: connection refused at once; one try per command */
    setenv("MAGPIE_REDIS_CLUSTER", "127.0.0.1:1", 1);
    setenv("MAGPIE_REDIS_CLUSTER_RETRY_MS", "0", 1);
    setenv("MAGPIE_REDIS_MIN_REPLICAS_ACKED", min_replicas, 1);
    assert_int_equal(config_load(cfg, NULL, err, sizeof(err)), 0);
    unsetenv("MAGPIE_REDIS_CLUSTER");
    unsetenv("MAGPIE_REDIS_CLUSTER_RETRY_MS");
    unsetenv("MAGPIE_REDIS_MIN_REPLICAS_ACKED");
}

static void test_pipeline_without_a_node(void **state)
{
    struct magpie_config cfg;
    struct rcl c;
    char *cmds[4];
    size_t lens[4];
    redisReply *out[4];
    int64_t t0;

    load_cluster_cfg(&cfg, "0");
    assert_int_equal(rcl_init(&c, &cfg), MP_OK);
    lens[0] = (size_t)redisFormatCommand(&cmds[0], "GET a");
    lens[1] = (size_t)redisFormatCommand(&cmds[1], "MGET a b"); /* refused: two slots */
    lens[2] = (size_t)redisFormatCommand(&cmds[2], "GET b");
    lens[3] = (size_t)redisFormatCommand(&cmds[3], "MULTI"); /* refused: not routed */
    t0 = mp_mono_ms();
    assert_int_equal(rcl_pipeline(&c, 4, cmds, lens, out), 4);
    for (int i = 0; i < 4; i++)
        assert_null(out[i]);
    assert_true(mp_mono_ms() - t0 < 1000);
    assert_int_equal(c.stats.refused, 2);
    /* the first retry found no cluster: the other command fails without a try of its own */
    assert_int_equal(c.stats.commands, 1);
    {
        long long acked = 7;
        assert_int_equal(rcl_wait(&c, 1, 10, &acked), MP_EAGAIN); /* no connection carried a write */
        assert_int_equal(acked, -1);
    }
    {
        struct rcl_node m[4];
        assert_int_equal(rcl_masters(&c, m, 4), -1);
    }
    assert_null(rcl_cmd_at(&c, "127.0.0.1", 1, "SCAN %d", 0));
    assert_int_equal(c.err, MP_EAGAIN);
    for (int i = 0; i < 4; i++)
        redisFreeCommand(cmds[i]);
    rcl_close(&c);
    config_free(&cfg);
}

static int count_key(const char *key, size_t len, void *arg)
{
    (void)key;
    (void)len;
    ++*(int *)arg;
    return MP_OK;
}

/* shared/rds.h on a cluster (redis.cluster set) with no node answering: every call fails the documented
 * way, a pipeline gives one NULL per command in order, and nothing leaks (ASan). */
static void test_rds_on_a_cluster_without_a_node(void **state)
{
    struct magpie_config cfg;
    struct rds r, sub;
    int keys = 0;

    load_cluster_cfg(&cfg, "1");
    rds_init(&r, &cfg);
    assert_true(r.cluster);
    assert_non_null(r.cl);
    assert_null(rds_conn(&r)); /* no plain connection outside a subscription */
    assert_null(rds_cmd(&r, "GET %s", "k"));
    assert_null(rds_cmd(&r, "MULTI")); /* refused (logged as a caller's bug) */
    assert_int_equal(r.cl->err, MP_EINVAL);
    assert_int_equal(rds_append(&r, "GET %s", "a"), MP_OK);
    assert_int_equal(rds_append(&r, "GET %s", "b"), MP_OK);
    assert_int_equal(rds_appendargv(&r, 2, (const char *[]){"GET", "c"}, NULL), MP_OK);
    assert_int_equal(r.nqueue, 3);
    for (int i = 0; i < 3; i++)
        assert_null(rds_reply(&r));
    assert_null(rds_reply(&r)); /* nothing more queued */
    assert_int_equal(r.nqueue, 0);
    assert_int_equal(rds_append(&r, "GET %s", "a"), MP_OK);
    rds_discard(&r); /* abandoned before its reply was read */
    assert_int_equal(r.nqueue, 0);
    assert_null(rds_reply(&r));
    assert_int_equal(rds_wait(&r), MP_EAGAIN); /* min_replicas_acked 1, no write to vouch for */
    assert_int_equal(rds_scan(&r, "mp:*", count_key, &keys), MP_EAGAIN);
    assert_int_equal(keys, 0);
    rds_follow(&r); /* nothing to follow: rcluster does */
    assert_false(rds_stale(&r));
    rds_close(&r);

    rds_init(&sub, &cfg);
    rds_subscriber(&sub);
    assert_null(rds_conn(&sub));      /* no slot map: no master to subscribe on */
    assert_true(sub.retry_at_ms > 0); /* a failure counted: the next try after the backoff */
    rds_close(&sub);
    config_free(&cfg);
}

static void test_config_rules(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];
    struct rcl c;

    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    assert_int_equal(rcl_init(&c, &cfg), MP_EINVAL); /* no seeds */
    rcl_close(&c);
    config_free(&cfg);
    setenv("MAGPIE_REDIS_CLUSTER", "127.0.0.1:7000", 1);
    setenv("MAGPIE_REDIS_SENTINELS", "127.0.0.1:26379", 1);
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "redis.sentinels"));
    unsetenv("MAGPIE_REDIS_SENTINELS");
    setenv("MAGPIE_REDIS_DB", "2", 1);
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "database 0"));
    unsetenv("MAGPIE_REDIS_DB");
    setenv("MAGPIE_REDIS_CLUSTER", "127.0.0.1", 1);
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), -1);
    unsetenv("MAGPIE_REDIS_CLUSTER");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_of_the_spec_example),
        cmocka_unit_test(test_keyslot_matches_redis),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_command_keys),
        cmocka_unit_test(test_cross_slot_refused_locally),
        cmocka_unit_test(test_malformed_or_unroutable_commands),
        cmocka_unit_test(test_parse_recorded_cluster_slots),
        cmocka_unit_test(test_parse_endpoints),
        cmocka_unit_test(test_parse_hostile_cluster_slots),
        cmocka_unit_test(test_too_many_masters),
        cmocka_unit_test(test_set_owner_as_moved_says),
        cmocka_unit_test(test_classify_recorded_redirects),
        cmocka_unit_test(test_redirect_endpoints),
        cmocka_unit_test(test_hostile_redirects),
        cmocka_unit_test(test_client_refuses_before_sending),
        cmocka_unit_test(test_client_no_node_answers),
        cmocka_unit_test(test_pipeline_without_a_node),
        cmocka_unit_test(test_rds_on_a_cluster_without_a_node),
        cmocka_unit_test(test_config_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
