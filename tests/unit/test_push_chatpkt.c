/* Unit tests of push/chatpkt.c: the chat protocol's packets (SPEC §4) against good and hostile input.
 * Every rejection must name its documented reason; nothing may crash or leak (the sanitizer build runs
 * these too), including on random and mutated bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatpkt.h"

/* Parse s; returns the reason (NULL = good); the packet is left in *p for the caller to inspect and free. */
static const char *parse(const char *s, struct chatpkt *p)
{
    return chatpkt_parse(s, strlen(s), p);
}

static void expect_parse(const char *s, const char *reason)
{
    struct chatpkt p;
    const char *got = parse(s, &p);
    if (reason == NULL && got != NULL)
        fail_msg("%s: expected good, got \"%s\"", s, got);
    if (reason != NULL && (got == NULL || strcmp(got, reason) != 0))
        fail_msg("%s: expected \"%s\", got \"%s\"", s, reason, got ? got : "(good)");
    chatpkt_free(&p);
}

static void test_malformed(void **state)
{
    static const char *bad[] = {"",
                                " ",
                                "null",
                                "[]",
                                "\"t\"",
                                "42",
                                "{",
                                "{\"id\":}",
                                "{}{}",
                                "{} x",
                                "{'id':1}",
                                "\xff\xfe",
                                "{\"id\":\"\xc3\x28\",\"type\":\"P\"}",       /* invalid UTF-8 */
                                "{\"id\":\"a\\u0000b\",\"type\":\"P\"}",      /* NUL inside a string */
                                "{\"id\":\"a\",\"id\":\"b\",\"type\":\"P\"}", /* duplicate key */
                                "{\"id\":\"a\",\"type\":\"P\",\"to\":123456789012345678901234567890}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_parse(bad[i], CHAT_E_MALFORMED);

    /* A NUL byte in the frame itself (not escaped) ends nothing early: the whole frame must parse. */
    struct chatpkt p;
    assert_string_equal(chatpkt_parse("{\"id\":\"a\",\"type\":\"P\"}\0xx", 25, &p), CHAT_E_MALFORMED);
    chatpkt_free(&p);
}

static void test_deep_nesting_is_refused_not_crashed(void **state)
{
    size_t n = 200000;
    char *s = malloc(2 * n + 64);
    struct chatpkt p;
    size_t len = (size_t)sprintf(s, "{\"id\":\"a\",\"type\":\"P\",\"msg\":");
    memset(s + len, '[', n);
    memset(s + len + n, ']', n);
    s[len + 2 * n] = '}';
    assert_string_equal(chatpkt_parse(s, len + 2 * n + 1, &p), CHAT_E_MALFORMED);
    chatpkt_free(&p);
    free(s);
}

static void test_id(void **state)
{
    char s[256], id[70];
    expect_parse("{\"type\":\"P\"}", CHAT_E_BAD_ID);
    expect_parse("{\"id\":7,\"type\":\"P\"}", CHAT_E_BAD_ID);
    expect_parse("{\"id\":\"\",\"type\":\"P\"}", CHAT_E_BAD_ID);
    expect_parse("{\"id\":null,\"type\":\"P\"}", CHAT_E_BAD_ID);
    memset(id, 'x', 64);
    id[64] = '\0';
    snprintf(s, sizeof(s), "{\"id\":\"%s\",\"type\":\"P\"}", id);
    expect_parse(s, NULL);
    id[64] = 'x';
    id[65] = '\0';
    snprintf(s, sizeof(s), "{\"id\":\"%s\",\"type\":\"P\"}", id);
    expect_parse(s, CHAT_E_BAD_ID);
}

static void test_id_survives_other_errors(void **state)
{
    struct chatpkt p;
    assert_string_equal(parse("{\"id\":\"abc\",\"type\":\"PP\"}", &p), CHAT_E_BAD_TYPE);
    assert_int_equal(p.id_len, 3);
    assert_memory_equal(p.id, "abc", 3);
    chatpkt_free(&p);
    assert_string_equal(parse("{\"id\":5}", &p), CHAT_E_BAD_ID);
    assert_string_equal(p.id, "");
    chatpkt_free(&p);
}

static void test_type(void **state)
{
    expect_parse("{\"id\":\"a\"}", CHAT_E_BAD_TYPE);
    expect_parse("{\"id\":\"a\",\"type\":\"\"}", CHAT_E_BAD_TYPE);
    expect_parse("{\"id\":\"a\",\"type\":\"tt\"}", CHAT_E_BAD_TYPE);
    expect_parse("{\"id\":\"a\",\"type\":1}", CHAT_E_BAD_TYPE);
    expect_parse("{\"id\":\"a\",\"type\":\"1\"}", CHAT_E_BAD_TYPE);
    expect_parse("{\"id\":\"a\",\"type\":\"\xc3\xa9\"}", CHAT_E_BAD_TYPE);
    /* a letter the server does not handle parses; the handler table answers "unknown type" */
    expect_parse("{\"id\":\"a\",\"type\":\"Z\"}", NULL);
    /* unknown fields are ignored */
    expect_parse("{\"id\":\"a\",\"type\":\"P\",\"extra\":{\"x\":[1,2]}}", NULL);
}

static const char *message(const char *s, int64_t self, struct chat_msg *m)
{
    struct chatpkt p;
    const char *r = parse(s, &p);
    assert_null(r);
    r = chatpkt_message(&p, self, m);
    chatpkt_free(&p); /* m->body dangles after this; callers only look at lengths */
    return r;
}

static char *text_packet(const char *unit, size_t count)
{
    size_t ul = strlen(unit);
    char *s = malloc(64 + ul * count);
    size_t n = (size_t)sprintf(s, "{\"id\":\"a\",\"type\":\"t\",\"to\":2,\"msg\":\"");
    for (size_t i = 0; i < count; i++, n += ul)
        memcpy(s + n, unit, ul);
    strcpy(s + n, "\"}");
    return s;
}

static void test_message(void **state)
{
    struct chat_msg m;
    assert_null(message("{\"id\":\"a\",\"type\":\"t\",\"to\":2,\"msg\":\"hi\"}", 1, &m));
    assert_int_equal(m.to, 2);
    assert_int_equal(m.body_len, 2);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"msg\":\"hi\"}", 1, &m), CHAT_E_BAD_TO);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":0,\"msg\":\"hi\"}", 1, &m),
                        CHAT_E_BAD_TO);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":-3,\"msg\":\"hi\"}", 1, &m),
                        CHAT_E_BAD_TO);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":\"2\",\"msg\":\"hi\"}", 1, &m),
                        CHAT_E_BAD_TO);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":2.5,\"msg\":\"hi\"}", 1, &m),
                        CHAT_E_BAD_TO);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":1,\"msg\":\"hi\"}", 1, &m),
                        CHAT_E_TO_SELF);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":2}", 1, &m), CHAT_E_BAD_MSG);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":2,\"msg\":5}", 1, &m), CHAT_E_BAD_MSG);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":2,\"msg\":{}}", 1, &m), CHAT_E_BAD_MSG);
    assert_string_equal(message("{\"id\":\"a\",\"type\":\"t\",\"to\":2,\"msg\":\"\"}", 1, &m), CHAT_E_EMPTY);
    assert_null(message("{\"id\":\"a\",\"type\":\"i\",\"to\":2,\"msg\":\"img-123\"}", 1, &m));
}

static void test_text_length_counts_characters(void **state)
{
    struct chat_msg m;
    /* 1023 characters pass and 1024 do not, whatever their UTF-8 width */
    static const char *units[] = {"a", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};
    for (size_t u = 0; u < 4; u++) {
        char *ok = text_packet(units[u], CHAT_MAX_TEXT), *too_long = text_packet(units[u], CHAT_MAX_TEXT + 1);
        assert_null(message(ok, 1, &m));
        assert_int_equal(m.body_len, CHAT_MAX_TEXT * strlen(units[u]));
        assert_string_equal(message(too_long, 1, &m), CHAT_E_TOO_LONG);
        free(ok);
        free(too_long);
    }
    /* escapes count as the character they stand for */
    char *esc = text_packet("\\n", CHAT_MAX_TEXT);
    assert_null(message(esc, 1, &m));
    free(esc);
    assert_int_equal(chatpkt_utf8_chars("a\xc3\xa9\xf0\x9f\x98\x80", 7), 3);
}

static void test_online(void **state)
{
    struct chatpkt p;
    int64_t uid;
    static const struct {
        const char *msg;
        int64_t uid;
    } cases[] = {{"5", 5},
                 {"\"42\"", 42},
                 {"\"\"", 0},
                 {"\"4a\"", 0},
                 {"0", 0},
                 {"-1", 0},
                 {"\"1234567890123456789\"", 0},
                 {"null", 0},
                 {"[1]", 0},
                 {"1.5", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char s[128];
        snprintf(s, sizeof(s), "{\"id\":\"a\",\"type\":\"O\",\"msg\":%s}", cases[i].msg);
        assert_null(parse(s, &p));
        if (cases[i].uid) {
            assert_null(chatpkt_online(&p, &uid));
            assert_int_equal(uid, cases[i].uid);
        } else {
            assert_string_equal(chatpkt_online(&p, &uid), CHAT_E_BAD_UID);
        }
        chatpkt_free(&p);
    }
    assert_null(parse("{\"id\":\"a\",\"type\":\"O\"}", &p));
    assert_string_equal(chatpkt_online(&p, &uid), CHAT_E_BAD_UID);
    chatpkt_free(&p);
}

static const char *history(const char *msg, struct chat_history *h)
{
    char s[256];
    struct chatpkt p;
    const char *r;
    snprintf(s, sizeof(s), "{\"id\":\"a\",\"type\":\"H\"%s%s}", msg ? ",\"msg\":" : "", msg ? msg : "");
    assert_null(parse(s, &p));
    r = chatpkt_history(&p, h);
    chatpkt_free(&p);
    return r;
}

static void test_history(void **state)
{
    struct chat_history h;
    assert_null(history("1700000000000", &h));
    assert_int_equal(h.since, 1700000000000LL);
    assert_int_equal(h.with, 0);
    assert_int_equal(h.limit, CHAT_HISTORY_DEFAULT);
    assert_null(history("{\"since\":5,\"with\":9,\"limit\":500}", &h));
    assert_int_equal(h.since, 5);
    assert_int_equal(h.with, 9);
    assert_int_equal(h.limit, 500);
    assert_null(history("{\"since\":0,\"with\":\"9\",\"limit\":1}", &h));
    assert_int_equal(h.with, 9);
    assert_null(history("{\"since\":0,\"with\":null,\"limit\":null}", &h));
    assert_int_equal(h.limit, CHAT_HISTORY_DEFAULT);
    static const char *bad[] = {NULL,
                                "\"1700000000000\"",
                                "-1",
                                "1.5",
                                "{}",
                                "{\"since\":-5}",
                                "{\"since\":\"5\"}",
                                "{\"since\":5,\"limit\":0}",
                                "{\"since\":5,\"limit\":501}",
                                "{\"since\":5,\"limit\":\"10\"}",
                                "{\"since\":5,\"with\":0}",
                                "{\"since\":5,\"with\":\"x\"}",
                                "[5]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_string_equal(history(bad[i], &h), CHAT_E_BAD_HISTORY);
}

static void test_order(void **state)
{
    char order[CHAT_MAX_ORDER + 1], s[256], long_id[70];
    struct chatpkt p;
    assert_null(parse("{\"id\":\"a\",\"type\":\"T\",\"msg\":\"ord-1\"}", &p));
    assert_null(chatpkt_order(&p, order, sizeof(order)));
    assert_string_equal(order, "ord-1");
    chatpkt_free(&p);
    assert_null(parse("{\"id\":\"a\",\"type\":\"T\",\"msg\":1234}", &p));
    assert_null(chatpkt_order(&p, order, sizeof(order)));
    assert_string_equal(order, "1234");
    chatpkt_free(&p);
    memset(long_id, 'o', 65);
    long_id[65] = '\0';
    const char *bad[] = {"\"\"", "0", "-4", "{}", "null", "\"a\\nb\"", "\"a\\u007fb\"", long_id};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bad[i] == long_id)
            snprintf(s, sizeof(s), "{\"id\":\"a\",\"type\":\"T\",\"msg\":\"%s\"}", long_id);
        else
            snprintf(s, sizeof(s), "{\"id\":\"a\",\"type\":\"T\",\"msg\":%s}", bad[i]);
        assert_null(parse(s, &p));
        assert_string_equal(chatpkt_order(&p, order, sizeof(order)), CHAT_E_BAD_ORDER);
        chatpkt_free(&p);
    }
}

static void test_site(void **state)
{
    struct chatpkt p;
    double lon, lat;
    assert_null(parse("{\"id\":\"a\",\"type\":\"S\",\"msg\":{\"longitude\":116.4,\"latitude\":39.9}}", &p));
    assert_null(chatpkt_site(&p, &lon, &lat));
    assert_true(lon > 116.39 && lon < 116.41 && lat > 39.89 && lat < 39.91);
    chatpkt_free(&p);
    assert_null(parse("{\"id\":\"a\",\"type\":\"S\",\"msg\":{\"longtitude\":-3,\"latitude\":0}}", &p));
    assert_null(chatpkt_site(&p, &lon, &lat));
    assert_true(lon == -3 && lat == 0);
    chatpkt_free(&p);
    static const char *bad[] = {"{\"longitude\":181,\"latitude\":0}",
                                "{\"longitude\":0,\"latitude\":86}",
                                "{\"longitude\":\"1\",\"latitude\":0}",
                                "{\"latitude\":0}",
                                "{\"longitude\":1}",
                                "[1,2]",
                                "\"1,2\"",
                                "{\"longitude\":1e999,\"latitude\":0}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char s[160];
        snprintf(s, sizeof(s), "{\"id\":\"a\",\"type\":\"S\",\"msg\":%s}", bad[i]);
        if (parse(s, &p) == NULL)
            assert_string_equal(chatpkt_site(&p, &lon, &lat), CHAT_E_BAD_SITE);
        chatpkt_free(&p);
    }
}

static void test_server_packets(void **state)
{
    size_t len;
    char *s = chatpkt_reply("x\"1", 3, 'E', json_string("bad \"thing\"\n"), &len);
    assert_string_equal(s, "{\"id\":\"x\\\"1\",\"from\":0,\"type\":\"E\",\"msg\":\"bad \\\"thing\\\"\\n\"}");
    assert_int_equal(len, strlen(s));
    free(s);
    s = chatpkt_reply_ex("a", 1, 'A', json_string("success"), json_pack("{s:s}", "mid", "77"), &len);
    assert_string_equal(s, "{\"id\":\"a\",\"from\":0,\"type\":\"A\",\"msg\":\"success\",\"mid\":\"77\"}");
    free(s);
    s = packet_chat("c1", 2, 5, 6, 't', "h\xc3\xa9</script>", 12, 1700000000123LL, 9007199254740993LL, &len);
    assert_string_equal(s, "{\"id\":\"c1\",\"from\":5,\"to\":6,\"type\":\"t\",\"msg\":\"h\xc3\xa9</script>\","
                           "\"ts\":1700000000123,\"mid\":\"9007199254740993\"}");
    free(s);
    /* bytes that are not UTF-8 cannot become a packet */
    assert_null(packet_chat("c1", 2, 5, 6, 't', "\xff", 1, 1, 1, &len));
}

static void test_delivery_between_nodes(void **state)
{
    size_t len, plen;
    struct chat_delivery d;
    char *p = chatpkt_delivery(12, 34, 1700000000123LL, "{\"x\":\"a\nb\"}", 12, &len);
    char *pub = malloc(len + 8);
    /* the send script puts the two seqs in front */
    memcpy(pub, "7 5 ", 4);
    memcpy(pub + 4, p, len);
    len += 4;
    assert_int_equal(chatpkt_delivery_parse(pub, len, &d), 0);
    assert_int_equal(d.from_seq, 7);
    assert_int_equal(d.to_seq, 5);
    assert_int_equal(d.to, 12);
    assert_int_equal(d.from, 34);
    assert_int_equal(d.ts, 1700000000123LL);
    assert_int_equal(d.packet_len, 12);
    assert_memory_equal(d.packet, "{\"x\":\"a\nb\"}", 12);
    /* a split send's halves (push/chat_send.c): one of the seqs is 0 */
    memcpy(pub, "0 5 ", 4);
    assert_int_equal(chatpkt_delivery_parse(pub, len, &d), 0);
    assert_int_equal(d.from_seq, 0);
    assert_int_equal(d.to_seq, 5);
    memcpy(pub, "7 0 ", 4);
    assert_int_equal(chatpkt_delivery_parse(pub, len, &d), 0);
    assert_int_equal(d.from_seq, 7);
    assert_int_equal(d.to_seq, 0);
    memcpy(pub, "0 0 ", 4);
    assert_int_equal(chatpkt_delivery_parse(pub, len, &d), -1);
    /* every truncation of a good payload but the whole is refused or parses to a shorter packet */
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut + 1); /* exactly cut bytes: reading past them is a sanitizer error */
        memcpy(copy, pub, cut);
        if (chatpkt_delivery_parse(copy, cut, &d) == 0)
            assert_true(d.packet_len < 12 && d.to == 12 && d.from == 34);
        free(copy);
    }
    free(p);
    free(pub);
    static const char *bad[] = {"",
                                "\n",
                                "1 2 1 2\n{}",
                                "1 2 1 2 3",
                                "1 2 a 2 3\n{}",
                                "1 2 0 2 3\n{}",
                                "1 2 1 0 3\n{}",
                                "0 0 1 2 3\n{}",
                                "-1 2 1 2 3\n{}",
                                "1 2 -1 2 3\n{}",
                                "1 2 1  2 3\n{}",
                                "1 2 1234567890123456789 2 3\n{}",
                                "1 2 1 2 3 4\n{}",
                                "1 2 3\n{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(chatpkt_delivery_parse(bad[i], strlen(bad[i]), &d), -1);
    (void)plen;
}

static void test_with_seq(void **state)
{
    size_t len;
    char *s = packet_with_seq("{\"id\":\"a\",\"mid\":\"9\"}", 20, 42, &len);
    assert_string_equal(s, "{\"id\":\"a\",\"mid\":\"9\",\"seq\":42}");
    assert_int_equal(len, strlen(s));
    free(s);
    s = packet_with_seq("{}", 2, 1, &len);
    assert_string_equal(s, "{\"seq\":1}");
    free(s);
    /* not an object: nothing */
    assert_null(packet_with_seq("[1]", 3, 1, &len));
    assert_null(packet_with_seq("{", 1, 1, &len));
    assert_null(packet_with_seq("", 0, 1, &len));
}

static void test_sync(void **state)
{
    static const struct {
        const char *msg;
        const char *want;
        long long after;
        int limit;
    } cases[] = {
        {"{\"after\":0}", NULL, 0, CHAT_SYNC_DEFAULT},
        {"{\"after\":17,\"limit\":5}", NULL, 17, 5},
        {"{\"after\":9007199254740993,\"limit\":500}", NULL, 9007199254740993LL, 500},
        {"{\"after\":3,\"limit\":null}", NULL, 3, CHAT_SYNC_DEFAULT},
        {"{\"after\":-1}", CHAT_E_BAD_SYNC, 0, 0},
        {"{\"after\":\"5\"}", CHAT_E_BAD_SYNC, 0, 0},
        {"{\"after\":1.5}", CHAT_E_BAD_SYNC, 0, 0},
        {"{}", CHAT_E_BAD_SYNC, 0, 0},
        {"{\"after\":1,\"limit\":0}", CHAT_E_BAD_SYNC, 0, 0},
        {"{\"after\":1,\"limit\":501}", CHAT_E_BAD_SYNC, 0, 0},
        {"{\"after\":1,\"limit\":99999999999999}", CHAT_E_BAD_SYNC, 0, 0},
        {"{\"after\":1,\"limit\":\"5\"}", CHAT_E_BAD_SYNC, 0, 0},
        {"5", CHAT_E_BAD_SYNC, 0, 0},
        {"null", CHAT_E_BAD_SYNC, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        struct chatpkt p;
        struct chat_sync y;
        const char *why;
        snprintf(buf, sizeof(buf), "{\"id\":\"y\",\"to\":0,\"type\":\"Y\",\"msg\":%s}", cases[i].msg);
        assert_null(chatpkt_parse(buf, strlen(buf), &p));
        why = chatpkt_sync(&p, &y);
        if (cases[i].want == NULL) {
            assert_null(why);
            assert_int_equal(y.after, cases[i].after);
            assert_int_equal(y.limit, cases[i].limit);
        } else {
            assert_string_equal(why, cases[i].want);
        }
        chatpkt_free(&p);
    }
}

static void test_read(void **state)
{
    static const struct {
        const char *msg;
        const char *want;
        long long with, group, mid;
    } cases[] = {
        {"{\"with\":7,\"mid\":\"9223372036854775807\"}", NULL, 7, 0, 9223372036854775807LL},
        {"{\"with\":\"7\",\"mid\":12}", NULL, 7, 0, 12},
        {"{\"group\":3,\"mid\":\"12\"}", NULL, 0, 3, 12},
        {"{\"with\":7,\"mid\":\"9223372036854775808\"}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7,\"mid\":\"12345678901234567890\"}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7,\"mid\":\"\"}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7,\"mid\":\"1a\"}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7,\"mid\":0}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7,\"mid\":-5}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":1,\"mid\":5}", CHAT_E_BAD_READ, 0, 0, 0}, /* self */
        {"{\"with\":0,\"mid\":5}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"with\":7,\"group\":3,\"mid\":5}", CHAT_E_BAD_READ, 0, 0, 0},
        {"{\"mid\":5}", CHAT_E_BAD_READ, 0, 0, 0},
        {"[7,5]", CHAT_E_BAD_READ, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        struct chatpkt p;
        struct chat_read r;
        const char *why;
        snprintf(buf, sizeof(buf), "{\"id\":\"r\",\"to\":0,\"type\":\"R\",\"msg\":%s}", cases[i].msg);
        assert_null(chatpkt_parse(buf, strlen(buf), &p));
        why = chatpkt_read(&p, 1, &r);
        if (cases[i].want == NULL) {
            assert_null(why);
            assert_int_equal(r.with, cases[i].with);
            assert_int_equal(r.group, cases[i].group);
            assert_int_equal(r.mid, cases[i].mid);
        } else {
            assert_string_equal(why, cases[i].want);
        }
        chatpkt_free(&p);
    }
}

static void test_user_packet_between_nodes(void **state)
{
    int64_t uid;
    const char *packet;
    size_t len;
    static const char *bad[] = {"",        "u",        "u ",      "u 5",    "u 5\n",
                                "u 0\n{}", "u -1\n{}", "x 5\n{}", "u5\n{}", "1 2 3 4 5\n{}"};
    assert_int_equal(chatpkt_user_packet_parse("u 42\n{\"a\":1}", 12, &uid, &packet, &len), 0);
    assert_int_equal(uid, 42);
    assert_int_equal(len, 7);
    assert_memory_equal(packet, "{\"a\":1}", 7);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(chatpkt_user_packet_parse(bad[i], strlen(bad[i]), &uid, &packet, &len), -1);
}

/* CHAN_CONTROL commands (bus.h) from magpie-http: each one that relay.c acts on, and every way to be wrong.
 */
static void test_control_commands(void **state)
{
    struct chat_control c;
    static const char kick[] = "{\"cmd\":\"kick\",\"uid\":42}";
    static const char logout[] =
        "{\"cmd\":\"logout\",\"uid\":7,\"sid\":\"0123456789abcdef0123456789abcdef\"}";
    static const char deliver[] =
        "{\"cmd\":\"deliver\",\"uid\":9,\"packet\":{\"type\":\"s\",\"msg\":\"hi\"}}";

    assert_int_equal(chatpkt_control_parse(kick, strlen(kick), &c), 0);
    assert_int_equal(c.cmd, CHAT_CTL_KICK);
    assert_int_equal(c.uid, 42);
    chatpkt_control_free(&c);
    assert_int_equal(chatpkt_control_parse(logout, strlen(logout), &c), 0);
    assert_int_equal(c.cmd, CHAT_CTL_LOGOUT);
    assert_int_equal(c.uid, 7);
    assert_string_equal(c.sid, "0123456789abcdef0123456789abcdef");
    chatpkt_control_free(&c);
    assert_int_equal(chatpkt_control_parse(deliver, strlen(deliver), &c), 0);
    assert_int_equal(c.cmd, CHAT_CTL_DELIVER);
    assert_string_equal(json_string_value(json_object_get(c.packet, "msg")), "hi");
    chatpkt_control_free(&c);

    static const char *bad[] = {"",
                                "{",
                                "[]",
                                "{\"uid\":1}",
                                "{\"cmd\":1,\"uid\":1}",
                                "{\"cmd\":\"kick\"}",
                                "{\"cmd\":\"kick\",\"uid\":0}",
                                "{\"cmd\":\"kick\",\"uid\":-5}",
                                "{\"cmd\":\"kick\",\"uid\":\"5\"}",
                                "{\"cmd\":\"kick\",\"uid\":1.5}",
                                "{\"cmd\":\"logout\",\"uid\":1}",
                                "{\"cmd\":\"logout\",\"uid\":1,\"sid\":\"\"}",
                                "{\"cmd\":\"logout\",\"uid\":1,\"sid\":5}",
                                "{\"cmd\":\"deliver\",\"uid\":1}",
                                "{\"cmd\":\"deliver\",\"uid\":1,\"packet\":\"x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (chatpkt_control_parse(bad[i], strlen(bad[i]), &c) != -1)
            fail_msg("%s: expected -1", bad[i]);
        chatpkt_control_free(&c);
    }
    assert_int_equal(chatpkt_control_parse("{\"cmd\":\"reboot\",\"uid\":1}", 24, &c), -2);
    chatpkt_control_free(&c);
}

/* Everything a handler would call, on whatever parsed. */
static void run_all(const char *buf, size_t len)
{
    struct chatpkt p;
    struct chat_msg m;
    struct chat_history h;
    struct chat_sync y;
    struct chat_read rd;
    struct chat_delivery d;
    const char *pk;
    size_t pklen;
    char order[CHAT_MAX_ORDER + 1];
    double lon, lat;
    int64_t uid;
    (void)chatpkt_delivery_parse(buf, len, &d);
    (void)chatpkt_user_packet_parse(buf, len, &uid, &pk, &pklen);
    if (chatpkt_parse(buf, len, &p) == NULL) {
        (void)chatpkt_message(&p, 1, &m);
        (void)chatpkt_online(&p, &uid);
        (void)chatpkt_history(&p, &h);
        (void)chatpkt_sync(&p, &y);
        (void)chatpkt_read(&p, 1, &rd);
        (void)chatpkt_order(&p, order, sizeof(order));
        (void)chatpkt_site(&p, &lon, &lat);
    }
    chatpkt_free(&p);
}

static void test_random_and_mutated_bytes(void **state)
{
    static const char *seeds[] = {
        "{\"id\":\"abc\",\"to\":2,\"type\":\"t\",\"msg\":\"hello\"}",
        "{\"id\":\"q\",\"to\":0,\"type\":\"H\",\"msg\":{\"since\":5,\"with\":3,\"limit\":20}}",
        "{\"id\":\"s\",\"to\":0,\"type\":\"S\",\"msg\":{\"longtitude\":1.5,\"latitude\":2.5}}",
        "{\"id\":\"o\",\"to\":0,\"type\":\"T\",\"msg\":\"order-9\"}",
        "{\"id\":\"y\",\"to\":0,\"type\":\"Y\",\"msg\":{\"after\":5,\"limit\":20}}",
    };
    static const char alphabet[] = "{}[]\",:0123456789-.eE\\u tfnrlsaxHOSTPi\xc3\xa9\xff";
    unsigned char buf[256];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 200000; round++) {
        const char *seed = seeds[round % 5];
        size_t len = strlen(seed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (round % 2) {
            memcpy(buf, seed, len);
            for (int k = 0; k < 1 + (int)(x % 4); k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[x % len] = (unsigned char)alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
            }
        } else {
            len = x % sizeof(buf);
            for (size_t i = 0; i < len; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[i] = (unsigned char)alphabet[x % (sizeof(alphabet) - 1)];
            }
        }
        run_all((const char *)buf, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_deep_nesting_is_refused_not_crashed),
        cmocka_unit_test(test_id),
        cmocka_unit_test(test_id_survives_other_errors),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_text_length_counts_characters),
        cmocka_unit_test(test_online),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_site),
        cmocka_unit_test(test_server_packets),
        cmocka_unit_test(test_delivery_between_nodes),
        cmocka_unit_test(test_with_seq),
        cmocka_unit_test(test_sync),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_user_packet_between_nodes),
        cmocka_unit_test(test_control_commands),
        cmocka_unit_test(test_random_and_mutated_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
