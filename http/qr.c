/* qr.c -- web login by QR code (SPEC §3, seed 000): the session is a state machine in one Redis hash
 * (KEY_QR), changed only by the Lua scripts below, each atomic:
 *
 *   created --scan (a user)--> scanned --confirm (same user)--> confirmed --poll (browser)--> consumed
 *   created/scanned/confirmed --cancel (the scanning user)--> cancelled
 *   any state --TTL qr.session_ttl_s--> gone (expired)
 *
 * A session is bound to the browser that created it: POST /pc_session sets an HttpOnly cookie holding a
 * random browser id (kept across sessions), and only a poll carrying it may redeem the session (else 14).
 * Every transition bumps the hash's "ver" and publishes it on the session's CHAN_QR channel, which wakes
 * the browser's long poll (longpoll.h). A consumed session stays until its TTL so a second redeem gets 8.
 *
 * With redis.min_replicas_acked (shared/sentinel.h) the answers that tell a client a step was taken --
 * create, scan, confirm, cancel -- wait for rds_wait (code 20 when too few replicas hold it; each step
 * answers its own retry the same). The browser's redeem does not: its answer is the login itself, and a
 * failover that takes back "consumed" lets only the same browser (its cookie) redeem once more.
 */
#include "qr.h"
#include "handlers.h"
#include "hmetrics.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "users.h"

#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QR_MAX_UA          256 /* bytes of the browser's User-Agent kept for the phone to see */
#define QR_MAX_DEVICE      128 /* bytes of device_name */
#define QR_MAX_CLIENT_ID   128
#define QR_SVG_MODULE_PX   6  /* the SVG's default rendering size per module */
#define QR_QUIET_ZONE      4  /* modules of white border the QR standard asks for */
#define QR_EXPIRY_SLACK_MS 50 /* a poll waiting for its session's expiry wakes this much after it */

/* KEYS: session. ARGV: ttl ms, then field/value pairs. */
static const char create_lua[] = LUA_SHEBANG "redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"
                                             "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                                             "return 1\n";

/* KEYS: session. ARGV: browser id, channel.
 * {8} gone or used, {14} another browser, {18} cancelled, {0, uid} confirmed (now consumed),
 * {9, user_name, device} scanned (told once), {10, ver, pttl} nothing new. */
static const char poll_lua[] =
    LUA_SHEBANG "local h = redis.call('HMGET', KEYS[1], 'state', 'browser', 'ver', "
                "'notified', 'uid', 'user_name', 'device')\n"
                "if not h[1] then return {8} end\n"
                "if h[2] ~= ARGV[1] then return {14} end\n"
                "if h[1] == 'cancelled' then return {18} end\n"
                "if h[1] == 'consumed' then return {8} end\n"
                "if h[1] == 'confirmed' then\n"
                "  redis.call('HSET', KEYS[1], 'state', 'consumed')\n"
                "  redis.call('PUBLISH', ARGV[2], redis.call('HINCRBY', KEYS[1], 'ver', 1))\n"
                "  return {0, h[5]}\n"
                "end\n"
                "if h[1] == 'scanned' and h[4] ~= '1' then\n"
                "  redis.call('HSET', KEYS[1], 'notified', '1')\n"
                "  return {9, h[6] or '', h[7] or ''}\n"
                "end\n"
                "return {10, h[3] or '0', redis.call('PTTL', KEYS[1])}\n";

/* KEYS: session. ARGV: uid, user name, now ms, channel.
 * {8} gone or used, {18} cancelled, {14} scanned by someone else, {1, ip, ua, device, created} scanned. */
static const char scan_lua[] = LUA_SHEBANG
    "local h = redis.call('HMGET', KEYS[1], 'state', 'uid', 'ip', 'ua', 'device', 'created')\n"
    "if not h[1] then return {8} end\n"
    "if h[1] == 'cancelled' then return {18} end\n"
    "if h[1] == 'created' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'scanned', 'uid', ARGV[1], 'user_name', ARGV[2], 'scanned', "
    "ARGV[3])\n"
    "  redis.call('PUBLISH', ARGV[4], redis.call('HINCRBY', KEYS[1], 'ver', 1))\n"
    "elseif h[1] ~= 'scanned' then return {8}\n"
    "elseif h[2] ~= ARGV[1] then return {14} end\n"
    "return {1, h[3] or '', h[4] or '', h[5] or '', h[6] or '0'}\n";

/* KEYS: session. ARGV: uid, channel, the state to go to ("confirmed" or "cancelled").
 * 0 done (or already done), 8 gone or used, 14 not the scanning user, 18 cancelled. */
static const char decide_lua[] = LUA_SHEBANG
    "local h = redis.call('HMGET', KEYS[1], 'state', 'uid')\n"
    "if not h[1] then return 8 end\n"
    "if h[1] == 'cancelled' then return ARGV[3] == 'cancelled' and h[2] == ARGV[1] and 0 or 18 end\n"
    "if h[2] ~= ARGV[1] then return 14 end\n"
    "if h[1] == ARGV[3] then return 0 end\n"
    "if h[1] ~= 'scanned' and not (h[1] == 'confirmed' and ARGV[3] == 'cancelled') then return 8 end\n"
    "redis.call('HSET', KEYS[1], 'state', ARGV[3])\n"
    "redis.call('PUBLISH', ARGV[2], redis.call('HINCRBY', KEYS[1], 'ver', 1))\n"
    "return 0\n";

static void count(const char *event)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "event=\"%s\"", event);
    metric_add(hm.qr, labels, 1);
}

static void key_of(char *buf, size_t n, const char *token)
{
    snprintf(buf, n, KEY_QR, token);
}

static void channel_of(char *buf, size_t n, const char *token)
{
    snprintf(buf, n, CHAN_QR, token);
}

/* The browser id from the request's cookie, or "" when it has none (or a malformed one). */
static void browser_of(const struct http_req *req, char *out)
{
    if (cookie_get(req->cookie, app.cfg.qr.cookie, out, HTTP_TOKEN_HEX + 1) != 0 || !is_hex_token(out))
        out[0] = '\0';
}

static const char *str_el(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : "";
}

static long long int_el(const redisReply *r, size_t i)
{
    if (i >= r->elements)
        return 0;
    if (r->element[i]->type == REDIS_REPLY_INTEGER)
        return r->element[i]->integer;
    if (r->element[i]->type == REDIS_REPLY_STRING)
        return strtoll(r->element[i]->str, NULL, 10);
    return 0;
}

/* Run a script on one session; returns its array or integer reply, or NULL after answering code 20. */
static redisReply *run(struct call *c, const char *what, redisReply *rep, int type)
{
    if (rep != NULL && rep->type == type && (type != REDIS_REPLY_ARRAY || rep->elements > 0))
        return rep;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        log_error("qr script failed script=%s reason=\"%s\"", what, rep->str);
    freeReplyObject(rep);
    reply_unavailable(c, "redis");
    return NULL;
}

/* ---- POST /pc_session ---- */

void qr_create(struct call *c)
{
    const char *device = "", *client_id = "";
    char token[HTTP_TOKEN_HEX + 1], browser[HTTP_TOKEN_HEX + 1], key[64], ua[QR_MAX_UA + 1];
    char ttl[24], created[24], expires[24], platform[64] = "", cookie[256], *qr_url;
    json_t *p = c->body ? json_object_get(c->body, "platform") : NULL;
    int64_t now = mp_now_ms(), ttl_ms = app.cfg.qr.session_ttl_s * 1000;
    redisReply *rep;

    if (field_str(c, "device_name", 0, QR_MAX_DEVICE, &device) < 0 ||
        field_str(c, "clientId", 0, QR_MAX_CLIENT_ID, &client_id) < 0)
        return;
    if (json_is_integer(p))
        snprintf(platform, sizeof(platform), "%lld", (long long)json_integer_value(p));
    else if (json_is_string(p))
        snprintf(platform, sizeof(platform), "%s", json_string_value(p));
    else if (p != NULL && !json_is_null(p)) {
        reply_msg(c, API_INVALID, "platform: must be an integer or a string", NULL);
        return;
    }
    if (call_random_hex(c, token, HTTP_TOKEN_HEX) != 0)
        return;
    browser_of(c->req, browser);
    if (browser[0] == '\0' && call_random_hex(c, browser, HTTP_TOKEN_HEX) != 0)
        return;
    utf8_clean(ua, sizeof(ua), c->req->user_agent);
    key_of(key, sizeof(key), token);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
    snprintf(created, sizeof(created), "%lld", (long long)now);
    snprintf(expires, sizeof(expires), "%lld", (long long)(now + ttl_ms));

    {
        const char *argv[] = {"EVAL",
                              create_lua,
                              "1",
                              key,
                              ttl,
                              "state",
                              "created",
                              "ver",
                              "0",
                              "browser",
                              browser,
                              "ip",
                              c->req->client_ip ? c->req->client_ip : "",
                              "ua",
                              ua,
                              "device",
                              device,
                              "created",
                              created,
                              "expires",
                              expires,
                              "platform",
                              platform,
                              "client",
                              client_id};
        rep = rds_cmdargv(&c->w->rds, (int)MP_ARRAY_LEN(argv), argv, NULL);
    }
    if ((rep = run(c, "create", rep, REDIS_REPLY_INTEGER)) == NULL)
        return;
    freeReplyObject(rep);
    if (rds_wait(&c->w->rds) != MP_OK) {
        reply_unavailable(c, "redis replicas");
        return;
    }

    /* The cookie that alone may redeem the session. Secure when the site is served over https. */
    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/; HttpOnly; SameSite=Strict%s", app.cfg.qr.cookie, browser,
             strncmp(app.cfg.http.public_url, "https:", 6) == 0 ? "; Secure" : "");
    http_resp_header(c->resp, "Set-Cookie", cookie);
    qr_url = malloc(strlen(app.cfg.http.public_url) + sizeof("/pc_session//qr.svg") + HTTP_TOKEN_HEX);
    if (qr_url == NULL) {
        reply_unavailable(c, "memory");
        return;
    }
    sprintf(qr_url, "%s/pc_session/%s/qr.svg", app.cfg.http.public_url, token);
    {
        char *text = malloc(strlen(app.cfg.qr.prefix) + HTTP_TOKEN_HEX + 1);
        if (text == NULL) {
            free(qr_url);
            reply_unavailable(c, "memory");
            return;
        }
        sprintf(text, "%s%s", app.cfg.qr.prefix, token);
        reply(c, API_OK,
              json_pack("{s:s, s:i, s:I, s:s, s:s}", "token", token, "status", 0, "expired",
                        (json_int_t)ttl_ms, "qr_text", text, "qr_url", qr_url));
        free(text);
    }
    free(qr_url);
    count("created");
}

/* ---- GET /pc_session/<token>/qr.svg ---- */

/* The QR code of text as an SVG document: one path, a horizontal run of dark modules per subpath.
 * Returns a malloc'd NUL-terminated string, or NULL. */
static char *qr_to_svg(const char *text, size_t *len)
{
    QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    char *out = NULL, *p;
    int w, x, y, size;
    size_t cap;

    if (q == NULL)
        return NULL;
    w = q->width;
    size = w + 2 * QR_QUIET_ZONE;
    cap = 512 + (size_t)w * (size_t)w * 24; /* generous: at most one run per module */
    out = malloc(cap);
    if (out == NULL) {
        QRcode_free(q);
        return NULL;
    }
    p = out;
    p += sprintf(p,
                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
                 "shape-rendering=\"crispEdges\"><rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path "
                 "fill=\"#000\" d=\"",
                 size, size, size * QR_SVG_MODULE_PX, size * QR_SVG_MODULE_PX, size, size);
    for (y = 0; y < w; y++) {
        for (x = 0; x < w;) {
            int run = 0;
            while (x + run < w && (q->data[y * w + x + run] & 1))
                run++;
            if (run > 0) {
                p += sprintf(p, "M%d %dh%dv1h-%dz", x + QR_QUIET_ZONE, y + QR_QUIET_ZONE, run, run);
                x += run;
            } else {
                x++;
            }
        }
    }
    p += sprintf(p, "\"/></svg>\n");
    *len = (size_t)(p - out);
    QRcode_free(q);
    return out;
}

void qr_svg(struct call *c)
{
    char key[128], *text, *svg;
    redisReply *rep;
    size_t len;

    if (!is_hex_token(c->param)) {
        reply(c, API_QR_GONE, NULL);
        return;
    }
    key_of(key, sizeof(key), c->param);
    rep = rds_cmd(&c->w->rds, "EXISTS %s", key);
    if ((rep = run(c, "exists", rep, REDIS_REPLY_INTEGER)) == NULL)
        return;
    if (rep->integer == 0) {
        freeReplyObject(rep);
        reply(c, API_QR_GONE, NULL);
        return;
    }
    freeReplyObject(rep);
    text = malloc(strlen(app.cfg.qr.prefix) + HTTP_TOKEN_HEX + 1);
    if (text == NULL) {
        reply_unavailable(c, "memory");
        return;
    }
    sprintf(text, "%s%s", app.cfg.qr.prefix, c->param);
    svg = qr_to_svg(text, &len);
    free(text);
    if (svg == NULL) {
        log_error("cannot encode a QR code");
        reply_unavailable(c, "qr encoder");
        return;
    }
    reply_raw(c, 200, "image/svg+xml", svg, len);
}

/* ---- POST /session_login/<token>: the creating browser's long poll ---- */

int qr_poll_answer(struct call *c, struct lp_wait *wait)
{
    char key[128], chan[128];
    redisReply *rep;
    long long code;

    key_of(key, sizeof(key), wait->token);
    channel_of(chan, sizeof(chan), wait->token);
    rep = rds_cmd(&c->w->rds, "EVAL %s 1 %s %s %s", poll_lua, key, wait->browser, chan);
    if (rep == NULL || (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "LOADING", 7) == 0)) {
        freeReplyObject(rep); /* unreachable, or back but still loading its data: the script did not run */
        return -1;
    }
    if ((rep = run(c, "poll", rep, REDIS_REPLY_ARRAY)) == NULL)
        return 0;
    code = int_el(rep, 0);
    if (code == 10) {
        int64_t pttl = int_el(rep, 2);
        wait->ver = int_el(rep, 1);
        if (pttl >= 0 && mp_mono_ms() + pttl + QR_EXPIRY_SLACK_MS < wait->deadline_ms)
            wait->deadline_ms = mp_mono_ms() + pttl + QR_EXPIRY_SLACK_MS;
        freeReplyObject(rep);
        return 1;
    }
    if (code == 0) {
        long long uid = strtoll(str_el(rep, 1), NULL, 10);
        char *token = uid > 0
                          ? auth_issue(&app.auth, AUTH_KIND_LOGIN, uid, app.cfg.auth.login_ttl_s, NULL, NULL)
                          : NULL;
        freeReplyObject(rep);
        if (token == NULL) {
            reply_unavailable(c, "token issuer");
            return 0;
        }
        count("consumed");
        log_info("qr login uid=%lld", uid);
        reply(c, API_OK,
              json_pack("{s:I, s:s, s:I}", "userId", (json_int_t)uid, "token", token, "expires_in",
                        (json_int_t)app.cfg.auth.login_ttl_s));
        free(token);
        return 0;
    }
    if (code == 9) {
        reply(c, API_QR_SCANNED,
              json_pack("{s:s, s:s}", "userName", str_el(rep, 1), "device_name", str_el(rep, 2)));
    } else {
        reply(c, code == 14 ? API_FORBIDDEN : code == 18 ? API_QR_CANCELLED : API_QR_GONE, NULL);
    }
    freeReplyObject(rep);
    return 0;
}

void qr_session_login(struct call *c)
{
    struct lp_wait wait;

    if (!is_hex_token(c->param)) {
        reply(c, API_QR_GONE, NULL);
        return;
    }
    memset(&wait, 0, sizeof(wait));
    browser_of(c->req, wait.browser);
    if (wait.browser[0] == '\0') {
        reply_msg(c, API_FORBIDDEN, "this browser did not create the session", NULL);
        return;
    }
    memcpy(wait.token, c->param, HTTP_TOKEN_HEX + 1);
    wait.ver = -1;
    wait.deadline_ms = mp_mono_ms() + app.cfg.http.long_poll_s * 1000;
    switch (qr_poll_answer(c, &wait)) {
    case 0:
        return;
    case -1: /* a new poll while Redis is unreachable: the browser hears so at once (a parked one waits on) */
        reply_unavailable(c, "redis");
        return;
    }
    if (c->front == NULL ||
        longpoll_park(&wait, c->front, c->front_ctx, c->endpoint, c->req->frontend, c->started_us) != MP_OK) {
        reply(c, API_QR_WAITING, NULL);
        return;
    }
    /* The request belongs to the long poll now; c->req may already be gone. */
    c->parked = 1;
}

/* ---- the phone: POST /scan_pc/<token>, /confirm_pc, /cancel_pc ---- */

void qr_scan(struct call *c)
{
    char key[128], chan[128], uid[24], now[24], name[64], mobile[64];
    redisReply *rep;
    long long code;

    if (!is_hex_token(c->param)) {
        reply(c, API_QR_GONE, NULL);
        return;
    }
    /* The browser shows who is logging in: the masked mobile (or the id of a user without one). */
    if (users_mobile(&c->w->db, c->uid, mobile, sizeof(mobile)) == MP_OK)
        mobile_mask(mobile, name, sizeof(name));
    else
        snprintf(name, sizeof(name), "user %lld", (long long)c->uid);
    key_of(key, sizeof(key), c->param);
    channel_of(chan, sizeof(chan), c->param);
    snprintf(uid, sizeof(uid), "%lld", (long long)c->uid);
    snprintf(now, sizeof(now), "%lld", (long long)mp_now_ms());
    rep = rds_cmd(&c->w->rds, "EVAL %s 1 %s %s %s %s %s", scan_lua, key, uid, name, now, chan);
    if ((rep = run(c, "scan", rep, REDIS_REPLY_ARRAY)) == NULL)
        return;
    code = int_el(rep, 0);
    if (code == 1 && rds_wait(&c->w->rds) != MP_OK) {
        /* the phone scans again: a second scan by the same user is answered the same */
        reply_unavailable(c, "redis replicas");
    } else if (code == 1) {
        count("scanned");
        reply(c, API_OK,
              json_pack("{s:i, s:s, s:s, s:s, s:I}", "status", 1, "ip", str_el(rep, 1), "user_agent",
                        str_el(rep, 2), "device_name", str_el(rep, 3), "created",
                        (json_int_t)int_el(rep, 4)));
    } else {
        reply(c, code == 14 ? API_FORBIDDEN : code == 18 ? API_QR_CANCELLED : API_QR_GONE, NULL);
    }
    freeReplyObject(rep);
}

/* confirm_pc and cancel_pc: the scanning user decides. */
static void decide(struct call *c, const char *to, int status, const char *event)
{
    const char *token;
    char key[128], chan[128], uid[24];
    redisReply *rep;
    long long code;

    if (field_str(c, "token", 1, 64, &token) != 0)
        return;
    if (!is_hex_token(token)) {
        reply(c, API_QR_GONE, NULL);
        return;
    }
    key_of(key, sizeof(key), token);
    channel_of(chan, sizeof(chan), token);
    snprintf(uid, sizeof(uid), "%lld", (long long)c->uid);
    rep = rds_cmd(&c->w->rds, "EVAL %s 1 %s %s %s %s", decide_lua, key, uid, chan, to);
    if ((rep = run(c, event, rep, REDIS_REPLY_INTEGER)) == NULL)
        return;
    code = rep->integer;
    freeReplyObject(rep);
    if (code == 0 && rds_wait(&c->w->rds) != MP_OK) {
        reply_unavailable(c, "redis replicas"); /* the retry of a decision made is answered 0 */
    } else if (code == 0) {
        count(event);
        reply(c, API_OK, json_pack("{s:i}", "status", status));
    } else {
        reply(c, code == 14 ? API_FORBIDDEN : code == 18 ? API_QR_CANCELLED : API_QR_GONE, NULL);
    }
}

void qr_confirm(struct call *c)
{
    decide(c, "confirmed", 2, "confirmed");
}

void qr_cancel(struct call *c)
{
    decide(c, "cancelled", 4, "cancelled");
}
