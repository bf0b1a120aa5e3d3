/* Unit tests of push/mqttpkt.c: MQTT 3.1.1 packets (SPEC §4.3) as stock clients send them, cut out of a byte
 * stream that splits and joins them, and hostile bytes: every refusal names its documented reason; nothing
 * may crash or leak (the sanitizer build runs these too), on random and mutated bytes included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqttpkt.h"

#define MAX 16384

/* One whole packet of the bytes (asserted), for the decoders. */
static struct mqttpkt one(const void *bytes, size_t len)
{
    struct mqttpkt p;
    const char *why = NULL;
    size_t used = 0;
    assert_int_equal(mqttpkt_next(bytes, len, MAX, &p, &used, &why), 1);
    assert_int_equal(used, len);
    return p;
}
#define ONE(lit) one(lit, sizeof(lit) - 1)

static void test_remaining_length(void **state)
{
    struct mqttpkt p;
    const char *why = NULL;
    size_t used;
    uint8_t big[3 + 200];
    (void)state;
    assert_int_equal(mqttpkt_next((const uint8_t *)"\xc0", 1, MAX, &p, &used, &why), 0);
    assert_int_equal(mqttpkt_next((const uint8_t *)"\xc0\x00", 2, MAX, &p, &used, &why), 1);
    assert_int_equal(p.type, MQTT_PINGREQ);
    assert_int_equal(used, 2);
    /* 200 = 0xC8 0x01: two bytes; one short of it waits for more */
    big[0] = 0x30;
    big[1] = 0xC8;
    big[2] = 0x01;
    memset(big + 3, 'x', 200);
    assert_int_equal(mqttpkt_next(big, sizeof(big) - 1, MAX, &p, &used, &why), 0);
    assert_int_equal(mqttpkt_next(big, sizeof(big), MAX, &p, &used, &why), 1);
    assert_int_equal(p.len, 200);
    assert_int_equal(mqttpkt_next((const uint8_t *)"\x30\xff\xff\xff\xff\x01", 6, MAX, &p, &used, &why), -1);
    assert_string_equal(why, MQTT_E_REMAINING);
    assert_int_equal(mqttpkt_next((const uint8_t *)"\x30\x80\x00", 3, MAX, &p, &used, &why), -1);
    assert_string_equal(why, MQTT_E_REMAINING);
    assert_int_equal(mqttpkt_next((const uint8_t *)"\x30\xff\xff\x7f", 4, MAX, &p, &used, &why), -1);
    assert_string_equal(why, MQTT_E_TOO_BIG);
}

static void test_connect(void **state)
{
    /* mqtt.js: MQTT 4, clean, user and password, keep-alive 30, empty client id */
    struct mqttpkt p = ONE("\x10\x1d\x00\x04MQTT\x04\xc2\x00\x1e\x00\x00\x00\x06magpie\x00\x07ticket!");
    struct mqtt_connect c;
    int rc;
    (void)state;
    assert_null(mqttpkt_connect(&p, &c, &rc));
    assert_int_equal(c.level, 4);
    assert_true(c.clean);
    assert_int_equal(c.keepalive, 30);
    assert_int_equal(c.client_id.len, 0);
    assert_int_equal(c.pass.len, 7);
    assert_memory_equal(c.pass.s, "ticket!", 7);
    p = ONE("\x10\x0c\x00\x04MQTT\x03\x02\x00\x1e\x00\x00");
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_PROTOCOL);
    assert_int_equal(rc, MQTT_RC_BAD_VERSION);
    p = ONE("\x10\x0c\x00\x04MQTX\x04\x02\x00\x1e\x00\x00");
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_PROTOCOL);
    assert_int_equal(rc, -1);
    p = ONE("\x10\x0c\x00\x04MQTT\x04\x03\x00\x1e\x00\x00"); /* reserved flag */
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_CONNECT_FLG);
    p = ONE("\x10\x0e\x00\x04MQTT\x04\x42\x00\x1e\x00\x00\x00\x00"); /* password without user name */
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_CONNECT_FLG);
    p = ONE("\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x00\x00"); /* a byte too many */
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_LONG);
    p = ONE("\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x05"); /* client id runs past the end */
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_SHORT);
    p = ONE("\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01\xff"); /* client id not UTF-8 */
    assert_string_equal(mqttpkt_connect(&p, &c, &rc), MQTT_E_UTF8);
}

static void test_publish(void **state)
{
    struct mqttpkt p = ONE("\x32\x10\x00\x07user/42\x00\x07hello");
    struct mqtt_publish pub;
    (void)state;
    assert_null(mqttpkt_publish(&p, 256, &pub));
    assert_int_equal(pub.qos, 1);
    assert_int_equal(pub.packet_id, 7);
    assert_int_equal(pub.topic.len, 7);
    assert_int_equal(pub.payload_len, 5);
    assert_memory_equal(pub.payload, "hello", 5);
    p = ONE("\x30\x0b\x00\x07user/42hi"); /* QoS 0: no packet id */
    assert_null(mqttpkt_publish(&p, 256, &pub));
    assert_int_equal(pub.payload_len, 2);
    p = ONE("\x36\x0b\x00\x07user/42hi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_QOS);
    p = ONE("\x32\x0d\x00\x07user/42\x00\x00hi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_PACKET_ID);
    p = ONE("\x30\x0b\x00\x07user/#2hi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_TOPIC);
    p = ONE("\x30\x0b\x00\x07user/+2hi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_TOPIC);
    p = ONE("\x30\x0b\x00\x07user/42hi");
    assert_string_equal(mqttpkt_publish(&p, 6, &pub), MQTT_E_TOPIC);
    p = ONE("\x30\x04\x00\x00hi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_TOPIC);
    p = ONE("\x30\x0b\x00\x07user/\xc0\xafhi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_UTF8);
    p = ONE("\x30\x0b\x00\x07user/\x00\x32hi");
    assert_string_equal(mqttpkt_publish(&p, 256, &pub), MQTT_E_UTF8);
}

struct seen {
    char filters[8][64];
    int qos[8];
    int n;
};

static void collect(const char *f, size_t len, int qos, void *arg)
{
    struct seen *s = arg;
    snprintf(s->filters[s->n], sizeof(s->filters[0]), "%.*s", (int)len, f);
    s->qos[s->n++] = qos;
}

static void test_subscribe(void **state)
{
    struct mqttpkt p = ONE("\x82\x15\x00\x03\x00\x08me/inbox\x02\x00\x01#\x00\x00\x01+\x01");
    struct seen s = {0};
    unsigned pid;
    (void)state;
    assert_null(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s));
    assert_int_equal(pid, 3);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.filters[0], "me/inbox");
    assert_int_equal(s.qos[0], 2);
    assert_string_equal(s.filters[1], "#");
    p = ONE("\x82\x07\x00\x03\x00\x02"
            "a#\x00");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_FILTER);
    p = ONE("\x82\x09\x00\x03\x00\x04#/me\x00");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_FILTER);
    p = ONE("\x82\x08\x00\x03\x00\x03"
            "a+b\x00");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_FILTER);
    p = ONE("\x82\x08\x00\x03\x00\x03"
            "a/b\x03");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_QOS);
    p = ONE("\x82\x02\x00\x03");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_NO_TOPICS);
    p = ONE("\x80\x08\x00\x03\x00\x03"
            "a/b\x00");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_FLAGS);
    p = ONE("\x82\x08\x00\x00\x00\x03"
            "a/b\x00");
    assert_string_equal(mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s), MQTT_E_PACKET_ID);
    p = ONE("\xa2\x0c\x00\x05\x00\x08me/inbox"); /* UNSUBSCRIBE: no QoS bytes */
    s.n = 0;
    assert_null(mqttpkt_subscribe(&p, 0, 256, &pid, collect, &s));
    assert_int_equal(s.n, 1);
}

static void test_acks_and_empty(void **state)
{
    struct mqttpkt p = ONE("\x40\x02\x00\x09");
    unsigned pid;
    (void)state;
    assert_null(mqttpkt_ack(&p, &pid));
    assert_int_equal(pid, 9);
    p = ONE("\x62\x02\x00\x09"); /* PUBREL has flags 0010 */
    assert_null(mqttpkt_ack(&p, &pid));
    p = ONE("\x60\x02\x00\x09");
    assert_string_equal(mqttpkt_ack(&p, &pid), MQTT_E_FLAGS);
    p = ONE("\x40\x03\x00\x09\x00");
    assert_string_equal(mqttpkt_ack(&p, &pid), MQTT_E_LONG);
    p = ONE("\x40\x02\x00\x00");
    assert_string_equal(mqttpkt_ack(&p, &pid), MQTT_E_PACKET_ID);
    p = ONE("\xc0\x00");
    assert_null(mqttpkt_empty(&p));
    p = ONE("\xc0\x01x");
    assert_string_equal(mqttpkt_empty(&p), MQTT_E_LONG);
    p = ONE("\xe1\x00");
    assert_string_equal(mqttpkt_empty(&p), MQTT_E_FLAGS);
}

static void test_builders(void **state)
{
    size_t len;
    uint8_t *b = mqttpkt_connack(0, MQTT_RC_BAD_LOGIN, &len);
    uint8_t codes[] = {1, 0x80};
    char payload[300];
    (void)state;
    assert_int_equal(len, 4);
    assert_memory_equal(b, "\x20\x02\x00\x04", 4);
    free(b);
    b = mqttpkt_suback(0x102, codes, 2, &len);
    assert_memory_equal(b, "\x90\x04\x01\x02\x01\x80", len);
    free(b);
    b = mqttpkt_ack_build(MQTT_PUBACK, 7, &len);
    assert_memory_equal(b, "\x40\x02\x00\x07", len);
    free(b);
    b = mqttpkt_pingresp(&len);
    assert_memory_equal(b, "\xd0\x00", len);
    free(b);
    /* a PUBLISH over 127 bytes takes two length bytes, and parses back */
    memset(payload, 'p', sizeof(payload));
    b = mqttpkt_publish_build("me/inbox", payload, sizeof(payload), 1, 65535, &len);
    {
        struct mqttpkt p = one(b, len);
        struct mqtt_publish pub;
        assert_null(mqttpkt_publish(&p, 256, &pub));
        assert_int_equal(pub.packet_id, 65535);
        assert_int_equal(pub.payload_len, sizeof(payload));
        assert_int_equal(pub.dup, 0);
    }
    /* a re-delivery (mqtt.c sets MQTT_FLAG_DUP on a built QoS 1 PUBLISH) parses as DUP, nothing else moved */
    b[0] |= MQTT_FLAG_DUP;
    {
        struct mqttpkt p = one(b, len);
        struct mqtt_publish pub;
        assert_int_equal(b[0], 0x3a);
        assert_null(mqttpkt_publish(&p, 256, &pub));
        assert_int_equal(pub.dup, 1);
        assert_int_equal(pub.qos, 1);
        assert_int_equal(pub.packet_id, 65535);
    }
    free(b);
}

/* Random and mutated bytes through every decoder: any answer but a crash. */
static void test_fuzz(void **state)
{
    static const char *seeds[] = {
        "\x10\x1d\x00\x04MQTT\x04\xc2\x00\x1e\x00\x00\x00\x06magpie\x00\x07ticket!",
        "\x32\x10\x00\x07user/42\x00\x07hello",
        "\x82\x15\x00\x03\x00\x08me/inbox\x02\x00\x01#\x00\x00\x01+\x01",
        "\x62\x02\x00\x09",
    };
    static const size_t lens[] = {31, 18, 23, 4};
    unsigned seed = 311;
    (void)state;
    for (int i = 0; i < 20000; i++) {
        uint8_t buf[64];
        size_t len = lens[i % 4], off = 0, used;
        struct mqttpkt p;
        const char *why;
        memcpy(buf, seeds[i % 4], len);
        for (int m = 0; m < 3; m++)
            buf[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
        len = (size_t)rand_r(&seed) % (len + 1);
        while (mqttpkt_next(buf + off, len - off, MAX, &p, &used, &why) == 1) {
            struct mqtt_connect c;
            struct mqtt_publish pub;
            struct seen s = {0};
            unsigned pid;
            int rc;
            off += used;
            switch (p.type) {
            case MQTT_CONNECT:
                (void)mqttpkt_connect(&p, &c, &rc);
                break;
            case MQTT_PUBLISH:
                (void)mqttpkt_publish(&p, 256, &pub);
                break;
            case MQTT_SUBSCRIBE:
                s.n = 0;
                if (p.len < 20)
                    (void)mqttpkt_subscribe(&p, 1, 256, &pid, collect, &s);
                break;
            default:
                (void)mqttpkt_ack(&p, &pid);
                break;
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remaining_length),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_acks_and_empty),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
