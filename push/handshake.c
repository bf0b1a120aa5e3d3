/* handshake.c -- see handshake.h. */
#include "handshake.h"
#include "auth.h"
#include "config.h"
#include "proto.h"
#include "push.h"

#include <string.h>
#include <strings.h>

/* libwebsockets' own limits for what it parses after the upgrade is confirmed (lws_process_ws_upgrade and
 * handshake_0405 in lib/roles/ws/server-ws.c, 4.1.6): it copies the Connection and Sec-WebSocket-Protocol
 * headers into 128-byte buffers (127 usable), each offered subprotocol name into 64 bytes, and refuses a
 * Sec-WebSocket-Key of 128 bytes or more. */
#define HS_LWS_LIST_BUF 128
#define HS_LWS_NAME_BUF 64
#define HS_LWS_MAX_KEY  128
/* Its tokenizer flags for both lists: the same flags, so the same tokens. */
#define HS_LWS_LIST_FLAGS                                                                                    \
    (LWS_TOKENIZE_F_COMMA_SEP_LIST | LWS_TOKENIZE_F_MINUS_NONTERM | LWS_TOKENIZE_F_DOT_NONTERM |             \
     LWS_TOKENIZE_F_RFC7230_DELIMS)

/* RFC 6455 4.1: the key is a random 16-byte value, base64-encoded (24 characters). */
#define HS_KEY_BYTES 16
#define HS_KEY_CHARS 24

/* RFC 6455 4.4: the one version this server speaks, named in a 426 answer. */
#define HS_VERSION "13"

#define HS_PATH_MAX (AUTH_MAX_TOKEN + 64) /* the path may carry a ticket */

/* Statuses libwebsockets 4.1 has no name for. */
#define HS_UPGRADE_REQUIRED  426 /* RFC 6455 4.4 */
#define HS_HEADERS_TOO_LARGE 431 /* RFC 6585 5 */

typedef unsigned (*hs_check_fn)(struct lws *wsi, struct handshake *h);

static unsigned refuse(struct handshake *h, unsigned status, const char *reason)
{
    h->status = status;
    h->reason = reason;
    h->stat = STATS_E_HANDSHAKE;
    return status;
}

/* The request path picks the protocols served there (proto->path: the path itself, path/... and
 * path?...); the subprotocol check below picks one of them. */
static int path_served(const char *path, const struct proto *p)
{
    size_t n = strlen(p->path);
    return strncmp(path, p->path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static unsigned check_path(struct lws *wsi, struct handshake *h)
{
    char path[HS_PATH_MAX];

    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) >= (int)sizeof(path))
        return refuse(h, HTTP_STATUS_REQ_URI_TOO_LONG, "path too long");
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
        return refuse(h, HTTP_STATUS_NOT_FOUND, "bad path");
    for (const struct proto_route *r = push_routes; r->proto != NULL; r++)
        if (path_served(path, r->proto)) {
            h->proto = r->proto; /* provisional: the subprotocol may pick another on this path */
            return 0;
        }
    return refuse(h, HTTP_STATUS_NOT_FOUND, "bad path");
}

static unsigned check_host(struct lws *wsi, struct handshake *h)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_HOST) > 0 ? 0
                                                         : refuse(h, HTTP_STATUS_BAD_REQUEST, "missing Host");
}

/* RFC 6455 4.2.1: Connection must hold the "Upgrade" token. Read as libwebsockets reads it. */
static unsigned check_connection(struct lws *wsi, struct handshake *h)
{
    char buf[HS_LWS_LIST_BUF];
    struct lws_tokenize ts;
    lws_tokenize_elem e;
    int n = lws_hdr_copy(wsi, buf, sizeof(buf) - 1, WSI_TOKEN_CONNECTION);

    if (n < 0)
        return refuse(h, HS_HEADERS_TOO_LARGE, "Connection header too long");
    lws_tokenize_init(&ts, buf, HS_LWS_LIST_FLAGS);
    ts.len = (size_t)n;
    do {
        e = lws_tokenize(&ts);
        if (e == LWS_TOKZE_TOKEN && ts.token_len == 7 && strncasecmp(ts.token, "upgrade", 7) == 0)
            return 0;
    } while (e == LWS_TOKZE_TOKEN || e == LWS_TOKZE_DELIMITER);
    return refuse(h, HTTP_STATUS_BAD_REQUEST, "Connection header without upgrade");
}

/* RFC 6455 4.4: another (or no) version gets 426 naming ours. libwebsockets would go on as if it were 13. */
static unsigned check_version(struct lws *wsi, struct handshake *h)
{
    char buf[sizeof(HS_VERSION) + 1];

    if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_VERSION) > 0 && strcmp(buf, HS_VERSION) == 0)
        return 0;
    h->header = "sec-websocket-version:";
    h->header_value = HS_VERSION;
    return refuse(h, HS_UPGRADE_REQUIRED, "bad Sec-WebSocket-Version");
}

/* RFC 6455 4.2.1: Sec-WebSocket-Key is 16 bytes in base64. libwebsockets only needs it present and under
 * 128 bytes; the RFC's form covers both. */
static unsigned check_key(struct lws *wsi, struct handshake *h)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    char key[HS_LWS_MAX_KEY], raw[HS_LWS_MAX_KEY];
    int n;

    if (lws_hdr_total_length(wsi, WSI_TOKEN_KEY) <= 0)
        return refuse(h, HTTP_STATUS_BAD_REQUEST, "missing Sec-WebSocket-Key");
    n = lws_hdr_copy(wsi, key, sizeof(key), WSI_TOKEN_KEY);
    if (n != HS_KEY_CHARS || strspn(key, b64) != HS_KEY_CHARS ||
        lws_b64_decode_string(key, raw, sizeof(raw)) != HS_KEY_BYTES)
        return refuse(h, HTTP_STATUS_BAD_REQUEST, "bad Sec-WebSocket-Key");
    return 0;
}

/* Is name one libwebsockets knows (server.c gives it every subprotocol of push_routes)? */
static int subprotocol_known(const char *name)
{
    for (const struct proto_route *r = push_routes; r->proto != NULL; r++)
        if (r->subprotocol != NULL && strcmp(r->subprotocol, name) == 0)
            return 1;
    return 0;
}

/* SPEC §4.3: the offered subprotocol picks the protocol. libwebsockets selects the first offered name it
 * knows, on any path (lws_process_ws_upgrade); the same walk here finds the same name, and then the route
 * must exist on this path. RFC 6455 4.2.2 lets a server refuse a list it supports nothing of: it does
 * (400), because libwebsockets 4.1.6 cannot go on without selecting one. */
static unsigned check_subprotocol(struct lws *wsi, struct handshake *h)
{
    char buf[HS_LWS_LIST_BUF], name[HS_LWS_NAME_BUF];
    const struct proto *on_path = h->proto;
    const char *chosen = NULL;
    struct lws_tokenize ts;
    lws_tokenize_elem e;
    int n = lws_hdr_copy(wsi, buf, sizeof(buf) - 1, WSI_TOKEN_PROTOCOL);

    if (n < 0)
        return refuse(h, HS_HEADERS_TOO_LARGE, "subprotocol list too long");
    if (n > 0) {
        lws_tokenize_init(&ts, buf, HS_LWS_LIST_FLAGS);
        ts.len = (size_t)n;
        do {
            e = lws_tokenize(&ts);
            if (e == LWS_TOKZE_TOKEN) {
                if (lws_tokenize_cstr(&ts, name, sizeof(name)))
                    return refuse(h, HTTP_STATUS_BAD_REQUEST, "malformed subprotocol list");
                if (subprotocol_known(name)) {
                    chosen = name;
                    break;
                }
            } else if (e != LWS_TOKZE_DELIMITER && e != LWS_TOKZE_ENDED) {
                return refuse(h, HTTP_STATUS_BAD_REQUEST, "malformed subprotocol list");
            }
        } while (e > 0);
        if (chosen == NULL)
            return refuse(h, HTTP_STATUS_BAD_REQUEST, "unsupported subprotocol");
    }
    for (const struct proto_route *r = push_routes; r->proto != NULL; r++)
        if (strcmp(r->proto->path, on_path->path) == 0 &&
            (chosen ? r->subprotocol != NULL && strcmp(r->subprotocol, chosen) == 0
                    : r->subprotocol == NULL)) {
            h->proto = r->proto;
            return 0;
        }
    return refuse(h, HTTP_STATUS_BAD_REQUEST, "unsupported subprotocol");
}

/* Browsers only: apps and servers send no Origin, and only a browser can be led by another site to open
 * a connection with the user's cookies (cross-site WebSocket hijacking). */
static unsigned check_origin(struct lws *wsi, struct handshake *h)
{
    char origin[256];
    int n;

    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0)
        return 0;
    n = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
    if (n > 0 && config_list_has(push.cfg->push.allowed_origins, origin, (size_t)n))
        return 0;
    refuse(h, HTTP_STATUS_FORBIDDEN, "foreign origin");
    h->stat = STATS_E_ORIGIN;
    return h->status;
}

/* In order: the first refusal is the answer. Path first (it picks the protocol), Origin last (a refusal
 * that is about who asks, not about a malformed request). */
static const hs_check_fn checks[] = {
    check_path, check_host, check_connection, check_version, check_key, check_subprotocol, check_origin,
};

unsigned handshake_check(struct lws *wsi, const char *upgrade, struct handshake *h)
{
    memset(h, 0, sizeof(*h));
    if (strcasecmp(upgrade, "websocket") != 0) {
        /* libwebsockets answered 403 itself to anything but websocket and h2c before asking us */
        h->answered = strcasecmp(upgrade, "h2c") != 0;
        return refuse(h, HTTP_STATUS_FORBIDDEN, "not a websocket upgrade");
    }
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
        if (checks[i](wsi, h) != 0)
            return h->status;
    return 0;
}

int handshake_refuse(struct lws *wsi, const struct handshake *h)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
    char body[128], clen[16];
    int len, clen_len;

    if (h->answered)
        return 1;
    len = snprintf(body, sizeof(body), "%s\n", h->reason);
    clen_len = snprintf(clen, sizeof(clen), "%d", len);
    if (lws_add_http_header_status(wsi, h->status, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (unsigned char *)"text/plain", 10, &p,
                                     end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (unsigned char *)clen, clen_len, &p,
                                     end) ||
        (h->header != NULL && lws_add_http_header_by_name(wsi, (const unsigned char *)h->header,
                                                          (const unsigned char *)h->header_value,
                                                          (int)strlen(h->header_value), &p, end)) ||
        lws_finalize_http_header(wsi, &p, end) || end - p < len)
        return -1;
    memcpy(p, body, (size_t)len);
    p += len;
    /* headers and body in one write, as lws_return_http_status does on HTTP/1 */
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP) != (int)(p - start))
        return -1;
    return 1;
}
