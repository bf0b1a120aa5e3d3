/* fuzz_jwt.c -- token verification (shared/auth.c, auth_verify_at) as every daemon runs it on what a
 * client presents: the HTTP API's bearer token, the chat ticket, the room SIGN_IN token.
 *
 * The first input byte picks the mode:
 *   even  the rest is the token, as a client sends it;
 *   odd   the rest is "<header JSON>\n<claims JSON>", which the target encodes and signs with the key
 *         (HS256, as a token we issued would be): this reaches the header and claim checks, which a
 *         forged signature never gets past.
 * Each token is verified as both kinds at a fixed time (FUZZ_NOW).
 *
 * Invariants: a token accepted is of the kind asked for, has a positive uid, a jti of 1..32 characters
 * and exp after now.
 */
#include "auth.h"
#include "fuzz.h"
#include "magpie.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define FUZZ_NOW 1700000000LL
static const char secret[] = "fuzz-secret-0123456789abcdef0123456789abcdef";
static struct auth key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (auth_init(&key, secret) != MP_OK)
        abort();
    return 0;
}

/* base64url without padding of in[0..n) at out; returns the characters written. */
static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = abc[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    return o;
}

/* "<b64(header)>.<b64(claims)>.<b64(HMAC-SHA256)>" of s = "header\nclaims" (no '\n': claims = ""). */
static char *sign(const uint8_t *s, size_t n)
{
    const uint8_t *nl = memchr(s, '\n', n);
    size_t hl = nl ? (size_t)(nl - s) : n, cl = nl ? n - hl - 1 : 0, o;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char *t = malloc((n + 3) / 3 * 4 + 8 + 64);

    if (t == NULL)
        return NULL;
    o = b64url(s, hl, t);
    t[o++] = '.';
    o += b64url(nl ? nl + 1 : s, cl, t + o);
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)t, o, mac, &maclen) == NULL) {
        free(t);
        return NULL;
    }
    t[o++] = '.';
    o += b64url(mac, maclen, t + o);
    t[o] = '\0';
    return t;
}

static void verify(const char *token)
{
    static const enum auth_kind kinds[] = {AUTH_KIND_LOGIN, AUTH_KIND_WEBSOCKET};
    for (size_t i = 0; i < MP_ARRAY_LEN(kinds); i++) {
        struct auth_claims c;
        enum auth_result r = auth_verify_at(&key, token, kinds[i], FUZZ_NOW, &c);
        FUZZ_CHECK(auth_result_str(r) != NULL);
        if (r != AUTH_OK)
            continue;
        FUZZ_CHECK(c.kind == kinds[i] && c.uid > 0 && c.exp > FUZZ_NOW);
        FUZZ_CHECK(strlen(c.jti) >= 1 && strlen(c.jti) <= AUTH_JTI_LEN && strlen(c.sid) <= AUTH_JTI_LEN);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *token;

    if (size < 1)
        return 0;
    if (data[0] & 1) {
        if ((token = sign(data + 1, size - 1)) == NULL)
            return 0;
        verify(token);
    } else {
        if ((token = malloc(size)) == NULL)
            return 0;
        memcpy(token, data + 1, size - 1);
        token[size - 1] = '\0';
        verify(token);
    }
    free(token);
    return 0;
}
