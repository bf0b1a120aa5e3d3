/* fuzz_mqttpkt.c -- a byte stream of MQTT 3.1.1 (SPEC §4.3) through push/mqttpkt.c as mqtt.c takes it: the
 * packets mqttpkt_next cuts out of it with the default mqtt.max_packet, each through the decoder of its
 * type with the default mqtt.max_topic; a good PUBLISH is rebuilt (mqttpkt_publish_build) and must parse
 * back to the same topic, QoS, packet id and payload.
 *
 * Invariants: a refusal has a reason; a packet lies inside the input; decoded strings lie inside their
 * packet; a good PUBLISH topic has no wildcard.
 */
#include "fuzz.h"
#include "mqttpkt.h"

#include <string.h>

static void count(const char *filter, size_t len, int qos, void *arg)
{
    FUZZ_CHECK(len > 0 && len <= 256 && qos >= 0 && qos <= 2 && filter != NULL);
    ++*(int *)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0, used;
    struct mqttpkt p;
    const char *why = NULL;
    int rc;

    while ((rc = mqttpkt_next(data + off, size - off, 16384, &p, &used, &why)) == 1) {
        struct mqtt_connect c;
        struct mqtt_publish pub;
        unsigned pid;
        int n = 0, crc;

        FUZZ_CHECK(used >= 2 && off + used <= size && p.body + p.len == data + off + used);
        off += used;
        switch (p.type) {
        case MQTT_CONNECT:
            if (mqttpkt_connect(&p, &c, &crc) == NULL)
                FUZZ_CHECK(c.level == 4 && (c.pass.len == 0 || (const uint8_t *)c.pass.s >= p.body));
            break;
        case MQTT_PUBLISH:
            if (mqttpkt_publish(&p, 256, &pub) == NULL) {
                char topic[257];
                size_t len;
                uint8_t *out;
                struct mqttpkt back;
                struct mqtt_publish again;
                FUZZ_CHECK(pub.topic.len > 0 && pub.topic.len <= 256 &&
                           !memchr(pub.topic.s, '#', pub.topic.len));
                memcpy(topic, pub.topic.s, pub.topic.len);
                topic[pub.topic.len] = '\0';
                out = mqttpkt_publish_build(topic, pub.payload, pub.payload_len, pub.qos > 1 ? 1 : pub.qos,
                                            pub.packet_id, &len);
                FUZZ_CHECK(out != NULL);
                FUZZ_CHECK(mqttpkt_next(out, len, 16384 + 300, &back, &used, &why) == 1 && used == len);
                FUZZ_CHECK(mqttpkt_publish(&back, 256, &again) == NULL &&
                           again.payload_len == pub.payload_len && again.topic.len == pub.topic.len &&
                           memcmp(again.topic.s, pub.topic.s, pub.topic.len) == 0);
                free(out);
            }
            break;
        case MQTT_SUBSCRIBE:
        case MQTT_UNSUBSCRIBE:
            why = mqttpkt_subscribe(&p, p.type == MQTT_SUBSCRIBE, 256, &pid, count, &n);
            FUZZ_CHECK(why != NULL || (n > 0 && pid > 0));
            break;
        case MQTT_PINGREQ:
        case MQTT_DISCONNECT:
            (void)mqttpkt_empty(&p);
            break;
        default:
            if ((why = mqttpkt_ack(&p, &pid)) == NULL)
                FUZZ_CHECK(pid > 0);
            break;
        }
    }
    if (rc < 0)
        FUZZ_CHECK(why != NULL);
    return 0;
}
