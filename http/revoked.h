/* revoked.h -- which login tokens /logout has revoked, known in this process so that a request does not
 * ask Redis each time (issue 19: the Redis round trip was ~40 % of the CPU an authenticated request costs
 * magpie-http and Redis together).
 *
 * The truth stays in Redis: KEY_REVOKED (one key per revoked token, TTL = its remaining life, which
 * magpie-push's ticket check also reads) and KEY_REVOKED_INDEX (the same set as one sorted set, jti -> exp,
 * so it can be read whole). /logout writes both, then publishes BUS_CMD_LOGOUT on CHAN_CONTROL.
 *
 * One thread here keeps a copy of that set:
 *   - it SUBSCRIBEs to CHAN_CONTROL, then reads the whole index (a logout that happens in between is in
 *     the index or arrives on the subscription, or both: adding twice is harmless), then says READY;
 *   - each BUS_CMD_LOGOUT that arrives adds its token; expired tokens are dropped every minute (a token
 *     past its exp is refused by its signature check anyway);
 *   - it PINGs the subscription every second: if Redis does not answer for http.revoked_silence_ms, or
 *     the connection fails, the copy is NOT READY at once and every request asks Redis again (EXISTS, as
 *     before), until the thread has subscribed and read the index again. A copy that grew past
 *     http.revoked_cache_max tokens is not used either (it says so in the log).
 * A logout served by this process adds its token here before it answers, so this process refuses the token
 * at once. A logout served by another magpie-http reaches this one when Redis delivers its PUBLISH
 * (on loopback or a LAN, well under a millisecond after that logout was answered); a request that arrives
 * here inside that window is still served. While the copy is not ready the answer comes from Redis.
 *
 * An upgrade from a version without the index: the first load of a Redis without KEY_REVOKED_INDEXED scans
 * KEY_REVOKED keys into the index once (SCAN, in this thread; requests ask Redis meanwhile), then sets it.
 */
#ifndef MAGPIE_HTTP_REVOKED_H
#define MAGPIE_HTTP_REVOKED_H

#include <stdint.h>

enum revoked_answer {
    REVOKED_UNKNOWN = -1, /* the copy is not ready: ask Redis */
    REVOKED_NO = 0,
    REVOKED_YES = 1,
};

/* Start the thread (http.revoked_cache_max 0: nothing starts and every answer is REVOKED_UNKNOWN).
 * MP_OK or MP_ERR. */
int revoked_start(void);

/* Stop the thread and free the copy. */
void revoked_stop(void);

/* Is the token with this jti revoked? Thread-safe, no I/O. */
enum revoked_answer revoked_check(const char *jti);

/* A logout of this process: remember jti (valid until exp, unix seconds) at once. Thread-safe. */
void revoked_add(const char *jti, int64_t exp);

/* Tokens in the copy, and whether it is used (for /metrics and the tests). */
long revoked_count(int *ready);

#endif
