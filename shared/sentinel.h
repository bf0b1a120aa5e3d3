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
 * What makes a daemon look again. (1) The sentinels announce it: sentinel_watch() keeps one thread per
 * process subscribed to +switch-master on one sentinel at a time (the next one when it fails, with TCP
 * keepalive to notice a vanished one; after subscribing it asks that sentinel once more, so a switch made
 * while nobody listened is not missed). Each switch is logged once per process ("redis master moved from
 * A to B (sentinel +switch-master)") and counted (magpie_redis_master_switches_total). magpie-push's links
 * (rdsa) then reconnect at once, even those waiting out a backoff after the master died, so they stand on
 * the new master before any client needs them; a blocking connection (rds) that predates the switch is
 * replaced at its next use instead of failing first, and magpie-http's long-poll subscription within
 * its hub's idle wake-up. (2) Any lost connection or timeout (the master was killed, its host vanished):
 * the connection is dropped as before and the reconnect asks the sentinels. (3) A READONLY reply
 * (sentinel_readonly): the server was a master and is now a replica (a failover the daemon did not see
 * as a lost connection, e.g. a partition that healed); the connection is dropped and the reconnect asks
 * the sentinels. Sentinel itself closes the clients of a master it demotes (CLIENT KILL), which is case
 * (2). (2) and (3) alone cover every failover; (1) makes it faster and is what an operator sees in the
 * log. The request that met the failure gets the same answer as when Redis is down (E "temporarily
 * unavailable", HTTP 503), and the client retries.
 *
 * What WAIT guarantees (redis.min_replicas_acked = N > 0). Before every answer that tells a client a write
 * was made -- A for t, i, g (and so STOMP RECEIPT and MQTT PUBACK, which are the same A), A for R (read
 * marks) and S (positions), T (the order taken, before MySQL records it), /logout's revocation,
 * /admin/friends and /admin/orders, HTTP group changes, /send_code's code, the QR steps create, scan,
 * confirm and cancel -- the daemon sends WAIT N redis.wait_timeout_ms on the connection that made the
 * write and answers only when at least N replicas confirmed every write made on that connection so far.
 * Fewer: the client gets E "temporarily unavailable" (HTTP 503) although the write stays on the master;
 * its retry of the same (from, id) finds the dedup key (where the message survived) and is acked then, or
 * is stored afresh (where it did not), so an acked message is stored exactly once either way. A retry
 * whose script finds the write already made (a t/i/g dedup key, a read mark that does not move, a T
 * already taken) writes it again, so that its WAIT covers the first attempt whichever connection made it.
 * magpie-persist WAITs too before it stores what it read (push/persist_stream.h, persist_stream_fence), so
 * MySQL never gets a row from an attempt that a failover takes back (its retry would carry another mid).
 *
 * The deliveries of t, i, g, of R's r packets and of HTTP group changes' events wait for the same WAIT
 * (the scripts return the nodes' channels instead of publishing), so no device is shown a message, a read
 * mark or an event -- or a seq -- that a failover then takes back.
 *
 * Not behind WAIT, on purpose: presence, node heartbeats and room membership (rebuilt by the nodes after
 * a failover); the single-use claim of a wsticket at login (a lost claim lets the same ticket, valid for
 * seconds, log in once more); POST /msg (pub/sub delivery and its offline notification, not stored: a
 * retry would deliver twice); the QR redeem (its answer is the login itself).
 *
 * What it does not guarantee: a message WAIT-acked by one replica survives a kill -9 of the master only if
 * the sentinels promote a replica that has it (with one replica, that one; with several, Sentinel prefers
 * the largest replication offset unless replica-priority says otherwise). A refused write is not undone:
 * it may still be there after the failover (the retry then finds it). And WAIT says nothing about the
 * replica's fsync: a power loss of master and replica at once is covered only by appendfsync always on
 * both. Without Sentinel, min_replicas_acked works the same with plain replicas.
 *
 * Operations: with N = min_replicas_acked, run N + 1 replicas or more. With exactly N, the failover leaves
 * N - 1 and every durable answer is "temporarily unavailable" until a replica comes back (scripts/dev's
 * Sentinel stack has one replica; its test restarts the killed master as the new replica). Keep the
 * sentinels' down-after-milliseconds well above the master's longest stall (an AOF rewrite on a busy
 * host): failing over a master that is still up opens Sentinel's split-brain window, in which writes that
 * WAIT confirmed through a replica other than the promoted one are lost (measured with 1 s on a loaded
 * 2-core box: bench/results/2026-11-26-sentinel-failover.md); Redis' min-replicas-to-write narrows it.
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

/* Called on the watcher's thread when the sentinels announce a new master (host:port) for
 * redis.master_name. It must not block: hand the news to the owner's own thread. */
typedef void (*sentinel_switch_fn)(const char *host, int port, void *arg);

/* Follow the sentinels' +switch-master (the design above). The first call starts the process' watcher
 * thread (it lives until exit); each call with fn != NULL adds a callback (at most 4; they are never
 * removed: a callback whose owner stopped must ignore the news). MP_OK; MP_ERR when Sentinel is not
 * configured, there are too many callbacks, or the thread cannot start (logged). */
int sentinel_watch(const struct magpie_config *cfg, sentinel_switch_fn fn, void *arg);

/* A +switch-master announcement: the master moved from old_host:old_port to host:port. */
struct sentinel_switch {
    char old_host[256];
    int old_port;
    char host[256];
    int port;
};

/* Is r (a reply read on a connection subscribed to +switch-master) the announcement that master_name moved?
 * 1 with s filled, else 0 (another master, a subscribe confirmation, anything malformed). */
int sentinel_parse_switch(const redisReply *r, const char *master_name, struct sentinel_switch *s);

/* How many master switches this process has followed so far (0 until the first): a connection made
 * before the latest switch compares its number with this one. */
unsigned sentinel_switches(void);

/* Is r the error a replica gives to a write (READONLY, also when raised inside a script) or to WAIT? Its
 * connection then points at a former master: drop it, and the reconnect asks the sentinels. */
int sentinel_readonly(const redisReply *r);

#endif
