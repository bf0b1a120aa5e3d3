/* rcluster.h -- a Redis Cluster client on top of hiredis 0.14, which has no cluster support (SPEC §7,
 * `redis.cluster`). This comment is the design. The client is blocking; shared/rds.h is built on it when
 * redis.cluster is set (magpie-http, magpie-persist, magpie-notify: one struct rcl per struct rds, and the
 * pipelines, WAIT and SCAN of every master below are what rds needs); the pure part below (slots, the
 * map, what a reply means) is what an asynchronous client for magpie-push will share.
 *
 * Slots. A key's slot is CRC16 (XMODEM: poly 0x1021, init 0) of the key modulo 16384; when the key holds a
 * '{' followed later by a '}' with at least one byte between them, only the bytes between the first '{'
 * and the first '}' after it are hashed (the hash tag), exactly as Redis does: "{user1}.a" and "{user1}.b"
 * share a slot, "{}x" and "a{b" are hashed whole, "a{b}c{d}" hashes "b", "{{x}}" hashes "{x".
 *
 * Who owns the map. Each struct rcl owns its slot map (slot -> master host:port) and one connection per
 * master it has talked to; nothing is shared between threads (one struct rcl per thread, as for rds). The
 * map is built from CLUSTER SLOTS, asked of the masters the map knows and then of the seeds
 * (`redis.cluster`), in turn, until one answers with a map that parses; the first node of each slot range
 * is its master (replicas are not used: every command goes to a master). A NULL or empty endpoint means
 * "the host you asked", as Redis documents; "?" (a node with no usable endpoint) leaves its slots unserved.
 *
 * When the map is refreshed. (1) At the first command. (2) Before the next command after a MOVED, at most
 * once per RCL_REFRESH_MIN_MS: one MOVED usually means a failover or a reshard that moved more slots than
 * the one asked about. (3) After every failed try below, before trying again. Connections to nodes that
 * left the map are closed at the refresh.
 *
 * What each answer does to a command (rcl_cmd, rcl_cmdargv):
 *   - a normal reply, or an error that is not one of the cluster's (WRONGTYPE, NOSCRIPT...): returned;
 *   - MOVED slot host:port: the slot's owner is set to host:port in the map at once, and the command is
 *     sent there (the whole map is refreshed before the next command, as said above);
 *   - ASK slot host:port: ASKING, then the command, on host:port, this once; the map is not changed (the slot
 *     is being migrated: keys that already moved are there, the others still on the owner);
 *   - TRYAGAIN (a multi-key command during a migration of its slot), UNBLOCKED (a blocking read whose key
 *     went away under it: MIGRATE moved the slot's stream to its new master), CLUSTERDOWN (no master serves
 *     the slot now: a failover has not finished), a lost connection, a timeout or a refused connect: a
 *     failed try. The command is tried again after a short backoff (RCL_BACKOFF_MIN_MS doubling to
 *     RCL_BACKOFF_MAX_MS) and
 *     a refresh of the map; no try starts after `redis.cluster_retry_ms`; then NULL with MP_EAGAIN, and the
 *     caller answers as when Redis is down ("temporarily unavailable", HTTP 503: the client retries). A
 *     node whose connect failed is not dialled again before its own backoff (100 ms doubling to 2 s, as
 *     rds), so a dead master costs one connect timeout, not one per command.
 *   - more than RCL_MAX_REDIRECTS MOVED/ASK for one command (slots moving faster than the map follows), or a
 *     MOVED/ASK that does not parse (a hostile or broken server): NULL with MP_EAGAIN, and the map is
 *     refreshed before the next command; nothing is sent to an address that did not parse.
 * A command whose keys are in different slots is refused before anything is sent (MP_EINVAL, "keys in
 * different slots": Redis would answer CROSSSLOT), and so are the commands this client cannot route:
 * transactions (MULTI/EXEC/WATCH) and pub/sub (a subscriber keeps its own connection), and connection-state
 * commands (SELECT, AUTH, HELLO...; the client does AUTH itself with redis.password; a cluster has only
 * database 0, so redis.db must be 0 -- config_load checks). A command with no key (PING, TIME, SCRIPT
 * LOAD...) goes to one master; which one is unspecified.
 *
 * A retried write may have been applied by a node that died before answering (as with one Redis): the
 * callers' writes are idempotent or deduplicated for that reason already (SPEC §6).
 */
#ifndef MAGPIE_RCLUSTER_H
#define MAGPIE_RCLUSTER_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct magpie_config;

#define RCL_SLOTS          16384
#define RCL_MAX_MASTERS    256 /* a map naming more masters is refused (a deployment has a handful) */
#define RCL_HOST_LEN       256
#define RCL_MAX_REDIRECTS  5  /* MOVED/ASK followed for one command before giving up on it */
#define RCL_BACKOFF_MIN_MS 10 /* between failed tries of one command: a failover takes ~1-3 s */
#define RCL_BACKOFF_MAX_MS 200
#define RCL_REFRESH_MIN_MS 1000 /* MOVED-triggered refreshes at most this often (each is a CLUSTER SLOTS) */

/* ---- the pure part: no I/O, unit-tested against recorded replies (tests/unit/test_rcluster.c) ---- */

/* CRC16-XMODEM of len bytes, the checksum Redis Cluster hashes keys with ("123456789" -> 0x31C3). */
uint16_t rcl_crc16(const void *buf, size_t len);

/* The slot (0..16383) of a key of len bytes, with hash tags as described above. */
int rcl_keyslot(const void *key, size_t len);

/* The slot a command must go to. MP_OK with *slot the slot of its keys, or -1 when it has none (any master
 * serves it); MP_EINVAL with why filled when its keys are in different slots, its key count (EVAL,
 * EVALSHA, FCALL, XREAD, ZUNION...) does not fit its arguments, or it is a command this client does not
 * route (transactions, pub/sub, connection state). Which arguments are keys: the command's own rule for
 * the commands listed in rcluster.c, else the first argument (GET, SET, HSET, XADD, XACK...). */
int rcl_command_slot(int argc, const char **argv, const size_t *argvlen, int *slot, char *why, size_t whylen);

struct rcl_node {
    char host[RCL_HOST_LEN];
    int port;
};

/* Which master serves each slot. Plain data (~100 KB: allocate it): copy it, compare it, free it. */
struct rcl_map {
    int nnodes;
    struct rcl_node node[RCL_MAX_MASTERS];
    int16_t owner[RCL_SLOTS]; /* index into node, -1: no master serves the slot */
};

/* Make m empty: no node, every slot unserved. */
void rcl_map_clear(struct rcl_map *m);

/* Fill m from a CLUSTER SLOTS reply r, received from asked_host (used for an endpoint that is NULL or "").
 * MP_OK, or MP_EINVAL with why filled when r is not a CLUSTER SLOTS answer (an error reply, wrong types,
 * a slot out of 0..16383 or a range that ends before it starts, a port out of 1..65535, a host too long,
 * more than RCL_MAX_MASTERS masters, ranges that overlap); m is then empty. */
int rcl_map_parse_slots(struct rcl_map *m, const redisReply *r, const char *asked_host, char *why,
                        size_t whylen);

/* Set the master of slot to host:port (adding the node when new), as a MOVED says. MP_OK; MP_EINVAL for a
 * slot or port out of range or a host too long; MP_ERR when the map already names RCL_MAX_MASTERS masters. */
int rcl_map_set_owner(struct rcl_map *m, int slot, const char *host, int port);

/* The node serving slot, or NULL when none (or the slot is out of range). Borrowed from m. */
const struct rcl_node *rcl_map_owner(const struct rcl_map *m, int slot);

/* What a reply means to the client (see above). */
enum rcl_kind {
    RCL_REPLY,       /* anything else: the caller's answer (a value, or an error of the command's own) */
    RCL_MOVED,       /* the slot lives at host:port now */
    RCL_ASK,         /* this once, ASKING then the command at host:port */
    RCL_TRYAGAIN,    /* a failed try: again later (TRYAGAIN, UNBLOCKED) */
    RCL_CLUSTERDOWN, /* a failed try: again later, after a refresh */
    RCL_BADREDIRECT, /* a MOVED or ASK that does not parse */
};

struct rcl_redirect {
    int slot;
    char host[RCL_HOST_LEN];
    int port;
};

/* Classify reply r (not NULL), received from from_host; for RCL_MOVED and RCL_ASK *rd holds where to go,
 * with a host left empty by the server ("MOVED 3999 :6381") replaced by from_host. A host with ':' in it
 * (IPv6) is split at its last ':'. */
enum rcl_kind rcl_classify(const redisReply *r, const char *from_host, struct rcl_redirect *rd);

/* ---- the client ---- */

struct rcl_conn {
    char host[RCL_HOST_LEN];
    int port;
    redisContext *c;     /* NULL while not connected */
    int64_t retry_at_ms; /* monotonic ms before which no connect is tried */
    int backoff_ms;
    int down; /* 1 once its failure was logged, until it connects again */
    int used; /* answered a command since the last rcl_wait: rcl_wait must WAIT here too */
};

/* What happened, for metrics, logs and the integration test (monotonic counters). */
struct rcl_stats {
    uint64_t commands, moved, ask, tryagain, clusterdown, conn_errors, refreshes, refresh_failures, refused;
};

struct rcl {
    const struct magpie_config *cfg;
    struct rcl_map *map;     /* owned; NULL until the first refresh succeeds */
    struct rcl_map *scratch; /* owned; a refresh parses here, then the two swap */
    struct rcl_conn *conns;  /* owned; one per address talked to (masters, seeds) */
    int nconns;
    unsigned any_next;       /* which master the next keyless command goes to */
    int refresh_wanted;      /* a MOVED or a bad redirect: refresh before the next command */
    int map_down;            /* 1 once a failed refresh was logged, until one succeeds */
    int64_t refreshed_at_ms; /* monotonic ms of the last refresh that succeeded */
    int err;                 /* of the last call that failed: MP_EAGAIN or MP_EINVAL */
    char errstr[512];
    char last_host[RCL_HOST_LEN]; /* the node that gave the last reply */
    int last_port;
    int used_lost; /* a connection that answered since the last rcl_wait was dropped: that WAIT fails */
    struct rcl_stats stats;
};

/* Set c up from cfg's [redis] (redis.cluster: the seeds; password, timeouts, cluster_retry_ms). Connects
 * lazily. MP_OK; MP_EINVAL when redis.cluster is empty; MP_ENOMEM. cfg must outlive c. */
int rcl_init(struct rcl *c, const struct magpie_config *cfg);

/* Run a command on the master of its keys' slot, following the cluster as described above. Returns the
 * reply (caller frees with freeReplyObject; it may be an error reply of the command's own), or NULL with
 * c->err and c->errstr saying why: MP_EAGAIN (the cluster did not serve it within redis.cluster_retry_ms)
 * or MP_EINVAL (refused before sending: keys in different slots, a command this client does not route). */
redisReply *rcl_cmd(struct rcl *c, const char *fmt, ...);
redisReply *rcl_cmdargv(struct rcl *c, int argc, const char **argv,
                        const size_t *argvlen); /* argvlen NULL: strlen */

/* rcl_cmd with the arguments in a va_list (shared/rds.c). */
redisReply *rcl_vcmd(struct rcl *c, const char *fmt, va_list ap);

/* Pipelines (shared/rds.h rds_append/rds_reply). n commands formatted by hiredis (redisFormatCommand...)
 * are sent grouped per master: every master's share is written at once on its connection, then each
 * master's replies are read in turn, so a batch costs one round trip per master involved, not one per
 * command. A command whose reply is not its answer (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a lost connection,
 * no master known for its slot) is run again after the batch, alone, with every rule of rcl_cmd. out[i]
 * gets command i's reply (caller frees), or NULL when it failed as rcl_cmd would (c->err says why: the
 * last failure's). Order: the commands of one slot are applied in the order given (one master, one
 * connection), except that a command retried after the batch comes after the others of its batch; commands
 * of different slots have no order between them (as on any cluster). Returns the number of NULLs. */
int rcl_pipeline(struct rcl *c, int n, char *const *cmds, const size_t *lens, redisReply **out);

/* WAIT numreplicas timeout_ms on every connection that answered a command since the last rcl_wait (a
 * durable answer may rest on writes to several masters: e.g. a key and an index in two slots), each on the
 * connection that carried the writes. MP_OK with *acked the fewest replicas any of them reported (WAIT on a
 * connection that only read returns at once); MP_EAGAIN (c->errstr) when one of those connections was
 * dropped meanwhile or WAIT failed: WAIT on a fresh connection would vouch for nothing. Each call starts a
 * new set. */
int rcl_wait(struct rcl *c, int numreplicas, int timeout_ms, long long *acked);

/* The masters of the current map (refreshed first when there is none), copied into out (up to max).
 * Returns how many, or -1 when no node gave a map (c->errstr says why). For what must visit every master
 * (SCAN) or may use any one (a SUBSCRIBE: PUBLISH reaches every node of a cluster). */
int rcl_masters(struct rcl *c, struct rcl_node *out, int max);

/* One command on the node host:port itself, no redirect followed, no retry: the reply (an error reply
 * included), or NULL when the node cannot be reached (c->errstr). For SCAN of each master. */
redisReply *rcl_cmd_at(struct rcl *c, const char *host, int port, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Rebuild the map now (see above). MP_OK, or MP_EAGAIN when no node gave one (c->errstr says why; the old
 * map, if any, is kept). */
int rcl_refresh(struct rcl *c);

/* Close every connection and free the map. c can be rcl_init'ed again. */
void rcl_close(struct rcl *c);

#endif
