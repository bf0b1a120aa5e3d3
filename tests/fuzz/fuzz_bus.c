/* fuzz_bus.c -- the Redis pub/sub payloads a push node reads (shared/bus.h): the first input byte picks
 * the channel, the rest is the payload.
 *   0  CHAN_CONTROL, magpie-http's commands: chatpkt_control_parse, then the packet relay.c would send
 *   1  CHAN_NODE, another node's chat delivery or packet for a user: chatpkt_delivery_parse,
 *      chatpkt_user_packet_parse, chatpkt_group_delivery_parse (then every pair of its list)
 *   2  CHAN_ROOM, a room broadcast: roompkt_bus_parse, then the batch room_hub.c merges it into
 * Anyone who can publish on the Redis these nodes share can send any of them, so they are parsed as
 * hostile input like a client's.
 *
 * Invariants: a parsed command has a positive uid and what its kind needs; a parsed delivery has
 * positive ids and a packet that is the tail of the payload; a parsed broadcast carries a message.
 */
#include "chatpkt.h"
#include "fuzz.h"
#include "magpie.h"
#include "roompkt.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *payload;
    size_t len;

    if (size < 1)
        return 0;
    /* A copy of exactly the payload's size: reading past it is a sanitizer report. */
    len = size - 1;
    payload = malloc(len ? len : 1);
    FUZZ_CHECK(payload != NULL);
    memcpy((char *)payload, data + 1, len);

    switch (data[0] % 3) {
    case 0: {
        struct chat_control c;
        if (chatpkt_control_parse(payload, len, &c) == 0) {
            FUZZ_CHECK(c.uid > 0);
            if (c.cmd == CHAT_CTL_LOGOUT)
                FUZZ_CHECK(c.sid != NULL && c.sid[0] != '\0');
            if (c.cmd == CHAT_CTL_DELIVER) {
                char *s = json_dumps(c.packet, JSON_COMPACT);
                FUZZ_CHECK(s != NULL);
                free(s);
            }
        }
        chatpkt_control_free(&c);
        break;
    }
    case 1: {
        struct chat_delivery d;
        const char *packet;
        size_t packet_len;
        int64_t uid;
        if (chatpkt_delivery_parse(payload, len, &d) == 0)
            /* one seq may be 0 (a split send's half: push/chatpkt.h), never both */
            FUZZ_CHECK(d.to > 0 && d.from > 0 && d.ts >= 0 && d.from_seq >= 0 && d.to_seq >= 0 &&
                       (d.from_seq > 0 || d.to_seq > 0) && d.packet >= payload &&
                       d.packet + d.packet_len == payload + len);
        if (chatpkt_user_packet_parse(payload, len, &uid, &packet, &packet_len) == 0)
            FUZZ_CHECK(uid > 0 && packet_len > 0 && packet >= payload && packet + packet_len == payload + len);
        struct group_delivery g;
        if (chatpkt_group_delivery_parse(payload, len, &g) == 0) {
            const char *p = g.pairs;
            int64_t seq;
            int rc;
            FUZZ_CHECK(g.ts > 0 && g.packet_len > 0 && g.packet + g.packet_len == payload + len &&
                       g.pairs >= payload && g.pairs + g.pairs_len < g.packet);
            while ((rc = chatpkt_group_pair_next(&p, g.pairs + g.pairs_len, &uid, &seq)) == 1)
                FUZZ_CHECK(uid > 0 && seq > 0);
            FUZZ_CHECK(rc == 0); /* the parse checked every pair */
        }
        break;
    }
    default: {
        Magpie__BroadcastRoomReq *b = roompkt_bus_parse(payload, len);
        struct roombatch batch = {0};
        if (b != NULL) {
            FUZZ_CHECK(b->data.len > 0);
            FUZZ_CHECK(roombatch_add(&batch, b->data.data, b->data.len, b->msglv == 1) == MP_OK);
            FUZZ_CHECK(batch.len == ROOM_LEN_PREFIX + b->data.len && batch.count == 1);
            roombatch_clear(&batch);
            magpie__broadcast_room_req__free_unpacked(b, NULL);
        }
        break;
    }
    }
    free((void *)payload);
    return 0;
}
