/* sql.h -- the few MySQL shapes magpie-http needs, on top of shared/db.h.
 *
 * Every function returns MP_OK; MP_ENOENT when the query found no row; MP_EAGAIN when MySQL is unavailable
 * (the connection was dropped; answer code 20); MP_EEXIST for a duplicate key; MP_ERR when MySQL rejected
 * the statement (logged here, with the server's reason; never with values that could hold secrets).
 * Values are put into statements only as integers or through mysql_real_escape_string (sql_quote).
 */
#ifndef MAGPIE_HTTP_SQL_H
#define MAGPIE_HTTP_SQL_H

#include "db.h"

#include <stddef.h>

/* Run a statement that returns no rows; *affected (may be NULL) gets the affected row count. */
int sql_exec(struct db *d, const char *sql, unsigned long long *affected);

/* The first column of the first row as an integer / as a string copied into buf (size n). */
int sql_get_int(struct db *d, const char *sql, long long *out);
int sql_get_str(struct db *d, const char *sql, char *buf, size_t n);

/* Escape s (len bytes) for use between single quotes into out, which must hold 2 * len + 1 bytes.
 * MP_OK, or MP_EAGAIN when there is no connection to escape for (the escaping depends on its charset). */
int sql_quote(struct db *d, char *out, const char *s, size_t len);

/* The id of the row the last INSERT created. */
long long sql_insert_id(struct db *d);

#endif
