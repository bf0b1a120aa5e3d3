/* Unit tests of magpie-bench's WebSocket framing (RFC 6455 §5): what it sends is valid and masked, what it
 * accepts from a server is exactly what the RFC allows, and hostile bytes never crash it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

#define LIMIT (1 << 20)

/* What the feed callback saw. */
struct seen {
    int count;
    int opcodes[16];
    size_t lens[16];
    uint8_t last[70000];
    size_t last_len;
    int stop_after; /* return nonzero after this many (0 = never) */
};

static int collect(void *arg, int opcode, const uint8_t *data, size_t len)
{
    struct seen *s = arg;
    if (s->count < 16) {
        s->opcodes[s->count] = opcode;
        s->lens[s->count] = len;
    }
    s->count++;
    if (len <= sizeof(s->last)) {
        memcpy(s->last, data, len);
        s->last_len = len;
    }
    return s->stop_after && s->count >= s->stop_after;
}

/* An unmasked server frame. */
static size_t server_frame(uint8_t *out, int fin, int opcode, const uint8_t *payload, size_t len)
{
    size_t p = 0;
    out[p++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[p++] = (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[p++] = 126;
        out[p++] = (uint8_t)(len >> 8);
        out[p++] = (uint8_t)len;
    } else {
        out[p++] = 127;
        for (int i = 7; i >= 0; i--)
            out[p++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + p, payload, len);
    return p + len;
}

static void test_encode_is_masked_and_reads_back(void **state)
{
    static uint8_t payload[70000], out[70100];
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 31);
    for (size_t t = 0; t < sizeof(lens) / sizeof(lens[0]); t++) {
        size_t len = lens[t];
        size_t n = wsf_encode(out, sizeof(out), WSF_BINARY, payload, len, key);
        assert_int_equal(n, wsf_encoded_len(len));
        struct wsf_header h;
        int hl = wsf_parse_header(out, n, LIMIT, 1, &h);
        assert_true(hl > 0);
        assert_true(h.fin);
        assert_true(h.masked);
        assert_int_equal(h.opcode, WSF_BINARY);
        assert_int_equal(h.len, len);
        assert_memory_equal(h.mask, key, 4);
        assert_int_equal(hl + len, n);
        if (len >= 4) /* masked on the wire */
            assert_true(memcmp(out + hl, payload, len) != 0);
        wsf_mask(out + hl, len, key, 0);
        if (len > 0)
            assert_memory_equal(out + hl, payload, len);
    }
    /* a server would reject a client frame without the mask: ours always has it (checked above) */
}

static void test_rfc_example_masked_hello(void **state)
{
    /* RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d */
    const uint8_t expect[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t out[32];
    assert_int_equal(wsf_encode(out, sizeof(out), WSF_TEXT, "Hello", 5, key), sizeof(expect));
    assert_memory_equal(out, expect, sizeof(expect));
    assert_int_equal(wsf_encode(out, 5, WSF_TEXT, "Hello", 5, key), 0); /* too small: nothing */
}

static void test_feed_reads_several_frames_and_keeps_a_partial_one(void **state)
{
    static uint8_t buf[200000];
    static uint8_t big[70000];
    static struct seen s;
    struct wsf_reader r;
    memset(&s, 0, sizeof(s));
    memset(big, 'x', sizeof(big));
    size_t n = server_frame(buf, 1, WSF_TEXT, (const uint8_t *)"Hello", 5);
    n += server_frame(buf + n, 1, WSF_BINARY, big, 300);
    size_t second_end = n;
    n += server_frame(buf + n, 1, WSF_BINARY, big, sizeof(big));
    wsf_reader_init(&r, LIMIT);
    /* all but the last byte: two frames consumed, the third left */
    long used = wsf_feed(&r, buf, n - 1, collect, &s);
    assert_int_equal(used, second_end);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.opcodes[0], WSF_TEXT);
    assert_int_equal(s.lens[0], 5);
    assert_int_equal(s.lens[1], 300);
    /* the rest, presented again with its last byte */
    used = wsf_feed(&r, buf + second_end, n - second_end, collect, &s);
    assert_int_equal(used, n - second_end);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.lens[2], sizeof(big));
    /* byte by byte: nothing is consumed until a frame is complete */
    memset(&s, 0, sizeof(s));
    size_t off = 0;
    for (size_t end = 1; end <= second_end; end++) {
        used = wsf_feed(&r, buf + off, end - off, collect, &s);
        assert_true(used >= 0);
        off += (size_t)used;
    }
    assert_int_equal(off, second_end);
    assert_int_equal(s.count, 2);
    wsf_reader_free(&r);
}

static void test_fragments_are_reassembled_around_a_ping(void **state)
{
    uint8_t buf[256];
    static struct seen s;
    struct wsf_reader r;
    memset(&s, 0, sizeof(s));
    size_t n = server_frame(buf, 0, WSF_TEXT, (const uint8_t *)"Hel", 3);
    n += server_frame(buf + n, 1, WSF_PING, (const uint8_t *)"p", 1);
    n += server_frame(buf + n, 0, WSF_CONT, (const uint8_t *)"lo, ", 4);
    n += server_frame(buf + n, 1, WSF_CONT, (const uint8_t *)"world", 5);
    wsf_reader_init(&r, LIMIT);
    assert_int_equal(wsf_feed(&r, buf, n, collect, &s), n);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.opcodes[0], WSF_PING);
    assert_int_equal(s.opcodes[1], WSF_TEXT);
    assert_int_equal(s.last_len, 12);
    assert_memory_equal(s.last, "Hello, world", 12);
    wsf_reader_free(&r);
}

/* Feed one hostile frame; returns what wsf_feed returned. */
static long feed_one(const uint8_t *buf, size_t n, size_t limit)
{
    static struct seen s;
    struct wsf_reader r;
    memset(&s, 0, sizeof(s));
    wsf_reader_init(&r, limit);
    long rc = wsf_feed(&r, buf, n, collect, &s);
    if (rc < 0)
        assert_int_equal(s.count, 0); /* a bad frame is never delivered */
    wsf_reader_free(&r);
    return rc;
}

static void test_protocol_violations_are_errors(void **state)
{
    /* masked frame from a server */
    const uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'a'};
    assert_int_equal(feed_one(masked, sizeof(masked), LIMIT), WSF_E_MASKED);
    /* RSV1 without an extension */
    const uint8_t rsv[] = {0xC1, 0x01, 'a'};
    assert_int_equal(feed_one(rsv, sizeof(rsv), LIMIT), WSF_E_RSV);
    /* reserved opcodes 3 and 0xB */
    const uint8_t op3[] = {0x83, 0x00}, opb[] = {0x8B, 0x00};
    assert_int_equal(feed_one(op3, sizeof(op3), LIMIT), WSF_E_OPCODE);
    assert_int_equal(feed_one(opb, sizeof(opb), LIMIT), WSF_E_OPCODE);
    /* control frame fragmented, or longer than 125 */
    const uint8_t ping_frag[] = {0x09, 0x00};
    assert_int_equal(feed_one(ping_frag, sizeof(ping_frag), LIMIT), WSF_E_CONTROL);
    const uint8_t ping_long[] = {0x89, 126, 0x00, 126};
    assert_int_equal(feed_one(ping_long, sizeof(ping_long), LIMIT), WSF_E_CONTROL);
    /* non-minimal lengths and the 64-bit length's top bit */
    const uint8_t len16_small[] = {0x82, 126, 0x00, 0x05, 1, 2, 3, 4, 5};
    assert_int_equal(feed_one(len16_small, sizeof(len16_small), LIMIT), WSF_E_LENGTH);
    const uint8_t len64_small[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    assert_int_equal(feed_one(len64_small, sizeof(len64_small), LIMIT), WSF_E_LENGTH);
    const uint8_t len64_msb[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(feed_one(len64_msb, sizeof(len64_msb), LIMIT), WSF_E_LENGTH);
    /* over the caller's limit: refused from the header, before any payload arrives */
    const uint8_t huge[] = {0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0};
    assert_int_equal(feed_one(huge, sizeof(huge), LIMIT), WSF_E_TOOBIG);
    /* continuation with no message open; a new message inside a fragmented one */
    const uint8_t cont[] = {0x80, 0x01, 'a'};
    assert_int_equal(feed_one(cont, sizeof(cont), LIMIT), WSF_E_SEQUENCE);
    const uint8_t interleaved[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'};
    assert_int_equal(feed_one(interleaved, sizeof(interleaved), LIMIT), WSF_E_SEQUENCE);
}

static void test_fragments_over_the_limit_are_refused(void **state)
{
    uint8_t buf[600];
    uint8_t part[200];
    memset(part, 'z', sizeof(part));
    size_t n = server_frame(buf, 0, WSF_BINARY, part, 200);
    n += server_frame(buf + n, 0, WSF_CONT, part, 200);
    n += server_frame(buf + n, 1, WSF_CONT, part, 50);
    assert_int_equal(feed_one(buf, n, 449), WSF_E_TOOBIG);
    assert_int_equal(feed_one(buf, n, 450), (long)n); /* exactly the limit is fine */
    assert_int_equal(feed_one(buf, n, 1000), (long)n);
}

static void test_callback_can_stop_the_feed(void **state)
{
    uint8_t buf[64];
    static struct seen s;
    struct wsf_reader r;
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    size_t one = server_frame(buf, 1, WSF_CLOSE, (const uint8_t *)"\x03\xe8", 2);
    size_t n = one + server_frame(buf + one, 1, WSF_TEXT, (const uint8_t *)"after", 5);
    wsf_reader_init(&r, LIMIT);
    assert_int_equal(wsf_feed(&r, buf, n, collect, &s), one);
    assert_int_equal(s.count, 1);
    assert_int_equal(wsf_feed(&r, buf + one, n - one, collect, &s), 0); /* stopped: nothing more */
    wsf_reader_free(&r);
}

static void test_random_garbage_never_crashes(void **state)
{
    static uint8_t buf[4096];
    static struct seen s;
    srand(42);
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand();
        /* half the rounds: a plausible first byte, so the parser gets deeper */
        if (round % 2 && n > 0)
            buf[0] = (uint8_t)(0x80 | (rand() % 3));
        struct wsf_reader r;
        memset(&s, 0, sizeof(s));
        wsf_reader_init(&r, 2048);
        long used = wsf_feed(&r, buf, n, collect, &s);
        assert_true(used <= (long)n);
        wsf_reader_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_is_masked_and_reads_back),
        cmocka_unit_test(test_rfc_example_masked_hello),
        cmocka_unit_test(test_feed_reads_several_frames_and_keeps_a_partial_one),
        cmocka_unit_test(test_fragments_are_reassembled_around_a_ping),
        cmocka_unit_test(test_protocol_violations_are_errors),
        cmocka_unit_test(test_fragments_over_the_limit_are_refused),
        cmocka_unit_test(test_callback_can_stop_the_feed),
        cmocka_unit_test(test_random_garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
