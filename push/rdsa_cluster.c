/* rdsa_cluster.c -- rdsa's Redis Cluster backend: push/rdsa.h's API (the same contracts, no caller changes)
 * when redis.cluster is set. This comment is the design; how the cluster is followed is shared/rcluster.h's
 * (the blocking client of the other daemons), whose pure part (slots, the map, what a reply means) is used
 * here as it is. The pieces of its own that need no loop are in push/rdsac_route.h.
 *
 * Connections. One asynchronous command connection per master of the slot map, each made like rdsa's
 * command link (AUTH with redis.password, CLIENT SETNAME magpie-push-<node_id>-cluster, then SCRIPT LOAD of
 * every registered script) and ready only once all of that answered, so an EVALSHA never reaches a master
 * that was not given the script. A node is an address: it keeps its entry (a few hundred bytes, no
 * connection) when it leaves the map, until rdsa_stop. A connection lost or refused is dialled again after
 * its own backoff (100 ms doubling to 2 s, as rdsa); the watchdog dials the map's masters again by itself,
 * so every master has a connection without traffic asking for it. The watchdog also does rdsa's timeouts,
 * per connection: still connecting after redis.connect_timeout_ms, or commands outstanding without a reply
 * for redis.command_timeout_ms, and the connection is dropped.
 *
 * The map is built from CLUSTER SLOTS (rcl_map_parse_slots), asked of a ready connection (any node), or,
 * while none is ready, of the seeds (redis.cluster) connected one after the other. It is asked (1) at start;
 * (2) after a MOVED, at most once per RCL_REFRESH_MIN_MS; (3) after a failed try or a lost connection, at
 * most once per REFRESH_FAILED_MIN_MS; one CLUSTER SLOTS is in flight at a time, and the watchdog asks again
 * when one was wanted but the interval was not up. A refresh that changes the masters is logged ("redis
 * cluster map masters=N"); idle connections to nodes that left the map are closed.
 *
 * Routing. A command goes to the master of its keys' slot (rcl_command_slot); one with no key (PUBLISH,
 * WAIT...) to a ready master, the same one while it stays ready: PUBLISHes sent through different nodes
 * reach a subscriber on a third over different cluster-bus links, in any order (a node's deliveries to
 * another came out of order), so they keep to one. A command whose keys are in different slots, or that
 * the cluster client does not route (MULTI, SUBSCRIBE, SELECT...: rcluster.h), is refused before anything is sent:
 * rdsa_cmd returns MP_EINVAL and fn is not called (the callers treat any return but MP_OK as "Redis
 * unavailable" and answer E), and it is logged as an error (at most every REFUSED_LOG_EVERY_MS, with the
 * count): it is a bug in a key's hash tag, not a state of the cluster.
 *
 * What each answer does (as rcluster.h):
 *   - a reply, or an error of the command's own: to the caller;
 *   - MOVED: the map's owner of the slot is set (rcl_map_set_owner), the command is sent there, and a
 *     refresh is wanted; ASK: ASKING and the command, on that node, this once; more than RCL_MAX_REDIRECTS
 *     for one command, or a redirect that does not parse: NULL;
 *   - NOSCRIPT (a master restarted empty, a replica promoted without the script, SCRIPT FLUSH): every
 *     script is loaded again on that connection and the EVALSHA sent after the loads (one pipeline, so it
 *     meets them), at most MAX_NOSCRIPT times for one command (then NULL, as rdsa's NOSCRIPT); never an
 *     error to the caller;
 *   - TRYAGAIN, CLUSTERDOWN, no master for the slot, a node down (its connect failed, or it is waiting
 *     out its backoff), a connection lost or timed out before the command was written: a failed try. It is
 *     tried again after a backoff (RCL_BACKOFF_MIN_MS doubling to RCL_BACKOFF_MAX_MS) with a refresh of
 *     the map wanted; no try starts after redis.cluster_retry_ms from the call (a backoff that would end
 *     later is cut short: the last try starts then), and when that one fails too fn gets NULL and the
 *     caller answers E "temporarily unavailable", as when the one Redis is down. So a caller waits out the
 *     whole budget before its NULL: a failover shorter than redis.cluster_retry_ms is not seen at all.
 * A command already written to a connection that then dies (or times out) is NOT tried again: fn gets NULL
 * at once, as on rdsa's one connection. Redis may have run it, and not everything push sends is safe to
 * run twice: a login claims its ticket with SET NX (a second run answers "ticket used"), a T takes an order
 * once ("already taken"), a PUBLISH twice is a message delivered twice. The client's own retry after its E
 * is what SPEC §6 makes safe (the send scripts deduplicate on the client's id). Commands waiting for a
 * connection that never came up were not sent, and are retried.
 *
 * Ready. rdsa_ready() is 1 while commands are taken: a map is known and at least one of its masters has a
 * ready connection (a command for a master that is failing over is retried, as above; the other masters'
 * slots are served meanwhile). The state callbacks (rdsa_on_state) keep their meaning for the callers --
 * "Redis is whole again: write this node's state (heartbeat, presence, room counts) again", and "part of it
 * is gone" -- so they say whether the cluster is fully served: 1 when every slot has a master in the map
 * and every such master has a ready connection (after start, and again after every outage of any master:
 * a promoted replica may miss the last writes, which the callers' resync repairs); 0 when that stops.
 *
 * WAIT (rdsa_wait) goes to the connection whose reply is being handed to the caller (the master that made
 * the write, callers call rdsa_wait from the write's reply callback; outside one it answers 0), one WAIT in
 * flight per connection as rdsa's, answering every caller queued before it was sent.
 *
 * Pub/sub is rdsa.c's (its pub/sub part has the design). Classic SUBSCRIBE: one connection to any node (a
 * cluster forwards every PUBLISH to every node's subscribers); when that node is lost the link connects to
 * the next master of the map (rdsac_sub_address) and subscribes again, with the ready callbacks as always.
 * Sharded (SSUBSCRIBE): rdsa.c keeps one subscriber connection per master serving a subscribed channel's
 * slot, placed by this map (rdsac_slot_owner), moved when the map changes (rdsac_map_gen: every refresh
 * and every MOVED bumps it); a MOVED answer to an SSUBSCRIBE sets the slot's owner as a command's does
 * (rdsac_moved), and a subscription the server dropped (its slot left the node) or a subscriber connection
 * lost asks for a refresh (rdsac_refresh_soon). SPUBLISH is an ordinary command here: its channel is its
 * key (rcl_command_slot), so it goes to the master of the channel's slot.
 *
 * Logs: a node down (once per outage) and ready again, the map's masters when they change, a refresh that
 * failed (once per outage), the cluster fully served / not, a refused command. Counters: rdsac_stats (the
 * magpie_push_redis_cluster_* metrics). Everything runs on the loop thread.
 */
#include "rdsa_cluster.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "rcluster.h"
#include "rdsac_route.h"

#include <hiredis/async.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NODE_BACKOFF_MIN_MS   100 /* a node whose connection failed: as rdsa's links */
#define NODE_BACKOFF_MAX_MS   2000
#define WATCHDOG_MS           100 /* how often timeouts, reconnects and wanted refreshes are looked at */
#define REFRESH_FAILED_MIN_MS 100 /* refreshes wanted by failed tries: one per backoff step at most */
#define MAX_NOSCRIPT          2   /* NOSCRIPT answers one command survives (a SCRIPT FLUSH loop: NULL) */
#define MAX_NODES             (2 * RCL_MAX_MASTERS) /* addresses kept: the map's, the seeds', redirects' */
#define REFUSED_LOG_EVERY_MS  10000
#define WAIT_WARN_EVERY_MS    10000

enum node_state { NODE_DOWN, NODE_CONNECTING, NODE_SETUP, NODE_READY };

struct req;

struct waiter {
    rdsa_wait_fn fn;
    void *arg;
    struct waiter *next;
};

struct node {
    char host[RCL_HOST_LEN];
    int port;
    int seed;              /* named by redis.cluster */
    int in_map;            /* a master of the current map */
    redisAsyncContext *ac; /* NULL when down */
    enum node_state state;
    int64_t state_ms;    /* when the current state began (connect timeout) */
    int64_t progress_ms; /* last reply, or when pending rose from 0 (command timeout) */
    int64_t retry_at_ms; /* no connect before this */
    int pending;         /* commands written whose replies have not come */
    int setup_left;
    int backoff_ms;
    int down_logged;
    unsigned load_seq;         /* SCRIPT LOAD batches sent on this connection after its setup (NOSCRIPT) */
    struct req *queue, *qtail; /* commands waiting for the connection to be ready */
    struct {                   /* rdsa_wait on this connection */
        int in_flight;
        struct waiter *sent, *queue, **tail;
        int64_t warned_ms;
    } w;
};

/* A command in flight through the cluster. */
struct req {
    struct req *next; /* in a node's queue or the delayed list */
    rdsa_reply_fn fn;
    void *arg;
    char *cmd; /* formatted by hiredis (redisFreeCommand) */
    size_t len;
    int slot;            /* -1: no key */
    int64_t deadline_ms; /* no try starts after this */
    int64_t due_ms;      /* in the delayed list: tried again then */
    int backoff_ms;
    int redirects, noscripts;
    int redirected; /* the next try goes to to_host:to_port, not to the map's owner */
    int asking;     /* ... after ASKING */
    char to_host[RCL_HOST_LEN];
    int to_port;
    unsigned load_seq; /* its node's load_seq when it was written */
};

static struct {
    uv_loop_t *loop;
    const struct magpie_config *cfg;
    struct rdsa_script *const *scripts;
    int nscripts;
    void (*tell_state)(int ready);
    int running, stopping;
    struct node **nodes;
    int nnodes;
    struct rcl_map *map, *scratch; /* map NULL until the first refresh */
    unsigned any_next, sub_next, seed_next;
    int refresh_wanted, refresh_in_flight, refresh_min_ms;
    int64_t refresh_ms; /* when the last refresh was sent */
    int map_down_logged;
    unsigned map_gen; /* bumped whenever the map may name other owners (rdsac_map_gen) */
    int full;         /* what the state callbacks were told last */
    struct req *delayed;
    int64_t delay_due_ms; /* when delay_timer fires; 0: not started */
    uv_timer_t delay_timer, watchdog;
    int64_t watchdog_ms;
    struct node *reply_node; /* whose reply an rdsa_reply_fn is being handed */
    int64_t refused_logged_ms;
    uint64_t refused_unlogged;
    struct rdsac_stats st;
} K;

static void req_try(struct req *q);
static void node_connect(struct node *n);
static void refresh_kick(void);
static void map_moved(int slot, const char *host, int port);
static void update_state(void);

static int64_t now_ms(void)
{
    return (int64_t)uv_now(K.loop);
}

/* ---- nodes ---- */

static struct node *node_find(const char *host, int port)
{
    for (int i = 0; i < K.nnodes; i++)
        if (K.nodes[i]->port == port && strcmp(K.nodes[i]->host, host) == 0)
            return K.nodes[i];
    return NULL;
}

/* The node of host:port, created (down, dialled on first use) when new; NULL when out of memory or when
 * MAX_NODES addresses are known already (redirects to ever new addresses: a broken or hostile server). */
static struct node *node_get(const char *host, int port)
{
    struct node *n = node_find(host, port), **grown;
    if (n != NULL)
        return n;
    if (K.nnodes >= MAX_NODES || strlen(host) >= RCL_HOST_LEN)
        return NULL;
    if ((grown = realloc(K.nodes, sizeof(*grown) * (size_t)(K.nnodes + 1))) == NULL)
        return NULL;
    K.nodes = grown;
    if ((n = calloc(1, sizeof(*n))) == NULL)
        return NULL;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    n->backoff_ms = NODE_BACKOFF_MIN_MS;
    n->w.tail = &n->w.queue;
    K.nodes[K.nnodes++] = n;
    return n;
}

static void node_lost(struct node *n, const char *why);

/* A reply (or NULL) arrived on ac for n: count it, and when NULL the connection is going (hiredis hands
 * every outstanding callback NULL before it frees a context). Returns 1 for a reply on n's live
 * connection, 0 otherwise (NULL, an old connection's, or n NULL after rdsa stopped). */
static int node_seen(struct node *n, redisAsyncContext *ac, const redisReply *r)
{
    if (n == NULL || n->ac != ac)
        return 0;
    if (r == NULL) {
        node_lost(n, ac->errstr[0] ? ac->errstr : "connection lost");
        return 0;
    }
    n->pending--;
    n->progress_ms = now_ms();
    return 1;
}

static void waiters_answer(struct waiter *w, int ok)
{
    while (w != NULL) {
        struct waiter *next = w->next;
        w->fn(ok, w->arg);
        free(w);
        w = next;
    }
}

static void req_failed(struct req *q, const char *why);

/* n's connection is gone (or never came): commands waiting for it are failed tries (they were not sent),
 * WAITs not sent answer 0; it is dialled again after its backoff. The context is hiredis' to free. */
static void node_lost(struct node *n, const char *why)
{
    struct req *q = n->queue, *next;
    struct waiter *w = n->w.queue;

    n->ac = NULL;
    n->state = NODE_DOWN;
    n->pending = 0;
    n->setup_left = 0;
    n->queue = n->qtail = NULL;
    n->w.queue = NULL;
    n->w.tail = &n->w.queue;
    if (K.stopping) {
        for (; q != NULL; q = next) {
            next = q->next;
            req_failed(q, "stopping");
        }
        waiters_answer(w, 0);
        return;
    }
    K.st.node_losses++;
    if (!n->down_logged) {
        log_warn("redis cluster node down host=%s port=%d reason=\"%s\"", n->host, n->port, why);
        n->down_logged = 1;
    }
    n->retry_at_ms = now_ms() + n->backoff_ms;
    n->backoff_ms = n->backoff_ms * 2 > NODE_BACKOFF_MAX_MS ? NODE_BACKOFF_MAX_MS : n->backoff_ms * 2;
    for (; q != NULL; q = next) {
        next = q->next;
        req_failed(q, why);
    }
    waiters_answer(w, 0);
    if (K.refresh_min_ms > REFRESH_FAILED_MIN_MS)
        K.refresh_min_ms = REFRESH_FAILED_MIN_MS;
    K.refresh_wanted = 1;
    update_state();
    refresh_kick();
}

/* Drop n's live connection: node_lost, then hiredis hands every outstanding callback NULL. */
static void node_drop(struct node *n, const char *why)
{
    redisAsyncContext *ac = n->ac;
    if (ac == NULL)
        return;
    node_lost(n, why);
    redisAsyncFree(ac);
}

/* Close an idle connection to a node that left the map: no log, no backoff. */
static void node_close(struct node *n)
{
    redisAsyncContext *ac = n->ac;
    n->ac = NULL;
    n->state = NODE_DOWN;
    n->pending = 0;
    n->retry_at_ms = 0;
    redisAsyncFree(ac);
}

static int node_send(struct node *n, redisCallbackFn *cb, void *priv, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (redisAsyncCommandArgv(n->ac, cb, priv, argc, argv, argvlen) != REDIS_OK)
        return MP_EAGAIN;
    if (n->pending++ == 0)
        n->progress_ms = now_ms();
    return MP_OK;
}

static void req_send(struct node *n, struct req *q);

static void node_ready(struct node *n)
{
    struct req *q = n->queue, *next;

    n->state = NODE_READY;
    n->backoff_ms = NODE_BACKOFF_MIN_MS;
    log_info("redis cluster node %s host=%s port=%d", n->down_logged ? "back" : "ready", n->host, n->port);
    n->down_logged = 0;
    n->queue = n->qtail = NULL;
    for (; q != NULL; q = next) {
        next = q->next;
        req_send(n, q);
    }
    refresh_kick();
    update_state();
}

/* Setup replies: AUTH, CLIENT SETNAME (an error costs only the name), SCRIPT LOAD (priv: the script). */
static char setname_step;

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct node *n = ac->data;
    redisReply *r = reply;
    struct rdsa_script *s = priv;
    char why[300];

    if (!node_seen(n, ac, r))
        return;
    if (r->type == REDIS_REPLY_ERROR && priv != &setname_step) {
        snprintf(why, sizeof(why), "%s failed: %.200s", s ? s->name : "AUTH", r->str);
        node_drop(n, why);
        return;
    }
    if (s != NULL && priv != &setname_step) {
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            node_drop(n, "SCRIPT LOAD gave no sha");
            return;
        }
        memcpy(s->sha, r->str, 40); /* the same on every node: the SHA1 of the source */
        s->sha[40] = '\0';
    }
    if (--n->setup_left == 0 && n->state == NODE_SETUP)
        node_ready(n);
}

/* A SCRIPT LOAD sent again after NOSCRIPT: an error drops the connection (the EVALSHA behind it then gets
 * NULL, as a lost command). */
static void on_reload_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct node *n = ac->data;
    redisReply *r = reply;
    (void)priv;
    if (node_seen(n, ac, r) && (r->type != REDIS_REPLY_STRING || r->len != 40))
        node_drop(n, "SCRIPT LOAD after NOSCRIPT failed");
}

static void node_load_scripts(struct node *n, redisCallbackFn *cb, int setup)
{
    for (int i = 0; i < K.nscripts; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", K.scripts[i]->src};
        if (node_send(n, cb, K.scripts[i], 3, argv, NULL) == MP_OK && setup)
            n->setup_left++;
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct node *n = ac->data;
    const char *argv[3];
    char name[64];

    if (n == NULL || n->ac != ac)
        return;
    if (status != REDIS_OK) {
        node_lost(n, ac->errstr[0] ? ac->errstr : "connect failed");
        return; /* hiredis frees the context after this callback */
    }
    redisEnableKeepAlive(&ac->c);
    n->state = NODE_SETUP;
    n->state_ms = now_ms();
    n->setup_left = 0;
    if (K.cfg->redis.password[0] != '\0') {
        argv[0] = "AUTH";
        argv[1] = K.cfg->redis.password;
        if (node_send(n, on_setup_reply, NULL, 2, argv, NULL) == MP_OK)
            n->setup_left++;
    }
    snprintf(name, sizeof(name), "magpie-push-%lld-cluster", K.cfg->push.node_id);
    argv[0] = "CLIENT";
    argv[1] = "SETNAME";
    argv[2] = name;
    if (node_send(n, on_setup_reply, &setname_step, 3, argv, NULL) == MP_OK)
        n->setup_left++;
    node_load_scripts(n, on_setup_reply, 1);
    if (n->setup_left == 0)
        node_ready(n);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct node *n = ac->data;
    (void)status;
    if (n == NULL || n->ac != ac)
        return; /* dropped by us, or already known lost */
    node_lost(n, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void node_connect(struct node *n)
{
    redisAsyncContext *ac;
    char why[160];

    if (K.stopping || n->ac != NULL)
        return;
    n->state_ms = now_ms();
    ac = redisAsyncConnect(n->host, n->port);
    if (ac == NULL) {
        node_lost(n, "out of memory");
        return;
    }
    if (ac->err) {
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        node_lost(n, why);
        return;
    }
    if (rdsa_uv_attach(ac, K.loop) != MP_OK) {
        redisAsyncFree(ac);
        node_lost(n, "cannot watch the socket");
        return;
    }
    ac->data = n;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    n->ac = ac;
    n->state = NODE_CONNECTING;
    n->pending = 0;
}

/* Dial every master of the map that has no connection and is past its backoff. */
static void connect_map_nodes(void)
{
    int64_t now = now_ms();
    for (int i = 0; i < K.nnodes; i++) {
        struct node *n = K.nodes[i];
        if (n->in_map && n->ac == NULL && now >= n->retry_at_ms)
            node_connect(n);
    }
}

/* ---- the map ---- */

static int map_node_ready(int i, void *arg)
{
    struct node *n = node_find(K.map->node[i].host, K.map->node[i].port);
    (void)arg;
    return n != NULL && n->state == NODE_READY;
}

/* Tell the state callbacks when "fully served" changed (see the top). */
static void update_state(void)
{
    int full;
    K.st.masters = K.map ? K.map->nnodes : 0;
    K.st.masters_ready = 0;
    for (int i = 0; K.map != NULL && i < K.map->nnodes; i++)
        K.st.masters_ready += map_node_ready(i, NULL);
    if (K.stopping)
        return;
    full = rdsac_map_full(K.map, map_node_ready, NULL);
    if (full == K.full)
        return;
    K.full = full;
    if (full)
        log_info("redis cluster fully served masters=%d", K.st.masters);
    else
        log_warn("redis cluster partly unavailable masters=%d ready=%d", K.st.masters, K.st.masters_ready);
    K.tell_state(full);
}

static int same_masters(const struct rcl_map *a, const struct rcl_map *b)
{
    if (a == NULL || a->nnodes != b->nnodes)
        return 0;
    for (int i = 0; i < a->nnodes; i++)
        if (a->node[i].port != b->node[i].port || strcmp(a->node[i].host, b->node[i].host) != 0)
            return 0;
    return 1;
}

static void map_apply(const char *from_host, int from_port)
{
    struct rcl_map *old = K.map;
    int changed = !same_masters(old, K.scratch), served = 0;

    K.map = K.scratch;
    K.scratch = old;
    K.map_gen++;
    for (int s = 0; s < RCL_SLOTS; s++)
        served += K.map->owner[s] >= 0;
    if (changed)
        log_info("redis cluster map refreshed masters=%d slots_served=%d from=%s:%d", K.map->nnodes, served,
                 from_host, from_port);
    for (int i = 0; i < K.nnodes; i++)
        K.nodes[i]->in_map = 0;
    for (int i = 0; i < K.map->nnodes; i++) {
        struct node *n = node_get(K.map->node[i].host, K.map->node[i].port);
        if (n != NULL)
            n->in_map = 1;
    }
    for (int i = 0; i < K.nnodes; i++) {
        struct node *n = K.nodes[i];
        if (!n->in_map && n->ac != NULL && n->state == NODE_READY && n->pending == 0 && n->queue == NULL &&
            !n->w.in_flight)
            node_close(n);
    }
    if (K.map_down_logged) {
        log_info("redis cluster map refreshed again after failures");
        K.map_down_logged = 0;
    }
    connect_map_nodes();
    update_state();
}

static void on_slots_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct node *n = ac->data;
    redisReply *r = reply;
    char why[512];

    (void)priv;
    K.refresh_in_flight = 0;
    if (n == NULL || !node_seen(n, ac, r) || K.stopping) {
        K.st.refresh_failures++;
        return; /* still wanted: the watchdog asks again */
    }
    if (K.scratch == NULL && (K.scratch = malloc(sizeof(*K.scratch))) == NULL) {
        K.st.refresh_failures++;
        return;
    }
    if (rcl_map_parse_slots(K.scratch, r, n->host, why, sizeof(why)) != MP_OK) {
        K.st.refresh_failures++;
        if (!K.map_down_logged) {
            log_warn("redis cluster map refresh failed host=%s port=%d reason=\"%s\"", n->host, n->port, why);
            K.map_down_logged = 1;
        }
        return;
    }
    K.refresh_wanted = 0;
    K.refresh_min_ms = INT_MAX;
    map_apply(n->host, n->port);
}

/* Ask for the map when one is wanted, none is in flight and the interval since the last one is up. From a
 * ready connection, the next one in turn; with none ready, the masters of the map are dialled and, when
 * they cannot be, the next seed: the first to be ready asks (node_ready calls this again). */
static void refresh_kick(void)
{
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    int64_t now;
    int connecting = 0;

    if (K.stopping || !K.refresh_wanted || K.refresh_in_flight || K.nnodes == 0)
        return;
    now = now_ms();
    if (K.map != NULL && now - K.refresh_ms < K.refresh_min_ms)
        return;
    for (int k = 0; k < K.nnodes; k++) {
        struct node *n = K.nodes[(K.seed_next + (unsigned)k) % (unsigned)K.nnodes];
        if (n->state == NODE_READY) {
            K.seed_next += (unsigned)k + 1;
            if (node_send(n, on_slots_reply, NULL, 2, argv, NULL) == MP_OK) {
                K.refresh_in_flight = 1;
                K.refresh_ms = now;
                K.st.refreshes++;
            }
            return;
        }
        connecting += n->state == NODE_CONNECTING || n->state == NODE_SETUP;
    }
    if (connecting > 0)
        return;
    connect_map_nodes();
    for (int i = 0; i < K.nnodes; i++)
        connecting += K.nodes[i]->ac != NULL;
    for (int k = 0; connecting == 0 && k < K.nnodes; k++) {
        struct node *n = K.nodes[(K.seed_next + (unsigned)k) % (unsigned)K.nnodes];
        if (n->seed && n->ac == NULL && now >= n->retry_at_ms) {
            K.seed_next += (unsigned)k + 1;
            node_connect(n);
            connecting = n->ac != NULL;
        }
    }
}

/* ---- commands ---- */

static void req_free(struct req *q)
{
    redisFreeCommand(q->cmd);
    free(q);
}

/* Hand the caller its answer (r may be NULL); n is the node that gave it (rdsa_wait's target). */
static void deliver(struct req *q, redisReply *r, struct node *n)
{
    struct node *before = K.reply_node;
    K.reply_node = n;
    if (q->fn != NULL)
        q->fn(r, q->arg);
    K.reply_node = before;
    req_free(q);
}

static void delay_schedule(void);

static void on_delay(uv_timer_t *t)
{
    struct req *q = K.delayed, *next, *keep = NULL;
    int64_t now = now_ms();
    (void)t;
    K.delayed = NULL;
    K.delay_due_ms = 0;
    for (; q != NULL; q = next) {
        next = q->next;
        if (q->due_ms <= now) {
            q->next = NULL;
            req_try(q);
        } else {
            q->next = keep;
            keep = q;
        }
    }
    for (; keep != NULL; keep = next) { /* back, with what the tries above delayed again */
        next = keep->next;
        keep->next = K.delayed;
        K.delayed = keep;
    }
    delay_schedule();
}

/* (Re)arm the delay timer for the earliest due request. */
static void delay_schedule(void)
{
    int64_t due = INT64_MAX, now = now_ms();
    for (struct req *q = K.delayed; q != NULL; q = q->next)
        if (q->due_ms < due)
            due = q->due_ms;
    if (due == INT64_MAX || K.stopping) {
        if (K.delay_due_ms != 0)
            uv_timer_stop(&K.delay_timer);
        K.delay_due_ms = 0;
        return;
    }
    if (K.delay_due_ms != 0 && K.delay_due_ms <= due)
        return;
    K.delay_due_ms = due;
    uv_timer_start(&K.delay_timer, on_delay, (uint64_t)(due > now ? due - now : 0), 0);
}

/* A try that did not reach a node, or that the cluster answered "not now": again after the backoff (with
 * the map refreshed meanwhile; the last try at the deadline), or NULL to the caller once it has passed. */
static void req_failed(struct req *q, const char *why)
{
    if (K.stopping ||
        rdsac_next_try(now_ms(), q->deadline_ms, &q->backoff_ms, RCL_BACKOFF_MAX_MS, &q->due_ms) != MP_OK) {
        if (!K.stopping) {
            K.st.gave_up++;
            log_debug(
                "redis cluster gave up on a command slot=%d after redis.cluster_retry_ms=%lld last=\"%s\"",
                q->slot, K.cfg->redis.cluster_retry_ms, why);
        }
        deliver(q, NULL, NULL);
        return;
    }
    K.st.retries++;
    q->redirected = 0;
    q->asking = 0;
    q->next = K.delayed;
    K.delayed = q;
    if (K.refresh_min_ms > REFRESH_FAILED_MIN_MS)
        K.refresh_min_ms = REFRESH_FAILED_MIN_MS;
    K.refresh_wanted = 1;
    refresh_kick();
    delay_schedule();
}

static void on_aux_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    node_seen(ac->data, ac, reply); /* ASKING's +OK; an error shows again as the command's answer */
}

static void on_cmd_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Write q on n's ready connection (after ASKING when it was redirected by ASK). */
static void req_send(struct node *n, struct req *q)
{
    static const char *asking[1] = {"ASKING"};
    if (q->asking && node_send(n, on_aux_reply, NULL, 1, asking, NULL) != MP_OK) {
        req_failed(q, "cannot write ASKING");
        return;
    }
    if (redisAsyncFormattedCommand(n->ac, on_cmd_reply, q, q->cmd, q->len) != REDIS_OK) {
        req_failed(q, "cannot write the command");
        return;
    }
    if (n->pending++ == 0)
        n->progress_ms = now_ms();
    q->load_seq = n->load_seq;
    q->redirected = 0;
    q->asking = 0;
}

/* A ready master for a command with no key: the one used last while it is ready, else the next one in the
 * map (the routing note above: one node keeps PUBLISH order); NULL when none is ready. */
static struct node *any_master(void)
{
    for (int k = 0; K.map != NULL && k < K.map->nnodes; k++) {
        const struct rcl_node *m = &K.map->node[(K.any_next + (unsigned)k) % (unsigned)K.map->nnodes];
        struct node *n = node_find(m->host, m->port);
        if (n != NULL && n->state == NODE_READY) {
            K.any_next += (unsigned)k; /* the same master while it is ready: PUBLISHes stay in order */
            return n;
        }
    }
    return NULL;
}

/* One try of q: to its redirect's node, or to the map's master of its slot. */
static void req_try(struct req *q)
{
    struct node *n = NULL;
    const struct rcl_node *owner;

    if (K.stopping) {
        deliver(q, NULL, NULL);
        return;
    }
    if (q->redirected) {
        n = node_get(q->to_host, q->to_port);
    } else if (q->slot < 0) {
        n = any_master();
    } else if (K.map != NULL && (owner = rcl_map_owner(K.map, q->slot)) != NULL) {
        n = node_get(owner->host, owner->port);
    }
    if (n == NULL) {
        req_failed(q, q->slot < 0 ? "no master ready" : "no master serves the slot");
        return;
    }
    if (n->state == NODE_DOWN && now_ms() >= n->retry_at_ms)
        node_connect(n);
    switch (n->state) {
    case NODE_READY:
        req_send(n, q);
        return;
    case NODE_CONNECTING:
    case NODE_SETUP:
        q->next = NULL;
        if (n->qtail != NULL)
            n->qtail->next = q;
        else
            n->queue = q;
        n->qtail = q;
        return;
    case NODE_DOWN:
        req_failed(q, "node down");
        return;
    }
}

static void on_cmd_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct node *n = ac->data;
    struct req *q = priv;
    redisReply *r = reply;
    struct rcl_redirect rd;
    enum rcl_kind k;

    if (r == NULL || n == NULL) {
        /* written, then the connection died (or rdsa stops): Redis may have run it -- not tried again */
        node_seen(n, ac, r);
        if (!K.stopping)
            K.st.lost_in_flight++;
        deliver(q, NULL, NULL);
        return;
    }
    node_seen(n, ac, r);
    switch (k = rcl_classify(r, n->host, &rd)) {
    case RCL_REPLY:
        if (rdsac_noscript(r) && q->noscripts < MAX_NOSCRIPT && n->ac == ac && n->state == NODE_READY) {
            q->noscripts++;
            K.st.noscript++;
            if (n->load_seq == q->load_seq) { /* no load sent since q was: send them, q goes after */
                log_info("redis cluster node lost its scripts (NOSCRIPT): loading them again host=%s port=%d",
                         n->host, n->port);
                node_load_scripts(n, on_reload_reply, 0);
                n->load_seq++;
            }
            req_send(n, q);
            return;
        }
        if (rdsac_noscript(r)) { /* flushed again and again, or the connection is going: as rdsa, NULL */
            K.st.gave_up++;
            deliver(q, NULL, NULL);
            return;
        }
        deliver(q, r, n);
        return;
    case RCL_MOVED:
    case RCL_ASK:
        if (k == RCL_MOVED) {
            K.st.moved++;
            map_moved(rd.slot, rd.host, rd.port);
        } else {
            K.st.ask++;
        }
        if (++q->redirects > RCL_MAX_REDIRECTS) {
            K.st.gave_up++;
            log_warn("redis cluster: more than %d MOVED/ASK for one command slot=%d", RCL_MAX_REDIRECTS,
                     q->slot);
            deliver(q, NULL, NULL);
            return;
        }
        q->redirected = 1;
        q->asking = k == RCL_ASK;
        snprintf(q->to_host, sizeof(q->to_host), "%s", rd.host);
        q->to_port = rd.port;
        req_try(q);
        return;
    case RCL_TRYAGAIN:
    case RCL_CLUSTERDOWN:
        if (k == RCL_TRYAGAIN)
            K.st.tryagain++;
        else
            K.st.clusterdown++;
        req_failed(q, r->str);
        return;
    case RCL_BADREDIRECT:
        K.st.gave_up++;
        log_warn("redis cluster bad redirect host=%s port=%d reply=\"%.200s\"", n->host, n->port, r->str);
        K.refresh_wanted = 1;
        refresh_kick();
        deliver(q, NULL, NULL);
        return;
    }
}

/* A command refused before sending (see the top): counted, and logged at most every REFUSED_LOG_EVERY_MS
 * with what it was -- the command's name and, for an EVALSHA, the registered script's -- and how many were
 * refused since the last line. argv may be NULL (a printf-style command: no name). */
static void refused(const char *why, int argc, const char **argv, const size_t *argvlen)
{
    int64_t now = now_ms();
    const char *script = "-";
    int namelen = 0;

    K.st.refused++;
    K.refused_unlogged++;
    if (K.refused_logged_ms != 0 && now - K.refused_logged_ms < REFUSED_LOG_EVERY_MS)
        return;
    if (argv != NULL && argc >= 1) {
        namelen = argvlen[0] > 32 ? 32 : (int)argvlen[0];
        for (int i = 0; argc >= 2 && argvlen[0] == 7 && strncasecmp(argv[0], "EVALSHA", 7) == 0 &&
                        argvlen[1] == 40 && i < K.nscripts;
             i++)
            if (memcmp(K.scripts[i]->sha, argv[1], 40) == 0)
                script = K.scripts[i]->name;
    }
    log_error("redis cluster refused a command (a key without the right hash tag?) command=%.*s script=%s "
              "reason=\"%s\" count=%llu",
              namelen, namelen ? argv[0] : "", script, why, (unsigned long long)K.refused_unlogged);
    K.refused_logged_ms = now;
    K.refused_unlogged = 0;
}

/* Start q (cmd formatted, its slot known) through the cluster. */
static int req_start(rdsa_reply_fn fn, void *arg, char *cmd, size_t len, int slot)
{
    struct req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        redisFreeCommand(cmd);
        return MP_EAGAIN;
    }
    q->fn = fn;
    q->arg = arg;
    q->cmd = cmd;
    q->len = len;
    q->slot = slot;
    q->deadline_ms = now_ms() + K.cfg->redis.cluster_retry_ms;
    q->backoff_ms = RCL_BACKOFF_MIN_MS;
    K.st.commands++;
    req_try(q);
    return MP_OK;
}

int rdsac_cmdargv(rdsa_reply_fn fn, void *arg, int argc, const char **argv, const size_t *argvlen)
{
    enum { STACK_ARGS = 64 };
    size_t stack_len[STACK_ARGS] = {0}, *lens = stack_len;
    char why[256], *cmd = NULL;
    int slot, len = 0, rc;

    if (!rdsac_ready())
        return MP_EAGAIN;
    if (argvlen == NULL) { /* rcl_command_slot wants lengths */
        if (argc > STACK_ARGS && (lens = malloc(sizeof(*lens) * (size_t)argc)) == NULL)
            return MP_EAGAIN;
        for (int i = 0; i < argc; i++)
            lens[i] = strlen(argv[i]);
    } else {
        lens = (size_t *)argvlen;
    }
    rc = rcl_command_slot(argc, argv, lens, &slot, why, sizeof(why));
    if (rc == MP_OK && (len = redisFormatCommandArgv(&cmd, argc, argv, lens)) < 0)
        rc = MP_EAGAIN;
    if (rc == MP_EINVAL)
        refused(why, argc, argv, lens);
    if (lens != stack_len && lens != argvlen)
        free(lens);
    if (rc != MP_OK)
        return rc;
    return req_start(fn, arg, cmd, (size_t)len, slot);
}

int rdsac_cmdv(rdsa_reply_fn fn, void *arg, const char *fmt, va_list ap)
{
    char why[256], *cmd = NULL;
    int slot, len;

    if (!rdsac_ready())
        return MP_EAGAIN;
    if ((len = redisvFormatCommand(&cmd, fmt, ap)) < 0)
        return MP_EAGAIN;
    if (rdsac_formatted_slot(cmd, (size_t)len, &slot, why, sizeof(why)) != MP_OK) {
        redisFreeCommand(cmd);
        refused(why, 0, NULL, NULL);
        return MP_EINVAL;
    }
    return req_start(fn, arg, cmd, (size_t)len, slot);
}

int rdsac_ready(void)
{
    if (!K.running || K.stopping || K.map == NULL)
        return 0;
    for (int i = 0; i < K.map->nnodes; i++)
        if (map_node_ready(i, NULL))
            return 1;
    return 0;
}

/* ---- WAIT ---- */

static void node_wait_send(struct node *n);

static void on_wait_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct node *n = ac->data;
    redisReply *r = reply;
    struct waiter *done, *queued;
    long long want = K.cfg->redis.min_replicas_acked;
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= want;

    (void)priv;
    if (n == NULL)
        return; /* rdsa stopped (rdsac_stop answered its waiters) */
    node_seen(n, ac, r);
    done = n->w.sent;
    n->w.sent = NULL;
    n->w.in_flight = 0;
    if (r == NULL) { /* the connection is gone, and with it the writes of the callers queued behind */
        queued = n->w.queue;
        n->w.queue = NULL;
        n->w.tail = &n->w.queue;
        waiters_answer(done, 0);
        waiters_answer(queued, 0);
        return;
    }
    if (!ok && now_ms() - n->w.warned_ms >= WAIT_WARN_EVERY_MS) {
        n->w.warned_ms = now_ms();
        log_warn(
            "redis WAIT: too few replicas hold the writes; their senders get E and retry host=%s port=%d "
            "acked=%lld wanted=%lld timeout_ms=%lld%s%s",
            n->host, n->port, r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL, want,
            K.cfg->redis.wait_timeout_ms, r->type == REDIS_REPLY_ERROR ? " error=" : "",
            r->type == REDIS_REPLY_ERROR ? r->str : "");
    }
    node_wait_send(n);
    waiters_answer(done, ok);
}

static void node_wait_send(struct node *n)
{
    char want[24], timeout[24];
    const char *argv[3] = {"WAIT", want, timeout};
    struct waiter *w;

    if (n->w.queue == NULL || n->w.in_flight)
        return;
    w = n->w.queue;
    n->w.queue = NULL;
    n->w.tail = &n->w.queue;
    snprintf(want, sizeof(want), "%lld", K.cfg->redis.min_replicas_acked);
    snprintf(timeout, sizeof(timeout), "%lld", K.cfg->redis.wait_timeout_ms);
    if (n->state != NODE_READY || node_send(n, on_wait_reply, NULL, 3, argv, NULL) != MP_OK) {
        waiters_answer(w, 0);
        return;
    }
    n->w.sent = w;
    n->w.in_flight = 1;
}

void rdsac_wait(rdsa_wait_fn fn, void *arg)
{
    struct node *n = K.reply_node;
    struct waiter *w;

    if (n == NULL || n->state != NODE_READY || K.stopping || (w = calloc(1, sizeof(*w))) == NULL) {
        if (n == NULL && !K.stopping)
            log_warn("redis cluster: rdsa_wait called outside a write's reply callback: answered 0");
        fn(0, arg);
        return;
    }
    w->fn = fn;
    w->arg = arg;
    *n->w.tail = w;
    n->w.tail = &w->next;
    node_wait_send(n);
}

/* ---- what rdsa.c's sharded subscribers need (the top: pub/sub) ---- */

unsigned rdsac_map_gen(void)
{
    return K.map_gen;
}

int rdsac_slot_owner(int slot, char *host, size_t hostlen, int *port)
{
    const struct rcl_node *owner;
    if (!K.running || K.stopping || K.map == NULL || (owner = rcl_map_owner(K.map, slot)) == NULL)
        return MP_EAGAIN;
    snprintf(host, hostlen, "%s", owner->host);
    *port = owner->port;
    return MP_OK;
}

/* A MOVED to slot host:port (a command's or an SSUBSCRIBE's): the map's owner set, a refresh wanted. */
static void map_moved(int slot, const char *host, int port)
{
    if (K.map != NULL && rcl_map_set_owner(K.map, slot, host, port) == MP_OK) /* full: the redirect leads */
        K.map_gen++;
    if (K.refresh_min_ms > RCL_REFRESH_MIN_MS)
        K.refresh_min_ms = RCL_REFRESH_MIN_MS;
    K.refresh_wanted = 1;
    refresh_kick();
}

void rdsac_moved(int slot, const char *host, int port)
{
    if (!K.running || K.stopping)
        return;
    K.st.sub_moved++;
    map_moved(slot, host, port);
}

void rdsac_refresh_soon(void)
{
    if (!K.running || K.stopping)
        return;
    if (K.refresh_min_ms > REFRESH_FAILED_MIN_MS)
        K.refresh_min_ms = REFRESH_FAILED_MIN_MS;
    K.refresh_wanted = 1;
    refresh_kick();
}

/* ---- the subscriber's address, the reply's node, counters ---- */

int rdsac_sub_address(char *host, size_t hostlen, int *port)
{
    struct node *pick = NULL;

    if (K.map != NULL && K.map->nnodes > 0) {
        /* the next master with a ready connection (it answers), else simply the next one */
        for (int k = 0; k < K.map->nnodes && pick == NULL; k++) {
            const struct rcl_node *m = &K.map->node[(K.sub_next + (unsigned)k) % (unsigned)K.map->nnodes];
            struct node *n = node_find(m->host, m->port);
            if (n != NULL && n->state == NODE_READY) {
                pick = n;
                K.sub_next += (unsigned)k + 1;
            }
        }
        if (pick == NULL) {
            const struct rcl_node *m = &K.map->node[K.sub_next++ % (unsigned)K.map->nnodes];
            snprintf(host, hostlen, "%s", m->host);
            *port = m->port;
            return MP_OK;
        }
    } else {
        for (int k = 0; k < K.nnodes && pick == NULL; k++) {
            struct node *n = K.nodes[(K.sub_next + (unsigned)k) % (unsigned)K.nnodes];
            if (n->seed) {
                pick = n;
                K.sub_next += (unsigned)k + 1;
            }
        }
    }
    if (pick == NULL)
        return MP_EAGAIN;
    snprintf(host, hostlen, "%s", pick->host);
    *port = pick->port;
    return MP_OK;
}

int rdsac_reply_node(char *host, size_t hostlen, int *port)
{
    if (K.reply_node == NULL)
        return MP_ENOENT;
    snprintf(host, hostlen, "%s", K.reply_node->host);
    *port = K.reply_node->port;
    return MP_OK;
}

void rdsac_stats_get(struct rdsac_stats *s)
{
    *s = K.st;
}

int rdsac_running(void)
{
    return K.running;
}

/* ---- the watchdog, start, stop ---- */

static void on_watchdog(uv_timer_t *t)
{
    int64_t now = now_ms(), late = now - K.watchdog_ms - WATCHDOG_MS;
    (void)t;
    K.watchdog_ms = now;
    if (late > K.cfg->redis.command_timeout_ms / 2) {
        /* the loop itself was stalled: Redis gets a full timeout from now rather than the blame (as rdsa) */
        log_info("event loop was stalled stalled_ms=%lld: redis cluster timeouts restart", (long long)late);
        for (int i = 0; i < K.nnodes; i++)
            K.nodes[i]->progress_ms = K.nodes[i]->state_ms = now;
        return;
    }
    for (int i = 0; i < K.nnodes; i++) {
        struct node *n = K.nodes[i];
        if (n->ac == NULL)
            continue;
        if (n->state == NODE_CONNECTING && now - n->state_ms > K.cfg->redis.connect_timeout_ms)
            node_drop(n, "connect timed out");
        else if (n->pending > 0 && now - n->progress_ms > K.cfg->redis.command_timeout_ms)
            node_drop(n, "no reply within redis.command_timeout_ms");
    }
    connect_map_nodes();
    refresh_kick();
}

static int add_seed(const char *item, size_t len, void *arg)
{
    char buf[300], host[RCL_HOST_LEN];
    int port;
    struct node *n;
    (void)arg;
    if (len >= sizeof(buf))
        return 0;
    memcpy(buf, item, len);
    buf[len] = '\0';
    if (config_split_addr(buf, host, sizeof(host), &port) != 0)
        return 0;
    if ((n = node_get(host, port)) != NULL)
        n->seed = 1;
    return 0;
}

int rdsac_start(uv_loop_t *loop, const struct magpie_config *cfg, struct rdsa_script *const *scripts,
                int nscripts, void (*tell_state)(int ready))
{
    memset(&K, 0, sizeof(K));
    K.loop = loop;
    K.cfg = cfg;
    K.scripts = scripts;
    K.nscripts = nscripts;
    K.tell_state = tell_state;
    K.refresh_wanted = 1;
    K.refresh_min_ms = 0;
    config_list_each(cfg->redis.cluster, add_seed, NULL);
    if (K.nnodes == 0) {
        log_error("redis.cluster names no usable seed (host:port, ...): \"%s\"", cfg->redis.cluster);
        return MP_EINVAL;
    }
    if ((K.scratch = malloc(sizeof(*K.scratch))) == NULL)
        return MP_ENOMEM;
    uv_timer_init(loop, &K.delay_timer);
    uv_timer_init(loop, &K.watchdog);
    K.watchdog_ms = now_ms();
    uv_timer_start(&K.watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    K.running = 1;
    log_info("redis cluster client starting seeds=%d", K.nnodes);
    refresh_kick();
    return MP_OK;
}

void rdsac_stop(void)
{
    struct req *q, *next;

    if (!K.running || K.stopping)
        return;
    K.stopping = 1;
    for (int i = 0; i < K.nnodes; i++) {
        struct node *n = K.nodes[i];
        redisAsyncContext *ac = n->ac;
        /* Called from one of n's reply callbacks (the probe stops from one), hiredis frees the context
         * only when that callback returns, and hands the other outstanding callbacks NULL then: they must
         * not find n, which is freed below. */
        int deferred = ac != NULL && (ac->c.flags & REDIS_IN_CALLBACK);
        node_drop(n, "stopping"); /* outstanding callbacks get NULL (now, or when deferred then) */
        if (deferred) {
            ac->data = NULL;
            if (n->w.in_flight) {
                struct waiter *w = n->w.sent;
                n->w.sent = NULL;
                n->w.in_flight = 0;
                waiters_answer(w, 0);
            }
        }
    }
    for (q = K.delayed, K.delayed = NULL; q != NULL; q = next) {
        next = q->next;
        deliver(q, NULL, NULL);
    }
    uv_timer_stop(&K.delay_timer);
    uv_timer_stop(&K.watchdog);
    uv_close((uv_handle_t *)&K.delay_timer, NULL);
    uv_close((uv_handle_t *)&K.watchdog, NULL);
    for (int i = 0; i < K.nnodes; i++)
        free(K.nodes[i]);
    free(K.nodes);
    K.nodes = NULL;
    K.nnodes = 0;
    free(K.map);
    free(K.scratch);
    K.map = K.scratch = NULL;
    K.running = 0;
}
