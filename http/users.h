/* users.h -- the users table as the handlers need it (user.c). Return values as in sql.h. */
#ifndef MAGPIE_HTTP_USERS_H
#define MAGPIE_HTTP_USERS_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

#define MOBILE_MIN_DIGITS 5  /* shortest national numbers */
#define MOBILE_MAX_DIGITS 15 /* E.164's maximum */
#define MOBILE_MAX_LEN    (MOBILE_MAX_DIGITS + 1)

/* Is s a mobile number we accept: an optional '+' then MOBILE_MIN_DIGITS..MOBILE_MAX_DIGITS ASCII digits? */
int mobile_valid(const char *s);

/* The number with every digit but the last four replaced by '*' (for /me, the QR prompt and logs). */
void mobile_mask(const char *mobile, char *out, size_t n);

/* The user with this mobile, created on first use (*created = 1 then). */
int users_login(struct db *d, const char *mobile, int64_t *uid, int *created);

/* The mobile of uid into buf; MP_ENOENT when there is no such user. */
int users_mobile(struct db *d, int64_t uid, char *buf, size_t n);

#endif
