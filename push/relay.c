/* relay.c -- see relay.h.
 *
 * The delivery channels (shared/bus.h, keys.h's layout): this node's CHAN_NODE of every shard, S =
 * redis.stream_shards sharded channels "mp:{<shard>}:node:<id>:in", each subscribed with SSUBSCRIBE (rdsa:
 * on a Redis Cluster on the master serving the shard's slot, following the slot when it moves; on one Redis
 * or with Sentinel all on the one subscriber connection). A delivery to a user comes on the channel of the
 * user's shard, published by a script of that shard (or by the node that ran it, after its WAIT), so one
 * user's deliveries arrive in the order Redis ran the scripts. The payloads are the same on every channel.
 * CHAN_CONTROL stays a classic channel (SUBSCRIBE): magpie-http publishes it with PUBLISH, once for every
 * node.
 */
#include "relay.h"
#include "group.h"
#include "group_lua.h"
#include "bus.h"
#include "chat.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void relay_delivery(const char *payload, size_t len)
{
    struct chat_delivery d;
    const char *packet;
    size_t packet_len;
    int64_t uid;

    if (chatpkt_user_packet_parse(payload, len, &uid, &packet, &packet_len) == 0) {
        struct frame *f = conn_user(uid) ? frame_new(packet, packet_len, 0) : NULL;
        if (f != NULL) {
            chat_deliver(uid, f, NULL, mp_now_ms());
            frame_unref(f);
        }
        return;
    }
    if (len >= 2 && payload[0] == GROUP_DELIVERY_HEAD[0] && payload[1] == GROUP_DELIVERY_HEAD[1]) {
        if (group_deliver_payload(payload, len) != 0)
            log_debug("relay: bad group delivery payload len=%zu", len);
        return;
    }
    if (chatpkt_delivery_parse(payload, len, &d) != 0) {
        log_debug("relay: bad delivery payload len=%zu", len);
        return;
    }
    /* a split send's part carries only its own user's seq, the other one 0 (push/chat_send.c) */
    if (d.to_seq > 0)
        chat_deliver_seq(d.to, d.packet, d.packet_len, d.to_seq, NULL, d.ts);
    if (d.from_seq > 0)
        chat_deliver_seq(d.from, d.packet, d.packet_len, d.from_seq, NULL, d.ts);
}

/* Goodbye (chat: C packet) and close for uid's connections here; sid "" = all of them. */
static void close_user(int64_t uid, const char *sid, const char *why, int code)
{
    int n = 0;
    for (struct conn *c = conn_user(uid); c != NULL; c = c->user_next) {
        if (!conn_open(c) || (sid[0] != '\0' && strcmp(c->sid, sid) != 0))
            continue;
        c->proto->goodbye(c, why);
        conn_close(c, code, why);
        n++;
    }
    if (n > 0)
        log_info("%s uid=%lld connections=%d", why, (long long)uid, n);
}

static void deliver_packet(int64_t uid, json_t *packet)
{
    struct frame *f;
    char *s;
    if (conn_user(uid) == NULL)
        return;
    s = json_dumps(packet, JSON_COMPACT);
    f = s ? frame_from_str(s, strlen(s)) : NULL;
    if (f == NULL)
        return;
    chat_deliver(uid, f, NULL, mp_now_ms());
    frame_unref(f);
}

void relay_control(const char *payload, size_t len)
{
    struct chat_control cmd;

    switch (chatpkt_control_parse(payload, len, &cmd)) {
    case 0:
        break;
    case -2:
        log_debug("relay: unknown control command len=%zu", len);
        chatpkt_control_free(&cmd);
        return;
    default:
        log_debug("relay: bad control payload len=%zu", len);
        chatpkt_control_free(&cmd);
        return;
    }
    switch (cmd.cmd) {
    case CHAT_CTL_KICK:
        close_user(cmd.uid, "", "kicked", LWS_CLOSE_STATUS_POLICY_VIOLATION);
        break;
    case CHAT_CTL_LOGOUT:
        close_user(cmd.uid, cmd.sid, "logout", LWS_CLOSE_STATUS_NORMAL);
        break;
    case CHAT_CTL_DELIVER:
        deliver_packet(cmd.uid, cmd.packet);
        break;
    }
    chatpkt_control_free(&cmd);
}

static void on_node_message(const char *channel, const char *payload, size_t len, void *arg)
{
    relay_delivery(payload, len);
}

static void on_control_message(const char *channel, const char *payload, size_t len, void *arg)
{
    relay_control(payload, len);
}

int relay_start(void)
{
    char chan[64];
    for (int s = 0; s < key_shards(); s++) {
        snprintf(chan, sizeof(chan), CHAN_NODE, s, push.node);
        if (rdsa_ssubscribe(chan, on_node_message, NULL) != MP_OK)
            return MP_ENOMEM;
    }
    if (rdsa_subscribe(CHAN_CONTROL, on_control_message, NULL) != MP_OK)
        return MP_ENOMEM;
    return MP_OK;
}
