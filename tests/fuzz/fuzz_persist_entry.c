/* fuzz_persist_entry.c -- one entry of the chat stream (shared/stream.h) as magpie-persist reads it:
 * its id through persist_sid_parse, its fields and values through persist_entry_parse (push/).
 *
 * Input: a list of byte strings, each a 2-byte little-endian length then that many bytes (a length past
 * the end takes what is left). The first is the entry id, the others the field names and values in
 * order, as XREADGROUP returns them. Each string gets a buffer of its own and exactly its size, so a
 * read past a value is a sanitizer report.
 *
 * Invariants: a parsed id formats back to the same id; a parsed entry satisfies every rule of
 * persist_entry.h for its type (what MySQL's columns take): its seqs and members lists walk to their end
 * with persist_seqs_next / persist_members_next, an s event's packet can be built (packet_event), a G's
 * owner is its one member with role o; a refused one has a one-line reason.
 */
#include "fuzz.h"
#include "magpie.h"
#include "packet.h"
#include "persist_entry.h"
#include "persist_sid.h"
#include "stream.h"

#include <string.h>

#define MAX_STRINGS 64

/* t, i, g, s: a messages row. */
static void check_message(const struct persist_msg *m)
{
    size_t at = 0, pairs = 0;
    int64_t uid, seq;
    FUZZ_CHECK(m->mid > 0 && m->to > 0);
    FUZZ_CHECK(m->cid_len >= 1 && m->cid_len <= MQ_MAX_CID && persist_utf8_ok(m->cid, m->cid_len));
    FUZZ_CHECK(m->body_len <= MQ_MAX_BODY && persist_utf8_ok(m->body, m->body_len));
    if (m->type == 't' || m->type == 'i') {
        FUZZ_CHECK(m->from > 0 && m->to != m->from && m->group == 0 && m->group_n == 0 && m->seqs == NULL);
        return;
    }
    FUZZ_CHECK(m->type == 'g' || m->type == 's');
    FUZZ_CHECK(m->group > 0 && m->to == m->group && m->to_seq == 0 && m->seqs_len <= PERSIST_MAX_LIST);
    while (persist_seqs_next(m->seqs, m->seqs_len, &at, &uid, &seq)) {
        FUZZ_CHECK(uid > 0 && seq > 0 && (m->type == 's' || uid != m->from));
        pairs++;
    }
    FUZZ_CHECK(at == m->seqs_len && (pairs > 0) == (m->seqs_len > 0));
    if (m->type == 'g') {
        FUZZ_CHECK(m->from > 0 && m->from_seq > 0 && m->group_n > 0);
    } else {
        size_t plen;
        char *pkt = packet_event(m->group, m->body, m->body_len, m->ts, m->mid, &plen);
        FUZZ_CHECK(m->from == 0 && m->from_seq == 0 && m->group_n == 0 && pkt != NULL);
        free(pkt);
    }
}

/* G: a chat_groups row and its group_members rows. */
static void check_state(const struct persist_msg *m)
{
    size_t at = 0, owners = 0, items = 0;
    int64_t uid, order, ms;
    char role;
    FUZZ_CHECK(m->group > 0 && m->ver > 0 && m->mid == 0);
    if (m->deleted) {
        FUZZ_CHECK(m->members == NULL && m->name == NULL);
        return;
    }
    FUZZ_CHECK(m->owner > 0 && m->created > 0 && m->name_len >= 1 && persist_utf8_ok(m->name, m->name_len));
    while (persist_members_next(m->members, m->members_len, &at, &uid, &role, &order, &ms)) {
        FUZZ_CHECK(uid > 0 && order > 0 && ms > 0 && (role == 'o' || role == 'a' || role == 'm'));
        owners += role == 'o';
        FUZZ_CHECK(role != 'o' || uid == m->owner);
        items++;
    }
    FUZZ_CHECK(at == m->members_len && items > 0 && owners == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *str[MAX_STRINGS];
    size_t len[MAX_STRINGS], n = 0, at = 0;
    struct persist_sid sid, back;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX], buf[PERSIST_SID_MAX];

    while (at + 2 <= size && n < MAX_STRINGS) {
        size_t l = (size_t)data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        if (l > size - at)
            l = size - at;
        str[n] = malloc(l ? l : 1);
        FUZZ_CHECK(str[n] != NULL);
        memcpy(str[n], data + at, l);
        len[n++] = l;
        at += l;
    }
    if (n == 0)
        return 0;

    if (persist_sid_parse(&sid, str[0], len[0]) == MP_OK) {
        persist_sid_format(&sid, buf, sizeof(buf));
        FUZZ_CHECK(persist_sid_parse(&back, buf, strlen(buf)) == MP_OK && persist_sid_cmp(&sid, &back) == 0);
    }

    why[0] = '\0';
    if (persist_entry_parse(&m, (const char *const *)str + 1, len + 1, n - 1, why, sizeof(why)) == MP_OK) {
        FUZZ_CHECK(m.ts > 0);
        if (m.type == MQ_TYPE_GROUP_STATE[0])
            check_state(&m);
        else
            check_message(&m);
    } else {
        FUZZ_CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    }
    for (size_t i = 0; i < n; i++)
        free(str[i]);
    return 0;
}
