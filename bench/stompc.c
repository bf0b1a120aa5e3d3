/* stompc.c -- see stompc.h. */
#include "stompc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *stompc_strerror(int err)
{
    switch (err) {
    case STOMPC_E_COMMAND:
        return "stomp: not a server command";
    case STOMPC_E_HEADER:
        return "stomp: malformed headers";
    case STOMPC_E_ESCAPE:
        return "stomp: undefined escape in a header";
    case STOMPC_E_BODY:
        return "stomp: malformed body (NUL, content-length)";
    default:
        return "stomp: ok";
    }
}

/* The line at msg[*off..]: its length without the EOL (\n or \r\n); *off moves past the EOL. -1 when there
 * is no EOL. */
static long line(const char *msg, size_t len, size_t *off)
{
    const char *nl = memchr(msg + *off, '\n', len - *off);
    if (nl == NULL)
        return -1;
    size_t end = (size_t)(nl - msg), l = end - *off;
    if (l > 0 && msg[end - 1] == '\r')
        l--;
    long r = (long)l;
    *off = end + 1;
    return r;
}

static int escapes_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r')
            return 0; /* a CR is only allowed as part of the EOL */
        if (s[i] != '\\')
            continue;
        if (i + 1 == n || !strchr("rnc\\", s[i + 1]))
            return 0;
        i++;
    }
    return 1;
}

static size_t skip_eols(const char *msg, size_t len, size_t off)
{
    while (off < len && (msg[off] == '\n' || (msg[off] == '\r' && off + 1 < len && msg[off + 1] == '\n')))
        off += msg[off] == '\r' ? 2 : 1;
    return off;
}

int stompc_parse(const char *msg, size_t len, struct stompc_frame *f, size_t *used)
{
    static const struct {
        const char *name;
        int cmd;
    } cmds[] = {{"CONNECTED", STOMPC_CONNECTED},
                {"MESSAGE", STOMPC_MESSAGE},
                {"RECEIPT", STOMPC_RECEIPT},
                {"ERROR", STOMPC_ERROR}};
    size_t off = 0;
    memset(f, 0, sizeof(*f));
    *used = 0;
    off = skip_eols(msg, len, 0); /* heart-beats before the frame */
    if (off == len) {
        f->cmd = STOMPC_HEARTBEAT;
        *used = len;
        return 0;
    }
    size_t start = off;
    long cl = line(msg, len, &off);
    if (cl < 0)
        return STOMPC_E_COMMAND;
    f->cmd = -1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if ((size_t)cl == strlen(cmds[i].name) && memcmp(msg + start, cmds[i].name, (size_t)cl) == 0)
            f->cmd = cmds[i].cmd;
    if (f->cmd < 0)
        return STOMPC_E_COMMAND;
    for (;;) {
        size_t ls = off;
        long l = line(msg, len, &off);
        if (l < 0)
            return STOMPC_E_HEADER; /* no blank line before the body */
        if (l == 0)
            break;
        const char *colon = memchr(msg + ls, ':', (size_t)l);
        if (colon == NULL || colon == msg + ls || f->nh == STOMPC_MAX_HEADERS)
            return STOMPC_E_HEADER;
        size_t nl = (size_t)(colon - (msg + ls)), vl = (size_t)l - nl - 1;
        if (f->cmd != STOMPC_CONNECTED && (!escapes_ok(msg + ls, nl) || !escapes_ok(colon + 1, vl)))
            return STOMPC_E_ESCAPE;
        f->h[f->nh].name = msg + ls;
        f->h[f->nh].name_len = nl;
        f->h[f->nh].value = colon + 1;
        f->h[f->nh].value_len = vl;
        f->nh++;
    }
    char clen[24];
    size_t body_end;
    if (stompc_value(f, "content-length", clen, sizeof(clen)) >= 0) {
        char *end;
        unsigned long long v = strtoull(clen, &end, 10);
        if (clen[0] < '0' || clen[0] > '9' || *end != '\0' || v >= len - off)
            return STOMPC_E_BODY;
        body_end = off + (size_t)v;
        if (msg[body_end] != '\0')
            return STOMPC_E_BODY;
    } else {
        const char *nul = memchr(msg + off, '\0', len - off);
        if (nul == NULL)
            return STOMPC_E_BODY;
        body_end = (size_t)(nul - msg);
    }
    f->body = msg + off;
    f->body_len = body_end - off;
    *used = skip_eols(msg, len, body_end + 1);
    return 0;
}

long stompc_value(const struct stompc_frame *f, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    for (int i = 0; i < f->nh; i++) {
        if (f->h[i].name_len != n || memcmp(f->h[i].name, name, n) != 0)
            continue;
        const char *v = f->h[i].value;
        size_t o = 0;
        for (size_t j = 0; j < f->h[i].value_len; j++) {
            char ch = v[j];
            if (ch == '\\' && f->cmd != STOMPC_CONNECTED) {
                ch = v[++j];
                ch = ch == 'r' ? '\r' : ch == 'n' ? '\n' : ch == 'c' ? ':' : '\\';
            }
            if (o + 1 >= cap)
                return -1;
            buf[o++] = ch;
        }
        buf[o] = '\0';
        return (long)o;
    }
    return -1;
}

/* Append s (n bytes), escaped when esc. Returns 0, or -1 when out of room. */
static int put(char *out, size_t cap, size_t *o, const char *s, size_t n, int esc)
{
    for (size_t i = 0; i < n; i++) {
        const char *e = NULL;
        if (esc)
            e = s[i] == '\r'   ? "\\r"
                : s[i] == '\n' ? "\\n"
                : s[i] == ':'  ? "\\c"
                : s[i] == '\\' ? "\\\\"
                               : NULL;
        size_t k = e ? 2 : 1;
        if (*o + k > cap)
            return -1;
        if (e)
            memcpy(out + *o, e, 2);
        else
            out[*o] = s[i];
        *o += k;
    }
    return 0;
}

size_t stompc_build(char *out, size_t cap, const char *command, const char *const *headers, const void *body,
                    size_t body_len)
{
    size_t o = 0;
    int esc = strcmp(command, "CONNECT") != 0 && strcmp(command, "STOMP") != 0;
    if (put(out, cap, &o, command, strlen(command), 0) != 0 || put(out, cap, &o, "\n", 1, 0) != 0)
        return 0;
    for (int i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        if (put(out, cap, &o, headers[i], strlen(headers[i]), esc) != 0 ||
            put(out, cap, &o, ":", 1, 0) != 0 ||
            put(out, cap, &o, headers[i + 1], strlen(headers[i + 1]), esc) != 0 ||
            put(out, cap, &o, "\n", 1, 0) != 0)
            return 0;
    }
    if (body != NULL) {
        char cl[40];
        int n = snprintf(cl, sizeof(cl), "content-length:%zu\n", body_len);
        if (put(out, cap, &o, cl, (size_t)n, 0) != 0)
            return 0;
    }
    if (o + 1 + body_len + 1 > cap)
        return 0;
    out[o++] = '\n';
    if (body_len > 0)
        memcpy(out + o, body, body_len);
    o += body_len;
    out[o++] = '\0';
    return o;
}
