/* keys.h -- every Redis key, channel and stream Magpie uses, named once, each with its type and lifetime.
 *
 * All names start with "mp:" so Magpie can share a Redis with other applications. Formats take printf
 * arguments as shown (uid and node ids as %lld / %d, tokens and mobiles as %s). A TTL written as a config
 * key means the key is set with EXPIRE of that config value.
 *
 * The layout: shards and hash tags (SPEC §7, issue 20). This comment owns it.
 *   - Users are split into S = redis.stream_shards shards: shard(uid) = uid mod S, and a group's shard is
 *     gid mod S (key_shard below). S never changes once data exists (every key below would move):
 *     KEY_SHARDS records it at the first start and every daemon refuses to start when its config says
 *     another S (keys_check_shards).
 *   - Every per-user and per-group key carries the hash tag of its shard, spelled exactly "{<shard>}" in
 *     decimal right after "mp:" (KEY_TAGGED: "mp:{3}:seq:42"), so everything of the users of one shard,
 *     plus that shard's streams, hashes to one Redis Cluster slot. Per user: KEY_FRIENDS, KEY_PRESENCE,
 *     KEY_DEDUP, KEY_SEQ, KEY_TL, KEY_CONVS, KEY_CONV, KEY_STOMP_ACKED, KEY_MQTT_SESSION, KEY_USER_GROUPS;
 *     per group: KEY_GROUP, KEY_GROUP_MEMBERS.
 *   - Keys read by message id (KEY_MSG) live in the reader's shard: a message is written once into every
 *     shard that reads it (the sender's and the recipient's for t/i; each member's shard for a group
 *     entry); with S = 1 that is one copy, as before. A split t/i (two shards) writes each copy with its
 *     reader's fields only (the sender's: MSG_F_FROM_SEQ, MSG_F_FROM_IN; the recipient's: MSG_F_TO_*),
 *     which is all R reads of it (push/chat_read.c reads the reader's role's fields).
 *   - A split t/i writes two stream entries (one per shard, the same mid, each with one seq: shared/
 *     stream.h) and KEY_RCV in the recipient's shard.
 *   - Per shard (tag of the shard): the chat stream KEY_MQ and its dead letters (a message goes to the
 *     stream of the sender's shard, a group entry to its group's: the slot of the script that writes it;
 *     magpie-persist reads every shard's stream, several instances sharing them through MQ_GROUP); the
 *     notification stream KEY_NOTIFY and its dead letters (written by the send scripts, so the same rule;
 *     magpie-notify reads every shard's); KEY_SEQ_RESTORED (read inside the send scripts next to the
 *     users' counters, so each shard has its own, all set by magpie-persist's restore).
 *   - Per shard and node: the delivery channel CHAN_NODE (sharded pub/sub, "mp:{<shard>}:node:<id>:in"),
 *     published only by scripts of that shard (and by the daemon after their WAIT), so a script's
 *     SPUBLISH is in its own slot. The rule: a delivery to user U's connections is published by a script
 *     of U's shard, so U's deliveries keep their order on one channel (t/i: send, send_s, send_r; R: the
 *     reader's r from read/gread, the receipt from the receipt step; g: the group's part when it does it
 *     whole, else each member shard's part; a group change of magpie-http: the change script when it does
 *     it whole, else each member shard's part, http/groups.c).
 *   - Global keys in scripts, chosen per key: KEY_GROUP_NEXT and KEY_IDGEN stay global, since each is used
 *     by a command or script of its own (INCR; GROUP_IDGEN_LUA with KEYS = KEY_IDGEN alone).
 *   - The node registry and the rooms' member counts: one slot, the tag KEY_NODES_TAG ("mp:{nodes}..."):
 *     KEY_NODES, KEY_NODE, KEY_NODE_ROOMS, KEY_ROOM_MEMBERS (the heartbeat, a node's leave and the prune
 *     of a dead one, the room count scripts). What lists a node's users is per shard, next to their
 *     presence: KEY_NODE_USERS and KEY_NODE_CLEARED carry the shard's tag (push/cluster.h: the login and
 *     presence scripts are the user's shard's; a leave or prune does every shard, then the registry).
 *   - KEY_NODES is never read inside a script of users' or groups' keys (another slot). The scripts that
 *     ask "is this node live?" (a t/i or g notification, g's deliveries, O and /friends, the login limit,
 *     POST /msg's notification, the group events of magpie-http) take the live node ids in ARGV
 *     (",<id>,<id>,", KEY_LUA_LIVE), read by the daemon just before (keys_live_read) or, in magpie-push,
 *     from its view of at most push/cluster.h's CLUSTER_VIEW_MS ago.
 *   - Small groups of keys written together carry a tag of their own: an SMS mobile's three keys
 *     ("{<mobile>}"), the courier positions KEY_GEO and KEY_GEO_TIME ("{geo}"). Keys never in a script or
 *     MULTI with others (the SMS IP counter, QR, revocations, ws tickets, orders) keep one slot each and
 *     carry no tag; where one used to be in a script with others (an order and its two users' friends, a
 *     ticket claim or a revocation check at login) that step is now a command of its own (chat_order.c,
 *     push/cluster.h).
 * Scripts. Every script Magpie sends starts with LUA_SHEBANG, so a Redis Cluster (and the dev stack's slot
 * check, README) refuses one that touches two slots, the keys it builds itself included. Every key a
 * script touches for the caller's own shard comes in KEYS, or is built from a prefix of the caller's shard
 * passed in ARGV (the reader's KEY_MSG copies in the Y and conversation scripts: the same slot). Scripts
 * that fan out to keys of ids they find in Redis (group members, a user's groups, a node's users) build
 * those names in Lua with KEY_LUA_LIB's mp_key(name, id), given S in ARGV or by keys_lua. With S = 1 every
 * script touches one slot ({0}, the registry's, or its own keys'): a cluster with S = 1 works, which the
 * slot check's integration run keeps checked (scripts/dev test). S > 1 works on one Redis, where a script
 * may span tags. A t or i between users of two shards is split (push/chat_send.c's top comment): a
 * script in the sender's shard, then one in the recipient's (KEY_RCV makes it idempotent), each writing
 * its half of the stream entry to its own shard's KEY_MQ and its own KEY_MSG copy; within one shard (always
 * at S = 1) one script does both, as before. A g at S > 1 whose sender and members are not all in the
 * group's shard is split likewise (push/group.h, "The split"): the group's part in the group's shard
 * (KEY_GSND makes it idempotent), one part per shard of the members (KEY_GRCV), then the stream entry in the
 * group's shard; magpie-persist's group restore keeps the group's keys in its script and writes the
 * members' KEY_USER_GROUPS one command each at S > 1. R between two shards is split the same way (push/
 * chat_read.c's top comment: the reader's part in the reader's shard, the receipt in the other user's,
 * CONV_F_RECEIPT making it idempotent; a group's membership asked in the group's shard first); GET
 * /conversations reads the caller's shard by script and the groups' keys per shard (http/conv.c);
 * /admin/friends is one SADD per user. magpie-http's group changes at S > 1 whose group and users are not
 * all in the group's shard are split too (http/groups.c's top comment, "The split"): the group's part in the
 * group's shard (it leaves KEY_GCHG, the member work still to do), one part per shard of the members
 * (KEY_GRCV of each event's mid), then the s events' stream entries in the group's shard; GET /groups reads
 * the caller's KEY_USER_GROUPS, then the groups by one script per shard of them. No script spans shards
 * any more (magpie-persist and magpie-notify read the shards' streams one by one on a cluster: shared/rds.h),
 * so every daemon runs on a cluster at any S (shared/rds.h, push/rdsa_cluster.c).
 * Upgrade: keys under the names before the tags are renamed once by magpie-persist at its start
 * (keys_upgrade), before any daemon uses the new names; see the README.
 */
#ifndef MAGPIE_KEYS_H
#define MAGPIE_KEYS_H

#include <hiredis/hiredis.h>

/* The first line of every Lua script Magpie sends (Redis 7's script shebang, no flags). It makes Redis
 * treat the script as a "flagged" one: on a Redis Cluster every key the script touches -- KEYS and the names
 * it builds itself -- must be in one slot ("Script attempted to access keys that do not hash to the same
 * slot"; without it only KEYS are checked), which the slot check (README) relies on. No flags also means the
 * defaults of flagged scripts: Redis refuses the whole script before it runs when it is out of memory
 * (maxmemory reached: OOM) or cannot write (MISCONF after a failed disk write, min-replicas-to-write unmet,
 * a replica), where a script without the shebang was checked only at its write commands; and a stale
 * replica refuses it. Each is an error reply, which every caller already answers as "Redis unavailable"
 * (nothing of the script is written). Needs Redis 7.0 or later (older ones refuse the line). */
#define LUA_SHEBANG "#!lua\n"

/* ---- shards (the layout above) ---- */
#define KEY_SHARDS_MAX 1024 /* the top of redis.stream_shards */
/* A per-shard or per-id key: "mp:{<shard>}:<name>", "mp:{<shard>}:<name>:<id>"; printf args shard, id. */
#define KEY_SHARDED(name) "mp:{%d}:" name
#define KEY_TAGGED(name)  KEY_SHARDED(name) ":%lld"
/* Lua: KEY_LUA_LIB defines, for S = the Lua value named KEY_LUA_SHARDS (a script defines it first: from
 * an ARGV, "local " KEY_LUA_SHARDS " = ARGV[2]\n", or keys_lua's first line does): mp_shard(id) =
 * key_shard; mp_key(name, id) = the KEY_TAGGED key of id with KEY_TAGGED's name (KEY_SEQ_NAME...);
 * mp_skey(name, shard, id) = the same in the given shard (a reader's KEY_MSG copy); mp_sharded(name, shard)
 * = the KEY_SHARDED key (KEY_MQ_NAME...) of a shard; mp_node_chan(node, shard) = a node's CHAN_NODE of a
 * shard; and KEY_LUA_LIVE's mp_live. mp_shard takes uids and gids (below 2^53); a mid stays a string
 * (mp_skey). */
#define KEY_LUA_SHARDS "MP_S_IN"
#define KEY_LUA_LIB                                                                                          \
    "local MP_S = tonumber(" KEY_LUA_SHARDS ")\n"                                                            \
    "local function mp_shard(id) return string.format('%d', math.abs(tonumber(id)) % MP_S) end\n"            \
    "local function mp_skey(name, shard, id) return 'mp:{' .. shard .. '}:' .. name .. ':' .. id end\n"      \
    "local function mp_key(name, id) return mp_skey(name, mp_shard(id), id) end\n"                           \
    "local function mp_sharded(name, shard) return 'mp:{' .. shard .. '}:' .. name end\n"                    \
    "local function mp_node_chan(node, shard)\n"                                                             \
    "  return mp_sharded('" CHAN_NODE_NAME ":' .. node .. '" CHAN_NODE_SUFFIX "', shard)\n"                  \
    "end\n" KEY_LUA_LIVE
/* string: the shard count S every key was written with (decimal). Set with SET NX at the first start of a
 * daemon that has Redis; no TTL. Global (read alone). */
#define KEY_SHARDS "mp:shards"
/* string "1": the keys of a deployment from before the tags have been renamed (keys_upgrade). No TTL. */
#define KEY_TAGGED_MARK "mp:keys:tagged"

/* S, as set by keys_set_shards (1 until then). */
int key_shards(void);
/* Set S (redis.stream_shards); called by cli_start once the config is read. */
void keys_set_shards(int shards);
/* The shard of a uid or gid: id mod S (ids are positive; a negative one is taken as its absolute value). */
int key_shard(long long id);
/* Format the KEY_TAGGED key fmt (a literal: KEY_SEQ...) of id into buf (size len), in id's shard. */
#define key_tagged(buf, len, fmt, id) snprintf((buf), (len), fmt, key_shard(id), (long long)(id))

/* KEY_MSG of the ids of shard without the id ("mp:{3}:msg:"), for a script that appends mids of that shard
 * (the caller's own: a reader's KEY_MSG copies). */
void key_msg_prefix(char *buf, size_t len, int shard);

/* A script's source with S defined first (KEY_LUA_SHARDS), for scripts given as source whose ARGV cannot
 * take S; malloc'd, kept for the process (S never changes). NULL when out of memory. The result starts with
 * LUA_SHEBANG, the very first line, whether src has it or not (src's own is moved up, not repeated). */
char *keys_lua(const char *src);

/* Check S against KEY_SHARDS (set it when missing) on a synchronous connection: MP_OK, MP_EAGAIN when
 * Redis did not answer, MP_ERR when Redis holds another S (logged: the daemon must not start). */
struct rds;
int keys_check_shards(struct rds *r);
/* The one-time upgrade of a Redis written before the tags (the names without "{<shard>}"): unless
 * KEY_TAGGED_MARK is set, SCAN every "mp:" key and RENAMENX each per-user, per-group and per-message key
 * and each stream to its name in this layout (KEY_MSG: COPY into every shard, then DEL; the old
 * KEY_SEQ_RESTORED: DEL, so that magpie-persist restores the counters from MySQL once more), then set
 * KEY_TAGGED_MARK. Idempotent: a key already renamed is not found again; a new name that exists already
 * (written since) keeps its value and the old key is left and logged. Run by magpie-persist before its
 * worker starts; the send scripts refuse messages (E, retried) until the counters are restored after it.
 * On a Redis Cluster nothing is renamed (an old name and its new one are in different slots: a cluster
 * refuses RENAMENX between them): every master is scanned, and MP_ERR (logged: upgrade on one Redis first)
 * when any key has an old name; none (a new deployment: the daemons never ran on a cluster before the
 * tags) sets KEY_TAGGED_MARK.
 * MP_OK, MP_EAGAIN (Redis unavailable: call again), MP_ERR (a cluster with old names: the daemon stops).
 * *renamed gets the number of keys moved. */
int keys_upgrade(struct rds *r, long long *renamed);

/* keys_check_shards on a connection of its own made from cfg, closed after: for a daemon's start (one
 * connect attempt). */
struct magpie_config;
int keys_startup_check(const struct magpie_config *cfg);
/* The same check on a reply to "GET " KEY_SHARDS (NULL reply = not answered): MP_OK when it is nil (then
 * set it) or S, MP_ERR when it is another S (logged). *missing is set when it is nil. */
int keys_shards_reply(const redisReply *rep, int *missing);

/* ---- SMS login (magpie-http) ---- */
/* A mobile's three keys carry the mobile as their hash tag ("{<mobile>}"): the send script touches all
 * three, in one slot. The IP counter is another slot, counted by a step of its own before it. */
/* hash {code, tries}: the code sent to a mobile; TTL sms.code_ttl_s. Deleted when used or burnt. */
#define KEY_SMS_CODE "mp:sms:code:{%s}"
/* string "1": a code was sent recently; SET NX with TTL sms.resend_interval_s (the resend limit). */
#define KEY_SMS_RESEND "mp:sms:resend:{%s}"
/* counter: codes sent to a mobile in the last 24 h; TTL 86400 s set on the first INCR. */
#define KEY_SMS_DAILY      "mp:sms:daily:{%s}"
#define SMS_DAILY_WINDOW_S 86400
/* counter: /send_code calls from an IP in the current window; TTL sms.ip_window_s set on the first INCR. */
#define KEY_SMS_IP "mp:sms:ip:%s"

/* ---- tokens ---- */
/* string "1": a login token revoked by /logout; TTL = the token's remaining lifetime (exp - now). */
#define KEY_REVOKED "mp:revoked:%s" /* jti */
/* sorted set jti -> exp (unix s): the same revoked tokens, read whole by each magpie-http's copy
 * (http/revoked.h); written with KEY_REVOKED, entries past their exp removed by ZREMRANGEBYSCORE. No TTL. */
#define KEY_REVOKED_INDEX "mp:revocations"
/* string "1": KEY_REVOKED_INDEX holds every KEY_REVOKED (set after the one-time scan of an upgrade). */
#define KEY_REVOKED_INDEXED "mp:revocations:complete"
/* string: a WebSocket ticket already used; SET NX, TTL auth.ws_ticket_ttl_s + AUTH_CLOCK_SKEW_S. */
#define KEY_WS_TICKET_USED "mp:wsused:%s" /* jti */

/* ---- QR web login (magpie-http) ---- */
/* hash {state, browser, ip, ua, device, created, uid, token...}: one QR session; TTL qr.session_ttl_s.
 * After it is consumed it stays (state "consumed") until its TTL, so a second redeem gets code 8. */
#define KEY_QR "mp:qr:%s" /* session token */
/* channel: a QR session's state changed (payload: the new state); wakes the long poll. */
#define CHAN_QR "mp:qr:%s:ch"

/* ---- users and friends ---- */
/* set of uids: the friends of a user (seed 001's URS:<uid>). Written with MySQL's friends table; no TTL. */
#define KEY_FRIENDS_NAME "friends"
#define KEY_FRIENDS      KEY_TAGGED(KEY_FRIENDS_NAME) /* shard, uid */
/* hash {customer, courier}: an order a courier may take with T (seed 001). Written by /admin/orders (field
 * "customer"); T sets "courier" with HSETNX, so only the first courier gets it. No TTL; MySQL's orders table
 * has the record too. */
#define KEY_ORDER "mp:order:%s" /* order id */
/* geo set: couriers' last positions (S); member = uid. No TTL. Tagged "{geo}", as KEY_GEO_TIME: the S script
 * writes both, in one slot. */
#define KEY_GEO "mp:{geo}"
/* hash uid -> ms: when each courier's position was last stored. No TTL. */
#define KEY_GEO_TIME "mp:{geo}:time"

/* ---- cluster: nodes, presence, routing (magpie-push, read by magpie-http's /route) ---- */
/* The node registry and the rooms' member counts share one slot, the tag KEY_NODES_TAG: what one of their
 * scripts touches (the heartbeat, a node's leave, the prune of a dead node, a room count) is in it. */
#define KEY_NODES_TAG "mp:{nodes}"
/* sorted set node_id -> ms of its last heartbeat. A node is live while that is within push.node_ttl_s.
 * Never read inside a script of a user's or a group's keys (another slot): a daemon reads the live ids
 * (ZRANGEBYSCORE, keys_live_read, or magpie-push's view, push/cluster.h) and passes them in ARGV. */
#define KEY_NODES KEY_NODES_TAG
/* hash {ws_url, room_url, started}: a node's advertised URLs; TTL push.node_ttl_s, renewed by heartbeat. */
#define KEY_NODE KEY_NODES_TAG ":node:%d"
/* hash node_id -> number of the user's connections on that node. Counts of dead nodes are ignored by the
 * presence check (presence.h) and removed when that node id starts again; no TTL. */
#define KEY_PRESENCE_NAME "presence"
#define KEY_PRESENCE      KEY_TAGGED(KEY_PRESENCE_NAME) /* shard, uid */
/* set of uids of one shard with connections on a node, so that node's entries in their KEY_PRESENCE can be
 * found again (a restarted node clears them, survivors prune a dead node's): one set per shard and node,
 * in the shard's slot, next to the presence it lists. No TTL. */
#define KEY_NODE_USERS_NAME "node"
#define KEY_NODE_USERS      KEY_SHARDED(KEY_NODE_USERS_NAME) ":%d:users" /* shard, node */
/* hash node_id -> ms: when the node last cleared its KEY_PRESENCE entries of this shard (at each of its
 * (re)connects to Redis), so a survivor's prune of a node that was dead leaves a new run of that node id
 * alone (push/cluster.c). No TTL; a field goes with the prune of its node. */
#define KEY_NODE_CLEARED_NAME "nodes:cleared"
#define KEY_NODE_CLEARED      KEY_SHARDED(KEY_NODE_CLEARED_NAME) /* shard */

/* A list of live node ids as a script's ARGV: ",<id>,<id>," ("," = none), which KEY_LUA_LIVE's
 * mp_live(list, node) reads. KEY_LIVE_MAX bytes hold about 2,000 node ids. */
#define KEY_LIVE_MAX 16384
#define KEY_LUA_LIVE                                                                                         \
    "local function mp_live(list, node) return string.find(list, ',' .. node .. ',', 1, true) ~= nil end\n"
/* The list of the ids in rep, a ZRANGEBYSCORE reply of KEY_NODES, into buf (size len): MP_OK, or MP_ERR
 * when rep is not a list of ids or they do not fit (buf is then ","). */
int keys_live_list(const redisReply *rep, char *buf, size_t len);
/* ZRANGEBYSCORE KEY_NODES from now - ttl_s on a synchronous connection, as keys_live_list: the nodes live
 * now (push.node_ttl_s). MP_OK, MP_EAGAIN (Redis did not answer, or answered an error: logged). */
int keys_live_read(struct rds *r, long long ttl_s, char *buf, size_t len);

/* ---- chat messages ---- */
/* stream: accepted chat messages waiting for magpie-persist; entry fields in stream.h. Only magpie-persist
 * trims it, and only entries every group has acked (see persist.stream_maxlen for what is kept): writers
 * XADD without MAXLEN, or they could drop messages not yet stored. */
#define KEY_MQ_NAME "mq"
#define KEY_MQ      KEY_SHARDED(KEY_MQ_NAME) /* shard */
#define MQ_GROUP "persist"
/* stream: entries magpie-persist gave up on, with the reason and the original fields. Capped at
 * MQ_DEAD_MAXLEN entries (approximate trim); an operator inspects it with XRANGE. */
#define KEY_MQ_DEAD_NAME "mq:dead"
#define KEY_MQ_DEAD    KEY_SHARDED(KEY_MQ_DEAD_NAME) /* shard: next to its stream (one script moves an entry) */
#define MQ_DEAD_MAXLEN 100000
/* string "<mid> <seq>": the server message id of an accepted (from, client id) and its seq in the sender's
 * timeline; SET with TTL push.dedup_ttl_s, so a retried packet is acked again (same mid, same seq) without
 * being stored or delivered twice. (Entries written before timelines hold only "<mid>".) */
#define KEY_DEDUP_NAME "dedup"
#define KEY_DEDUP KEY_TAGGED(KEY_DEDUP_NAME) ":%s" /* shard, uid, client id */

/* ---- timelines (design: push/timeline.h) ---- */
/* counter: the last seq given to an entry of a user's timeline; INCR by the send script only. No TTL: a seq
 * is never given twice. */
#define KEY_SEQ_NAME "seq"
#define KEY_SEQ      KEY_TAGGED(KEY_SEQ_NAME) /* shard, uid */
/* string (the time it was set): every user with a seq in MySQL has its KEY_SEQ in this Redis, so a missing
 * counter is a new user's and starts at 0. Set by magpie-persist after it restored the counters from MySQL
 * (persist_seq.c): at its first start, and whenever this key is gone (a Redis replaced or flushed). While
 * it is missing, a message to or from a user without a counter is refused (E, retried). No TTL. */
#define KEY_SEQ_RESTORED_NAME "seq:restored"
#define KEY_SEQ_RESTORED      KEY_SHARDED(KEY_SEQ_RESTORED_NAME) /* shard: one per shard, set after the restore */
/* stream: the recent part of a user's timeline, one entry per seq with the entry id "<seq>-0" and one field
 * TL_F_MID = the message's mid. Capped near timeline.max_entries (XADD MAXLEN ~); TTL timeline.keep_s,
 * renewed by every write. Holds a contiguous run of seqs that ends at KEY_SEQ's value. */
#define KEY_TL_NAME "tl"
#define KEY_TL      KEY_TAGGED(KEY_TL_NAME) /* shard, uid */
#define TL_F_MID "m"
/* hash: one stored message as Y and R need it: MSG_F_PACKET = the packet JSON without seq; MSG_F_FROM_SEQ
 * and MSG_F_TO_SEQ = its seq in the sender's and in the recipient's timeline; MSG_F_FROM_IN and MSG_F_TO_IN =
 * how many messages each of the two had received in this conversation when it was stored (the recipient's
 * count includes it), which is what an R up to it leaves unread. TTL timeline.keep_s. */
#define KEY_MSG_NAME   "msg"
#define KEY_MSG        KEY_TAGGED(KEY_MSG_NAME) /* the reader's shard, mid */
#define MSG_F_PACKET "p"
#define MSG_F_FROM_SEQ "fs"
#define MSG_F_TO_SEQ "ts"
#define MSG_F_FROM_IN "fn"
#define MSG_F_TO_IN "tn"
#define MSG_F_GROUP "g"   /* a group entry's group id (g messages and s events) */
/* string "<to seq> <to in>": the recipient's part of a split t or i (push/chat_send.c: sender and recipient
 * in two shards) has run in the recipient's shard for this mid, with that seq; it makes that part
 * idempotent (a retry finds it and writes nothing). TTL push.dedup_ttl_s, as the sender's dedup key. */
#define KEY_RCV_NAME "rcv"
#define KEY_RCV      KEY_TAGGED(KEY_RCV_NAME) /* the recipient's shard, mid */
/* hash {m: mid, n: number in the group, u: the members' uids, t: ts, b: body, p: packet, x: "1" once the
 * stream entry is written}: the group's part of a split g (push/group.h: a g at redis.stream_shards > 1
 * whose members are in several shards) has run for this (from, cid); it makes that part idempotent and lets
 * a retry complete the message with the first's mid, content and members. Expires when the sender's dedup
 * key of that message does (the same absolute time, ts + push.dedup_ttl_s). */
#define KEY_GSND_NAME "gsnd"
#define KEY_GSND      KEY_SHARDED(KEY_GSND_NAME) ":%lld:%lld:%s" /* the group's shard, gid, from, cid */
/* string "<uid> <seq> ...": one member shard's part of a split g has run for this mid (push/group.h), with
 * these seqs of the shard's members; it makes that part idempotent. TTL push.dedup_ttl_s. */
#define KEY_GRCV_NAME "grcv"
#define KEY_GRCV      KEY_TAGGED(KEY_GRCV_NAME) /* the members' shard, mid */
#define MSG_F_GROUP_N "gn" /* a g message's number in its group (GROUP_F_COUNT when it was stored) */

/* ---- conversations and read marks (design: push/chat_read.c) ---- */
/* A conversation's id in these keys: "u<uid>" (1:1 with that user) or "g<gid>" (a group). */
/* sorted set: conversation id -> the user's seq of the latest entry in it (GET /conversations pages by it,
 * newest first; seqs are unique per user, so the cursor is exact). No TTL. */
#define KEY_CONVS_NAME "convs"
#define KEY_CONVS      KEY_TAGGED(KEY_CONVS_NAME) /* shard, uid */
/* hash: per conversation of a user, fields "<conv id>" + CONV_F_*: the latest mid, how many messages the
 * user received in it, the read mark (mid and the user's seq of it) and how many the user had received up
 * to the read mark. unread = received - received at the read mark. No TTL. */
#define KEY_CONV_NAME "conv"
#define KEY_CONV      KEY_TAGGED(KEY_CONV_NAME) /* shard, uid */
/* A group conversation (push/group.h): while the user is a member, its latest mid and message count are
 * the group's (KEY_GROUP's GROUP_F_LAST, GROUP_F_COUNT), so a message costs no per-member write here; when
 * the user stops being a member (removed, left, group deleted) they are copied into :l and :n, frozen.
 * :rn is the group number (MSG_F_GROUP_N) of the read mark, so unread = count - :rn (sending a g moves
 * the sender's read mark to it: a user's own messages are never unread); :rs is not used. */
#define CONV_F_LAST ":l"
#define CONV_F_IN ":n"
#define CONV_F_READ ":r"
#define CONV_F_READ_SEQ ":rs"
#define CONV_F_READ_IN ":rn"
/* 1:1 only, in the hash of the user who was read ("u<reader>:pr"), and only for two users of two shards:
 * the reader's seq of the read mark whose receipt has gone out (push/chat_read.c's split: it makes the
 * receipt step idempotent, so a retried R sends a receipt at most once). */
#define CONV_F_RECEIPT ":pr"

/* ---- STOMP and MQTT sessions (design: push/resume.h) ---- */
/* Both hashes: field = the session's client id, value "<acked> <sent> <sub> <ts>": the seq in the user's
 * timeline up to which the session acknowledged everything (or sent it itself), the highest seq sent to it,
 * the protocol's subscription number, the unix time of the write (resume.c's store script: acked and sent
 * only ever raised; a field older than the TTL counts as gone and is dropped when the hash is over its cap).
 * A value "<acked>" written by an older node still loads. */
/* hash: a user's STOMP ack:client / client-individual sessions (field = the CONNECT client-id, "" when the
 * client named none; sub unused). The next SUBSCRIBE with a client mode sends the entries after acked again
 * from the timeline. TTL stomp.session_ttl_s, renewed by every write; no cap on the fields. */
#define KEY_STOMP_NAME "stomp"
#define KEY_STOMP_ACKED KEY_TAGGED(KEY_STOMP_NAME) /* shard, uid */
/* hash: a user's MQTT clean-session-0 sessions (field = the CONNECT client id; sub = the QoS of the
 * session's me/inbox subscription, -1 none). Written when the session starts, subscribes, unsubscribes, at
 * least every second while PUBACKs move it, and when the connection ends; a CONNECT with clean session 1
 * and the same client id deletes the field (3.1.1 §3.1.2.4). TTL mqtt.session_ttl_s, renewed by every
 * write, and each field expires on its own after that long without a write; at most
 * mqtt.max_sessions_per_user fields (the one written longest ago goes). */
#define KEY_MQTT_NAME "mqtt"
#define KEY_MQTT_SESSION KEY_TAGGED(KEY_MQTT_NAME) /* shard, uid */

/* ---- groups (design: push/group.h) ---- */
/* counter: the last group id given; INCR by the create script. Restored from MySQL with the seq counters
 * (KEY_SEQ_RESTORED). No TTL. */
#define KEY_GROUP_NEXT "mp:grp:next"
/* hash: one group that exists: GROUP_F_* below. Gone when the group is deleted. No TTL. */
#define KEY_GROUP_NAME  "grp"
#define KEY_GROUP       KEY_TAGGED(KEY_GROUP_NAME) /* shard of the gid, gid */
#define GROUP_F_NAME    "name"    /* 1..64 characters */
#define GROUP_F_OWNER   "owner"   /* uid */
#define GROUP_F_CREATED "created" /* ms */
#define GROUP_F_JOINS   "j"       /* join counter: members[uid]'s join order comes from HINCRBY of it */
#define GROUP_F_VER     "ver"     /* state version: +1 per change of name, owner or members (the MySQL copy) */
#define GROUP_F_COUNT   "n"       /* g messages stored so far (a message's number is MSG_F_GROUP_N) */
#define GROUP_F_LAST    "l"       /* mid of the latest entry (g or s): the conversation's last packet */
/* hash uid -> "<role> <join order> <joined ms>", role o(wner) a(dmin) m(ember): the members of a group,
 * the authority for "is a member" (push/group.h: the order of sends and changes). Gone with the group. */
#define GROUP_MEMBERS_SUFFIX ":m"
#define KEY_GROUP_MEMBERS    KEY_GROUP GROUP_MEMBERS_SUFFIX /* shard of the gid, gid */
/* set of group ids: the groups a user belongs to (GET /groups, group.max_per_user). No TTL. */
#define KEY_USER_GROUPS_NAME "ugrp"
#define KEY_USER_GROUPS      KEY_TAGGED(KEY_USER_GROUPS_NAME) /* shard, uid */
/* hash: first event mid -> the member work of a group change still to be done at redis.stream_shards > 1
 * (http/groups.c's top comment, "The split"): JSON {g: gid, ev: [{m, t, p, b, u: [uids]}], jn: {uid: read
 * mark}, fz: {uid: [last mid, count]}, sh: [shards]}. Written by the change's group part, deleted by its
 * last step (the s events' stream entries); one left behind is completed by the next change of the group.
 * No TTL. */
#define KEY_GCHG_NAME "gchg"
#define KEY_GCHG      KEY_TAGGED(KEY_GCHG_NAME) /* shard of the gid, gid */
/* hash {ms, seq}: the state of the id generator of group events' mids (shared/group_lua.h, GROUP_IDGEN_LUA),
 * which mints ids as node ID_MAX_NODE. No TTL. */
#define KEY_IDGEN "mp:idgen"

/* ---- offline notifications (design: notify/notify_worker.h) ---- */
/* stream: notification events for recipients who were offline when a message was stored; fields in
 * notify_event.h. Written (XADD MAXLEN ~ notify.queue_maxlen) by the send script and POST /msg {to} only
 * while notify.webhook_url is set; read by magpie-notify's group, which XDELs what it has delivered or
 * dead-lettered, so the stream holds what is still to do. */
#define KEY_NOTIFY_NAME "notify"
#define KEY_NOTIFY      KEY_SHARDED(KEY_NOTIFY_NAME) /* shard */
#define NOTIFY_GROUP "notify"
/* stream: events magpie-notify gave up on (notify.max_age_s passed), with the reason and the original
 * fields (the layout of KEY_MQ_DEAD). Capped at NOTIFY_DEAD_MAXLEN entries (approximate trim). */
#define KEY_NOTIFY_DEAD_NAME "notify:dead"
#define KEY_NOTIFY_DEAD    KEY_SHARDED(KEY_NOTIFY_DEAD_NAME) /* shard */
#define NOTIFY_DEAD_MAXLEN "100000"

/* ---- pub/sub channels (payload formats in bus.h) ---- */
/* channel, SHARDED (SPUBLISH / SSUBSCRIBE; SPEC §7): deliveries for the connections held by one node, one
 * channel per shard and node, "mp:{<shard>}:node:<id>:in" -- the shard's hash tag, so the channel is in the
 * slot of that shard's keys. A delivery to a user's connections is published by a script of the user's
 * shard (or, after a WAIT, by the daemon that ran it, on the channel the script returned) on that shard's
 * channel of the node: on a Redis Cluster the script runs in that slot, so the cluster accepts the
 * SPUBLISH, which goes through that slot's master only (a classic PUBLISH is copied to every node of the
 * cluster), and each user's deliveries keep their order on one channel. Every magpie-push subscribes its
 * channel of every shard (push/relay.c: S channels). Not a key: nothing is stored under the name (the
 * key KEY_NODE_USERS is another namespace). Lua: KEY_LUA_LIB's mp_node_chan(node, shard). */
#define CHAN_NODE_NAME         "node"
#define CHAN_NODE_SUFFIX       ":in"
#define CHAN_NODE_SHARD_PREFIX KEY_SHARDED(CHAN_NODE_NAME) ":" /* shard: a script's ARGV, the node id after */
#define CHAN_NODE              CHAN_NODE_SHARD_PREFIX "%d" CHAN_NODE_SUFFIX /* shard, node */
/* channel: commands for every node (kick, logout, system messages to a user). */
#define CHAN_CONTROL "mp:ctl"
/* channel: one room's broadcasts; nodes subscribe only to rooms they have members in. */
#define CHAN_ROOM "mp:room:%s"
/* hash node_id -> members on that node: a room's member counts; entries of dead nodes are ignored. Counts
 * are absolute (a node writes how many it holds, HDEL at 0), so a lost write is repaired by the next one
 * or by the node's resync after a Redis reconnect. No TTL: a node's entries go when it deregisters, when
 * it starts again (resync), or when the survivors prune it (cluster.h). */
#define KEY_ROOM_MEMBERS KEY_NODES_TAG ":room:%s:members" /* in the registry's slot (KEY_NODES_TAG) */
/* set of room ids with members on a node, so its KEY_ROOM_MEMBERS entries can be found and removed. No TTL. */
#define KEY_NODE_ROOMS KEY_NODES_TAG ":node:%d:rooms"

#endif
