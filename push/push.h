/* push.h -- the state of one magpie-push node that every part of the daemon reads.
 *
 * magpie-push runs one thread: the libuv loop, which carries libwebsockets, both Redis connections and the
 * timers. Everything below belongs to that thread; MySQL work runs on libuv's thread pool (dbpool.h) and
 * hands its results back to the loop.
 */
#ifndef PUSH_PUSH_H
#define PUSH_PUSH_H

#include "auth.h"
#include "config.h"
#include "id.h"

#include <libwebsockets.h>
#include <uv.h>

struct push {
    const struct magpie_config *cfg;
    uv_loop_t *loop;
    struct lws_context *lws;
    struct auth auth;
    struct id_gen ids; /* server message ids (id.h), node = push.node_id */
    int node;          /* push.node_id */
    int stopping;      /* SIGTERM seen: refuse new connections, say goodbye to the others */
    size_t max_conns;  /* connections taken at most (push.max_conns, or from the open-file limit) */
};

extern struct push push;

/* Loop time in ms (monotonic, updated once per loop iteration: cheap, for rates and timeouts). */
static inline uint64_t push_now(void)
{
    return uv_now(push.loop);
}

#endif
