/* log.c -- see log.h. */
#include "log.h"

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;
static enum log_level log_min = LOG_LEVEL_INFO;
static char log_component[32] = "magpie";
static char log_path[4096] = "";
static volatile sig_atomic_t log_reopen_wanted;

static int parse_level(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -1;
}

/* Open path for appending; -1 on failure. */
static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_open(const char *component, const char *level, const char *file)
{
    enum log_level lvl = log_min;
    int fd = STDERR_FILENO;

    if (level != NULL && parse_level(level, &lvl) != 0)
        return -1;
    if (file != NULL && *file != '\0') {
        if (strlen(file) >= sizeof(log_path) || (fd = open_log(file)) < 0)
            return -1;
    }
    pthread_mutex_lock(&log_lock);
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    snprintf(log_path, sizeof(log_path), "%s", fd == STDERR_FILENO ? "" : file);
    if (component != NULL)
        snprintf(log_component, sizeof(log_component), "%s", component);
    log_min = lvl;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void log_request_reopen(void)
{
    log_reopen_wanted = 1;
}

int log_enabled(enum log_level level)
{
    return level >= log_min;
}

/* Called with log_lock held. A failed reopen keeps the old descriptor: better the rotated file than
 * nothing. */
static void reopen_locked(void)
{
    int fd;
    log_reopen_wanted = 0;
    if (log_path[0] == '\0')
        return;
    fd = open_log(log_path);
    if (fd < 0)
        return;
    close(log_fd);
    log_fd = fd;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int m;
    va_list ap;

    if (level < log_min)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ", ts.tv_nsec / 1000000L,
                          level_names[level], log_component);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if ((size_t)m > sizeof(line) - n - 2) {
        m = (int)(sizeof(line) - n - 2); /* truncated: mark it */
        line[n + (size_t)m - 1] = '~';
    }
    for (size_t i = n; i < n + (size_t)m; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    n += (size_t)m;
    line[n++] = '\n';

    pthread_mutex_lock(&log_lock);
    if (log_reopen_wanted)
        reopen_locked();
    while (write(log_fd, line, n) < 0 && errno == EINTR)
        ;
    pthread_mutex_unlock(&log_lock);
}

/* ---- fatal signals (log_fatal_signals) ---------------------------------------------------------------
 * Everything below runs in a signal handler of a process that is broken: only async-signal-safe calls
 * (write, clock_gettime, getpid, syscall, prctl, backtrace once its library is loaded, sigaction, raise),
 * no malloc, no stdio, no locks (log_lock may be held by the thread that crashed). */

#define FATAL_FRAMES   64
#define FATAL_ALTSTACK (64 * 1024)

static const int fatal_sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
static const char *const fatal_names[] = {"SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE", "SIGILL"};

struct sbuf {
    char b[768];
    size_t n;
};

static void sb_str(struct sbuf *s, const char *p)
{
    while (*p != '\0' && s->n < sizeof(s->b) - 1)
        s->b[s->n++] = *p++;
}

static void sb_num(struct sbuf *s, uint64_t v, unsigned base, int width)
{
    char t[24];
    int i = 0;
    do {
        t[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0 && i < (int)sizeof(t));
    while (i < width && i < (int)sizeof(t))
        t[i++] = '0';
    while (i > 0 && s->n < sizeof(s->b) - 1)
        s->b[s->n++] = t[--i];
}

static void sb_int(struct sbuf *s, long long v)
{
    if (v < 0) {
        sb_str(s, "-");
        sb_num(s, (uint64_t)(-(v + 1)) + 1, 10, 0);
    } else {
        sb_num(s, (uint64_t)v, 10, 0);
    }
}

/* The log's time stamp without gmtime_r (not async-signal-safe): days to civil date, H. Hinnant's method. */
static void sb_time(struct sbuf *s)
{
    struct timespec ts;
    int64_t days, secs, z, era, doe, yoe, y, doy, mp, d, m;
    clock_gettime(CLOCK_REALTIME, &ts);
    days = ts.tv_sec / 86400;
    secs = ts.tv_sec % 86400;
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    sb_num(s, (uint64_t)y, 10, 4);
    sb_str(s, "-");
    sb_num(s, (uint64_t)m, 10, 2);
    sb_str(s, "-");
    sb_num(s, (uint64_t)d, 10, 2);
    sb_str(s, "T");
    sb_num(s, (uint64_t)(secs / 3600), 10, 2);
    sb_str(s, ":");
    sb_num(s, (uint64_t)(secs / 60 % 60), 10, 2);
    sb_str(s, ":");
    sb_num(s, (uint64_t)(secs % 60), 10, 2);
    sb_str(s, ".");
    sb_num(s, (uint64_t)(ts.tv_nsec / 1000000L), 10, 3);
    sb_str(s, "Z");
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void on_fatal(int sig, siginfo_t *si, void *uctx)
{
    struct sbuf s;
    void *frames[FATAL_FRAMES];
    char thread[17] = "";
    const char *name = "signal";
    int fd = __atomic_load_n(&log_fd, __ATOMIC_RELAXED), nframes;
    (void)uctx;

    for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); i++)
        if (fatal_sigs[i] == sig)
            name = fatal_names[i];
    prctl(PR_GET_NAME, thread, 0, 0, 0);
    thread[16] = '\0';
    s.n = 0;
    sb_time(&s);
    sb_str(&s, " ERROR ");
    sb_str(&s, log_component);
    sb_str(&s, " fatal signal sig=");
    sb_str(&s, name);
    sb_str(&s, " signo=");
    sb_int(&s, sig);
    sb_str(&s, " code=");
    sb_int(&s, si != NULL ? si->si_code : 0);
    if (si != NULL && si->si_code <= 0) { /* sent by a process (kill, raise, abort): which */
        sb_str(&s, " from_pid=");
        sb_int(&s, si->si_pid);
    } else if (si != NULL) { /* raised by the CPU: the faulting address */
        sb_str(&s, " addr=0x");
        sb_num(&s, (uint64_t)(uintptr_t)si->si_addr, 16, 0);
    }
    sb_str(&s, " pid=");
    sb_int(&s, getpid());
    sb_str(&s, " tid=");
    sb_int(&s, (long long)syscall(SYS_gettid));
    sb_str(&s, " thread=");
    for (char *c = thread; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            *c = '?';
    sb_str(&s, thread[0] ? thread : "?");
    sb_str(&s, " backtrace follows; dying of the signal (core dump if enabled)\n");
    s.b[sizeof(s.b) - 2] = '\n';
    write_all(fd, s.b, s.n);
    nframes = backtrace(frames, FATAL_FRAMES);
    backtrace_symbols_fd(frames, nframes, fd);
    if (fd != STDERR_FILENO) { /* the supervisor's copy (the dev stack's logs/NAME.out, journald) */
        write_all(STDERR_FILENO, s.b, s.n);
        backtrace_symbols_fd(frames, nframes, STDERR_FILENO);
    }
    /* SA_RESETHAND put the default action back. The signal is blocked in its handler, so raise() leaves it
     * pending and it is delivered -- killing the process with a core -- as this handler returns; a fault
     * would also simply recur on the faulting instruction. */
    raise(sig);
}

void log_fatal_signals(void)
{
    static char altstack[FATAL_ALTSTACK];
    static int installed;
    stack_t ss;
    struct sigaction sa;
    void *probe[2];

    if (installed)
        return;
    installed = 1;
    /* backtrace() loads libgcc_s on first use (malloc, dlopen): do that now, not in the handler. */
    backtrace(probe, 2);
    memset(&ss, 0, sizeof(ss));
    ss.ss_sp = altstack;
    ss.ss_size = sizeof(altstack);
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); i++)
        sigaction(fatal_sigs[i], &sa, NULL);
}
