/* router.c -- the route table and the path every request takes through it (see http.h). */
#include "call.h"
#include "handlers.h"
#include "hmetrics.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "revoked.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct http_app app;
struct http_metrics hm;

/* Who may call a route. */
enum who {
    WHO_ANYONE,
    WHO_USER,        /* a login token: Authorization: Bearer <token>, or the authToken header */
    WHO_API_KEY,     /* Authorization: Key <key>, a key from auth.api_keys */
    WHO_USER_OR_KEY, /* either */
};

struct route {
    const char *method;
    const char *pattern; /* literal, with at most one "*" = one non-empty path segment (c->param) */
    const char *name;    /* metrics label and log name: never the raw path, which may hold a token */
    enum who who;
    int seed004;   /* answers in seed 004's envelope */
    int test_only; /* exists only when http.enable_test_token = yes */
    void (*fn)(struct call *c);
    int no_store; /* the handler never asks Redis or MySQL: no worker_refresh for it (http_dispatch) */
};

static const struct route routes[] = {
    {"POST", "/send_code", "/send_code", WHO_ANYONE, 0, 0, sms_send_code, 0},
    {"POST", "/login", "/login", WHO_ANYONE, 0, 0, sms_login, 0},
    {"POST", "/logout", "/logout", WHO_USER, 0, 0, user_logout, 0},
    {"GET", "/me", "/me", WHO_USER, 0, 0, user_me, 0},
    {"GET", "/friends", "/friends", WHO_USER, 0, 0, user_friends, 0},
    {"POST", "/pc_session", "/pc_session", WHO_ANYONE, 0, 0, qr_create, 0},
    {"GET", "/pc_session/*/qr.svg", "/pc_session/{token}/qr.svg", WHO_ANYONE, 0, 0, qr_svg, 0},
    {"POST", "/session_login/*", "/session_login/{token}", WHO_ANYONE, 0, 0, qr_session_login, 0},
    {"POST", "/scan_pc/*", "/scan_pc/{token}", WHO_USER, 0, 0, qr_scan, 0},
    {"POST", "/confirm_pc", "/confirm_pc", WHO_USER, 0, 0, qr_confirm, 0},
    {"POST", "/cancel_pc", "/cancel_pc", WHO_USER, 0, 0, qr_cancel, 0},
    {"POST", "/IM/token", "/IM/token", WHO_USER, 0, 0, user_im_token, 1},
    {"POST", "/route", "/route", WHO_USER, 0, 0, user_route, 0},
    {"GET", "/conversations", "/conversations", WHO_USER, 0, 0, conv_list, 0},
    {"POST", "/groups", "/groups", WHO_USER, 0, 0, groups_create, 0},
    {"GET", "/groups", "/groups", WHO_USER, 0, 0, groups_list, 0},
    {"GET", "/groups/*", "/groups/{id}", WHO_USER, 0, 0, groups_get, 0},
    {"POST", "/groups/*", "/groups/{id}", WHO_USER, 0, 0, groups_update, 0},
    {"DELETE", "/groups/*", "/groups/{id}", WHO_USER, 0, 0, groups_delete, 0},
    {"POST", "/groups/*/members", "/groups/{id}/members", WHO_USER, 0, 0, groups_members, 0},
    {"POST", "/groups/*/leave", "/groups/{id}/leave", WHO_USER, 0, 0, groups_leave, 0},
    {"POST", "/msg", "/msg", WHO_USER_OR_KEY, 1, 0, msg_post, 0},
    {"POST", "/tk", "/tk", WHO_ANYONE, 1, 1, msg_test_token, 0},
    {"POST", "/admin/friends", "/admin/friends", WHO_API_KEY, 0, 0, admin_friends, 0},
    {"POST", "/admin/orders", "/admin/orders", WHO_API_KEY, 0, 0, admin_orders, 0},
    {"POST", "/admin/kick", "/admin/kick", WHO_API_KEY, 0, 0, admin_kick, 0},
    {"GET", "/healthz", "/healthz", WHO_ANYONE, 0, 0, ops_healthz, 0},
    {"GET", "/metrics", "/metrics", WHO_ANYONE, 0, 0, ops_metrics, 1},
};

/* ---- small shared pieces ---- */

int64_t http_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct worker *worker_new(void)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    rds_init(&w->rds, &app.cfg);
    db_init(&w->db, &app.cfg);
    return w;
}

/* Is an idle connection's socket readable? Neither Redis (outside pub/sub) nor MySQL sends anything
 * unasked, so that means the server closed it (a restart): better to notice now than to fail a request. */
static int idle_socket_closed(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return fd >= 0 && poll(&p, 1, 0) == 1;
}

void worker_refresh(struct worker *w)
{
    rds_follow(&w->rds); /* a new master announced by the sentinels: go there before this request */
    if (w->rds.c != NULL && idle_socket_closed(w->rds.c->fd)) {
        log_debug("redis closed an idle connection; reconnecting");
        redisFree(w->rds.c);
        w->rds.c = NULL; /* reconnects on the next command, with no backoff: nothing failed yet */
    }
    if (w->db.m != NULL && idle_socket_closed((int)mysql_get_socket(w->db.m))) {
        log_debug("mysql closed an idle connection; reconnecting");
        mysql_close(w->db.m);
        w->db.m = NULL;
    }
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    rds_close(&w->rds);
    db_close(&w->db);
    free(w);
}

void http_resp_header(struct http_resp *resp, const char *name, const char *value)
{
    char *copy;
    if (resp->nheaders >= HTTP_MAX_RESP_HEADERS || (copy = strdup(value)) == NULL)
        return;
    resp->headers[resp->nheaders].name = name;
    resp->headers[resp->nheaders].value = copy;
    resp->nheaders++;
}

void http_resp_free(struct http_resp *resp)
{
    free(resp->body);
    for (int i = 0; i < resp->nheaders; i++)
        free(resp->headers[i].value);
    memset(resp, 0, sizeof(*resp));
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 410:
        return "Gone";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

int http_metrics_init(void)
{
    hm.requests = metrics_counter("magpie_http_requests_total",
                                  "HTTP requests answered, by endpoint, HTTP status and front-end.");
    hm.latency =
        metrics_histogram("magpie_http_request_seconds",
                          "Time from a request's arrival to its answer (long polls include their wait).",
                          metrics_latency_bounds, metrics_latency_nbounds);
    hm.sms = metrics_counter("magpie_sms_total", "Login codes by outcome: sent, failed (delivery), limited.");
    hm.qr = metrics_counter("magpie_qr_sessions_total",
                            "QR login sessions by event: created, scanned, confirmed, consumed, cancelled.");
    hm.long_polls = metrics_gauge("magpie_http_long_polls", "QR long polls waiting right now.");
    hm.long_polls_refused =
        metrics_counter("magpie_http_long_polls_refused_total",
                        "Long polls answered at once because http.max_long_polls were waiting.");
    hm.revoked_tokens = metrics_gauge("magpie_http_revoked_tokens",
                                      "Revoked login tokens in this process's copy (http/revoked.h).");
    hm.revoked_ready =
        metrics_gauge("magpie_http_revoked_copy_ready",
                      "1 while the copy of revoked tokens answers; 0 while requests ask Redis.");
    hm.revoked_checks =
        metrics_counter("magpie_http_revocation_checks_total",
                        "Checks that a login token was not revoked, by source: copy or redis.");
    return hm.requests && hm.latency && hm.sms && hm.qr && hm.long_polls && hm.long_polls_refused &&
                   hm.revoked_tokens && hm.revoked_ready && hm.revoked_checks
               ? MP_OK
               : MP_ENOMEM;
}

/* The series of the request counter and the latency histogram, remembered per handler thread by (endpoint,
 * status, front-end): endpoint and front-end names are the route table's and the front-ends' static strings,
 * so their addresses tell them apart, and the labels are formatted and looked up once per thread and
 * combination instead of on every request (bench/README, "HTTP"). A combination past the cache's size
 * (ACCOUNT_CACHE: more than the routes' usual statuses) is formatted each time, as before. */
#define ACCOUNT_CACHE 64
struct account_slot {
    const char *endpoint, *frontend;
    int status;
    struct metric_series *requests, *latency;
};
static __thread struct account_slot account_cache[ACCOUNT_CACHE];
static __thread int account_used;

static struct account_slot *account_slot(const char *endpoint, const char *frontend, int status)
{
    char labels[160];
    struct account_slot *a;
    for (int i = 0; i < account_used; i++) {
        a = &account_cache[i];
        if (a->endpoint == endpoint && a->frontend == frontend && a->status == status)
            return a;
    }
    if (account_used == ACCOUNT_CACHE)
        return NULL;
    a = &account_cache[account_used];
    snprintf(labels, sizeof(labels), "endpoint=\"%s\",status=\"%d\",frontend=\"%s\"", endpoint, status,
             frontend);
    a->requests = metric_series(hm.requests, labels);
    snprintf(labels, sizeof(labels), "endpoint=\"%s\"", endpoint);
    a->latency = metric_series(hm.latency, labels);
    if (a->requests == NULL || a->latency == NULL)
        return NULL; /* out of memory: not kept, formatted again next time */
    a->endpoint = endpoint;
    a->frontend = frontend;
    a->status = status;
    account_used++;
    return a;
}

void http_account(const char *endpoint, const char *frontend, const struct http_resp *resp,
                  int64_t started_us)
{
    int64_t us = http_clock_us() - started_us;
    struct account_slot *a = account_slot(endpoint, frontend, resp->status);
    if (a != NULL) {
        metric_series_add(hm.requests, a->requests, 1);
        metric_series_observe(hm.latency, a->latency, (double)us / 1e6);
    } else {
        char labels[160];
        snprintf(labels, sizeof(labels), "endpoint=\"%s\",status=\"%d\",frontend=\"%s\"", endpoint,
                 resp->status, frontend);
        metric_add(hm.requests, labels, 1);
        snprintf(labels, sizeof(labels), "endpoint=\"%s\"", endpoint);
        metric_observe(hm.latency, labels, (double)us / 1e6);
    }
    log_debug("request endpoint=%s status=%d frontend=%s us=%lld", endpoint, resp->status, frontend,
              (long long)us);
}

/* ---- redaction of library log text ---- */

static int token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_' || ch == '.' || ch == '%';
}

/* Replace the run of token characters at s with a single '-', shifting the rest left. */
static void cut_run(char *s)
{
    size_t n = 0;
    while (token_char(s[n]))
        n++;
    if (n == 0)
        return;
    s[0] = '-';
    memmove(s + 1, s + n, strlen(s + n) + 1);
}

void http_redact(char *s)
{
    static const char *prefixes[] = {"/session_login/", "/scan_pc/", "/pc_session/", "/ws/", "token="};
    for (size_t i = 0; i < MP_ARRAY_LEN(prefixes); i++) {
        char *p = s;
        while ((p = strstr(p, prefixes[i])) != NULL) {
            p += strlen(prefixes[i]);
            cut_run(p);
        }
    }
    /* Any JWT: base64url of '{"' is "eyJ". */
    for (char *p = s; (p = strstr(p, "eyJ")) != NULL; p++)
        cut_run(p);
}

/* ---- routing ---- */

/* Does path match pattern? Fills param with the "*" segment. */
static int route_match(const char *pattern, const char *path, char *param, size_t n)
{
    const char *p = pattern, *s = path;
    while (*p != '\0' && *s != '\0') {
        if (*p == '*') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || len >= n)
                return 0;
            memcpy(param, s, len);
            param[len] = '\0';
            s += len;
            p++;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

static int method_is(const struct route *r, const char *method)
{
    if (strcmp(r->method, method) == 0)
        return 1;
    return strcmp(r->method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

static int route_enabled(const struct route *r)
{
    return !r->test_only || app.cfg.http.enable_test_token;
}

/* ---- who is calling ---- */

/* Constant-time comparison of a presented API key with one configured key. */
struct key_check {
    const char *key;
    size_t len;
};

static int key_equal(const char *item, size_t len, void *arg)
{
    const struct key_check *k = arg;
    unsigned char diff = 0;
    if (len != k->len)
        return 0;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(item[i] ^ k->key[i]);
    return diff == 0;
}

static int api_key_valid(const char *key)
{
    struct key_check k = {key, strlen(key)};
    if (k.len == 0)
        return 0;
    return config_list_each(app.cfg.auth.api_keys, key_equal, &k);
}

/* Split the credentials of a request: a login token (Bearer, a bare token, or authToken) or an API key. */
static void credentials(const struct http_req *req, const char **token, const char **key)
{
    const char *a = req->authorization;
    *token = NULL;
    *key = NULL;
    if (a != NULL) {
        while (*a == ' ')
            a++;
        if (strncasecmp(a, "Bearer ", 7) == 0)
            *token = a + 7;
        else if (strncasecmp(a, "Key ", 4) == 0)
            *key = a + 4;
        else if (*a != '\0' && strchr(a, ' ') == NULL)
            *token = a; /* seed 004 clients send the bare token */
        while (*token != NULL && **token == ' ')
            (*token)++;
        while (*key != NULL && **key == ' ')
            (*key)++;
    }
    if (*token == NULL && *key == NULL && req->auth_token != NULL && *req->auth_token != '\0')
        *token = req->auth_token;
}

/* worker_refresh before the request's first Redis or MySQL command, once: a poll per open connection, which
 * a request that uses neither (POST /IM/token while the copy of revoked tokens answers) does not pay. */
static void refresh_once(struct call *c)
{
    if (!c->refreshed) {
        worker_refresh(c->w);
        c->refreshed = 1;
    }
}

/* Check the login token: signature, expiry, kind, then that /logout has not revoked it.
 * 0 with c->uid set, or -1 after answering. */
static int check_login_token(struct call *c, const char *token)
{
    enum auth_result r = auth_verify(&app.auth, token, AUTH_KIND_LOGIN, &c->claims);
    redisReply *rep;
    char msg[96];

    if (r != AUTH_OK) {
        snprintf(msg, sizeof(msg), "not logged in: %s", auth_result_str(r));
        reply_msg(c, API_UNAUTHORIZED, msg, NULL);
        return -1;
    }
    /* This process's copy answers without a round trip while it is sure (revoked.h); else Redis. */
    switch (revoked_check(c->claims.jti)) {
    case REVOKED_YES:
        metric_add(hm.revoked_checks, "source=\"copy\"", 1);
        reply_msg(c, API_UNAUTHORIZED, "not logged in: token revoked by logout", NULL);
        return -1;
    case REVOKED_NO:
        metric_add(hm.revoked_checks, "source=\"copy\"", 1);
        c->uid = c->claims.uid;
        return 0;
    case REVOKED_UNKNOWN:
        break;
    }
    metric_add(hm.revoked_checks, "source=\"redis\"", 1);
    refresh_once(c);
    rep = rds_cmd(&c->w->rds, "EXISTS " KEY_REVOKED, c->claims.jti);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        reply_unavailable(c, "redis");
        return -1;
    }
    if (rep->integer != 0) {
        freeReplyObject(rep);
        reply_msg(c, API_UNAUTHORIZED, "not logged in: token revoked by logout", NULL);
        return -1;
    }
    freeReplyObject(rep);
    c->uid = c->claims.uid;
    return 0;
}

static int authenticate(struct call *c, enum who who)
{
    const char *token, *key;
    if (who == WHO_ANYONE)
        return 0;
    credentials(c->req, &token, &key);
    if (key != NULL && (who == WHO_API_KEY || who == WHO_USER_OR_KEY)) {
        if (api_key_valid(key)) {
            c->by_api_key = 1;
            return 0;
        }
        reply_msg(c, API_UNAUTHORIZED, "not logged in: unknown API key", NULL);
        return -1;
    }
    if (who == WHO_API_KEY) {
        reply_msg(c, API_UNAUTHORIZED, "not logged in: this endpoint needs an API key", NULL);
        return -1;
    }
    if (token == NULL) {
        reply_msg(c, API_UNAUTHORIZED, "not logged in: no token", NULL);
        return -1;
    }
    return check_login_token(c, token);
}

/* Parse the body: nothing (or only blanks) is no body; anything else must be one JSON object.
 * 0, or -1 after answering code 2. */
static int parse_body(struct call *c)
{
    const char *b = c->req->body;
    size_t len = c->req->body_len, i = 0;
    json_error_t err;

    while (b != NULL && i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
        i++;
    if (b == NULL || i == len)
        return 0;
    c->body = json_loadb(b, len, JSON_REJECT_DUPLICATES, &err);
    if (c->body == NULL) {
        reply_msg(c, API_INVALID, "body is not valid JSON", NULL);
        return -1;
    }
    if (!json_is_object(c->body)) {
        reply_msg(c, API_INVALID, "body must be a JSON object", NULL);
        return -1;
    }
    return 0;
}

int http_dispatch(struct worker *w, const struct http_req *req, struct http_resp *resp,
                  const struct lp_front *front, void *front_ctx)
{
    struct call c;
    const struct route *route = NULL;
    char allow[64] = "";
    size_t i;

    memset(&c, 0, sizeof(c));
    c.w = w;
    c.req = req;
    c.resp = resp;
    c.endpoint = "unknown";
    c.front = front;
    c.front_ctx = front_ctx;
    c.started_us = http_clock_us();

    for (i = 0; i < MP_ARRAY_LEN(routes); i++) {
        if (!route_enabled(&routes[i]) ||
            !route_match(routes[i].pattern, req->path, c.param, sizeof(c.param)))
            continue;
        if (method_is(&routes[i], req->method)) {
            route = &routes[i];
            break;
        }
        /* 405's Allow names every method the path has (/groups/<id>: GET, POST, DELETE) */
        if (strstr(allow, routes[i].method) == NULL) {
            size_t used = strlen(allow);
            snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "", routes[i].method);
        }
        c.endpoint = routes[i].name;
        c.seed004 = routes[i].seed004;
    }

    if (route == NULL && allow[0] != '\0') {
        reply_msg(&c, API_METHOD, NULL, NULL);
        http_resp_header(resp, "Allow", allow);
    } else if (route == NULL) {
        reply(&c, API_NOT_FOUND, NULL);
    } else {
        c.endpoint = route->name;
        c.seed004 = route->seed004;
        if (req->body_too_large)
            reply(&c, API_TOO_LARGE, NULL);
        else if (authenticate(&c, route->who) == 0 &&
                 (strcmp(route->method, "GET") == 0 || parse_body(&c) == 0)) {
            if (!route->no_store)
                refresh_once(&c);
            route->fn(&c);
        }
    }
    json_decref(c.body);
    if (c.parked)
        return 1;
    if (!c.replied) {
        log_error("handler did not answer endpoint=%s", c.endpoint);
        reply(&c, API_UNAVAILABLE, NULL);
    }
    http_account(c.endpoint, req->frontend, resp, c.started_us);
    return 0;
}
