/* fuzz_qr_token.c -- the QR login session's token checks (http/qr.c, helpers in http/call.c): the
 * browser id taken from the Cookie header (cookie_get + is_hex_token, as qr.c's browser_of does), the
 * session token from the path or the body (is_hex_token), and the User-Agent cleaned for the phone to see
 * (utf8_clean), each exactly as the handlers call them; and http_redact (http/router.c), which cuts these
 * tokens and JWTs out of libmicrohttpd's log text before it is logged.
 *
 * Input: the Cookie header, LF, then the rest: used as the token, the User-Agent and the log text.
 *
 * Invariants: a browser id or token accepted is exactly HTTP_TOKEN_HEX lowercase hex digits; a cookie
 * value never overflows the buffer it is copied into; utf8_clean's output fits its buffer and is UTF-8
 * without control characters (it is echoed in JSON, which jansson checks); redacted text holds no "eyJ"
 * (a JWT) and nothing token-like after a token-bearing prefix (/session_login/, /scan_pc/, ...).
 */
#include "call.h"
#include "fuzz.h"
#include "http.h"

#include <string.h>

static const size_t sizes[] = {1, 2, 3, 4, 5, 8, 33, 257};

static int hex32(const char *s)
{
    if (strlen(s) != HTTP_TOKEN_HEX)
        return 0;
    for (size_t i = 0; i < HTTP_TOKEN_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_' || ch == '.' || ch == '%';
}

/* http_redact's contract on s (NUL-terminated, modified in place). */
static void check_redact(char *s)
{
    static const char *prefixes[] = {"/session_login/", "/scan_pc/", "/pc_session/", "/ws/", "token="};
    http_redact(s);
    FUZZ_CHECK(strstr(s, "eyJ") == NULL);
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        for (const char *q = s; (q = strstr(q, prefixes[i])) != NULL; q++)
            FUZZ_CHECK(!token_char(q[n]) || (q[n] == '-' && !token_char(q[n + 1])));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hl = nl ? (size_t)(nl - data) : size;
    char *header = malloc(hl + 1), *rest = malloc(size - hl + 1);
    char browser[HTTP_TOKEN_HEX + 1];

    FUZZ_CHECK(header != NULL && rest != NULL);
    memcpy(header, data, hl);
    header[hl] = '\0';
    memcpy(rest, nl ? nl + 1 : data + size, nl ? size - hl - 1 : 0);
    rest[nl ? size - hl - 1 : 0] = '\0';

    /* browser_of: the cookie "mp_pc" (qr.cookie's default) holding a browser id */
    memset(browser, 'X', sizeof(browser));
    if (cookie_get(header, "mp_pc", browser, sizeof(browser)) == 0) {
        FUZZ_CHECK(memchr(browser, '\0', sizeof(browser)) != NULL);
        FUZZ_CHECK(is_hex_token(browser) == hex32(browser));
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char *v = malloc(sizes[i]);
        FUZZ_CHECK(v != NULL);
        if (cookie_get(header, i % 2 ? "a" : "mp_pc", v, sizes[i]) == 0)
            FUZZ_CHECK(strlen(v) < sizes[i]);
        free(v);
    }

    /* the session token of /session_login/<token>, /scan_pc/<token>, /confirm_pc {"token"} */
    FUZZ_CHECK(is_hex_token(rest) == hex32(rest));

    /* the User-Agent as the phone sees it */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char *ua = malloc(sizes[i]);
        json_t *s;
        FUZZ_CHECK(ua != NULL);
        utf8_clean(ua, sizes[i], rest);
        FUZZ_CHECK(strlen(ua) < sizes[i]);
        for (const char *p = ua; *p; p++)
            FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
        s = json_string(ua);
        FUZZ_CHECK(s != NULL);
        json_decref(s);
        free(ua);
    }
    check_redact(rest);
    free(header);
    free(rest);
    return 0;
}
