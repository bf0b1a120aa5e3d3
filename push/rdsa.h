/* rdsa.h -- magpie-push's two Redis connections, hiredis' async API on the daemon's libuv loop.
 *
 * One connection carries commands and Lua scripts; the other is subscribed to pub/sub channels (Redis
 * allows nothing else on a subscribed connection). Both come back by themselves: a failed or lost
 * connection is retried after a backoff (100 ms doubling to 2 s), and each state change is logged once.
 *
 * hiredis 0.14 has no connect or command timeout in its async API, so a watchdog does it: a connection
 * still connecting after redis.connect_timeout_ms, or one that has had commands outstanding without a
 * single reply for redis.command_timeout_ms (a hung or unreachable Redis), is dropped. Dropping a
 * connection calls every outstanding callback with a NULL reply, so each waiting client gets its answer
 * (an E packet) instead of waiting forever.
 *
 * Scripts are registered before rdsa_start(); every fresh command connection loads them (SCRIPT LOAD)
 * before it is reported ready, so EVALSHA never meets an empty script cache after a Redis restart.
 * Everything here runs on the loop thread; nothing is thread-safe.
 */
#ifndef PUSH_RDSA_H
#define PUSH_RDSA_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

struct magpie_config;

/* A command's reply: r is NULL when Redis is unavailable, the connection dropped before the reply came, or
 * the script cache was lost (the connection is then reconnected). r may be an error reply. r is freed
 * after the callback returns. */
typedef void (*rdsa_reply_fn)(redisReply *r, void *arg);

/* A message on a subscribed channel. */
typedef void (*rdsa_message_fn)(const char *channel, const char *payload, size_t len, void *arg);

/* Called on the loop each time the command connection becomes ready (after every reconnect), or is lost. */
typedef void (*rdsa_state_fn)(int ready, void *arg);

struct rdsa_script {
    const char *name; /* for logs */
    const char *src;
    char sha[41]; /* filled by SCRIPT LOAD */
};

/* Register a Lua script (the struct must outlive the connection). Call before rdsa_start. */
void rdsa_script(struct rdsa_script *s);

/* Register a state callback (several may be). Call before rdsa_start. */
void rdsa_on_state(rdsa_state_fn fn, void *arg);

/* Start connecting both connections on loop. Returns MP_OK (connections come up in the background). */
int rdsa_start(uv_loop_t *loop, const struct magpie_config *cfg);

/* Close both connections; outstanding callbacks get NULL. Handles close on the next loop iteration. */
void rdsa_stop(void);

/* Is the command connection ready? */
int rdsa_ready(void);

/* Send a command (printf-style as redisAsyncCommand, or argv). Returns MP_OK, after which fn is called
 * exactly once (fn may be NULL); or MP_EAGAIN when Redis is not ready, and fn is not called. */
int rdsa_cmd(rdsa_reply_fn fn, void *arg, const char *fmt, ...);
int rdsa_cmdargv(rdsa_reply_fn fn, void *arg, int argc, const char **argv, const size_t *argvlen);

/* EVALSHA s with numkeys keys; argv holds the keys and then the arguments (at most 256). As rdsa_cmdargv. */
int rdsa_eval(const struct rdsa_script *s, rdsa_reply_fn fn, void *arg, int numkeys, int argc,
              const char **argv, const size_t *argvlen);

/* Subscribe to a channel (now if the subscriber connection is up, and again after every reconnect).
 * Returns MP_OK or MP_ENOMEM. Messages published while the connection was down are not seen. */
int rdsa_subscribe(const char *channel, rdsa_message_fn fn, void *arg);

/* Stop delivering a channel's messages and unsubscribe. */
void rdsa_unsubscribe(const char *channel);

#endif
