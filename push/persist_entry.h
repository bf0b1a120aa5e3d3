/* persist_entry.h -- one entry of the chat stream (fields in shared/stream.h), checked and parsed into the
 * row magpie-persist writes to the messages table. This is the only place that decides whether an entry
 * can be stored; an entry it refuses goes to the dead-letter stream with the reason it gives.
 *
 * Pure: no I/O, no allocation. The input is whatever is in Redis, so it is treated as hostile: any bytes,
 * any number of fields, missing, repeated or oversized fields.
 *
 * The rules, each matching a column of the messages table:
 *   v           exactly MQ_FORMAT_VERSION
 *   mid, from, to, ts
 *               decimal digits only, no sign, no leading zero, 1 .. 2^63-1 (they fit MySQL's BIGINT and a
 *               C int64_t); to != from
 *   cid         1..MQ_MAX_CID bytes of UTF-8 without NUL
 *   type        "t" or "i"
 *   body        0..MQ_MAX_BODY bytes of UTF-8 without NUL
 *   fseq, tseq  optional (entries written before timelines have none); when present, as mid
 * UTF-8 is checked strictly (no overlong forms, no surrogates, nothing above U+10FFFF), as MySQL's utf8mb4
 * checks it, so a parsed entry is never refused by MySQL for its encoding. Fields not listed are ignored (a
 * newer writer may add some); a listed field given twice makes the entry malformed. The 1023-character
 * limit on text is magpie-push's protocol rule and is not checked again here: the storage takes any body
 * the stream contract allows.
 */
#ifndef MAGPIE_PERSIST_ENTRY_H
#define MAGPIE_PERSIST_ENTRY_H

#include <stddef.h>
#include <stdint.h>

/* Room for any reason persist_entry_parse gives (and the other reasons magpie-persist writes). */
#define PERSIST_WHY_MAX 256

/* A parsed entry. The strings are borrowed from the parsed input and are not NUL-terminated. */
struct persist_msg {
    int64_t mid;
    int64_t from;
    int64_t to;
    int64_t ts;
    int64_t from_seq; /* 0 = none (an entry written before timelines) */
    int64_t to_seq;
    const char *cid;
    size_t cid_len;
    const char *body;
    size_t body_len;
    char type;
};

/* Parse one entry given as nkv strings: kv[0] field name, kv[1] its value, kv[2] the next name, ...; the
 * lengths are in kvlen (the strings may hold any bytes, NUL included). On success fills *m (pointing into
 * kv) and returns MP_OK. Otherwise returns MP_EINVAL with a one-line reason in why (it names the field
 * and the rule; it never quotes a value) and leaves *m unspecified. */
int persist_entry_parse(struct persist_msg *m, const char *const *kv, const size_t *kvlen, size_t nkv,
                        char *why, size_t whylen);

/* Is s[0..len) well-formed UTF-8 without NUL? */
int persist_utf8_ok(const char *s, size_t len);

#endif
