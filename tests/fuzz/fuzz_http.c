/* fuzz_http.c -- one HTTP request through magpie-http's core (http/): http_dispatch (the route table,
 * the credentials, the JSON body, the handler), as both front-ends call it, with Redis and MySQL never
 * reachable. Then, because a handler behind a login token cannot be reached without Redis (the router
 * checks that the token was not revoked there), the same body is handed straight to that handler as if
 * user 42 had logged in, so every endpoint's body parsing runs up to its first Redis or MySQL call.
 *
 * What is not reached: anything after a store answers (the Lua scripts' replies, the SMS delivery, the
 * QR SVG), the front-ends' own parsing (libfcgi's records, libmicrohttpd's HTTP; see README.md).
 *
 * Input, as text:
 *   METHOD SP PATH LF
 *   (Name: value LF)*          Authorization, authToken, Cookie, User-Agent, X-Real-IP; others ignored
 *   LF
 *   body                       (all the rest; none when there is no blank line)
 * auth.api_keys holds "fuzz-key"; http.enable_test_token is on (POST /tk).
 *
 * Invariants: every request is answered (never parked without a front-end), with a status the API
 * documents, a JSON envelope holding a numeric "code" unless it is the SVG or the metrics text, and no
 * response header carrying a CR or LF (header injection).
 */
#include "call.h"
#include "fuzz.h"
#include "handlers.h"
#include "log.h"
#include "magpie.h"

#include <strings.h>
#include <string.h>

static struct worker *w;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CONFIG_ERR_LEN];
    if (config_load(&app.cfg, NULL, err, sizeof(err)) != 0)
        abort();
    free(app.cfg.auth.api_keys);
    app.cfg.auth.api_keys = strdup("fuzz-key, other-key");
    app.cfg.http.enable_test_token = 1;
    if (auth_init(&app.auth, "fuzz-secret-0123456789abcdef0123456789abcdef") != MP_OK ||
        http_metrics_init() != MP_OK || log_open("http", "debug", "/dev/null") != 0 ||
        (w = worker_new()) == NULL)
        abort();
    /* Redis and MySQL are down for good: no connection is ever tried. */
    w->rds.retry_at_ms = INT64_MAX;
    w->db.retry_at_ms = INT64_MAX;
    return 0;
}

static void check_resp(const struct http_resp *r)
{
    FUZZ_CHECK(r->status >= 200 && r->status <= 599 && r->body != NULL && r->content_type != NULL);
    if (strncmp(r->content_type, "application/json", 16) == 0) {
        json_t *env = json_loadb(r->body, r->body_len, 0, NULL);
        FUZZ_CHECK(json_is_object(env) && json_is_integer(json_object_get(env, "code")));
        json_decref(env);
    }
    for (int i = 0; i < r->nheaders; i++)
        FUZZ_CHECK(strpbrk(r->headers[i].value, "\r\n") == NULL);
}

/* The handlers behind a login token, by route ("*" = one path segment, the route's parameter). */
static const struct {
    const char *method, *pattern;
    void (*fn)(struct call *c);
    int seed004;
} user_routes[] = {
    {"POST", "/logout", user_logout, 0},
    {"GET", "/me", user_me, 0},
    {"GET", "/friends", user_friends, 0},
    {"POST", "/scan_pc/*", qr_scan, 0},
    {"POST", "/confirm_pc", qr_confirm, 0},
    {"POST", "/cancel_pc", qr_cancel, 0},
    {"POST", "/IM/token", user_im_token, 0},
    {"POST", "/route", user_route, 0},
    {"POST", "/msg", msg_post, 1},
    {"GET", "/conversations", conv_list, 0},
    {"POST", "/groups", groups_create, 0},
    {"GET", "/groups", groups_list, 0},
    {"GET", "/groups/*", groups_get, 0},
    {"POST", "/groups/*", groups_update, 0},
    {"DELETE", "/groups/*", groups_delete, 0},
    {"POST", "/groups/*/members", groups_members, 0},
    {"POST", "/groups/*/leave", groups_leave, 0},
};

/* Does path match pattern (as the router matches)? The "*" segment goes to param (size n). */
static int pattern_match(const char *p, const char *s, char *param, size_t n)
{
    while (*p != '\0' && *s != '\0') {
        if (*p == '*') {
            size_t len = strcspn(s, "/");
            if (len == 0 || len >= n)
                return 0;
            memcpy(param, s, len);
            param[len] = '\0';
            s += len;
            p++;
            continue;
        }
        if (*p++ != *s++)
            return 0;
    }
    return *p == '\0' && *s == '\0';
}

static void as_user(const struct http_req *req)
{
    struct http_resp resp;
    struct call c;
    size_t i;

    memset(&c, 0, sizeof(c));
    for (i = 0; i < MP_ARRAY_LEN(user_routes); i++)
        if (strcmp(req->method, user_routes[i].method) == 0 &&
            pattern_match(user_routes[i].pattern, req->path, c.param, sizeof(c.param)))
            break;
    if (i == MP_ARRAY_LEN(user_routes))
        return;
    memset(&resp, 0, sizeof(resp));
    if (req->body != NULL) {
        c.body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(c.body)) { /* the router answers code 2 before any handler */
            json_decref(c.body);
            return;
        }
    }
    c.w = w;
    c.req = req;
    c.resp = &resp;
    c.endpoint = user_routes[i].pattern;
    c.seed004 = user_routes[i].seed004;
    c.uid = 42;
    c.claims.uid = 42;
    c.claims.kind = AUTH_KIND_LOGIN;
    strcpy(c.claims.jti, "0123456789abcdef0123456789abcdef");
    c.started_us = http_clock_us();
    user_routes[i].fn(&c);
    FUZZ_CHECK(c.replied && !c.parked);
    check_resp(&resp);
    json_decref(c.body);
    http_resp_free(&resp);
}

/* The next line of s[*at..size) as a NUL-terminated copy (without the LF), or NULL at the end. */
static char *line(const uint8_t *s, size_t size, size_t *at)
{
    const uint8_t *nl;
    size_t n;
    char *l;
    if (*at >= size)
        return NULL;
    nl = memchr(s + *at, '\n', size - *at);
    n = nl ? (size_t)(nl - (s + *at)) : size - *at;
    if ((l = malloc(n + 1)) == NULL)
        abort();
    memcpy(l, s + *at, n);
    l[n] = '\0';
    *at += n + (nl ? 1 : 0);
    return l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_req req;
    struct http_resp resp;
    char *first, *sp, *lines[32], *body = NULL;
    size_t at = 0, nlines = 0;
    int blank = 0;

    if ((first = line(data, size, &at)) == NULL)
        return 0;
    memset(&req, 0, sizeof(req));
    sp = strchr(first, ' ');
    req.method = first;
    req.path = "";
    if (sp != NULL) {
        *sp = '\0';
        req.path = sp + 1;
    }
    req.frontend = "fuzz";
    while (nlines < MP_ARRAY_LEN(lines) && (lines[nlines] = line(data, size, &at)) != NULL) {
        char *l = lines[nlines++], *v;
        if (l[0] == '\0') {
            blank = 1;
            break;
        }
        if ((v = strchr(l, ':')) == NULL)
            continue;
        *v++ = '\0';
        while (*v == ' ')
            v++;
        if (strcasecmp(l, "authorization") == 0)
            req.authorization = v;
        else if (strcasecmp(l, "authtoken") == 0)
            req.auth_token = v;
        else if (strcasecmp(l, "cookie") == 0)
            req.cookie = v;
        else if (strcasecmp(l, "user-agent") == 0)
            req.user_agent = v;
        else if (strcasecmp(l, "x-real-ip") == 0)
            req.client_ip = v;
    }
    if (blank && at < size) {
        /* exactly the body's bytes, not NUL-terminated, as the front-ends pass it */
        req.body_len = size - at;
        if ((body = malloc(req.body_len)) == NULL)
            abort();
        memcpy(body, data + at, req.body_len);
        req.body = body;
    }

    memset(&resp, 0, sizeof(resp));
    FUZZ_CHECK(http_dispatch(w, &req, &resp, NULL, NULL) == 0);
    check_resp(&resp);
    http_resp_free(&resp);
    as_user(&req);

    free(body);
    for (size_t i = 0; i < nlines; i++)
        free(lines[i]);
    free(first);
    return 0;
}
