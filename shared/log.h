/* log.h -- one line per event: `time level component message key=value ...` (SPEC §9).
 *
 *   log_info("listening addr=%s node=%d", addr, node);
 *   -> 2026-11-22T10:15:03.123Z INFO push listening addr=127.0.0.1:9001 node=1
 *
 * The format string is the message words followed by key=value pairs. Control characters in the result
 * (a newline inside a user-supplied value) are written as '?', so one event is always one line.
 * Lines are written with a single write(2) on an O_APPEND descriptor: safe from any thread.
 * Never pass a token, a password or an SMS code to a log call.
 */
#ifndef MAGPIE_LOG_H
#define MAGPIE_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Set the component name (e.g. "http"), the lowest level written ("debug".."error") and the file ("" or
 * NULL = stderr). May be called again (e.g. after the config is read). Returns 0, or -1 if the level is
 * unknown or the file cannot be opened (then logging goes on to the previous destination). */
int log_open(const char *component, const char *level, const char *file);

/* Ask for the log file to be reopened before the next line (for logrotate). Async-signal-safe: call it
 * from a SIGHUP handler. */
void log_request_reopen(void);

/* Log a fatal signal before dying (SPEC §9: the evidence for the next crash). Installs handlers for SIGSEGV,
 * SIGBUS, SIGABRT, SIGFPE and SIGILL that write one line to the log --
 *   <time> ERROR <component> fatal signal sig=SIGSEGV signo=11 code=1 addr=0x... pid=.. tid=.. thread=..
 *   and then the backtrace, one frame a line (backtrace_symbols_fd), to the log descriptor and to stderr,
 * then re-raise the signal with the default action, so the process dies of it and the kernel writes a core
 * (where RLIMIT_CORE and kernel.core_pattern allow). Async-signal-safe throughout. Called by cli_start()
 * once the log is open; the main thread gets an alternate signal stack, so even its stack overflow is
 * reported. */
void log_fatal_signals(void);

/* Is a line at this level written? */
int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                                       \
    do {                                                                                                     \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                                    \
            log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                         \
    } while (0)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
