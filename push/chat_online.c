/* chat_online.c -- O: is a user online anywhere in the cluster (SPEC §4, §7)?
 *
 * A user with an open connection on this node is online without asking anyone. Otherwise Redis answers
 * with PRESENCE_LUA (presence.h), the same check magpie-http's /friends makes: online when some live node
 * (heartbeat within push.node_ttl_s) holds a connection of theirs. The live nodes are this node's view
 * (cluster_live_nodes: KEY_NODES is in another slot than the user's presence, keys.h).
 */
#include "chat.h"
#include "cluster.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "presence.h"
#include "rdsa.h"

#include <stdio.h>
#include <stdlib.h>

static struct rdsa_script online_lua = {"online", PRESENCE_LUA, ""};

struct online_req {
    struct chat_req r;
    int64_t uid;
};

void chat_online_init(void)
{
    rdsa_script(&online_lua);
}

static void answer(struct conn *c, const char *id, size_t id_len, int64_t uid, int online)
{
    chat_reply(c, id, id_len, 'O', json_pack("{s:I,s:b}", "uid", (json_int_t)uid, "online", online), NULL);
}

static void on_online_reply(redisReply *r, void *arg)
{
    struct online_req *o = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_warn("presence script failed reason=\"%s\"", r->str);
        chat_error(o->r.c, o->r.id, o->r.id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    } else {
        answer(o->r.c, o->r.id, o->r.id_len, o->uid, r->element[0]->integer == 1);
    }
    chat_req_done(&o->r);
    free(o);
}

void chat_online(struct conn *c, const struct chatpkt *p)
{
    char presence[64];
    const char *argv[2], *live;
    struct online_req *o;
    const char *bad;
    int64_t uid;

    if ((bad = chatpkt_online(p, &uid)) != NULL) {
        chat_error(c, p->id, p->id_len, bad, STATS_E_MALFORMED);
        return;
    }
    for (struct conn *k = conn_user(uid); k != NULL; k = k->user_next)
        if (conn_open(k)) {
            answer(c, p->id, p->id_len, uid, 1);
            return;
        }
    if ((live = cluster_live_nodes()) == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    key_tagged(presence, sizeof(presence), KEY_PRESENCE, uid);
    argv[0] = presence;
    argv[1] = live;
    if ((o = malloc(sizeof(*o))) == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    chat_req_init(&o->r, c, p);
    o->uid = uid;
    if (rdsa_eval(&online_lua, on_online_reply, o, 1, 2, argv, NULL) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        chat_req_done(&o->r);
        free(o);
    }
}
