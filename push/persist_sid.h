/* persist_sid.h -- Redis stream entry ids ("<ms>-<seq>", two unsigned 64-bit numbers), as magpie-persist
 * needs them: to page through its pending entries, and to compute the MINID below which the stream may be
 * trimmed. Pure functions, no I/O.
 */
#ifndef MAGPIE_PERSIST_SID_H
#define MAGPIE_PERSIST_SID_H

#include <stddef.h>
#include <stdint.h>

/* "18446744073709551615-18446744073709551615" and its NUL. */
#define PERSIST_SID_MAX 42

struct persist_sid {
    uint64_t ms;
    uint64_t seq;
};

/* Parse "<ms>-<seq>" (decimal, each fitting in 64 bits; exactly the form Redis returns). len bytes of s are
 * read; s need not be NUL-terminated. Returns MP_OK or MP_EINVAL (*sid untouched). */
int persist_sid_parse(struct persist_sid *sid, const char *s, size_t len);

/* Write "<ms>-<seq>" into buf (at least PERSIST_SID_MAX bytes). */
void persist_sid_format(const struct persist_sid *sid, char *buf, size_t len);

/* <0, 0, >0 as a orders before, equal to, after b. */
int persist_sid_cmp(const struct persist_sid *a, const struct persist_sid *b);

/* The smallest id greater than *sid (the id after the last one a group has been given). The largest
 * possible id stays as it is. */
void persist_sid_next(struct persist_sid *sid);

#endif
