/* presence.h -- "is this user online anywhere in the cluster?", asked by magpie-push (the O packet) and
 * magpie-http (GET /friends) the same way: a user is online when some node that holds a connection of theirs
 * is alive. Nodes keep KEY_PRESENCE (node -> connection count per user) and KEY_NODES (node -> last heartbeat
 * ms); see keys.h. A node killed with kill -9 leaves its counts behind, but stops heartbeating, so after
 * push.node_ttl_s its users read as offline (and the node cleans its counts when it starts again).
 *
 * PRESENCE_LUA: EVAL PRESENCE_LUA <n> <KEY_PRESENCE of uid 1> ... <of uid n> <live node ids> returns an
 * array with 1 (online) or 0 (offline) for each user, in order. The live node ids (keys.h: KEY_LUA_LIVE's
 * ",<id>,<id>,") are read by the caller, not here: KEY_NODES is in another slot than the users' presence
 * (keys.h, the cluster rule). magpie-http reads them just before (keys_live_read), magpie-push takes its
 * view (push/cluster.h, at most a second old); a node that died between that read and the script counts as
 * live for that moment, as it would have for a script run a moment earlier. With redis.stream_shards > 1
 * the caller asks once per shard (the users of one shard share its slot).
 */
#ifndef MAGPIE_PRESENCE_H
#define MAGPIE_PRESENCE_H

#include "keys.h"

#define PRESENCE_LUA                                                                                         \
    LUA_SHEBANG KEY_LUA_LIVE                                                                                 \
        "local out = {}\n"                                                                                   \
        "for i = 1, #KEYS do\n"                                                                              \
        "  local online = 0\n"                                                                               \
        "  local h = redis.call('HGETALL', KEYS[i])\n"                                                       \
        "  for j = 1, #h, 2 do\n"                                                                            \
        "    if tonumber(h[j + 1]) > 0 and mp_live(ARGV[1], h[j]) then online = 1 break end\n"               \
        "  end\n"                                                                                            \
        "  out[#out + 1] = online\n"                                                                         \
        "end\n"                                                                                              \
        "return out\n"

#endif
