/* persist_seq.h -- magpie-persist puts the seq counters and the groups back into a Redis that lost them
 * (design: push/timeline.h, push/group.h; keys: KEY_SEQ, KEY_SEQ_RESTORED, KEY_GROUP_NEXT, KEY_GROUP,
 * KEY_GROUP_MEMBERS, KEY_USER_GROUPS in shared/keys.h).
 *
 * While KEY_SEQ_RESTORED is missing (a new Redis, or one that was replaced or flushed) the send scripts
 * refuse messages to or from users without a counter. persist_seq_restore raises each user's KEY_SEQ to the
 * highest seq MySQL holds for that user (never lowers one), KEY_GROUP_NEXT to the highest group id, puts
 * back every group Redis lacks or holds at an older version (persist_seq.c says exactly what), then sets
 * KEY_SEQ_RESTORED; messages flow again. On an empty database that is a few queries and one SET.
 */
#ifndef MAGPIE_PERSIST_SEQ_H
#define MAGPIE_PERSIST_SEQ_H

#include "db.h"
#include "rds.h"

/* Restore the counters and groups if KEY_SEQ_RESTORED is missing. MP_OK (nothing to do, or done: *restored
 * says how many users' counters were looked at, -1 when nothing was needed), or MP_EAGAIN when Redis or MySQL failed (try
 * again later; what was raised stays raised, which is harmless). */
int persist_seq_restore(struct rds *r, struct db *d, long long *restored);

#endif
