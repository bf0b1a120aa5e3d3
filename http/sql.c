/* sql.c -- see sql.h. */
#include "sql.h"
#include "log.h"
#include "magpie.h"

#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a failed call: MP_EAGAIN for a lost connection, MP_EEXIST for a duplicate key, else MP_ERR. */
static int failed(struct db *d)
{
    unsigned err = d->m ? mysql_errno(d->m) : 0;
    if (db_check_error(d) == MP_EAGAIN)
        return MP_EAGAIN;
    if (err == ER_DUP_ENTRY)
        return MP_EEXIST;
    log_error("mysql rejected a statement errno=%u reason=\"%s\"", err, mysql_error(d->m));
    return MP_ERR;
}

int sql_exec(struct db *d, const char *sql, unsigned long long *affected)
{
    MYSQL *m = db_conn(d);
    if (m == NULL)
        return MP_EAGAIN;
    if (mysql_real_query(m, sql, (unsigned long)strlen(sql)) != 0)
        return failed(d);
    if (affected != NULL)
        *affected = mysql_affected_rows(m);
    return MP_OK;
}

/* Run a query and hand back its first row (NULL when none). *res must be freed by the caller. */
static int first_row(struct db *d, const char *sql, MYSQL_RES **res, MYSQL_ROW *row)
{
    MYSQL *m = db_conn(d);
    *res = NULL;
    if (m == NULL)
        return MP_EAGAIN;
    if (mysql_real_query(m, sql, (unsigned long)strlen(sql)) != 0)
        return failed(d);
    *res = mysql_store_result(m);
    if (*res == NULL)
        return failed(d);
    *row = mysql_fetch_row(*res);
    if (*row == NULL || (*row)[0] == NULL) {
        mysql_free_result(*res);
        *res = NULL;
        return MP_ENOENT;
    }
    return MP_OK;
}

int sql_get_int(struct db *d, const char *sql, long long *out)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    int rc = first_row(d, sql, &res, &row);
    if (rc != MP_OK)
        return rc;
    *out = strtoll(row[0], NULL, 10);
    mysql_free_result(res);
    return MP_OK;
}

int sql_get_str(struct db *d, const char *sql, char *buf, size_t n)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    int rc = first_row(d, sql, &res, &row);
    if (rc != MP_OK)
        return rc;
    snprintf(buf, n, "%s", row[0]);
    mysql_free_result(res);
    return MP_OK;
}

int sql_quote(struct db *d, char *out, const char *s, size_t len)
{
    MYSQL *m = db_conn(d);
    if (m == NULL)
        return MP_EAGAIN;
    mysql_real_escape_string(m, out, s, (unsigned long)len);
    return MP_OK;
}

long long sql_insert_id(struct db *d)
{
    return d->m ? (long long)mysql_insert_id(d->m) : 0;
}
