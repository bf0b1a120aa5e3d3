/* persist_entry.c -- see persist_entry.h. */
#include "persist_entry.h"
#include "magpie.h"
#include "stream.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* 2^63-1 has 19 digits. */
#define ENTRY_MAX_DIGITS 19

enum field_kind {
    FIELD_VERSION,
    FIELD_ID,      /* 1 .. 2^63-1 */
    FIELD_ID_ZERO, /* the same, or 0 */
    FIELD_TEXT,
    FIELD_TYPE,
    FIELD_SEQS,
    FIELD_MEMBERS,
    FIELD_NAME,
    FIELD_FLAG /* exactly "1" */
};

/* The index of each field in entry_fields: a bit of the masks below. */
enum {
    F_VERSION,
    F_MID,
    F_FROM,
    F_TO,
    F_CID,
    F_TYPE,
    F_BODY,
    F_TS,
    F_FROM_SEQ,
    F_TO_SEQ,
    F_GROUP,
    F_GROUP_N,
    F_SEQS,
    F_VER,
    F_DELETED,
    F_NAME,
    F_OWNER,
    F_CREATED,
    F_MEMBERS,
    F_COUNT
};

#define BIT(f) (1u << (f))
/* What each type needs (persist_entry.h). */
#define NEED_MESSAGE                                                                                         \
    (BIT(F_VERSION) | BIT(F_MID) | BIT(F_FROM) | BIT(F_TO) | BIT(F_CID) | BIT(F_TYPE) | BIT(F_BODY) |        \
     BIT(F_TS))
#define NEED_G          (NEED_MESSAGE | BIT(F_FROM_SEQ) | BIT(F_GROUP) | BIT(F_GROUP_N) | BIT(F_SEQS))
#define NEED_S          (NEED_MESSAGE | BIT(F_GROUP) | BIT(F_SEQS))
#define NEED_STATE      (BIT(F_VERSION) | BIT(F_TYPE) | BIT(F_GROUP) | BIT(F_TS) | BIT(F_VER))
#define NEED_LIVE_STATE (NEED_STATE | BIT(F_NAME) | BIT(F_OWNER) | BIT(F_CREATED) | BIT(F_MEMBERS))

#define M(f) offsetof(struct persist_msg, f)

/* The fields of stream.h, in the order of the enum above: how each is checked and where it goes. */
static const struct entry_field {
    const char *name;
    enum field_kind kind;
    size_t max_len;  /* FIELD_TEXT */
    int allow_empty; /* FIELD_TEXT */
    size_t num_off;  /* FIELD_ID, FIELD_ID_ZERO: offset of the int64_t in struct persist_msg */
    size_t str_off;  /* FIELD_TEXT, FIELD_SEQS, FIELD_MEMBERS, FIELD_NAME: offsets of the pointer and the
                        length */
    size_t len_off;
} entry_fields[F_COUNT] = {
    [F_VERSION] = {MQ_F_VERSION, FIELD_VERSION, 0, 0, 0, 0, 0},
    [F_MID] = {MQ_F_MID, FIELD_ID, 0, 0, M(mid), 0, 0},
    [F_FROM] = {MQ_F_FROM, FIELD_ID_ZERO, 0, 0, M(from), 0, 0},
    [F_TO] = {MQ_F_TO, FIELD_ID, 0, 0, M(to), 0, 0},
    [F_CID] = {MQ_F_CID, FIELD_TEXT, MQ_MAX_CID, 0, 0, M(cid), M(cid_len)},
    [F_TYPE] = {MQ_F_TYPE, FIELD_TYPE, 0, 0, 0, 0, 0},
    [F_BODY] = {MQ_F_BODY, FIELD_TEXT, MQ_MAX_BODY, 1, 0, M(body), M(body_len)},
    [F_TS] = {MQ_F_TS, FIELD_ID, 0, 0, M(ts), 0, 0},
    [F_FROM_SEQ] = {MQ_F_FROM_SEQ, FIELD_ID, 0, 0, M(from_seq), 0, 0},
    [F_TO_SEQ] = {MQ_F_TO_SEQ, FIELD_ID, 0, 0, M(to_seq), 0, 0},
    [F_GROUP] = {MQ_F_GROUP, FIELD_ID, 0, 0, M(group), 0, 0},
    [F_GROUP_N] = {MQ_F_GROUP_N, FIELD_ID, 0, 0, M(group_n), 0, 0},
    [F_SEQS] = {MQ_F_SEQS, FIELD_SEQS, 0, 0, 0, M(seqs), M(seqs_len)},
    [F_VER] = {MQ_F_VER, FIELD_ID, 0, 0, M(ver), 0, 0},
    [F_DELETED] = {MQ_F_DELETED, FIELD_FLAG, 0, 0, 0, 0, 0},
    [F_NAME] = {MQ_F_NAME, FIELD_NAME, 0, 0, 0, M(name), M(name_len)},
    [F_OWNER] = {MQ_F_OWNER, FIELD_ID, 0, 0, M(owner), 0, 0},
    [F_CREATED] = {MQ_F_CREATED, FIELD_ID, 0, 0, M(created), 0, 0},
    [F_MEMBERS] = {MQ_F_MEMBERS, FIELD_MEMBERS, 0, 0, 0, M(members), M(members_len)},
};

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (why != NULL && len > 0) {
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return MP_EINVAL;
}

int persist_utf8_ok(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0; /* a continuation byte, an overlong lead (C0, C1) or beyond U+10FFFF (F5..FF) */
        }
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* A positive decimal that fits in int64_t, spelled canonically (no sign, no leading zero). */
static int parse_id(const char *s, size_t len, int64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > ENTRY_MAX_DIGITS || s[0] == '0')
        return MP_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return MP_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot overflow 64 unsigned bits */
    }
    if (v > (uint64_t)INT64_MAX)
        return MP_EINVAL;
    *out = (int64_t)v;
    return MP_OK;
}

/* One item of a list value (seqs, members) at s[*at..): its nparts parts, separated by ':', into part[] and
 * plen[]; *at moves past the item and the single space after it. Returns 1 (an item), 0 (the end) or -1 (an
 * empty part or item, a wrong number of parts, a trailing space). */
static int item_next(const char *s, size_t len, size_t *at, const char **part, size_t *plen, size_t nparts)
{
    size_t i = *at, b = *at, k = 0;
    if (i >= len)
        return 0;
    for (;; i++) {
        if (i == len || s[i] == ' ' || s[i] == ':') {
            if (k == nparts || i == b)
                return -1;
            part[k] = s + b;
            plen[k++] = i - b;
            if (i == len || s[i] == ' ')
                break;
            b = i + 1;
        }
    }
    if (k != nparts)
        return -1;
    if (i < len) { /* the space before the next item */
        if (i + 1 == len)
            return -1;
        i++;
    }
    *at = i;
    return 1;
}

/* 1 = a pair, 0 = the end, -1 = malformed. */
static int seqs_item(const char *s, size_t len, size_t *at, int64_t *uid, int64_t *seq)
{
    const char *part[2];
    size_t plen[2];
    int rc = item_next(s, len, at, part, plen, 2);
    if (rc <= 0)
        return rc;
    if (parse_id(part[0], plen[0], uid) != MP_OK || parse_id(part[1], plen[1], seq) != MP_OK)
        return -1;
    return 1;
}

static int members_item(const char *s, size_t len, size_t *at, int64_t *uid, char *role, int64_t *order,
                        int64_t *ms)
{
    const char *part[4];
    size_t plen[4];
    int rc = item_next(s, len, at, part, plen, 4);
    if (rc <= 0)
        return rc;
    if (parse_id(part[0], plen[0], uid) != MP_OK || plen[1] != 1 ||
        (part[1][0] != 'o' && part[1][0] != 'a' && part[1][0] != 'm') ||
        parse_id(part[2], plen[2], order) != MP_OK || parse_id(part[3], plen[3], ms) != MP_OK)
        return -1;
    *role = part[1][0];
    return 1;
}

int persist_seqs_next(const char *s, size_t len, size_t *at, int64_t *uid, int64_t *seq)
{
    return seqs_item(s, len, at, uid, seq) > 0;
}

int persist_members_next(const char *s, size_t len, size_t *at, int64_t *uid, char *role, int64_t *order,
                         int64_t *joined_ms)
{
    return members_item(s, len, at, uid, role, order, joined_ms) > 0;
}

static int seqs_ok(const char *s, size_t len)
{
    size_t at = 0;
    int64_t uid, seq;
    int rc;
    while ((rc = seqs_item(s, len, &at, &uid, &seq)) > 0)
        ;
    return rc == 0;
}

static int members_ok(const char *s, size_t len)
{
    size_t at = 0, n = 0;
    int64_t uid, order, ms;
    char role;
    int rc;
    while ((rc = members_item(s, len, &at, &uid, &role, &order, &ms)) > 0)
        n++;
    return rc == 0 && n > 0;
}

/* Characters of a string persist_utf8_ok accepted: the bytes that are not continuation bytes. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static const struct entry_field *find_field(const char *name, size_t len)
{
    for (size_t i = 0; i < MP_ARRAY_LEN(entry_fields); i++)
        if (strlen(entry_fields[i].name) == len && memcmp(entry_fields[i].name, name, len) == 0)
            return &entry_fields[i];
    return NULL;
}

static void set_str(struct persist_msg *m, const struct entry_field *f, const char *v, size_t len)
{
    char *base = (char *)m;
    *(const char **)(void *)(base + f->str_off) = v;
    *(size_t *)(void *)(base + f->len_off) = len;
}

static int parse_field(struct persist_msg *m, const struct entry_field *f, const char *v, size_t len,
                       char *why, size_t whylen)
{
    char *base = (char *)m;
    switch (f->kind) {
    case FIELD_VERSION:
        if (len != strlen(MQ_FORMAT_VERSION) || memcmp(v, MQ_FORMAT_VERSION, len) != 0)
            return fail(why, whylen, "field '%s': unsupported format version (this worker reads %s)", f->name,
                        MQ_FORMAT_VERSION);
        return MP_OK;
    case FIELD_ID_ZERO:
        if (len == 1 && v[0] == '0') {
            *(int64_t *)(void *)(base + f->num_off) = 0;
            return MP_OK;
        }
        /* fall through */
    case FIELD_ID:
        if (parse_id(v, len, (int64_t *)(void *)(base + f->num_off)) != MP_OK)
            return fail(why, whylen, "field '%s': not a decimal number in 1..9223372036854775807", f->name);
        return MP_OK;
    case FIELD_TEXT:
        if (len > f->max_len || (len == 0 && !f->allow_empty))
            return fail(why, whylen, "field '%s': length %zu not in %d..%zu bytes", f->name, len,
                        f->allow_empty ? 0 : 1, f->max_len);
        if (!persist_utf8_ok(v, len))
            return fail(why, whylen, "field '%s': not UTF-8 text (or contains NUL)", f->name);
        set_str(m, f, v, len);
        return MP_OK;
    case FIELD_TYPE:
        if (len != 1 ||
            (v[0] != 't' && v[0] != 'i' && v[0] != 'g' && v[0] != 's' && v[0] != MQ_TYPE_GROUP_STATE[0]))
            return fail(why, whylen, "field '%s': must be t, i, g, s or %s", f->name, MQ_TYPE_GROUP_STATE);
        m->type = v[0];
        return MP_OK;
    case FIELD_SEQS:
        if (len > PERSIST_MAX_LIST)
            return fail(why, whylen, "field '%s': longer than %u bytes", f->name, PERSIST_MAX_LIST);
        if (!seqs_ok(v, len))
            return fail(why, whylen, "field '%s': not a list of <uid>:<seq> separated by single spaces",
                        f->name);
        set_str(m, f, v, len);
        return MP_OK;
    case FIELD_MEMBERS:
        if (len > PERSIST_MAX_LIST)
            return fail(why, whylen, "field '%s': longer than %u bytes", f->name, PERSIST_MAX_LIST);
        if (!members_ok(v, len))
            return fail(
                why, whylen,
                "field '%s': not a list of <uid>:<o|a|m>:<join order>:<joined ms> separated by single "
                "spaces",
                f->name);
        set_str(m, f, v, len);
        return MP_OK;
    case FIELD_NAME:
        if (len == 0 || len > 4 * PERSIST_MAX_GROUP_NAME || !persist_utf8_ok(v, len) ||
            utf8_chars(v, len) > PERSIST_MAX_GROUP_NAME)
            return fail(why, whylen, "field '%s': not 1..%d characters of UTF-8 text without NUL", f->name,
                        PERSIST_MAX_GROUP_NAME);
        set_str(m, f, v, len);
        return MP_OK;
    case FIELD_FLAG:
        if (len != 1 || v[0] != '1')
            return fail(why, whylen, "field '%s': must be 1", f->name);
        m->deleted = 1;
        return MP_OK;
    }
    return MP_EINVAL;
}

/* Does the list seqs name uid? */
static int seqs_has(const struct persist_msg *m, int64_t uid)
{
    size_t at = 0;
    int64_t u, s;
    while (persist_seqs_next(m->seqs, m->seqs_len, &at, &u, &s))
        if (u == uid)
            return 1;
    return 0;
}

/* Is the owner the one member with role o? */
static int owner_ok(const struct persist_msg *m)
{
    size_t at = 0, owners = 0;
    int64_t uid, order, ms;
    int found = 0;
    char role;
    while (persist_members_next(m->members, m->members_len, &at, &uid, &role, &order, &ms)) {
        if (role == 'o') {
            owners++;
            found |= uid == m->owner;
        }
    }
    return found && owners == 1;
}

/* Is s[0..len) the decimal spelling of v? */
static int is_decimal_of(const char *s, size_t len, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return n > 0 && (size_t)n == len && memcmp(buf, s, len) == 0;
}

static int json_object_ok(const char *s, size_t len)
{
    json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);
    int ok = json_is_object(j);
    json_decref(j);
    return ok;
}

/* The rules between fields, once each field is known to be well-formed. */
static int check_type(const struct persist_msg *m, unsigned seen, char *why, size_t whylen)
{
    switch (m->type) {
    case 't':
    case 'i':
        if (seen & BIT(F_GROUP))
            return fail(why, whylen, "field '%s': only in group entries (type g, s or %s)", MQ_F_GROUP,
                        MQ_TYPE_GROUP_STATE);
        break;
    case 'g':
        if (m->to != m->group)
            return fail(why, whylen, "field '%s' differs from field '%s'", MQ_F_TO, MQ_F_GROUP);
        if (m->from != 0 && seqs_has(m, m->from))
            return fail(why, whylen, "field '%s' lists the sender (field '%s' is its seq)", MQ_F_SEQS,
                        MQ_F_FROM_SEQ);
        break;
    case 's':
        if (m->from != 0)
            return fail(why, whylen, "field '%s': must be 0 in a group event (type s)", MQ_F_FROM);
        if (m->to != m->group)
            return fail(why, whylen, "field '%s' differs from field '%s'", MQ_F_TO, MQ_F_GROUP);
        if (!is_decimal_of(m->cid, m->cid_len, m->mid))
            return fail(why, whylen, "field '%s': must be field '%s' in decimal in a group event (type s)",
                        MQ_F_CID, MQ_F_MID);
        if (!json_object_ok(m->body, m->body_len))
            return fail(why, whylen, "field '%s': not a JSON object (a group event, type s)", MQ_F_BODY);
        return MP_OK;
    default: /* MQ_TYPE_GROUP_STATE */
        if (!m->deleted && !owner_ok(m))
            return fail(why, whylen, "field '%s': the owner (field '%s') must be the one member with role o",
                        MQ_F_MEMBERS, MQ_F_OWNER);
        return MP_OK;
    }
    /* t, i, g: a message from a user */
    if (m->from == 0)
        return fail(why, whylen, "field '%s': not a decimal number in 1..9223372036854775807", MQ_F_FROM);
    if (m->type != 'g' && m->to == m->from)
        return fail(why, whylen, "field '%s' equals field '%s'", MQ_F_TO, MQ_F_FROM);
    return MP_OK;
}

int persist_entry_parse(struct persist_msg *m, const char *const *kv, const size_t *kvlen, size_t nkv,
                        char *why, size_t whylen)
{
    unsigned seen = 0, need;
    memset(m, 0, sizeof(*m));
    if (nkv % 2 != 0)
        return fail(why, whylen, "odd number of field names and values (%zu)", nkv);
    for (size_t i = 0; i < nkv; i += 2) {
        const struct entry_field *f;
        unsigned bit;
        int rc;
        if (kv[i] == NULL || kv[i + 1] == NULL)
            return fail(why, whylen, "field %zu has no value", i / 2);
        f = find_field(kv[i], kvlen[i]);
        if (f == NULL)
            continue;
        bit = BIT(f - entry_fields);
        if (seen & bit)
            return fail(why, whylen, "field '%s' given twice", f->name);
        seen |= bit;
        rc = parse_field(m, f, kv[i + 1], kvlen[i + 1], why, whylen);
        if (rc != MP_OK)
            return rc;
    }
    switch (m->type) {
    case 'g':
        need = NEED_G;
        break;
    case 's':
        need = NEED_S;
        break;
    case 'G':
        need = m->deleted ? NEED_STATE : NEED_LIVE_STATE;
        break;
    default: /* t, i, or no type yet (which is then missing) */
        need = NEED_MESSAGE;
        break;
    }
    for (size_t i = 0; i < MP_ARRAY_LEN(entry_fields); i++)
        if ((need & BIT(i)) && !(seen & BIT(i)))
            return fail(why, whylen, "missing field '%s'", entry_fields[i].name);
    /* what a type does not use stays 0, so the store never writes it */
    if (m->type == 's' || m->type == MQ_TYPE_GROUP_STATE[0]) {
        m->from_seq = 0;
        m->group_n = 0;
    }
    if (m->type != 't' && m->type != 'i')
        m->to_seq = 0;
    else {
        m->group_n = 0;
        m->seqs = NULL;
        m->seqs_len = 0;
    }
    if (m->type == MQ_TYPE_GROUP_STATE[0]) {
        m->mid = m->from = m->to = 0;
        m->cid = m->body = m->seqs = NULL;
        m->cid_len = m->body_len = m->seqs_len = 0;
        if (m->deleted) {
            m->owner = m->created = 0;
            m->name = m->members = NULL;
            m->name_len = m->members_len = 0;
        }
    } else {
        m->ver = m->owner = m->created = 0;
        m->deleted = 0;
        m->name = m->members = NULL;
        m->name_len = m->members_len = 0;
    }
    return check_type(m, seen, why, whylen);
}
