/* fuzz_stompframe.c -- one WebSocket message of STOMP 1.2 (SPEC §4.3) through push/stompframe.c's
 * stompframe_parse, as stomp.c takes it, with the default stomp.* limits; then, for a good frame, what the
 * server does with its headers: a frame built from them (stompframe_build, escaping) must parse back to the
 * same command, headers and body.
 *
 * Invariants: a refusal has a reason; a good frame has a command, at most max_headers headers, each with a
 * non-empty NUL-terminated name, and a body inside the input followed by its NUL.
 */
#include "fuzz.h"
#include "stompframe.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct stompframe f, back;
    const struct stomp_limits lim = {.max_frame = 16384, .max_header_len = 1024, .max_headers = 32};
    const char *why = NULL, *headers[2 * STOMP_MAX_HEADERS_CAP + 1];
    char *buf = malloc(size + 1), *out;
    enum stompframe_result r;
    size_t len;

    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = '\0';
    r = stompframe_parse(buf, size, &lim, &f, &why);
    if (r == STOMPFRAME_BAD) {
        FUZZ_CHECK(why != NULL && why[0] != '\0');
    } else if (r == STOMPFRAME_OK) {
        int n = 0;
        FUZZ_CHECK(f.command[0] != '\0' && f.nh <= lim.max_headers);
        FUZZ_CHECK(f.body >= buf && f.body + f.body_len < buf + size + 1 && f.body[f.body_len] == '\0');
        for (int i = 0; i < f.nh; i++) {
            FUZZ_CHECK(f.h[i].name_len > 0 && strlen(f.h[i].name) == f.h[i].name_len);
            FUZZ_CHECK(f.h[i].value[f.h[i].value_len] == '\0');
            /* a NUL inside a value cannot be, and content-length would be rebuilt below */
            if (strcmp(f.h[i].name, "content-length") != 0 && strlen(f.h[i].value) == f.h[i].value_len) {
                headers[n++] = f.h[i].name;
                headers[n++] = f.h[i].value;
            }
        }
        headers[n] = NULL;
        /* CONNECTED is the one frame built unescaped: rebuild anything else through the escaping */
        if (strcmp(f.command, "CONNECTED") != 0 && strcmp(f.command, "CONNECT") != 0 &&
            strcmp(f.command, "STOMP") != 0) {
            out = stompframe_build(f.command, headers, f.body, f.body_len, &len);
            FUZZ_CHECK(out != NULL && len > 0 && out[len - 1] == '\0');
            if (len <= lim.max_frame && n / 2 < lim.max_headers) {
                enum stompframe_result r2 = stompframe_parse(out, len, &lim, &back, &why);
                /* a rebuilt header line may be longer than the limit (escaping doubles bytes) */
                FUZZ_CHECK(r2 == STOMPFRAME_OK ||
                           (r2 == STOMPFRAME_BAD && strcmp(why, STOMP_E_HEADER_LONG) == 0));
                if (r2 == STOMPFRAME_OK) {
                    FUZZ_CHECK(strcmp(back.command, f.command) == 0 && back.body_len == f.body_len &&
                               memcmp(back.body, f.body, f.body_len) == 0);
                    FUZZ_CHECK(back.nh == n / 2 + 1); /* + content-length */
                    for (int i = 0; i < n / 2; i++)
                        FUZZ_CHECK(strcmp(back.h[i].name, headers[2 * i]) == 0 &&
                                   strcmp(back.h[i].value, headers[2 * i + 1]) == 0);
                }
            }
            free(out);
        }
    }
    free(buf);
    return 0;
}
