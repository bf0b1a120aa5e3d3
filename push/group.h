/* group.h -- groups (SPEC §4.2): stored conversations with a member list, on the timelines of timeline.h.
 * This comment is the design; the keys are in shared/keys.h, the stream fields in shared/stream.h, the Lua
 * every group script shares in shared/group_lua.h, the tables in sql/004_groups.sql.
 *
 * Who decides membership, and the order of sends and changes. Redis: a group is KEY_GROUP (name, owner,
 * counters) and KEY_GROUP_MEMBERS (uid -> role, join order, join time), and every change of them is one
 * Redis script run by magpie-http (http/groups.c), which checks everything first (who may, limits,
 * duplicates, unknown users: MySQL's users table is read before the script) and writes nothing when one
 * check fails -- so a bad request is never half-applied. A g is one script too (group_send.c) that reads
 * KEY_GROUP_MEMBERS and writes the message into the timeline of exactly those members. Redis runs scripts
 * one at a time, so the order is simply the order Redis ran them in: a message is in a member's timeline iff
 * the member was in KEY_GROUP_MEMBERS when its script ran. A member removed after that still has it; one
 * added after it never gets it; the s event of a change sits at one point of every timeline it is in, and
 * the messages are on either side of it.
 *
 * A group entry (a g message, or an s event) in the timelines: one mid, one KEY_MSG (packet, the group, a g's
 * number in the group: MSG_F_GROUP_N), and in each member's KEY_TL one entry with the member's next seq
 * (mp_fanout: INCR and XADD per member, so 500 members cost 500 of each; no per-member conversation write but
 * a ZADD to KEY_CONVS, since the group's latest mid and count live once in KEY_GROUP). s events go to every
 * member after the change, and to the removed ones too (member_removed, group_deleted), so every member
 * learns of it in order. A g message's sender gets it in its timeline like any member; its seq is in the A.
 *
 * Delivery. The script publishes "g <ts>\n<uid> <seq> ...\n<packet>" (GROUP_DELIVERY_HEAD) to every live
 * node but the sender's (magpie-http's changes: to every live node), and returns the (uid, seq) pairs, so
 * the sender's node delivers to its own connections from the reply -- the order Redis ran the scripts in, as
 * for 1:1 messages. Each node gives every local connection of each listed uid the packet with that uid's seq
 * (packet_with_seq); the connection that sent the g gets A instead.
 *
 * Storage. The script XADDs one stream entry per group entry (stream.h: MQ_F_GROUP, MQ_F_SEQS with every
 * other member's seq), and every change adds a group state entry (type G: name, owner, all members, ver).
 * magpie-persist stores one messages row per group entry (to_uid = group_id = the group, from_seq = the
 * sender's seq), one timeline_chunks row per member per batch for the other members' seqs, and applies a
 * state entry to chat_groups / group_members when its ver is newer. Y reads the part of a timeline that left
 * Redis from messages (1:1 and one's own g: from_seq / to_seq) and timeline_chunks (the rest), merged by
 * seq (timeline.c).
 *
 * R {group, mid}: read_lua's group branch: the reader must be a member or have been one (frozen
 * conversation fields), mid a g of that group (KEY_MSG, or MySQL's group_seq when Redis no longer has it);
 * the mark moves forward only, r goes to the reader's other connections; groups send no read receipts.
 * Sending a g moves the sender's mark to it. GET /conversations: a "g<gid>" entry reads the group's latest
 * mid and count from KEY_GROUP while the caller is a member, the frozen :l / :n after.
 *
 * Ids. Group ids are small integers from KEY_GROUP_NEXT (INCR), so clients can use them as numbers like uids.
 * s events need mids minted outside any push node: GROUP_IDGEN_LUA mints them in Redis as node ID_MAX_NODE,
 * which push.node_id may therefore not use.
 *
 * The split (issue 20, SPEC §7: a Redis Cluster runs a script only when every key it touches is in one slot;
 * the layout is shared/keys.h's). At redis.stream_shards = 1 a g is gsend_lua, one script, as above. At S > 1
 * the node runs gsend_g_lua in the group's shard, which does the whole g as gsend_lua does (same keys, same
 * replies, same cost) when the sender and every member are in the group's shard, and otherwise runs a g in
 * three steps, each script in one shard's slot:
 *   1. gsend_g_lua, the group's part, in the group's shard: KEY_GSND of (gid, from, cid) (hit: a retry, go
 *      on with the first's mid, number, members and content; with the sender in the group's shard, its
 *      dedup key hit without KEY_GSND is a retry of a one-script g: A as before), the membership check,
 *      GROUP_F_COUNT + 1 (the message's number), GROUP_F_LAST, KEY_MSG in the group's shard, then KEY_GSND =
 *      {mid, number, the members' uids, ts, body, packet}, expiring when the sender's dedup key of the
 *      message does (ts + push.dedup_ttl_s, the same absolute time). Nothing of the members.
 *   2. gsend_p_lua, one per shard of the members, all at once, once step 1 answered (and was WAITed for):
 *      KEY_GRCV of (shard, mid) (hit: it ran before, return its seqs, write nothing), the counter check of
 *      the shard's members, mp_fanout (their seqs, timelines, KEY_CONVS), the shard's KEY_MSG copy, in the
 *      sender's shard the sender's read mark and dedup key ("<mid> <seq>"), KEY_GRCV = the shard's "<uid>
 *      <seq> ...", the delivery of those members ("g <ts>\n<their pairs>\n<packet>", group_lua.h's
 *      mp_publish to every live node but this one: the script of the members' shard publishes), and their
 *      offline notifications (KEY_NOTIFY of that shard). This node delivers to its own connections of the
 *      shard's members when the part wrote now (and its WAIT answered).
 *   3. gsend_f_lua, once every part answered: the stream entry in the group's shard's KEY_MQ, with the
 *      sender's seq and every other member's (MQ_F_SEQS): the same entry as gsend_lua's, so magpie-persist
 *      stores it as before (one messages row, timeline_chunks); KEY_GSND's field x makes it once.
 * Then the A {mid, the sender's seq} (a retry's: the first's), after the WAIT of step 3: with
 * redis.min_replicas_acked every step is WAITed for on the master it wrote to (rdsa_wait in its reply), so
 * an A still means every part of the message is on enough replicas; a retry that finds KEY_GSND, KEY_GRCV or
 * x writes their expiry again, so its WAIT covers the first attempt's writes.
 * Failures. Step 1 refused (not a member, no such group): E, nothing written. A part refused or unanswered
 * (Redis down, a shard's counters not restored yet, a timeline ahead of its counter, this node killed):
 * E (or no answer) once every part answered; what the other parts wrote stays: their members have the
 * message (delivered, in their timelines, notified), the failed shard's members do not, the stream has no
 * entry yet. The client retries unacked sends (SPEC §4): the retry finds KEY_GSND in step 1 (the first's mid
 * and content, and the members of the first: one added since does not get it, one removed since does, as
 * when the first had run whole), the parts that ran find KEY_GRCV and write nothing, the failed one runs now
 * (its members get the message once), step 3 writes the stream entry once: A with the first mid and the
 * sender's first seq; nothing is delivered or stored twice (test_group_send_split.py). Known gap, as for a
 * split t (push/chat_send.c): a g whose client never retries after a failed part stays without its missing
 * members' copies and without its stream entry (MySQL never gets it; the members that have it keep it in
 * Redis for timeline.keep_s); it was never acked. KEY_GSND outlives nothing it must not: it expires with the
 * dedup key, after which a retry is a new message, as for t.
 * Order. Parts of one message run in parallel in several shards; the messages of one sender to one group
 * keep their order in every timeline in the normal case (the node sends each message's parts in the order
 * of the step 1 replies, one connection per master), and every member's seqs are gap-free; but, unlike one
 * script, two g's to a group from two nodes may be in different orders in two members' timelines of
 * different shards, and an s event of a change (still one script) may fall between the parts of a g.
 * magpie-http's change scripts and GET /groups are split the same way (http/groups.c, "The split": the
 * group's part, one member part per shard idempotent through KEY_GRCV, the s events' stream entries; a part
 * that fails is completed by the next request about the group). magpie-persist's group restore is split at
 * S > 1 (persist_seq.c: the group's keys in a script, the members' KEY_USER_GROUPS one command each).
 *
 * What happens on each failure.
 *   - Redis down: g gets E (nothing written), membership changes answer "unavailable"; clients retry (a g
 *     retry is deduplicated by (from, id) like t).
 *   - A refused g (not a member, unknown group) is E "not a member" and takes no seq.
 *   - A push node killed: an acked g is in the stream and every member's timeline; devices on other nodes got
 *     it, the dead node's devices reconnect and Y.
 *   - magpie-persist down: entries wait in the stream; Y is served from Redis.
 *   - Redis lost everything: magpie-persist restores the seq counters (from messages and timeline_chunks),
 *     KEY_GROUP_NEXT and every group (chat_groups, group_members, the group's count and last mid) before it
 *     sets KEY_SEQ_RESTORED; until then g and changes touching a user without a counter are refused.
 */
#ifndef PUSH_GROUP_H
#define PUSH_GROUP_H

#include "chat.h"

/* Register the g script (before rdsa_start). */
void group_send_init(void);

/* g: {"id", "to": group id, "type": "g", "msg": text}. */
void group_send(struct conn *c, const struct chatpkt *p);

/* A CHAN_NODE payload that starts with GROUP_DELIVERY_HEAD: deliver it to this node's connections. Returns 0,
 * or -1 when it is not a well-formed group delivery (logged at debug, dropped). */
int group_deliver_payload(const char *payload, size_t len);

#endif
