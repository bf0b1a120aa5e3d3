/* persist_entry.h -- one entry of the chat stream (fields in shared/stream.h), checked and parsed into the
 * row magpie-persist writes to MySQL. This is the only place that decides whether an entry can be stored;
 * an entry it refuses goes to the dead-letter stream with the reason it gives.
 *
 * No I/O; the only allocation is jansson's parse of a group event's body (an s body must be the JSON object
 * packet_event builds its packet from, so it is checked with the same parser and flags). The input is
 * whatever is in Redis, so it is treated as hostile: any bytes, any number of fields, missing, repeated or
 * oversized fields.
 *
 * The kinds of entry (type) and the fields each needs; the rules of each field come after.
 *   t, i   a 1:1 message: v mid from to cid type body ts; fseq, tseq optional. to != from; no group field.
 *   g      a group message (push/group.h): v mid from to cid type body ts fseq group gn seqs. to = group;
 *          seqs does not list from (the sender's seq is fseq).
 *   s      a group event: v mid from to cid type body ts group seqs. from = 0 (the server), to = group,
 *          cid = mid spelled in decimal, body a JSON object.
 *   G      a group's state after a change (MQ_TYPE_GROUP_STATE): v type group ts ver, and either
 *          deleted = "1" or all of name owner created members, where the owner is the one member whose
 *          role is o. mid, from, to, cid, body are not used.
 * A field a type does not use is ignored like an unknown one (fseq/tseq of an s or G, gn of an s ...), but
 * a t or i with a group field is refused: that field is what marks a group entry.
 *
 * The rules of the fields:
 *   v           exactly MQ_FORMAT_VERSION
 *   mid, to, ts, group, gn, owner, created, ver
 *               decimal digits only, no sign, no leading zero, 1 .. 2^63-1 (they fit MySQL's BIGINT and a
 *               C int64_t)
 *   from        the same, or "0" (only in an s)
 *   cid         1..MQ_MAX_CID bytes of UTF-8 without NUL
 *   type        "t", "i", "g", "s" or "G"
 *   body        0..MQ_MAX_BODY bytes of UTF-8 without NUL
 *   fseq, tseq  as mid (optional in t and i: entries written before timelines have none)
 *   seqs        "<uid>:<seq>" pairs (each number as mid) separated by single spaces, no leading or trailing
 *               space; may be empty (a group whose only member sent); at most PERSIST_MAX_LIST bytes
 *   members     "<uid>:<role>:<join order>:<joined ms>" items (numbers as mid, role one of o a m) separated
 *               by single spaces; at least one (the owner); at most PERSIST_MAX_LIST bytes
 *   name        1..64 characters of UTF-8 without NUL (chat_groups.name is VARCHAR(64))
 *   deleted     exactly "1"
 * UTF-8 is checked strictly (no overlong forms, no surrogates, nothing above U+10FFFF), as MySQL's utf8mb4
 * checks it, so a parsed entry is never refused by MySQL for its encoding. Fields not listed are ignored (a
 * newer writer may add some); a listed field given twice makes the entry malformed. The 1023-character
 * limit on text is magpie-push's protocol rule and is not checked again here: the storage takes any body
 * the stream contract allows. Not checked (it would cost a sort): a uid listed twice in seqs or members;
 * the store takes the last role of a repeated member, and Y reads a repeated seq once.
 */
#ifndef MAGPIE_PERSIST_ENTRY_H
#define MAGPIE_PERSIST_ENTRY_H

#include <stddef.h>
#include <stdint.h>

/* Room for any reason persist_entry_parse gives (and the other reasons magpie-persist writes). */
#define PERSIST_WHY_MAX 256

/* The longest seqs or members value taken: group.max_members' largest setting (100,000) times the longest
 * members item (62 bytes: three 19-digit numbers, a role, separators), with room to spare. */
#define PERSIST_MAX_LIST (8u << 20)

/* A group's name: at most this many characters (sql/004_groups.sql, SPEC §4.2). */
#define PERSIST_MAX_GROUP_NAME 64

/* A parsed entry. The strings are borrowed from the parsed input and are not NUL-terminated. */
struct persist_msg {
    int64_t mid;
    int64_t from; /* 0 in an s (the server) */
    int64_t to;
    int64_t ts;
    int64_t from_seq; /* 0 = none (an entry written before timelines, or an s) */
    int64_t to_seq;   /* 0 = none (always for group entries) */
    const char *cid;
    size_t cid_len;
    const char *body;
    size_t body_len;
    char type; /* t, i, g, s, or G */
    /* group entries (g, s, G); 0 / NULL otherwise */
    int64_t group;
    int64_t group_n;  /* g: its number in the group */
    const char *seqs; /* g, s: well-formed, see persist_seqs_next */
    size_t seqs_len;
    /* G */
    int64_t ver;
    int deleted;
    int64_t owner; /* the rest: not set when deleted */
    int64_t created;
    const char *name;
    size_t name_len;
    const char *members; /* well-formed, see persist_members_next */
    size_t members_len;
};

/* Parse one entry given as nkv strings: kv[0] field name, kv[1] its value, kv[2] the next name, ...; the
 * lengths are in kvlen (the strings may hold any bytes, NUL included). On success fills *m (pointing into
 * kv) and returns MP_OK. Otherwise returns MP_EINVAL with a one-line reason in why (it names the field
 * and the rule; it never quotes a value) and leaves *m unspecified. */
int persist_entry_parse(struct persist_msg *m, const char *const *kv, const size_t *kvlen, size_t nkv,
                        char *why, size_t whylen);

/* Is s[0..len) well-formed UTF-8 without NUL? */
int persist_utf8_ok(const char *s, size_t len);

/* The next "<uid>:<seq>" pair of a seqs value that persist_entry_parse accepted, from *at (start at 0):
 * returns 1 and moves *at past it, or 0 at the end. */
int persist_seqs_next(const char *s, size_t len, size_t *at, int64_t *uid, int64_t *seq);

/* The next item of a members value that persist_entry_parse accepted, likewise. */
int persist_members_next(const char *s, size_t len, size_t *at, int64_t *uid, char *role, int64_t *order,
                         int64_t *joined_ms);

#endif
