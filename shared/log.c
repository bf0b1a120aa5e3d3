/* log.c -- see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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
