/* chat_site.c -- S: a courier's position (seed 001), stored in Redis GEO (KEY_GEO) with its time
 * (KEY_GEO_TIME), then acknowledged with A -- with redis.min_replicas_acked, once rdsa_wait says enough
 * replicas hold it (shared/sentinel.h), else E "temporarily unavailable" and the courier sends it again. */
#include "chat.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"

#include <stdio.h>
#include <stdlib.h>

/* KEYS: KEY_GEO, KEY_GEO_TIME. ARGV: longitude, latitude, uid, ms. */
static struct rdsa_script site_lua = {"site",
                                      LUA_SHEBANG "redis.call('GEOADD', KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"
                                                  "redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])\n"
                                                  "return 1\n",
                                      ""};

void chat_site_init(void)
{
    rdsa_script(&site_lua);
}

/* rdsa_wait answered (at once when no WAIT is configured). */
static void on_site_durable(int ok, void *arg)
{
    struct chat_req *q = arg;
    if (ok)
        chat_reply(q->c, q->id, q->id_len, 'A', json_string("success"), NULL);
    else
        chat_error(q->c, q->id, q->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
    chat_req_done(q);
    free(q);
}

static void on_site_reply(redisReply *r, void *arg)
{
    struct chat_req *q = arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL)
            log_warn("site script failed reason=\"%s\"", r->str);
        on_site_durable(0, q);
        return;
    }
    rdsa_wait(on_site_durable, q);
}

void chat_site(struct conn *c, const struct chatpkt *p)
{
    char lon_s[32], lat_s[32], uid_s[24], ms[24];
    const char *argv[6];
    struct chat_req *q;
    const char *bad;
    double lon, lat;

    if ((bad = chatpkt_site(p, &lon, &lat)) != NULL) {
        chat_error(c, p->id, p->id_len, bad, STATS_E_MALFORMED);
        return;
    }
    snprintf(lon_s, sizeof(lon_s), "%.10f", lon);
    snprintf(lat_s, sizeof(lat_s), "%.10f", lat);
    snprintf(uid_s, sizeof(uid_s), "%lld", (long long)c->uid);
    snprintf(ms, sizeof(ms), "%lld", (long long)mp_now_ms());
    argv[0] = KEY_GEO;
    argv[1] = KEY_GEO_TIME;
    argv[2] = lon_s;
    argv[3] = lat_s;
    argv[4] = uid_s;
    argv[5] = ms;
    if ((q = malloc(sizeof(*q))) == NULL) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        return;
    }
    chat_req_init(q, c, p);
    if (rdsa_eval(&site_lua, on_site_reply, q, 2, 6, argv, NULL) != MP_OK) {
        chat_error(c, p->id, p->id_len, CHAT_E_UNAVAILABLE, STATS_E_UNAVAILABLE);
        chat_req_done(q);
        free(q);
    }
}
