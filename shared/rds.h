/* rds.h -- a blocking Redis connection that comes back by itself (magpie-http, magpie-persist,
 * magpie-migrate; magpie-push uses hiredis' async API on its own loop instead).
 *
 * hiredis 0.14 has no per-command timeout of its own; redisSetTimeout sets the socket's send and receive
 * timeouts, which is what bounds each command here (redis.command_timeout_ms). After any I/O error or
 * timeout the connection is dropped and the next call reconnects, no sooner than a backoff (100 ms doubling
 * to 2 s) so a dead Redis is not hammered. State changes (down, back) are logged once each.
 * One struct rds per thread: a connection is not shared.
 *
 * With redis.sentinels set, each (re)connect first asks the sentinels where the master is (shared/
 * sentinel.h has the design), and a READONLY reply drops the connection like an I/O error, so the next
 * call finds the new master after a failover. The first rds_init starts the process' +switch-master
 * watcher (sentinel_watch); a connection made before the latest switch it followed is replaced between
 * two requests (rds_follow; rds_stale for subscriptions), at once and without a backoff, instead of
 * meeting the old master first.
 * rds_wait() is the WAIT before a durable answer. Every connection names itself after the program
 * (CLIENT SETNAME), so CLIENT LIST shows which daemon holds it.
 */
#ifndef MAGPIE_RDS_H
#define MAGPIE_RDS_H

#include <hiredis/hiredis.h>
#include <stdint.h>

struct magpie_config;

struct rds {
    const struct magpie_config *cfg;
    redisContext *c;
    char host[256]; /* the server (with Sentinel: the master found last; "" before the first) */
    int port;
    char password[512];
    int db;
    int connect_timeout_ms;
    int command_timeout_ms;
    int64_t retry_at_ms; /* monotonic ms before which no reconnect is tried */
    int backoff_ms;
    int down;     /* 1 once a failure was logged, until a connection succeeds again */
    int sentinel; /* find the master through the sentinels at each connect */
    int min_replicas;
    int wait_timeout_ms;
    unsigned switches; /* sentinel_switches() when c was made */
};

/* Take the settings from cfg's [redis]; connects lazily. */
void rds_init(struct rds *r, const struct magpie_config *cfg);

/* The live connection, connecting (with AUTH and SELECT) if needed. NULL when Redis is unavailable. */
redisContext *rds_conn(struct rds *r);

/* Run a command. Returns the reply (caller frees with freeReplyObject; it may be an error reply), or NULL
 * when Redis is unavailable or the connection failed (it is then dropped). */
redisReply *rds_cmd(struct rds *r, const char *fmt, ...);
redisReply *rds_cmdargv(struct rds *r, int argc, const char **argv, const size_t *argvlen);

/* Read the next reply of commands queued with redisAppendCommand on rds_conn(r). NULL as rds_cmd. */
redisReply *rds_reply(struct rds *r);

/* After a write that a durable answer depends on, with no other command in between: MP_OK when
 * redis.min_replicas_acked is 0, or when WAIT says that many replicas hold every write of this connection
 * (within redis.wait_timeout_ms); MP_EAGAIN otherwise (fewer replicas -- logged --, or the connection that
 * made the write is gone), and the caller answers "temporarily unavailable". Never reconnects: WAIT on a
 * fresh connection would vouch for nothing. */
int rds_wait(struct rds *r);

/* Between requests (never between a write and its rds_wait: WAIT on another connection would vouch for
 * nothing): when the sentinels announced a new master since r's connection was made (sentinel.h), close
 * it, so that the next command connects to the new master at once, without a backoff. */
void rds_follow(struct rds *r);

/* Does r hold a connection made before the latest master switch the sentinels announced? For a caller
 * that keeps a subscription open: drop it then (rds_drop) and subscribe again. */
int rds_stale(const struct rds *r);

/* Drop the connection after a failure seen by the caller (e.g. a pipelined command). */
void rds_drop(struct rds *r, const char *why);

void rds_close(struct rds *r);

#endif
