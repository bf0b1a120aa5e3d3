/* Unit tests of the client side of the room protocol (SPEC §5): Req packets as the seed lays them out, and
 * the merged batches of Reply{MESSAGE} split message by message -- or refused whole when malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "room.pb-c.h"
#include "roomproto.h"

struct seen {
    int n;
    char msgs[16][64];
    size_t lens[16];
};

static void collect(void *arg, const uint8_t *msg, size_t len)
{
    struct seen *s = arg;
    if (s->n < 16) {
        memcpy(s->msgs[s->n], msg, len < 63 ? len : 63);
        s->lens[s->n] = len;
    }
    s->n++;
}

/* Append one length-prefixed message (seed 004: 4-byte little-endian length, then the bytes). */
static size_t put(uint8_t *buf, size_t off, const char *msg)
{
    uint32_t len = (uint32_t)strlen(msg);
    buf[off] = (uint8_t)len;
    buf[off + 1] = (uint8_t)(len >> 8);
    buf[off + 2] = (uint8_t)(len >> 16);
    buf[off + 3] = (uint8_t)(len >> 24);
    memcpy(buf + off + 4, msg, len);
    return off + 4 + len;
}

static void test_split_several_messages_in_order(void **state)
{
    uint8_t buf[256];
    struct seen s = {0};
    size_t n = put(buf, 0, "pack1");
    n = put(buf, n, "i am pack2");
    n = put(buf, n, "");
    n = put(buf, n, "{\"type\":1,\"content\":\"test\"}");
    assert_int_equal(batch_split(buf, n, collect, &s), 4);
    assert_int_equal(s.n, 4);
    assert_memory_equal(s.msgs[0], "pack1", 5);
    assert_int_equal(s.lens[1], 10);
    assert_int_equal(s.lens[2], 0);
    assert_int_equal(s.lens[3], 27);
    /* the seed's own example bytes: |5 0 0 0|pack1|10 0 0 0|i am pack2| */
    const uint8_t seed[] = {5, 0,   0,   0,   'p', 'a', 'c', 'k', '1', 10,  0,  0,
                            0, 'i', ' ', 'a', 'm', ' ', 'p', 'a', 'c', 'k', '2'};
    memset(&s, 0, sizeof(s));
    assert_int_equal(batch_split(seed, sizeof(seed), collect, &s), 2);
    assert_memory_equal(s.msgs[1], "i am pack2", 10);
    /* an empty batch has no message */
    assert_int_equal(batch_split(buf, 0, collect, &s), 0);
}

static void test_malformed_batches_are_refused_whole(void **state)
{
    uint8_t buf[64];
    struct seen s = {0};
    size_t n = put(buf, 0, "good");
    /* a truncated length prefix after a good message */
    buf[n] = 1;
    buf[n + 1] = 0;
    assert_int_equal(batch_split(buf, n + 2, collect, &s), -1);
    assert_int_equal(s.n, 0); /* nothing of it counted */
    /* a length running past the end */
    n = put(buf, 0, "good");
    size_t m = put(buf, n, "abc");
    assert_int_equal(batch_split(buf, m - 1, collect, &s), -1);
    /* a huge length (would wrap a naive offset) */
    n = put(buf, 0, "x");
    buf[n] = 0xff;
    buf[n + 1] = 0xff;
    buf[n + 2] = 0xff;
    buf[n + 3] = 0xff;
    assert_int_equal(batch_split(buf, n + 4, collect, &s), -1);
    assert_int_equal(s.n, 0);
}

/* Pack Reply{type, data}. */
static uint8_t *reply(Magpie__PackageType type, const uint8_t *data, size_t len, size_t *out_len)
{
    Magpie__Reply r = MAGPIE__REPLY__INIT;
    r.type = type;
    r.data.data = (uint8_t *)data;
    r.data.len = len;
    uint8_t *buf = malloc(magpie__reply__get_packed_size(&r) + 1);
    *out_len = magpie__reply__pack(&r, buf);
    return buf;
}

static void test_decode_each_reply_type(void **state)
{
    struct room_reply r;
    struct seen s = {0};
    size_t len;
    uint8_t batch[128], inner[256];

    /* MESSAGE with a merged batch of three */
    size_t bn = put(batch, 0, "one");
    bn = put(batch, bn, "two");
    bn = put(batch, bn, "three");
    Magpie__BroadcastRoomReq b = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    b.roomid = "r1";
    b.msglv = MAGPIE__MSG_LEVEL__IMPORTANT;
    b.data.data = batch;
    b.data.len = bn;
    size_t in = magpie__broadcast_room_req__pack(&b, inner);
    uint8_t *f = reply(MAGPIE__PACKAGE_TYPE__MESSAGE, inner, in, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_BATCH);
    assert_int_equal(r.messages, 3);
    assert_int_equal(r.level, 1);
    assert_int_equal(s.n, 3);
    assert_memory_equal(s.msgs[2], "three", 5);
    free(f);

    /* UNKNOWN with Err{100, "sign in first"} */
    Magpie__Err e = MAGPIE__ERR__INIT;
    e.code = 100;
    e.msg = "sign in first";
    in = magpie__err__pack(&e, inner);
    f = reply(MAGPIE__PACKAGE_TYPE__UNKNOWN, inner, in, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_RESULT);
    assert_int_equal(r.code, 100);
    assert_string_equal(r.msg, "sign in first");
    free(f);

    /* Err{code 0}: packs to nothing at all, still a result with code 0 */
    f = reply(MAGPIE__PACKAGE_TYPE__UNKNOWN, NULL, 0, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_RESULT);
    assert_int_equal(r.code, 0);
    free(f);

    f = reply(MAGPIE__PACKAGE_TYPE__HEARTBEAT, (const uint8_t *)"pong", 4, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_PONG);
    free(f);

    f = reply(MAGPIE__PACKAGE_TYPE__MEMBERS, (const uint8_t *)"10001", 5, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_MEMBERS);
    assert_int_equal(r.members, 10001);
    free(f);
    f = reply(MAGPIE__PACKAGE_TYPE__MEMBERS, (const uint8_t *)"ten", 3, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_BAD);
    free(f);

    f = reply((Magpie__PackageType)9, NULL, 0, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_OTHER);
    free(f);
}

static void test_garbage_and_bad_batches_in_a_reply(void **state)
{
    struct room_reply r;
    struct seen s = {0};
    size_t len;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    assert_int_equal(room_reply_decode(garbage, sizeof(garbage), collect, &s, &r), ROOM_REPLY_BAD);
    /* MESSAGE whose data is not a BroadcastRoomReq */
    uint8_t *f = reply(MAGPIE__PACKAGE_TYPE__MESSAGE, garbage, sizeof(garbage), &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_BAD);
    free(f);
    /* a BroadcastRoomReq whose batch is cut short */
    uint8_t batch[16], inner[64];
    size_t bn = put(batch, 0, "abcdef");
    Magpie__BroadcastRoomReq b = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    b.data.data = batch;
    b.data.len = bn - 2;
    size_t in = magpie__broadcast_room_req__pack(&b, inner);
    f = reply(MAGPIE__PACKAGE_TYPE__MESSAGE, inner, in, &len);
    assert_int_equal(room_reply_decode(f, len, collect, &s, &r), ROOM_REPLY_BAD);
    assert_int_equal(s.n, 0);
    free(f);
    /* random bytes: never a crash */
    uint8_t buf[256];
    srand(11);
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand();
        room_reply_decode(buf, n, collect, &s, &r);
    }
}

static void test_requests_decode_as_the_seed_says(void **state)
{
    size_t len;
    uint8_t *req = room_req_sign_in("tok", "room-1", &len);
    Magpie__Req *r = magpie__req__unpack(NULL, len, req);
    assert_non_null(r);
    assert_int_equal(r->type, MAGPIE__PACKAGE_TYPE__SIGN_IN);
    Magpie__SignIn *si = magpie__sign_in__unpack(NULL, r->data.len, r->data.data);
    assert_non_null(si);
    assert_string_equal(si->token, "tok");
    assert_string_equal(si->roomid, "room-1");
    magpie__sign_in__free_unpacked(si, NULL);
    magpie__req__free_unpacked(r, NULL);
    free(req);

    req = room_req_message("room-1", (const uint8_t *)"hello", 5, 1, &len);
    r = magpie__req__unpack(NULL, len, req);
    assert_non_null(r);
    assert_int_equal(r->type, MAGPIE__PACKAGE_TYPE__MESSAGE);
    Magpie__BroadcastRoomReq *b = magpie__broadcast_room_req__unpack(NULL, r->data.len, r->data.data);
    assert_non_null(b);
    assert_string_equal(b->roomid, "room-1");
    assert_int_equal(b->msglv, MAGPIE__MSG_LEVEL__IMPORTANT);
    assert_int_equal(b->data.len, 5);
    assert_memory_equal(b->data.data, "hello", 5);
    magpie__broadcast_room_req__free_unpacked(b, NULL);
    magpie__req__free_unpacked(r, NULL);
    free(req);

    req = room_req_heartbeat(&len);
    r = magpie__req__unpack(NULL, len, req);
    assert_non_null(r);
    assert_int_equal(r->type, MAGPIE__PACKAGE_TYPE__HEARTBEAT);
    magpie__req__free_unpacked(r, NULL);
    free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_several_messages_in_order),
        cmocka_unit_test(test_malformed_batches_are_refused_whole),
        cmocka_unit_test(test_decode_each_reply_type),
        cmocka_unit_test(test_garbage_and_bad_batches_in_a_reply),
        cmocka_unit_test(test_requests_decode_as_the_seed_says),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
