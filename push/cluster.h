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
 */
#ifndef PUSH_CLUSTER_H
#define PUSH_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_PRUNE_TTLS   10
#define CLUSTER_RESYNC_BATCH 100 /* users per presence write during a resync */

/* Register the scripts and the Redis state hook, start the heartbeat. Returns MP_OK. */
int cluster_start(void);

/* Login of a connection of uid; count is how many of uid's connections this node holds counting the new
 * one. Claims mp:wsused:<claim_jti> first when claim_jti is not NULL. fn gets a conn_login_result.
 * Returns MP_OK (fn will be called) or MP_EAGAIN (Redis down; fn is not called). */
int cluster_login(int64_t uid, int count, const char *claim_jti, void (*fn)(int result, void *arg),
                  void *arg);

/* This node now holds count connections of uid (0 = none). */
void cluster_presence(int64_t uid, int count);

/* Heartbeats at or after this (ms since the epoch) are from live nodes. */
int64_t cluster_oldest_live_ms(void);

/* Deregister (SIGTERM): leave the registry and remove this node's presence; done(arg) when Redis answered
 * or at once when it is down. Presence writes stop from here on. */
void cluster_leave(void (*done)(void *arg), void *arg);

/* Stop the heartbeat timer. */
void cluster_stop(void);

/* For /healthz (any thread): 0 when the node is serving, else 1 with the reason in why. */
int cluster_health(char *why, size_t len, void *arg);

#endif
