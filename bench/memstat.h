/* memstat.h -- memory of a group of server processes, from /proc: the sum of RSS and of PSS over the given
 * pids and all their descendants (nginx's workers). PSS counts a shared page once across the group (nginx's
 * shared memory zone, the workers' copy-on-write pages), so differences in PSS are what the group really
 * used; RSS is given too. Userland only: the kernel's socket buffers are not in either.
 */
#ifndef BENCH_MEMSTAT_H
#define BENCH_MEMSTAT_H

#include <stdint.h>

#include "bench.h"

struct memsample {
    uint64_t rss_kb;
    uint64_t pss_kb;
    int nprocs; /* processes found (0: the group is gone) */
};

/* Sample group g. Returns 0, or -1 when none of its processes exists. */
int memstat_sample(const struct memgroup *g, struct memsample *out);

/* The machine's memory in use (MemTotal - MemAvailable, kB), kernel included: what N connections cost the
 * box, client and servers together. 0 when /proc/meminfo is unreadable. */
uint64_t memstat_machine_used_kb(void);

/* Parse "LABEL=PID[,PID...]" where a PID may be "@FILE" (a pid file). Returns 0, or -1 (*why says). */
int memstat_parse_group(const char *spec, struct memgroup *g, const char **why);

#endif
