/* Unit tests of persist_entry_parse: what magpie-persist accepts from the chat stream, and that hostile
 * entries get a reason, never a crash, an over-read or a partly filled row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magpie.h"
#include "persist_entry.h"
#include "stream.h"

#define MAXF 16

/* An entry under construction: field/value strings with explicit lengths (values may hold NUL). */
struct entry {
    const char *kv[2 * MAXF];
    size_t len[2 * MAXF];
    size_t n;
};

static void put(struct entry *e, const char *name, const char *value, size_t len)
{
    e->kv[e->n] = name;
    e->len[e->n++] = strlen(name);
    e->kv[e->n] = value;
    e->len[e->n++] = len;
}

static void puts_(struct entry *e, const char *name, const char *value)
{
    put(e, name, value, strlen(value));
}

/* A good entry; `skip` names a field to leave out, `over`/`value`/`len` replaces one field's value. */
static void good(struct entry *e, const char *skip, const char *over, const char *value, size_t len)
{
    static const char *names[] = {MQ_F_VERSION, MQ_F_MID,  MQ_F_FROM, MQ_F_TO,
                                  MQ_F_CID,     MQ_F_TYPE, MQ_F_BODY, MQ_F_TS};
    static const char *values[] = {"1", "123456789012", "42", "43", "c-1", "t", "hello", "1790000000000"};
    memset(e, 0, sizeof(*e));
    for (size_t i = 0; i < MP_ARRAY_LEN(names); i++) {
        if (skip != NULL && strcmp(skip, names[i]) == 0)
            continue;
        if (over != NULL && strcmp(over, names[i]) == 0)
            put(e, names[i], value, len);
        else
            puts_(e, names[i], values[i]);
    }
}

static int parse(struct entry *e, struct persist_msg *m, char *why)
{
    why[0] = '\0';
    return persist_entry_parse(m, e->kv, e->len, e->n, why, PERSIST_WHY_MAX);
}

/* The field `name` set to value (len bytes) is refused with a reason naming the field. */
static void refused(const char *name, const char *value, size_t len)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX], want[64];
    good(&e, NULL, name, value, len);
    if (parse(&e, &m, why) != MP_EINVAL)
        fail_msg("field %s: value of %zu bytes was accepted", name, len);
    snprintf(want, sizeof(want), "'%s'", name);
    if (strstr(why, want) == NULL)
        fail_msg("reason does not name field %s: %s", name, why);
}

static void accepted(const char *name, const char *value, size_t len)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    good(&e, NULL, name, value, len);
    if (parse(&e, &m, why) != MP_OK)
        fail_msg("field %s: refused: %s", name, why);
}

static void test_good_entry(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    good(&e, NULL, NULL, NULL, 0);
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_true(m.mid == 123456789012LL);
    assert_true(m.from == 42 && m.to == 43);
    assert_true(m.ts == 1790000000000LL);
    assert_int_equal(m.type, 't');
    assert_int_equal(m.cid_len, 3);
    assert_memory_equal(m.cid, "c-1", 3);
    assert_int_equal(m.body_len, 5);
    assert_memory_equal(m.body, "hello", 5);
}

static void test_fields_in_any_order_and_unknown_ignored(void **state)
{
    struct entry e = {0};
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    puts_(&e, MQ_F_TS, "5");
    puts_(&e, "future_field", "\xff\xfe anything");
    puts_(&e, MQ_F_BODY, "");
    puts_(&e, MQ_F_TYPE, "i");
    puts_(&e, MQ_F_CID, "x");
    puts_(&e, MQ_F_TO, "1");
    puts_(&e, MQ_F_FROM, "2");
    puts_(&e, MQ_F_MID, "3");
    puts_(&e, "", "");
    puts_(&e, MQ_F_VERSION, MQ_FORMAT_VERSION);
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_int_equal(m.type, 'i');
    assert_int_equal(m.body_len, 0);
    assert_true(m.from == 2 && m.to == 1 && m.mid == 3 && m.ts == 5);
}

static void test_every_field_is_required(void **state)
{
    static const char *names[] = {MQ_F_VERSION, MQ_F_MID,  MQ_F_FROM, MQ_F_TO,
                                  MQ_F_CID,     MQ_F_TYPE, MQ_F_BODY, MQ_F_TS};
    for (size_t i = 0; i < MP_ARRAY_LEN(names); i++) {
        struct entry e;
        struct persist_msg m;
        char why[PERSIST_WHY_MAX], want[64];
        good(&e, names[i], NULL, NULL, 0);
        assert_int_equal(parse(&e, &m, why), MP_EINVAL);
        snprintf(want, sizeof(want), "missing field '%s'", names[i]);
        assert_string_equal(why, want);
    }
}

static void test_empty_and_odd_entries(void **state)
{
    struct entry e = {0};
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    assert_int_equal(parse(&e, &m, why), MP_EINVAL);
    assert_string_equal(why, "missing field 'v'");
    good(&e, NULL, NULL, NULL, 0);
    e.n--; /* a name without its value */
    assert_int_equal(parse(&e, &m, why), MP_EINVAL);
    assert_string_equal(why, "odd number of field names and values (15)");
    good(&e, NULL, NULL, NULL, 0);
    e.kv[3] = NULL; /* a value that is not a string */
    assert_int_equal(parse(&e, &m, why), MP_EINVAL);
    assert_string_equal(why, "field 1 has no value");
}

static void test_field_given_twice(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    good(&e, NULL, NULL, NULL, 0);
    puts_(&e, MQ_F_BODY, "second body");
    assert_int_equal(parse(&e, &m, why), MP_EINVAL);
    assert_string_equal(why, "field 'body' given twice");
}

static void test_version(void **state)
{
    refused(MQ_F_VERSION, "2", 1);
    refused(MQ_F_VERSION, "", 0);
    refused(MQ_F_VERSION, "1 ", 2);
    refused(MQ_F_VERSION, "1\0", 2);
    refused(MQ_F_VERSION, "01", 2);
}

static void test_numbers(void **state)
{
    static const char *names[] = {MQ_F_MID, MQ_F_FROM, MQ_F_TO, MQ_F_TS};
    static const char *bad[] = {"",
                                "0",
                                "00",
                                "007",
                                "-1",
                                "+1",
                                "1.5",
                                " 1",
                                "1 ",
                                "1e3",
                                "0x10",
                                "９",
                                "abc",
                                "18446744073709551616",
                                "9223372036854775808",
                                "99999999999999999999"};
    for (size_t i = 0; i < MP_ARRAY_LEN(names); i++) {
        for (size_t k = 0; k < MP_ARRAY_LEN(bad); k++)
            refused(names[i], bad[k], strlen(bad[k]));
        refused(names[i], "12\0003", 4); /* NUL inside */
        accepted(names[i], "9223372036854775807", 19);
    }
    accepted(MQ_F_MID, "1", 1);
}

static void test_to_must_differ_from_from(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    good(&e, NULL, MQ_F_TO, "42", 2);
    assert_int_equal(parse(&e, &m, why), MP_EINVAL);
    assert_string_equal(why, "field 'to' equals field 'from'");
}

static void test_type(void **state)
{
    refused(MQ_F_TYPE, "", 0);
    refused(MQ_F_TYPE, "tt", 2);
    refused(MQ_F_TYPE, "T", 1);
    refused(MQ_F_TYPE, "x", 1);
    refused(MQ_F_TYPE, "\0", 1);
    accepted(MQ_F_TYPE, "t", 1);
    accepted(MQ_F_TYPE, "i", 1);
}

static void test_cid_lengths(void **state)
{
    char buf[MQ_MAX_CID + 2];
    memset(buf, 'a', sizeof(buf));
    refused(MQ_F_CID, "", 0);
    accepted(MQ_F_CID, buf, MQ_MAX_CID);
    refused(MQ_F_CID, buf, MQ_MAX_CID + 1);
    accepted(MQ_F_CID, "trailing space ", 15);
    /* 16 four-byte characters are 64 bytes */
    char emoji[MQ_MAX_CID + 1] = "";
    for (int i = 0; i < 16; i++)
        strcat(emoji, "\xF0\x9F\x98\x80");
    accepted(MQ_F_CID, emoji, 64);
}

static void test_body_lengths(void **state)
{
    char *buf = malloc(MQ_MAX_BODY + 1);
    assert_non_null(buf);
    memset(buf, 'b', MQ_MAX_BODY + 1);
    accepted(MQ_F_BODY, buf, MQ_MAX_BODY);
    refused(MQ_F_BODY, buf, MQ_MAX_BODY + 1);
    accepted(MQ_F_BODY, "", 0);
    const char *sql = "it's \"quoted\" \\ back; DROP TABLE messages; --";
    accepted(MQ_F_BODY, sql, strlen(sql));
    free(buf);
}

static void test_utf8(void **state)
{
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"plain ascii", 11, 1},
        {"\xC3\xA9", 2, 1},                 /* é */
        {"\xE4\xBD\xA0\xE5\xA5\xBD", 6, 1}, /* 你好 */
        {"\xEF\xBF\xBF", 3, 1},             /* U+FFFF */
        {"\xF0\x9F\x98\x80", 4, 1},         /* U+1F600 */
        {"\xF4\x8F\xBF\xBF", 4, 1},         /* U+10FFFF */
        {"\0", 1, 0},                       /* NUL */
        {"a\0b", 3, 0},
        {"\x80", 1, 0}, /* lone continuation */
        {"\xBF", 1, 0},
        {"\xC0\x80", 2, 0},         /* overlong NUL */
        {"\xC1\xBF", 2, 0},         /* overlong */
        {"\xE0\x80\xAF", 3, 0},     /* overlong '/' */
        {"\xF0\x80\x80\xAF", 4, 0}, /* overlong */
        {"\xED\xA0\x80", 3, 0},     /* surrogate U+D800 */
        {"\xED\xBF\xBF", 3, 0},     /* surrogate U+DFFF */
        {"\xF4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xF5\x80\x80\x80", 4, 0},
        {"\xFF", 1, 0},
        {"\xFE\xFF", 2, 0},
        {"\xE2\x82", 2, 0},     /* truncated € */
        {"\xE2\x82\xAC", 3, 1}, /* € */
        {"\xF0\x9F\x98", 3, 0}, /* truncated emoji */
        {"\xC3\x28", 2, 0},     /* bad continuation */
        {"\xE2\x28\xA1", 3, 0},
    };
    for (size_t i = 0; i < MP_ARRAY_LEN(cases); i++) {
        if (persist_utf8_ok(cases[i].s, cases[i].len) != cases[i].ok)
            fail_msg("case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
        if (cases[i].ok) {
            accepted(MQ_F_BODY, cases[i].s, cases[i].len);
            accepted(MQ_F_CID, cases[i].s, cases[i].len);
        } else {
            refused(MQ_F_BODY, cases[i].s, cases[i].len);
            refused(MQ_F_CID, cases[i].s, cases[i].len);
        }
    }
    /* A truncated sequence at the very end of the allowed length is not read past its end. */
    char *tail = malloc(MQ_MAX_BODY);
    assert_non_null(tail);
    memset(tail, 'a', MQ_MAX_BODY);
    tail[MQ_MAX_BODY - 1] = '\xF0';
    refused(MQ_F_BODY, tail, MQ_MAX_BODY);
    free(tail);
}

static void test_reason_never_quotes_the_value(void **state)
{
    static const char *names[] = {MQ_F_VERSION, MQ_F_MID,  MQ_F_FROM, MQ_F_TO,
                                  MQ_F_CID,     MQ_F_TYPE, MQ_F_BODY, MQ_F_TS};
    const char *secret = "SECRET-\xff-VALUE";
    for (size_t i = 0; i < MP_ARRAY_LEN(names); i++) {
        struct entry e;
        struct persist_msg m;
        char why[PERSIST_WHY_MAX];
        good(&e, NULL, names[i], secret, strlen(secret));
        assert_int_equal(parse(&e, &m, why), MP_EINVAL);
        assert_null(strstr(why, "SECRET"));
    }
}

static void test_many_unknown_fields(void **state)
{
    size_t n = 2 * 20000 + 16, k = 0;
    const char **kv = malloc(n * sizeof(*kv));
    size_t *len = malloc(n * sizeof(*len));
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    assert_non_null(kv);
    assert_non_null(len);
    for (; k < 2 * 20000; k += 2) {
        kv[k] = "junk";
        len[k] = 4;
        kv[k + 1] = "x";
        len[k + 1] = 1;
    }
    good(&e, NULL, NULL, NULL, 0);
    for (size_t i = 0; i < e.n; i++, k++) {
        kv[k] = e.kv[i];
        len[k] = e.len[i];
    }
    assert_int_equal(persist_entry_parse(&m, kv, len, k, why, sizeof(why)), MP_OK);
    free(kv);
    free(len);
}

/* Random bytes in random fields: every outcome is MP_OK or MP_EINVAL with a reason; ASan/UBSan watch for
 * reads outside the given lengths (each value is its own allocation of exactly its length). */
static void test_random_entries(void **state)
{
    static const char *names[] = {MQ_F_VERSION, MQ_F_MID,  MQ_F_FROM, MQ_F_TO, MQ_F_CID,
                                  MQ_F_TYPE,    MQ_F_BODY, MQ_F_TS,   "other", ""};
    static const char alphabet[] = "0123456789-+ t i\x80\xC3\xA9\xF0\x9F\x98\x80\xED\xA0\0";
    unsigned seed = 12345;
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        struct entry e;
        struct persist_msg m;
        char why[PERSIST_WHY_MAX];
        char *vals[MAXF] = {0};
        size_t nf;
        int r = rand_r(&seed);
        good(&e, NULL, NULL, NULL, 0);
        if (r % 3 == 0) { /* mostly good entries with one field changed: deep paths */
            nf = 8;
        } else {
            e.n = 0;
            nf = (size_t)(rand_r(&seed) % MAXF);
        }
        for (size_t f = 0; f < nf && e.n < 2 * MAXF; f++) {
            size_t len = (size_t)(rand_r(&seed) % 24);
            size_t slot = e.n;
            if (r % 3 == 0) {
                if (rand_r(&seed) % 8 != 0)
                    continue;
                slot = 2 * f; /* replace the value of field f */
            }
            vals[f] = malloc(len ? len : 1);
            assert_non_null(vals[f]);
            for (size_t b = 0; b < len; b++)
                vals[f][b] = (rand_r(&seed) % 2) ? alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)]
                                                 : (char)(rand_r(&seed) & 0xff);
            if (slot == e.n) {
                put(&e, names[rand_r(&seed) % MP_ARRAY_LEN(names)], vals[f], len);
            } else {
                e.kv[slot + 1] = vals[f];
                e.len[slot + 1] = len;
            }
        }
        int rc = parse(&e, &m, why);
        if (rc == MP_OK) {
            ok++;
            assert_true(m.mid > 0 && m.from > 0 && m.to > 0 && m.ts > 0 && m.from != m.to);
            assert_true(m.type == 't' || m.type == 'i');
            assert_true(persist_utf8_ok(m.cid, m.cid_len) && m.cid_len >= 1 && m.cid_len <= MQ_MAX_CID);
            assert_true(persist_utf8_ok(m.body, m.body_len) && m.body_len <= MQ_MAX_BODY);
        } else {
            bad++;
            assert_int_equal(rc, MP_EINVAL);
            assert_true(why[0] != '\0');
        }
        for (size_t f = 0; f < MAXF; f++)
            free(vals[f]);
    }
    assert_true(ok > 0 && bad > 0);
}

/* ---- group entries (push/group.h) ---- */

/* A good entry of type type (g, s or G); `skip` leaves a field out, `over` replaces one's value (NUL-free).
 */
static void good_group(struct entry *e, char type, const char *skip, const char *over, const char *value)
{
    static const char *g[][2] = {{MQ_F_VERSION, "1"},   {MQ_F_MID, "7000000000000000001"},
                                 {MQ_F_FROM, "42"},     {MQ_F_TO, "9"},
                                 {MQ_F_CID, "c-1"},     {MQ_F_TYPE, "g"},
                                 {MQ_F_BODY, "hi all"}, {MQ_F_TS, "1790000000000"},
                                 {MQ_F_FROM_SEQ, "17"}, {MQ_F_GROUP, "9"},
                                 {MQ_F_GROUP_N, "3"},   {MQ_F_SEQS, "43:5 44:1 1000000:99"}};
    static const char *s[][2] = {
        {MQ_F_VERSION, "1"},
        {MQ_F_MID, "7000000000000000002"},
        {MQ_F_FROM, "0"},
        {MQ_F_TO, "9"},
        {MQ_F_CID, "7000000000000000002"},
        {MQ_F_TYPE, "s"},
        {MQ_F_BODY, "{\"event\":\"member_added\",\"group\":9,\"by\":42,\"members\":[44]}"},
        {MQ_F_TS, "1790000000001"},
        {MQ_F_GROUP, "9"},
        {MQ_F_SEQS, "42:18 43:6 44:2"}};
    static const char *st[][2] = {
        {MQ_F_VERSION, "1"},
        {MQ_F_TYPE, "G"},
        {MQ_F_GROUP, "9"},
        {MQ_F_TS, "1790000000001"},
        {MQ_F_VER, "4"},
        {MQ_F_NAME, "friends \xE4\xBD\xA0"},
        {MQ_F_OWNER, "42"},
        {MQ_F_CREATED, "1790000000000"},
        {MQ_F_MEMBERS, "42:o:1:1790000000000 43:a:2:1790000000000 44:m:5:1790000000001"}};
    const char *(*f)[2] = type == 'g' ? g : type == 's' ? s : st;
    size_t n = type == 'g' ? MP_ARRAY_LEN(g) : type == 's' ? MP_ARRAY_LEN(s) : MP_ARRAY_LEN(st);
    memset(e, 0, sizeof(*e));
    for (size_t i = 0; i < n; i++) {
        if (skip != NULL && strcmp(skip, f[i][0]) == 0)
            continue;
        puts_(e, f[i][0], over != NULL && strcmp(over, f[i][0]) == 0 ? value : f[i][1]);
    }
}

/* Parse it; expect MP_OK when want is NULL, else MP_EINVAL with a reason that contains want. */
static void expect(struct entry *e, const char *want, const char *what)
{
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    int rc = parse(e, &m, why);
    if (want == NULL && rc != MP_OK)
        fail_msg("%s: refused: %s", what, why);
    if (want != NULL && (rc != MP_EINVAL || strstr(why, want) == NULL))
        fail_msg("%s: expected a reason with \"%s\", got %d \"%s\"", what, want, rc, why);
}

static void test_group_message(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    size_t at = 0;
    int64_t uid, seq;
    good_group(&e, 'g', NULL, NULL, NULL);
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_int_equal(m.type, 'g');
    assert_true(m.from == 42 && m.to == 9 && m.group == 9 && m.group_n == 3 && m.from_seq == 17);
    assert_true(m.to_seq == 0 && m.ver == 0 && m.members == NULL);
    assert_true(persist_seqs_next(m.seqs, m.seqs_len, &at, &uid, &seq) && uid == 43 && seq == 5);
    assert_true(persist_seqs_next(m.seqs, m.seqs_len, &at, &uid, &seq) && uid == 44 && seq == 1);
    assert_true(persist_seqs_next(m.seqs, m.seqs_len, &at, &uid, &seq) && uid == 1000000 && seq == 99);
    assert_false(persist_seqs_next(m.seqs, m.seqs_len, &at, &uid, &seq));
    /* the group id may equal the sender's uid: ids of different things */
    good_group(&e, 'g', NULL, MQ_F_FROM, "9");
    expect(&e, NULL, "group id equal to the sender's uid");
    /* a group whose only member sent: nobody else's seq */
    good_group(&e, 'g', NULL, MQ_F_SEQS, "");
    expect(&e, NULL, "empty seqs");
    /* a tseq is not used by a group entry */
    good_group(&e, 'g', NULL, NULL, NULL);
    puts_(&e, MQ_F_TO_SEQ, "5");
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_true(m.to_seq == 0);

    static const char *needed[] = {MQ_F_FROM_SEQ, MQ_F_GROUP, MQ_F_GROUP_N, MQ_F_SEQS, MQ_F_BODY, MQ_F_CID};
    for (size_t i = 0; i < MP_ARRAY_LEN(needed); i++) {
        char want[64];
        snprintf(want, sizeof(want), "missing field '%s'", needed[i]);
        good_group(&e, 'g', needed[i], NULL, NULL);
        expect(&e, want, needed[i]);
    }
    good_group(&e, 'g', NULL, MQ_F_GROUP, "10");
    expect(&e, "field 'to' differs from field 'group'", "to != group");
    good_group(&e, 'g', NULL, MQ_F_FROM, "0");
    expect(&e, "field 'from': not a decimal number", "from 0");
    good_group(&e, 'g', NULL, MQ_F_SEQS, "43:5 42:18");
    expect(&e, "field 'seqs' lists the sender", "sender in seqs");
    good_group(&e, 'g', NULL, MQ_F_GROUP_N, "0");
    expect(&e, "field 'gn': not a decimal number", "gn 0");
}

static void test_seqs_lists(void **state)
{
    static const char *ok[] = {"", "1:1", "43:5 44:1", "9223372036854775807:9223372036854775807 1:2"};
    static const char *bad[] = {" ",
                                "43:5 ",
                                " 43:5",
                                "43:5  44:1",
                                "43:",
                                ":5",
                                "43",
                                "43:5:6",
                                "43:05",
                                "0:5",
                                "43:0",
                                "43:-5",
                                "a:b",
                                "43;5",
                                "43:5\t44:1",
                                "43:5,44:1",
                                "43:9223372036854775808",
                                "43:5\n"};
    struct entry e;
    for (size_t i = 0; i < MP_ARRAY_LEN(ok); i++) {
        good_group(&e, 's', NULL, MQ_F_SEQS, ok[i]);
        expect(&e, NULL, ok[i]);
    }
    for (size_t i = 0; i < MP_ARRAY_LEN(bad); i++) {
        good_group(&e, 's', NULL, MQ_F_SEQS, bad[i]);
        expect(&e, "field 'seqs': not a list of <uid>:<seq>", bad[i]);
    }
    /* the length bound: more than PERSIST_MAX_LIST bytes is refused before it is read */
    size_t n = PERSIST_MAX_LIST + 4;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i + 4 <= n; i += 4)
        memcpy(big + i, "1:1 ", 4);
    big[n - 1] = '1';
    big[n] = '\0';
    good_group(&e, 'g', NULL, MQ_F_SEQS, big);
    expect(&e, "field 'seqs': longer than", "too long");
    free(big);
}

static void test_group_event(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    good_group(&e, 's', NULL, NULL, NULL);
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_true(m.type == 's' && m.from == 0 && m.group == 9 && m.group_n == 0 && m.from_seq == 0);
    /* an fseq or gn given to an event is not used */
    puts_(&e, MQ_F_FROM_SEQ, "4");
    puts_(&e, MQ_F_GROUP_N, "4");
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_true(m.from_seq == 0 && m.group_n == 0);

    good_group(&e, 's', NULL, MQ_F_FROM, "42");
    expect(&e, "field 'from': must be 0 in a group event", "from not 0");
    good_group(&e, 's', NULL, MQ_F_FROM, "00");
    expect(&e, "field 'from': not a decimal number", "from 00");
    good_group(&e, 's', NULL, MQ_F_CID, "7000000000000000003");
    expect(&e, "field 'cid': must be field 'mid' in decimal", "cid not the mid");
    good_group(&e, 's', NULL, MQ_F_TO, "10");
    expect(&e, "field 'to' differs from field 'group'", "to != group");
    good_group(&e, 's', MQ_F_SEQS, NULL, NULL);
    expect(&e, "missing field 'seqs'", "no seqs");
    static const char *bodies[] = {"", "[]", "\"x\"", "{", "{\"a\":1,\"a\":2}", "{\"a\":1} x", "null"};
    for (size_t i = 0; i < MP_ARRAY_LEN(bodies); i++) {
        good_group(&e, 's', NULL, MQ_F_BODY, bodies[i]);
        expect(&e, "field 'body': not a JSON object", bodies[i]);
    }
    good_group(&e, 's', NULL, MQ_F_BODY, "{}");
    expect(&e, NULL, "an empty object");
}

static void test_group_state(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX], role;
    size_t at = 0;
    int64_t uid, order, ms;
    good_group(&e, 'G', NULL, NULL, NULL);
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_true(m.type == 'G' && m.group == 9 && m.ver == 4 && m.owner == 42 && !m.deleted);
    assert_true(m.created == 1790000000000LL && m.mid == 0 && m.from == 0);
    assert_int_equal(m.name_len, 11);
    assert_true(persist_members_next(m.members, m.members_len, &at, &uid, &role, &order, &ms));
    assert_true(uid == 42 && role == 'o' && order == 1 && ms == 1790000000000LL);
    assert_true(persist_members_next(m.members, m.members_len, &at, &uid, &role, &order, &ms));
    assert_true(persist_members_next(m.members, m.members_len, &at, &uid, &role, &order, &ms));
    assert_true(uid == 44 && role == 'm' && order == 5 && ms == 1790000000001LL);
    assert_false(persist_members_next(m.members, m.members_len, &at, &uid, &role, &order, &ms));

    static const char *needed[] = {MQ_F_GROUP, MQ_F_TS,      MQ_F_VER,    MQ_F_NAME,
                                   MQ_F_OWNER, MQ_F_CREATED, MQ_F_MEMBERS};
    for (size_t i = 0; i < MP_ARRAY_LEN(needed); i++) {
        char want[64];
        snprintf(want, sizeof(want), "missing field '%s'", needed[i]);
        good_group(&e, 'G', needed[i], NULL, NULL);
        expect(&e, want, needed[i]);
    }
    /* deleted: the rest may be missing */
    memset(&e, 0, sizeof(e));
    puts_(&e, MQ_F_VERSION, "1");
    puts_(&e, MQ_F_TYPE, "G");
    puts_(&e, MQ_F_GROUP, "9");
    puts_(&e, MQ_F_TS, "5");
    puts_(&e, MQ_F_VER, "7");
    puts_(&e, MQ_F_DELETED, "1");
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_true(m.deleted && m.ver == 7 && m.members == NULL && m.name == NULL);
    good_group(&e, 'G', NULL, NULL, NULL);
    puts_(&e, MQ_F_DELETED, "0");
    expect(&e, "field 'deleted': must be 1", "deleted 0");

    char name[4 * 65 + 1] = "";
    for (int i = 0; i < 64; i++)
        strcat(name, "\xF0\x9F\x98\x80");
    good_group(&e, 'G', NULL, MQ_F_NAME, name);
    expect(&e, NULL, "64 four-byte characters");
    strcat(name, "a");
    good_group(&e, 'G', NULL, MQ_F_NAME, name);
    expect(&e, "field 'name': not 1..64 characters", "65 characters");
    good_group(&e, 'G', NULL, MQ_F_NAME, "");
    expect(&e, "field 'name': not 1..64 characters", "empty name");
    good_group(&e, 'G', NULL, MQ_F_NAME, "caf\xE9");
    expect(&e, "field 'name': not 1..64 characters", "not UTF-8");

    static const char *bad_members[] = {
        "",         "42:o:1",     "42:x:1:1", "42:oo:1:1", "42:o:1:1 ", "42:o:1:1  43:m:2:1",
        "42:o:0:1", "42:o:1:1:1", "42:O:1:1", "42:o:1:-1"};
    for (size_t i = 0; i < MP_ARRAY_LEN(bad_members); i++) {
        good_group(&e, 'G', NULL, MQ_F_MEMBERS, bad_members[i]);
        expect(&e, "field 'members': not a list of", bad_members[i]);
    }
    good_group(&e, 'G', NULL, MQ_F_MEMBERS, "43:a:2:1 44:m:5:1");
    expect(&e, "the owner (field 'owner') must be the one member with role o", "owner not a member");
    good_group(&e, 'G', NULL, MQ_F_MEMBERS, "42:o:1:1 43:o:2:1");
    expect(&e, "the owner (field 'owner') must be the one member with role o", "two owners");
    good_group(&e, 'G', NULL, MQ_F_MEMBERS, "42:a:1:1 43:o:2:1");
    expect(&e, "the owner (field 'owner') must be the one member with role o", "the owner an admin");
}

static void test_a_1to1_entry_with_a_group_field_is_refused(void **state)
{
    struct entry e;
    good(&e, NULL, NULL, NULL, 0);
    puts_(&e, MQ_F_GROUP, "9");
    expect(&e, "field 'group': only in group entries", "t with group");
    /* the other group fields are not used by a t: ignored like unknown ones */
    good(&e, NULL, NULL, NULL, 0);
    puts_(&e, MQ_F_GROUP_N, "3");
    puts_(&e, MQ_F_SEQS, "1:2");
    expect(&e, NULL, "t with gn and seqs");
}

/* The two halves of a split t or i (push/chat_send.c): one seq each, the other 0 (stored as NULL, filled in
 * by the other half: persist_store.h). Both 0 (an entry from before timelines) stays accepted too. */
static void test_split_halves_carry_one_seq_each(void **state)
{
    struct entry e;
    struct persist_msg m;
    char why[PERSIST_WHY_MAX];
    (void)state;
    good(&e, NULL, NULL, NULL, 0);
    puts_(&e, MQ_F_FROM_SEQ, "5");
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_int_equal(m.from_seq, 5);
    assert_int_equal(m.to_seq, 0);
    good(&e, NULL, MQ_F_TYPE, "i", 1);
    puts_(&e, MQ_F_TO_SEQ, "9");
    assert_int_equal(parse(&e, &m, why), MP_OK);
    assert_int_equal(m.from_seq, 0);
    assert_int_equal(m.to_seq, 9);
    assert_int_equal(m.type, 'i');
    assert_int_equal(m.group, 0);
    good(&e, NULL, NULL, NULL, 0);
    puts_(&e, MQ_F_TO_SEQ, "0");
    assert_int_equal(parse(&e, &m, why), MP_EINVAL); /* a seq is as mid: 0 is not one */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_entry),
        cmocka_unit_test(test_split_halves_carry_one_seq_each),
        cmocka_unit_test(test_fields_in_any_order_and_unknown_ignored),
        cmocka_unit_test(test_every_field_is_required),
        cmocka_unit_test(test_empty_and_odd_entries),
        cmocka_unit_test(test_field_given_twice),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_to_must_differ_from_from),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_cid_lengths),
        cmocka_unit_test(test_body_lengths),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_reason_never_quotes_the_value),
        cmocka_unit_test(test_many_unknown_fields),
        cmocka_unit_test(test_random_entries),
        cmocka_unit_test(test_group_message),
        cmocka_unit_test(test_seqs_lists),
        cmocka_unit_test(test_group_event),
        cmocka_unit_test(test_group_state),
        cmocka_unit_test(test_a_1to1_entry_with_a_group_field_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
