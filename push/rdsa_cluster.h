/* rdsa_cluster.h -- rdsa's Redis Cluster backend (redis.cluster set), internal to rdsa: push/rdsa.c calls it
 * from rdsa.h's functions, with the same contracts; push/rdsa_cluster.c's top comment is the design. Only
 * rdsa.c, the probe (tests/probes/rdsa_cluster_probe.c) and stats.c include this.
 */
#ifndef PUSH_RDSA_CLUSTER_H
#define PUSH_RDSA_CLUSTER_H

#include "rdsa.h"

#include <hiredis/async.h>
#include <stdarg.h>
#include <stdint.h>

/* Start following the cluster named by cfg->redis.cluster (the seeds). scripts (nscripts of them, owned by
 * rdsa.c) are loaded on every master connection; tell_state is rdsa.c's: it calls the rdsa_on_state
 * callbacks. MP_OK, MP_EINVAL (no seed), MP_ENOMEM. */
int rdsac_start(uv_loop_t *loop, const struct magpie_config *cfg, struct rdsa_script *const *scripts,
                int nscripts, void (*tell_state)(int ready));
void rdsac_stop(void);
int rdsac_ready(void);
int rdsac_cmdargv(rdsa_reply_fn fn, void *arg, int argc, const char **argv, const size_t *argvlen);
int rdsac_cmdv(rdsa_reply_fn fn, void *arg, const char *fmt, va_list ap);
void rdsac_wait(rdsa_wait_fn fn, void *arg);

/* Where rdsa.c's subscriber link connects next: a master of the map, another one at each call (so a link
 * that lost its node goes to the next), or a seed while no map is known. MP_OK with host and port, or
 * MP_EAGAIN when nothing is known (no valid seed). */
int rdsac_sub_address(char *host, size_t hostlen, int *port);

/* For rdsa.c's sharded subscribers (SSUBSCRIBE on the master of each channel's slot):
 * rdsac_map_gen: a number that changes whenever the map may name other owners (a refresh, a MOVED), so a
 * caller that placed channels by the map knows when to look again. rdsac_slot_owner: MP_OK with the master
 * of slot, MP_EAGAIN when no map is known or no master serves it. rdsac_moved: a MOVED a subscriber met
 * (as a command's: the slot's owner set, a refresh wanted). rdsac_refresh_soon: a refresh wanted now (a
 * node unsubscribed sharded channels: their slot moved, or a subscriber's node was lost). */
unsigned rdsac_map_gen(void);
int rdsac_slot_owner(int slot, char *host, size_t hostlen, int *port);
void rdsac_moved(int slot, const char *host, int port);
void rdsac_refresh_soon(void);

/* The node whose reply is being handed to an rdsa_reply_fn now; MP_OK with host and port, MP_ENOENT
 * outside a reply callback. For the probe's answers and logs. */
int rdsac_reply_node(char *host, size_t hostlen, int *port);

/* What the backend met (monotonic counters since rdsac_start), for metrics (stats.c) and the probe. */
struct rdsac_stats {
    uint64_t commands; /* accepted by rdsa_cmd / rdsa_cmdargv / rdsa_eval */
    uint64_t moved, ask, tryagain, clusterdown;
    uint64_t sub_moved;      /* MOVED answers to rdsa.c's SSUBSCRIBEs (a stale map: the slot's owner set) */
    uint64_t noscript;       /* EVALSHAs answered NOSCRIPT, loaded and sent again */
    uint64_t retries;        /* failed tries tried again after a backoff */
    uint64_t gave_up;        /* commands answered NULL after redis.cluster_retry_ms (or too many redirects) */
    uint64_t lost_in_flight; /* commands answered NULL because their connection died after they were sent */
    uint64_t refused;        /* keys in different slots, or not routable: MP_EINVAL */
    uint64_t refreshes, refresh_failures;
    uint64_t node_losses; /* master connections lost or refused */
    int masters;          /* in the current map */
    int masters_ready;    /* of those, with a ready connection */
};
void rdsac_stats_get(struct rdsac_stats *s);

/* Is the cluster backend in use (redis.cluster set, rdsa started)? */
int rdsac_running(void);

/* push/rdsa.c's libuv adapter for hiredis (the fixed and write-batching one, see there): attach ac to loop.
 * MP_OK, MP_ENOMEM, MP_ERR. */
int rdsa_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
