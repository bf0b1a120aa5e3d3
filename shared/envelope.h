/* envelope.h -- the two JSON response envelopes of the HTTP API (SPEC §3).
 *
 * Wildfire's envelope, for the app-server endpoints: {"code": N, "message": "...", "result": {...}|null},
 * with an HTTP status of the same class (env_http_status). Seed 004's envelope, for /msg and /tk:
 * {"code": 1|0|1001, "msg": "...", "data"?: ...}.
 */
#ifndef MAGPIE_ENVELOPE_H
#define MAGPIE_ENVELOPE_H

#include <jansson.h>

enum api_code {
    API_OK = 0,
    API_BAD_MOBILE = 1,
    API_INVALID = 2,
    API_TOO_FREQUENT = 3,
    API_CODE_BURNT = 4,
    API_NO_CODE = 5,
    API_WRONG_CODE = 6,
    API_QR_GONE = 8,
    API_QR_SCANNED = 9,
    API_QR_WAITING = 10,
    API_UNAUTHORIZED = 13,
    API_FORBIDDEN = 14,
    API_NOT_FOUND = 15,
    API_TOO_LARGE = 16,
    API_METHOD = 17,
    API_QR_CANCELLED = 18,
    API_UNAVAILABLE = 20,
};

/* Seed 004's codes. */
enum seed_code {
    SEED_ERROR = 0,
    SEED_OK = 1,
    SEED_NOT_LOGGED_IN = 1001,
};

/* HTTP status for a code (500 for a code not in SPEC §3's table). */
int env_http_status(enum api_code code);

/* The table's meaning of a code, used when a handler gives no message of its own. */
const char *env_message(enum api_code code);

/* Wildfire envelope. message NULL = env_message(code). result is stolen (NULL = JSON null).
 * Returns a malloc'd compact JSON string (caller frees with free()), or NULL when out of memory. */
char *env_wildfire(enum api_code code, const char *message, json_t *result);

/* Seed 004 envelope. data is stolen (NULL = no "data" member). Same ownership as env_wildfire. */
char *env_seed004(enum seed_code code, const char *msg, json_t *data);

#endif
