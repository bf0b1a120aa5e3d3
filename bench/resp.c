/* resp.c -- see resp.h. */
#include "resp.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */

enum { H_NONE, H_UPGRADE, H_CONNECTION, H_ACCEPT, H_PROTOCOL };

int resp_make_key(char *key)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    return 0;
}

void resp_accept_for(const char *key, char *out)
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)buf, (size_t)n, digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

int resp_upgrade_request_proto(char *buf, size_t cap, const char *host, const char *path, const char *key,
                               const char *protocol)
{
    int have = protocol != NULL && protocol[0] != '\0';
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "User-Agent: magpie-bench\r\n"
                     "\r\n",
                     path, host, key, have ? "Sec-WebSocket-Protocol: " : "", have ? protocol : "",
                     have ? "\r\n" : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int resp_upgrade_request(char *buf, size_t cap, const char *host, const char *path, const char *key)
{
    return resp_upgrade_request_proto(buf, cap, host, path, key, NULL);
}

/* Append to a bounded header buffer; an overlong value is kept cut (it will not match, which fails). */
static void append(char *dst, size_t cap, size_t *len, const char *at, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(dst + *len, at, n);
    *len += n;
    dst[*len] = '\0';
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    struct resp_upgrade *r = p->data;
    if (r->in_value) {
        r->field_len = 0;
        r->field[0] = '\0';
        r->in_value = 0;
    }
    append(r->field, sizeof(r->field), &r->field_len, at, n);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    struct resp_upgrade *r = p->data;
    if (!r->in_value) {
        r->in_value = 1;
        r->header = strcasecmp(r->field, "Upgrade") == 0                  ? H_UPGRADE
                    : strcasecmp(r->field, "Connection") == 0             ? H_CONNECTION
                    : strcasecmp(r->field, "Sec-WebSocket-Accept") == 0   ? H_ACCEPT
                    : strcasecmp(r->field, "Sec-WebSocket-Protocol") == 0 ? H_PROTOCOL
                                                                          : H_NONE;
    }
    switch (r->header) {
    case H_UPGRADE:
        append(r->upgrade, sizeof(r->upgrade), &r->upgrade_len, at, n);
        break;
    case H_CONNECTION:
        append(r->connection, sizeof(r->connection), &r->connection_len, at, n);
        break;
    case H_ACCEPT:
        append(r->accept, sizeof(r->accept), &r->accept_len, at, n);
        break;
    case H_PROTOCOL:
        append(r->protocol, sizeof(r->protocol), &r->protocol_len, at, n);
        break;
    default:
        break;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct resp_upgrade *r = p->data;
    r->status = p->status_code;
    r->done = 1;
    return 2; /* no body; stop after the headers whatever the status (RFC 6455: what follows is frames) */
}

static const http_parser_settings upgrade_settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
};

void resp_upgrade_init(struct resp_upgrade *r, const char *key)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->p, HTTP_RESPONSE);
    r->p.data = r;
    r->in_value = 1; /* so the first field starts a new name */
    resp_accept_for(key, r->expect);
}

void resp_upgrade_want(struct resp_upgrade *r, const char *protocol)
{
    snprintf(r->want, sizeof(r->want), "%s", protocol ? protocol : "");
}

/* Does the comma-separated header value contain token (case-insensitive)? */
static int has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return 1;
    }
    return 0;
}

int resp_upgrade_feed(struct resp_upgrade *r, const uint8_t *buf, size_t n, size_t *consumed)
{
    size_t used = http_parser_execute(&r->p, &upgrade_settings, (const char *)buf, n);
    *consumed = used;
    if (!r->done) {
        if (HTTP_PARSER_ERRNO(&r->p) != HPE_OK || used != n)
            return RESP_UP_PARSE;
        return RESP_UP_AGAIN;
    }
    if (r->status != 101)
        return RESP_UP_STATUS;
    if (strcasecmp(r->upgrade, "websocket") != 0 || !has_token(r->connection, "upgrade"))
        return RESP_UP_HEADERS;
    if (strcmp(r->accept, r->expect) != 0)
        return RESP_UP_ACCEPT;
    /* One subprotocol offered: the server must name it (a server that names none chose the default protocol,
     * which is not what this connection speaks); none offered: it must name none (RFC 6455 §4.1). */
    if (strcmp(r->protocol, r->want) != 0)
        return RESP_UP_PROTOCOL;
    return RESP_UP_OK;
}

const char *resp_upgrade_strerror(int rc)
{
    switch (rc) {
    case RESP_UP_STATUS:
        return "upgrade refused";
    case RESP_UP_HEADERS:
        return "101 without Upgrade: websocket / Connection: Upgrade";
    case RESP_UP_ACCEPT:
        return "wrong Sec-WebSocket-Accept";
    case RESP_UP_PARSE:
        return "response is not HTTP";
    case RESP_UP_PROTOCOL:
        return "101 without the requested Sec-WebSocket-Protocol";
    default:
        return "ok";
    }
}

static int on_stream_message_complete(http_parser *p)
{
    struct resp_stream *r = p->data;
    r->responses++;
    r->last_status = p->status_code;
    if (p->status_code >= 200 && p->status_code < 300)
        r->ok++;
    if (!http_should_keep_alive(p))
        r->closing = 1;
    return 0;
}

static const http_parser_settings stream_settings = {
    .on_message_complete = on_stream_message_complete,
};

void resp_stream_init(struct resp_stream *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->p, HTTP_RESPONSE);
    r->p.data = r;
}

int resp_stream_feed(struct resp_stream *r, const uint8_t *buf, size_t n)
{
    size_t used = http_parser_execute(&r->p, &stream_settings, (const char *)buf, n);
    if (HTTP_PARSER_ERRNO(&r->p) != HPE_OK || used != n)
        return -1;
    return 0;
}
