/* fuzz_bench_stream.c -- magpie-bench's readers of what a server sends (bench/): the WebSocket upgrade
 * response (resp_upgrade_feed, http-parser), the stream of keep-alive publish responses (resp_stream_feed),
 * WebSocket frames with reassembly (wsf_feed) and the NATS protocol (natsp_feed). Not a daemon's parser,
 * but one that reads bytes from a server it does not control (a peer under comparison, or any host given
 * on its command line).
 *
 * Input: byte 0 picks the reader (mod 4), byte 1 the size of the pieces the rest is fed in (1..256), as a
 * socket would cut it.
 *
 * Invariants: a reader consumes no more than it was given; a frame or message handed on fits the
 * reader's limit.
 */
#include "fuzz.h"
#include "natsp.h"
#include "resp.h"
#include "wsframe.h"

#include <string.h>

#define MAX_MSG 4096

static int on_frame(void *arg, int opcode, const uint8_t *data, size_t len)
{
    FUZZ_CHECK(len <= MAX_MSG && (len == 0 || data != NULL));
    return 0;
}

static int on_nats(void *arg, const struct natsp_event *ev)
{
    FUZZ_CHECK(ev->payload_len <= MAX_MSG);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t piece, at = 2;
    uint8_t *buf;

    if (size < 2)
        return 0;
    piece = (size_t)data[1] + 1;
    size -= 2;
    data += 2;
    /* exactly the input's bytes, so a read past them is a sanitizer report */
    buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data, size);

    switch (data[-2] % 4) {
    case 0: {
        struct resp_upgrade r;
        char key[RESP_KEY_LEN + 1] = "dGhlIHNhbXBsZSBub25jZQ==";
        resp_upgrade_init(&r, key);
        for (at = 0; at < size;) {
            size_t n = size - at < piece ? size - at : piece, used = 0;
            int rc = resp_upgrade_feed(&r, buf + at, n, &used);
            if (rc != RESP_UP_AGAIN) {
                FUZZ_CHECK(resp_upgrade_strerror(rc) != NULL);
                if (rc == RESP_UP_OK)
                    FUZZ_CHECK(used <= n);
                break;
            }
            at += n;
        }
        break;
    }
    case 1: {
        struct resp_stream r;
        resp_stream_init(&r);
        for (at = 0; at < size; at += piece)
            if (resp_stream_feed(&r, buf + at, size - at < piece ? size - at : piece) != 0)
                break;
        FUZZ_CHECK(r.ok <= r.responses);
        break;
    }
    case 2: {
        /* what the bench does: keep the unconsumed tail and present it again with the next piece */
        struct wsf_reader r;
        size_t have = 0, fed = 0;
        uint8_t *pending = malloc(size ? size : 1);
        FUZZ_CHECK(pending != NULL);
        wsf_reader_init(&r, MAX_MSG);
        while (fed < size) {
            size_t n = size - fed < piece ? size - fed : piece;
            long used;
            memcpy(pending + have, buf + fed, n);
            have += n;
            fed += n;
            used = wsf_feed(&r, pending, have, on_frame, NULL);
            if (used < 0) {
                FUZZ_CHECK(wsf_strerror((int)used) != NULL);
                break;
            }
            FUZZ_CHECK((size_t)used <= have);
            memmove(pending, pending + used, have - (size_t)used);
            have -= (size_t)used;
        }
        wsf_reader_free(&r);
        free(pending);
        break;
    }
    default: {
        struct natsp p;
        natsp_init(&p, MAX_MSG);
        for (at = 0; at < size; at += piece)
            if (natsp_feed(&p, buf + at, size - at < piece ? size - at : piece, on_nats, NULL) != 0)
                break;
        natsp_free(&p);
        break;
    }
    }
    free(buf);
    return 0;
}
