/* stompframe.c -- see stompframe.h. */
#include "stompframe.h"
#include "magpie.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const cmd_names[STOMP_CMD_COUNT] = {
    [STOMP_UNKNOWN] = "UNKNOWN", [STOMP_CONNECT] = "CONNECT",     [STOMP_STOMP] = "STOMP",
    [STOMP_SEND] = "SEND",       [STOMP_SUBSCRIBE] = "SUBSCRIBE", [STOMP_UNSUBSCRIBE] = "UNSUBSCRIBE",
    [STOMP_ACK] = "ACK",         [STOMP_NACK] = "NACK",           [STOMP_BEGIN] = "BEGIN",
    [STOMP_COMMIT] = "COMMIT",   [STOMP_ABORT] = "ABORT",         [STOMP_DISCONNECT] = "DISCONNECT",
};

const char *stompframe_cmd_name(enum stomp_cmd cmd)
{
    return (unsigned)cmd < STOMP_CMD_COUNT ? cmd_names[cmd] : cmd_names[STOMP_UNKNOWN];
}

static enum stomp_cmd cmd_of(const char *s)
{
    for (int i = STOMP_UNKNOWN + 1; i < STOMP_CMD_COUNT; i++)
        if (strcmp(s, cmd_names[i]) == 0)
            return (enum stomp_cmd)i;
    return STOMP_UNKNOWN;
}

/* Decode the escapes of s[0..len) in place, NUL-terminate; returns the new length, or -1 on an undefined
 * escape (a lone backslash at the end included). */
static long unescape(char *s, size_t len)
{
    size_t r = 0, w = 0;
    while (r < len) {
        char ch = s[r++];
        if (ch == '\\') {
            if (r == len)
                return -1;
            switch (s[r++]) {
            case 'r':
                ch = '\r';
                break;
            case 'n':
                ch = '\n';
                break;
            case 'c':
                ch = ':';
                break;
            case '\\':
                ch = '\\';
                break;
            default:
                return -1;
            }
        }
        s[w++] = ch;
    }
    s[w] = '\0';
    return (long)w;
}

/* One line of buf[pos..end): returns its length without the EOL and sets *next past the EOL; -1 when no
 * "\n" comes within max bytes (or before end). A "\r" before the "\n" is not part of the line. */
static long line(const char *buf, size_t pos, size_t end, size_t max, size_t *next)
{
    size_t limit = end - pos > max + 2 ? pos + max + 2 : end; /* the line, "\r" and "\n" */
    const char *nl = memchr(buf + pos, '\n', limit - pos);
    size_t n;
    if (nl == NULL)
        return -1;
    n = (size_t)(nl - (buf + pos));
    *next = pos + n + 1;
    if (n > 0 && buf[pos + n - 1] == '\r')
        n--;
    return n > max ? -1 : (long)n;
}

enum stompframe_result stompframe_parse(char *buf, size_t len, const struct stomp_limits *lim,
                                        struct stompframe *f, const char **why)
{
    size_t pos = 0, next, body;
    const char *cl;
    long n;
    int escaped;

    if (len > lim->max_frame) {
        *why = STOMP_E_TOO_BIG;
        return STOMPFRAME_BAD;
    }
    /* heart-beats and the EOLs before a frame */
    while (pos < len && (buf[pos] == '\n' || (buf[pos] == '\r' && pos + 1 < len && buf[pos + 1] == '\n')))
        pos += buf[pos] == '\r' ? 2 : 1;
    if (pos == len)
        return STOMPFRAME_HEARTBEAT;

    f->nh = 0;
    f->body = NULL;
    f->body_len = 0;
    if ((n = line(buf, pos, len, lim->max_header_len, &next)) < 0) {
        *why = memchr(buf + pos, '\n', len - pos) ? STOMP_E_HEADER_LONG : STOMP_E_NO_BLANK;
        return STOMPFRAME_BAD;
    }
    if (n == 0 || memchr(buf + pos, '\0', (size_t)n) != NULL) {
        *why = n == 0 ? STOMP_E_NO_COMMAND : STOMP_E_NUL_IN_HEADER;
        return STOMPFRAME_BAD;
    }
    buf[pos + (size_t)n] = '\0';
    if (strspn(buf + pos, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != (size_t)n) {
        *why = STOMP_E_BAD_COMMAND; /* commands are words; a control byte could pass for an EOL when echoed */
        return STOMPFRAME_BAD;
    }
    f->command = buf + pos;
    f->cmd = cmd_of(f->command);
    escaped = f->cmd != STOMP_CONNECT && f->cmd != STOMP_STOMP;
    pos = next;

    for (;;) { /* header lines up to the blank line */
        char *h, *colon;
        long nl, vl;
        if (pos >= len) {
            *why = STOMP_E_NO_BLANK;
            return STOMPFRAME_BAD;
        }
        if ((n = line(buf, pos, len, lim->max_header_len, &next)) < 0) {
            *why = memchr(buf + pos, '\n', len - pos) ? STOMP_E_HEADER_LONG : STOMP_E_NO_BLANK;
            return STOMPFRAME_BAD;
        }
        if (n == 0) {
            pos = next;
            break;
        }
        h = buf + pos;
        if (memchr(h, '\0', (size_t)n) != NULL) {
            *why = STOMP_E_NUL_IN_HEADER;
            return STOMPFRAME_BAD;
        }
        if (f->nh == lim->max_headers || f->nh == STOMP_MAX_HEADERS_CAP) {
            *why = STOMP_E_TOO_MANY_HDRS;
            return STOMPFRAME_BAD;
        }
        if ((colon = memchr(h, ':', (size_t)n)) == NULL || colon == h) {
            *why = STOMP_E_BAD_HEADER;
            return STOMPFRAME_BAD;
        }
        nl = colon - h;
        vl = n - nl - 1;
        if (escaped) {
            if ((nl = unescape(h, (size_t)nl)) < 0 || (vl = unescape(colon + 1, (size_t)vl)) < 0) {
                *why = STOMP_E_BAD_ESCAPE;
                return STOMPFRAME_BAD;
            }
        } else {
            h[nl] = '\0';
            colon[1 + vl] = '\0';
        }
        if (!mp_utf8_valid((const unsigned char *)h, (size_t)nl) ||
            !mp_utf8_valid((const unsigned char *)colon + 1, (size_t)vl)) {
            *why = STOMP_E_NOT_UTF8;
            return STOMPFRAME_BAD;
        }
        f->h[f->nh].name = h;
        f->h[f->nh].name_len = (size_t)nl;
        f->h[f->nh].value = colon + 1;
        f->h[f->nh].value_len = (size_t)vl;
        f->nh++;
        pos = next;
    }

    body = pos;
    if ((cl = stompframe_get(f, "content-length")) != NULL) {
        unsigned long long v = 0;
        size_t i;
        for (i = 0; cl[i] >= '0' && cl[i] <= '9' && i < 12; i++)
            v = v * 10 + (unsigned)(cl[i] - '0');
        if (i == 0 || cl[i] != '\0' || v > len - body || body + v >= len) {
            *why = i == 0 || cl[i] != '\0' ? STOMP_E_BAD_LENGTH : STOMP_E_NO_NUL;
            return STOMPFRAME_BAD;
        }
        if (buf[body + v] != '\0') {
            *why = STOMP_E_BAD_LENGTH;
            return STOMPFRAME_BAD;
        }
        f->body_len = (size_t)v;
    } else {
        const char *nul = memchr(buf + body, '\0', len - body);
        if (nul == NULL) {
            *why = STOMP_E_NO_NUL;
            return STOMPFRAME_BAD;
        }
        f->body_len = (size_t)(nul - (buf + body));
    }
    f->body = buf + body;
    for (pos = body + f->body_len + 1; pos < len; pos++)
        if (buf[pos] != '\n' && buf[pos] != '\r') {
            *why = STOMP_E_TRAILING;
            return STOMPFRAME_BAD;
        }
    return STOMPFRAME_OK;
}

const char *stompframe_get(const struct stompframe *f, const char *name)
{
    for (int i = 0; i < f->nh; i++)
        if (strcmp(f->h[i].name, name) == 0)
            return f->h[i].value;
    return NULL;
}

/* Bytes s takes escaped (escape) or as it is. */
static size_t escaped_len(const char *s, int escape)
{
    size_t n = 0;
    for (; *s; s++)
        n += escape && (*s == '\r' || *s == '\n' || *s == ':' || *s == '\\') ? 2 : 1;
    return n;
}

static char *put_escaped(char *p, const char *s, int escape)
{
    for (; *s; s++) {
        if (escape && (*s == '\r' || *s == '\n' || *s == ':' || *s == '\\')) {
            *p++ = '\\';
            *p++ = *s == '\r' ? 'r' : *s == '\n' ? 'n' : *s == ':' ? 'c' : '\\';
        } else {
            *p++ = *s;
        }
    }
    return p;
}

char *stompframe_build(const char *command, const char *const *headers, const char *body, size_t body_len,
                       size_t *len)
{
    int escape = strcmp(command, "CONNECTED") != 0;
    char cl[40];
    size_t n = strlen(command) + 1 + 1 + 1; /* command EOL, blank line EOL, NUL */
    char *out, *p;

    for (const char *const *h = headers; h && h[0] != NULL; h += 2)
        n += escaped_len(h[0], escape) + 1 + escaped_len(h[1], escape) + 1;
    if (body != NULL) {
        snprintf(cl, sizeof(cl), "content-length:%zu\n", body_len);
        n += strlen(cl) + body_len;
    }
    if ((out = malloc(n)) == NULL)
        return NULL;
    p = out;
    memcpy(p, command, strlen(command));
    p += strlen(command);
    *p++ = '\n';
    for (const char *const *h = headers; h && h[0] != NULL; h += 2) {
        p = put_escaped(p, h[0], escape);
        *p++ = ':';
        p = put_escaped(p, h[1], escape);
        *p++ = '\n';
    }
    if (body != NULL) {
        memcpy(p, cl, strlen(cl));
        p += strlen(cl);
    }
    *p++ = '\n';
    if (body != NULL) {
        memcpy(p, body, body_len);
        p += body_len;
    }
    *p++ = '\0';
    *len = (size_t)(p - out);
    return out;
}
