/* timeline.h -- every user's timeline: the numbered list of the stored messages the user sent or received
 * (SPEC §4.1), and Y, the sync that serves it. This comment is the design; the keys are in shared/keys.h.
 *
 * Who assigns seq. The send script (chat_send.c) does, in the same Redis script that accepts the message:
 * INCR KEY_SEQ of the sender and of the recipient, then XADD the message (with both seqs) to the chat stream,
 * one entry "<seq>-0" {m: mid} to each user's KEY_TL, the packet to KEY_MSG, and "<mid> <seq>" to the dedup
 * key. A Redis script runs whole or not at all, and Redis writes its effects to the AOF as one MULTI/EXEC
 * (a torn tail is dropped whole when Redis loads it), so after any crash or restart a seq exists exactly when
 * its message does: no gaps, and a seq is never handed out twice (within the AOF setting: with appendfsync
 * everysec a Redis crash can lose the last second of acked messages together with their seqs, and those
 * seqs are then given again -- SPEC §6's documented window; `always` loses none). A Redis that lost all
 * (replaced, flushed) has lost KEY_SEQ_RESTORED too: magpie-persist then raises every counter to the highest
 * seq MySQL holds for its user (persist_seq.c) before it sets that key again, and until then a message to or
 * from a user without a counter gets E "temporarily unavailable, retry" -- so no seq is given twice, and no
 * message overtakes another by a detour. (A Redis restored from an old backup keeps the key with older
 * counters: after such a restore, DEL every shard's KEY_SEQ_RESTORED (mp:{<shard>}:seq:restored) and
 * magpie-persist repairs them the same way.) What can refuse a message in the script (the friend check, a
 * missing counter) does so before the first write, and a failed timeline write undoes the writes before it,
 * so a refused message (E) takes no seq. A retry of the same (from, id) finds the dedup key and gets the
 * first mid and seq back. A delivery carries both seqs to the other nodes ("<fseq> <tseq> " ahead of
 * chatpkt_delivery's payload); each connection gets the packet with its own user's seq spliced in
 * (packet_with_seq, shared/packet.h).
 *
 * Where each entry lives.
 *   - Redis, recent: KEY_TL holds a contiguous run of a user's latest seqs (about timeline.max_entries of
 *     them; the whole key goes after timeline.keep_s without a write), KEY_MSG each message's packet for
 *     timeline.keep_s. Y for a device that was away a little is one Redis script.
 *   - MySQL, everything: magpie-persist writes each message with from_seq and to_seq (sql/003), normally
 *     within milliseconds, and each group entry's place in the other members' timelines as timeline_chunks
 *     rows (sql/004, push/group.h); the part of a timeline that left Redis is read from there.
 * Y {after, limit} answers the entries after `after`, oldest first, as one contiguous run: the Redis
 * script returns the user's latest seq and KEY_TL's entries after `after` with their packets. When Redis
 * has the run from after + 1 with every packet, that is the answer (no MySQL). Otherwise a pool thread
 * (dbpool.h) reads the missing seqs from MySQL and the two parts are joined. The answer stops at the first
 * seq neither has (an entry acked but not in MySQL yet whose Redis copy is gone: only when magpie-persist
 * has been down for longer than Redis keeps entries), with "more": true, so a client never skips one; when
 * no entry at all can be served yet, the client gets E "temporarily unavailable, retry".
 *
 * What happens on each failure.
 *   - Redis down: sends get E (no seq is taken), Y gets E; both are retried by the client.
 *   - A push node killed: a message acked by it is in the stream and the timelines already.
 *   - magpie-persist down: Y is served from Redis; entries wait in the stream (never trimmed unstored).
 *   - MySQL down: Y of recent entries works; Y that needs MySQL gets E "temporarily unavailable, retry".
 *
 * Groups write one message into every member's timeline the same way (push/group.h): one INCR and one KEY_TL
 * entry per member in the group send script, one stored message; STOMP and MQTT sessions resume from a seq
 * with the same Y.
 */
#ifndef PUSH_TIMELINE_H
#define PUSH_TIMELINE_H

#include "chat.h"

/* Register the Y script (before rdsa_start). */
void timeline_init(void);

/* Y: {"after": seq, "limit"?: n}. */
void timeline_sync(struct conn *c, const struct chatpkt *p);

#endif
