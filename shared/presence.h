/* presence.h -- "is this user online anywhere in the cluster?", asked by magpie-push (the O packet) and
 * magpie-http (GET /friends) the same way: a user is online when some node that holds a connection of theirs
 * is alive. Nodes keep KEY_PRESENCE (node -> connection count per user) and KEY_NODES (node -> last heartbeat
 * ms); see keys.h. A node killed with kill -9 leaves its counts behind, but stops heartbeating, so after
 * push.node_ttl_s its users read as offline (and the node cleans its counts when it starts again).
 *
 * PRESENCE_LUA: EVAL PRESENCE_LUA <1 + n> KEY_NODES <KEY_PRESENCE of uid 1> ... <of uid n> <oldest live
 * heartbeat ms> returns an array with 1 (online) or 0 (offline) for each user, in order. (The users'
 * presence keys are in their shards, and KEY_NODES in its own slot: keys.h says what a cluster needs.)
 */
#ifndef MAGPIE_PRESENCE_H
#define MAGPIE_PRESENCE_H

#define PRESENCE_LUA                                                                                         \
    "local out = {}\n"                                                                                       \
    "local oldest = tonumber(ARGV[1])\n"                                                                     \
    "for i = 2, #KEYS do\n"                                                                                  \
    "  local online = 0\n"                                                                                   \
    "  local h = redis.call('HGETALL', KEYS[i])\n"                                                           \
    "  for j = 1, #h, 2 do\n"                                                                                \
    "    if tonumber(h[j + 1]) > 0 then\n"                                                                   \
    "      local beat = redis.call('ZSCORE', KEYS[1], h[j])\n"                                               \
    "      if beat and tonumber(beat) >= oldest then online = 1 break end\n"                                 \
    "    end\n"                                                                                              \
    "  end\n"                                                                                                \
    "  out[#out + 1] = online\n"                                                                             \
    "end\n"                                                                                                  \
    "return out\n"

#endif
