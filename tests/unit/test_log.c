/* Unit tests of the log: line format, levels, one line per event, reopen after rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char path[64], rotated[80];

static char *slurp(const char *p)
{
    static char buf[8192];
    FILE *fp = fopen(p, "r");
    size_t n = 0;
    if (fp != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
    }
    buf[n] = '\0';
    return buf;
}

static int setup(void **state)
{
    int fd;
    strcpy(path, "/tmp/magpie-test-log-XXXXXX");
    fd = mkstemp(path);
    close(fd);
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    return log_open("tester", "info", path);
}

static int teardown(void **state)
{
    log_open("tester", "info", NULL);
    unlink(path);
    unlink(rotated);
    return 0;
}

static void test_format(void **state)
{
    regex_t re;
    log_info("listening addr=%s node=%d", "127.0.0.1:9001", 3);
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z INFO tester "
                             "listening addr=127\\.0\\.0\\.1:9001 node=3\n$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(regexec(&re, slurp(path), 0, NULL, 0), 0);
    regfree(&re);
}

static void test_levels(void **state)
{
    truncate(path, 0);
    log_debug("hidden %d", 1);
    log_warn("shown %d", 2);
    assert_null(strstr(slurp(path), "hidden"));
    assert_non_null(strstr(slurp(path), " WARN tester shown 2\n"));
    assert_int_equal(log_open("tester", "loud", path), -1);
}

static void test_control_chars_cannot_forge_lines(void **state)
{
    truncate(path, 0);
    log_info("ua=%s", "evil\n2026-01-01T00:00:00.000Z ERROR tester forged");
    char *text = slurp(path);
    assert_non_null(strstr(text, "ua=evil?2026"));
    assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
}

static void test_reopen_after_rotation(void **state)
{
    log_info("before rotation");
    assert_int_equal(rename(path, rotated), 0);
    log_info("still to the old file");
    log_request_reopen();
    log_info("after reopen");
    assert_non_null(strstr(slurp(rotated), "still to the old file"));
    assert_null(strstr(slurp(rotated), "after reopen"));
    assert_non_null(strstr(slurp(path), "after reopen"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_control_chars_cannot_forge_lines),
        cmocka_unit_test(test_reopen_after_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
