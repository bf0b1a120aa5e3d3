/* msg.c -- seed 004's HTTP API: POST /msg (push to a room or a user) and POST /tk (a test token).
 * Both answer in seed 004's envelope {code: 1 ok | 0 error | 1001 not logged in, msg, data?}.
 *
 * /msg reaches the push nodes through Redis pub/sub (bus.h):
 *   {room_id, msg, level?} -> CHAN_ROOM of the room: a serialized BroadcastRoomReq {roomID, msgLv, data}
 *   {to, msg}              -> CHAN_CONTROL: {"cmd":"deliver","uid":to,"packet":<server packet "s">}
 * With notify.webhook_url set, {to, msg} for a user with no connection on a live node also queues an
 * offline notification (KEY_NOTIFY, fields in notify_event.h): notify_lua publishes and decides in one step,
 * given the live node ids read just before it (keys_live_read: KEY_NODES is in another slot than the
 * recipient's presence, keys.h; a node that dies in between counts as live, as it would have a moment
 * earlier).
 */
#include "bus.h"
#include "call.h"
#include "handlers.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "notify_event.h"
#include "room.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX_ROOM_ID 128 /* bytes of a room id */
#define MSG_ID_HEX      16  /* server-chosen id of an "s" packet */

/* PUBLISH (CHAN_CONTROL) or SPUBLISH (CHAN_ROOM: a sharded channel, shared/bus.h) payload on channel. */
static void publish(struct call *c, const char *command, const char *channel, const void *payload, size_t len)
{
    redisReply *rep = rds_cmd(&c->w->rds, "%s %s %b", command, channel, payload, len);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        reply_unavailable(c, "redis");
        return;
    }
    log_debug("published channel_kind=%s receivers=%lld bytes=%zu",
              strncmp(channel, "mp:room:", 8) == 0 ? "room" : "control", rep->integer, len);
    freeReplyObject(rep);
}

/* KEYS: presence of the recipient, KEY_NOTIFY of the recipient's shard.
 * ARGV: CHAN_CONTROL, payload, the live node ids (KEY_LUA_LIVE), to, packet id, ts, preview,
 * notify.queue_maxlen. Returns PUBLISH's receiver count. */
static const char notify_lua[] = LUA_SHEBANG KEY_LUA_LIVE
    "local n = redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "for j = 1, #h, 2 do\n"
    "  if tonumber(h[j + 1]) > 0 and mp_live(ARGV[3], h[j]) then return n end\n"
    "end\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', '" NT_F_VERSION "', '" NOTIFY_FORMAT_VERSION
    "', '" NT_F_TYPE "', 'system', '" NT_F_KIND "', 's', '" NT_F_TO "', ARGV[4], '" NT_F_FROM
    "', '0', '" NT_F_CONV "', 'u0', '" NT_F_MID "', ARGV[5], '" NT_F_TS "', ARGV[6], '" NT_F_PREVIEW
    "', ARGV[7])\n"
    "return n\n";

/* Bytes of the first notify.preview_chars characters of msg when it is a string (jansson holds valid
 * UTF-8); an object has no preview. */
static size_t preview_len(const json_t *msg)
{
    const char *s = json_is_string(msg) ? json_string_value(msg) : "";
    size_t len = json_is_string(msg) ? json_string_length(msg) : 0, i;
    long long chars = 0;
    for (i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == app.cfg.notify.preview_chars)
            break;
    return i;
}

/* PUBLISH the system packet, and queue a notification when the user is offline (notify_lua). */
static void publish_notify(struct call *c, int64_t to, const char *id, int64_t ts, const json_t *msg,
                           const char *payload)
{
    char presence[64], notify[32], live[KEY_LIVE_MAX], to_s[24], ts_s[24], qmax[24];
    const char *argv[] = {"EVAL", notify_lua,   "2",     presence,
                          notify, CHAN_CONTROL, payload, live,
                          to_s,   id,           ts_s,    json_is_string(msg) ? json_string_value(msg) : "",
                          qmax};
    size_t lens[MP_ARRAY_LEN(argv)];
    redisReply *rep;

    key_tagged(presence, sizeof(presence), KEY_PRESENCE, to);
    snprintf(notify, sizeof(notify), KEY_NOTIFY, key_shard(to));
    snprintf(to_s, sizeof(to_s), "%lld", (long long)to);
    snprintf(ts_s, sizeof(ts_s), "%lld", (long long)ts);
    snprintf(qmax, sizeof(qmax), "%lld", app.cfg.notify.queue_maxlen);
    if (keys_live_read(&c->w->rds, app.cfg.push.node_ttl_s, live, sizeof(live)) != MP_OK) {
        reply_unavailable(c, "redis");
        return;
    }
    for (size_t i = 0; i < MP_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    lens[11] = preview_len(msg);
    rep = rds_cmdargv(&c->w->rds, (int)MP_ARRAY_LEN(argv), argv, lens);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
            log_warn("system message script failed reason=\"%s\"", rep->str);
        freeReplyObject(rep);
        reply_unavailable(c, "redis");
        return;
    }
    freeReplyObject(rep);
}

static void to_room(struct call *c, const char *msg, size_t msg_len)
{
    Magpie__BroadcastRoomReq b = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    json_t *room = json_object_get(c->body, "room_id");
    char room_id[MSG_MAX_ROOM_ID + 1], channel[MSG_MAX_ROOM_ID + 16];
    long long level = 0;
    uint8_t *buf;
    size_t len;

    if (json_is_integer(room) && json_integer_value(room) >= 0) {
        snprintf(room_id, sizeof(room_id), "%lld", (long long)json_integer_value(room));
    } else if (json_is_string(room) && json_string_length(room) > 0 &&
               json_string_length(room) <= MSG_MAX_ROOM_ID &&
               strlen(json_string_value(room)) == json_string_length(room)) {
        snprintf(room_id, sizeof(room_id), "%s", json_string_value(room));
    } else {
        reply_msg(c, API_INVALID, "room_id: must be a non-empty string of at most 128 bytes", NULL);
        return;
    }
    if (field_int(c, "level", 0, MAGPIE__MSG_LEVEL__NORMAL, MAGPIE__MSG_LEVEL__IMPORTANT, &level) < 0)
        return;
    b.roomid = room_id;
    b.msglv = (Magpie__MsgLevel)level;
    b.data.data = (uint8_t *)msg;
    b.data.len = msg_len;
    len = magpie__broadcast_room_req__get_packed_size(&b);
    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        reply_unavailable(c, "memory");
        return;
    }
    magpie__broadcast_room_req__pack(&b, buf);
    snprintf(channel, sizeof(channel), CHAN_ROOM, room_id);
    publish(c, "SPUBLISH", channel, buf, len);
    free(buf);
    if (!c->replied)
        reply(c, API_OK, NULL);
}

static void to_user(struct call *c, json_t *msg)
{
    int64_t to, ts = mp_now_ms();
    char id[MSG_ID_HEX + 1];
    json_t *cmd;
    char *payload;

    if (field_uid(c, "to", 1, &to) != 0 || call_random_hex(c, id, MSG_ID_HEX) != 0)
        return;
    if (json_object_get(c->body, "level") != NULL) {
        reply_msg(c, API_INVALID, "level: only for room messages", NULL);
        return;
    }
    cmd = json_pack("{s:s, s:I, s:{s:s, s:i, s:I, s:s, s:O, s:I}}", "cmd", BUS_CMD_DELIVER, "uid",
                    (json_int_t)to, "packet", "id", id, "from", 0, "to", (json_int_t)to, "type", "s", "msg",
                    msg, "ts", (json_int_t)ts);
    payload = cmd ? json_dumps(cmd, JSON_COMPACT) : NULL;
    json_decref(cmd);
    if (payload == NULL) {
        reply_unavailable(c, "memory");
        return;
    }
    if (app.cfg.notify.webhook_url[0] != '\0')
        publish_notify(c, to, id, ts, msg, payload);
    else
        publish(c, "PUBLISH", CHAN_CONTROL, payload, strlen(payload));
    free(payload);
    if (!c->replied)
        reply(c, API_OK, json_pack("{s:s}", "id", id));
}

void msg_post(struct call *c)
{
    json_t *msg = c->body ? json_object_get(c->body, "msg") : NULL;
    int has_room = c->body && json_object_get(c->body, "room_id") != NULL;
    int has_to = c->body && json_object_get(c->body, "to") != NULL;

    if (has_room == has_to) {
        reply_msg(c, API_INVALID, "give either room_id or to", NULL);
        return;
    }
    if (has_room) {
        if (!json_is_string(msg) || json_string_length(msg) == 0) {
            reply_msg(c, API_INVALID, "msg: must be a non-empty string", NULL);
            return;
        }
        to_room(c, json_string_value(msg), json_string_length(msg));
        return;
    }
    if ((!json_is_string(msg) || json_string_length(msg) == 0) && !json_is_object(msg)) {
        reply_msg(c, API_INVALID, "msg: must be a non-empty string or an object", NULL);
        return;
    }
    to_user(c, msg);
}

void msg_test_token(struct call *c)
{
    int64_t uid;
    char *token;
    if (field_uid(c, "uid", 1, &uid) != 0)
        return;
    token = auth_issue(&app.auth, AUTH_KIND_LOGIN, uid, app.cfg.auth.login_ttl_s, NULL, NULL);
    if (token == NULL) {
        reply_unavailable(c, "token issuer");
        return;
    }
    log_info("test token issued uid=%lld", (long long)uid);
    reply(c, API_OK, json_string(token));
    free(token);
}
