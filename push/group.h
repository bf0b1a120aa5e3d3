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
