/* persist_store.h -- write a batch of parsed stream entries to MySQL in one transaction: the messages rows,
 * then the timeline_chunks rows of the batch's group entries, then its group states.
 *
 * How (measured against a prepared statement executed per row: bench/results/persist-insert-variants.md):
 * multi-row INSERT statements of up to PERSIST_SQL_CHUNK_BYTES each, inside START TRANSACTION .. COMMIT.
 * Each statement ends in ON DUPLICATE KEY UPDATE id = id, so a row whose (from_uid, client_id) is already
 * stored is skipped (that is what makes a re-delivered entry a no-op), while every other error -- a value
 * MySQL refuses -- stays an error. INSERT IGNORE is not used because it also turns those errors into
 * warnings and stores a truncated or converted row instead.
 *
 * The two halves of a split t or i (push/chat_send.c: sender and recipient in two shards; shared/stream.h)
 * carry the same mid and fields, one with from_seq only, the other with to_seq only: whichever comes first
 * is inserted; the second is skipped by the INSERT as a duplicate (counted in duplicates) and its seq is then
 * filled in by one UPDATE per statement's worth of halves, `seq = COALESCE(seq, CASE id WHEN mid THEN seq
 * ... END)`, only into the row of that very mid (not one stored under another mid for the same (from_uid,
 * client_id)), and only where it is still NULL, so halves replayed in any order, in one batch or two, end as
 * one row with both seqs. A row whose second half has not come yet has one seq NULL: Y from MySQL stops
 * before that seq (push/timeline.h), as for an entry not yet stored.
 * When a statement fails because of one of its rows, the rows of that statement are inserted one by one
 * (InnoDB undoes only the failed statement, the transaction goes on), so only the bad rows are marked
 * rejected and the others are stored. When fewer rows were inserted than sent, one more query checks that
 * each skipped row really is stored under its (from_uid, client_id): a row skipped only because its id
 * (mid) belongs to another message is marked rejected instead of being lost silently.
 *
 * Groups (design: push/group.h; tables: sql/004_groups.sql). A g or s entry is one messages row like a 1:1
 * message (to_uid = group_id = the group, from_seq = a g's sender's seq, group_seq = a g's number), so a
 * re-delivered one is skipped the same way. Where it sits in the other members' timelines (its seqs list)
 * goes to timeline_chunks: after the messages rows, the positions of every stored g and s of the batch are
 * sorted by (uid, seq) and written as one row per member (split at TL_CHUNK_SPAN, timeline_chunks.h) in
 * multi-row INSERTs, so 200 group messages a second to 500 members cost a few hundred rows per batch, not
 * 100,000. A row refused or rejected leaves no positions (its entry is retried or dead-lettered whole). A
 * group state entry (G) is applied last, one group at a time under a savepoint: only the batch's highest ver
 * of each group, and only when it is above the ver of the group's chat_groups row (read FOR UPDATE), which it
 * then replaces (name, owner, created, ver; deleted sets deleted_ms) together with all of the group's
 * group_members rows (none when deleted). Entries of one group may so arrive in any order, twice, or from
 * two workers at once, and MySQL ends at the newest state.
 *
 * The session runs with PERSIST_SQL_MODE (set on every new connection, see persist_store_prepare), so
 * MySQL refuses bad values instead of storing something else whatever the server's global sql_mode is.
 */
#ifndef MAGPIE_PERSIST_STORE_H
#define MAGPIE_PERSIST_STORE_H

#include "db.h"
#include "persist_entry.h"

#include <stddef.h>

/* Largest INSERT statement sent at once: far below max_allowed_packet (16 MiB in MariaDB 10.11, 64 MiB in
 * MySQL 8, 4 MiB in MySQL 5.7) and big enough that the per-statement cost does not matter. */
#define PERSIST_SQL_CHUNK_BYTES (1024 * 1024)

/* Strict, with backslash escapes (no NO_BACKSLASH_ESCAPES) and `quoted` identifiers (no ANSI_QUOTES). */
#define PERSIST_SQL_MODE "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"

struct persist_row {
    struct persist_msg msg; /* in */
    int64_t stored_mid;     /* out: the id of the messages row a message is stored as: msg.mid, or the first
                             * copy's when (from, cid) was stored before under another mid */
    int rejected;           /* out: MySQL refused this row; why tells why */
    unsigned err;           /* out: the MySQL error number of a rejected row (0 when it is not MySQL's) */
    char why[PERSIST_WHY_MAX];
};

struct persist_store_result {
    size_t inserted;           /* messages rows stored by this call */
    size_t duplicates;         /* messages rows already stored before (same from_uid and client_id) */
    size_t chunks;             /* timeline_chunks rows written (new or added to) */
    size_t states;             /* group states (G) applied */
    size_t stale;              /* group states skipped: MySQL or the batch had a newer (or the same) ver */
    size_t rejected;           /* rows marked rejected */
    unsigned err;              /* MP_ERR: MySQL's error number */
    char why[PERSIST_WHY_MAX]; /* MP_EAGAIN, MP_ERR: what went wrong */
};

/* Have every new connection of d set PERSIST_SQL_MODE. Call after db_init. */
void persist_store_prepare(struct db *d);

/* Store rows[0..n) in one transaction: the messages rows into table (a trusted identifier such as
 * "messages"), the rest into the group tables.
 * Returns:
 *   MP_OK      committed. Every row is stored (inserted now or before; a G applied or stale) except those
 *              marked rejected.
 *   MP_EAGAIN  the connection failed or MySQL is unavailable (the connection is dropped, db.c logged it).
 *              Whether the commit happened is unknown: store the same rows again later (that is harmless).
 *   MP_ERR     MySQL refused the batch as a whole (no such table, no privilege, read-only, deadlock ...):
 *              rolled back, res->err and res->why say why. Try again later.
 *   MP_ENOMEM  out of memory; rolled back.
 * res is always filled. */
int persist_store(struct db *d, const char *table, struct persist_row **rows, size_t n,
                  struct persist_store_result *res);

/* Is a MySQL error a clash with another transaction (deadlock, lock wait timeout) that retrying the batch
 * resolves? Two workers write the same rows at once only after one took over entries the other still held. */
int persist_store_is_conflict(unsigned err);

/* Is a MySQL error about one row's values (the row can never be stored as it is), rather than about the
 * server, the table or the transaction? */
int persist_store_is_row_error(unsigned err);

#endif
