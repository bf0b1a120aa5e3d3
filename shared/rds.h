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
 *
 * With redis.cluster set (Redis Cluster, SPEC §7), a struct rds is one shared/rcluster.h client (struct
 * rcl: a connection per master, the slot map, MOVED/ASK/CLUSTERDOWN followed there, a command retried for
 * redis.cluster_retry_ms before NULL), and every call below keeps its meaning:
 *   - rds_cmd / rds_cmdargv route each command to the master of its keys' slot. A command rcluster refuses
 *     (keys in different slots, MULTI/EXEC, SUBSCRIBE on a non-subscriber) returns NULL and is logged as an
 *     error: that is a bug in the caller, not an outage;
 *   - pipelines: rds_append / rds_appendargv, then one rds_reply per command, in order (on one Redis the
 *     plain hiredis pipeline on the connection). On a cluster the commands are queued and sent at the first
 *     rds_reply, grouped per master (rcl_pipeline: one round trip per master involved; a command that met
 *     a redirect or a failure is run again alone after the batch). Only the commands of one slot keep their
 *     order relative to each other: callers pipeline independent commands (reads, idempotent raises).
 *     A transaction (MULTI) is not available on a cluster: what must be atomic is one script (EVAL) over
 *     keys of one slot, which works the same on one Redis (persist_stream.c's dead letter);
 *   - rds_wait sends WAIT to every master that answered a command since the last rds_wait, each on the
 *     connection that carried it (a durable answer may rest on writes in two slots: /logout's key and
 *     index), and is MP_OK when each has redis.min_replicas_acked replicas; conservative: a master that
 *     was only read from and has no replica (after a failover) fails it too;
 *   - rds_follow does nothing (rcluster follows the cluster by itself); rds_stale is 0;
 *   - rds_conn is for subscribers only: a struct rds marked with rds_subscriber() holds one plain
 *     connection to one master of the cluster (PUBLISH reaches the subscribers of every node of a cluster),
 *     taken in turn from the slot map (refreshed first) at each connect, so a subscription whose node died
 *     (its connection fails: the caller drops it) is made again on the next master, after the usual
 *     backoff. rds_cmd on a subscriber goes to that connection, as on one Redis. Anything else gets NULL
 *     from rds_conn (logged);
 *   - rds_scan visits every master (SCAN of one node would see a third of the keys): the one-time
 *     upgrades that SCAN (keys.c, http/revoked.c) use it.
 */
#ifndef MAGPIE_RDS_H
#define MAGPIE_RDS_H

#include <hiredis/hiredis.h>
#include <stdint.h>

struct magpie_config;
struct rcl;

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
    /* Redis Cluster (redis.cluster set): see above. */
    int cluster;          /* redis.cluster is set */
    int subscriber;       /* rds_subscriber(): c is a plain connection to one master */
    unsigned next_master; /* which master the subscriber's next connect goes to */
    struct rcl *cl; /* owned; the client of a non-subscriber, the map of a subscriber; NULL: no memory */
    char **queue;   /* a pipeline's commands (formatted), sent at the first rds_reply */
    size_t *queue_len;
    int nqueue, queue_cap;
    redisReply **replies; /* their replies, handed out by rds_reply in order */
    int nreplies, next_reply;
};

/* Take the settings from cfg's [redis]; connects lazily. */
void rds_init(struct rds *r, const struct magpie_config *cfg);

/* The live connection, connecting (with AUTH and SELECT) if needed. NULL when Redis is unavailable. */
redisContext *rds_conn(struct rds *r);

/* Run a command. Returns the reply (caller frees with freeReplyObject; it may be an error reply), or NULL
 * when Redis is unavailable or the connection failed (it is then dropped). */
redisReply *rds_cmd(struct rds *r, const char *fmt, ...);
redisReply *rds_cmdargv(struct rds *r, int argc, const char **argv, const size_t *argvlen);

/* Queue a command of a pipeline: MP_OK, or MP_EAGAIN when Redis is unavailable (one Redis) or out of
 * memory. Its reply is read with rds_reply, one per command queued, in order. */
int rds_append(struct rds *r, const char *fmt, ...);
int rds_appendargv(struct rds *r, int argc, const char **argv, const size_t *argvlen);

/* The next reply of the commands queued with rds_append (caller frees). NULL as rds_cmd; after a NULL the
 * caller reads no more of the pipeline and calls rds_discard. */
redisReply *rds_reply(struct rds *r);

/* Forget the rest of a pipeline (commands queued, replies not read): on one Redis the connection is
 * dropped, since replies left unread on it would answer the next commands. */
void rds_discard(struct rds *r);

/* Mark r (after rds_init) as holding a subscription: see the top comment. Nothing changes on one Redis or
 * with Sentinel. */
void rds_subscriber(struct rds *r);

/* Visit every key matching pattern (SCAN ... MATCH pattern): on one Redis its SCAN, on a cluster the SCAN
 * of every master. each returns MP_OK to go on, anything else to stop with that value. MP_OK after the
 * last key, MP_EAGAIN when Redis did not answer. A key may be visited twice (SCAN's contract). */
int rds_scan(struct rds *r, const char *pattern, int (*each)(const char *key, size_t len, void *arg),
             void *arg);

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
