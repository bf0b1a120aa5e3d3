/* db.c -- see db.h. */
#include "db.h"
#include "config.h"
#include "log.h"
#include "magpie.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <string.h>

#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 2000

int db_library_init(void)
{
    return mysql_library_init(0, NULL, NULL) == 0 ? MP_OK : MP_ERR;
}

void db_init(struct db *d, const struct magpie_config *cfg)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->host, sizeof(d->host), "%s", cfg->mysql.host);
    snprintf(d->socket, sizeof(d->socket), "%s", cfg->mysql.socket);
    snprintf(d->user, sizeof(d->user), "%s", cfg->mysql.user);
    snprintf(d->password, sizeof(d->password), "%s", cfg->mysql.password);
    snprintf(d->database, sizeof(d->database), "%s", cfg->mysql.database);
    d->port = (int)cfg->mysql.port;
    d->connect_timeout_s = (unsigned)cfg->mysql.connect_timeout_s;
    d->rw_timeout_s = (unsigned)cfg->mysql.rw_timeout_s;
    d->backoff_ms = DB_BACKOFF_MIN_MS;
}

int db_is_conn_error(unsigned int err)
{
    /* CR_* (2000..2999) are client-side errors: the connection is gone, timed out or out of sync.
     * The server-side ones below mean the server is going away or killed our connection. */
    return (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR) || err == ER_SERVER_SHUTDOWN ||
           err == ER_CONNECTION_KILLED || err == ER_QUERY_INTERRUPTED;
}

void db_drop(struct db *d, const char *why)
{
    if (d->m != NULL) {
        mysql_close(d->m);
        d->m = NULL;
    }
    if (!d->down) {
        log_warn("mysql down host=%s port=%d reason=\"%s\"", d->socket[0] ? d->socket : d->host, d->port, why);
        d->down = 1;
    }
    d->retry_at_ms = mp_mono_ms() + d->backoff_ms;
    d->backoff_ms = d->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : d->backoff_ms * 2;
}

MYSQL *db_conn(struct db *d)
{
    MYSQL *m;
    char why[512];

    if (d->m != NULL)
        return d->m;
    if (mp_mono_ms() < d->retry_at_ms)
        return NULL;
    m = mysql_init(NULL);
    if (m == NULL) {
        db_drop(d, "out of memory");
        return NULL;
    }
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &d->connect_timeout_s);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &d->rw_timeout_s);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &d->rw_timeout_s);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (d->init_command[0] != '\0')
        mysql_options(m, MYSQL_INIT_COMMAND, d->init_command);
    if (mysql_real_connect(m, d->socket[0] ? NULL : d->host, d->user, d->password, d->database,
                           d->socket[0] ? 0 : (unsigned)d->port, d->socket[0] ? d->socket : NULL,
                           d->client_flags) == NULL) {
        snprintf(why, sizeof(why), "%s", mysql_error(m));
        mysql_close(m);
        db_drop(d, why);
        return NULL;
    }
    d->m = m;
    if (d->down) {
        log_info("mysql back host=%s port=%d", d->socket[0] ? d->socket : d->host, d->port);
        d->down = 0;
    }
    d->backoff_ms = DB_BACKOFF_MIN_MS;
    return m;
}

int db_check_error(struct db *d)
{
    char why[512];
    if (d->m == NULL)
        return MP_EAGAIN;
    if (!db_is_conn_error(mysql_errno(d->m)))
        return MP_ERR;
    snprintf(why, sizeof(why), "%s", mysql_error(d->m));
    db_drop(d, why);
    return MP_EAGAIN;
}

int db_exec(struct db *d, const char *sql, unsigned long len)
{
    MYSQL *m = db_conn(d);
    if (m == NULL)
        return MP_EAGAIN;
    if (mysql_real_query(m, sql, len) != 0)
        return db_check_error(d);
    /* Discard every result, including those of a multi-statement batch. */
    do {
        MYSQL_RES *res = mysql_store_result(m);
        if (res != NULL)
            mysql_free_result(res);
        else if (mysql_field_count(m) != 0)
            return db_check_error(d);
    } while (mysql_next_result(m) == 0);
    if (mysql_errno(m) != 0)
        return db_check_error(d);
    return MP_OK;
}

void db_close(struct db *d)
{
    if (d->m != NULL)
        mysql_close(d->m);
    d->m = NULL;
}
