/* Unit tests of magpie-bench's MQTT 3.1.1 client codec: the encoders' bytes against the standard's layout,
 * every server packet split anywhere, each violation a client must catch, and random garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mqttc.h"

struct seen {
    int n;
    struct mqttc_packet p[16];
    char topic[16][32];
    char payload[16][64];
    int stop_at;
};

static int collect(void *arg, const struct mqttc_packet *p)
{
    struct seen *s = arg;
    if (s->n < 16) {
        s->p[s->n] = *p;
        memcpy(s->topic[s->n], p->topic ? p->topic : "", p->topic_len < 31 ? p->topic_len : 31);
        memcpy(s->payload[s->n], p->payload ? (const char *)p->payload : "",
               p->payload_len < 63 ? p->payload_len : 63);
    }
    s->n++;
    return s->stop_at && s->n >= s->stop_at;
}

/* CONNACK ok, SUBACK [1], PUBLISH QoS 1 me/inbox "hi" id 7, PUBACK 9, PINGRESP, PUBLISH QoS 0 a/b "",
 * UNSUBACK 3 */
static const uint8_t stream[] = {0x20, 2,    0,   0,    0x90, 3,   0,   1,   1,   0x32, 14,   0,    8, 'm',
                                 'e',  '/',  'i', 'n',  'b',  'o', 'x', 0,   7,   'h',  'i',  0x40, 2, 0,
                                 9,    0xD0, 0,   0x30, 5,    0,   3,   'a', '/', 'b',  0xB0, 2,    0, 3};

static void check_stream(const struct seen *s)
{
    assert_int_equal(s->n, 7);
    assert_int_equal(s->p[0].type, MQTTC_CONNACK);
    assert_int_equal(s->p[0].rc, 0);
    assert_int_equal(s->p[1].type, MQTTC_SUBACK);
    assert_int_equal(s->p[1].packet_id, 1);
    assert_int_equal(s->p[1].payload_len, 1);
    assert_int_equal(s->p[2].type, MQTTC_PUBLISH);
    assert_int_equal(s->p[2].qos, 1);
    assert_int_equal(s->p[2].packet_id, 7);
    assert_string_equal(s->topic[2], "me/inbox");
    assert_string_equal(s->payload[2], "hi");
    assert_int_equal(s->p[3].type, MQTTC_PUBACK);
    assert_int_equal(s->p[3].packet_id, 9);
    assert_int_equal(s->p[4].type, MQTTC_PINGRESP);
    assert_int_equal(s->p[5].type, MQTTC_PUBLISH);
    assert_int_equal(s->p[5].qos, 0);
    assert_int_equal(s->p[5].payload_len, 0);
    assert_string_equal(s->topic[5], "a/b");
    assert_int_equal(s->p[6].type, MQTTC_UNSUBACK);
}

static void test_split_at_every_position(void **state)
{
    for (size_t cut = 0; cut <= sizeof(stream); cut++) {
        struct mqttc_reader r;
        static struct seen s;
        memset(&s, 0, sizeof(s));
        mqttc_reader_init(&r, 1024);
        assert_int_equal(mqttc_feed(&r, stream, cut, collect, &s), 0);
        assert_int_equal(mqttc_feed(&r, stream + cut, sizeof(stream) - cut, collect, &s), 0);
        check_stream(&s);
        assert_int_equal(r.len, 0);
        mqttc_reader_free(&r);
    }
}

static void test_byte_by_byte(void **state)
{
    struct mqttc_reader r;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    mqttc_reader_init(&r, 1024);
    for (size_t i = 0; i < sizeof(stream); i++)
        assert_int_equal(mqttc_feed(&r, stream + i, 1, collect, &s), 0);
    check_stream(&s);
    mqttc_reader_free(&r);
}

static int bad(const uint8_t *b, size_t n, size_t max)
{
    struct mqttc_reader r;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    mqttc_reader_init(&r, max);
    int rc = mqttc_feed(&r, b, n, collect, &s);
    mqttc_reader_free(&r);
    return rc;
}

#define BAD(err, ...)                                                                                        \
    do {                                                                                                     \
        const uint8_t b_[] = {__VA_ARGS__};                                                                  \
        assert_int_equal(bad(b_, sizeof(b_), 1024), err);                                                    \
    } while (0)

static void test_violations_are_errors(void **state)
{
    BAD(MQTTC_E_TYPE, 0x10, 0);                              /* CONNECT from a server */
    BAD(MQTTC_E_TYPE, 0x50, 2, 0, 1);                        /* PUBREC: QoS 2 never asked */
    BAD(MQTTC_E_TYPE, 0x00, 0);                              /* reserved type 0 */
    BAD(MQTTC_E_FLAGS, 0x21, 2, 0, 0);                       /* CONNACK with flags */
    BAD(MQTTC_E_LENGTH, 0x20, 3, 0, 0, 0);                   /* CONNACK of 3 bytes */
    BAD(MQTTC_E_CODE, 0x20, 2, 2, 0);                        /* CONNACK reserved ack flags */
    BAD(MQTTC_E_CODE, 0x20, 2, 0, 6);                        /* CONNACK return code 6 */
    BAD(MQTTC_E_CODE, 0x90, 3, 0, 1, 3);                     /* SUBACK code 3 */
    BAD(MQTTC_E_LENGTH, 0x90, 2, 0, 1);                      /* SUBACK without codes */
    BAD(MQTTC_E_FLAGS, 0x36, 5, 0, 1, 'a', 0, 1);            /* PUBLISH QoS 3 */
    BAD(MQTTC_E_FLAGS, 0x38, 3, 0, 1, 'a');                  /* DUP with QoS 0 */
    BAD(MQTTC_E_LENGTH, 0x30, 3, 0, 5, 'a');                 /* topic longer than the packet */
    BAD(MQTTC_E_CODE, 0x32, 5, 0, 1, 'a', 0, 0);             /* QoS 1 with packet id 0 */
    BAD(MQTTC_E_TOPIC, 0x30, 2, 0, 0);                       /* empty topic */
    BAD(MQTTC_E_TOPIC, 0x30, 4, 0, 2, 'a', '#');             /* wildcard */
    BAD(MQTTC_E_TOPIC, 0x30, 4, 0, 2, 'a', '+');             /* wildcard */
    BAD(MQTTC_E_TOPIC, 0x30, 4, 0, 2, 'a', 0);               /* U+0000 */
    BAD(MQTTC_E_TOPIC, 0x30, 4, 0, 2, 0xC0, 0x80);           /* overlong */
    BAD(MQTTC_E_TOPIC, 0x30, 5, 0, 3, 0xED, 0xA0, 0x80);     /* surrogate */
    BAD(MQTTC_E_TOPIC, 0x30, 3, 0, 1, 0xE2);                 /* truncated sequence */
    BAD(MQTTC_E_LENGTH, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01); /* a fifth length byte */
    BAD(MQTTC_E_LENGTH, 0xD0, 1, 0);                         /* PINGRESP with a body */
    BAD(MQTTC_E_LENGTH, 0x40, 3, 0, 1, 0);                   /* PUBACK of 3 bytes */
    BAD(MQTTC_E_FLAGS, 0x42, 2, 0, 1);                       /* PUBACK with flags */
    /* over the limit: refused from the header alone, before the body is there */
    const uint8_t big[] = {0x30, 0x80, 0x08}; /* 1024 bytes of remaining length */
    assert_int_equal(bad(big, sizeof(big), 1024), MQTTC_E_TOOBIG);
}

static void test_encoders(void **state)
{
    uint8_t out[256];
    size_t n = mqttc_connect(out, sizeof(out), "c1", "u", "pw", 60, 1);
    const uint8_t connect[] = {0x10, 21, 0,   4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,  60,
                               0,    2,  'c', '1', 0,   1,   'u', 0,   2, 'p',  'w'};
    assert_int_equal(n, sizeof(connect));
    assert_memory_equal(out, connect, n);
    assert_int_equal(mqttc_connect(out, sizeof(out), "c1", NULL, "pw", 60, 1), 0); /* password, no user */
    n = mqttc_connect(out, sizeof(out), "c", NULL, NULL, 0, 0);
    assert_int_equal(out[9], 0); /* no flags */
    n = mqttc_subscribe(out, sizeof(out), 5, "me/inbox", 1);
    const uint8_t sub[] = {0x82, 13, 0, 5, 0, 8, 'm', 'e', '/', 'i', 'n', 'b', 'o', 'x', 1};
    assert_int_equal(n, sizeof(sub));
    assert_memory_equal(out, sub, n);
    n = mqttc_publish(out, sizeof(out), "user/7", "hey", 3, 1, 258);
    const uint8_t pub[] = {0x32, 13, 0, 6, 'u', 's', 'e', 'r', '/', '7', 1, 2, 'h', 'e', 'y'};
    assert_int_equal(n, sizeof(pub));
    assert_memory_equal(out, pub, n);
    assert_int_equal(mqttc_publish(out, sizeof(out), "t", "x", 1, 1, 0), 0); /* QoS 1 needs an id */
    assert_int_equal(mqttc_puback(out, sizeof(out), 0x1234), 4);
    assert_memory_equal(out, "\x40\x02\x12\x34", 4);
    assert_int_equal(mqttc_pingreq(out, sizeof(out)), 2);
    assert_int_equal(mqttc_disconnect(out, sizeof(out)), 2);
    /* a payload whose remaining length takes 2 bytes, read back by the reader */
    static uint8_t big[400], payload[300];
    memset(payload, 'x', sizeof(payload));
    n = mqttc_publish(big, sizeof(big), "a", payload, sizeof(payload), 0, 0);
    assert_int_equal(n, 3 + 3 + 300);
    assert_int_equal(big[1], (303 % 128) | 0x80);
    assert_int_equal(big[2], 303 / 128);
    struct mqttc_reader r;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    mqttc_reader_init(&r, 1024);
    assert_int_equal(mqttc_feed(&r, big, n, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.p[0].payload_len, 300);
    mqttc_reader_free(&r);
    assert_int_equal(mqttc_publish(big, 10, "a", payload, sizeof(payload), 0, 0), 0); /* does not fit */
}

static void test_stop_from_the_callback(void **state)
{
    struct mqttc_reader r;
    static struct seen s;
    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    mqttc_reader_init(&r, 1024);
    assert_int_equal(mqttc_feed(&r, stream, sizeof(stream), collect, &s), 1);
    assert_int_equal(s.n, 2);
    mqttc_reader_free(&r);
}

static void test_random_garbage_never_crashes(void **state)
{
    static uint8_t buf[1024];
    static struct seen s;
    srand(5);
    for (int round = 0; round < 20000; round++) {
        size_t n = 0;
        while (n < sizeof(buf) - sizeof(stream) && rand() % 8) {
            if (rand() % 2) {
                size_t off = (size_t)rand() % sizeof(stream);
                memcpy(buf + n, stream + off, sizeof(stream) - off);
                n += sizeof(stream) - off;
            } else {
                buf[n++] = (uint8_t)rand();
            }
        }
        struct mqttc_reader r;
        memset(&s, 0, sizeof(s));
        mqttc_reader_init(&r, 64);
        size_t cut = n ? (size_t)rand() % n : 0;
        if (mqttc_feed(&r, buf, cut, collect, &s) == 0)
            mqttc_feed(&r, buf + cut, n - cut, collect, &s);
        mqttc_reader_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_at_every_position), cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_violations_are_errors),   cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_stop_from_the_callback),  cmocka_unit_test(test_random_garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
