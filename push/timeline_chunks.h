/* timeline_chunks.h -- the timeline_chunks table (sql/004_groups.sql): where the group entries of a user's
 * timeline are stored, written by magpie-persist (persist_store.c), read by Y (timeline.c) and by the seq
 * restore (persist_seq.c).
 *
 * A row is (uid, first_seq, last_seq, entries): entries is "<seq>:<mid>" items separated by single spaces,
 * every seq in first_seq..last_seq, and first_seq and last_seq are items of it. magpie-persist writes one
 * row per user per batch (the positions the batch's group entries took in that user's timeline, in seq
 * order), split so that last_seq - first_seq < TL_CHUNK_SPAN. So a row holding a seq above S has
 * first_seq > S - TL_CHUNK_SPAN, and Y finds every row it needs in a bounded range of the primary key
 * however long the timeline is. A stream entry stored twice (a re-delivery) writes a row with the same
 * (uid, first_seq) again: the second one's entries are appended to the first's unless they are already in
 * it, so a row may then hold a seq twice or out of order; readers sort and read each seq once.
 */
#ifndef PUSH_TIMELINE_CHUNKS_H
#define PUSH_TIMELINE_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#define TL_CHUNKS_TABLE "timeline_chunks"

/* A row spans fewer seqs than this. A batch of persist.batch entries (500 by default) gives one user at most
 * that many seqs, so rows are split only for very large batches; Y reads up to this many rows' keys more. */
#define TL_CHUNK_SPAN 1000

/* The next "<seq>:<mid>" item of entries from *at (start at 0): 1 with *seq and *mid set and *at moved past
 * it, or 0 at the end. Anything else (MySQL's copy should hold nothing else) ends the walk too. */
static inline int tl_chunk_next(const char *s, size_t len, size_t *at, int64_t *seq, int64_t *mid)
{
    size_t i = *at;
    uint64_t v[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        size_t b = i;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - b < 19)
            v[k] = v[k] * 10 + (uint64_t)(s[i++] - '0');
        if (i == b || v[k] > (uint64_t)INT64_MAX || (k == 0 && (i == len || s[i] != ':')) ||
            (k == 1 && i < len && s[i] != ' '))
            return 0;
        i++; /* past ':' or ' ' (or one past the end, which the next call sees as the end) */
    }
    *seq = (int64_t)v[0];
    *mid = (int64_t)v[1];
    *at = i;
    return 1;
}

#endif
