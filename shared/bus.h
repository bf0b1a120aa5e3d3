/* bus.h -- what travels over Redis pub/sub between magpie-http and the magpie-push nodes (channels in
 * keys.h). Writers and readers use these names; a reader ignores unknown fields and logs (at debug) and
 * drops a payload it cannot parse.
 *
 * CHAN_CONTROL ("mp:ctl"), read by every push node (and by every magpie-http for logout). Payload: one JSON
 * object whose "cmd" says what to do.
 *   {"cmd":"kick",    "uid":N}                  every connection of uid gets C (msg "kicked"), then is closed
 *   {"cmd":"logout",  "uid":N, "sid":"<jti>", "exp":S}
 *                                               connections of uid opened with a ticket minted from the login
 *                                               token whose jti is sid get C (msg "logout"), then are closed;
 *                                               each magpie-http adds sid to its copy of the revoked tokens
 *                                               until exp (unix s; http/revoked.h)
 *   {"cmd":"deliver", "uid":N, "packet":{...}}  the server packet (SPEC §4, e.g. an "s" system message) is sent
 *                                               to every connection of uid
 *
 * CHAN_NODE ("mp:{<shard>}:node:<id>:in"): chat deliveries for the connections one node holds, one channel
 * per shard (keys.h's layout: the channel is in the slot of its shard's keys), on SHARDED pub/sub (SPUBLISH
 * / SSUBSCRIBE, Redis 7; SPEC §7), as CHAN_ROOM below: on a Redis Cluster a delivery travels only through
 * the master of its shard's slot. Written by the scripts of that shard (magpie-push's t, i, g and R;
 * magpie-http's group changes), or after a WAIT by the daemon that ran the script, on the channel the
 * script returned; each magpie-push subscribes its channel of every shard. A PUBLISH to it reaches nobody,
 * so every writer and reader must use the sharded commands: a rolling upgrade from the classic
 * "mp:node:<id>:in" must upgrade every magpie-push and magpie-http together (old and new do not hear each
 * other's deliveries). Its payload format is private to push/ (push/chatpkt.h).
 * CHAN_ROOM ("mp:room:<room id>"): one room broadcast, on a SHARDED channel (SPUBLISH / SSUBSCRIBE, Redis
 * 7; SPEC §7): on a Redis Cluster it travels only through the master serving the channel's slot instead of
 * being copied to every node of the cluster as a classic PUBLISH is, and the rooms spread over the masters.
 * Every writer and reader of it must use the sharded commands (a PUBLISH would reach nobody). Payload: a serialized BroadcastRoomReq (room.proto)
 * carrying one message: roomID, msgLv, data = the message bytes (not yet merged; each node merges for its
 * own members). Written by magpie-http's POST /msg and by magpie-push for a member's MESSAGE (msgLv 0);
 * read by every push node with members in the room, the sender's included, so all see one order.
 */
#ifndef MAGPIE_BUS_H
#define MAGPIE_BUS_H

#define BUS_CMD_KICK "kick"
#define BUS_CMD_LOGOUT "logout"
#define BUS_CMD_DELIVER "deliver"

#endif
