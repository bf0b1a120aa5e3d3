/* Unit tests of the log: line format, levels, one line per event, reopen after rotation, the fatal-signal
 * notice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
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

/* A child that dies of sig (raised, or a real fault when fault is set) with the handlers installed must log
 * one notice line in the log's format, then its backtrace, and die of that very signal (no core here). */
static void die_of(int sig, int fault, const char *name)
{
    struct rlimit none = {0, 0};
    char want[160];
    regex_t re;
    int status = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        setrlimit(RLIMIT_CORE, &none);
        log_fatal_signals();
        if (fault) { /* a real fault, on a page that may not be written (UBSan would stop a NULL store) */
            volatile int *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            assert_true(p != MAP_FAILED);
            *p = 1;
        }
        raise(sig);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), sig);
    snprintf(want, sizeof(want),
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z ERROR tester fatal signal sig=%s signo=%d .*pid=%d "
             ".*\n.+\n",
             name, sig, (int)pid);
    assert_int_equal(regcomp(&re, want, REG_EXTENDED | REG_NEWLINE), 0);
    assert_int_equal(regexec(&re, slurp(path), 0, NULL, 0), 0);
    regfree(&re);
}

static void test_fatal_signal_is_logged_with_a_backtrace(void **state)
{
    (void)state;
    die_of(SIGABRT, 0, "SIGABRT");
    die_of(SIGSEGV, 1, "SIGSEGV");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_control_chars_cannot_forge_lines),
        cmocka_unit_test(test_reopen_after_rotation),
        cmocka_unit_test(test_fatal_signal_is_logged_with_a_backtrace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
