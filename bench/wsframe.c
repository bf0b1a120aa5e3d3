/* wsframe.c -- see wsframe.h. */
#include "wsframe.h"

#include <stdlib.h>
#include <string.h>

int wsf_parse_header(const uint8_t *buf, size_t n, uint64_t max_payload, int allow_masked,
                     struct wsf_header *h)
{
    if (n < 2)
        return 0;
    h->fin = (buf[0] & 0x80) != 0;
    h->opcode = buf[0] & 0x0F;
    h->masked = (buf[1] & 0x80) != 0;
    if (buf[0] & 0x70)
        return WSF_E_RSV;
    switch (h->opcode) {
    case WSF_CONT:
    case WSF_TEXT:
    case WSF_BINARY:
    case WSF_CLOSE:
    case WSF_PING:
    case WSF_PONG:
        break;
    default:
        return WSF_E_OPCODE;
    }
    if (h->masked && !allow_masked)
        return WSF_E_MASKED;

    uint64_t len = buf[1] & 0x7F;
    size_t need = 2;
    if (len == 126) {
        need = 4;
        if (n < need)
            return 0;
        len = ((uint64_t)buf[2] << 8) | buf[3];
        if (len < 126)
            return WSF_E_LENGTH;
    } else if (len == 127) {
        need = 10;
        if (n < need)
            return 0;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = (len << 8) | buf[i];
        if (len >> 63)
            return WSF_E_LENGTH;
        if (len <= 0xFFFF)
            return WSF_E_LENGTH;
    }
    if (h->opcode & 0x8) {
        if (!h->fin || len > WSF_MAX_CONTROL)
            return WSF_E_CONTROL;
    } else if (len > max_payload) {
        return WSF_E_TOOBIG;
    }
    if (h->masked) {
        if (n < need + 4)
            return 0;
        memcpy(h->mask, buf + need, 4);
        need += 4;
    }
    h->len = len;
    h->hdr_len = need;
    return (int)need;
}

size_t wsf_encoded_len(size_t len)
{
    size_t hdr = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    return hdr + 4 + len;
}

void wsf_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(i + offset) & 3];
}

size_t wsf_encode(uint8_t *out, size_t cap, int opcode, const void *payload, size_t len,
                  const uint8_t mask[4])
{
    size_t total = wsf_encoded_len(len), p = 0;
    if (cap < total)
        return 0;
    out[p++] = (uint8_t)(0x80 | (opcode & 0x0F));
    if (len < 126) {
        out[p++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[p++] = 0x80 | 126;
        out[p++] = (uint8_t)(len >> 8);
        out[p++] = (uint8_t)len;
    } else {
        out[p++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[p++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + p, mask, 4);
    p += 4;
    if (len > 0)
        memcpy(out + p, payload, len);
    wsf_mask(out + p, len, mask, 0);
    return total;
}

void wsf_reader_init(struct wsf_reader *r, size_t max_msg)
{
    memset(r, 0, sizeof(*r));
    r->max_msg = max_msg;
}

void wsf_reader_free(struct wsf_reader *r)
{
    free(r->frag);
    r->frag = NULL;
    r->frag_len = r->frag_cap = 0;
    r->frag_opcode = 0;
}

static int frag_append(struct wsf_reader *r, const uint8_t *data, size_t len)
{
    if (r->frag_len + len > r->max_msg)
        return WSF_E_TOOBIG;
    if (r->frag_len + len > r->frag_cap) {
        size_t cap = r->frag_cap ? r->frag_cap : 1024;
        while (cap < r->frag_len + len)
            cap *= 2;
        uint8_t *p = realloc(r->frag, cap);
        if (p == NULL)
            return WSF_E_NOMEM;
        r->frag = p;
        r->frag_cap = cap;
    }
    if (len > 0)
        memcpy(r->frag + r->frag_len, data, len);
    r->frag_len += len;
    return 0;
}

/* One complete frame whose payload is at data. Returns 0, 1 to stop, or a negative error. */
static int on_frame(struct wsf_reader *r, const struct wsf_header *h, const uint8_t *data, wsf_msg_fn fn,
                    void *arg)
{
    int rc;
    if (h->opcode & 0x8)
        return fn(arg, h->opcode, data, (size_t)h->len) ? 1 : 0;
    if (h->opcode == WSF_CONT) {
        if (r->frag_opcode == 0)
            return WSF_E_SEQUENCE;
        if ((rc = frag_append(r, data, (size_t)h->len)) != 0)
            return rc;
        if (!h->fin)
            return 0;
        int op = r->frag_opcode;
        r->frag_opcode = 0;
        size_t len = r->frag_len;
        r->frag_len = 0;
        return fn(arg, op, r->frag, len) ? 1 : 0;
    }
    /* TEXT or BINARY */
    if (r->frag_opcode != 0)
        return WSF_E_SEQUENCE;
    if (h->fin)
        return fn(arg, h->opcode, data, (size_t)h->len) ? 1 : 0;
    r->frag_opcode = h->opcode;
    r->frag_len = 0;
    return frag_append(r, data, (size_t)h->len);
}

long wsf_feed(struct wsf_reader *r, const uint8_t *buf, size_t n, wsf_msg_fn fn, void *arg)
{
    size_t off = 0;
    while (off < n && !r->stopped) {
        struct wsf_header h;
        int hl = wsf_parse_header(buf + off, n - off, r->max_msg, 0, &h);
        if (hl < 0)
            return hl;
        if (hl == 0 || n - off - (size_t)hl < h.len)
            break;
        int rc = on_frame(r, &h, buf + off + hl, fn, arg);
        if (rc < 0)
            return rc;
        off += (size_t)hl + (size_t)h.len;
        if (rc > 0)
            r->stopped = 1;
    }
    return (long)off;
}

const char *wsf_strerror(int err)
{
    switch (err) {
    case WSF_E_MASKED:
        return "masked frame from the server";
    case WSF_E_RSV:
        return "reserved bits set";
    case WSF_E_OPCODE:
        return "reserved opcode";
    case WSF_E_CONTROL:
        return "fragmented or oversized control frame";
    case WSF_E_LENGTH:
        return "bad payload length encoding";
    case WSF_E_TOOBIG:
        return "frame or message over the limit";
    case WSF_E_SEQUENCE:
        return "continuation frame out of sequence";
    case WSF_E_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}
