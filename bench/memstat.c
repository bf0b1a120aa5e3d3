/* memstat.c -- see memstat.h. */
#include "memstat.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GROUP_PROCS 1024

/* Parent pid of pid, from /proc/<pid>/stat (the field after the parenthesised command). -1 if gone. */
static int parent_of(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int ppid;
    if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

/* Add the kB values of Rss: and Pss: in /proc/<pid>/smaps_rollup. Returns 0, or -1 when unreadable. */
static int add_rollup(int pid, struct memsample *s)
{
    char path[64], line[256];
    unsigned long long v;
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "Rss: %llu kB", &v) == 1)
            s->rss_kb += v;
        else if (sscanf(line, "Pss: %llu kB", &v) == 1)
            s->pss_kb += v;
    }
    fclose(f);
    return 0;
}

static int in_set(const int *set, int n, int pid)
{
    for (int i = 0; i < n; i++)
        if (set[i] == pid)
            return 1;
    return 0;
}

int memstat_sample(const struct memgroup *g, struct memsample *out)
{
    int set[MAX_GROUP_PROCS], n = 0;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < g->npids && n < MAX_GROUP_PROCS; i++)
        if (parent_of(g->pids[i]) >= 0)
            set[n++] = g->pids[i];
    /* Descendants: repeat until a pass adds nobody (process trees here are two levels deep). */
    for (int added = 1; added && n < MAX_GROUP_PROCS;) {
        added = 0;
        DIR *d = opendir("/proc");
        if (d == NULL)
            break;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < MAX_GROUP_PROCS) {
            if (!isdigit((unsigned char)e->d_name[0]))
                continue;
            int pid = atoi(e->d_name);
            if (in_set(set, n, pid))
                continue;
            if (in_set(set, n, parent_of(pid))) {
                set[n++] = pid;
                added = 1;
            }
        }
        closedir(d);
    }
    for (int i = 0; i < n; i++)
        if (add_rollup(set[i], out) == 0)
            out->nprocs++;
    return out->nprocs > 0 ? 0 : -1;
}

static int read_pidfile(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%d", &pid) != 1)
        pid = -1;
    fclose(f);
    return pid;
}

int memstat_parse_group(const char *spec, struct memgroup *g, const char **why)
{
    const char *eq = strchr(spec, '=');
    memset(g, 0, sizeof(*g));
    if (eq == NULL || eq == spec || (size_t)(eq - spec) >= sizeof(g->label)) {
        *why = "expected LABEL=PID[,PID...]";
        return -1;
    }
    memcpy(g->label, spec, (size_t)(eq - spec));
    char list[4096];
    snprintf(list, sizeof(list), "%s", eq + 1);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int pid;
        char *end;
        if (tok[0] == '@') {
            pid = read_pidfile(tok + 1);
        } else {
            long v = strtol(tok, &end, 10);
            pid = *end == '\0' && v > 0 && v < (1L << 30) ? (int)v : -1;
        }
        if (pid <= 0) {
            *why = "a pid is not a number, or its pid file is unreadable";
            return -1;
        }
        if (g->npids == BENCH_MAX_PIDS) {
            *why = "too many pids";
            return -1;
        }
        g->pids[g->npids++] = pid;
    }
    if (g->npids == 0) {
        *why = "no pid";
        return -1;
    }
    return 0;
}

uint64_t memstat_machine_used_kb(void)
{
    char line[256];
    unsigned long long v, total = 0, avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1)
            total = v;
        else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1)
            avail = v;
    }
    fclose(f);
    return total > avail ? total - avail : 0;
}
