/* id.h -- 64-bit server message ids: | 41 bits ms since ID_EPOCH_MS | 10 bits node | 12 bits sequence |.
 *
 * Ids from one generator strictly increase, so they order a node's messages even when the wall clock steps
 * back (the generator then keeps counting from the last millisecond it used) or when more than 4096 ids are
 * taken in one millisecond (it borrows the next millisecond). Ids are positive and fit in a signed 64-bit
 * integer (MySQL BIGINT); clients get them as decimal strings, since JavaScript numbers hold only 53 bits.
 * A generator is not thread-safe: one per thread (magpie-push has one thread).
 */
#ifndef MAGPIE_ID_H
#define MAGPIE_ID_H

#include <stdint.h>

#define ID_EPOCH_MS 1704067200000LL /* 2024-01-01T00:00:00Z; 41 bits of ms last until 2093 */
#define ID_NODE_BITS 10
#define ID_SEQ_BITS 12
#define ID_MAX_NODE ((1 << ID_NODE_BITS) - 1)

struct id_gen {
    int node;
    int64_t last_ms; /* ms since ID_EPOCH_MS of the last id */
    int seq;
};

/* Set up a generator for node (0..ID_MAX_NODE). Returns MP_OK or MP_EINVAL. */
int id_init(struct id_gen *g, int node);

/* The next id, for the current time. */
int64_t id_next(struct id_gen *g);

/* The next id as if the clock read now_ms (ms since the Unix epoch); for tests. */
int64_t id_next_at(struct id_gen *g, int64_t now_ms);

/* The parts of an id. */
int64_t id_time_ms(int64_t id); /* ms since the Unix epoch */
int id_node(int64_t id);
int id_seq(int64_t id);

#endif
