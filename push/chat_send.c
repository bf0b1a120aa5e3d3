/* chat_send.c -- t and i: a message to a friend (SPEC §4, §6).
 *
 * One Redis round trip does it all, atomically, in send_lua: the (from, id) dedup check, the friend check,
 * a seq in each user's timeline (push/timeline.h owns that design), XADD to the stream (the fields of
 * stream.h, which magpie-persist reads), and SPUBLISH of the delivery to every other node holding a
 * connection of the recipient or of the sender, on that node's delivery channel of the script's shard
 * (CHAN_NODE, sharded pub/sub: shared/bus.h; a script publishes only on its own shard's channels, and a
 * user's deliveries always come from a script of the user's shard, so they keep their order on one channel).
 * The client gets A (with mid and the sender's seq) only after Redis answered, so an A means the message is
 * in the stream and in both timelines. A retry of the same (from, id) finds the dedup key (kept
 * push.dedup_ttl_s) and is acked again with the first mid and seq, without being stored or delivered twice.
 * This node delivers to its own connections when the reply comes; the reply order is the order Redis ran the
 * scripts in, so messages between two users keep their order.
 *
 * With redis.min_replicas_acked (shared/sentinel.h: what WAIT guarantees) the A waits for rdsa_wait, and
 * so does every delivery: the script then returns the channels instead of publishing to them, and this
 * node publishes (and delivers to its own connections) only once enough replicas hold the message -- so no
 * recipient sees a message, or a seq, that a failover takes back. A retry then refreshes the dedup key's
 * TTL, a write, so that the WAIT after it also covers the first attempt, whichever connection made it.
 * WAITs answer in the order they were asked, which keeps the order of the deliveries. A message whose WAIT
 * fell short is acked on its retry but never pushed (its deliveries went with the refused attempt, and the
 * dedup key cannot tell whether a retry's would be the second): its recipients get it by Y, as after any gap
 * (SPEC §4.1: the next packet's seq skips ahead, or the next connect).
 *
 * The split (issue 20, SPEC §7: a Redis Cluster runs a script only when every key it touches is in one
 * slot). send_lua touches both users' keys, so it runs only when both are in one shard (key_shard: always at
 * redis.stream_shards = 1, where nothing changes, cost included). A message between users of two shards runs
 * as two scripts, each in one shard's slot, one after the other:
 *   1. send_s_lua in the sender's shard: the dedup check (a hit returns the first "<mid> <seq>" and the
 *      first's stored packet from the sender's KEY_MSG copy), the friend check (the sender's KEY_FRIENDS),
 *      the sender's counter check, INCR of the sender's seq, the sender's KEY_TL, KEY_CONVS, KEY_CONV
 *      (CONV_F_LAST), the sender's KEY_MSG copy (packet, MSG_F_FROM_SEQ, MSG_F_FROM_IN), the sender's half of
 *      the stream entry (KEY_MQ of the sender's shard: every field, fseq, no tseq), the dedup key, and the
 *      deliveries to the sender's other nodes ("<fseq> 0 <head><packet>"). Nothing of the recipient.
 *   2. send_r_lua in the recipient's shard, with the mid and content of step 1 (a retry: the first's, taken
 *      from its stored packet, so both halves carry the same message; when that copy has expired,
 *      timeline.keep_s < push.dedup_ttl_s, the retry's content under the first mid): KEY_RCV of the mid
 *      (hit: it ran before, nothing is written), the recipient's counter check, INCR of the recipient's
 *      seq, KEY_TL, KEY_CONVS, KEY_CONV (CONV_F_IN, CONV_F_LAST), the recipient's KEY_MSG copy (packet,
 *      MSG_F_TO_SEQ, MSG_F_TO_IN), the recipient's half of the stream entry (tseq, no fseq), the offline
 *      notification (KEY_NOTIFY of the recipient's shard, from the recipient's presence), the deliveries to
 *      the recipient's nodes ("0 <tseq> <head><packet>"; relay.c delivers only to the user whose seq is
 *      not 0), then KEY_RCV = "<tseq> <tn>" (TTL push.dedup_ttl_s, as the dedup key's).
 * Step 2 starts once step 1 answered (and, with redis.min_replicas_acked, once its WAIT on the sender's
 * master did); the A {mid, seq = the sender's seq} goes only after step 2 answered and its own WAIT on the
 * recipient's master: so an A still means the message is in both timelines and in the stream. This node
 * delivers to the sender's other connections after step 1 (a new message), to the recipient's after step 2
 * (when it wrote now).
 * Failures. Step 1 refused (not friends, no counter, a timeline ahead of its counter): nothing written, E,
 * as send_lua. Step 2 refused or unanswered (Redis down, the recipient's counters not restored yet, this
 * node killed between the two): E (or no answer); the sender's part stays: the sender's devices see the
 * message (its seq is taken, no gap), the recipient does not yet. The client retries unacked sends (SPEC
 * §4): the retry hits the dedup key in step 1, which writes nothing, and step 2 runs again with the first
 * mid -- it completes the message (delivered to the recipient then, once) or, when it had run, finds
 * KEY_RCV and writes nothing. Either way the A carries the first mid and seq, and nothing is stored or
 * delivered twice (test_send_split.py makes step 2 fail and checks all of that).
 * Known gap: a message whose step 2 never ran and whose client never retries (the sender's node died and
 * the client gave up, or it was only sent once and never acked) stays in the sender's timeline and never
 * reaches the recipient; it was never acked. The repair (magpie-persist finding rows with from_seq and no
 * to_seq older than some seconds and running step 2 for them, with KEY_RCV outliving that window) is not
 * built yet (lead's design draft, /work/notes/split-design.md).
 * Persist: each half is a full row by itself (every field), so magpie-persist inserts whichever comes first
 * and fills the other seq from the other (persist_store.h); the row ends with both seqs.
 * Order. One sender's messages keep their order in both timelines in the normal case: this node runs the
 * steps of every message in the order their replies came (one connection per master, WAITs answering in
 * order), so step 2 of m1 is sent before step 2 of m2. Not guaranteed: (a) when step 2 of m1 fails and
 * step 2 of m2 (sent after a reconnect) succeeds, m1's retry lands after m2 in the recipient's timeline
 * while the sender's has m1 first (no queue per sender is kept); (b) A->B and B->A at the same moment may be
 * in opposite orders in A's and B's timelines (each gap-free). With one script both orders matched.
 * A retry of a split message that hits its dedup key with redis.min_replicas_acked refreshes the dedup
 * key's TTL in step 1 and KEY_RCV's in step 2 (writes), so that both WAITs cover the first attempt.
 */
#include "chat.h"
#include "cluster.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "notify_event.h"
#include "push.h"
#include "rdsa.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: dedup, friends of the sender, KEY_MQ, presence of the recipient, presence of the sender, KEY_SEQ of
 * the sender, of the recipient, KEY_TL of the sender, of the recipient, KEY_MSG, KEY_CONVS of the sender,
 * of the recipient, KEY_CONV of the sender, of the recipient, KEY_SEQ_RESTORED, KEY_NOTIFY, KEY_MSG's copy in
 * the recipient's shard (the same key as KEY_MSG when both are in one shard). KEY_MSG, KEY_MQ,
 * KEY_SEQ_RESTORED and KEY_NOTIFY are the sender's shard's (shared/keys.h has the layout). ARGV: node, mid,
 * from, to, cid, type, body, ts, dedup TTL, delivery head (chatpkt_delivery without the packet), CHAN_NODE
 * prefix of the script's shard (chan_prefix), suffix, packet (without seq), timeline.keep_s,
 * timeline.max_entries, the live node ids (KEY_LUA_LIVE, this node's view: push/cluster.h; "" = notifications
 * off), the notification's preview, notify.queue_maxlen, "1" when the caller WAITs (then the deliveries are
 * returned, not published). Returns {0, mid, from seq, to seq} accepted (with "1": {0, mid, from seq, to seq,
 * payload, channel...}), {1,
 * "<first mid> <its from seq>"} a retry, {-1} not friends,
 * {-2, why} a timeline that does not match its counter, {-3} a user without a seq counter while Redis has
 * not got every counter back from MySQL (KEY_SEQ_RESTORED missing: push/timeline.h). Nothing stays written
 * when the message is refused, so a refused message takes no seq. */
static struct rdsa_script send_lua = {
    "send",
    LUA_SHEBANG KEY_LUA_LIVE
    "local first = redis.call('GET', KEYS[1])\n"
    "if first then\n"
    "  if ARGV[19] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[9]) end\n"
    "  return {1, first}\n"
    "end\n"
    "if redis.call('SISMEMBER', KEYS[2], ARGV[4]) == 0 then return {-1} end\n"
    /* One EXISTS of both counters (it counts a key named twice twice, so a message to oneself is 2 too). */
    "if redis.call('EXISTS', KEYS[6], KEYS[7]) < 2 and redis.call('EXISTS', KEYS[15]) == 0 then\n"
    "  return {-3}\n"
    "end\n"
    "local fs = redis.call('INCR', KEYS[6])\n"
    "local ts = redis.call('INCR', KEYS[7])\n"
    /* An XADD with an explicit id fails if the stream's last id is not below it, which cannot happen while
     * this script alone writes counters and timelines (both are in every AOF rewrite and every MULTI of
     * effects); should someone have edited the keys, the writes are undone and the send refused. */
    "local ok = redis.pcall('XADD', KEYS[8], 'MAXLEN', '~', ARGV[15], fs .. '-0', '" TL_F_MID "', ARGV[2])\n"
    "if type(ok) == 'table' and ok.err then\n"
    "  redis.call('DECR', KEYS[6]) redis.call('DECR', KEYS[7]) return {-2, ok.err}\n"
    "end\n"
    "ok = redis.pcall('XADD', KEYS[9], 'MAXLEN', '~', ARGV[15], ts .. '-0', '" TL_F_MID "', ARGV[2])\n"
    "if type(ok) == 'table' and ok.err then\n"
    "  redis.call('XDEL', KEYS[8], fs .. '-0') redis.call('DECR', KEYS[6]) redis.call('DECR', KEYS[7])\n"
    "  return {-2, ok.err}\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[8], ARGV[14])\n"
    "redis.call('EXPIRE', KEYS[9], ARGV[14])\n"
    "redis.call('XADD', KEYS[3], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID
    "', ARGV[2], '" MQ_F_FROM "', ARGV[3], '" MQ_F_TO "', ARGV[4], '" MQ_F_CID "', ARGV[5], '" MQ_F_TYPE
    "', ARGV[6], '" MQ_F_BODY "', ARGV[7], '" MQ_F_TS "', ARGV[8], '" MQ_F_FROM_SEQ "', fs, '" MQ_F_TO_SEQ
    "', ts)\n"
    "local tc, fc = 'u' .. ARGV[3], 'u' .. ARGV[4]\n"
    "redis.call('ZADD', KEYS[11], fs, fc)\n"
    "redis.call('ZADD', KEYS[12], ts, tc)\n"
    "local fn = redis.call('HGET', KEYS[13], fc .. '" CONV_F_IN "') or '0'\n"
    "redis.call('HSET', KEYS[13], fc .. '" CONV_F_LAST "', ARGV[2])\n"
    "local tn = redis.call('HINCRBY', KEYS[14], tc .. '" CONV_F_IN "', 1)\n"
    "redis.call('HSET', KEYS[14], tc .. '" CONV_F_LAST "', ARGV[2])\n"
    "redis.call('HSET', KEYS[10], '" MSG_F_PACKET "', ARGV[13], '" MSG_F_FROM_SEQ "', fs, '" MSG_F_TO_SEQ
    "', ts, '" MSG_F_FROM_IN "', fn, '" MSG_F_TO_IN "', tn)\n"
    "redis.call('EXPIRE', KEYS[10], ARGV[14])\n"
    "if KEYS[17] ~= KEYS[10] then\n"
    "  redis.call('COPY', KEYS[10], KEYS[17], 'REPLACE')\n"
    "  redis.call('EXPIRE', KEYS[17], ARGV[14])\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. fs, 'EX', ARGV[9])\n"
    /* The recipient's presence is read once, for the deliveries and for the notification below; the
     * delivery payload is built only when some other node needs it. */
    "local sent, payload, out = {}, nil, {0, ARGV[2], fs, ts}\n"
    "local hto = redis.call('HGETALL', KEYS[4])\n"
    "for _, h in ipairs({hto, redis.call('HGETALL', KEYS[5])}) do\n"
    "  for j = 1, #h, 2 do\n"
    "    local node = h[j]\n"
    "    if node ~= ARGV[1] and not sent[node] and tonumber(h[j + 1]) > 0 then\n"
    "      sent[node] = true\n"
    "      payload = payload or fs .. ' ' .. ts .. ' ' .. ARGV[10] .. ARGV[13]\n"
    "      if ARGV[19] == '1' then\n"
    "        out[5] = payload\n"
    "        out[#out + 1] = ARGV[11] .. node .. ARGV[12]\n"
    "      else\n"
    "        redis.call('SPUBLISH', ARGV[11] .. node .. ARGV[12], payload)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* Offline notification (notify/notify_worker.h owns the design): the recipient has no connection on a
     * live node, so the event is queued here, in the same script as the message it tells of. */
    "if ARGV[16] ~= '' then\n"
    "  local online = false\n"
    "  for j = 1, #hto, 2 do\n"
    "    if tonumber(hto[j + 1]) > 0 and mp_live(ARGV[16], hto[j]) then online = true break end\n"
    "  end\n"
    "  if not online then\n"
    "    local rn = tonumber(redis.call('HGET', KEYS[14], tc .. '" CONV_F_READ_IN "') or '0')\n"
    "    redis.call('XADD', KEYS[16], 'MAXLEN', '~', ARGV[18], '*', '" NT_F_VERSION
    "', '" NOTIFY_FORMAT_VERSION "', '" NT_F_TYPE "', 'message', '" NT_F_KIND "', ARGV[6], '" NT_F_TO
    "', ARGV[4], '" NT_F_FROM "', ARGV[3], '" NT_F_CONV "', tc, '" NT_F_MID "', ARGV[2], '" NT_F_SEQ
    "', ts, '" NT_F_TS "', ARGV[8], '" NT_F_PREVIEW "', ARGV[17], '" NT_F_UNREAD "', tn - rn)\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

/* The split (the comment at the top). send_s_lua, the sender's part, in the sender's shard.
 * KEYS: dedup, friends of the sender, KEY_MQ, presence of the sender, KEY_SEQ of the sender, KEY_TL of the
 * sender, KEY_MSG (the sender's copy), KEY_CONVS of the sender, KEY_CONV of the sender, KEY_SEQ_RESTORED
 * (all of the sender's shard). ARGV: node, mid, from, to, cid, type, body, ts, dedup TTL, delivery head,
 * CHAN_NODE prefix of the sender's shard, suffix, packet (without seq), timeline.keep_s,
 * timeline.max_entries, "1" when the caller WAITs, the KEY_MSG prefix of the sender's shard (key_msg_prefix).
 * Returns {0, mid, from seq} (with "1": {0, mid, from seq, payload, channel...}), {1, "<first mid> <its from
 * seq>", the first's stored packet or nil} a retry, {-1}, {-2, why}, {-3} as send_lua. */
static struct rdsa_script send_s_lua = {
    "send_s",
    LUA_SHEBANG
    "local first = redis.call('GET', KEYS[1])\n"
    "if first then\n"
    "  if ARGV[16] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[9]) end\n"
    "  local fm = string.match(first, '^(%d+)')\n"
    "  return {1, first, fm and redis.call('HGET', ARGV[17] .. fm, '" MSG_F_PACKET "')}\n"
    "end\n"
    "if redis.call('SISMEMBER', KEYS[2], ARGV[4]) == 0 then return {-1} end\n"
    "if redis.call('EXISTS', KEYS[5]) == 0 and redis.call('EXISTS', KEYS[10]) == 0 then return {-3} end\n"
    "local fs = redis.call('INCR', KEYS[5])\n"
    "local ok = redis.pcall('XADD', KEYS[6], 'MAXLEN', '~', ARGV[15], fs .. '-0', '" TL_F_MID "', ARGV[2])\n"
    "if type(ok) == 'table' and ok.err then redis.call('DECR', KEYS[5]) return {-2, ok.err} end\n"
    "redis.call('EXPIRE', KEYS[6], ARGV[14])\n"
    "redis.call('XADD', KEYS[3], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID
    "', ARGV[2], '" MQ_F_FROM "', ARGV[3], '" MQ_F_TO "', ARGV[4], '" MQ_F_CID "', ARGV[5], '" MQ_F_TYPE
    "', ARGV[6], '" MQ_F_BODY "', ARGV[7], '" MQ_F_TS "', ARGV[8], '" MQ_F_FROM_SEQ "', fs)\n"
    "local fc = 'u' .. ARGV[4]\n"
    "redis.call('ZADD', KEYS[8], fs, fc)\n"
    "local fn = redis.call('HGET', KEYS[9], fc .. '" CONV_F_IN "') or '0'\n"
    "redis.call('HSET', KEYS[9], fc .. '" CONV_F_LAST "', ARGV[2])\n"
    "redis.call('HSET', KEYS[7], '" MSG_F_PACKET "', ARGV[13], '" MSG_F_FROM_SEQ "', fs, '" MSG_F_FROM_IN
    "', fn)\n"
    "redis.call('EXPIRE', KEYS[7], ARGV[14])\n"
    "redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. fs, 'EX', ARGV[9])\n"
    "local out, h = {0, ARGV[2], fs}, redis.call('HGETALL', KEYS[4])\n"
    "for j = 1, #h, 2 do\n"
    "  if h[j] ~= ARGV[1] and tonumber(h[j + 1]) > 0 then\n"
    "    local payload = fs .. ' 0 ' .. ARGV[10] .. ARGV[13]\n"
    "    if ARGV[16] == '1' then\n"
    "      out[4] = payload\n"
    "      out[#out + 1] = ARGV[11] .. h[j] .. ARGV[12]\n"
    "    else\n"
    "      redis.call('SPUBLISH', ARGV[11] .. h[j] .. ARGV[12], payload)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

/* send_r_lua, the recipient's part, in the recipient's shard, run after send_s_lua answered (for a new
 * message or a retry): idempotent through KEY_RCV. KEYS: KEY_RCV of mid, KEY_MQ, presence of the recipient,
 * KEY_SEQ of the recipient, KEY_TL of the recipient, KEY_MSG (the recipient's copy), KEY_CONVS of the
 * recipient, KEY_CONV of the recipient, KEY_SEQ_RESTORED, KEY_NOTIFY (all of the recipient's shard).
 * ARGV: node, mid, from, to, cid, type, body, ts, dedup TTL, delivery head, CHAN_NODE prefix of the
 * recipient's shard, suffix,
 * packet (without seq), timeline.keep_s, timeline.max_entries, the live node ids ("" = notifications off),
 * the notification's preview, notify.queue_maxlen, "1" when the caller WAITs. Returns {0, to seq} (with
 * "1": {0, to seq, payload, channel...}), {1, "<to seq> <to in>"} it ran before for this mid (nothing
 * written), {-2, why}, {-3} as send_lua. */
static struct rdsa_script send_r_lua = {
    "send_r",
    LUA_SHEBANG KEY_LUA_LIVE
    "local done = redis.call('GET', KEYS[1])\n"
    "if done then\n"
    "  if ARGV[19] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[9]) end\n"
    "  return {1, done}\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[4]) == 0 and redis.call('EXISTS', KEYS[9]) == 0 then return {-3} end\n"
    "local ts = redis.call('INCR', KEYS[4])\n"
    "local ok = redis.pcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[15], ts .. '-0', '" TL_F_MID "', ARGV[2])\n"
    "if type(ok) == 'table' and ok.err then redis.call('DECR', KEYS[4]) return {-2, ok.err} end\n"
    "redis.call('EXPIRE', KEYS[5], ARGV[14])\n"
    "redis.call('XADD', KEYS[2], '*', '" MQ_F_VERSION "', '" MQ_FORMAT_VERSION "', '" MQ_F_MID
    "', ARGV[2], '" MQ_F_FROM "', ARGV[3], '" MQ_F_TO "', ARGV[4], '" MQ_F_CID "', ARGV[5], '" MQ_F_TYPE
    "', ARGV[6], '" MQ_F_BODY "', ARGV[7], '" MQ_F_TS "', ARGV[8], '" MQ_F_TO_SEQ "', ts)\n"
    "local tc = 'u' .. ARGV[3]\n"
    "redis.call('ZADD', KEYS[7], ts, tc)\n"
    "local tn = redis.call('HINCRBY', KEYS[8], tc .. '" CONV_F_IN "', 1)\n"
    "redis.call('HSET', KEYS[8], tc .. '" CONV_F_LAST "', ARGV[2])\n"
    "redis.call('HSET', KEYS[6], '" MSG_F_PACKET "', ARGV[13], '" MSG_F_TO_SEQ "', ts, '" MSG_F_TO_IN
    "', tn)\n"
    "redis.call('EXPIRE', KEYS[6], ARGV[14])\n"
    "redis.call('SET', KEYS[1], ts .. ' ' .. tn, 'EX', ARGV[9])\n"
    "local out, h = {0, ts}, redis.call('HGETALL', KEYS[3])\n"
    "local online = false\n"
    "for j = 1, #h, 2 do\n"
    "  if tonumber(h[j + 1]) > 0 then\n"
    "    if ARGV[16] ~= '' and mp_live(ARGV[16], h[j]) then online = true end\n"
    "    if h[j] ~= ARGV[1] then\n"
    "      local payload = '0 ' .. ts .. ' ' .. ARGV[10] .. ARGV[13]\n"
    "      if ARGV[19] == '1' then\n"
    "        out[3] = payload\n"
    "        out[#out + 1] = ARGV[11] .. h[j] .. ARGV[12]\n"
    "      else\n"
    "        redis.call('SPUBLISH', ARGV[11] .. h[j] .. ARGV[12], payload)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ARGV[16] ~= '' and not online then\n"
    "  local rn = tonumber(redis.call('HGET', KEYS[8], tc .. '" CONV_F_READ_IN "') or '0')\n"
    "  redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[18], '*', '" NT_F_VERSION "', '" NOTIFY_FORMAT_VERSION
    "', '" NT_F_TYPE "', 'message', '" NT_F_KIND "', ARGV[6], '" NT_F_TO "', ARGV[4], '" NT_F_FROM
    "', ARGV[3], '" NT_F_CONV "', tc, '" NT_F_MID "', ARGV[2], '" NT_F_SEQ "', ts, '" NT_F_TS
    "', ARGV[8], '" NT_F_PREVIEW "', ARGV[17], '" NT_F_UNREAD "', tn - rn)\n"
    "end\n"
    "return out\n",
    ""};

#define SEND_WARN_EVERY_MS 10000 /* a refusal that repeats for every message is logged this often */
#define SEND_NKEYS         17
#define SEND_ARGC          36
#define SEND_S_NKEYS       10
#define SEND_S_ARGC        27
#define SEND_R_NKEYS       10
#define SEND_R_ARGC        29

/* CHAN_NODE of a shard without the node id (a script's ARGV: the script adds "<node>" CHAN_NODE_SUFFIX), into
 * buf: the delivery channels a script of that shard publishes on (keys.h). */
#define chan_prefix(buf, shard) snprintf((buf), sizeof(buf), CHAN_NODE_SHARD_PREFIX, (shard))

/* A message as the three send scripts take it. */
struct send_fields {
    const char *mid, *cid, *body, *head, *json; /* head: chatpkt_delivery's; json: the packet without seq */
    size_t cid_len, body_len, head_len, json_len;
    int64_t from, to, ts;
    char type;
};

/* The run of ARGV the three scripts share, in this order (their comments): node, mid, from, to, cid, type,
 * body, ts, dedup TTL, delivery head, CHAN_NODE prefix of `shard`, suffix, packet, timeline.keep_s,
 * timeline.max_entries. Written at argv[0..15); the numbers are formatted into n, which lives until
 * rdsa_eval has copied them. */
struct send_numbers {
    char node[16], from[24], to[24], ts[24], ttl[24], keep[24], maxlen[24], chan[32], type[2];
};

static void send_common_argv(const struct send_fields *f, int shard, struct send_numbers *n,
                             const char **argv, size_t *argvlen)
{
    snprintf(n->node, sizeof(n->node), "%d", push.node);
    snprintf(n->from, sizeof(n->from), "%lld", (long long)f->from);
    snprintf(n->to, sizeof(n->to), "%lld", (long long)f->to);
    snprintf(n->ts, sizeof(n->ts), "%lld", (long long)f->ts);
    snprintf(n->ttl, sizeof(n->ttl), "%lld", push.cfg->push.dedup_ttl_s);
    snprintf(n->keep, sizeof(n->keep), "%lld", push.cfg->timeline.keep_s);
    snprintf(n->maxlen, sizeof(n->maxlen), "%lld", push.cfg->timeline.max_entries);
    chan_prefix(n->chan, shard);
    n->type[0] = f->type;
    n->type[1] = '\0';
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
    ARG(0, n->node, strlen(n->node));
    ARG(1, f->mid, strlen(f->mid));
    ARG(2, n->from, strlen(n->from));
    ARG(3, n->to, strlen(n->to));
    ARG(4, f->cid, f->cid_len);
    ARG(5, n->type, 1);
    ARG(6, f->body, f->body_len);
    ARG(7, n->ts, strlen(n->ts));
    ARG(8, n->ttl, strlen(n->ttl));
    ARG(9, f->head, f->head_len);
    ARG(10, n->chan, strlen(n->chan));
    ARG(11, CHAN_NODE_SUFFIX, strlen(CHAN_NODE_SUFFIX));
    ARG(12, f->json, f->json_len);
    ARG(13, n->keep, strlen(n->keep));
    ARG(14, n->maxlen, strlen(n->maxlen));
#undef ARG
}

struct send_req {
    struct chat_req r;
    int64_t to;
    int64_t ts;
    char *json; /* the packet recipients get, without seq */
    size_t json_len;
    /* What the script answered, kept until rdsa_wait answers. */
    char *retry;  /* a retry: "<first mid> <its from seq>"; NULL = a new message */
    char mid[24]; /* a new message: its mid and seqs */
    int64_t fseq, tseq;
    struct chat_pubs pubs; /* with WAIT: the deliveries to other nodes */
    /* The split (two shards): what send_r_lua needs after send_s_lua answered. */
    int64_t from;
    char type;
    char *body; /* the message's text (a retry with the first's stored packet: that packet's) */
    size_t body_len;
    int recv_new; /* send_r_lua wrote the recipient's part now: deliver it */
};

/* send_common_argv for one half of a split message: the message is s's. */
static void send_common_argv_split(const struct send_req *s, const char *head, size_t head_len, int shard,
                                   struct send_numbers *n, const char **argv, size_t *argvlen)
{
    send_common_argv(&(struct send_fields){.mid = s->mid,
                                           .cid = s->r.id,
                                           .cid_len = s->r.id_len,
                                           .body = s->body,
                                           .body_len = s->body_len,
                                           .head = head,
                                           .head_len = head_len,
                                           .json = s->json,
                                           .json_len = s->json_len,
                                           .from = s->from,
                                           .to = s->to,
                                           .ts = s->ts,
                                           .type = s->type},
                     shard, n, argv, argvlen);
}

static void send_free(struct send_req *s)
{
    free(s->json);
    free(s->body);
    free(s->retry);
    chat_pubs_free(&s->pubs);
    chat_req_done(&s->r);
    free(s);
}

void chat_send_init(void)
{
    rdsa_script(&send_lua);
    rdsa_script(&send_s_lua);
    rdsa_script(&send_r_lua);
}

int chat_pubs_keep(struct chat_pubs *p, const redisReply *r, size_t first)
{
    if (r->elements <= first + 1)
        return MP_OK;
    if (r->element[first]->type != REDIS_REPLY_STRING ||
        (p->payload = malloc(r->element[first]->len + 1)) == NULL ||
        (p->chans = calloc(r->elements - first - 1, sizeof(*p->chans))) == NULL)
        return MP_ENOMEM;
    memcpy(p->payload, r->element[first]->str, r->element[first]->len + 1);
    p->len = r->element[first]->len;
    for (size_t i = first + 1; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            (p->chans[p->n] = strdup(r->element[i]->str)) == NULL)
            return MP_ENOMEM;
        p->n++;
    }
    return MP_OK;
}

void chat_pubs_send(const struct chat_pubs *p)
{
    for (size_t i = 0; i < p->n; i++) /* CHAN_NODE is sharded: to its slot's master on a cluster */
        rdsa_cmd(NULL, NULL, "SPUBLISH %s %b", p->chans[i], p->payload, p->len);
}

void chat_pubs_free(struct chat_pubs *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->chans[i]);
    free(p->chans);
    free(p->payload);
    memset(p, 0, sizeof(*p));
}

/* rdsa_wait answered (at once when no WAIT is configured): the A, then the deliveries. */
static void on_send_durable(int ok, void *arg)
{
    struct send_req *s = arg;
    struct conn *c = s->r.c;

    if (chat_durable_ack(&s->r, ok, s->retry, s->mid, s->fseq)) {
        chat_pubs_send(&s->pubs);
        chat_deliver_seq(s->to, s->json, s->json_len, s->tseq, NULL, s->ts);
        chat_deliver_seq(c->uid, s->json, s->json_len, s->fseq, c, s->ts);
    }
    send_free(s);
}

static void on_send_reply(redisReply *r, void *arg)
{
    struct send_req *s = arg;
    struct conn *c = s->r.c;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e == NULL || r->elements < 1 || e[0]->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("send script failed reason=\"%s\"", r->str);
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (e[0]->integer == -1) {
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_NOT_FRIENDS, STATS_E_REJECTED);
    } else if (e[0]->integer == -3) {
        static int64_t warned_ms;
        if (mp_now_ms() - warned_ms >= SEND_WARN_EVERY_MS) {
            warned_ms = mp_now_ms();
            log_warn("sends refused until magpie-persist has restored the seq counters from MySQL (Redis "
                     "lost them, or was replaced; " KEY_SEQ_RESTORED " is missing) uid=%lld",
                     key_shard(c->uid), (long long)c->uid);
        }
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else if (e[0]->integer == 1 && r->elements == 2 && e[1]->type == REDIS_REPLY_STRING) {
        if ((s->retry = strdup(e[1]->str)) == NULL)
            goto unavailable;
        rdsa_wait(on_send_durable, s);
        return;
    } else if (e[0]->integer == 0 && r->elements >= 4 && e[1]->type == REDIS_REPLY_STRING &&
               e[2]->type == REDIS_REPLY_INTEGER && e[3]->type == REDIS_REPLY_INTEGER) {
        snprintf(s->mid, sizeof(s->mid), "%s", e[1]->str);
        s->fseq = e[2]->integer;
        s->tseq = e[3]->integer;
        if (chat_pubs_keep(&s->pubs, r, 4) != MP_OK)
            goto unavailable;
        rdsa_wait(on_send_durable, s);
        return;
    } else {
        if (e[0]->integer == -2 && r->elements == 2 && e[1]->type == REDIS_REPLY_STRING)
            log_error("send refused: a timeline is ahead of its counter uid=%lld to=%lld reason=\"%s\"",
                      (long long)c->uid, (long long)s->to, e[1]->str);
        chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    }
    send_free(s);
    return;
unavailable:
    chat_error(c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    send_free(s);
}

/* ---- the split: sender and recipient in two shards (the comment at the top) ---- */

static void on_recv_reply(redisReply *r, void *arg);

/* rdsa_wait answered for the recipient's part: the A, then the recipient's deliveries when that part was
 * written now (a new message, or a retry completing a message whose recipient's part never ran). */
static void on_recv_durable(int ok, void *arg)
{
    struct send_req *s = arg;

    chat_durable_ack(&s->r, ok, s->retry, s->mid, s->fseq);
    if (ok && s->recv_new) {
        chat_pubs_send(&s->pubs);
        chat_deliver_seq(s->to, s->json, s->json_len, s->tseq, NULL, s->ts);
    }
    send_free(s);
}

/* Run send_r_lua for s (its mid, fseq and content are final). On failure: E, s freed. */
static void send_recv(struct send_req *s)
{
    char rcv[64], mq[32], pto[64], sto[64], tto[64], msgto[64], csto[64], cto[64], restored[48], notify[32],
        qmax[24], *head;
    struct send_numbers n;
    const char *argv[SEND_R_ARGC], *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "", *live = "";
    size_t argvlen[SEND_R_ARGC], head_len;
    int rs = key_shard(s->to);

    if ((head = chatpkt_delivery(s->to, s->from, s->ts, "", 0, &head_len)) == NULL)
        goto failed;
    if (push.cfg->notify.webhook_url[0] != '\0' && (live = cluster_live_nodes()) == NULL) {
        free(head);
        goto failed;
    }
    snprintf(rcv, sizeof(rcv), KEY_RCV, rs, (long long)strtoll(s->mid, NULL, 10));
    snprintf(mq, sizeof(mq), KEY_MQ, rs);
    key_tagged(pto, sizeof(pto), KEY_PRESENCE, s->to);
    key_tagged(sto, sizeof(sto), KEY_SEQ, s->to);
    key_tagged(tto, sizeof(tto), KEY_TL, s->to);
    snprintf(msgto, sizeof(msgto), KEY_MSG, rs, (long long)strtoll(s->mid, NULL, 10));
    key_tagged(csto, sizeof(csto), KEY_CONVS, s->to);
    key_tagged(cto, sizeof(cto), KEY_CONV, s->to);
    snprintf(restored, sizeof(restored), KEY_SEQ_RESTORED, rs);
    snprintf(notify, sizeof(notify), KEY_NOTIFY, rs);
    snprintf(qmax, sizeof(qmax), "%lld", push.cfg->notify.queue_maxlen);
    send_common_argv_split(s, head, head_len, rs, &n, argv + SEND_R_NKEYS, argvlen + SEND_R_NKEYS);
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
    ARG(0, rcv, strlen(rcv));
    ARG(1, mq, strlen(mq));
    ARG(2, pto, strlen(pto));
    ARG(3, sto, strlen(sto));
    ARG(4, tto, strlen(tto));
    ARG(5, msgto, strlen(msgto));
    ARG(6, csto, strlen(csto));
    ARG(7, cto, strlen(cto));
    ARG(8, restored, strlen(restored));
    ARG(9, notify, strlen(notify));
    /* 10..24: send_common_argv */
    ARG(25, live, strlen(live));
    ARG(26, s->body, s->type == 't' ? chat_preview_len(s->body, s->body_len) : 0);
    ARG(27, qmax, strlen(qmax));
    ARG(28, waits, strlen(waits));
#undef ARG
    chat_pubs_free(&s->pubs);
    if (rdsa_eval(&send_r_lua, on_recv_reply, s, SEND_R_NKEYS, SEND_R_ARGC, argv, argvlen) != MP_OK) {
        free(head);
        goto failed;
    }
    free(head);
    return;
failed:
    chat_error(s->r.c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    send_free(s);
}

static void on_recv_reply(redisReply *r, void *arg)
{
    struct send_req *s = arg;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e != NULL && r->elements >= 2 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == 0 &&
        e[1]->type == REDIS_REPLY_INTEGER) {
        s->tseq = e[1]->integer;
        s->recv_new = 1;
        if (chat_pubs_keep(&s->pubs, r, 2) != MP_OK)
            goto unavailable;
        rdsa_wait(on_recv_durable, s);
        return;
    }
    if (e != NULL && r->elements == 2 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == 1) {
        rdsa_wait(on_recv_durable, s); /* done before: this WAIT also covers that attempt's writes */
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_warn("send_r script failed mid=%s reason=\"%s\"", s->mid, r->str);
    else if (e != NULL && r->elements >= 1 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == -3) {
        static int64_t warned_ms;
        if (mp_now_ms() - warned_ms < SEND_WARN_EVERY_MS)
            goto unavailable;
        warned_ms = mp_now_ms();
        log_warn(
            "send refused until magpie-persist has restored the seq counters from MySQL (" KEY_SEQ_RESTORED
            " is missing) to=%lld mid=%s",
            key_shard(s->to), (long long)s->to, s->mid);
    } else if (e != NULL && r->elements == 2 && e[1]->type == REDIS_REPLY_STRING)
        log_error(
            "send refused: the recipient's timeline is ahead of its counter to=%lld mid=%s reason=\"%s\"",
            (long long)s->to, s->mid, e[1]->str);
    /* The sender's part stays written (its timeline has the message); the client's retry completes it. */
unavailable:
    chat_error(s->r.c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    send_free(s);
}

/* rdsa_wait answered for the sender's part: the sender's deliveries (a new message), then the recipient's
 * part. */
static void on_sender_durable(int ok, void *arg)
{
    struct send_req *s = arg;

    if (!ok) {
        chat_error(s->r.c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        send_free(s);
        return;
    }
    if (s->retry == NULL) {
        chat_pubs_send(&s->pubs);
        chat_deliver_seq(s->from, s->json, s->json_len, s->fseq, s->r.c, s->ts);
    }
    send_recv(s);
}

/* A retry found the sender's dedup key: take the first mid and seq, and the first's content from its stored
 * packet (stored, len; NULL when its KEY_MSG copy has expired: the retry's content under the first mid), so
 * that the recipient's part, if it has not run yet, stores what the sender's part stored. */
static int take_first(struct send_req *s, const char *first, const char *stored, size_t len)
{
    long long mid = strtoll(first, NULL, 10);
    const char *sp = strchr(first, ' ');
    json_t *pk;
    char *json;

    if (mid <= 0 || sp == NULL || (s->retry = strdup(first)) == NULL)
        return MP_ERR;
    snprintf(s->mid, sizeof(s->mid), "%lld", mid);
    s->fseq = strtoll(sp + 1, NULL, 10);
    if (stored != NULL && (pk = json_loadb(stored, len, 0, NULL)) != NULL) {
        const char *t = json_string_value(json_object_get(pk, "type"));
        json_t *msg = json_object_get(pk, "msg"), *ts = json_object_get(pk, "ts");
        char *body;
        if (t != NULL && (t[0] == 't' || t[0] == 'i') && json_is_string(msg) && json_is_integer(ts) &&
            (body = malloc(json_string_length(msg) + 1)) != NULL && (json = malloc(len + 1)) != NULL) {
            memcpy(body, json_string_value(msg), json_string_length(msg) + 1);
            free(s->body);
            s->body = body;
            s->body_len = json_string_length(msg);
            s->type = t[0];
            s->ts = json_integer_value(ts);
            memcpy(json, stored, len);
            json[len] = '\0';
            free(s->json);
            s->json = json;
            s->json_len = len;
            json_decref(pk);
            return MP_OK;
        }
        json_decref(pk);
    }
    json = packet_chat(s->r.id, s->r.id_len, s->from, s->to, s->type, s->body, s->body_len, s->ts, mid, &len);
    if (json == NULL)
        return MP_ERR;
    free(s->json);
    s->json = json;
    s->json_len = len;
    return MP_OK;
}

static void on_sender_reply(redisReply *r, void *arg)
{
    struct send_req *s = arg;
    redisReply **e = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->element : NULL;

    if (e != NULL && r->elements >= 3 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == 0 &&
        e[1]->type == REDIS_REPLY_STRING && e[2]->type == REDIS_REPLY_INTEGER) {
        snprintf(s->mid, sizeof(s->mid), "%s", e[1]->str);
        s->fseq = e[2]->integer;
        if (chat_pubs_keep(&s->pubs, r, 3) != MP_OK)
            goto unavailable;
        rdsa_wait(on_sender_durable, s);
        return;
    }
    if (e != NULL && r->elements == 3 && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == 1 &&
        e[1]->type == REDIS_REPLY_STRING) {
        int stored = e[2]->type == REDIS_REPLY_STRING;
        if (take_first(s, e[1]->str, stored ? e[2]->str : NULL, stored ? e[2]->len : 0) != MP_OK)
            goto unavailable;
        rdsa_wait(on_sender_durable, s);
        return;
    }
    /* a refusal or a failure: exactly as the combined script's */
    on_send_reply(r, arg);
    return;
unavailable:
    chat_error(s->r.c, s->r.id, s->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    send_free(s);
}

/* The sender's part; s holds the message (s->mid is the new mid). MP_OK or MP_ERR (s untouched). */
static int send_sender(struct send_req *s, const char *dedup, size_t dedup_len, const char *head,
                       size_t head_len)
{
    char friends[64], mq[32], pfrom[64], sfrom[64], tfrom[64], msgkey[64], csfrom[64], cfrom[64],
        restored[48], msgpre[48];
    struct send_numbers n;
    const char *argv[SEND_S_ARGC], *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "";
    size_t argvlen[SEND_S_ARGC];
    int ss = key_shard(s->from);

    key_tagged(friends, sizeof(friends), KEY_FRIENDS, s->from);
    snprintf(mq, sizeof(mq), KEY_MQ, ss);
    key_tagged(pfrom, sizeof(pfrom), KEY_PRESENCE, s->from);
    key_tagged(sfrom, sizeof(sfrom), KEY_SEQ, s->from);
    key_tagged(tfrom, sizeof(tfrom), KEY_TL, s->from);
    snprintf(msgkey, sizeof(msgkey), KEY_MSG, ss, (long long)strtoll(s->mid, NULL, 10));
    key_tagged(csfrom, sizeof(csfrom), KEY_CONVS, s->from);
    key_tagged(cfrom, sizeof(cfrom), KEY_CONV, s->from);
    snprintf(restored, sizeof(restored), KEY_SEQ_RESTORED, ss);
    key_msg_prefix(msgpre, sizeof(msgpre), ss);
    send_common_argv_split(s, head, head_len, ss, &n, argv + SEND_S_NKEYS, argvlen + SEND_S_NKEYS);
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
    ARG(0, dedup, dedup_len);
    ARG(1, friends, strlen(friends));
    ARG(2, mq, strlen(mq));
    ARG(3, pfrom, strlen(pfrom));
    ARG(4, sfrom, strlen(sfrom));
    ARG(5, tfrom, strlen(tfrom));
    ARG(6, msgkey, strlen(msgkey));
    ARG(7, csfrom, strlen(csfrom));
    ARG(8, cfrom, strlen(cfrom));
    ARG(9, restored, strlen(restored));
    /* 10..24: send_common_argv */
    ARG(25, waits, strlen(waits));
    ARG(26, msgpre, strlen(msgpre));
#undef ARG
    return rdsa_eval(&send_s_lua, on_sender_reply, s, SEND_S_NKEYS, SEND_S_ARGC, argv, argvlen) == MP_OK
               ? MP_OK
               : MP_ERR;
}

void chat_send(struct conn *c, const struct chatpkt *p)
{
    char dedup[64 + CHAT_MAX_ID], friends[64], pto[64], pfrom[64], sfrom[64], sto[64], tfrom[64], tto[64],
        msgkey[64], msgto[64], mq[32], restored[48], notify[32], csfrom[64], csto[64], cfrom[64], cto[64],
        mid_s[24], qmax[24], *json = NULL, *head = NULL;
    struct send_numbers n;
    const char *argv[SEND_ARGC], *waits = push.cfg->redis.min_replicas_acked > 0 ? "1" : "", *live = "";
    size_t argvlen[SEND_ARGC], json_len = 0, head_len, dedup_len;
    struct send_req *s = NULL;
    struct chat_msg m;
    const char *bad;
    int64_t mid, ts;

    if ((bad = chatpkt_message(p, c->uid, &m)) != NULL) {
        int malformed = strcmp(bad, CHAT_E_BAD_TO) == 0 || strcmp(bad, CHAT_E_BAD_MSG) == 0;
        chat_error(c, p->id, p->id_len, bad, malformed ? STATS_E_MALFORMED : STATS_E_REJECTED);
        return;
    }
    if (!rdsa_ready())
        goto failed;
    mid = id_next(&push.ids);
    ts = mp_now_ms();
    json = packet_chat(p->id, p->id_len, c->uid, m.to, p->type, m.body, m.body_len, ts, mid, &json_len);
    if (json == NULL || (s = calloc(1, sizeof(*s))) == NULL ||
        (head = chatpkt_delivery(m.to, c->uid, ts, "", 0, &head_len)) == NULL)
        goto failed;

    dedup_len = chat_dedup_key(dedup, sizeof(dedup), c->uid, p->id, p->id_len);
    if (key_shard(c->uid) != key_shard(m.to)) {
        chat_req_init(&s->r, c, p);
        s->from = c->uid;
        s->to = m.to;
        s->ts = ts;
        s->type = p->type;
        s->json = json;
        s->json_len = json_len;
        snprintf(s->mid, sizeof(s->mid), "%lld", (long long)mid);
        if ((s->body = malloc(m.body_len + 1)) == NULL) {
            chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
            send_free(s);
        } else {
            memcpy(s->body, m.body, m.body_len);
            s->body[m.body_len] = '\0';
            s->body_len = m.body_len;
            if (send_sender(s, dedup, dedup_len, head, head_len) != MP_OK) {
                chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
                send_free(s);
            }
        }
        free(head);
        return;
    }
    key_tagged(friends, sizeof(friends), KEY_FRIENDS, c->uid);
    key_tagged(pto, sizeof(pto), KEY_PRESENCE, m.to);
    key_tagged(pfrom, sizeof(pfrom), KEY_PRESENCE, c->uid);
    snprintf(mid_s, sizeof(mid_s), "%lld", (long long)mid);
    key_tagged(sfrom, sizeof(sfrom), KEY_SEQ, c->uid);
    key_tagged(sto, sizeof(sto), KEY_SEQ, m.to);
    key_tagged(tfrom, sizeof(tfrom), KEY_TL, c->uid);
    key_tagged(tto, sizeof(tto), KEY_TL, m.to);
    snprintf(msgkey, sizeof(msgkey), KEY_MSG, key_shard(c->uid), (long long)mid);
    snprintf(msgto, sizeof(msgto), KEY_MSG, key_shard(m.to), (long long)mid);
    snprintf(mq, sizeof(mq), KEY_MQ, key_shard(c->uid));
    snprintf(restored, sizeof(restored), KEY_SEQ_RESTORED, key_shard(c->uid));
    snprintf(notify, sizeof(notify), KEY_NOTIFY, key_shard(c->uid));
    key_tagged(csfrom, sizeof(csfrom), KEY_CONVS, c->uid);
    key_tagged(csto, sizeof(csto), KEY_CONVS, m.to);
    key_tagged(cfrom, sizeof(cfrom), KEY_CONV, c->uid);
    key_tagged(cto, sizeof(cto), KEY_CONV, m.to);
    if (push.cfg->notify.webhook_url[0] != '\0' && (live = cluster_live_nodes()) == NULL)
        goto failed; /* no live-node view: Redis has not answered for push.node_ttl_s */
    snprintf(qmax, sizeof(qmax), "%lld", push.cfg->notify.queue_maxlen);
    send_common_argv(&(struct send_fields){.mid = mid_s,
                                           .cid = p->id,
                                           .cid_len = p->id_len,
                                           .body = m.body,
                                           .body_len = m.body_len,
                                           .head = head,
                                           .head_len = head_len,
                                           .json = json,
                                           .json_len = json_len,
                                           .from = c->uid,
                                           .to = m.to,
                                           .ts = ts,
                                           .type = p->type},
                     key_shard(c->uid) /* both users' shard */, &n, argv + SEND_NKEYS, argvlen + SEND_NKEYS);
#define ARG(i, v, l) (argv[i] = (v), argvlen[i] = (l))
    ARG(0, dedup, dedup_len);
    ARG(1, friends, strlen(friends));
    ARG(2, mq, strlen(mq));
    ARG(3, pto, strlen(pto));
    ARG(4, pfrom, strlen(pfrom));
    ARG(5, sfrom, strlen(sfrom));
    ARG(6, sto, strlen(sto));
    ARG(7, tfrom, strlen(tfrom));
    ARG(8, tto, strlen(tto));
    ARG(9, msgkey, strlen(msgkey));
    ARG(10, csfrom, strlen(csfrom));
    ARG(11, csto, strlen(csto));
    ARG(12, cfrom, strlen(cfrom));
    ARG(13, cto, strlen(cto));
    ARG(14, restored, strlen(restored));
    ARG(15, notify, strlen(notify));
    ARG(16, msgto, strlen(msgto));
    /* 17..31: send_common_argv */
    ARG(32, live, strlen(live));
    ARG(33, m.body, p->type == 't' ? chat_preview_len(m.body, m.body_len) : 0);
    ARG(34, qmax, strlen(qmax));
    ARG(35, waits, strlen(waits));
#undef ARG
    chat_req_init(&s->r, c, p);
    s->to = m.to;
    s->ts = ts;
    s->json = json;
    s->json_len = json_len;
    if (rdsa_eval(&send_lua, on_send_reply, s, SEND_NKEYS, SEND_ARGC, argv, argvlen) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        send_free(s);
    }
    free(head); /* rdsa_eval copied the arguments */
    return;

failed:
    chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    free(s);
    free(json);
    free(head);
}
