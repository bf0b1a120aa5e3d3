/* Unit tests of magpie-bench's memory sampling: a group is its processes and their children, from /proc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memstat.h"

static void test_parse_groups(void **state)
{
    struct memgroup g;
    const char *why = NULL;
    char path[] = "/tmp/memstat-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "4242\n", 5), 5);
    close(fd);
    char spec[128];
    snprintf(spec, sizeof(spec), "push=12,@%s,7", path);
    assert_int_equal(memstat_parse_group(spec, &g, &why), 0);
    assert_string_equal(g.label, "push");
    assert_int_equal(g.npids, 3);
    assert_int_equal(g.pids[0], 12);
    assert_int_equal(g.pids[1], 4242);
    assert_int_equal(g.pids[2], 7);
    unlink(path);
    const char *bad[] = {"nolabel", "=12", "x=", "x=abc", "x=-1", "x=12x", "x=@/nonexistent/pidfile"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(memstat_parse_group(bad[i], &g, &why), -1);
        assert_non_null(why);
    }
}

static void test_children_are_counted(void **state)
{
    struct memgroup g = {.label = "me", .npids = 1};
    struct memsample alone, with_child;
    g.pids[0] = (int)getpid();
    assert_int_equal(memstat_sample(&g, &alone), 0);
    assert_int_equal(alone.nprocs, 1);
    assert_true(alone.rss_kb > 0 && alone.pss_kb > 0 && alone.pss_kb <= alone.rss_kb);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(memstat_sample(&g, &with_child), 0);
    assert_int_equal(with_child.nprocs, 2);
    assert_true(with_child.rss_kb > alone.rss_kb);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    /* a group whose processes are all gone */
    g.pids[0] = (int)child;
    assert_int_equal(memstat_sample(&g, &alone), -1);
    assert_true(memstat_machine_used_kb() > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_groups),
        cmocka_unit_test(test_children_are_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
