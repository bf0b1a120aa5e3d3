/* Unit tests of the shard layout of Redis keys (shared/keys.h): shard(id), the tagged names, that one
 * shard's keys share a Redis Cluster slot and other shards' do not, and the stored-shard-count check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "magpie.h"
#include "rcluster.h"

static int slot_of(const char *key)
{
    return rcl_keyslot(key, strlen(key));
}

static void test_shard(void **state)
{
    (void)state;
    keys_set_shards(1);
    assert_int_equal(key_shards(), 1);
    assert_int_equal(key_shard(0), 0);
    assert_int_equal(key_shard(123456789), 0);
    keys_set_shards(4);
    assert_int_equal(key_shards(), 4);
    assert_int_equal(key_shard(42), 2);
    assert_int_equal(key_shard(43), 3);
    assert_int_equal(key_shard(44), 0);
    assert_int_equal(key_shard(-7), 3); /* |id| mod S: never a negative shard */
    assert_int_equal(key_shard(INT64_MIN), 0);
    keys_set_shards(KEY_SHARDS_MAX);
    assert_int_equal(key_shard(KEY_SHARDS_MAX + 5), 5);
    keys_set_shards(0); /* out of range (config_load refuses it): one shard, never a division by 0 */
    assert_int_equal(key_shards(), 1);
    keys_set_shards(KEY_SHARDS_MAX + 1);
    assert_int_equal(key_shards(), 1);
}

static void test_names(void **state)
{
    char buf[64];
    (void)state;
    keys_set_shards(4);
    key_tagged(buf, sizeof(buf), KEY_SEQ, 42);
    assert_string_equal(buf, "mp:{2}:seq:42");
    key_tagged(buf, sizeof(buf), KEY_GROUP_MEMBERS, 7);
    assert_string_equal(buf, "mp:{3}:grp:7:m");
    snprintf(buf, sizeof(buf), KEY_DEDUP, key_shard(9), 9LL, "c1");
    assert_string_equal(buf, "mp:{1}:dedup:9:c1");
    snprintf(buf, sizeof(buf), KEY_MSG, key_shard(5), 123456789012345678LL); /* the reader's shard */
    assert_string_equal(buf, "mp:{1}:msg:123456789012345678");
    snprintf(buf, sizeof(buf), KEY_MQ, 3);
    assert_string_equal(buf, "mp:{3}:mq");
    snprintf(buf, sizeof(buf), KEY_SEQ_RESTORED, 0);
    assert_string_equal(buf, "mp:{0}:seq:restored");
    key_msg_prefix(buf, sizeof(buf), 3);
    assert_string_equal(buf, "mp:{3}:msg:");
    keys_set_shards(1);
    key_tagged(buf, sizeof(buf), KEY_CONVS, 99);
    assert_string_equal(buf, "mp:{0}:convs:99");
}

/* What the layout is for: a shard's users and its streams hash to one slot; another shard to another. */
static void test_slots(void **state)
{
    char a[64], b[64], c[64], q[64], other[64];
    (void)state;
    keys_set_shards(4);
    key_tagged(a, sizeof(a), KEY_SEQ, 42);   /* shard 2 */
    key_tagged(b, sizeof(b), KEY_TL, 46);    /* shard 2 */
    key_tagged(c, sizeof(c), KEY_GROUP, 10); /* shard 2 */
    snprintf(q, sizeof(q), KEY_MQ, 2);
    key_tagged(other, sizeof(other), KEY_SEQ, 43); /* shard 3 */
    assert_int_equal(slot_of(a), slot_of(b));
    assert_int_equal(slot_of(a), slot_of(c));
    assert_int_equal(slot_of(a), slot_of(q));
    assert_int_not_equal(slot_of(a), slot_of(other));
    keys_set_shards(1); /* one shard: every tagged key in one slot */
    key_tagged(a, sizeof(a), KEY_PRESENCE, 1);
    key_tagged(b, sizeof(b), KEY_FRIENDS, 2);
    snprintf(q, sizeof(q), KEY_NOTIFY, 0);
    assert_int_equal(slot_of(a), slot_of(b));
    assert_int_equal(slot_of(a), slot_of(q));
}

static void test_shards_reply(void **state)
{
    redisReply nil = {.type = REDIS_REPLY_NIL}, err = {.type = REDIS_REPLY_ERROR, .str = "LOADING", .len = 7};
    redisReply four = {.type = REDIS_REPLY_STRING, .str = "4", .len = 1};
    redisReply three = {.type = REDIS_REPLY_STRING, .str = "3", .len = 1};
    redisReply junk = {.type = REDIS_REPLY_STRING, .str = "4x", .len = 2};
    redisReply zero = {.type = REDIS_REPLY_STRING, .str = "0", .len = 1};
    int missing = -1;
    (void)state;
    keys_set_shards(4);
    assert_int_equal(keys_shards_reply(NULL, &missing), MP_EAGAIN);
    assert_int_equal(keys_shards_reply(&nil, &missing), MP_OK);
    assert_int_equal(missing, 1);
    assert_int_equal(keys_shards_reply(&four, &missing), MP_OK);
    assert_int_equal(missing, 0);
    assert_int_equal(keys_shards_reply(&three, &missing), MP_ERR);
    assert_int_equal(keys_shards_reply(&junk, &missing), MP_ERR);
    assert_int_equal(keys_shards_reply(&zero, &missing), MP_ERR);
    assert_int_equal(keys_shards_reply(&err, &missing), MP_EAGAIN);
}

static void test_lua_prelude(void **state)
{
    char *src;
    (void)state;
    keys_set_shards(16);
    src = keys_lua("return " KEY_LUA_SHARDS "\n");
    assert_non_null(src);
    assert_string_equal(src, "local " KEY_LUA_SHARDS " = 16\nreturn " KEY_LUA_SHARDS "\n");
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard),        cmocka_unit_test(test_names),       cmocka_unit_test(test_slots),
        cmocka_unit_test(test_shards_reply), cmocka_unit_test(test_lua_prelude),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
