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
    /* a node's delivery channel of a shard is in that shard's slot: the shard's scripts may SPUBLISH on it */
    snprintf(q, sizeof(q), CHAN_NODE, 2, 7);
    assert_string_equal(q, "mp:{2}:node:7:in");
    assert_int_equal(slot_of(a), slot_of(q));
    snprintf(q, sizeof(q), CHAN_NODE_SHARD_PREFIX "7" CHAN_NODE_SUFFIX, 2); /* what the send scripts build */
    assert_string_equal(q, "mp:{2}:node:7:in");
    snprintf(q, sizeof(q), CHAN_NODE, 3, 7);
    assert_int_not_equal(slot_of(a), slot_of(q));
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
    assert_string_equal(src, "#!lua\nlocal " KEY_LUA_SHARDS " = 16\nreturn " KEY_LUA_SHARDS "\n");
    free(src);
    /* a source with its own shebang: still the very first line, and only once */
    src = keys_lua(LUA_SHEBANG "return 1\n");
    assert_non_null(src);
    assert_string_equal(src, "#!lua\nlocal " KEY_LUA_SHARDS " = 16\nreturn 1\n");
    free(src);
}

/* The keys written together share a slot: the registry's (KEY_NODES_TAG), a node's users with their presence
 * (per shard), an SMS mobile's three keys, the two courier position keys. */
static void test_slot_groups(void **state)
{
    char a[128], b[128], c[128], d[128];
    (void)state;
    keys_set_shards(4);
    snprintf(a, sizeof(a), KEY_NODE, 7);
    snprintf(b, sizeof(b), KEY_NODE_ROOMS, 7);
    snprintf(c, sizeof(c), KEY_ROOM_MEMBERS, "lobby");
    assert_int_equal(slot_of(KEY_NODES), slot_of(a));
    assert_int_equal(slot_of(KEY_NODES), slot_of(b));
    assert_int_equal(slot_of(KEY_NODES), slot_of(c));
    snprintf(a, sizeof(a), KEY_NODE_USERS, key_shard(42), 7);
    key_tagged(b, sizeof(b), KEY_PRESENCE, 42);
    snprintf(c, sizeof(c), KEY_NODE_CLEARED, key_shard(42));
    assert_string_equal(a, "mp:{2}:node:7:users");
    assert_int_equal(slot_of(a), slot_of(b));
    assert_int_equal(slot_of(a), slot_of(c));
    snprintf(a, sizeof(a), KEY_SMS_CODE, "13800138000");
    snprintf(b, sizeof(b), KEY_SMS_RESEND, "13800138000");
    snprintf(c, sizeof(c), KEY_SMS_DAILY, "13800138000");
    snprintf(d, sizeof(d), KEY_SMS_CODE, "13800138001");
    assert_int_equal(slot_of(a), slot_of(b));
    assert_int_equal(slot_of(a), slot_of(c));
    assert_int_not_equal(slot_of(a), slot_of(d)); /* another mobile: another slot (spread) */
    assert_int_equal(slot_of(KEY_GEO), slot_of(KEY_GEO_TIME));
}

static void test_live_list(void **state)
{
    redisReply one = {.type = REDIS_REPLY_STRING, .str = "1", .len = 1};
    redisReply twelve = {.type = REDIS_REPLY_STRING, .str = "12", .len = 2};
    redisReply bad = {.type = REDIS_REPLY_STRING, .str = "1,2", .len = 3};
    redisReply empty_id = {.type = REDIS_REPLY_STRING, .str = "", .len = 0};
    redisReply *ids[] = {&one, &twelve}, *bads[] = {&one, &bad}, *empties[] = {&empty_id};
    redisReply list = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = ids};
    redisReply none = {.type = REDIS_REPLY_ARRAY, .elements = 0, .element = NULL};
    redisReply junk = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = bads};
    redisReply blank = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = empties};
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "ERR", .len = 3};
    char buf[16];
    (void)state;
    assert_int_equal(keys_live_list(&list, buf, sizeof(buf)), MP_OK);
    assert_string_equal(buf, ",1,12,"); /* mp_live finds ",1," and ",12,", never "1" inside "12" */
    assert_int_equal(keys_live_list(&none, buf, sizeof(buf)), MP_OK);
    assert_string_equal(buf, ",");
    assert_int_equal(keys_live_list(&junk, buf, sizeof(buf)), MP_ERR); /* a comma would split an id */
    assert_string_equal(buf, ",");
    assert_int_equal(keys_live_list(&blank, buf, sizeof(buf)), MP_ERR);
    assert_int_equal(keys_live_list(&err, buf, sizeof(buf)), MP_ERR);
    assert_int_equal(keys_live_list(NULL, buf, sizeof(buf)), MP_ERR);
    assert_int_equal(keys_live_list(&list, buf, 6), MP_ERR); /* ",1,12," needs 7 bytes */
    assert_string_equal(buf, ",");
    assert_int_equal(keys_live_list(&list, buf, 7), MP_OK);
    assert_string_equal(buf, ",1,12,");
    assert_int_equal(keys_live_list(&list, buf, 1), MP_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard),       cmocka_unit_test(test_names),
        cmocka_unit_test(test_slots),       cmocka_unit_test(test_shards_reply),
        cmocka_unit_test(test_lua_prelude), cmocka_unit_test(test_slot_groups),
        cmocka_unit_test(test_live_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
