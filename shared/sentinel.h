/* sentinel.h -- Redis high availability with Redis Sentinel (SPEC §7): where the master is, and what an
 * acknowledgement promises. This comment is the design; shared/rds.c (blocking clients: magpie-http with
 * its long polls, magpie-persist) and push/rdsa.c (magpie-push's async links) are its two users.
 *
 * Who discovers the master. Every Redis connection, each time it (re)connects: sentinel_find_master() asks
 * the sentinels of redis.sentinels in turn (SENTINEL get-master-addr-by-name redis.master_name), starting
 * with the one that answered last, and checks the address it is given with ROLE on a short connection of
 * its own: only an instance that says "master" is taken. A sentinel that is down, slow (redis.
 * connect_timeout_ms / command_timeout_ms), does not know the name or names an instance that is not (or not
 * yet) a master is skipped; when none gives a master the connection counts as down and is retried with the
 * usual backoff (100 ms doubling to 2 s), so the daemons poll the sentinels until the failover is done.
 * The call blocks: rds calls it on its own thread, rdsa on libuv's thread pool. No daemon talks to another
 * about it, and no state is kept between calls but the index of the last sentinel that answered.
 *
 * What makes a daemon look again. (1) Any lost connection or timeout (the master was killed, its host
 * vanished): the connection is dropped as before and the reconnect asks the sentinels. (2) A READONLY
 * reply (sentinel_readonly): the server was a master and is now a replica (a failover the daemon did not
 * see as a lost connection, e.g. a partition that healed, or SENTINEL FAILOVER); the connection is dropped
 * and the reconnect asks the sentinels. Sentinel itself closes the clients of a master it demotes (CLIENT
 * KILL), which is case (1). There is no +switch-master subscription: both cases above already cover every
 * failover, and a subscription is one more connection per process to keep alive. The request that met the
 * failure gets the same answer as when Redis is down (E "temporarily unavailable", HTTP 503), and the
 * client retries.
 *
 * What WAIT guarantees (redis.min_replicas_acked = N > 0). Before a durable acknowledgement -- A for t, i,
 * g (and so STOMP RECEIPT and MQTT PUBACK, which are the same A), /logout's revocation, /admin/friends and
 * /admin/orders, HTTP group changes -- the daemon sends WAIT N redis.wait_timeout_ms on the connection that
 * made the write and acks only when at least N replicas confirmed every write made on that connection so
 * far. Fewer: the client gets E "temporarily unavailable" (HTTP 503) although the write stays on the
 * master; its retry of the same (from, id) finds the dedup key (where the message survived) and is acked
 * then, or is stored afresh (where it did not), so an acked message is stored exactly once either way.
 * magpie-persist WAITs too before it stores what it read (push/persist_stream.h, persist_stream_fence), so
 * MySQL never gets a row from an attempt that a failover takes back (its retry would carry another mid).
 * What it does not guarantee: a message WAIT-acked by one replica survives a kill -9 of the master only if
 * the sentinels promote a replica that has it (with one replica, that one; with several, Sentinel prefers
 * the largest replication offset unless replica-priority says otherwise). A refused write is not undone:
 * it may still be there after the failover (the retry then finds it). And WAIT says nothing about the
 * replica's fsync: a power loss of master and replica at once is covered only by appendfsync always on both.
 * The deliveries of t, i and g wait for the same WAIT (the send scripts return the nodes to publish to
 * instead of publishing), so no device is shown a message -- or a seq -- that a failover then takes back;
 * the events of HTTP group changes are still published by their scripts before the WAIT (a failover can
 * take back one a device has seen, and its seq is then given again). Without Sentinel, min_replicas_acked
 * works the same with plain replicas.
 *
 * Operations: with N = min_replicas_acked, run N + 1 replicas or more. With exactly N, the failover leaves
 * N - 1 and every durable answer is "temporarily unavailable" until a replica comes back (scripts/dev's
 * Sentinel stack has one replica; its test restarts the killed master as the new replica).
 */
#ifndef MAGPIE_SENTINEL_H
#define MAGPIE_SENTINEL_H

#include <hiredis/hiredis.h>
#include <stddef.h>

struct magpie_config;

/* Is Sentinel configured (redis.sentinels not empty)? */
int sentinel_enabled(const struct magpie_config *cfg);

/* Find the master of redis.master_name through the sentinels (blocking; thread-safe). On MP_OK host (at
 * least 256 bytes) and *port hold the master's address, checked with ROLE. MP_EAGAIN when no sentinel named a
 * reachable master, with why (may be NULL) saying what each failed on. */
int sentinel_find_master(const struct magpie_config *cfg, char *host, size_t hostlen, int *port, char *why,
                         size_t whylen);

/* Is r the error a replica gives to a write (READONLY, also when raised inside a script) or to WAIT? Its
 * connection then points at a former master: drop it, and the reconnect asks the sentinels. */
int sentinel_readonly(const redisReply *r);

#endif
