/* persist_entry.c -- see persist_entry.h. */
#include "persist_entry.h"
#include "magpie.h"
#include "stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* 2^63-1 has 19 digits. */
#define ENTRY_MAX_DIGITS 19

enum field_kind { FIELD_VERSION, FIELD_ID, FIELD_TEXT, FIELD_TYPE };

/* The fields of stream.h: how each is checked and where it goes. */
static const struct entry_field {
    const char *name;
    enum field_kind kind;
    size_t max_len;  /* FIELD_TEXT */
    int allow_empty; /* FIELD_TEXT */
    size_t num_off;  /* FIELD_ID: offset of the int64_t in struct persist_msg */
    size_t str_off;  /* FIELD_TEXT: offsets of the pointer and the length */
    size_t len_off;
    int optional; /* may be missing (then its value stays 0) */
} entry_fields[] = {
    {MQ_F_VERSION, FIELD_VERSION, 0, 0, 0, 0, 0, 0},
    {MQ_F_MID, FIELD_ID, 0, 0, offsetof(struct persist_msg, mid), 0, 0, 0},
    {MQ_F_FROM, FIELD_ID, 0, 0, offsetof(struct persist_msg, from), 0, 0, 0},
    {MQ_F_TO, FIELD_ID, 0, 0, offsetof(struct persist_msg, to), 0, 0, 0},
    {MQ_F_CID, FIELD_TEXT, MQ_MAX_CID, 0, 0, offsetof(struct persist_msg, cid),
     offsetof(struct persist_msg, cid_len), 0},
    {MQ_F_TYPE, FIELD_TYPE, 0, 0, 0, 0, 0, 0},
    {MQ_F_BODY, FIELD_TEXT, MQ_MAX_BODY, 1, 0, offsetof(struct persist_msg, body),
     offsetof(struct persist_msg, body_len), 0},
    {MQ_F_TS, FIELD_ID, 0, 0, offsetof(struct persist_msg, ts), 0, 0, 0},
    {MQ_F_FROM_SEQ, FIELD_ID, 0, 0, offsetof(struct persist_msg, from_seq), 0, 0, 1},
    {MQ_F_TO_SEQ, FIELD_ID, 0, 0, offsetof(struct persist_msg, to_seq), 0, 0, 1},
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

static const struct entry_field *find_field(const char *name, size_t len)
{
    for (size_t i = 0; i < MP_ARRAY_LEN(entry_fields); i++)
        if (strlen(entry_fields[i].name) == len && memcmp(entry_fields[i].name, name, len) == 0)
            return &entry_fields[i];
    return NULL;
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
        *(const char **)(void *)(base + f->str_off) = v;
        *(size_t *)(void *)(base + f->len_off) = len;
        return MP_OK;
    case FIELD_TYPE:
        if (len != 1 || (v[0] != 't' && v[0] != 'i'))
            return fail(why, whylen, "field '%s': must be t or i", f->name);
        m->type = v[0];
        return MP_OK;
    }
    return MP_EINVAL;
}

int persist_entry_parse(struct persist_msg *m, const char *const *kv, const size_t *kvlen, size_t nkv,
                        char *why, size_t whylen)
{
    unsigned seen = 0;
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
        bit = 1u << (f - entry_fields);
        if (seen & bit)
            return fail(why, whylen, "field '%s' given twice", f->name);
        seen |= bit;
        rc = parse_field(m, f, kv[i + 1], kvlen[i + 1], why, whylen);
        if (rc != MP_OK)
            return rc;
    }
    for (size_t i = 0; i < MP_ARRAY_LEN(entry_fields); i++)
        if (!(seen & (1u << i)) && !entry_fields[i].optional)
            return fail(why, whylen, "missing field '%s'", entry_fields[i].name);
    if (m->to == m->from)
        return fail(why, whylen, "field '%s' equals field '%s'", MQ_F_TO, MQ_F_FROM);
    return MP_OK;
}
