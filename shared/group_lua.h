/* group_lua.h -- the Lua every group script shares (design: push/group.h), written once and pasted at the
 * top of each script that needs it: magpie-push's g send (push/group_send.c) and magpie-http's membership
 * changes (http/groups.c). Key prefixes come from keys.h, stream fields from stream.h.
 *
 * Lua numbers are doubles: uids, seqs and group ids stay below 2^53, so they may be numbers here; mids may
 * not, and are only ever handled as strings.
 */
#ifndef MAGPIE_GROUP_LUA_H
#define MAGPIE_GROUP_LUA_H

#include "keys.h"
#include "stream.h"

/* GROUP_LUA_LIB: keys.h's KEY_LUA_LIB (S = redis.stream_shards, which the script defines first: the scripts
 * build the keys of members in their shards: all in one shard's slot in the split g of push/group.h, where
 * each script is given only the members of its own shard; see keys.h for the scripts that still span), then:
 * mp_counters_ok(uids, restored): false when Redis may have lost seq counters (KEY_SEQ_RESTORED, whose key of
 *   the script's shard is restored: all shards' are set together, missing) and one of these users has none --
 * the script must then refuse (timeline.h: -3, "temporarily unavailable"). mp_fanout(uids, mid, conv, keep,
 * maxlen): give mid the next seq in every user's timeline (INCR KEY_SEQ, XADD "<seq>-0" {m: mid} to KEY_TL
 * with MAXLEN ~ maxlen), then renew each KEY_TL's TTL (keep) and put conv ("g<gid>") at that seq in the
 * user's KEY_CONVS. Returns the flat list {uid, seq, uid, seq, ...}; or nil and the error when a timeline
 * refused its entry (a timeline ahead of its counter: someone edited the keys), after undoing every seq and
 * entry this call wrote -- so a refused entry takes no seq. mp_unfan(pairs): take back what a successful
 * mp_fanout wrote (a later step failed). mp_msg_copies(src, mid, uids, keep): COPY the
 * message hash src (KEY_MSG of mid in the script's shard) to the KEY_MSG of mid in the shard of every user of
 * uids (keys.h: a message is read in its reader's shard), each with TTL keep; with S = 1 there is no other
 * copy. mp_seqs(pairs, skip): "<uid>:<seq> ..." of the pairs but uid skip: MQ_F_SEQS. mp_publish(payload,
 * self, live, shard): SPUBLISH payload on the delivery channel of shard (CHAN_NODE, sharded: the script's own
 * shard, keys.h) of every node in live, the live node ids as keys.h's
 * KEY_LUA_LIVE has them (",<id>,<id>,": the caller read KEY_NODES, which is in another slot), but self
 * ("" = none); KEY_LUA_LIB's mp_live(live, node) says whether node is in it. */
#define GROUP_LUA_LIB                                                                                        \
    KEY_LUA_LIB                                                                                              \
    "local function mp_counters_ok(uids, restored)\n"                                                        \
    "  if redis.call('EXISTS', restored) == 1 then return true end\n"                                        \
    "  for i = 1, #uids do\n"                                                                                \
    "    if redis.call('EXISTS', mp_key('" KEY_SEQ_NAME "', uids[i])) == 0 then return false end\n"          \
    "  end\n"                                                                                                \
    "  return true\n"                                                                                        \
    "end\n"                                                                                                  \
    "local function mp_fanout(uids, mid, conv, keep, maxlen)\n"                                              \
    "  local out = {}\n"                                                                                     \
    "  for i = 1, #uids do\n"                                                                                \
    "    local u = uids[i]\n"                                                                                \
    "    local s = redis.call('INCR', mp_key('" KEY_SEQ_NAME "', u))\n"                                      \
    "    local ok = redis.pcall('XADD', mp_key('" KEY_TL_NAME                                                \
    "', u), 'MAXLEN', '~', maxlen, s .. '-0', '" TL_F_MID "', mid)\n"                                        \
    "    if type(ok) == 'table' and ok.err then\n"                                                           \
    "      redis.call('DECR', mp_key('" KEY_SEQ_NAME "', u))\n"                                              \
    "      for j = 1, #out, 2 do\n"                                                                          \
    "        redis.call('XDEL', mp_key('" KEY_TL_NAME "', out[j]), out[j + 1] .. '-0')\n"                    \
    "        redis.call('DECR', mp_key('" KEY_SEQ_NAME "', out[j]))\n"                                       \
    "      end\n"                                                                                            \
    "      return nil, ok.err\n"                                                                             \
    "    end\n"                                                                                              \
    "    out[#out + 1] = u\n"                                                                                \
    "    out[#out + 1] = s\n"                                                                                \
    "  end\n"                                                                                                \
    "  for j = 1, #out, 2 do\n"                                                                              \
    "    redis.call('EXPIRE', mp_key('" KEY_TL_NAME "', out[j]), keep)\n"                                    \
    "    redis.call('ZADD', mp_key('" KEY_CONVS_NAME "', out[j]), out[j + 1], conv)\n"                       \
    "  end\n"                                                                                                \
    "  return out\n"                                                                                         \
    "end\n"                                                                                                  \
    "local function mp_unfan(pr)\n"                                                                          \
    "  for j = 1, #pr, 2 do\n"                                                                               \
    "    redis.call('XDEL', mp_key('" KEY_TL_NAME "', pr[j]), pr[j + 1] .. '-0')\n"                          \
    "    redis.call('DECR', mp_key('" KEY_SEQ_NAME "', pr[j]))\n"                                            \
    "  end\n"                                                                                                \
    "end\n"                                                                                                  \
    "local function mp_msg_copies(src, mid, uids, keep)\n"                                                   \
    "  local done = {[src] = true}\n"                                                                        \
    "  for i = 1, #uids do\n"                                                                                \
    "    local k = mp_skey('" KEY_MSG_NAME "', mp_shard(uids[i]), mid)\n"                                    \
    "    if not done[k] then\n"                                                                              \
    "      done[k] = true\n"                                                                                 \
    "      redis.call('COPY', src, k, 'REPLACE')\n"                                                          \
    "      redis.call('EXPIRE', k, keep)\n"                                                                  \
    "    end\n"                                                                                              \
    "  end\n"                                                                                                \
    "end\n"                                                                                                  \
    "local function mp_seqs(pairs, skip)\n"                                                                  \
    "  local s = {}\n"                                                                                       \
    "  for j = 1, #pairs, 2 do\n"                                                                            \
    "    if tostring(pairs[j]) ~= tostring(skip) then s[#s + 1] = pairs[j] .. ':' .. pairs[j + 1] end\n"     \
    "  end\n"                                                                                                \
    "  return table.concat(s, ' ')\n"                                                                        \
    "end\n"                                                                                                  \
    "local function mp_publish(payload, self, live, shard)\n"                                                \
    "  for n in string.gmatch(live, '[^,]+') do\n"                                                           \
    "    if n ~= self then\n"                                                                                \
    "      redis.call('SPUBLISH', mp_node_chan(n, shard), payload)\n"                                        \
    "    end\n"                                                                                              \
    "  end\n"                                                                                                \
    "end\n"

/* The delivery of a group entry to the members' connections on one node (CHAN_NODE): "g <ts>\n" then
 * "<uid> <seq> " for every member (the pairs mp_fanout returned), then "\n" and the packet without seq.
 * ts is the entry's acceptance time (the delivery latency metric). Parsed by push/group_send.c. */
#define GROUP_DELIVERY_HEAD "g "

/* The id generator for group events' mids, which magpie-http (many processes, many threads) mints with no
 * node id of its own: ids of node ID_MAX_NODE, whose (ms, seq) state lives in KEY_IDGEN so every minting is
 * one atomic step. KEYS: KEY_IDGEN. Returns {ms since ID_EPOCH_MS, seq}: strictly increasing, like id.h's
 * generator (the clock stepping back keeps counting on the last ms; seq past 4095 borrows the next ms).
 * The caller composes the id (id.h's layout). */
#define GROUP_IDGEN_LUA                                                                                      \
    "local t = redis.call('TIME')\n"                                                                         \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])\n"            \
    "local st = redis.call('HMGET', KEYS[1], 'ms', 'seq')\n"                                                 \
    "local ms, seq = tonumber(st[1] or '-1'), tonumber(st[2] or '0')\n"                                      \
    "if now > ms then ms, seq = now, 0\n"                                                                    \
    "else seq = seq + 1 if seq > 4095 then ms, seq = ms + 1, 0 end end\n"                                    \
    "redis.call('HSET', KEYS[1], 'ms', ms, 'seq', seq)\n"                                                    \
    "return {ms, seq}\n"

#endif
