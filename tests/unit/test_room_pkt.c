/* Unit tests of push/roompkt.c: the room protocol's protobuf requests, replies and merged batches (SPEC §5,
 * seed 004) against good and hostile bytes. Every refusal must carry its documented code and reason;
 * nothing may crash or leak (the sanitizer build runs these too), on random and mutated bytes included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magpie.h"
#include "roompkt.h"

/* ---- building client frames with protobuf-c, as a client library would ---- */

static uint8_t *pack_req(int type, const void *data, size_t data_len, size_t *len)
{
    Magpie__Req r = MAGPIE__REQ__INIT;
    uint8_t *out;
    r.type = (Magpie__PackageType)type;
    r.data.data = (uint8_t *)data;
    r.data.len = data_len;
    *len = magpie__req__get_packed_size(&r);
    out = malloc(*len + 1);
    magpie__req__pack(&r, out);
    return out;
}

static uint8_t *pack_sign_in(const char *token, const char *room, size_t *len)
{
    Magpie__SignIn s = MAGPIE__SIGN_IN__INIT;
    uint8_t *inner, *out;
    size_t n;
    s.token = (char *)token;
    s.roomid = (char *)room;
    n = magpie__sign_in__get_packed_size(&s);
    inner = malloc(n + 1);
    magpie__sign_in__pack(&s, inner);
    out = pack_req(MAGPIE__PACKAGE_TYPE__SIGN_IN, inner, n, len);
    free(inner);
    return out;
}

static uint8_t *pack_message(const char *room, int level, const char *msg, size_t *len)
{
    size_t n;
    uint8_t *inner = roompkt_bus_pack(room, level, msg, strlen(msg), &n);
    uint8_t *out = pack_req(MAGPIE__PACKAGE_TYPE__MESSAGE, inner, n, len);
    free(inner);
    return out;
}

/* Parse buf; expect code (and reason when not NULL). Returns nothing; frees. */
static void expect(const uint8_t *buf, size_t len, int code, const char *why)
{
    struct roompkt p;
    int got = roompkt_parse(buf, len, &p);
    if (got != code)
        fail_msg("expected code %d, got %d (%s)", code, got, p.why ? p.why : "ok");
    if (why != NULL && (p.why == NULL || strcmp(p.why, why) != 0))
        fail_msg("expected \"%s\", got \"%s\"", why, p.why ? p.why : "(none)");
    roompkt_free(&p);
}

/* ---- requests ---- */

static void test_sign_in(void **state)
{
    size_t len;
    struct roompkt p;
    uint8_t *b = pack_sign_in("tok", "lobby", &len);
    assert_int_equal(roompkt_parse(b, len, &p), ROOM_OK);
    assert_int_equal(p.type, MAGPIE__PACKAGE_TYPE__SIGN_IN);
    assert_string_equal(p.sign_in->token, "tok");
    assert_string_equal(p.sign_in->roomid, "lobby");
    roompkt_free(&p);
    free(b);

    b = pack_sign_in("", "lobby", &len);
    expect(b, len, ROOM_E_SIGN_IN, ROOM_R_NO_TOKEN);
    free(b);
    b = pack_sign_in("tok", "", &len);
    expect(b, len, ROOM_E_BAD_ROOM, ROOM_R_BAD_ROOM);
    free(b);

    char room[300];
    memset(room, 'r', sizeof(room));
    room[ROOM_MAX_ID] = '\0';
    b = pack_sign_in("tok", room, &len);
    expect(b, len, ROOM_OK, NULL);
    free(b);
    room[ROOM_MAX_ID] = 'r';
    room[256] = '\0';
    b = pack_sign_in("tok", room, &len);
    expect(b, len, ROOM_E_BAD_ROOM, ROOM_R_BAD_ROOM);
    free(b);

    /* data that is not a SignIn */
    b = pack_req(MAGPIE__PACKAGE_TYPE__SIGN_IN, "\xff\xff\xff", 3, &len);
    expect(b, len, ROOM_E_MALFORMED, ROOM_R_BAD_SIGN_IN);
    free(b);
    /* no data at all: an empty SignIn, so no token */
    b = pack_req(MAGPIE__PACKAGE_TYPE__SIGN_IN, NULL, 0, &len);
    expect(b, len, ROOM_E_SIGN_IN, ROOM_R_NO_TOKEN);
    free(b);
}

static void test_room_ids(void **state)
{
    assert_true(roompkt_room_ok("a"));
    assert_true(roompkt_room_ok("直播间-42"));
    assert_true(roompkt_room_ok("with space and :colon"));
    assert_true(roompkt_room_ok("\xf0\x9f\x98\x80")); /* U+1F600 */
    assert_false(roompkt_room_ok(""));
    assert_false(roompkt_room_ok("tab\there"));
    assert_false(roompkt_room_ok("new\nline"));
    assert_false(roompkt_room_ok("del\x7f"));
    assert_false(roompkt_room_ok("\xff"));             /* not UTF-8 */
    assert_false(roompkt_room_ok("\xc3"));             /* cut sequence */
    assert_false(roompkt_room_ok("\xc0\xaf"));         /* overlong '/' */
    assert_false(roompkt_room_ok("\xe0\x80\xaf"));     /* overlong, 3 bytes */
    assert_false(roompkt_room_ok("\xed\xa0\x80"));     /* a surrogate */
    assert_false(roompkt_room_ok("\xf4\x90\x80\x80")); /* above U+10FFFF */
    char id[ROOM_MAX_ID + 2];
    memset(id, 'x', sizeof(id));
    id[ROOM_MAX_ID] = '\0';
    assert_true(roompkt_room_ok(id));
    id[ROOM_MAX_ID] = 'x';
    id[ROOM_MAX_ID + 1] = '\0';
    assert_false(roompkt_room_ok(id));
}

static void test_message(void **state)
{
    size_t len;
    struct roompkt p;
    uint8_t *b = pack_message("lobby", 1, "{\"type\":1,\"content\":\"hi\"}", &len);
    assert_int_equal(roompkt_parse(b, len, &p), ROOM_OK);
    assert_string_equal(p.msg->roomid, "lobby");
    assert_int_equal(p.msg->msglv, MAGPIE__MSG_LEVEL__IMPORTANT);
    assert_int_equal(p.msg->data.len, strlen("{\"type\":1,\"content\":\"hi\"}"));
    roompkt_free(&p);
    free(b);

    b = pack_message("", 0, "no room named: the member's own", &len);
    expect(b, len, ROOM_OK, NULL);
    free(b);
    b = pack_message("lobby", 0, "", &len);
    expect(b, len, ROOM_E_MALFORMED, ROOM_R_EMPTY);
    free(b);
    b = pack_message("bad\nroom", 0, "x", &len);
    expect(b, len, ROOM_E_BAD_ROOM, ROOM_R_BAD_ROOM);
    free(b);
    b = pack_req(MAGPIE__PACKAGE_TYPE__MESSAGE, "\x1a\x05" "ab", 4, &len); /* data field cut short */
    expect(b, len, ROOM_E_MALFORMED, ROOM_R_BAD_MESSAGE);
    free(b);
}

static void test_types(void **state)
{
    size_t len;
    uint8_t *b;

    b = pack_req(MAGPIE__PACKAGE_TYPE__HEARTBEAT, NULL, 0, &len);
    expect(b, len, ROOM_OK, NULL);
    free(b);
    b = pack_req(MAGPIE__PACKAGE_TYPE__MEMBERS, "ignored", 7, &len);
    expect(b, len, ROOM_OK, NULL);
    free(b);
    b = pack_req(MAGPIE__PACKAGE_TYPE__UNKNOWN, NULL, 0, &len);
    expect(b, len, ROOM_E_UNKNOWN_TYPE, ROOM_R_UNKNOWN_TYPE);
    free(b);
    b = pack_req(7, NULL, 0, &len);
    expect(b, len, ROOM_E_UNKNOWN_TYPE, ROOM_R_UNKNOWN_TYPE);
    free(b);
    b = pack_req(-5, NULL, 0, &len);
    expect(b, len, ROOM_E_UNKNOWN_TYPE, ROOM_R_UNKNOWN_TYPE);
    free(b);
    /* an empty frame is a Req with every field at its default: type UNKNOWN */
    expect((const uint8_t *)"", 0, ROOM_E_UNKNOWN_TYPE, ROOM_R_UNKNOWN_TYPE);
}

static void test_garbage(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x0f\x00garbage", 9},                                   /* wire type 7 does not exist */
        {"\x12\x05" "ab", 4},                                        /* data longer than the frame */
        {"\x08", 1},                                              /* a varint cut off */
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* an 11-byte varint */
        {"\x12\xff\xff\xff\xff\x0f", 6},                          /* a 4 GiB length */
        {"\x00\x01", 2},                                          /* field number 0 */
        {"{\"type\":1}", 10},                                     /* JSON is not protobuf */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect((const uint8_t *)bad[i].bytes, bad[i].len, ROOM_E_MALFORMED, ROOM_R_MALFORMED);
}

/* Random bytes and every one-byte mutation and truncation of good frames: any answer but a crash or a
 * leak; a good answer must carry what the type needs. */
static void test_fuzz(void **state)
{
    uint8_t buf[512];
    size_t len;
    uint8_t *frames[3];
    size_t lens[3];
    unsigned seed = 42;

    frames[0] = pack_sign_in("eyJhbGciOiJIUzI1NiJ9.e30.sig", "room-1", &lens[0]);
    frames[1] = pack_message("room-1", 0, "hello", &lens[1]);
    frames[2] = pack_req(MAGPIE__PACKAGE_TYPE__HEARTBEAT, NULL, 0, &lens[2]);
    for (int i = 0; i < 20000; i++) {
        struct roompkt p;
        len = (size_t)(rand_r(&seed) % sizeof(buf));
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)rand_r(&seed);
        if (roompkt_parse(buf, len, &p) == ROOM_OK) {
            assert_true(p.type >= 1 && p.type <= 4);
            if (p.type == MAGPIE__PACKAGE_TYPE__SIGN_IN)
                assert_true(p.sign_in->token[0] != '\0' && roompkt_room_ok(p.sign_in->roomid));
            if (p.type == MAGPIE__PACKAGE_TYPE__MESSAGE)
                assert_true(p.msg->data.len > 0);
        } else {
            assert_non_null(p.why);
        }
        roompkt_free(&p);
    }
    for (int f = 0; f < 3; f++) {
        for (size_t at = 0; at < lens[f]; at++) {
            for (int v = 0; v < 256; v += 7) {
                struct roompkt p;
                memcpy(buf, frames[f], lens[f]);
                buf[at] = (uint8_t)v;
                roompkt_parse(buf, lens[f], &p);
                roompkt_free(&p);
                roompkt_parse(buf, at, &p); /* truncated */
                roompkt_free(&p);
            }
        }
        free(frames[f]);
    }
}

/* ---- replies ---- */

static void test_replies(void **state)
{
    size_t len;
    uint8_t *b = roompkt_err(ROOM_E_SIGN_IN, ROOM_R_SIGN_IN, &len);
    Magpie__Reply *r = magpie__reply__unpack(NULL, len, b);
    assert_non_null(r);
    assert_int_equal(r->type, MAGPIE__PACKAGE_TYPE__UNKNOWN);
    Magpie__Err *e = magpie__err__unpack(NULL, r->data.len, r->data.data);
    assert_non_null(e);
    assert_int_equal(e->code, 100);
    assert_string_equal(e->msg, "sign in first");
    magpie__err__free_unpacked(e, NULL);
    magpie__reply__free_unpacked(r, NULL);
    free(b);

    /* success: code 0 is proto3's default, so Err packs to just its msg, and a client reads code 0 */
    b = roompkt_err(ROOM_OK, ROOM_R_OK, &len);
    r = magpie__reply__unpack(NULL, len, b);
    e = magpie__err__unpack(NULL, r->data.len, r->data.data);
    assert_int_equal(e->code, 0);
    assert_string_equal(e->msg, "ok");
    magpie__err__free_unpacked(e, NULL);
    magpie__reply__free_unpacked(r, NULL);
    free(b);

    b = roompkt_reply(MAGPIE__PACKAGE_TYPE__HEARTBEAT, "pong", 4, &len);
    r = magpie__reply__unpack(NULL, len, b);
    assert_int_equal(r->type, MAGPIE__PACKAGE_TYPE__HEARTBEAT);
    assert_int_equal(r->data.len, 4);
    assert_memory_equal(r->data.data, "pong", 4);
    magpie__reply__free_unpacked(r, NULL);
    free(b);
}

/* ---- the bus ---- */

static void test_bus(void **state)
{
    size_t len;
    uint8_t *b = roompkt_bus_pack("lobby", 1, "\x00\x01binary", 8, &len);
    Magpie__BroadcastRoomReq *m = roompkt_bus_parse(b, len);
    assert_non_null(m);
    assert_string_equal(m->roomid, "lobby");
    assert_int_equal(m->msglv, 1);
    assert_int_equal(m->data.len, 8);
    assert_memory_equal(m->data.data, "\x00\x01binary", 8);
    magpie__broadcast_room_req__free_unpacked(m, NULL);
    free(b);

    b = roompkt_bus_pack("lobby", 0, "", 0, &len); /* nothing to deliver */
    assert_null(roompkt_bus_parse(b, len));
    free(b);
    assert_null(roompkt_bus_parse("\x0f garbage", 9));
    assert_null(roompkt_bus_parse("", 0));
}

/* ---- batches ---- */

/* Unpack a delivery frame the way the seed's client does: Reply, then BroadcastRoomReq, then split data
 * at each 4-byte little-endian length. Returns how many messages; msgs[i] point into *owner. */
static int unpack_batch(const uint8_t *frame, size_t len, Magpie__Reply **reply,
                        Magpie__BroadcastRoomReq **owner, const uint8_t **msgs, size_t *lens, int max)
{
    Magpie__Reply *r = magpie__reply__unpack(NULL, len, frame);
    Magpie__BroadcastRoomReq *b;
    size_t off = 0;
    int n = 0;

    assert_non_null(r);
    assert_int_equal(r->type, MAGPIE__PACKAGE_TYPE__MESSAGE);
    b = magpie__broadcast_room_req__unpack(NULL, r->data.len, r->data.data);
    assert_non_null(b);
    while (off < b->data.len) {
        const uint8_t *p = b->data.data + off;
        size_t l;
        assert_true(off + 4 <= b->data.len);
        l = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
        assert_true(off + 4 + l <= b->data.len);
        assert_true(n < max);
        msgs[n] = p + 4;
        lens[n++] = l;
        off += 4 + l;
    }
    *reply = r;
    *owner = b;
    return n;
}

static void test_batch_layout(void **state)
{
    struct roombatch b = {0};
    Magpie__Reply *r;
    Magpie__BroadcastRoomReq *m;
    const uint8_t *msgs[8];
    size_t lens[8], n, w;
    uint8_t *frame;

    assert_int_equal(roombatch_add(&b, "pack1", 5, 0), MP_OK);
    assert_int_equal(roombatch_add(&b, "i am pack2", 10, 0), MP_OK);
    /* exactly the seed's example: |5 0 0 0|pack1|10 0 0 0|i am pack2| */
    assert_int_equal(b.len, 4 + 5 + 4 + 10);
    assert_memory_equal(b.buf, "\x05\x00\x00\x00pack1\x0a\x00\x00\x00i am pack2", b.len);
    assert_int_equal(b.count, 2);
    assert_false(b.important);

    n = roombatch_packed_size(&b, "lobby");
    frame = malloc(n);
    w = roombatch_pack(&b, "lobby", frame);
    assert_int_equal(w, n);
    assert_int_equal(unpack_batch(frame, n, &r, &m, msgs, lens, 8), 2);
    assert_string_equal(m->roomid, "lobby");
    assert_int_equal(m->msglv, MAGPIE__MSG_LEVEL__NORMAL);
    assert_memory_equal(msgs[0], "pack1", 5);
    assert_memory_equal(msgs[1], "i am pack2", 10);
    magpie__broadcast_room_req__free_unpacked(m, NULL);
    magpie__reply__free_unpacked(r, NULL);
    free(frame);

    /* one important message makes the batch important */
    assert_int_equal(roombatch_add(&b, "", 0, 1), MP_OK);
    assert_true(b.important);
    n = roombatch_packed_size(&b, "lobby");
    frame = malloc(n);
    assert_int_equal(roombatch_pack(&b, "lobby", frame), n);
    assert_int_equal(unpack_batch(frame, n, &r, &m, msgs, lens, 8), 3);
    assert_int_equal(m->msglv, MAGPIE__MSG_LEVEL__IMPORTANT);
    assert_int_equal(lens[2], 0);
    magpie__broadcast_room_req__free_unpacked(m, NULL);
    magpie__reply__free_unpacked(r, NULL);
    free(frame);

    roombatch_clear(&b);
    assert_null(b.buf);
    assert_int_equal(b.count, 0);
    assert_int_equal(b.len, 0);
    assert_false(b.important);
}

static void test_batch_many_and_large(void **state)
{
    struct roombatch b = {0};
    Magpie__Reply *r;
    Magpie__BroadcastRoomReq *m;
    const uint8_t *msgs[300];
    size_t lens[300], n;
    uint8_t *frame, *big = malloc(70000);
    char msg[32];

    memset(big, 'B', 70000);
    for (int i = 0; i < 256; i++) {
        snprintf(msg, sizeof(msg), "message %d", i);
        assert_int_equal(roombatch_add(&b, msg, strlen(msg), 0), MP_OK);
    }
    /* a length above 65535 uses the upper bytes of the prefix */
    assert_int_equal(roombatch_add(&b, big, 70000, 0), MP_OK);
    n = roombatch_packed_size(&b, "r");
    frame = malloc(n);
    assert_int_equal(roombatch_pack(&b, "r", frame), n);
    assert_int_equal(unpack_batch(frame, n, &r, &m, msgs, lens, 300), 257);
    for (int i = 0; i < 256; i++) {
        snprintf(msg, sizeof(msg), "message %d", i);
        assert_int_equal(lens[i], strlen(msg));
        assert_memory_equal(msgs[i], msg, lens[i]);
    }
    assert_int_equal(lens[256], 70000);
    assert_memory_equal(msgs[256], big, 70000);
    magpie__broadcast_room_req__free_unpacked(m, NULL);
    magpie__reply__free_unpacked(r, NULL);
    free(frame);
    free(big);
    roombatch_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_in),      cmocka_unit_test(test_room_ids),
        cmocka_unit_test(test_message),      cmocka_unit_test(test_types),
        cmocka_unit_test(test_garbage),      cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_replies),      cmocka_unit_test(test_bus),
        cmocka_unit_test(test_batch_layout), cmocka_unit_test(test_batch_many_and_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
