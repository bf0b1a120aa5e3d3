/* persist_stream.h -- magpie-persist's side of the chat stream KEY_MQ in Redis: the consumer group
 * MQ_GROUP, reading (new entries, its own pending ones, entries claimed from dead consumers), XACK, the
 * dead-letter stream, and keeping the stream short.
 *
 * Shards (shared/keys.h): there is one stream per shard (redis.stream_shards), each with its own group
 * and dead-letter stream, and every function here works on all of them. With one shard nothing differs.
 * With several, the entry ids handed out are "<id>@<shard>" (the stream's own id and the shard whose
 * stream has it: ids of two streams may be equal), and every function taking an id or a cursor routes it
 * by that suffix (an id without one is shard 0's): a read of new entries is one XREADGROUP over every
 * stream (the count split over them); a read of pending entries goes through the streams one after the other,
 * as does a claim (its cursor is "0-0" only after the last stream's full pass); state sums the streams, trim
 * and forgetting consumers work on each. A dead letter keeps the entry's own id (MQ_F_DEAD_ID) and goes to
 * its shard's dead-letter stream (one script with the XACK: works on a cluster too).
 *
 * Every function returns MP_OK, MP_EAGAIN when Redis is unavailable (rds.c dropped the connection and
 * logged it) or still loading its data after a restart, MP_ENOENT when the stream or the group is gone
 * (create the group again), or MP_ERR for an error reply (logged here). Replies are checked for their shape:
 * an unexpected one is MP_ERR, never a crash.
 */
#ifndef MAGPIE_PERSIST_STREAM_H
#define MAGPIE_PERSIST_STREAM_H

#include "persist_sid.h"
#include "rds.h"

#include <stddef.h>
#include <stdint.h>

/* The entries of one read or claim. */
struct persist_read {
    redisReply *reply;    /* owns the entries; persist_read_free releases it */
    redisReply **entries; /* entries[i]: [id, fields] where fields is an array of name/value strings, or
                             nil when the entry was deleted from the stream while pending */
    size_t n;
    char cursor[PERSIST_SID_MAX]; /* claim: where the next claim continues; "0-0" after a full pass */
    size_t deleted;               /* claim: pending entries Redis found deleted (and dropped from the PEL) */
    void *own;                    /* several shards: the relabeled entries (ids with "@<shard>") */
};

void persist_read_free(struct persist_read *rd);

/* Work on other streams than KEY_MQ with the same rules: their key, consumer group, dead-letter stream
 * (key and dead are the KEY_SHARDED names, KEY_NOTIFY_NAME...) and the dead-letter stream's cap (a decimal
 * string). magpie-notify binds KEY_NOTIFY this way (notify/notify_worker.h);
 * call it once at start, before any other function here: it holds for the whole process. The strings
 * are borrowed and must live as long. */
void persist_stream_bind(const char *key, const char *group, const char *dead, const char *dead_maxlen);

/* XGROUP CREATE KEY_MQ MQ_GROUP 0 MKSTREAM: the group starts at the beginning, so entries written before
 * any worker ever ran are stored too. An existing group is fine (MP_OK). *created is set to 1 when this
 * call created it. */
int persist_stream_create_group(struct rds *r, int *created);

/* XREADGROUP GROUP MQ_GROUP consumer COUNT count [BLOCK block_ms] STREAMS KEY_MQ id.
 * id ">" reads new entries (waiting up to block_ms); any other id reads this consumer's pending entries
 * after id (block_ms is ignored). rd->n == 0 when there is nothing. */
int persist_stream_read(struct rds *r, const char *consumer, const char *id, long long count,
                        long long block_ms, struct persist_read *rd);

/* XAUTOCLAIM KEY_MQ MQ_GROUP consumer min_idle_ms cursor COUNT count: take over entries pending longer than
 * min_idle_ms under any consumer. */
int persist_stream_claim(struct rds *r, const char *consumer, long long min_idle_ms, const char *cursor,
                         long long count, struct persist_read *rd);

/* XACK KEY_MQ MQ_GROUP ids... (one XACK per shard that has any) */
int persist_stream_ack(struct rds *r, const char *const *ids, size_t n);

/* XDEL KEY_MQ ids... (likewise) */
int persist_stream_del(struct rds *r, const char *const *ids, size_t n);

/* The streams' names for a log line. */
void persist_stream_describe(char *buf, size_t len);

/* XCLAIM KEY_MQ MQ_GROUP consumer 0 <the last entry of rd> JUSTID: take our own pending entry again, its
 * delivery count unchanged. A write that Redis propagates after the read that delivered rd's entries, so a
 * WAIT after it covers the entries themselves. WAIT counts the client's own writes, and a blocked
 * XREADGROUP is served by another client's XADD: whether its propagation counts as the reader's is not
 * documented (here, once, a WAIT right after one answered at once while the only replica was stopped). */
int persist_stream_fence(struct rds *r, const char *consumer, const struct persist_read *rd);

/* How many times entry id has been delivered (XPENDING), 0 when it is not pending. */
int persist_stream_deliveries(struct rds *r, const char *id, long long *count);

/* Move entry id to KEY_MQ_DEAD (fields MQ_F_DEAD_REASON, MQ_F_DEAD_ID, then the original fields as they
 * were) and XACK it, atomically (one script, EVAL): a crash never leaves it in both places or in neither. */
int persist_stream_dead_letter(struct rds *r, const char *id, const redisReply *fields, const char *reason);

/* Remove consumers of the group other than self that have nothing pending and have not read for longer
 * than idle_ms (workers that are gone). Returns MP_OK and the number removed in *removed. */
int persist_stream_forget_consumers(struct rds *r, const char *self, long long idle_ms, int *removed);

/* What the stream holds, for trimming and for the lag gauges. */
struct persist_stream_state {
    long long length;   /* XLEN */
    long long groups;   /* consumer groups on the stream */
    long long pending;  /* entries of MQ_GROUP delivered but not acked */
    int have_all_floor; /* every group is done with the entries below all_floor */
    struct persist_sid all_floor;
    int have_own_floor; /* MQ_GROUP is done with (has stored) the entries below own_floor */
    struct persist_sid own_floor;
    int64_t lag_ms; /* age of the oldest entry MQ_GROUP has not finished; 0 when none */
};

/* Fill *st (XINFO GROUPS, XPENDING per group, XLEN, XRANGE, TIME). A missing stream is MP_OK with
 * everything 0. */
int persist_stream_state(struct rds *r, struct persist_stream_state *st);

/* Trim the stream (see the doc of persist.stream_maxlen in shared/config_table.c):
 *   1. XTRIM MINID all_floor: drop what every group has acked;
 *   2. if it is still longer than maxlen, XTRIM MINID own_floor: drop what magpie-persist has stored even
 *      though other groups still want it.
 * Entries magpie-persist has not stored are never trimmed. *trimmed gets the number of entries removed. */
int persist_stream_trim(struct rds *r, const struct persist_stream_state *st, long long maxlen,
                        long long *trimmed);

#endif
