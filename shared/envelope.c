/* envelope.c -- see envelope.h. */
#include "envelope.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    enum api_code code;
    int status;
    const char *message;
} api_codes[] = {
    {API_OK, 200, "ok"},
    {API_BAD_MOBILE, 400, "invalid mobile number"},
    {API_INVALID, 400, "invalid request"},
    {API_TOO_FREQUENT, 429, "too frequent"},
    {API_CODE_BURNT, 429, "too many wrong codes, request a new one"},
    {API_NO_CODE, 400, "no code requested, or it expired"},
    {API_WRONG_CODE, 400, "wrong code"},
    {API_QR_GONE, 410, "session unknown, expired or already used"},
    {API_QR_SCANNED, 200, "scanned, waiting for confirmation"},
    {API_QR_WAITING, 200, "not scanned yet"},
    {API_UNAUTHORIZED, 401, "not logged in"},
    {API_FORBIDDEN, 403, "forbidden"},
    {API_NOT_FOUND, 404, "not found"},
    {API_TOO_LARGE, 413, "request body too large"},
    {API_METHOD, 405, "method not allowed"},
    {API_QR_CANCELLED, 410, "session cancelled"},
    {API_UNAVAILABLE, 503, "service unavailable, retry later"},
};

int env_http_status(enum api_code code)
{
    for (size_t i = 0; i < sizeof(api_codes) / sizeof(api_codes[0]); i++)
        if (api_codes[i].code == code)
            return api_codes[i].status;
    return 500;
}

const char *env_message(enum api_code code)
{
    for (size_t i = 0; i < sizeof(api_codes) / sizeof(api_codes[0]); i++)
        if (api_codes[i].code == code)
            return api_codes[i].message;
    return "internal error";
}

/* Serialise obj (consumed) compactly. */
static char *dump(json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return s;
}

/* The envelope is written around the result's own serialisation rather than packed into a second object and
 * dumped whole: one json_dumps per answer instead of an object, two more members and their serialisation
 * (bench/README, "HTTP": a few µs of every request). The table's messages are plain ASCII without '"' or
 * '\\' (test_envelope checks every one), so they go in as they are; a handler's own message is escaped by
 * jansson. Same bytes as json_pack + json_dumps(JSON_COMPACT) gave (test_envelope). */
char *env_wildfire(enum api_code code, const char *message, json_t *result)
{
    char *msg = NULL, *res = NULL, *out = NULL;
    if (message != NULL) {
        json_t *m = json_string(message);
        msg = m ? json_dumps(m, JSON_ENCODE_ANY) : NULL;
        json_decref(m);
        if (msg == NULL)
            goto done;
    }
    if (result != NULL && (res = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
        goto done;
    const char *m = msg ? msg : env_message(code), *q = msg ? "" : "\"", *r = res ? res : "null";
    size_t len = strlen(m) + strlen(r) + 64;
    if ((out = malloc(len)) != NULL)
        snprintf(out, len, "{\"code\":%d,\"message\":%s%s%s,\"result\":%s}", (int)code, q, m, q, r);
done:
    json_decref(result);
    free(msg);
    free(res);
    return out;
}

char *env_seed004(enum seed_code code, const char *msg, json_t *data)
{
    json_t *obj = json_pack("{s:i, s:s}", "code", (int)code, "msg", msg ? msg : "");
    if (obj != NULL && data != NULL && json_object_set_new(obj, "data", data) != 0) {
        json_decref(obj);
        return NULL;
    }
    if (obj == NULL)
        json_decref(data);
    return dump(obj);
}
