/* fuzz_roompkt.c -- one binary frame of the room protocol (SPEC §5): a protobuf Req through
 * push/roompkt.c's roompkt_parse, as room.c takes it, then what the server does with a good one: the
 * Err reply, the CHAN_ROOM payload it publishes for a MESSAGE (which must parse back to the same
 * message), and the batch frame it merges messages into.
 *
 * Invariants: a refusal has an Err code and a reason; a good SIGN_IN has a token and a good room id; a
 * good MESSAGE has data and a room id that is empty or good.
 */
#include "fuzz.h"
#include "magpie.h"
#include "roompkt.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct roompkt p;
    int code = roompkt_parse(data, size, &p);
    size_t len;
    uint8_t *out;

    out = roompkt_err(code, code == ROOM_OK ? ROOM_R_OK : p.why, &len);
    FUZZ_CHECK(out != NULL);
    free(out);
    if (code != ROOM_OK) {
        FUZZ_CHECK(p.why != NULL && code > ROOM_OK);
        roompkt_free(&p);
        return 0;
    }
    if (p.type == MAGPIE__PACKAGE_TYPE__SIGN_IN) {
        FUZZ_CHECK(p.sign_in != NULL && p.sign_in->token[0] != '\0' && roompkt_room_ok(p.sign_in->roomid));
    } else if (p.type == MAGPIE__PACKAGE_TYPE__MESSAGE) {
        const char *room = p.msg->roomid[0] ? p.msg->roomid : "r1";
        Magpie__BroadcastRoomReq *back;
        struct roombatch b = {0};
        uint8_t *frame;

        FUZZ_CHECK(p.msg->data.len > 0 && roompkt_room_ok(room));
        out = roompkt_bus_pack(room, p.msg->msglv == MAGPIE__MSG_LEVEL__IMPORTANT, p.msg->data.data,
                               p.msg->data.len, &len);
        FUZZ_CHECK(out != NULL);
        back = roompkt_bus_parse(out, len);
        FUZZ_CHECK(back != NULL && strcmp(back->roomid, room) == 0 && back->data.len == p.msg->data.len &&
                   memcmp(back->data.data, p.msg->data.data, back->data.len) == 0);
        FUZZ_CHECK(roombatch_add(&b, back->data.data, back->data.len, back->msglv) == MP_OK);
        FUZZ_CHECK(roombatch_add(&b, "x", 1, 0) == MP_OK);
        len = roombatch_packed_size(&b, room);
        frame = malloc(len);
        FUZZ_CHECK(frame != NULL && roombatch_pack(&b, room, frame) == len);
        free(frame);
        roombatch_clear(&b);
        magpie__broadcast_room_req__free_unpacked(back, NULL);
        free(out);
    }
    roompkt_free(&p);
    return 0;
}
