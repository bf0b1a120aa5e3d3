/* persist_seq.h -- magpie-persist puts the seq counters back into a Redis that lost them (design:
 * push/timeline.h; keys: KEY_SEQ, KEY_SEQ_RESTORED in shared/keys.h).
 *
 * While KEY_SEQ_RESTORED is missing (a new Redis, or one that was replaced or flushed) the send script
 * refuses messages to or from users without a counter. persist_seq_restore raises each user's KEY_SEQ to the
 * highest seq MySQL holds for that user (never lowers one), then sets KEY_SEQ_RESTORED; messages flow again.
 * On an empty database that is one query and one SET.
 */
#ifndef MAGPIE_PERSIST_SEQ_H
#define MAGPIE_PERSIST_SEQ_H

#include "db.h"
#include "rds.h"

/* Restore the counters if KEY_SEQ_RESTORED is missing. MP_OK (nothing to do, or done: *restored says how
 * many counters were raised, -1 when nothing was needed), or MP_EAGAIN when Redis or MySQL failed (try
 * again later; what was raised stays raised, which is harmless). */
int persist_seq_restore(struct rds *r, struct db *d, long long *restored);

#endif
