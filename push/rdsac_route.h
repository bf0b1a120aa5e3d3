/* rdsac_route.h -- the pure part of magpie-push's asynchronous Redis Cluster client (push/rdsa_cluster.c
 * has the design): no I/O, no loop, unit-tested in tests/unit/test_push_rdsac_route.c. What shared/rcluster.h
 * already gives (slots, the map, what a reply means) is used from there; these are the pieces the
 * asynchronous client needs on top.
 */
#ifndef PUSH_RDSAC_ROUTE_H
#define PUSH_RDSAC_ROUTE_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

struct rcl_map;

/* Split a command hiredis formatted ("*N\r\n", then N times "$L\r\n" L bytes "\r\n", nothing after) into
 * at most maxargs arguments pointing into cmd. Returns argc (>= 1), or -1 when cmd is not exactly that or
 * has more than maxargs arguments. */
int rdsac_split(const char *cmd, size_t len, const char **argv, size_t *argvlen, int maxargs);

/* The slot a formatted command must go to (rcl_command_slot on its arguments): MP_OK with *slot (-1: no
 * key, any master), or MP_EINVAL with why filled (keys in different slots, a command the cluster client
 * does not route, a command that does not parse). */
int rdsac_formatted_slot(const char *cmd, size_t len, int *slot, char *why, size_t whylen);

/* Is r the NOSCRIPT error (the node does not have the script an EVALSHA named)? */
int rdsac_noscript(const redisReply *r);

/* When a failed try is tried again: MP_OK with *due_ms = now_ms + *backoff_ms, or deadline_ms when that is
 * sooner (the last try starts at the deadline, so a caller gets NULL only once the whole budget is spent),
 * and *backoff_ms doubled (capped at max_ms); MP_EAGAIN (give up) when now_ms is at or past deadline_ms. */
int rdsac_next_try(int64_t now_ms, int64_t deadline_ms, int *backoff_ms, int max_ms, int64_t *due_ms);

/* Does m serve the whole cluster through ready connections: every slot has a master, and ready(i, arg)
 * is true for every node index i that owns a slot? 1 or 0 (also 0 for a NULL map). */
int rdsac_map_full(const struct rcl_map *m, int (*ready)(int node, void *arg), void *arg);

#endif
