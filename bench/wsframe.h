/* wsframe.h -- the client side of RFC 6455 framing: encode masked frames, parse the server's frames and
 * reassemble fragmented messages.
 *
 * Why hand-written (the one piece of WebSocket magpie-bench does not take from a library): see README.md,
 * "Why raw epoll". The parser is strict, because a load generator that accepts a broken server stream
 * would report broken servers as fast ones: every violation of RFC 6455 §5 a client must detect is an error
 * (a masked server frame, reserved bits, an unknown opcode, a fragmented or oversized control frame, a
 * non-minimal or 64-bit-MSB length, a continuation out of place, a message over the caller's limit).
 */
#ifndef BENCH_WSFRAME_H
#define BENCH_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

enum wsf_opcode {
    WSF_CONT = 0x0,
    WSF_TEXT = 0x1,
    WSF_BINARY = 0x2,
    WSF_CLOSE = 0x8,
    WSF_PING = 0x9,
    WSF_PONG = 0xA,
};

/* Errors (negative); wsf_strerror names them. */
enum wsf_error {
    WSF_E_MASKED = -1,   /* a server frame with the mask bit set */
    WSF_E_RSV = -2,      /* RSV1-3 set (we negotiate no extension) */
    WSF_E_OPCODE = -3,   /* reserved opcode */
    WSF_E_CONTROL = -4,  /* control frame fragmented or longer than 125 bytes */
    WSF_E_LENGTH = -5,   /* non-minimal length encoding, or the 64-bit length's top bit set */
    WSF_E_TOOBIG = -6,   /* frame or reassembled message over the limit */
    WSF_E_SEQUENCE = -7, /* continuation without a message, or a new message inside a fragmented one */
    WSF_E_NOMEM = -8,
};

#define WSF_MAX_HEADER  14 /* 2 + 8 (length) + 4 (mask) */
#define WSF_MAX_CONTROL 125

struct wsf_header {
    int fin;
    int opcode;
    int masked;
    uint64_t len;   /* payload length */
    size_t hdr_len; /* bytes of header (including the mask key, if any) */
    uint8_t mask[4];
};

/* Parse a frame header at buf (n bytes available). Returns the header length (> 0) and fills *h, 0 when
 * more bytes are needed, or a negative wsf_error. Server-side rules: masked frames are an error unless
 * allow_masked (the unit tests use that to read back what wsf_encode made). */
int wsf_parse_header(const uint8_t *buf, size_t n, uint64_t max_payload, int allow_masked,
                     struct wsf_header *h);

/* Bytes wsf_encode needs for a payload of len bytes. */
size_t wsf_encoded_len(size_t len);

/* Write one masked client frame (FIN set) with the given opcode, payload and mask key into out.
 * Returns the bytes written, or 0 when cap is too small. out and payload must not overlap. */
size_t wsf_encode(uint8_t *out, size_t cap, int opcode, const void *payload, size_t len,
                  const uint8_t mask[4]);

/* XOR data with the mask, starting at mask offset `offset` (RFC 6455 §5.3). */
void wsf_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset);

/* A message (or control frame) from the server: opcode is TEXT, BINARY, CLOSE, PING or PONG. Return 0 to go
 * on, nonzero to stop wsf_feed (it then returns what it consumed so far, including this frame). */
typedef int (*wsf_msg_fn)(void *arg, int opcode, const uint8_t *data, size_t len);

/* Reassembly state of one connection. Zero-initialise, or wsf_reader_init. */
struct wsf_reader {
    uint8_t *frag; /* payload of a fragmented message so far (malloc'd), NULL when none */
    size_t frag_len;
    size_t frag_cap;
    int frag_opcode; /* opcode of the first fragment; 0 when no message is open */
    size_t max_msg;  /* largest frame payload and reassembled message accepted */
    int stopped;     /* the callback asked to stop */
};

void wsf_reader_init(struct wsf_reader *r, size_t max_msg);
void wsf_reader_free(struct wsf_reader *r);

/* Consume every complete frame at the start of buf, calling fn for each message and control frame.
 * Returns the bytes consumed (a partial frame at the end is left for the caller to present again with more
 * bytes), or a negative wsf_error (the connection must be failed; nothing more may be fed). */
long wsf_feed(struct wsf_reader *r, const uint8_t *buf, size_t n, wsf_msg_fn fn, void *arg);

const char *wsf_strerror(int err);

#endif
