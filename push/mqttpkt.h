/* mqttpkt.h -- MQTT 3.1.1 control packets (OASIS mqtt-v3.1.1-os), parsed and built without any I/O, so that
 * every rule can be unit-tested and fuzzed against hostile input (mqtt.c is the protocol).
 *
 * Over WebSocket a packet may span several messages and a message may hold several packets (MQTT 3.1.1
 * §6), so mqttpkt_next() cuts packets out of a byte stream: fixed header (type, flags), remaining length
 * (1 to 4 bytes, 7 bits each; a fifth byte, or a length over the limit, is malformed) and the variable part.
 * Each decoder then checks one packet type: reserved flags, string lengths, UTF-8 (no U+0000, no
 * surrogates), topic rules (no wildcard in a PUBLISH topic, a well-formed filter in SUBSCRIBE).
 */
#ifndef PUSH_MQTTPKT_H
#define PUSH_MQTTPKT_H

#include <stddef.h>
#include <stdint.h>

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
};

/* The type's name ("PUBLISH"), "INVALID" for anything else: logs and metric labels (static strings). */
const char *mqttpkt_type_name(int type);

/* CONNACK return codes (3.1.1 §3.2.2.3). */
#define MQTT_RC_ACCEPTED       0
#define MQTT_RC_BAD_VERSION    1
#define MQTT_RC_BAD_CLIENT_ID  2
#define MQTT_RC_UNAVAILABLE    3
#define MQTT_RC_BAD_LOGIN      4
#define MQTT_RC_NOT_AUTHORIZED 5
#define MQTT_SUBACK_FAILURE    0x80
#define MQTT_FLAG_DUP          0x08 /* PUBLISH fixed-header flag: a re-delivery (3.1.1 §3.3.1.1) */

/* Why a packet is refused (the log line; MQTT itself answers a malformed packet by closing). */
#define MQTT_E_REMAINING   "malformed remaining length"
#define MQTT_E_TOO_BIG     "packet too large"
#define MQTT_E_FLAGS       "reserved flags set"
#define MQTT_E_SHORT       "packet ends early"
#define MQTT_E_LONG        "bytes after the packet's fields"
#define MQTT_E_UTF8        "string not UTF-8 (or holds U+0000)"
#define MQTT_E_PROTOCOL    "not an MQTT CONNECT"
#define MQTT_E_TOPIC       "bad topic: empty, too long, or a wildcard in PUBLISH"
#define MQTT_E_FILTER      "bad topic filter"
#define MQTT_E_QOS         "bad QoS"
#define MQTT_E_PACKET_ID   "packet id 0"
#define MQTT_E_NO_TOPICS   "SUBSCRIBE or UNSUBSCRIBE without a topic"
#define MQTT_E_CONNECT_FLG "bad CONNECT flags"
#define MQTT_E_TYPE        "packet type a client may not send"

/* One packet cut out of the stream: points into the caller's buffer. */
struct mqttpkt {
    int type;
    unsigned flags; /* the low 4 bits of the first byte */
    const uint8_t *body;
    size_t len; /* remaining length */
};

/* The next packet of buf[0..len): 1 with *p and *used (bytes it took) set; 0 when more bytes are needed;
 * -1 with *why when the stream is malformed (a remaining length of 5 bytes, or over max_len). */
int mqttpkt_next(const uint8_t *buf, size_t len, size_t max_len, struct mqttpkt *p, size_t *used,
                 const char **why);

/* A string of the packet: pointer into it and its length. */
struct mqtt_str {
    const char *s;
    size_t len;
};

struct mqtt_connect {
    int level; /* protocol level: 4 is 3.1.1 */
    int clean, will, has_user, has_pass;
    unsigned keepalive; /* seconds; 0 = none */
    struct mqtt_str client_id, user, pass;
};

/* CONNECT. Returns NULL, or why it is refused; *rc is the CONNACK code to answer with before closing
 * (MQTT_RC_BAD_VERSION for another protocol level) or -1 when the answer is to close at once. */
const char *mqttpkt_connect(const struct mqttpkt *p, struct mqtt_connect *out, int *rc);

struct mqtt_publish {
    int qos, dup, retain;
    unsigned packet_id; /* 0 for QoS 0 */
    struct mqtt_str topic;
    const uint8_t *payload;
    size_t payload_len;
};

/* PUBLISH from a client; topic at most max_topic bytes. */
const char *mqttpkt_publish(const struct mqttpkt *p, size_t max_topic, struct mqtt_publish *out);

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: the packet id. */
const char *mqttpkt_ack(const struct mqttpkt *p, unsigned *packet_id);

/* SUBSCRIBE (with_qos) or UNSUBSCRIBE: the packet id, then each topic filter (and its requested QoS) through
 * fn, in order; a filter is checked (UTF-8, at most max_topic bytes, '#' last and alone in its level, '+'
 * alone in its level) before fn sees it. Returns NULL or why; fn may have seen the filters before a bad one.
 */
const char *mqttpkt_subscribe(const struct mqttpkt *p, int with_qos, size_t max_topic, unsigned *packet_id,
                              void (*fn)(const char *filter, size_t len, int qos, void *arg), void *arg);

/* PINGREQ and DISCONNECT: no flags, nothing after the fixed header. */
const char *mqttpkt_empty(const struct mqttpkt *p);

/* Server packets, each a malloc'd buffer (caller frees) and its length in *len; NULL when out of memory. */
uint8_t *mqttpkt_connack(int session_present, int rc, size_t *len);
uint8_t *mqttpkt_publish_build(const char *topic, const void *payload, size_t payload_len, int qos,
                               unsigned packet_id, size_t *len);
uint8_t *mqttpkt_ack_build(int type, unsigned packet_id, size_t *len); /* PUBACK PUBREC PUBCOMP UNSUBACK */
uint8_t *mqttpkt_suback(unsigned packet_id, const uint8_t *codes, size_t n, size_t *len);
uint8_t *mqttpkt_pingresp(size_t *len);

#endif
