/* auth.c -- see auth.h. */
#include "auth.h"
#include "magpie.h"

#include <jansson.h>
#include <jwt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char *kind_names[] = {"login", "websocket"};

const char *auth_kind_name(enum auth_kind kind)
{
    return kind_names[kind];
}

const char *auth_result_str(enum auth_result r)
{
    switch (r) {
    case AUTH_OK:
        return "ok";
    case AUTH_MALFORMED:
        return "malformed token";
    case AUTH_BAD_SIGNATURE:
        return "bad signature";
    case AUTH_EXPIRED:
        return "token expired";
    case AUTH_NOT_YET_VALID:
        return "token not yet valid";
    case AUTH_WRONG_KIND:
        return "wrong kind of token";
    case AUTH_MISSING_CLAIM:
        return "missing claim";
    }
    return "unknown";
}

int auth_init(struct auth *a, const char *secret)
{
    size_t len = secret ? strlen(secret) : 0;
    if (len < AUTH_MIN_SECRET || len > sizeof(a->key))
        return MP_EINVAL;
    memcpy(a->key, secret, len);
    a->key_len = len;
    return MP_OK;
}

void auth_clear(struct auth *a)
{
    explicit_bzero(a->key, sizeof(a->key));
    a->key_len = 0;
}

/* Random bytes come from a per-thread pool that one getrandom fills with AUTH_RANDOM_POOL bytes: one system
 * call per AUTH_RANDOM_POOL / 8 token ids instead of one per id (magpie-http issues a login token and a
 * ticket per /IM/token: bench/README, "HTTP"). Each byte is handed out once and wiped as it goes. A child of
 * fork() must not hand out the bytes its parent will: pthread_atfork empties the forking thread's pool in the
 * child (the only thread the child has). */
#define AUTH_RANDOM_POOL 256
static __thread unsigned char random_pool[AUTH_RANDOM_POOL];
static __thread size_t random_left;
static pthread_once_t random_once = PTHREAD_ONCE_INIT;

static void random_forget(void)
{
    explicit_bzero(random_pool, sizeof(random_pool));
    random_left = 0;
}

static void random_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, random_forget);
}

static int random_take(unsigned char *out, size_t n)
{
    pthread_once(&random_once, random_atfork);
    if (n > sizeof(random_pool))
        return getrandom(out, n, 0) == (ssize_t)n ? MP_OK : MP_ERR;
    if (random_left < n) {
        if (getrandom(random_pool, sizeof(random_pool), 0) != (ssize_t)sizeof(random_pool)) {
            random_forget();
            return MP_ERR;
        }
        random_left = sizeof(random_pool);
    }
    unsigned char *from = random_pool + sizeof(random_pool) - random_left;
    memcpy(out, from, n);
    explicit_bzero(from, n);
    random_left -= n;
    return MP_OK;
}

int auth_random_hex(char *buf, size_t hex_len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    size_t n = (hex_len + 1) / 2;
    if (n > sizeof(raw) || random_take(raw, n) != MP_OK)
        return MP_ERR;
    for (size_t i = 0; i < hex_len; i++)
        buf[i] = hex[(raw[i / 2] >> ((i % 2) ? 0 : 4)) & 0xf];
    buf[hex_len] = '\0';
    explicit_bzero(raw, n);
    return MP_OK;
}

char *auth_issue(const struct auth *a, enum auth_kind kind, int64_t uid, int64_t ttl_s, const char *sid,
                 struct auth_claims *claims)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    char jti[AUTH_JTI_LEN + 1];
    int64_t now = (int64_t)time(NULL);

    if (uid <= 0 || a->key_len < AUTH_MIN_SECRET || auth_random_hex(jti, AUTH_JTI_LEN) != MP_OK)
        return NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_add_grant_int(jwt, "id", (long)uid) != 0 || jwt_add_grant(jwt, "type", kind_names[kind]) != 0 ||
        jwt_add_grant(jwt, "jti", jti) != 0 || jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)(now + ttl_s)) != 0 ||
        (sid != NULL && *sid != '\0' && jwt_add_grant(jwt, "sid", sid) != 0) ||
        jwt_set_alg(jwt, JWT_ALG_HS256, a->key, (int)a->key_len) != 0)
        goto failed;
    token = jwt_encode_str(jwt);
    if (token != NULL && claims != NULL) {
        claims->uid = uid;
        claims->kind = kind;
        memcpy(claims->jti, jti, sizeof(jti));
        snprintf(claims->sid, sizeof(claims->sid), "%s", sid ? sid : "");
        claims->iat = now;
        claims->exp = now + ttl_s;
    }
failed:
    jwt_free(jwt);
    return token;
}

/* Copy a string claim of 1..max_len characters into dst; 0 or -1. */
static int get_str(json_t *obj, const char *name, char *dst, size_t max_len)
{
    json_t *v = json_object_get(obj, name);
    size_t len;
    if (!json_is_string(v))
        return -1;
    len = json_string_length(v);
    if (len == 0 || len > max_len)
        return -1;
    memcpy(dst, json_string_value(v), len + 1);
    return 0;
}

/* The value of a base64url character, or -1. */
static int b64url_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '-' ? 62 : ch == '_' ? 63 : -1;
}

/* The claims of a token whose signature libjwt has checked: its payload segment (base64url, between the
 * first and second dot -- the bytes the signature covers) decoded and parsed once, a claim named twice
 * refused. libjwt parsed it too, but hands its parse back only as JSON text to parse again (dumped with
 * sorted keys: a third of the cost of checking a token, and the duplicates already merged). NULL when it
 * is not JSON. */
static json_t *payload_claims(const char *token)
{
    unsigned char buf[AUTH_MAX_TOKEN];
    const char *p = strchr(token, '.'), *end = p ? strchr(p + 1, '.') : NULL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (end == NULL)
        return NULL;
    for (p++; p < end; p++) {
        int v = b64url_value(*p);
        if (v < 0)
            return NULL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (unsigned char)(acc >> bits);
        }
    }
    return json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
}

enum auth_result auth_verify_at(const struct auth *a, const char *token, enum auth_kind expected, int64_t now_s,
                                struct auth_claims *out)
{
    jwt_t *jwt = NULL;
    json_t *claims = NULL, *v;
    char type[16];
    enum auth_result r;
    size_t len;

    if (token == NULL || a->key_len < AUTH_MIN_SECRET)
        return AUTH_MALFORMED;
    len = strnlen(token, AUTH_MAX_TOKEN + 1);
    if (len == 0 || len > AUTH_MAX_TOKEN || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                          "0123456789-_.") != len)
        return AUTH_MALFORMED;

    /* With a key, libjwt refuses alg "none" and checks the signature with the algorithm the header names;
     * pinning HS256 below closes the door on every other algorithm. */
    if (jwt_decode(&jwt, token, a->key, (int)a->key_len) != 0) {
        r = AUTH_BAD_SIGNATURE;
        goto done;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        r = AUTH_BAD_SIGNATURE;
        goto done;
    }
    claims = payload_claims(token);
    if (!json_is_object(claims)) {
        r = AUTH_MALFORMED;
        goto done;
    }

    memset(out, 0, sizeof(*out));
    r = AUTH_MISSING_CLAIM;
    v = json_object_get(claims, "id");
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        goto done;
    out->uid = json_integer_value(v);
    if (get_str(claims, "type", type, sizeof(type) - 1) != 0 || get_str(claims, "jti", out->jti, AUTH_JTI_LEN) != 0)
        goto done;
    v = json_object_get(claims, "iat");
    if (!json_is_integer(v))
        goto done;
    out->iat = json_integer_value(v);
    v = json_object_get(claims, "exp");
    if (!json_is_integer(v))
        goto done;
    out->exp = json_integer_value(v);
    if ((v = json_object_get(claims, "sid")) != NULL && get_str(claims, "sid", out->sid, AUTH_JTI_LEN) != 0)
        goto done;

    if (now_s >= out->exp) {
        r = AUTH_EXPIRED;
        goto done;
    }
    v = json_object_get(claims, "nbf");
    if (out->iat > now_s + AUTH_CLOCK_SKEW_S || (json_is_integer(v) && json_integer_value(v) > now_s) ||
        (v != NULL && !json_is_integer(v))) {
        r = AUTH_NOT_YET_VALID;
        goto done;
    }
    if (strcmp(type, kind_names[expected]) != 0) {
        r = AUTH_WRONG_KIND;
        goto done;
    }
    out->kind = expected;
    r = AUTH_OK;
done:
    json_decref(claims);
    jwt_free(jwt);
    return r;
}

enum auth_result auth_verify(const struct auth *a, const char *token, enum auth_kind expected,
                             struct auth_claims *out)
{
    return auth_verify_at(a, token, expected, (int64_t)time(NULL), out);
}
