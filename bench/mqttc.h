/* mqttc.h -- the client side of MQTT 3.1.1 (OASIS standard, 2014) for magpie-bench: encode the packets a
 * client sends (CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT) and cut the server's packets out of
 * a byte stream (a WebSocket binary message or a TCP read may hold several packets or part of one, so the
 * reader keeps what is incomplete).
 *
 * Hand-written for the reason wsframe.c is (README.md, "Why raw epoll"): the generator must not share the
 * server's code (push/mqttpkt.c), and no library the SPEC names speaks MQTT. Strict, because a generator
 * that forgives a broken stream reports a broken server as a fast one: a packet type a server may not send
 * (or QoS 2's PUBREC/PUBREL/PUBCOMP, which this client never asks for), reserved flag bits other than the
 * standard's, a remaining length over 4 bytes or past the caller's limit, a fixed-size packet of the wrong
 * size, a PUBLISH with QoS 3, a wildcard, U+0000 or invalid UTF-8 in its topic, or a topic longer than the
 * packet, a SUBACK return code other than 0, 1, 2 and 0x80: all are errors, never guesses.
 */
#ifndef BENCH_MQTTC_H
#define BENCH_MQTTC_H

#include <stddef.h>
#include <stdint.h>

enum mqttc_type {
    MQTTC_CONNACK = 2,
    MQTTC_PUBLISH = 3,
    MQTTC_PUBACK = 4,
    MQTTC_SUBACK = 9,
    MQTTC_UNSUBACK = 11,
    MQTTC_PINGRESP = 13,
};

enum mqttc_error {
    MQTTC_E_TYPE = -1,   /* a packet type a server does not send to this client */
    MQTTC_E_FLAGS = -2,  /* reserved bits of the fixed header */
    MQTTC_E_LENGTH = -3, /* remaining length malformed, or wrong for the packet */
    MQTTC_E_TOOBIG = -4, /* a packet over the reader's limit */
    MQTTC_E_TOPIC = -5,  /* PUBLISH topic: empty, wildcard, U+0000 or not UTF-8 */
    MQTTC_E_CODE = -6,   /* CONNACK flags or SUBACK return code out of range */
    MQTTC_E_NOMEM = -7,
};

#define MQTTC_MAX_HEADER 5 /* type byte + 4 bytes of remaining length */
#define MQTTC_MAX_REMAIN 268435455u

/* One packet from the server; the pointers are into the reader's input, valid during the callback. */
struct mqttc_packet {
    int type;    /* enum mqttc_type */
    int session; /* CONNACK: session present */
    int rc;      /* CONNACK: return code (0 = accepted) */
    unsigned packet_id;
    int qos, dup, retain; /* PUBLISH */
    const char *topic;
    size_t topic_len;
    const uint8_t *payload; /* PUBLISH: the application message; SUBACK: the return codes */
    size_t payload_len;
};

/* Return 0 to go on, nonzero to stop mqttc_feed. */
typedef int (*mqttc_fn)(void *arg, const struct mqttc_packet *p);

struct mqttc_reader {
    uint8_t *buf; /* an incomplete packet's bytes (malloc'd), NULL when none */
    size_t len, cap;
    size_t max_packet; /* the largest whole packet accepted */
};

void mqttc_reader_init(struct mqttc_reader *r, size_t max_packet);
void mqttc_reader_free(struct mqttc_reader *r);

/* Feed stream bytes; calls fn for each complete packet. Returns 0, 1 when fn asked to stop (the reader is
 * not touched after that call, so fn may free it; stop only to drop the connection), or a negative
 * mqttc_error (the connection must be dropped). */
int mqttc_feed(struct mqttc_reader *r, const uint8_t *data, size_t n, mqttc_fn fn, void *arg);

const char *mqttc_strerror(int err);

/* Encoders: write one packet into out, return its length, or 0 when cap is too small or an argument is out
 * of range (strings longer than 65535 bytes, a packet id of 0 where one is needed). */
size_t mqttc_connect(uint8_t *out, size_t cap, const char *client_id, const char *user, const char *pass,
                     unsigned keepalive_s, int clean);
size_t mqttc_subscribe(uint8_t *out, size_t cap, unsigned packet_id, const char *filter, int qos);
size_t mqttc_publish(uint8_t *out, size_t cap, const char *topic, const void *payload, size_t len, int qos,
                     unsigned packet_id);
size_t mqttc_puback(uint8_t *out, size_t cap, unsigned packet_id);
size_t mqttc_pingreq(uint8_t *out, size_t cap);
size_t mqttc_disconnect(uint8_t *out, size_t cap);

#endif
