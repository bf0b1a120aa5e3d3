/* Unit tests of token issue and verification: every way a token can be wrong is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jwt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "magpie.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define OTHER_SECRET "fedcba9876543210fedcba9876543210"

static struct auth a;

static int setup(void **state)
{
    return auth_init(&a, SECRET) == MP_OK ? 0 : -1;
}

/* A token signed with alg/key whose claims are given as JSON; caller frees. */
static char *craft(jwt_alg_t alg, const char *key, const char *claims_json)
{
    jwt_t *jwt;
    char *tok;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims_json), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0), 0);
    tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    assert_non_null(tok);
    return tok;
}

/* Claims JSON valid for the next hour. */
static char *claims(const char *type, const char *extra)
{
    static char buf[512];
    long now = (long)time(NULL);
    snprintf(buf, sizeof(buf), "{\"id\":42,\"type\":\"%s\",\"jti\":\"abc123\",\"iat\":%ld,\"exp\":%ld%s}", type, now,
             now + 3600, extra);
    return buf;
}

static void expect(const char *token, enum auth_kind kind, enum auth_result want)
{
    struct auth_claims c;
    assert_int_equal(auth_verify(&a, token, kind, &c), want);
}

static void test_short_secret_refused(void **state)
{
    struct auth b;
    assert_int_equal(auth_init(&b, "0123456789abcdef0123456789abcde"), MP_EINVAL); /* 31 bytes */
    assert_int_equal(auth_init(&b, ""), MP_EINVAL);
    assert_int_equal(auth_init(&b, NULL), MP_EINVAL);
    assert_int_equal(auth_init(&b, SECRET), MP_OK);
}

static void test_valid_roundtrip(void **state)
{
    struct auth_claims issued, c;
    char *tok = auth_issue(&a, AUTH_KIND_WEBSOCKET, 7, 120, "0123456789abcdef0123456789abcdef", &issued);
    assert_non_null(tok);
    assert_int_equal(auth_verify(&a, tok, AUTH_KIND_WEBSOCKET, &c), AUTH_OK);
    assert_int_equal(c.uid, 7);
    assert_int_equal(c.kind, AUTH_KIND_WEBSOCKET);
    assert_int_equal(c.exp, c.iat + 120);
    assert_int_equal(strlen(c.jti), AUTH_JTI_LEN);
    assert_string_equal(c.jti, issued.jti);
    assert_string_equal(c.sid, "0123456789abcdef0123456789abcdef");
    free(tok);
}

static void test_jti_unique(void **state)
{
    struct auth_claims c1, c2;
    char *t1 = auth_issue(&a, AUTH_KIND_LOGIN, 1, 60, NULL, &c1);
    char *t2 = auth_issue(&a, AUTH_KIND_LOGIN, 1, 60, NULL, &c2);
    assert_string_not_equal(c1.jti, c2.jti);
    assert_string_not_equal(t1, t2);
    free(t1);
    free(t2);
}

/* auth_random_hex hands out bytes of a per-thread pool (auth.c): ids stay hex, of the asked length, and
 * distinct across many refills of the pool, across threads, and between a forked child and its parent. */
#define IDS 200
static char ids[2 * IDS][AUTH_JTI_LEN + 1];

static void assert_hex_id(const char *id, size_t len)
{
    assert_int_equal(strlen(id), len);
    assert_int_equal(strspn(id, "0123456789abcdef"), len);
}

static void *fill_ids(void *arg)
{
    char(*out)[AUTH_JTI_LEN + 1] = arg;
    for (int i = 0; i < IDS; i++)
        if (auth_random_hex(out[i], AUTH_JTI_LEN) != MP_OK)
            return NULL;
    return arg;
}

static int cmp_ids(const void *x, const void *y)
{
    return strcmp(x, y);
}

static void test_random_ids(void **state)
{
    (void)state;
    char odd[8], big[129];
    assert_int_equal(auth_random_hex(odd, 7), MP_OK); /* an odd length: half of the last byte */
    assert_hex_id(odd, 7);
    assert_int_equal(auth_random_hex(big, 128), MP_OK); /* the largest: 64 bytes */
    assert_hex_id(big, 128);
    assert_int_equal(auth_random_hex(big, 130), MP_ERR);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fill_ids, ids[IDS]), 0);
    assert_non_null(fill_ids(ids));
    void *ret;
    assert_int_equal(pthread_join(t, &ret), 0);
    assert_non_null(ret);
    for (int i = 0; i < 2 * IDS; i++)
        assert_hex_id(ids[i], AUTH_JTI_LEN);
    qsort(ids, 2 * IDS, sizeof(ids[0]), cmp_ids);
    for (int i = 1; i < 2 * IDS; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);

    /* A child takes the next id after fork(), the parent too: they differ (the child's pool was emptied). */
    char mine[AUTH_JTI_LEN + 1], theirs[AUTH_JTI_LEN + 1] = "";
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[AUTH_JTI_LEN + 1];
        int ok = auth_random_hex(id, AUTH_JTI_LEN) == MP_OK &&
                 write(fds[1], id, AUTH_JTI_LEN) == (ssize_t)AUTH_JTI_LEN;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(auth_random_hex(mine, AUTH_JTI_LEN), MP_OK);
    assert_int_equal(read(fds[0], theirs, AUTH_JTI_LEN), AUTH_JTI_LEN);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_string_not_equal(mine, theirs);
}

static void test_issue_refuses_bad_uid(void **state)
{
    assert_null(auth_issue(&a, AUTH_KIND_LOGIN, 0, 60, NULL, NULL));
    assert_null(auth_issue(&a, AUTH_KIND_LOGIN, -5, 60, NULL, NULL));
}

static void test_expired(void **state)
{
    struct auth_claims c, issued;
    char *tok = auth_issue(&a, AUTH_KIND_LOGIN, 1, 120, NULL, &issued);
    assert_int_equal(auth_verify_at(&a, tok, AUTH_KIND_LOGIN, issued.exp - 1, &c), AUTH_OK);
    assert_int_equal(auth_verify_at(&a, tok, AUTH_KIND_LOGIN, issued.exp, &c), AUTH_EXPIRED);
    free(tok);
    long now = (long)time(NULL);
    char json[256];
    snprintf(json, sizeof(json), "{\"id\":1,\"type\":\"login\",\"jti\":\"x\",\"iat\":%ld,\"exp\":%ld}", now - 100,
             now - 1);
    tok = craft(JWT_ALG_HS256, SECRET, json);
    expect(tok, AUTH_KIND_LOGIN, AUTH_EXPIRED);
    free(tok);
}

static void test_not_yet_valid(void **state)
{
    struct auth_claims c, issued;
    char *tok = auth_issue(&a, AUTH_KIND_LOGIN, 1, 7200, NULL, &issued);
    /* Seen from an hour earlier, iat is far in the future. */
    assert_int_equal(auth_verify_at(&a, tok, AUTH_KIND_LOGIN, issued.iat - 3600, &c), AUTH_NOT_YET_VALID);
    free(tok);
    char extra[64];
    snprintf(extra, sizeof(extra), ",\"nbf\":%ld", (long)time(NULL) + 600);
    tok = craft(JWT_ALG_HS256, SECRET, claims("login", extra));
    expect(tok, AUTH_KIND_LOGIN, AUTH_NOT_YET_VALID);
    free(tok);
}

static void test_wrong_key(void **state)
{
    char *tok = craft(JWT_ALG_HS256, OTHER_SECRET, claims("login", ""));
    expect(tok, AUTH_KIND_LOGIN, AUTH_BAD_SIGNATURE);
    free(tok);
}

static void test_alg_none(void **state)
{
    char *tok = craft(JWT_ALG_NONE, NULL, claims("login", ""));
    expect(tok, AUTH_KIND_LOGIN, AUTH_BAD_SIGNATURE);
    /* Also with a signature part glued on. */
    char *glued = malloc(strlen(tok) + 8);
    sprintf(glued, "%sAAAA", tok);
    assert_int_not_equal(auth_verify(&a, glued, AUTH_KIND_LOGIN, &(struct auth_claims){0}), AUTH_OK);
    free(glued);
    free(tok);
}

static void test_other_hmac_alg(void **state)
{
    char *tok = craft(JWT_ALG_HS512, SECRET, claims("login", ""));
    expect(tok, AUTH_KIND_LOGIN, AUTH_BAD_SIGNATURE);
    free(tok);
    tok = craft(JWT_ALG_HS384, SECRET, claims("login", ""));
    expect(tok, AUTH_KIND_LOGIN, AUTH_BAD_SIGNATURE);
    free(tok);
}

static void test_tampered_payload(void **state)
{
    char *tok = auth_issue(&a, AUTH_KIND_LOGIN, 5, 60, NULL, NULL);
    char *dot = strchr(tok, '.');
    /* Flip one character of the payload: a different uid or garbage, never accepted. */
    dot[5] = dot[5] == 'A' ? 'B' : 'A';
    expect(tok, AUTH_KIND_LOGIN, AUTH_BAD_SIGNATURE);
    free(tok);
}

static void test_wrong_kind(void **state)
{
    char *tok = auth_issue(&a, AUTH_KIND_LOGIN, 5, 60, NULL, NULL);
    expect(tok, AUTH_KIND_WEBSOCKET, AUTH_WRONG_KIND);
    free(tok);
    tok = auth_issue(&a, AUTH_KIND_WEBSOCKET, 5, 60, NULL, NULL);
    expect(tok, AUTH_KIND_LOGIN, AUTH_WRONG_KIND);
    free(tok);
    tok = craft(JWT_ALG_HS256, SECRET, claims("admin", ""));
    expect(tok, AUTH_KIND_LOGIN, AUTH_WRONG_KIND);
    free(tok);
}

/* Replace the words IAT and EXP in template with now and now + 3600. */
static void fill_times(char *out, size_t len, const char *template)
{
    long now = (long)time(NULL);
    size_t o = 0;
    for (const char *p = template; *p && o + 24 < len;) {
        if (strncmp(p, "IAT", 3) == 0 || strncmp(p, "EXP", 3) == 0) {
            o += (size_t)snprintf(out + o, len - o, "%ld", *p == 'I' ? now : now + 3600);
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static void test_missing_claims(void **state)
{
    const char *templates[] = {
        "{\"type\":\"login\",\"jti\":\"x\",\"iat\":IAT,\"exp\":EXP}",               /* no id */
        "{\"id\":\"42\",\"type\":\"login\",\"jti\":\"x\",\"iat\":IAT,\"exp\":EXP}", /* id a string */
        "{\"id\":0,\"type\":\"login\",\"jti\":\"x\",\"iat\":IAT,\"exp\":EXP}",      /* id zero */
        "{\"id\":1,\"jti\":\"x\",\"iat\":IAT,\"exp\":EXP}",                         /* no type */
        "{\"id\":1,\"type\":7,\"jti\":\"x\",\"iat\":IAT,\"exp\":EXP}",              /* type a number */
        "{\"id\":1,\"type\":\"login\",\"iat\":IAT,\"exp\":EXP}",                    /* no jti */
        "{\"id\":1,\"type\":\"login\",\"jti\":\"\",\"iat\":IAT,\"exp\":EXP}",       /* empty jti */
        "{\"id\":1,\"type\":\"login\",\"jti\":\"x\",\"exp\":EXP}",                    /* no iat */
        "{\"id\":1,\"type\":\"login\",\"jti\":\"x\",\"iat\":IAT}",                    /* no exp */
        "{\"id\":1,\"type\":\"login\",\"jti\":\"x\",\"iat\":IAT,\"exp\":\"EXP\"}",  /* exp a string */
    };
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        char json[256], *tok;
        fill_times(json, sizeof(json), templates[i]);
        tok = craft(JWT_ALG_HS256, SECRET, json);
        expect(tok, AUTH_KIND_LOGIN, AUTH_MISSING_CLAIM);
        free(tok);
    }
}

static void test_garbage(void **state)
{
    const char *bad[] = {"", "abc", "a.b", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9..", "not a token at all",
                         "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.\x01\x02", "e30.e30.e30"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct auth_claims c;
        assert_int_not_equal(auth_verify(&a, bad[i], AUTH_KIND_LOGIN, &c), AUTH_OK);
    }
    assert_int_equal(auth_verify(&a, NULL, AUTH_KIND_LOGIN, &(struct auth_claims){0}), AUTH_MALFORMED);
    char *huge = malloc(AUTH_MAX_TOKEN + 2);
    memset(huge, 'a', AUTH_MAX_TOKEN + 1);
    huge[AUTH_MAX_TOKEN + 1] = '\0';
    expect(huge, AUTH_KIND_LOGIN, AUTH_MALFORMED);
    free(huge);
}

static void test_mutations_never_pass(void **state)
{
    char *tok = auth_issue(&a, AUTH_KIND_LOGIN, 99, 60, NULL, NULL);
    size_t len = strlen(tok);
    static const char alphabet[] = "Aa0_-.=+/ \xff";
    for (size_t i = 0; i < len; i++) {
        char saved = tok[i];
        for (size_t j = 0; j < sizeof(alphabet) - 1; j++) {
            if (alphabet[j] == saved)
                continue;
            tok[i] = alphabet[j];
            struct auth_claims c;
            enum auth_result r = auth_verify(&a, tok, AUTH_KIND_LOGIN, &c);
            /* base64url's last character of a part may carry unused bits: only those may still verify,
             * and then the claims are the original ones. */
            if (r == AUTH_OK)
                assert_int_equal(c.uid, 99);
        }
        tok[i] = saved;
    }
    /* Truncations. */
    for (size_t i = 0; i < len; i++) {
        char saved = tok[i];
        tok[i] = '\0';
        assert_int_not_equal(auth_verify(&a, tok, AUTH_KIND_LOGIN, &(struct auth_claims){0}), AUTH_OK);
        tok[i] = saved;
    }
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_secret_refused),
        cmocka_unit_test(test_valid_roundtrip),
        cmocka_unit_test(test_jti_unique),
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_issue_refuses_bad_uid),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_not_yet_valid),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_other_hmac_alg),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_missing_claims),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_mutations_never_pass),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
