/* rdsa.h -- magpie-push's two Redis connections, hiredis' async API on the daemon's libuv loop.
 *
 * One connection carries commands and Lua scripts; the other is subscribed to pub/sub channels (Redis
 * allows nothing else on a subscribed connection), classic (SUBSCRIBE) and sharded (SSUBSCRIBE, Redis 7)
 * ones together; its replies are parsed by rdsa itself, since hiredis 0.14 knows no sharded pub/sub (the
 * pub/sub part of rdsa.c says how). Both come back by themselves: a failed or lost
 * connection is retried after a backoff (100 ms doubling to 2 s), and each state change is logged once.
 *
 * hiredis 0.14 has no connect or command timeout in its async API, so a watchdog does it: a connection
 * still connecting after redis.connect_timeout_ms, or one that has had commands outstanding without a
 * single reply for redis.command_timeout_ms (a hung or unreachable Redis), is dropped. Dropping a
 * connection calls every outstanding callback with a NULL reply, so each waiting client gets its answer
 * (an E packet) instead of waiting forever.
 *
 * With redis.sentinels set, each link asks the sentinels where the master is before every (re)connect
 * (on libuv's thread pool: the lookup blocks), and a READONLY reply drops the link like a lost connection,
 * so both links follow a failover by themselves (shared/sentinel.h has the design). On top of that,
 * rdsa_start registers with the process' +switch-master watcher (sentinel_watch): when the sentinels
 * announce a new master, a uv_async wakes the loop and every link not on it goes there at once -- a live
 * one is dropped, one waiting out its backoff reconnects now. Each link names itself
 * magpie-push-<node_id>-command / -subscriber (CLIENT SETNAME), as CLIENT LIST on the master shows.
 *
 * Scripts are registered before rdsa_start(); every fresh command connection loads them (SCRIPT LOAD)
 * before it is reported ready, so EVALSHA never meets an empty script cache after a Redis restart.
 *
 * With redis.cluster set, the same API follows a Redis Cluster (push/rdsa_cluster.c has the design): one
 * command connection per master, each command routed by its keys' slot and retried through MOVED, ASK,
 * TRYAGAIN, CLUSTERDOWN and failovers for up to redis.cluster_retry_ms; the subscriber link of the classic
 * channels connects to any node of the cluster (and to the next after a loss); each sharded channel is
 * subscribed on the master serving its slot, through one subscriber connection per such master
 * (magpie-push-<node_id>-sharded), and follows its slot to a new master (a reshard, a failover). Where the
 * meaning differs, the contracts below say so.
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

/* Called on the loop each time the command connection becomes ready (after every reconnect), or is lost.
 * Cluster: 1 each time every slot is served again through ready connections (at start, and after any
 * master's outage), 0 when that stops (a master's connection lost). */
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

/* Is the command connection ready? Cluster: are commands taken (a slot map is known and at least one of
 * its masters has a ready connection; a command for a master that is down is retried, see below)? */
int rdsa_ready(void);

/* Send a command (printf-style as redisAsyncCommand, or argv). Returns MP_OK, after which fn is called
 * exactly once (fn may be NULL); or MP_EAGAIN when Redis is not ready, and fn is not called. Cluster: also
 * MP_EINVAL, fn not called, for a command whose keys are in different slots or that cannot be routed
 * (logged as an error); fn gets NULL when the cluster did not serve the command within
 * redis.cluster_retry_ms, or when its connection died after it was written (it is not sent twice). */
int rdsa_cmd(rdsa_reply_fn fn, void *arg, const char *fmt, ...);
int rdsa_cmdargv(rdsa_reply_fn fn, void *arg, int argc, const char **argv, const size_t *argvlen);

/* EVALSHA s with numkeys keys; argv holds the keys and then the arguments (at most RDSA_MAX_EVAL_ARGS). As
 * rdsa_cmdargv. */
#define RDSA_MAX_EVAL_ARGS 4096
int rdsa_eval(const struct rdsa_script *s, rdsa_reply_fn fn, void *arg, int numkeys, int argc,
              const char **argv, const size_t *argvlen);

/* The answer to rdsa_wait: ok is 1 when redis.min_replicas_acked replicas hold the writes. */
typedef void (*rdsa_wait_fn)(int ok, void *arg);

/* The WAIT before a durable answer (shared/sentinel.h: what it guarantees). Call it from the reply callback
 * of the write (so the write was made on the live command connection; cluster: the WAIT goes to the master
 * whose reply that is, and outside a reply callback fn gets 0). fn is called exactly once: at once
 * with ok = 1 when redis.min_replicas_acked is 0; otherwise when a WAIT sent after the write answers (ok =
 * 1 when at least that many replicas hold every write made on the connection so far), or with ok = 0 when
 * fewer did within redis.wait_timeout_ms or the connection was lost. One WAIT is in flight at a time and
 * answers every caller that came before it was sent, so WAITs do not multiply with the message rate. */
void rdsa_wait(rdsa_wait_fn fn, void *arg);

/* Redis confirmed a subscription: messages published from now on reach its rdsa_message_fn. */
typedef void (*rdsa_ready_fn)(const char *channel, void *arg);

/* Subscribe to a channel (now if the subscriber connection is up, and again after every reconnect).
 * Returns MP_OK or MP_ENOMEM. Messages published while the connection was down are not seen. Channels are
 * found by a hash of their name, so a node may subscribe to many (one per room it has members in). */
int rdsa_subscribe(const char *channel, rdsa_message_fn fn, void *arg);

/* As rdsa_subscribe; ready (may be NULL) is called each time Redis confirms the subscription (after every
 * reconnect too), so a caller can wait until a message published elsewhere is sure to arrive. */
int rdsa_subscribe_ready(const char *channel, rdsa_message_fn fn, rdsa_ready_fn ready, void *arg);

/* Stop delivering a channel's messages and unsubscribe. */
void rdsa_unsubscribe(const char *channel);

/* Sharded pub/sub (SPEC §7): the same contracts as rdsa_subscribe, rdsa_subscribe_ready and
 * rdsa_unsubscribe, for a channel published to with SPUBLISH (rdsa_cmd(fn, arg, "SPUBLISH %s %b", ...), or
 * redis.call('SPUBLISH', ...) in a script). A sharded channel is another channel than the classic one of
 * the same name: an SPUBLISH reaches only SSUBSCRIBE'd subscribers, a PUBLISH only SUBSCRIBE'd ones.
 *   - One Redis or Sentinel (Redis 7): on the one subscriber connection, next to the classic channels.
 *   - Cluster: the channel is subscribed on the master serving its slot -- the CRC16 slot of its name, or
 *     of its hash tag, exactly as a key's (so "mp:{3}:node:7" lives with the keys "mp:{3}:..." and a
 *     script of that slot may SPUBLISH to it; a script may only SPUBLISH to a channel of its own slot).
 *     SPUBLISH goes to that master only, which is what scales: a classic PUBLISH is copied to every node.
 *     When the slot moves (a reshard: Redis then drops the subscription; a failover: the connection is
 *     lost), the subscription follows it to the new master by itself, and ready is called again once that
 *     master confirmed it. Messages published meanwhile are not seen (as across a reconnect).
 * Returns MP_OK or MP_ENOMEM. */
int rdsa_ssubscribe(const char *channel, rdsa_message_fn fn, void *arg);
int rdsa_ssubscribe_ready(const char *channel, rdsa_message_fn fn, rdsa_ready_fn ready, void *arg);
void rdsa_sunsubscribe(const char *channel);

#endif
