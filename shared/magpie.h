/* magpie.h -- conventions shared by every Magpie module.
 *
 * Error convention (the whole project uses it, nothing else):
 *   - A function that can fail returns int: MP_OK (0) on success or one of the negative MP_E* codes below.
 *     Functions with a richer outcome (auth_verify, the HTTP handlers) return their own enum whose 0 is success.
 *   - A function that returns a pointer returns NULL on failure. Its comment says who owns the result
 *     ("caller frees with X") or that it is borrowed ("valid until Y").
 *   - Errors are logged once, where they are handled, not at every level they pass through.
 *
 * Naming: one prefix per module, matching its file (config_, log_, auth_, id_, env_, rds_, db_, metrics_).
 */
#ifndef MAGPIE_H
#define MAGPIE_H

#include <stddef.h>
#include <stdint.h>

#define MP_OK 0
#define MP_ERR -1     /* generic failure; the function's comment says what */
#define MP_EAGAIN -2  /* try again later: a dependency is down or busy */
#define MP_EINVAL -3  /* the input is malformed or out of range */
#define MP_ENOENT -4  /* no such object */
#define MP_EEXIST -5  /* already exists / already used */
#define MP_ENOMEM -6  /* allocation failed */

#define MP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Milliseconds since the Unix epoch, from CLOCK_REALTIME. */
int64_t mp_now_ms(void);

/* Milliseconds from CLOCK_MONOTONIC, for measuring intervals. */
int64_t mp_mono_ms(void);

/* Is s (len bytes) well-formed UTF-8: shortest forms only, no surrogates, nothing past U+10FFFF? (U+0000 is
 * allowed; a caller that refuses it checks for it.) */
int mp_utf8_valid(const unsigned char *s, size_t len);

#endif
