/* fuzz_chatpkt.c -- one text frame of the chat protocol (SPEC §4) through push/chatpkt.c, as chat.c takes
 * it: chatpkt_parse, then the check of every packet type's msg, then the packets the server builds from
 * what passed (the E/A reply echoing the client's id, the message as recipients get it, with a seq).
 *
 * Invariants: a refused packet names a CHAT_E_* reason; a good one has an id of 1..CHAT_MAX_ID bytes and
 * a letter for a type; a good t/i body fits the stream's MQ_MAX_BODY (magpie-persist refuses more) and
 * builds a recipients' packet; an order id fits its buffer and holds no control character; a site is
 * within Redis GEO's bounds.
 */
#include "chatpkt.h"
#include "fuzz.h"
#include "stream.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chatpkt p;
    struct chat_msg m;
    struct chat_history h;
    struct chat_sync y;
    struct chat_read rd;
    char order[CHAT_MAX_ORDER + 1];
    double lon, lat;
    int64_t uid;
    const char *bad = chatpkt_parse((const char *)data, size, &p);
    size_t len;
    char *reply;

    /* The reply every packet gets (E when bad), with whatever id it had. */
    reply = chatpkt_reply(p.id, p.id_len, bad ? 'E' : 'A', json_string(bad ? bad : "ok"), &len);
    FUZZ_CHECK(reply != NULL && strlen(reply) == len);
    free(reply);
    if (bad != NULL) {
        FUZZ_CHECK(strncmp(bad, "malformed", 9) == 0 || strncmp(bad, "missing or bad", 14) == 0);
        chatpkt_free(&p);
        return 0;
    }
    FUZZ_CHECK(p.id_len >= 1 && p.id_len <= CHAT_MAX_ID);
    FUZZ_CHECK((p.type >= 'a' && p.type <= 'z') || (p.type >= 'A' && p.type <= 'Z'));

    if (chatpkt_message(&p, 1, &m) == NULL) {
        FUZZ_CHECK(m.to > 0 && m.to != 1 && m.body_len > 0 && m.body_len <= MQ_MAX_BODY);
        reply = packet_chat(p.id, p.id_len, 1, m.to, p.type, m.body, m.body_len, 1700000000000LL, 42, &len);
        FUZZ_CHECK(reply != NULL);
        {
            size_t n;
            char *with = packet_with_seq(reply, len, 7, &n);
            FUZZ_CHECK(with != NULL && n == len + strlen(",\"seq\":7") && with[n - 1] == '}');
            free(with);
        }
        free(reply);
    }
    if (chatpkt_sync(&p, &y) == NULL)
        FUZZ_CHECK(y.after >= 0 && y.limit >= 1 && y.limit <= CHAT_SYNC_MAX);
    if (chatpkt_read(&p, 1, &rd) == NULL)
        FUZZ_CHECK(rd.mid > 0 && (rd.with > 0) != (rd.group > 0) && rd.with != 1);
    if (chatpkt_online(&p, &uid) == NULL)
        FUZZ_CHECK(uid > 0);
    if (chatpkt_history(&p, &h) == NULL)
        FUZZ_CHECK(h.since >= 0 && h.with >= 0 && h.limit >= 1 && h.limit <= CHAT_HISTORY_MAX);
    if (chatpkt_order(&p, order, sizeof(order)) == NULL) {
        len = strnlen(order, sizeof(order));
        FUZZ_CHECK(len >= 1 && len <= CHAT_MAX_ORDER);
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK((unsigned char)order[i] >= 0x20 && order[i] != 0x7f);
    }
    if (chatpkt_site(&p, &lon, &lat) == NULL)
        FUZZ_CHECK(isfinite(lon) && isfinite(lat) && fabs(lon) <= 180 && fabs(lat) <= 85.05112878);
    chatpkt_free(&p);
    return 0;
}
