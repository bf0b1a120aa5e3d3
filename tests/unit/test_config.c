/* Unit tests of the config parser: every documented error, with its exact message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

/* Write content (len bytes) to a fresh temp file; its name is in path. */
static void write_conf_len(const char *content, size_t len)
{
    int fd;
    strcpy(path, "/tmp/magpie-test-conf-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
}

static void write_conf(const char *content)
{
    write_conf_len(content, strlen(content));
}

/* Load path and expect failure with "path:<rest>". */
static void expect_error(const char *rest)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN], want[CONFIG_ERR_LEN];
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:%s", path, rest);
    assert_string_equal(err, want);
    unlink(path);
}

static void test_defaults_are_valid(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN] = "";
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    assert_string_equal(cfg.redis.host, "127.0.0.1");
    assert_int_equal(cfg.redis.port, 6379);
    assert_int_equal(cfg.sms.code_ttl_s, 300);
    assert_int_equal(cfg.auth.ws_ticket_ttl_s, 120);
    assert_int_equal(cfg.http.fcgi_socket_mode, 0660);
    assert_int_equal(cfg.http.enable_test_token, 0);
    assert_string_equal(cfg.auth.secret, "");
    assert_string_equal(cfg.sms.test_code, "");
    config_free(&cfg);
}

static void test_valid_file(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN] = "";
    write_conf(
        "# comment\n; another\n\n[redis]\n  port = 6390  \nhost=10.0.0.1\n[auth]\n"
        "secret = abcdefghijklmnopqrstuvwxyz0123456789#not-a-comment\n"
        "[http]\nenable_test_token = yes\nfcgi_socket_mode = 0666\n[push]\nallowed_origins = a, b\r\n");
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.redis.port, 6390);
    assert_string_equal(cfg.redis.host, "10.0.0.1");
    assert_string_equal(cfg.auth.secret, "abcdefghijklmnopqrstuvwxyz0123456789#not-a-comment");
    assert_int_equal(cfg.http.enable_test_token, 1);
    assert_int_equal(cfg.http.fcgi_socket_mode, 0666);
    assert_string_equal(cfg.push.allowed_origins, "a, b");
    assert_int_equal(cfg.mysql.port, 3306); /* untouched keys keep their defaults */
    config_free(&cfg);
    unlink(path);
}

static void test_unknown_key(void **state)
{
    write_conf("[redis]\nport = 6390\nnope = 1\n");
    expect_error("3: unknown key 'nope' in section [redis]");
}

static void test_bad_number(void **state)
{
    write_conf("[redis]\nport = 63x90\n");
    expect_error("2: redis.port: '63x90' is not a number");
}

static void test_empty_number(void **state)
{
    write_conf("[redis]\nport =\n");
    expect_error("2: redis.port: '' is not a number");
}

static void test_out_of_range(void **state)
{
    write_conf("[redis]\nport = 70000\n");
    expect_error("2: redis.port: 70000 is out of range (1..65535)");
}

static void test_negative(void **state)
{
    write_conf("[push]\nrate = -5\n");
    expect_error("2: push.rate: -5 is out of range (1..100000)");
}

static void test_huge_number(void **state)
{
    write_conf("[push]\nrate = 99999999999999999999999\n");
    expect_error("2: push.rate: 99999999999999999999999 is out of range (1..100000)");
}

static void test_missing_section(void **state)
{
    write_conf("port = 6390\n");
    expect_error("1: key 'port' outside of any [section]");
}

static void test_unknown_section(void **state)
{
    write_conf("[redis]\n[nope]\n");
    expect_error("2: unknown section [nope]");
}

static void test_unterminated_section(void **state)
{
    write_conf("[redis\n");
    expect_error("1: expected '[section]'");
}

static void test_no_equals(void **state)
{
    write_conf("[redis]\nport 6390\n");
    expect_error("2: expected 'key = value'");
}

static void test_overlong_line(void **state)
{
    size_t n = CONFIG_MAX_LINE + 10;
    char *buf = malloc(n + 32);
    strcpy(buf, "[log]\n# ");
    memset(buf + 8, 'x', n);
    strcpy(buf + 8 + n, "\n");
    write_conf(buf);
    free(buf);
    expect_error("2: line longer than 4096 bytes");
}

static void test_line_of_exactly_max_is_fine(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];
    char *buf = malloc(CONFIG_MAX_LINE + 32);
    strcpy(buf, "[log]\n#");
    memset(buf + 7, 'x', CONFIG_MAX_LINE - 1); /* '#' + 4095 x = 4096 bytes before the newline */
    strcpy(buf + 7 + CONFIG_MAX_LINE - 1, "\n");
    write_conf(buf);
    free(buf);
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
    config_free(&cfg);
    unlink(path);
}

static void test_nul_byte(void **state)
{
    write_conf_len("[redis]\nport = 63\00090\n", 21);
    expect_error("2: line contains a NUL byte");
}

static void test_bad_bool(void **state)
{
    write_conf("[http]\nenable_test_token = maybe\n");
    expect_error("2: http.enable_test_token: 'maybe' is not yes or no");
}

static void test_short_secret(void **state)
{
    write_conf("[auth]\nsecret = too-short\n");
    expect_error("2: auth.secret: must be at least 32 bytes");
}

static void test_bad_enum(void **state)
{
    write_conf("[log]\nlevel = loud\n");
    expect_error("2: log.level: must be one of debug, info, warn, error");
}

static void test_bad_addr(void **state)
{
    write_conf("[push]\nlisten = 127.0.0.1\n");
    expect_error("2: push.listen: must be host:port with a port in 1..65535");
}

static void test_bad_test_code(void **state)
{
    write_conf("[sms]\ntest_code = 12345a\n");
    expect_error("2: sms.test_code: must be exactly 6 digits");
}

static void test_short_api_key(void **state)
{
    write_conf("[auth]\napi_keys = 0123456789abcdef0123, short\n");
    expect_error("2: auth.api_keys: each key must be at least 16 characters");
}

static void test_bad_sentinels(void **state)
{
    write_conf("[redis]\nsentinels = 127.0.0.1:26379, 10.0.0.2\n");
    expect_error("2: redis.sentinels: must be a comma-separated list of host:port");
}

static void test_sentinels_list_is_accepted(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];
    write_conf(
        "[redis]\nsentinels = 127.0.0.1:26379, sentinel-2:26379,[::1]:26380\nmin_replicas_acked = 1\n");
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
    assert_string_equal(cfg.redis.master_name, "mymaster");
    assert_int_equal(cfg.redis.min_replicas_acked, 1);
    assert_int_equal(cfg.redis.wait_timeout_ms, 500);
    config_free(&cfg);
    unlink(path);
}

/* A WAIT holds magpie-push's command connection: its timeout must be below the watchdog's. */
static void test_wait_timeout_below_command_timeout(void **state)
{
    write_conf("[redis]\nmin_replicas_acked = 1\nwait_timeout_ms = 2000\n");
    expect_error(" redis.wait_timeout_ms (2000) must be below redis.command_timeout_ms (2000) when "
                 "redis.min_replicas_acked is set");
}

static void test_bad_octal(void **state)
{
    write_conf("[http]\nfcgi_socket_mode = 0999\n");
    expect_error("2: http.fcgi_socket_mode: '0999' is not a number");
}

static void test_duplicate_key(void **state)
{
    write_conf("[redis]\nport = 1\n[redis]\nport = 2\n");
    expect_error("4: redis.port is set twice");
}

static void test_missing_file(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_load(&cfg, "/nonexistent/magpie.conf", err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/magpie.conf: cannot open: No such file or directory");
}

static void test_env_override(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];
    write_conf("[redis]\nport = 6390\n");
    setenv("MAGPIE_REDIS_PORT", "6391", 1);
    setenv("MAGPIE_SMS_SINK_FILE", "/tmp/sink", 1);
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.redis.port, 6391);
    assert_string_equal(cfg.sms.sink_file, "/tmp/sink");
    config_free(&cfg);
    setenv("MAGPIE_REDIS_PORT", "x", 1);
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), -1);
    assert_string_equal(err, "MAGPIE_REDIS_PORT: redis.port: 'x' is not a number");
    unsetenv("MAGPIE_REDIS_PORT");
    unsetenv("MAGPIE_SMS_SINK_FILE");
    unlink(path);
}

static void test_format_and_find(void **state)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN], buf[64];
    assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), 0);
    assert_non_null(config_find("redis.port"));
    assert_null(config_find("redis.nope"));
    assert_null(config_find("redis"));
    assert_int_equal(config_format(&cfg, config_find("http.fcgi_socket_mode"), buf, sizeof(buf)), 0);
    assert_string_equal(buf, "0660");
    assert_int_equal(config_format(&cfg, config_find("http.enable_test_token"), buf, sizeof(buf)), 0);
    assert_string_equal(buf, "no");
    config_free(&cfg);
}

static void test_split_addr(void **state)
{
    char host[256];
    int port;
    assert_int_equal(config_split_addr("127.0.0.1:9001", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 9001);
    assert_int_equal(config_split_addr(":80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(config_split_addr("[::1]:443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(config_split_addr("host", host, sizeof(host), &port), -1);
    assert_int_equal(config_split_addr("host:0", host, sizeof(host), &port), -1);
    assert_int_equal(config_split_addr("host:65536", host, sizeof(host), &port), -1);
    assert_int_equal(config_split_addr("host:-1", host, sizeof(host), &port), -1);
    assert_int_equal(config_split_addr("a:b:1", host, sizeof(host), &port), -1);
}

static void test_lists(void **state)
{
    assert_true(config_list_has(" http://a , http://b", "http://b", 8));
    assert_true(config_list_has("http://a", "http://a", 8));
    assert_false(config_list_has("http://a", "http://", 7));
    assert_false(config_list_has("", "x", 1));
    assert_false(config_list_has(",,", "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_valid),
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_number),
        cmocka_unit_test(test_empty_number),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_negative),
        cmocka_unit_test(test_huge_number),
        cmocka_unit_test(test_missing_section),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_unterminated_section),
        cmocka_unit_test(test_no_equals),
        cmocka_unit_test(test_overlong_line),
        cmocka_unit_test(test_line_of_exactly_max_is_fine),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_bad_bool),
        cmocka_unit_test(test_short_secret),
        cmocka_unit_test(test_bad_enum),
        cmocka_unit_test(test_bad_addr),
        cmocka_unit_test(test_bad_test_code),
        cmocka_unit_test(test_short_api_key),
        cmocka_unit_test(test_bad_sentinels),
        cmocka_unit_test(test_sentinels_list_is_accepted),
        cmocka_unit_test(test_wait_timeout_below_command_timeout),
        cmocka_unit_test(test_bad_octal),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_env_override),
        cmocka_unit_test(test_format_and_find),
        cmocka_unit_test(test_split_addr),
        cmocka_unit_test(test_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
