/* Unit tests of shared/sentinel.c that need no server: which replies mean "this is a replica now", which are
 * a +switch-master announcement of our master, and what a search through sentinels that are all down answers.
 * (The failover itself is tests/integration/test_sentinel.py, against real sentinels.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "config.h"
#include "magpie.h"
#include "sentinel.h"

static redisReply reply(int type, const char *str)
{
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.str = (char *)str;
    r.len = str ? strlen(str) : 0;
    return r;
}

static void test_readonly_replies(void **state)
{
    /* what Redis 7.0 answers a write on a replica, directly and from inside EVALSHA (recorded) */
    redisReply direct = reply(REDIS_REPLY_ERROR, "READONLY You can't write against a read only replica.");
    redisReply script =
        reply(REDIS_REPLY_ERROR, "READONLY You can't write against a read only replica. script: "
                                 "e0e1f9fabfc9d4800c877a703b823ac0578ff8db, on @user_script:3.");
    redisReply old = reply(REDIS_REPLY_ERROR, "ERR Error running script (call to f_e0e1f9fabfc9d480): "
                                              "@user_script:3: -READONLY You can't write against a read "
                                              "only replica.");
    redisReply wait = reply(REDIS_REPLY_ERROR, "ERR WAIT cannot be used with replica instances. Please also "
                                               "note that since Redis 4.0 if a replica is configured to be "
                                               "writable (which is not the default) writes to replicas are "
                                               "just local and are not propagated.");
    redisReply other = reply(REDIS_REPLY_ERROR, "ERR unknown command");
    redisReply noscript = reply(REDIS_REPLY_ERROR, "NOSCRIPT No matching script.");
    redisReply status = reply(REDIS_REPLY_STATUS, "READONLY");
    redisReply str = reply(REDIS_REPLY_STRING, "READONLY You can't write against a read only replica.");

    assert_true(sentinel_readonly(&direct));
    assert_true(sentinel_readonly(&script));
    assert_true(sentinel_readonly(&old));
    assert_true(sentinel_readonly(&wait));
    assert_false(sentinel_readonly(&other));
    assert_false(sentinel_readonly(&noscript));
    assert_false(sentinel_readonly(&status)); /* only an error reply counts */
    assert_false(sentinel_readonly(&str));    /* a value that happens to say so */
    assert_false(sentinel_readonly(NULL));
}

/* A pub/sub message reply as hiredis gives it: {kind, channel, payload}. */
struct message {
    redisReply top, parts[3];
    redisReply *elements[3];
};

static void message(struct message *m, const char *kind, const char *channel, const char *payload)
{
    const char *s[3] = {kind, channel, payload};
    for (int i = 0; i < 3; i++) {
        m->parts[i] = reply(REDIS_REPLY_STRING, s[i]);
        m->elements[i] = &m->parts[i];
    }
    m->top = reply(REDIS_REPLY_ARRAY, NULL);
    m->top.elements = 3;
    m->top.element = m->elements;
}

static void test_switch_master_announcements(void **state)
{
    struct sentinel_switch s;
    struct message m;

    /* what a Redis 7.0 sentinel publishes when it has switched the master (recorded) */
    message(&m, "message", "+switch-master", "mymaster 127.0.0.1 6390 127.0.0.1 6391");
    assert_true(sentinel_parse_switch(&m.top, "mymaster", &s));
    assert_string_equal(s.old_host, "127.0.0.1");
    assert_int_equal(s.old_port, 6390);
    assert_string_equal(s.host, "127.0.0.1");
    assert_int_equal(s.port, 6391);

    /* another master the same sentinels watch */
    assert_false(sentinel_parse_switch(&m.top, "cache-a", &s));
    /* the subscription's confirmation, another channel, garbage */
    message(&m, "subscribe", "+switch-master", "1");
    assert_false(sentinel_parse_switch(&m.top, "mymaster", &s));
    message(&m, "message", "+sdown", "master mymaster 127.0.0.1 6390");
    assert_false(sentinel_parse_switch(&m.top, "mymaster", &s));
    message(&m, "message", "+switch-master", "mymaster 127.0.0.1 6390 127.0.0.1");
    assert_false(sentinel_parse_switch(&m.top, "mymaster", &s));
    message(&m, "message", "+switch-master", "mymaster 127.0.0.1 6390 127.0.0.1 70000");
    assert_false(sentinel_parse_switch(&m.top, "mymaster", &s));
    message(&m, "message", "+switch-master", "");
    assert_false(sentinel_parse_switch(&m.top, "mymaster", &s));
    assert_false(sentinel_parse_switch(NULL, "mymaster", &s));
}

/* A loopback port with nothing listening (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_enabled_only_with_sentinels(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    assert_false(sentinel_enabled(&cfg));
    config_free(&cfg);
}

static void test_no_sentinel_answers(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN], list[64], host[256] = "", why[600], want[64];
    int port = -1, p1 = closed_port(), p2 = closed_port();

    snprintf(list, sizeof(list), "127.0.0.1:%d, 127.0.0.1:%d", p1, p2);
    setenv("MAGPIE_REDIS_SENTINELS", list, 1);
    setenv("MAGPIE_REDIS_MASTER_NAME", "cache-a", 1);
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    unsetenv("MAGPIE_REDIS_SENTINELS");
    unsetenv("MAGPIE_REDIS_MASTER_NAME");
    assert_true(sentinel_enabled(&cfg));
    assert_int_equal(sentinel_find_master(&cfg, host, sizeof(host), &port, why, sizeof(why)), MP_EAGAIN);
    /* the operator reads which name was looked for and the last sentinel that failed */
    assert_non_null(strstr(why, "no sentinel named a master for cache-a"));
    snprintf(want, sizeof(want), "127.0.0.1:%d", p2);
    assert_non_null(strstr(why, want));
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readonly_replies),
        cmocka_unit_test(test_switch_master_announcements),
        cmocka_unit_test(test_enabled_only_with_sentinels),
        cmocka_unit_test(test_no_sentinel_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
