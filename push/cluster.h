/* cluster.h -- this node's place in the cluster, kept in Redis (keys.h): registration with a heartbeat
 * (KEY_NODES, KEY_NODE: what magpie-http's /route reads) and the presence of the users connected here
 * (KEY_PRESENCE, KEY_NODE_USERS: what "is online" reads, with PRESENCE_LUA of presence.h).
 *
 * Presence writes are absolute (this node has N connections of uid), not increments, so a write lost
 * while Redis was down is repaired by the next one: after every reconnect the node rewrites its whole
 * presence (resync), which on the first connect also clears what a previous run of this node id left.
 * A node that dies without deregistering stops heartbeating; after push.node_ttl_s every reader treats it
 * as dead (its users read offline, /route skips it). Survivors remove a node that has been dead for
 * CLUSTER_PRUNE_TTLS node TTLs from the registry, with its presence entries.
 *
 * Slots (keys.h: every script touches one Redis Cluster slot). The registry (KEY_NODES, KEY_NODE, and the
 * rooms' counts of room_count.c) is one slot, KEY_NODES_TAG; a user's presence is in the user's shard, with
 * this node's KEY_NODE_USERS set of that shard next to it. So each script here is of one kind:
 *   - per shard: login (the user's presence and this node's set of the shard), presence writes (batched
 *     per shard), this node's clear of a shard (at every (re)connect, which also stamps KEY_NODE_CLEARED),
 *     and the prune of a dead node's entries in a shard;
 *   - the registry: the heartbeat (which answers the nodes dead long enough to prune), the prune of a
 *     dead node's registration and room counts, the leave.
 * What needs both is done in order, shards first: a node leaving clears its presence in every shard, then
 * leaves the registry; a survivor prunes a dead node's presence in every shard, then (when every shard
 * answered) its registration. A process that dies in between leaves the node registered and dead, so the
 * survivors' next prune does the rest. A prune racing a new run of the dead node id cannot undo it: the
 * shard step skips a shard the new run has cleared since (KEY_NODE_CLEARED later than the prune's bound),
 * and the registry step only removes the node while its heartbeat is still older than that bound.
 *
 * Login with a single-use ticket first claims it (SET NX of its own slot), and a login token is first
 * checked against the revocations (EXISTS), each a command before the login script: a ticket is used
 * even when the login is then refused, as before (it was claimed first in the one script).
 *
 * The live nodes (a node's view, cluster_live_nodes): KEY_NODES cannot be read inside a script of users'
 * keys, so the scripts that ask "is this node live?" (login's limit, O, the t/i and g notifications, g's
 * deliveries) get the live ids in ARGV. This node reads them (ZRANGEBYSCORE from now - push.node_ttl_s)
 * every CLUSTER_VIEW_MS and at every (re)connect; the view is as of its read, so a node that died since
 * counts as live for up to CLUSTER_VIEW_MS longer, and a node that (re)started since is seen up to
 * CLUSTER_VIEW_MS late (its users read offline, and g deliveries skip it, for that long) -- both below
 * the granularity of the heartbeat itself (push.heartbeat_s >= 1 s), with which a node's death is seen
 * anywhere from push.node_ttl_s - push.heartbeat_s to push.node_ttl_s after it.
 */
#ifndef PUSH_CLUSTER_H
#define PUSH_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_PRUNE_TTLS   10
#define CLUSTER_VIEW_MS      1000 /* how often the live-node view is read again (the comment above) */
#define CLUSTER_RESYNC_BATCH 100 /* users per presence write during a resync */

/* Register the scripts and the Redis state hook, start the heartbeat. Returns MP_OK. */
int cluster_start(void);

/* Login of a connection of uid (this node's count of uid's connections, conn_user_count, includes it).
 * Claims mp:wsused:<claim_jti> first when claim_jti is not NULL; else refuses a login token revoked by
 * /logout (mp:revoked:<revoked_jti>) when revoked_jti is not NULL. fn gets a conn_login_result.
 * Returns MP_OK (fn will be called) or MP_EAGAIN (Redis down, or no live-node view yet; fn is not called). */
int cluster_login(int64_t uid, const char *claim_jti, const char *revoked_jti,
                  void (*fn)(int result, void *arg), void *arg);

/* This node now holds count connections of uid (0 = none). */
void cluster_presence(int64_t uid, int count);

/* Heartbeats at or after this (ms since the epoch) are from live nodes (for a script in the registry's slot,
 * which reads KEY_NODES itself: room_count.c). */
int64_t cluster_oldest_live_ms(void);

/* The live node ids as a script's ARGV (keys.h, KEY_LUA_LIVE: ",<id>,<id>,"), as of this node's last read
 * of KEY_NODES (at most CLUSTER_VIEW_MS old while Redis answers); NULL when there is none younger than
 * push.node_ttl_s (Redis unavailable: callers answer as for Redis down). */
const char *cluster_live_nodes(void);

/* Deregister (SIGTERM): leave the registry and remove this node's presence; done(arg) when Redis answered
 * or at once when it is down. Presence writes stop from here on. */
void cluster_leave(void (*done)(void *arg), void *arg);

/* Stop the heartbeat timer. */
void cluster_stop(void);

/* For /healthz (any thread): 0 when the node is serving, else 1 with the reason in why. */
int cluster_health(char *why, size_t len, void *arg);

#endif
