/* stream.h -- the fields of one entry of the chat stream KEY_MQ (keys.h): written by magpie-push
 * (XADD, before it acks the client with A), read by magpie-persist (XREADGROUP, then INSERT into the
 * messages table). Both sides use these names and nothing else.
 *
 * Every value is a string (Redis stream values are); numbers are decimal without sign or leading zeros.
 * The writer adds entries with XADD KEY_MQ * ... : an id Redis chooses (its time in ms, which the
 * worker's lag gauge reads) and no MAXLEN (only magpie-persist trims, and only what is stored).
 * magpie-persist's rules for each field, and what it does with an entry that breaks them (the dead-letter
 * stream), are in push/persist_entry.h; unknown fields are ignored, so a field can be added without
 * breaking older workers, while changing the meaning of one needs a new MQ_FORMAT_VERSION.
 */
#ifndef MAGPIE_STREAM_H
#define MAGPIE_STREAM_H

#define MQ_FORMAT_VERSION "1"

#define MQ_F_VERSION "v"    /* format version: MQ_FORMAT_VERSION; an entry of another version is dead-lettered */
#define MQ_F_MID "mid"      /* server message id (id.h), 1..2^63-1; messages.id */
#define MQ_F_FROM "from"    /* sender uid (> 0); messages.from_uid */
#define MQ_F_TO "to"        /* recipient uid (> 0, != from); messages.to_uid */
#define MQ_F_CID "cid"      /* the client's packet id, 1..64 bytes; messages.client_id; (from, cid) is unique */
#define MQ_F_TYPE "type"    /* one letter: "t" text, "i" image id, "g" group text, "s" group event, or
                             * MQ_TYPE_GROUP_STATE; messages.type */
#define MQ_F_BODY "body"    /* the message, UTF-8, 0..4096 bytes (t: at most 1023 characters); messages.body */
#define MQ_F_TS "ts"        /* server time of acceptance in ms since the epoch; messages.created_ms */
#define MQ_F_FROM_SEQ "fseq" /* the message's seq in the sender's timeline (push/timeline.h); messages.from_seq.
                              * Optional: entries written before timelines have none (NULL) */
#define MQ_F_TO_SEQ "tseq"   /* its seq in the recipient's timeline; messages.to_seq. Optional likewise.
                              * A t or i between users of two shards is written as two entries with the same
                              * mid and every other field (push/chat_send.c's split): the sender's half, in
                              * the sender's shard's stream, with fseq only; the recipient's half, in the
                              * recipient's, with tseq only. magpie-persist stores one row from whichever
                              * comes first and fills the other seq from the other (persist_store.h). */


/* Group entries (push/group.h). A g message or an s group event: the fields above with MQ_F_TO = the group id
 * and MQ_F_GROUP the same id; for an event MQ_F_FROM is 0 (the server), MQ_F_CID the mid (decimal) and
 * MQ_F_BODY the event object's JSON; MQ_F_FROM_SEQ is the sender's seq (g only). One messages row each. */
#define MQ_F_GROUP "group" /* group id (> 0): marks a group entry */
#define MQ_F_GROUP_N "gn"  /* g: the message's number in its group (1, 2, ...); messages.group_seq */
#define MQ_F_SEQS "seqs"   /* "<uid>:<seq> <uid>:<seq> ...": the entry's seq in every other member's timeline
                            * (the sender's is MQ_F_FROM_SEQ); timeline_chunks */
/* A group's state after a change, type "G": MQ_F_GROUP, MQ_F_TS (the change's time) and these; magpie-persist
 * writes it to groups and group_members when MQ_F_VER is above what MySQL has. No mid, from, to, cid, body. */
#define MQ_F_NAME "name"       /* 1..64 characters */
#define MQ_F_OWNER "owner"     /* uid */
#define MQ_F_CREATED "created" /* ms */
#define MQ_F_VER "ver"         /* KEY_GROUP's GROUP_F_VER */
#define MQ_F_MEMBERS "members" /* "<uid>:<role>:<join order>:<joined ms> ..." (role o, a or m) */
#define MQ_F_DELETED "deleted" /* "1": the group was deleted (then name, owner, members may be absent) */
#define MQ_TYPE_GROUP_STATE "G"

#define MQ_MAX_CID 64
#define MQ_MAX_BODY 4096

/* An entry of the dead-letter stream KEY_MQ_DEAD is these two fields, then the original entry's fields and
 * values exactly as they were (in their order, repeats included), so it can be inspected and, once the
 * cause is fixed, added to KEY_MQ again. */
#define MQ_F_DEAD_REASON "reason" /* why it failed, one line */
#define MQ_F_DEAD_ID "orig_id"    /* the entry's id in KEY_MQ */

#endif
