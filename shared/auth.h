/* auth.h -- the tokens Magpie issues: HS256 JWTs made and checked with libjwt (SPEC §3).
 *
 * Claims: {"id": <uid>, "type": "<kind>", "jti": "<32 hex>", "iat": <s>, "exp": <s>[, "sid": "<jti>"]}.
 * Verification pins HS256 (a token whose header says anything else is rejected, alg "none" included),
 * checks the signature, checks exp/nbf/iat ourselves (libjwt 1.10 does not), and checks the kind, so a
 * login token never opens a WebSocket and a WebSocket ticket never calls the HTTP API.
 * Revocation (logout) and single use (WebSocket tickets) are Redis state, kept by the callers.
 */
#ifndef MAGPIE_AUTH_H
#define MAGPIE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_MIN_SECRET 32      /* bytes; shorter keys make HS256 brute-forceable */
#define AUTH_JTI_LEN 32         /* hex characters of a token id (128 random bits) */
#define AUTH_MAX_TOKEN 4096     /* longer input is rejected before parsing */
#define AUTH_CLOCK_SKEW_S 60    /* iat may be this far in the future (clock differences between hosts) */

enum auth_kind {
    AUTH_KIND_LOGIN,     /* "login": the HTTP API's bearer token, also a room SIGN_IN token */
    AUTH_KIND_WEBSOCKET, /* "websocket": a ticket from /IM/token that opens one chat connection */
};

enum auth_result {
    AUTH_OK = 0,
    AUTH_MALFORMED,     /* not a JWT, not JSON, overlong */
    AUTH_BAD_SIGNATURE, /* signature does not verify with our key, or alg is not HS256 */
    AUTH_EXPIRED,       /* exp is in the past */
    AUTH_NOT_YET_VALID, /* nbf in the future, or iat too far in the future */
    AUTH_WRONG_KIND,    /* a valid token of another kind */
    AUTH_MISSING_CLAIM, /* id, type, jti, iat or exp missing or of the wrong type */
};

struct auth {
    unsigned char key[256];
    size_t key_len;
};

struct auth_claims {
    int64_t uid;
    enum auth_kind kind;
    char jti[AUTH_JTI_LEN + 1];
    char sid[AUTH_JTI_LEN + 1]; /* websocket tickets: jti of the login token they were minted from; else "" */
    int64_t iat;
    int64_t exp;
};

/* Copy the secret into a. Returns MP_OK, or MP_EINVAL when it is shorter than AUTH_MIN_SECRET bytes or
 * longer than the key buffer (nothing is set then). */
int auth_init(struct auth *a, const char *secret);

/* Wipe the key. */
void auth_clear(struct auth *a);

/* Issue a token of `kind` for uid, valid from now for ttl_s seconds. sid may be NULL.
 * On success returns a malloc'd token (caller frees with free()) and fills *claims if non-NULL.
 * Returns NULL on failure (out of memory, no randomness, uid <= 0). */
char *auth_issue(const struct auth *a, enum auth_kind kind, int64_t uid, int64_t ttl_s, const char *sid,
                 struct auth_claims *claims);

/* Verify token as `expected` kind at the current time. Fills *out on AUTH_OK. */
enum auth_result auth_verify(const struct auth *a, const char *token, enum auth_kind expected,
                             struct auth_claims *out);

/* As auth_verify, at time now_s (seconds since the epoch); for tests. */
enum auth_result auth_verify_at(const struct auth *a, const char *token, enum auth_kind expected, int64_t now_s,
                                struct auth_claims *out);

/* Fill buf (>= AUTH_JTI_LEN + 1 bytes) with a fresh random hex id. Returns MP_OK or MP_ERR. */
int auth_random_hex(char *buf, size_t hex_len);

const char *auth_kind_name(enum auth_kind kind);
const char *auth_result_str(enum auth_result r);

#endif
