/* groups.c -- the group endpoints (SPEC §4.2): POST /groups, GET /groups, GET /groups/<id>,
 * POST /groups/<id>, POST /groups/<id>/members, POST /groups/<id>/leave, DELETE /groups/<id>.
 *
 * The model is push/group.h: Redis is the authority for membership, and every change is ONE Redis script
 * that checks everything before it writes anything, so a refused request leaves no trace. What happens
 * before the script runs only reads, or takes ids nobody else will use:
 *   1. the body is parsed and checked here (name 1..GROUP_NAME_MAX_CHARS characters, uid lists without
 *      duplicates, at most group.max_members long): code 2, or 14 for a list longer than a group may be;
 *   2. uids to add must have a row in MySQL's users table (code 15 otherwise);
 *   3. a new group takes its id from INCR KEY_GROUP_NEXT, each s event its mid from GROUP_IDGEN_LUA (node
 *      ID_MAX_NODE, composed here as id.h lays ids out) and its ts from that mid's ms; the event's packet
 *      (packet_event, without seq) is built here. An id or mid a refused request took is simply never used.
 * Then the change script (GROUP_LUA_LIB + change_lib + its own body), whose ARGV are:
 *   1 gid, 2 the caller, 3 timeline.keep_s, 4 timeline.max_entries, 5 the live node ids (keys.h,
 *   KEY_LUA_LIVE: group_run reads them, keys_live_read, just before the script, which cannot read
 *   KEY_NODES, a key of another slot; a node that dies in between is published to in vain, as it would
 *   have been a moment earlier),
 *   6 group.max_members, 7 group.max_per_user, 8..11 event slot 0 (mid, ts, packet, event JSON),
 *   12..15 event slot 1 (the same; mid "" = no event), 16 "1" when the caller WAITs (below), 17 and 18 the
 *   facts of other shards (CHANGE_ARGV_RESTORED, CHANGE_ARGV_COUNTS: "The split" below), 19.. the
 *   operation's own (CHANGE_ARGV_OP).
 * The script first checks: the group exists (15), the caller is a member (14) with the right role (14:
 * name by owner/admin, admins by the owner, members by owner/admin, who may remove only lower roles: owner
 * > admin > member; delete by the owner), every uid named is (or for add: is not) a member (15 / 2), the
 * group stays within group.max_members and each added user within group.max_per_user (14), and
 * mp_counters_ok on every uid that gets a timeline entry (else {-3}: "unavailable", as when Redis is down).
 * Only then it writes:
 *   - the s event: mp_fanout puts its mid in the timeline of every member after the change and of every
 *     removed member (member_removed, group_deleted), KEY_MSG (MSG_F_PACKET, MSG_F_GROUP; TTL
 *     timeline.keep_s), GROUP_F_LAST = its mid, one KEY_MQ entry (type "s", from 0, to = group = gid,
 *     cid = the mid, body = the event JSON, seqs = mp_seqs(pairs, 0)), and the delivery
 *     GROUP_DELIVERY_HEAD ts "\n" "<uid> <seq> ..." "\n" packet to every live node, which deliver it
 *     (mp_publish: SPUBLISH on each node's delivery channel of the group's shard, shared/bus.h; with WAIT,
 *     returned for magpie-http to SPUBLISH, see below);
 *   - membership: KEY_GROUP_MEMBERS uid -> "<role> <join order> <joined ms>" (join order from HINCRBY
 *     GROUP_F_JOINS), KEY_USER_GROUPS; a joining user's read mark CONV_F_READ_IN is set to the group's
 *     GROUP_F_COUNT, so messages from before the join never count as unread; a leaving one gets the
 *     group's GROUP_F_LAST and GROUP_F_COUNT frozen into its KEY_CONV "g<gid>" CONV_F_LAST / CONV_F_IN
 *     (GET /conversations reads those once it is no longer a member), then SREM and HDEL;
 *   - GROUP_F_VER + 1 and one group state entry (type G, MQ_F_MEMBERS "<uid>:<role>:<order>:<joined> ...",
 *     or MQ_F_DELETED "1") for magpie-persist's MySQL copy.
 * The owner leaving hands the group to the oldest admin (lowest join order), else the oldest member; the
 * last member leaving deletes it. POST /groups/<id>/members with both lists is one script and two events:
 * member_removed (to the members before the change) then member_added (to the members after it). Admin
 * changes have no event of their own (SPEC §4.2 names none); they bump ver and write a state entry.
 *
 * mp_fanout undoes its own entries when a timeline refuses one (someone edited the keys); a second
 * fan-out that fails takes back the first one's entries and seqs too (only its KEY_CONVS scores stay,
 * which order conversations and nothing else), so a refused change takes no seq. Reads (GET) are scripts
 * too, so a group is never seen half-read. Scripts go by EVALSHA (the sha computed here once), falling
 * back to EVAL when Redis lost its script cache.
 *
 * With redis.min_replicas_acked (shared/sentinel.h: what WAIT guarantees) a change is answered only after
 * rds_wait, and its events reach the nodes only then too: the change script returns {result, {channel,
 * payload, ...}} instead of publishing, and group_run publishes once enough replicas hold the change, so
 * no device is shown an event -- or a seq -- that a failover takes back (as for g, push/group_send.c).
 * Fewer replicas: code 20, the change stays on the master and its events are never pushed (members get
 * them by Y, as after any gap); the client's retry finds the change made (code 2 or 15 for a member
 * already added or removed, or the same result for a rename).
 *
 * The split (issue 20, SPEC §7: on a Redis Cluster a script may touch the keys of one slot only; the layout
 * is shared/keys.h's). At redis.stream_shards = 1, and at S > 1 when the group and every user the change
 * touches (its members before and after, the added ones) are in the group's shard and the group has no
 * pending record, the change is the one script above, same keys (decide() in GROUP_CHANGE_LUA
 * says which, before the first write of a member's key). Otherwise:
 *   0. before the script, read-only, one command each in the users' shards (checks_read): the SCARD of
 *      KEY_USER_GROUPS of each added user outside the group's shard (ARGV 18, for group.max_per_user), and
 *      whether every other shard has its KEY_SEQ_RESTORED (ARGV 17 "1"; when not -- Redis lost its counters
 *      and magpie-persist is restoring them -- which members and added users outside have a KEY_SEQ). The
 *      race accepted: a user who joins another group between the SCARD and the script may end one group
 *      over group.max_per_user (the limit guards against abuse; nothing relies on it as an invariant).
 *      These reads cost S - 1 EXISTS and one SCARD per added user outside at every change at S > 1.
 *   1. the change script in the group's shard, the group's part: every check as above, the group's own
 *      writes (members hash, GROUP_F_*, ver, the G state entry, KEY_MSG of the event in the group's
 *      shard, GROUP_F_LAST), and no member key: what the members get goes into the pending record,
 *      KEY_GCHG's field <first event mid> = {the events (mid, ts, packet, body, who gets a timeline entry),
 *      jn: joiners' read marks, fz: leavers' frozen last mid and count, sh: the shards}. It returns every
 *      pending record of the group, oldest first (an earlier request's left behind, then its own).
 *   2. for each record, part_lua once per shard in sh (one after another): KEY_GRCV of (shard, the first
 *      event's mid) (hit: it ran before, return its seqs, write nothing), the counters' check of the
 *      shard's users, mp_fanout of each event to the shard's users, the joiners' KEY_USER_GROUPS and read
 *      marks, the leavers' frozen conversation fields and SREM, the shard's KEY_MSG copy, KEY_GRCV of each
 *      event = the shard's "<uid> <seq> ..." (TTL timeline.keep_s), and the deliveries of the shard's
 *      members (mp_publish, from the members' shard; with WAIT returned and published after it).
 *   3. final_lua in the group's shard: each event's stream entry with every member's seq (the entry the one
 *      script writes, so magpie-persist stores it as before), then the record is deleted (gone: done before,
 *      nothing written).
 * The answer comes after step 3 (and the WAITs of each step). Failures:
 *   - step 0 or 1 refused or unanswered: as for the one script, nothing of the change written.
 *   - a part refused (a shard's counters not restored, a timeline ahead of its counter) or unanswered
 *     (Redis down past redis.cluster_retry_ms, which shared/rds.h retries within): the other shards' parts
 *     still run (their members have the events, delivered), no stream entry, the record stays, the
 *     request answers code 20 and logs "group change left pending". The group has changed (a retry of the
 *     request finds it done: code 2 or 15, or the same result). The next request about the group (any
 *     change, a refused one too, e.g. that retry) completes the records first, oldest first, stopping at one
 *     that stays pending, so a member's timeline keeps the group's events in order; the parts that ran find
 *     KEY_GRCV and write nothing again (test_groups_http_split.py). magpie-http dying between the steps
 *     leaves the same. Known gaps: a group nobody changes again keeps its record (its missing members
 *     miss the events, and the group in their KEY_USER_GROUPS until then; magpie-persist got no s entry);
 *     a record completed after its KEY_GRCV expired (timeline.keep_s) gives the event again to the shards
 *     that had it. Order: the events of two changes may reach members of two shards in different orders
 *     relative to a g in flight (as push/group.h says for g), never two changes of one group, whose
 *     records are completed oldest first.
 * GET /groups at S > 1: the caller's KEY_USER_GROUPS (its shard), then list_lua once per shard of those
 * groups with that shard's gids (each group's name, the caller's role, the count), merged by gid here; a
 * group left or deleted between the two is not listed (list_lua skips it).
 */
#include "call.h"
#include "group_lua.h"
#include "handlers.h"
#include "id.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "packet.h"
#include "stream.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_NAME_MAX_CHARS 64                         /* SPEC §4.2; chat_groups.name is VARCHAR(64) */
#define GROUP_NAME_MAX_BYTES (GROUP_NAME_MAX_CHARS * 4) /* UTF-8: at most 4 bytes a character */
#define GROUP_MAX_ID         ((1LL << 53) - 1)          /* uids and gids are Lua numbers in the scripts */
#define GROUP_EVENTS         2                          /* event slots of a change script */
#define CHANGE_ARGV_LIVE     5                          /* the live node ids (group_run fills them in) */
#define CHANGE_ARGV_WAIT     16                         /* "1": return the deliveries, do not publish */
#define CHANGE_ARGV_RESTORED 17    /* "1": every shard but the group's has its seq counters (split checks) */
#define CHANGE_ARGV_COUNTS   18    /* "<uid>:<groups> ...": SCARD of added users outside the group's shard */
#define CHANGE_ARGV_OP       19    /* the first ARGV of the operation's own */
#define GROUP_WARN_EVERY_MS  10000 /* a refusal that repeats on every change is logged this often */

/* ---- the scripts ---- */

/* Every script about one group: ARGV[1] gid, ARGV[2] the caller. roles() is the members hash as uid ->
 * {role letter, join order, joined ms}; sorted() its uids by join order; result() appends name, owner and
 * each member's uid and role (by join order) to out (default {0}). */
#define GROUP_HEAD_LUA                                                                                       \
    "local gid, by = ARGV[1], ARGV[2]\n"                                                                     \
    "local gshard = mp_shard(gid)\n"                                                                         \
    "local mq = mp_sharded('" KEY_MQ_NAME "', gshard)\n"                                                     \
    "local restored = mp_sharded('" KEY_SEQ_RESTORED_NAME "', gshard)\n"                                     \
    "local gkey = mp_key('" KEY_GROUP_NAME "', gid)\n"                                                       \
    "local mkey = gkey .. '" GROUP_MEMBERS_SUFFIX "'\n"                                                      \
    "local function roles()\n"                                                                               \
    "  local h = redis.call('HGETALL', mkey)\n"                                                              \
    "  local m = {}\n"                                                                                       \
    "  for i = 1, #h, 2 do\n"                                                                                \
    "    local r, o, j = string.match(h[i + 1], '^(%a) (%d+) (%d+)$')\n"                                     \
    "    if r then m[h[i]] = {r, tonumber(o), j} end\n"                                                      \
    "  end\n"                                                                                                \
    "  return m\n"                                                                                           \
    "end\n"                                                                                                  \
    "local function sorted(m)\n"                                                                             \
    "  local u = {}\n"                                                                                       \
    "  for k in pairs(m) do u[#u + 1] = k end\n"                                                             \
    "  table.sort(u, function(a, b) return m[a][2] < m[b][2] end)\n"                                         \
    "  return u\n"                                                                                           \
    "end\n"                                                                                                  \
    "local function result(out)\n"                                                                           \
    "  local g = redis.call('HMGET', gkey, '" GROUP_F_NAME "', '" GROUP_F_OWNER "')\n"                       \
    "  local m = roles()\n"                                                                                  \
    "  out = out or {0}\n"                                                                                   \
    "  out[#out + 1] = g[1]\n"                                                                               \
    "  out[#out + 1] = g[2]\n"                                                                               \
    "  for _, u in ipairs(sorted(m)) do out[#out + 1] = u out[#out + 1] = m[u][1] end\n"                     \
    "  return out\n"                                                                                         \
    "end\n"

/* The delivery of an s event to every live node (after the script's locals live and waits): published now,
 * or with WAIT kept in pubs {channel, payload, ...} for magpie-http to publish after the WAIT. shard: the Lua
 * name of the script's own shard (its slot), whose channel of each node it publishes on (shared/bus.h). */
#define GROUP_PUBLISH_LUA(shard)                                                                             \
    "local pubs = {}\n"                                                                                      \
    "local function publish(payload)\n"                                                                      \
    "  if not waits then return mp_publish(payload, '', live, " shard ") end\n"                              \
    "  for n in string.gmatch(live, '[^,]+') do\n"                                                           \
    "    pubs[#pubs + 1] = mp_node_chan(n, " shard ")\n"                                                     \
    "    pubs[#pubs + 1] = payload\n"                                                                        \
    "  end\n"                                                                                                \
    "end\n"

/* An s event's stream entry (seqs: MQ_F_SEQS) in the stream mq. */
#define GROUP_EVENT_XADD_LUA                                                                                 \
    "local function event_xadd(mq, gid, mid, ts, body, seqs)\n"                                              \
    "  redis.call('XADD', mq, '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID                  \
    "', mid, '" MQ_F_FROM "', '0', '" MQ_F_TO "', gid, '" MQ_F_CID "', mid, '" MQ_F_TYPE                     \
    "', 's', '" MQ_F_BODY "', body, '" MQ_F_TS "', ts, '" MQ_F_GROUP "', gid, '" MQ_F_SEQS "', seqs)\n"      \
    "end\n"

/* What every change script shares (after GROUP_LUA_LIB and GROUP_HEAD_LUA); the ARGV layout is in the
 * comment at the top of this file. split (set by decide(), before the first write of the members) is the
 * group's part of a split change: the members' writes go into rec, the pending record (KEY_GCHG). */
#define GROUP_CHANGE_LUA                                                                                     \
    "local conv = 'g' .. gid\n"                                                                              \
    "local keep, maxlen, live = ARGV[3], ARGV[4], ARGV[5]\n"                                                 \
    "local max_members, max_per_user = tonumber(ARGV[6]), tonumber(ARGV[7])\n"                               \
    "local RANK = {o = 3, a = 2, m = 1}\n"                                                                   \
    "local X = 19\n"                                                                                         \
    "local waits = ARGV[16] == '1'\n" GROUP_PUBLISH_LUA("gshard") GROUP_EVENT_XADD_LUA                       \
        "local pkey = mp_key('" KEY_GCHG_NAME "', gid)\n"                                                    \
        "local split, rec = false, nil\n"                                                                    \
        "local function decide(...)\n"                                                                       \
        "  if MP_S == 1 then return end\n"                                                                   \
        "  split = redis.call('EXISTS', pkey) == 1\n"                                                        \
        "  for _, l in ipairs({...}) do\n"                                                                   \
        "    for _, u in ipairs(l) do if mp_shard(u) ~= gshard then split = true end end\n"                  \
        "  end\n"                                                                                            \
        "  if split then rec = {g = gid, ev = {}, jn = {}, fz = {}} end\n"                                   \
        "end\n"                                                                                              \
        "local counts = {}\n"                                                                                \
        "for u, n in string.gmatch(ARGV[18], '(%d+):(%d+)') do counts[u] = tonumber(n) end\n"                \
        "local function counters(uids)\n"                                                                    \
        "  local here = {}\n"                                                                                \
        "  for _, u in ipairs(uids) do\n"                                                                    \
        "    if mp_shard(u) == gshard then here[#here + 1] = u\n"                                            \
        "    elseif ARGV[17] ~= '1' and not string.find(ARGV[17], ',' .. u .. ',', 1, true) then return "    \
        "false "                                                                                             \
        "end\n"                                                                                              \
        "  end\n"                                                                                            \
        "  return mp_counters_ok(here, restored)\n"                                                          \
        "end\n"                                                                                              \
        "local function ev(k, i) return ARGV[8 + 4 * k + i] end\n"                                           \
        "local function list(from, to)\n"                                                                    \
        "  local t = {}\n"                                                                                   \
        "  for i = from, to do t[#t + 1] = ARGV[i] end\n"                                                    \
        "  return t\n"                                                                                       \
        "end\n"                                                                                              \
        "local function fan(k, uids)\n"                                                                      \
        "  if not split then return mp_fanout(uids, ev(k, 0), conv, keep, maxlen) end\n"                     \
        "  rec.ev[#rec.ev + 1] = {m = ev(k, 0), t = ev(k, 1), p = ev(k, 2), b = ev(k, 3), u = uids}\n"       \
        "  return {}\n"                                                                                      \
        "end\n"                                                                                              \
        "local function emit(k, pr)\n"                                                                       \
        "  local mid, ts, packet, body = ev(k, 0), ev(k, 1), ev(k, 2), ev(k, 3)\n"                           \
        "  local mk = mp_skey('" KEY_MSG_NAME "', gshard, mid)\n"                                            \
        "  redis.call('HSET', mk, '" MSG_F_PACKET "', packet, '" MSG_F_GROUP "', gid)\n"                     \
        "  redis.call('EXPIRE', mk, keep)\n"                                                                 \
        "  local readers = {}\n"                                                                             \
        "  for j = 1, #pr, 2 do readers[#readers + 1] = pr[j] end\n"                                         \
        "  redis.call('HSET', gkey, '" GROUP_F_LAST "', mid)\n"                                              \
        "  if split then return end\n"                                                                       \
        "  mp_msg_copies(mk, mid, readers, keep)\n"                                                          \
        "  event_xadd(mq, gid, mid, ts, body, mp_seqs(pr, 0))\n"                                             \
        "  publish('" GROUP_DELIVERY_HEAD "' .. ts .. '\\n' .. table.concat(pr, ' ') .. '\\n' .. packet)\n"  \
        "end\n"                                                                                              \
        "local function freeze(u)\n"                                                                         \
        "  local f = redis.call('HMGET', gkey, '" GROUP_F_LAST "', '" GROUP_F_COUNT "')\n"                   \
        "  redis.call('HDEL', mkey, u)\n"                                                                    \
        "  if split then rec.fz[tostring(u)] = {f[1] or '', f[2] or '0'} return end\n"                       \
        "  redis.call('HSET', mp_key('" KEY_CONV_NAME "', u), conv .. '" CONV_F_LAST                         \
        "', f[1] or '', conv .. '" CONV_F_IN "', f[2] or '0')\n"                                             \
        "  redis.call('SREM', mp_key('" KEY_USER_GROUPS_NAME "', u), gid)\n"                                 \
        "end\n"                                                                                              \
        "local function join(u, role, ts)\n"                                                                 \
        "  local o = redis.call('HINCRBY', gkey, '" GROUP_F_JOINS "', 1)\n"                                  \
        "  redis.call('HSET', mkey, u, role .. ' ' .. o .. ' ' .. ts)\n"                                     \
        "  local n = redis.call('HGET', gkey, '" GROUP_F_COUNT "') or '0'\n"                                 \
        "  if split then rec.jn[tostring(u)] = n return end\n"                                               \
        "  redis.call('SADD', mp_key('" KEY_USER_GROUPS_NAME "', u), gid)\n"                                 \
        "  redis.call('HSET', mp_key('" KEY_CONV_NAME "', u), conv .. '" CONV_F_READ_IN "', n)\n"            \
        "end\n"                                                                                              \
        "local function state(ts, deleted)\n"                                                                \
        "  local ver = redis.call('HINCRBY', gkey, '" GROUP_F_VER "', 1)\n"                                  \
        "  if deleted then\n"                                                                                \
        "    redis.call('XADD', mq, '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_TYPE           \
        "', '" MQ_TYPE_GROUP_STATE "', '" MQ_F_GROUP "', gid, '" MQ_F_TS "', ts, '" MQ_F_VER                 \
        "', ver, '" MQ_F_DELETED "', '1')\n"                                                                 \
        "    return\n"                                                                                       \
        "  end\n"                                                                                            \
        "  local g = redis.call('HMGET', gkey, '" GROUP_F_NAME "', '" GROUP_F_OWNER "', '" GROUP_F_CREATED   \
        "')\n"                                                                                               \
        "  local m, s = roles(), {}\n"                                                                       \
        "  for _, u in ipairs(sorted(m)) do s[#s + 1] = u .. ':' .. m[u][1] .. ':' .. m[u][2] .. ':' .. "    \
        "m[u][3] end\n"                                                                                      \
        "  redis.call('XADD', mq, '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_TYPE             \
        "', '" MQ_TYPE_GROUP_STATE "', '" MQ_F_GROUP "', gid, '" MQ_F_TS "', ts, '" MQ_F_NAME                \
        "', g[1], '" MQ_F_OWNER "', g[2], '" MQ_F_CREATED "', g[3], '" MQ_F_VER "', ver, '" MQ_F_MEMBERS     \
        "', "                                                                                                \
        "table.concat(s, ' '))\n"                                                                            \
        "end\n"                                                                                              \
        "local function crowded(uids)\n"                                                                     \
        "  for _, u in ipairs(uids) do\n"                                                                    \
        "    local n = counts[tostring(u)] or redis.call('SCARD', mp_key('" KEY_USER_GROUPS_NAME "', u))\n"  \
        "    if n >= max_per_user then\n"                                                                    \
        "      return {14, 'user ' .. u .. ' is in ' .. max_per_user .. ' groups already "                   \
        "(group.max_per_user)'}\n"                                                                           \
        "    end\n"                                                                                          \
        "  end\n"                                                                                            \
        "end\n"                                                                                              \
        "local function full()\n"                                                                            \
        "  return {14, 'a group has at most ' .. max_members .. ' members (group.max_members)'}\n"           \
        "end\n"

_Static_assert(CHANGE_ARGV_OP == 19 && CHANGE_ARGV_WAIT == 16 && CHANGE_ARGV_LIVE == 5 &&
                   CHANGE_ARGV_RESTORED == 17,
               "GROUP_CHANGE_LUA names these ARGV");

/* After a change (out): a split change's pending record is stored, and every pending record of the group
 * (an earlier request's left behind first, by mid) is returned for magpie-http to complete. */
#define GROUP_PENDING_LUA                                                                                    \
    "if rec and out[1] == 0 and #rec.ev > 0 then\n"                                                          \
    "  local sh, seen = {}, {}\n"                                                                            \
    "  local function add(u) local s = mp_shard(u) if not seen[s] then seen[s] = true sh[#sh + 1] = s end "  \
    "end\n"                                                                                                  \
    "  for _, e in ipairs(rec.ev) do for _, u in ipairs(e.u) do add(u) end end\n"                            \
    "  for u in pairs(rec.jn) do add(u) end\n"                                                               \
    "  for u in pairs(rec.fz) do add(u) end\n"                                                               \
    "  rec.sh = sh\n"                                                                                        \
    "  redis.call('HSET', pkey, rec.ev[1].m, cjson.encode(rec))\n"                                           \
    "end\n"                                                                                                  \
    "local pend = {}\n"                                                                                      \
    "if MP_S > 1 then\n"                                                                                     \
    "  local h = redis.call('HGETALL', pkey)\n"                                                              \
    "  local ids = {}\n"                                                                                     \
    "  for i = 1, #h, 2 do ids[#ids + 1] = {h[i], h[i + 1]} end\n"                                           \
    "  table.sort(ids, function(a, b) return #a[1] < #b[1] or (#a[1] == #b[1] and a[1] < b[1]) end)\n"       \
    "  for _, p in ipairs(ids) do pend[#pend + 1] = p[1] pend[#pend + 1] = p[2] end\n"                       \
    "end\n"                                                                                                  \
    "if (waits and out[1] == 0) or #pend > 0 then return {out, pubs, pend} end\n"                            \
    "return out\n"

/* A change script: body runs as a function, so that with WAIT every success ({0, ...}) comes back as
 * {result, pubs} (group_run publishes pubs after the WAIT). */
#define CHANGE_LUA(body)                                                                                     \
    GROUP_LUA_LIB GROUP_HEAD_LUA GROUP_CHANGE_LUA "local function change()\n" body "end\n"                   \
                                                  "local out = change()\n" GROUP_PENDING_LUA

struct gscript {
    const char *name; /* for logs */
    const char *src;
    char sha[41]; /* SHA-1 of src in hex: what EVALSHA names it by */
};

/* The event mid generator (group_lua.h). KEYS: KEY_IDGEN. ARGV: ID_EPOCH_MS. Returns {ms, seq}. */
static struct gscript idgen_lua = {"idgen", GROUP_IDGEN_LUA, ""};

/* POST /groups. ARGV[X] the name, X+1.. the members, the owner (the caller) first. Event slot 0:
 * group_created. */
static struct gscript create_lua = {
    "create",
    CHANGE_LUA("if redis.call('EXISTS', gkey) == 1 then return {-2, 'group id ' .. gid .. ' is taken'} end\n"
               "local uids = list(X + 1, #ARGV)\n"
               "decide(uids)\n"
               "if #uids > max_members then return full() end\n"
               "local no = crowded(uids)\n"
               "if no then return no end\n"
               "if not counters(uids) then return {-3} end\n"
               "local pr, err = fan(0, uids)\n"
               "if not pr then return {-2, err} end\n"
               "local ts = ev(0, 1)\n"
               "redis.call('HSET', gkey, '" GROUP_F_NAME "', ARGV[X], '" GROUP_F_OWNER
               "', by, '" GROUP_F_CREATED "', ts, '" GROUP_F_COUNT "', 0, '" GROUP_F_JOINS "', 0)\n"
               "for i, u in ipairs(uids) do join(u, i == 1 and 'o' or 'm', ts) end\n"
               "emit(0, pr)\n"
               "state(ts)\n"
               "return result()\n"),
    ""};

/* GET /groups/<id>. ARGV: gid, caller. */
static struct gscript get_lua = {
    "get",
    KEY_LUA_LIB GROUP_HEAD_LUA
    "if redis.call('EXISTS', gkey) == 0 then return {15, 'no such group'} end\n"
    "if redis.call('HEXISTS', mkey, by) == 0 then return {14, 'not a member'} end\n"
    "return result()\n",
    ""};

/* GET /groups. ARGV: the caller, then (at redis.stream_shards > 1) the caller's groups of one shard, the
 * script's (without: its KEY_USER_GROUPS). Returns per group (by id): id, name, the caller's role, member
 * count. */
static struct gscript list_lua = {
    "list",
    KEY_LUA_LIB "local gs = {unpack(ARGV, 2)}\n"
                "if #ARGV == 1 then gs = redis.call('SMEMBERS', mp_key('" KEY_USER_GROUPS_NAME
                "', ARGV[1])) end\n"
                "table.sort(gs, function(a, b) return tonumber(a) < tonumber(b) end)\n"
                "local out = {}\n"
                "for _, g in ipairs(gs) do\n"
                "  local k = mp_key('" KEY_GROUP_NAME "', g)\n"
                "  local v = redis.call('HGET', k .. '" GROUP_MEMBERS_SUFFIX "', ARGV[1])\n"
                "  local name = redis.call('HGET', k, '" GROUP_F_NAME "')\n"
                "  if v and name then\n"
                "    out[#out + 1] = g\n"
                "    out[#out + 1] = name\n"
                "    out[#out + 1] = string.sub(v, 1, 1)\n"
                "    out[#out + 1] = redis.call('HLEN', k .. '" GROUP_MEMBERS_SUFFIX "')\n"
                "  end\n"
                "end\n"
                "return out\n",
    ""};

/* The checks every change of an existing group starts with: it exists, the caller is a member (me). */
#define EXISTING_LUA                                                                                         \
    "if redis.call('EXISTS', gkey) == 0 then return {15, 'no such group'} end\n"                             \
    "local m = roles()\n"                                                                                    \
    "local me = m[by]\n"                                                                                     \
    "if not me then return {14, 'not a member'} end\n"

/* POST /groups/<id>. ARGV[X] the new name ("" = unchanged), X+1 how many admins to add (k), then those k
 * uids, then the uids to make plain members again. Event slot 0: group_renamed (when ARGV[X] is set). */
static struct gscript update_lua = {
    "update",
    CHANGE_LUA(
        EXISTING_LUA
        "if me[1] == 'm' then return {14, 'only the owner or an admin may change the group'} end\n"
        "local na = tonumber(ARGV[X + 1])\n"
        "local adds, rems = list(X + 2, X + 1 + na), list(X + 2 + na, #ARGV)\n"
        "if (#adds > 0 or #rems > 0) and me[1] ~= 'o' then\n"
        "  return {14, 'only the owner may change admins'}\n"
        "end\n"
        "local changed = false\n"
        "for _, u in ipairs(adds) do\n"
        "  if not m[u] then return {15, 'user ' .. u .. ' is not a member'} end\n"
        "  if m[u][1] == 'o' then return {2, 'the owner cannot be made an admin'} end\n"
        "  if m[u][1] ~= 'a' then changed = true end\n"
        "end\n"
        "for _, u in ipairs(rems) do\n"
        "  if not m[u] then return {15, 'user ' .. u .. ' is not a member'} end\n"
        "  if m[u][1] == 'o' then return {2, 'the owner is not an admin'} end\n"
        "  if m[u][1] ~= 'm' then changed = true end\n"
        "end\n"
        "local rename = ARGV[X] ~= '' and ARGV[X] ~= redis.call('HGET', gkey, '" GROUP_F_NAME "')\n"
        "if not rename and not changed then return result() end\n"
        "local pr\n"
        "if rename then\n"
        "  local all = sorted(m)\n"
        "  decide(all)\n"
        "  if not counters(all) then return {-3} end\n"
        "  local err\n"
        "  pr, err = fan(0, all)\n"
        "  if not pr then return {-2, err} end\n"
        "  redis.call('HSET', gkey, '" GROUP_F_NAME "', ARGV[X])\n"
        "end\n"
        "for _, u in ipairs(adds) do redis.call('HSET', mkey, u, 'a ' .. m[u][2] .. ' ' .. m[u][3]) end\n"
        "for _, u in ipairs(rems) do redis.call('HSET', mkey, u, 'm ' .. m[u][2] .. ' ' .. m[u][3]) end\n"
        "if rename then emit(0, pr) end\n"
        "state(ev(0, 1))\n"
        "return result()\n"),
    ""};

/* POST /groups/<id>/members. ARGV[X] how many uids to add (k), then those k, then the uids to remove.
 * Event slot 0: member_removed (when there are any), slot 1: member_added (likewise). */
static struct gscript members_lua = {
    "members",
    CHANGE_LUA(
        EXISTING_LUA
        "if me[1] == 'm' then return {14, 'only the owner or an admin may add or remove members'} end\n"
        "local na = tonumber(ARGV[X])\n"
        "local adds, rems = list(X + 1, X + na), list(X + 1 + na, #ARGV)\n"
        "local gone, n = {}, 0\n"
        "for _ in pairs(m) do n = n + 1 end\n"
        "for _, u in ipairs(rems) do\n"
        "  if not m[u] then return {15, 'user ' .. u .. ' is not a member'} end\n"
        "  if RANK[m[u][1]] >= RANK[me[1]] then\n"
        "    return {14, 'user ' .. u .. ' may not be removed by you (owner > admin > member)'}\n"
        "  end\n"
        "  gone[u] = true\n"
        "end\n"
        "for _, u in ipairs(adds) do\n"
        "  if m[u] then return {2, 'user ' .. u .. ' is already a member'} end\n"
        "end\n"
        "if n - #rems + #adds > max_members then return full() end\n"
        "local no = crowded(adds)\n"
        "if no then return no end\n"
        "local old, final = sorted(m), {}\n"
        "for _, u in ipairs(old) do if not gone[u] then final[#final + 1] = u end end\n"
        "for _, u in ipairs(adds) do final[#final + 1] = u end\n"
        "decide(old, adds)\n"
        "if not counters(old) or not counters(adds) then return {-3} end\n"
        "local pr0, pr1, err\n"
        "if #rems > 0 then\n"
        "  pr0, err = fan(0, old)\n"
        "  if not pr0 then return {-2, err} end\n"
        "end\n"
        "if #adds > 0 then\n"
        "  pr1, err = fan(1, final)\n"
        "  if not pr1 then\n"
        "    if pr0 then mp_unfan(pr0) end\n"
        "    return {-2, err}\n"
        "  end\n"
        "end\n"
        "local ts = ev(0, 1)\n"
        "if pr0 then\n"
        "  emit(0, pr0)\n"
        "  for _, u in ipairs(rems) do freeze(u) end\n"
        "end\n"
        "if pr1 then\n"
        "  ts = ev(1, 1)\n"
        "  for _, u in ipairs(adds) do join(u, 'm', ts) end\n"
        "  emit(1, pr1)\n"
        "end\n"
        "if pr0 or pr1 then state(ts) end\n"
        "return result()\n"),
    ""};

/* POST /groups/<id>/leave. Event slot 0: member_removed {members: [caller]}. */
static struct gscript leave_lua = {
    "leave",
    CHANGE_LUA(EXISTING_LUA
               "local old = sorted(m)\n"
               "decide(old)\n"
               "if not counters(old) then return {-3} end\n"
               "local pr, err = fan(0, old)\n"
               "if not pr then return {-2, err} end\n"
               "local ts = ev(0, 1)\n"
               "emit(0, pr)\n"
               "freeze(by)\n"
               "if #old == 1 then\n"
               "  state(ts, true)\n"
               "  redis.call('DEL', gkey, mkey)\n"
               "  return {0, 'deleted'}\n"
               "end\n"
               "if me[1] == 'o' then\n"
               "  local heir\n"
               "  for _, u in ipairs(old) do if u ~= by and m[u][1] == 'a' then heir = u break end end\n"
               "  if not heir then for _, u in ipairs(old) do if u ~= by then heir = u break end end end\n"
               "  redis.call('HSET', mkey, heir, 'o ' .. m[heir][2] .. ' ' .. m[heir][3])\n"
               "  redis.call('HSET', gkey, '" GROUP_F_OWNER "', heir)\n"
               "  state(ts)\n"
               "  return {0, 'owner', heir}\n"
               "end\n"
               "state(ts)\n"
               "return {0, 'left'}\n"),
    ""};

/* DELETE /groups/<id>. Event slot 0: group_deleted. */
static struct gscript delete_lua = {
    "delete",
    CHANGE_LUA(EXISTING_LUA "if me[1] ~= 'o' then return {14, 'only the owner may delete the group'} end\n"
                            "local old = sorted(m)\n"
                            "decide(old)\n"
                            "if not counters(old) then return {-3} end\n"
                            "local pr, err = fan(0, old)\n"
                            "if not pr then return {-2, err} end\n"
                            "emit(0, pr)\n"
                            "for _, u in ipairs(old) do freeze(u) end\n"
                            "state(ev(0, 1), true)\n"
                            "redis.call('DEL', gkey, mkey)\n"
                            "return {0, #old}\n"),
    ""};

/* A split change's member part in one shard (the top comment, "The split"). ARGV: 1 the pending record
 * (KEY_GCHG's JSON), 2 the shard, 3 timeline.keep_s, 4 timeline.max_entries, 5 the live node ids, 6 "1"
 * when the caller WAITs. Returns {0, pubs, "<uid> <seq> ..." of each event} (a retry: the first's seqs,
 * nothing written), or a refusal as the change scripts' ({-3}, {-2, why}). */
static struct gscript part_lua = {
    "change part",
    GROUP_LUA_LIB
    "local rec, shard, keep, maxlen, live = cjson.decode(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local waits = ARGV[6] == '1'\n" GROUP_PUBLISH_LUA(
        "shard") "local gid = rec.g\n"
                 "local conv = 'g' .. gid\n"
                 "local function grcv(e) return mp_skey('" KEY_GRCV_NAME "', shard, e.m) end\n"
                 "local out = {0, pubs}\n"
                 "if redis.call('EXISTS', grcv(rec.ev[1])) == 1 then\n"
                 "  for _, e in ipairs(rec.ev) do out[#out + 1] = redis.call('GET', grcv(e)) or '' end\n"
                 "  return out\n"
                 "end\n"
                 "local mine, all, prs = {}, {}, {}\n"
                 "for k, e in ipairs(rec.ev) do\n"
                 "  mine[k] = {}\n"
                 "  for _, u in ipairs(e.u) do\n"
                 "    if mp_shard(u) == shard then mine[k][#mine[k] + 1] = u all[#all + 1] = u end\n"
                 "  end\n"
                 "end\n"
                 "if not mp_counters_ok(all, mp_sharded('" KEY_SEQ_RESTORED_NAME
                 "', shard)) then return {-3} end\n"
                 "for k, e in ipairs(rec.ev) do\n"
                 "  local pr, err = mp_fanout(mine[k], e.m, conv, keep, maxlen)\n"
                 "  if not pr then\n"
                 "    for j = 1, k - 1 do mp_unfan(prs[j]) end\n"
                 "    return {-2, err}\n"
                 "  end\n"
                 "  prs[k] = pr\n"
                 "end\n"
                 "for u, f in pairs(rec.fz) do\n"
                 "  if mp_shard(u) == shard then\n"
                 "    redis.call('HSET', mp_key('" KEY_CONV_NAME "', u), conv .. '" CONV_F_LAST
                 "', f[1], conv .. '" CONV_F_IN "', f[2])\n"
                 "    redis.call('SREM', mp_key('" KEY_USER_GROUPS_NAME "', u), gid)\n"
                 "  end\n"
                 "end\n"
                 "for u, n in pairs(rec.jn) do\n"
                 "  if mp_shard(u) == shard then\n"
                 "    redis.call('SADD', mp_key('" KEY_USER_GROUPS_NAME "', u), gid)\n"
                 "    redis.call('HSET', mp_key('" KEY_CONV_NAME "', u), conv .. '" CONV_F_READ_IN "', n)\n"
                 "  end\n"
                 "end\n"
                 "for k, e in ipairs(rec.ev) do\n"
                 "  local seqs = table.concat(prs[k], ' ')\n"
                 "  redis.call('SET', grcv(e), seqs, 'EX', keep)\n"
                 "  out[#out + 1] = seqs\n"
                 "  if #prs[k] > 0 then\n"
                 "    local mk = mp_skey('" KEY_MSG_NAME "', shard, e.m)\n"
                 "    redis.call('HSET', mk, '" MSG_F_PACKET "', e.p, '" MSG_F_GROUP "', gid)\n"
                 "    redis.call('EXPIRE', mk, keep)\n"
                 "    publish('" GROUP_DELIVERY_HEAD "' .. e.t .. '\\n' .. seqs .. '\\n' .. e.p)\n"
                 "  end\n"
                 "end\n"
                 "return out\n",
    ""};

/* A split change's last step, in the group's shard: the stream entry of each event with every member's seq
 * (what the parts returned), then the pending record goes. ARGV: 1 gid, 2 the record's field (its first
 * mid), 3.. "<uid> <seq> ..." of each event. Returns 1, or 0 when the record is gone (done before). */
static struct gscript final_lua = {
    "change stream entry",
    KEY_LUA_LIB GROUP_EVENT_XADD_LUA
    "local gid = ARGV[1]\n"
    "local pkey = mp_key('" KEY_GCHG_NAME "', gid)\n"
    "local rec = redis.call('HGET', pkey, ARGV[2])\n"
    "if not rec then return 0 end\n"
    "rec = cjson.decode(rec)\n"
    "local mq = mp_sharded('" KEY_MQ_NAME "', mp_shard(gid))\n"
    "for k, e in ipairs(rec.ev) do\n"
    "  local s = {}\n"
    "  for u, q in string.gmatch(ARGV[2 + k] or '', '(%d+) (%d+)') do s[#s + 1] = u .. ':' .. q end\n"
    "  event_xadd(mq, gid, e.m, e.t, e.b, table.concat(s, ' '))\n"
    "end\n"
    "redis.call('HDEL', pkey, ARGV[2])\n"
    "return 1\n",
    ""};

static struct gscript *const scripts[] = {&idgen_lua,   &create_lua, &get_lua,    &list_lua, &update_lua,
                                          &members_lua, &leave_lua,  &delete_lua, &part_lua, &final_lua};
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha_init(void)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    for (size_t i = 0; i < MP_ARRAY_LEN(scripts); i++) {
        /* S first (keys.h: the scripts build members' keys); kept for the process. Out of memory at the
         * first request: the script keeps its source without S and fails loudly when run. */
        char *src = keys_lua(scripts[i]->src);
        if (src != NULL)
            scripts[i]->src = src;
        SHA1((const unsigned char *)scripts[i]->src, strlen(scripts[i]->src), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(scripts[i]->sha + 2 * j, 3, "%02x", md[j]);
    }
}

/* ---- argument lists ---- */

/* A script's argument vector, every string owned. */
struct args {
    char **v;
    size_t *len;
    int n, cap;
};

static int args_add(struct args *a, const char *s, size_t len)
{
    char *copy;
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, (size_t)cap * sizeof(*v));
        size_t *l;
        if (v == NULL)
            return -1;
        a->v = v;
        if ((l = realloc(a->len, (size_t)cap * sizeof(*l))) == NULL)
            return -1;
        a->len = l;
        a->cap = cap;
    }
    if ((copy = malloc(len + 1)) == NULL)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    a->v[a->n] = copy;
    a->len[a->n++] = len;
    return 0;
}

static int args_str(struct args *a, const char *s)
{
    return args_add(a, s, strlen(s));
}

static int args_int(struct args *a, long long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%lld", v);
    return args_add(a, buf, (size_t)n);
}

static void args_free(struct args *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    free(a->len);
    memset(a, 0, sizeof(*a));
}

/* Run s with numkeys keys by EVALSHA (EVAL when Redis has not got it cached). route, when not NULL, is sent
 * as one more key in front (numkeys + 1; the scripts read their ARGV only, so it changes nothing for them):
 * the key of the slot the script works in (its group's, or its caller's), so that on a Redis Cluster the
 * script goes to that slot's master -- with no key a cluster client sends it to any master, and a master
 * that does not serve the slot refuses every key the script builds ("non local key"). The reply (caller
 * frees; may be an error reply), or NULL when Redis is unavailable or out of memory. */
static redisReply *script_run(struct call *c, struct gscript *s, const char *route, int numkeys,
                              const struct args *a)
{
    int head = route != NULL ? 4 : 3;
    const char **argv = malloc(((size_t)a->n + 4) * sizeof(*argv));
    size_t *lens = malloc(((size_t)a->n + 4) * sizeof(*lens));
    char nk[16];
    redisReply *r = NULL;

    pthread_once(&sha_once, sha_init);
    if (argv == NULL || lens == NULL)
        goto done;
    snprintf(nk, sizeof(nk), "%d", numkeys + (route != NULL));
    argv[0] = "EVALSHA";
    argv[1] = s->sha;
    argv[2] = nk;
    if (route != NULL)
        argv[3] = route;
    for (int i = 0; i < a->n; i++) {
        argv[i + head] = a->v[i];
        lens[i + head] = a->len[i];
    }
    for (int i = 0; i < head; i++)
        lens[i] = strlen(argv[i]);
    r = rds_cmdargv(&c->w->rds, a->n + head, argv, lens);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = s->src;
        lens[0] = 4;
        lens[1] = strlen(s->src);
        r = rds_cmdargv(&c->w->rds, a->n + head, argv, lens);
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_error("group script failed script=%s reason=\"%s\"", s->name, r->str);
done:
    free(argv);
    free(lens);
    return r;
}

/* ---- the request's parts ---- */

/* The group id of the path (c->param): 0 with *gid, or -1 after answering 15 (not a group id at all). */
static int path_gid(struct call *c, int64_t *gid)
{
    size_t len = strlen(c->param);
    long long n = 0;
    if (len == 0 || len > 15 || strspn(c->param, "0123456789") != len)
        goto unknown;
    for (size_t i = 0; i < len; i++)
        n = n * 10 + (c->param[i] - '0');
    if (n <= 0 || n > GROUP_MAX_ID)
        goto unknown;
    *gid = n;
    return 0;
unknown:
    reply_msg(c, API_NOT_FOUND, "no such group", NULL);
    return -1;
}

static int invalid(struct call *c, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_msg(c, API_INVALID, msg, NULL);
    return -1;
}

/* The name field: 0 with *out (borrowed), 1 when absent, -1 after answering code 2 (not a string, 0 or
 * more than GROUP_NAME_MAX_CHARS characters, a control character). */
static int field_name(struct call *c, int required, const char **out)
{
    json_t *v = c->body ? json_object_get(c->body, "name") : NULL;
    const unsigned char *s;
    size_t len, chars = 0;

    if (v == NULL || json_is_null(v))
        return required ? invalid(c, "name: missing") : 1;
    if (!json_is_string(v))
        return invalid(c, "name: must be a string");
    s = (const unsigned char *)json_string_value(v);
    len = json_string_length(v);
    /* jansson hands over valid UTF-8 only: characters are the bytes that do not continue one */
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return invalid(c, "name: control characters are not allowed");
        if ((s[i] & 0xc0) != 0x80)
            chars++;
    }
    if (chars == 0 || chars > GROUP_NAME_MAX_CHARS)
        return invalid(c, "name: must be 1 to %d characters", GROUP_NAME_MAX_CHARS);
    *out = (const char *)s;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One uid of a list: a positive integer, or a string of digits (as field_uid takes). 0 or -1. */
static int uid_value(json_t *v, int64_t *out)
{
    long long n = 0;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0 || len > 16 || strspn(s, "0123456789") != len)
            return -1;
        for (size_t i = 0; i < len; i++)
            n = n * 10 + (s[i] - '0');
    } else {
        return -1;
    }
    if (n <= 0 || n > GROUP_MAX_ID)
        return -1;
    *out = n;
    return 0;
}

/* A list of uids. */
struct uids {
    int64_t *v;
    size_t n;
};

static int has_uid(const struct uids *u, int64_t uid)
{
    for (size_t i = 0; i < u->n; i++)
        if (u->v[i] == uid)
            return 1;
    return 0;
}

/* The uid list `name`: 0 with *out (malloc'd; free out->v), 1 when absent (*out empty), -1 after answering:
 * code 2 for a list that is not one of uids or names one twice, 14 for one longer than a group may be. */
static int field_uids(struct call *c, const char *name, struct uids *out)
{
    json_t *v = c->body ? json_object_get(c->body, name) : NULL, *item;
    int64_t *sorted = NULL;
    size_t i, max = (size_t)app.cfg.group.max_members;

    out->v = NULL;
    out->n = 0;
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_array(v))
        return invalid(c, "%s: must be an array of user ids", name);
    if (json_array_size(v) > max) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s: a group has at most %zu members (group.max_members)", name, max);
        reply_msg(c, API_FORBIDDEN, msg, NULL);
        return -1;
    }
    if ((out->v = calloc(json_array_size(v) + 1, sizeof(*out->v))) == NULL ||
        (sorted = calloc(json_array_size(v) + 1, sizeof(*sorted))) == NULL) {
        free(out->v);
        out->v = NULL;
        reply_unavailable(c, "memory");
        return -1;
    }
    json_array_foreach(v, i, item)
    {
        if (uid_value(item, &out->v[i]) != 0) {
            free(out->v);
            free(sorted);
            out->v = NULL;
            return invalid(c, "%s: must be an array of user ids", name);
        }
    }
    out->n = json_array_size(v);
    memcpy(sorted, out->v, out->n * sizeof(*sorted));
    qsort(sorted, out->n, sizeof(*sorted), cmp_i64);
    for (i = 1; i < out->n; i++)
        if (sorted[i] == sorted[i - 1]) {
            long long dup = (long long)sorted[i];
            free(out->v);
            free(sorted);
            out->v = NULL;
            out->n = 0;
            return invalid(c, "%s: user %lld is listed twice", name, dup);
        }
    free(sorted);
    return 0;
}

/* Does any uid appear in both lists? Answers code 2 then and returns -1. */
static int disjoint(struct call *c, const struct uids *a, const char *an, const struct uids *b,
                    const char *bn)
{
    for (size_t i = 0; i < a->n; i++)
        if (has_uid(b, a->v[i]))
            return invalid(c, "user %lld is in both %s and %s", (long long)a->v[i], an, bn);
    return 0;
}

/* 0 when every uid has a users row; -1 after answering (15 naming the first unknown one, or 20). */
static int users_exist(struct call *c, const struct uids *u)
{
    MYSQL *m;
    MYSQL_RES *res;
    MYSQL_ROW row;
    int64_t *found;
    size_t nfound = 0;
    char *sql, *p;
    int rc = 0;

    if (u->n == 0)
        return 0;
    if ((m = db_conn(&c->w->db)) == NULL) {
        reply_unavailable(c, "mysql");
        return -1;
    }
    if ((sql = malloc(64 + u->n * 24)) == NULL || (found = calloc(u->n, sizeof(*found))) == NULL) {
        free(sql);
        reply_unavailable(c, "memory");
        return -1;
    }
    p = sql + sprintf(sql, "SELECT id FROM users WHERE id IN (");
    for (size_t i = 0; i < u->n; i++)
        p += sprintf(p, "%s%lld", i ? "," : "", (long long)u->v[i]);
    strcpy(p, ")");
    if (mysql_real_query(m, sql, (unsigned long)strlen(sql)) != 0 || (res = mysql_store_result(m)) == NULL) {
        if (db_check_error(&c->w->db) != MP_EAGAIN)
            log_error("group users query failed uid=%lld error=\"%s\"", (long long)c->uid, mysql_error(m));
        free(sql);
        free(found);
        reply_unavailable(c, "mysql");
        return -1;
    }
    while ((row = mysql_fetch_row(res)) != NULL && nfound < u->n)
        if (row[0] != NULL)
            found[nfound++] = strtoll(row[0], NULL, 10);
    mysql_free_result(res);
    qsort(found, nfound, sizeof(*found), cmp_i64);
    for (size_t i = 0; i < u->n; i++)
        if (bsearch(&u->v[i], found, nfound, sizeof(*found), cmp_i64) == NULL) {
            char msg[64];
            snprintf(msg, sizeof(msg), "no such user: %lld", (long long)u->v[i]);
            reply_msg(c, API_NOT_FOUND, msg, NULL);
            rc = -1;
            break;
        }
    free(sql);
    free(found);
    return rc;
}

/* ---- events ---- */

/* One s event of a change: its mid and time, the packet members get (without seq), the event JSON. */
struct gevent {
    int64_t mid, ts;
    char *packet;
    size_t packet_len;
    char *body;
};

static void event_free(struct gevent *e)
{
    free(e->packet);
    free(e->body);
    memset(e, 0, sizeof(*e));
}

/* Mint the event's mid (GROUP_IDGEN_LUA) and build its packet: the event object is {"event": name,
 * "group", "by"} followed by the members of extra (stolen). 0, or -1 after answering (Redis down, out of
 * memory). */
static int event_make(struct call *c, struct gevent *e, int64_t gid, const char *name, json_t *extra)
{
    struct args a = {0};
    redisReply *r = NULL;
    json_t *ev =
        json_pack("{s:s,s:I,s:I}", "event", name, "group", (json_int_t)gid, "by", (json_int_t)c->uid);
    int rc = -1;

    memset(e, 0, sizeof(*e));
    if (ev == NULL || extra == NULL || json_object_update(ev, extra) != 0 || args_str(&a, KEY_IDGEN) != 0 ||
        args_int(&a, ID_EPOCH_MS) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    r = script_run(c, &idgen_lua, NULL, 1, &a);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        reply_unavailable(c, "redis");
        goto done;
    }
    e->mid = ((int64_t)r->element[0]->integer << (ID_NODE_BITS + ID_SEQ_BITS)) |
             ((int64_t)ID_MAX_NODE << ID_SEQ_BITS) | (int64_t)r->element[1]->integer;
    e->ts = (int64_t)r->element[0]->integer + ID_EPOCH_MS;
    if ((e->body = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL ||
        (e->packet = packet_event(gid, e->body, strlen(e->body), e->ts, e->mid, &e->packet_len)) == NULL) {
        event_free(e);
        reply_unavailable(c, "memory");
        goto done;
    }
    rc = 0;
done:
    json_decref(ev);
    json_decref(extra);
    args_free(&a);
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

static json_t *uids_json(const struct uids *u, int64_t first)
{
    json_t *a = json_array();
    if (a != NULL && first > 0)
        json_array_append_new(a, json_integer(first));
    for (size_t i = 0; a != NULL && i < u->n; i++)
        json_array_append_new(a, json_integer(u->v[i]));
    return a;
}

/* The facts of other shards a split change's group part checks (the top comment, "The split"), read before
 * it runs: restored, "1" when every shard but the group's has KEY_SEQ_RESTORED, else ",<uid>,<uid>,": the
 * users outside the group's shard (its members, adds, also) that have a KEY_SEQ; counts, "<uid>:<SCARD of
 * its KEY_USER_GROUPS> ..." of the users of adds (and also, when > 0) outside the group's shard. */
struct gchecks {
    char *restored;
    char *counts;
};

/* Append ",<uid>" to k->restored (its room: *cap) when uid, outside the group's shard, has a KEY_SEQ. */
static int have_counter(struct call *c, int64_t gshard, long long uid, struct gchecks *k, size_t *cap)
{
    char key[64];
    redisReply *r;
    if (key_shard(uid) == gshard)
        return 0;
    key_tagged(key, sizeof(key), KEY_SEQ, uid);
    if ((r = rds_cmd(&c->w->rds, "EXISTS %s", key)) == NULL || r->type != REDIS_REPLY_INTEGER) {
        if (r != NULL)
            freeReplyObject(r);
        return -1;
    }
    if (r->integer == 1) {
        size_t len = strlen(k->restored);
        char *grown = len + 24 < *cap ? k->restored : realloc(k->restored, *cap = *cap * 2 + 48);
        if (grown == NULL) {
            freeReplyObject(r);
            return -1;
        }
        k->restored = grown;
        snprintf(grown + len, *cap - len, "%lld,", uid);
    }
    freeReplyObject(r);
    return 0;
}

/* Read them (at redis.stream_shards > 1; at 1 nothing). 0, or -1 after answering (Redis down, memory). */
static int checks_read(struct call *c, int64_t gid, const struct uids *adds, int64_t also, struct gchecks *k)
{
    int shards = key_shards(), gshard = key_shard(gid);
    size_t n = adds != NULL ? adds->n : 0, len = 0;
    char key[64];
    redisReply *r;

    int restored = 1;
    size_t cap = 64;
    r = NULL;
    if ((k->counts = calloc(n + 1, 48)) == NULL || (k->restored = strdup("1")) == NULL) {
        reply_unavailable(c, "memory");
        return -1;
    }
    if (shards == 1)
        return 0;
    for (int s = 0; s < shards && restored; s++) {
        if (s == gshard)
            continue;
        snprintf(key, sizeof(key), KEY_SEQ_RESTORED, s);
        if ((r = rds_cmd(&c->w->rds, "EXISTS %s", key)) == NULL || r->type != REDIS_REPLY_INTEGER)
            goto unavailable;
        restored = r->integer == 1;
        freeReplyObject(r);
        r = NULL;
    }
    if (!restored) { /* Redis lost counters, being restored (rare): which users outside have theirs */
        char *grown = realloc(k->restored, cap);
        if (grown == NULL)
            goto unavailable;
        k->restored = strcpy(grown, ",");
        key_tagged(key, sizeof(key), KEY_GROUP_MEMBERS, gid);
        if ((r = rds_cmd(&c->w->rds, "HKEYS %s", key)) == NULL || r->type != REDIS_REPLY_ARRAY)
            goto unavailable;
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                have_counter(c, gshard, atoll(r->element[i]->str), k, &cap) != 0)
                goto unavailable;
        freeReplyObject(r);
        r = NULL;
        for (size_t i = 0; i <= n; i++) {
            int64_t uid = i < n ? adds->v[i] : also;
            if (uid > 0 && have_counter(c, gshard, uid, k, &cap) != 0)
                goto unavailable;
        }
    }
    for (size_t i = 0; i <= n; i++) {
        int64_t uid = i < n ? adds->v[i] : also;
        if (uid <= 0 || key_shard(uid) == gshard)
            continue;
        key_tagged(key, sizeof(key), KEY_USER_GROUPS, uid);
        if ((r = rds_cmd(&c->w->rds, "SCARD %s", key)) == NULL || r->type != REDIS_REPLY_INTEGER)
            goto unavailable;
        len += (size_t)snprintf(k->counts + len, 48, "%s%lld:%lld", len ? " " : "", (long long)uid,
                                (long long)r->integer);
        freeReplyObject(r);
        r = NULL;
    }
    return 0;
unavailable:
    if (r != NULL)
        freeReplyObject(r);
    reply_unavailable(c, "redis");
    return -1;
}

/* The ARGV every change script starts with (the layout at the top of this file); ev holds
 * GROUP_EVENTS slots, an empty one (mid 0) passed as "". */
static int args_change(struct args *a, int64_t gid, int64_t uid, const struct gevent *ev,
                       const struct gchecks *chk)
{
    const struct magpie_config *cfg = &app.cfg;
    int64_t now = mp_now_ms();
    int rc = args_int(a, gid) | args_int(a, uid) | args_int(a, cfg->timeline.keep_s) |
             args_int(a, cfg->timeline.max_entries) | args_str(a, ",") /* CHANGE_ARGV_LIVE */ |
             args_int(a, cfg->group.max_members) | args_int(a, cfg->group.max_per_user);
    for (int k = 0; k < GROUP_EVENTS; k++) {
        if (ev[k].mid == 0) {
            rc |= args_str(a, "") | args_int(a, now) | args_str(a, "") | args_str(a, "");
            continue;
        }
        rc |= args_int(a, ev[k].mid) | args_int(a, ev[k].ts) | args_add(a, ev[k].packet, ev[k].packet_len) |
              args_str(a, ev[k].body);
    }
    if (rc != 0 || a->n != CHANGE_ARGV_WAIT - 1)
        return -1;
    rc = args_str(a, cfg->redis.min_replicas_acked > 0 ? "1" : "") |
         args_str(a, chk->restored != NULL ? chk->restored : "1") |
         args_str(a, chk->counts != NULL ? chk->counts : "");
    return rc != 0 || a->n != CHANGE_ARGV_OP - 1 ? -1 : 0;
}

static int args_uids(struct args *a, const struct uids *u)
{
    int rc = 0;
    for (size_t i = 0; i < u->n; i++)
        rc |= args_int(a, u->v[i]);
    return rc;
}

/* Publish a script's {channel, payload, ...} after its WAIT (SPUBLISH: CHAN_NODE is sharded, so on a cluster
 * each goes to its slot's master; one that fails is left to Y, as any lost delivery). */
static void publish_pubs(struct call *c, const redisReply *pubs)
{
    for (size_t i = 0; pubs->type == REDIS_REPLY_ARRAY && i + 1 < pubs->elements; i += 2)
        if (pubs->element[i]->type == REDIS_REPLY_STRING && pubs->element[i + 1]->type == REDIS_REPLY_STRING)
            freeReplyObject(rds_cmd(&c->w->rds, "SPUBLISH %b %b", pubs->element[i]->str,
                                    pubs->element[i]->len, pubs->element[i + 1]->str,
                                    pubs->element[i + 1]->len));
}

/* r = {result, ...} becomes result. */
static void unwrap(redisReply **r)
{
    redisReply *outer = *r;
    *r = outer->element[0];
    outer->element[0] = NULL; /* freeReplyObject skips it */
    freeReplyObject(outer);
}

/* A change script's success with WAIT (or with pending records): {result, {channel, payload, ...}, ...}.
 * After the WAIT (MP_OK) the deliveries are published; r becomes the result. */
static int group_durable(struct call *c, redisReply **r)
{
    if (rds_wait(&c->w->rds) != MP_OK)
        return MP_EAGAIN;
    publish_pubs(c, (*r)->element[1]);
    unwrap(r);
    return MP_OK;
}

/* One pending record of a split change (field: its first mid, json: KEY_GCHG's value): the member part in
 * each of its shards, in order, then the stream entries. 0 when all of it is done now (or was before), -1
 * when a part failed or went unanswered (logged; the record stays for the next change of the group). */
static int pending_one(struct call *c, int64_t gid, const redisReply *field, const redisReply *json,
                       const char *live)
{
    json_t *rec = json_loadb(json->str, json->len, 0, NULL);
    json_t *sh = rec != NULL ? json_object_get(rec, "sh") : NULL, *v;
    size_t nev = rec != NULL ? json_array_size(json_object_get(rec, "ev")) : 0, i;
    char **seqs = calloc(nev + 1, sizeof(*seqs));
    struct args fa = {0};
    redisReply *r = NULL;
    char route[64];
    int rc = -1, failed = 0;

    if (rec == NULL || nev == 0 || !json_is_array(sh) || seqs == NULL) {
        log_error("group change left pending: its record is not readable gid=%lld mid=%s", (long long)gid,
                  field->str);
        goto done;
    }
    json_array_foreach(sh, i, v)
    {
        struct args pa = {0};
        const char *shard = json_string_value(v);
        if (shard == NULL)
            goto done;
        snprintf(route, sizeof(route), KEY_SHARDED(KEY_GCHG_NAME), atoi(shard));
        if (args_add(&pa, json->str, json->len) != 0 || args_str(&pa, shard) != 0 ||
            args_int(&pa, app.cfg.timeline.keep_s) != 0 || args_int(&pa, app.cfg.timeline.max_entries) != 0 ||
            args_str(&pa, live) != 0 || args_str(&pa, app.cfg.redis.min_replicas_acked > 0 ? "1" : "") != 0) {
            args_free(&pa);
            goto done;
        }
        r = script_run(c, &part_lua, route, 0, &pa);
        args_free(&pa);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 + nev ||
            r->element[0]->type != REDIS_REPLY_INTEGER || r->element[0]->integer != 0) {
            log_error("group change left pending: a member part failed (completed by the next change of the "
                      "group) gid=%lld mid=%s shard=%s reason=\"%s\"",
                      (long long)gid, field->str, shard,
                      r == NULL                      ? "redis unavailable"
                      : r->type == REDIS_REPLY_ERROR ? r->str
                      : r->type == REDIS_REPLY_ARRAY && r->elements > 1 &&
                              r->element[1]->type == REDIS_REPLY_STRING
                          ? r->element[1]->str
                          : "refused (seq counters not restored)");
            failed = 1; /* the other shards' parts still run: their members get the events now */
            if (r != NULL)
                freeReplyObject(r);
            r = NULL;
            continue;
        }
        if (rds_wait(&c->w->rds) != MP_OK)
            goto done;
        publish_pubs(c, r->element[1]);
        for (size_t k = 0; k < nev; k++) {
            const char *add = r->element[2 + k]->type == REDIS_REPLY_STRING ? r->element[2 + k]->str : "";
            size_t old = seqs[k] != NULL ? strlen(seqs[k]) : 0;
            char *grown = realloc(seqs[k], old + strlen(add) + 2);
            if (grown == NULL)
                goto done;
            snprintf(grown + old, strlen(add) + 2, "%s%s", old > 0 && add[0] ? " " : "", add);
            seqs[k] = grown;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (failed || args_int(&fa, gid) != 0 || args_add(&fa, field->str, field->len) != 0)
        goto done;
    for (size_t k = 0; k < nev; k++)
        if (args_str(&fa, seqs[k] != NULL ? seqs[k] : "") != 0)
            goto done;
    key_tagged(route, sizeof(route), KEY_GROUP, gid);
    r = script_run(c, &final_lua, route, 0, &fa);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        log_error("group change left pending: its stream entry failed (completed by the next change of the "
                  "group) gid=%lld mid=%s",
                  (long long)gid, field->str);
        goto done;
    }
    rc = 0;
done:
    if (r != NULL)
        freeReplyObject(r);
    for (size_t k = 0; seqs != NULL && k < nev; k++)
        free(seqs[k]);
    free(seqs);
    args_free(&fa);
    json_decref(rec);
    return rc;
}

/* Every pending record of the group (the change script's reply, oldest first): stops at the first that
 * stays pending, so the members' timelines keep the events' order. 0 when none is left. */
static int pending_run(struct call *c, int64_t gid, const redisReply *pend, const char *live)
{
    for (size_t i = 0; pend->type == REDIS_REPLY_ARRAY && i + 1 < pend->elements; i += 2) {
        if (pend->element[i]->type != REDIS_REPLY_STRING ||
            pend->element[i + 1]->type != REDIS_REPLY_STRING ||
            pending_one(c, gid, pend->element[i], pend->element[i + 1], live) != 0)
            return -1;
    }
    return 0;
}

/* Run a script about group gid and answer its refusal. Returns its reply when it succeeded ({0, ...};
 * caller frees), or NULL after answering: the script's own code (2, 14, 15) and reason, or code 20. */
static redisReply *group_run(struct call *c, struct gscript *s, struct args *a)
{
    static int64_t warned_ms;
    char *live = a->n >= CHANGE_ARGV_WAIT ? malloc(KEY_LIVE_MAX) : NULL;
    redisReply *r;

    if (a->n >= CHANGE_ARGV_WAIT) { /* a change script: the live node ids, read now */
        if (live == NULL) {
            reply_unavailable(c, "memory");
            return NULL;
        }
        if (keys_live_read(&c->w->rds, app.cfg.push.node_ttl_s, live, KEY_LIVE_MAX) != MP_OK) {
            free(live);
            reply_unavailable(c, "redis");
            return NULL;
        }
        free(a->v[CHANGE_ARGV_LIVE - 1]);
        a->v[CHANGE_ARGV_LIVE - 1] = live;
        a->len[CHANGE_ARGV_LIVE - 1] = strlen(live);
    }
    char route[64]; /* the group's key (ARGV[1] is the gid): the slot of every key the script touches */
    key_tagged(route, sizeof(route), KEY_GROUP, atoll(a->v[0]));
    r = script_run(c, s, route, 0, a);
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? r->element : NULL;
    long long code;

    if (e != NULL && (r->elements == 2 || r->elements == 3) && e[0]->type == REDIS_REPLY_ARRAY &&
        e[0]->elements >= 1 && e[0]->element[0]->type == REDIS_REPLY_INTEGER) {
        /* {result, pubs[, pending records]}: the pending member work first (this change's, and any an
         * earlier request left), so that a refusal too completes what an earlier change left half done. */
        int done = r->elements < 3 || pending_run(c, atoll(a->v[0]), e[2], a->v[CHANGE_ARGV_LIVE - 1]) == 0;
        if (e[0]->element[0]->integer == 0) {
            if (!done) { /* the group changed; members of a shard not yet: not promised, completed later */
                reply_unavailable(c, "redis");
                goto refused;
            }
            if (group_durable(c, &r) == MP_OK)
                return r;
            /* The change is made but too few replicas hold it (redis.min_replicas_acked): not promised. */
            reply_unavailable(c, "redis replicas");
            goto refused;
        }
        unwrap(&r);
        e = r->element;
    }
    if (e == NULL || e[0]->type != REDIS_REPLY_INTEGER) {
        reply_unavailable(c, "redis");
        goto refused;
    }
    code = e[0]->integer;
    if (code == 0 && s != &get_lua && rds_wait(&c->w->rds) != MP_OK) {
        /* The change is made but too few replicas hold it (redis.min_replicas_acked): not promised. */
        reply_unavailable(c, "redis replicas");
        goto refused;
    }
    if (code == 0)
        return r;
    if ((code == API_INVALID || code == API_FORBIDDEN || code == API_NOT_FOUND) && r->elements == 2 &&
        e[1]->type == REDIS_REPLY_STRING) {
        reply_msg(c, (enum api_code)code, e[1]->str, NULL);
        goto refused;
    }
    if (code == -3) {
        int64_t now = mp_now_ms();
        if (now - __atomic_load_n(&warned_ms, __ATOMIC_RELAXED) >= GROUP_WARN_EVERY_MS) {
            __atomic_store_n(&warned_ms, now, __ATOMIC_RELAXED);
            log_warn("group changes refused until magpie-persist has restored the seq counters from MySQL "
                     "(Redis lost them, or was replaced; " KEY_SEQ_RESTORED " is missing) uid=%lld",
                     key_shard(c->uid), (long long)c->uid);
        }
    } else if (code == -2 && r->elements == 2 && e[1]->type == REDIS_REPLY_STRING) {
        log_error("group change refused: a timeline is ahead of its counter, or an id was reused script=%s "
                  "uid=%lld reason=\"%s\"",
                  s->name, (long long)c->uid, e[1]->str);
    }
    reply_unavailable(c, "redis");
refused:
    if (r != NULL)
        freeReplyObject(r);
    return NULL;
}

static const char *role_name(const char *letter)
{
    switch (letter != NULL ? letter[0] : '\0') {
    case 'o':
        return "owner";
    case 'a':
        return "admin";
    default:
        return "member";
    }
}

static long long reply_num(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* [{uid, role}] from a result() reply's elements at from.. (pairs of uid, role letter). */
static json_t *members_json(const redisReply *r, size_t from)
{
    json_t *a = json_array();
    for (size_t i = from; a != NULL && i + 1 < r->elements; i += 2)
        json_array_append_new(a, json_pack("{s:I,s:s}", "uid", (json_int_t)reply_num(r->element[i]), "role",
                                           role_name(r->element[i + 1]->str)));
    return a;
}

/* {group_id, name, owner, members} from a result() reply {0, name, owner, uid, role, ...}. */
static json_t *group_json(int64_t gid, const redisReply *r)
{
    if (r->elements < 3)
        return NULL;
    return json_pack("{s:I,s:s,s:I,s:o}", "group_id", (json_int_t)gid, "name",
                     r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "", "owner",
                     (json_int_t)reply_num(r->element[2]), "members", members_json(r, 3));
}

/* ---- the endpoints ---- */

void groups_create(struct call *c)
{
    struct uids members = {0};
    struct gevent ev[GROUP_EVENTS] = {{0}};
    struct gchecks chk = {0};
    struct args a = {0};
    redisReply *r = NULL;
    const char *name;
    int64_t gid;
    size_t n;

    if (field_name(c, 1, &name) != 0 || field_uids(c, "members", &members) < 0)
        goto done;
    /* the owner is a member anyway: naming oneself is allowed (once) */
    for (n = 0; n < members.n && members.v[n] != c->uid; n++)
        ;
    if (n < members.n)
        members.v[n] = members.v[--members.n];
    if ((long long)members.n + 1 > app.cfg.group.max_members) {
        char msg[96];
        snprintf(msg, sizeof(msg), "a group has at most %lld members (group.max_members)",
                 app.cfg.group.max_members);
        reply_msg(c, API_FORBIDDEN, msg, NULL);
        goto done;
    }
    if (users_exist(c, &members) != 0)
        goto done;
    r = rds_cmd(&c->w->rds, "INCR %s", KEY_GROUP_NEXT);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer <= 0 || r->integer > GROUP_MAX_ID) {
        if (r != NULL && r->type == REDIS_REPLY_INTEGER)
            log_error("group ids are used up: %s=%lld", KEY_GROUP_NEXT, (long long)r->integer);
        reply_unavailable(c, "redis");
        goto done;
    }
    gid = r->integer;
    freeReplyObject(r);
    r = NULL;
    if (event_make(c, &ev[0], gid, "group_created",
                   json_pack("{s:o,s:s}", "members", uids_json(&members, c->uid), "name", name)) != 0)
        goto done;
    if (checks_read(c, gid, &members, c->uid, &chk) != 0)
        goto done;
    if (args_change(&a, gid, c->uid, ev, &chk) != 0 || args_str(&a, name) != 0 || args_int(&a, c->uid) != 0 ||
        args_uids(&a, &members) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    if ((r = group_run(c, &create_lua, &a)) == NULL)
        goto done;
    log_info("group created gid=%lld owner=%lld members=%zu", (long long)gid, (long long)c->uid,
             members.n + 1);
    reply(c, API_OK, json_pack("{s:I}", "group_id", (json_int_t)gid));
done:
    if (r != NULL)
        freeReplyObject(r);
    for (int k = 0; k < GROUP_EVENTS; k++)
        event_free(&ev[k]);
    args_free(&a);
    free(chk.counts);
    free(chk.restored);
    free(members.v);
}

static int cmp_group_id(const void *a, const void *b)
{
    long long x = json_integer_value(json_object_get(*(json_t *const *)a, "group_id"));
    long long y = json_integer_value(json_object_get(*(json_t *const *)b, "group_id"));
    return (x > y) - (x < y);
}

/* list_lua's reply (id, name, role, count per group) appended to list. -1 when it is not one. */
static int list_append(json_t *list, const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 4 != 0)
        return -1;
    for (size_t i = 0; i < r->elements; i += 4) {
        redisReply **e = &r->element[i];
        json_array_append_new(list,
                              json_pack("{s:I,s:s,s:s,s:I}", "group_id", (json_int_t)reply_num(e[0]), "name",
                                        e[1]->type == REDIS_REPLY_STRING ? e[1]->str : "", "role",
                                        role_name(e[2]->str), "members", (json_int_t)reply_num(e[3])));
    }
    return 0;
}

/* At redis.stream_shards > 1 the caller's groups are in every shard: its KEY_USER_GROUPS (its shard), then
 * list_lua once per shard of its groups with that shard's gids, merged here by id. 0, or -1 (Redis). */
static int list_sharded(struct call *c, json_t *list)
{
    int shards = key_shards(), rc = -1;
    char key[64];
    redisReply *g, *r = NULL;

    key_tagged(key, sizeof(key), KEY_USER_GROUPS, (long long)c->uid);
    if ((g = rds_cmd(&c->w->rds, "SMEMBERS %s", key)) == NULL || g->type != REDIS_REPLY_ARRAY)
        goto done;
    for (int s = 0; s < shards; s++) {
        struct args a = {0};
        if (args_int(&a, c->uid) != 0)
            goto done;
        for (size_t i = 0; i < g->elements; i++)
            if (g->element[i]->type == REDIS_REPLY_STRING && key_shard(atoll(g->element[i]->str)) == s &&
                args_str(&a, g->element[i]->str) != 0) {
                args_free(&a);
                goto done;
            }
        if (a.n == 1) {
            args_free(&a);
            continue;
        }
        snprintf(key, sizeof(key), KEY_SHARDED(KEY_GROUP_NAME), s); /* the slot of the shard's groups */
        r = script_run(c, &list_lua, key, 0, &a);
        args_free(&a);
        if (list_append(list, r) != 0)
            goto done;
        freeReplyObject(r);
        r = NULL;
    }
    rc = 0;
done:
    if (r != NULL)
        freeReplyObject(r);
    if (g != NULL)
        freeReplyObject(g);
    return rc;
}

void groups_list(struct call *c)
{
    struct args a = {0};
    redisReply *r = NULL;
    json_t *list = json_array();

    if (list == NULL || args_int(&a, c->uid) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    if (key_shards() > 1) {
        if (list_sharded(c, list) != 0) {
            reply_unavailable(c, "redis");
            goto done;
        }
        json_t **v = malloc((json_array_size(list) + 1) * sizeof(*v));
        size_t n = json_array_size(list);
        if (v == NULL) {
            reply_unavailable(c, "memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            v[i] = json_incref(json_array_get(list, i));
        qsort(v, n, sizeof(*v), cmp_group_id);
        json_array_clear(list);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, v[i]);
        free(v);
    } else {
        char route[64]; /* the caller's group list: the slot of every key the script touches */
        key_tagged(route, sizeof(route), KEY_USER_GROUPS, (long long)c->uid);
        r = script_run(c, &list_lua, route, 0, &a);
        if (list_append(list, r) != 0) {
            reply_unavailable(c, "redis");
            goto done;
        }
    }
    reply(c, API_OK, json_pack("{s:o}", "groups", list));
    list = NULL;
done:
    json_decref(list);
    if (r != NULL)
        freeReplyObject(r);
    args_free(&a);
}

void groups_get(struct call *c)
{
    struct args a = {0};
    redisReply *r = NULL;
    int64_t gid;

    if (path_gid(c, &gid) != 0)
        return;
    if (args_int(&a, gid) != 0 || args_int(&a, c->uid) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    if ((r = group_run(c, &get_lua, &a)) == NULL)
        goto done;
    reply(c, API_OK, group_json(gid, r));
done:
    if (r != NULL)
        freeReplyObject(r);
    args_free(&a);
}

void groups_update(struct call *c)
{
    struct uids add = {0}, rem = {0};
    struct gevent ev[GROUP_EVENTS] = {{0}};
    struct gchecks chk = {0};
    struct args a = {0};
    redisReply *r = NULL;
    const char *name = NULL;
    int64_t gid;
    int has_name = 1, has_add = 1, has_rem = 1;

    if (path_gid(c, &gid) != 0 || (has_name = field_name(c, 0, &name)) < 0 ||
        (has_add = field_uids(c, "admins_add", &add)) < 0 ||
        (has_rem = field_uids(c, "admins_remove", &rem)) < 0 ||
        disjoint(c, &add, "admins_add", &rem, "admins_remove") != 0)
        goto done;
    if (has_name == 1 && has_add == 1 && has_rem == 1) {
        invalid(c, "nothing to change: give name, admins_add or admins_remove");
        goto done;
    }
    if (name != NULL && event_make(c, &ev[0], gid, "group_renamed", json_pack("{s:s}", "name", name)) != 0)
        goto done;
    if (checks_read(c, gid, NULL, 0, &chk) != 0)
        goto done;
    if (args_change(&a, gid, c->uid, ev, &chk) != 0 || args_str(&a, name ? name : "") != 0 ||
        args_int(&a, (long long)add.n) != 0 || args_uids(&a, &add) != 0 || args_uids(&a, &rem) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    if ((r = group_run(c, &update_lua, &a)) == NULL)
        goto done;
    log_info("group changed gid=%lld by=%lld renamed=%s admins_add=%zu admins_remove=%zu", (long long)gid,
             (long long)c->uid, name ? "yes" : "no", add.n, rem.n);
    reply(c, API_OK, group_json(gid, r));
done:
    if (r != NULL)
        freeReplyObject(r);
    for (int k = 0; k < GROUP_EVENTS; k++)
        event_free(&ev[k]);
    args_free(&a);
    free(chk.counts);
    free(chk.restored);
    free(add.v);
    free(rem.v);
}

void groups_members(struct call *c)
{
    struct uids add = {0}, rem = {0};
    struct gevent ev[GROUP_EVENTS] = {{0}};
    struct gchecks chk = {0};
    struct args a = {0};
    redisReply *r = NULL;
    int64_t gid;

    if (path_gid(c, &gid) != 0 || field_uids(c, "add", &add) < 0 || field_uids(c, "remove", &rem) < 0 ||
        disjoint(c, &add, "add", &rem, "remove") != 0)
        goto done;
    if (add.n == 0 && rem.n == 0) {
        invalid(c, "nothing to change: give add or remove");
        goto done;
    }
    if (users_exist(c, &add) != 0)
        goto done;
    if (rem.n > 0 &&
        event_make(c, &ev[0], gid, "member_removed", json_pack("{s:o}", "members", uids_json(&rem, 0))) != 0)
        goto done;
    if (add.n > 0 &&
        event_make(c, &ev[1], gid, "member_added", json_pack("{s:o}", "members", uids_json(&add, 0))) != 0)
        goto done;
    if (checks_read(c, gid, &add, 0, &chk) != 0)
        goto done;
    if (args_change(&a, gid, c->uid, ev, &chk) != 0 || args_int(&a, (long long)add.n) != 0 ||
        args_uids(&a, &add) != 0 || args_uids(&a, &rem) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    if ((r = group_run(c, &members_lua, &a)) == NULL)
        goto done;
    log_info("group members changed gid=%lld by=%lld added=%zu removed=%zu", (long long)gid,
             (long long)c->uid, add.n, rem.n);
    reply(c, API_OK, json_pack("{s:I,s:o}", "group_id", (json_int_t)gid, "members", members_json(r, 3)));
done:
    if (r != NULL)
        freeReplyObject(r);
    for (int k = 0; k < GROUP_EVENTS; k++)
        event_free(&ev[k]);
    args_free(&a);
    free(chk.counts);
    free(chk.restored);
    free(add.v);
    free(rem.v);
}

/* leave and delete: one event, no arguments of their own. */
static void group_end(struct call *c, struct gscript *s, const char *event)
{
    struct gevent ev[GROUP_EVENTS] = {{0}};
    struct gchecks chk = {0};
    struct args a = {0};
    redisReply *r = NULL;
    int64_t gid;

    if (path_gid(c, &gid) != 0)
        return;
    if (event_make(c, &ev[0], gid, event,
                   s == &leave_lua ? json_pack("{s:[I]}", "members", (json_int_t)c->uid) : json_object()) !=
        0)
        goto done;
    if (checks_read(c, gid, NULL, 0, &chk) != 0)
        goto done;
    if (args_change(&a, gid, c->uid, ev, &chk) != 0) {
        reply_unavailable(c, "memory");
        goto done;
    }
    if ((r = group_run(c, s, &a)) == NULL)
        goto done;
    if (s == &delete_lua)
        log_info("group deleted gid=%lld by=%lld members=%lld", (long long)gid, (long long)c->uid,
                 r->elements > 1 ? reply_num(r->element[1]) : 0LL);
    else if (r->elements > 2 && r->element[1]->type == REDIS_REPLY_STRING &&
             strcmp(r->element[1]->str, "owner") == 0)
        log_info("group left by its owner gid=%lld uid=%lld new_owner=%lld", (long long)gid,
                 (long long)c->uid, reply_num(r->element[2]));
    else if (r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING &&
             strcmp(r->element[1]->str, "deleted") == 0)
        log_info("group left by its last member, deleted gid=%lld uid=%lld", (long long)gid,
                 (long long)c->uid);
    else
        log_info("group left gid=%lld uid=%lld", (long long)gid, (long long)c->uid);
    reply(c, API_OK, NULL);
done:
    if (r != NULL)
        freeReplyObject(r);
    event_free(&ev[0]);
    args_free(&a);
    free(chk.counts);
    free(chk.restored);
}

void groups_leave(struct call *c)
{
    group_end(c, &leave_lua, "member_removed");
}

void groups_delete(struct call *c)
{
    group_end(c, &delete_lua, "group_deleted");
}
