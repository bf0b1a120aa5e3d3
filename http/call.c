/* call.c -- see call.h. */
#include "call.h"
#include "log.h"
#include "magpie.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What we send when even building the envelope failed (out of memory). */
static const char oom_body[] = "{\"code\":20,\"message\":\"out of memory\",\"result\":null}";

static void set_body(struct call *c, int status, const char *type, char *body, size_t len)
{
    struct http_resp *r = c->resp;
    if (c->replied) {
        /* A handler answering twice is a bug; keep the first answer. */
        log_error("handler answered twice endpoint=%s", c->endpoint);
        free(body);
        return;
    }
    c->replied = 1;
    if (body == NULL) {
        body = strdup(oom_body);
        len = body ? strlen(body) : 0;
        status = 503;
    }
    r->status = status;
    r->content_type = type;
    r->body = body;
    r->body_len = len;
}

void reply_msg(struct call *c, enum api_code code, const char *message, json_t *result)
{
    char *body;
    if (c->seed004) {
        enum seed_code sc = code == API_OK             ? SEED_OK
                            : code == API_UNAUTHORIZED ? SEED_NOT_LOGGED_IN
                                                       : SEED_ERROR;
        body = env_seed004(sc, message ? message : env_message(code), result);
    } else {
        body = env_wildfire(code, message, result);
    }
    set_body(c, env_http_status(code), "application/json; charset=utf-8", body, body ? strlen(body) : 0);
}

void reply(struct call *c, enum api_code code, json_t *result)
{
    reply_msg(c, code, NULL, result);
}

void reply_raw(struct call *c, int status, const char *content_type, char *body, size_t len)
{
    set_body(c, status, content_type, body, len);
}

void reply_unavailable(struct call *c, const char *what)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "%s unavailable, retry later", what);
    reply_msg(c, API_UNAVAILABLE, msg, NULL);
}

static int bad_field(struct call *c, const char *name, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%.64s: %s", name, what);
    reply_msg(c, API_INVALID, msg, NULL);
    return -1;
}

/* The field, or NULL when absent (JSON null counts as absent). */
static json_t *field(struct call *c, const char *name)
{
    json_t *v = c->body ? json_object_get(c->body, name) : NULL;
    return json_is_null(v) ? NULL : v;
}

int field_str(struct call *c, const char *name, int required, size_t max_bytes, const char **out)
{
    json_t *v = field(c, name);
    if (v == NULL)
        return required ? bad_field(c, name, "missing") : 1;
    if (!json_is_string(v))
        return bad_field(c, name, "must be a string");
    if (json_string_length(v) > max_bytes)
        return bad_field(c, name, "too long");
    *out = json_string_value(v);
    return 0;
}

int field_int(struct call *c, const char *name, int required, long long min, long long max, long long *out)
{
    json_t *v = field(c, name);
    if (v == NULL)
        return required ? bad_field(c, name, "missing") : 1;
    if (!json_is_integer(v))
        return bad_field(c, name, "must be an integer");
    if (json_integer_value(v) < min || json_integer_value(v) > max)
        return bad_field(c, name, "out of range");
    *out = json_integer_value(v);
    return 0;
}

/* The raw (still percent-encoded) value of query argument name, and its length; NULL when absent. */
static const char *query_raw(const char *q, const char *name, size_t *len)
{
    size_t n = strlen(name);
    while (q != NULL && *q != '\0') {
        size_t item = strcspn(q, "&");
        if (item > n && strncmp(q, name, n) == 0 && q[n] == '=') {
            *len = item - n - 1;
            return q + n + 1;
        }
        if (item == n && strncmp(q, name, n) == 0) {
            *len = 0;
            return q + n;
        }
        q += item;
        if (*q == '&')
            q++;
    }
    return NULL;
}

int query_int(struct call *c, const char *name, long long min, long long max, long long *out)
{
    size_t len;
    const char *v = query_raw(c->req->query, name, &len);
    long long n = 0;
    if (v == NULL)
        return 1;
    /* decimal digits only (a percent-encoded digit is not a thing clients send) */
    if (len == 0 || len > 18 || strspn(v, "0123456789") < len)
        return bad_field(c, name, "must be a non-negative integer");
    for (size_t i = 0; i < len; i++)
        n = n * 10 + (v[i] - '0');
    if (n < min || n > max)
        return bad_field(c, name, "out of range");
    *out = n;
    return 0;
}

int field_uid(struct call *c, const char *name, int required, int64_t *out)
{
    json_t *v = field(c, name);
    if (v == NULL)
        return required ? bad_field(c, name, "missing") : 1;
    if (json_is_integer(v)) {
        if (json_integer_value(v) <= 0)
            return bad_field(c, name, "must be a positive user id");
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        long long n = 0;
        if (len == 0 || len > 18 || strspn(s, "0123456789") != len)
            return bad_field(c, name, "must be a positive user id");
        for (size_t i = 0; i < len; i++)
            n = n * 10 + (s[i] - '0');
        if (n <= 0)
            return bad_field(c, name, "must be a positive user id");
        *out = n;
        return 0;
    }
    return bad_field(c, name, "must be a positive user id");
}

int call_random_hex(struct call *c, char *buf, size_t hex_len)
{
    if (auth_random_hex(buf, hex_len) == MP_OK)
        return 0;
    log_error("no randomness from the kernel");
    reply_unavailable(c, "random source");
    return -1;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
    size_t n, i;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8. */
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void utf8_clean(char *dst, size_t n, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t o = 0;
    if (n == 0)
        return;
    while (*p != '\0') {
        size_t len = utf8_seq(p);
        if (len == 0 || (len == 1 && (*p < 0x20 || *p == 0x7f))) {
            if (o + 1 >= n)
                break;
            dst[o++] = '?';
            p++;
            continue;
        }
        if (o + len >= n)
            break;
        memcpy(dst + o, p, len);
        o += len;
        p += len;
    }
    dst[o] = '\0';
}

int is_hex_token(const char *s)
{
    return strlen(s) == HTTP_TOKEN_HEX && strspn(s, "0123456789abcdef") == HTTP_TOKEN_HEX;
}

int cookie_get(const char *header, const char *name, char *dst, size_t n)
{
    size_t nlen = strlen(name);
    const char *p = header;
    if (p == NULL)
        return -1;
    /* Cookie: a=1; b=2 -- pairs separated by ';', blanks around them ignored. */
    while (*p != '\0') {
        const char *end, *val;
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        end = strchr(p, ';');
        if (end == NULL)
            end = p + strlen(p);
        if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t vlen;
            val = p + nlen + 1;
            vlen = (size_t)(end - val);
            while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
                vlen--;
            if (vlen + 1 > n)
                return -1;
            memcpy(dst, val, vlen);
            dst[vlen] = '\0';
            return 0;
        }
        p = end;
    }
    return -1;
}
