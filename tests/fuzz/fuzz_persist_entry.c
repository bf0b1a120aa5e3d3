/* fuzz_persist_entry.c -- one entry of the chat stream (shared/stream.h) as magpie-persist reads it:
 * its id through persist_sid_parse, its fields and values through persist_entry_parse (push/).
 *
 * Input: a list of byte strings, each a 2-byte little-endian length then that many bytes (a length past
 * the end takes what is left). The first is the entry id, the others the field names and values in
 * order, as XREADGROUP returns them. Each string gets a buffer of its own and exactly its size, so a
 * read past a value is a sanitizer report.
 *
 * Invariants: a parsed id formats back to the same id; a parsed entry satisfies every rule of
 * persist_entry.h (what MySQL's columns take); a refused one has a one-line reason.
 */
#include "fuzz.h"
#include "magpie.h"
#include "persist_entry.h"
#include "persist_sid.h"
#include "stream.h"

#include <string.h>

#define MAX_STRINGS 64

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
        FUZZ_CHECK(m.mid > 0 && m.from > 0 && m.to > 0 && m.ts > 0 && m.to != m.from);
        FUZZ_CHECK(m.cid_len >= 1 && m.cid_len <= MQ_MAX_CID && persist_utf8_ok(m.cid, m.cid_len));
        FUZZ_CHECK(m.body_len <= MQ_MAX_BODY && persist_utf8_ok(m.body, m.body_len));
        FUZZ_CHECK(m.type == 't' || m.type == 'i');
    } else {
        FUZZ_CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    }
    for (size_t i = 0; i < n; i++)
        free(str[i]);
    return 0;
}
